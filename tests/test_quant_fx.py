"""FX post-training quantization: a faithful INT8 copy, quiet warnings, the calibration sweep."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from labkit.models.resnet20 import resnet20
from labkit.quant.fx import (best_calibration, calibration_sweep, default_calibration_sizes, measure_model,
                             quantize_fx)


def image_set(count: int, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(count, 3, 32, 32, generator=generator),
                         torch.randint(0, 10, (count,), generator=generator))


class CountingLoader:
    """A loader that remembers how many images were taken from it."""

    def __init__(self, dataset, batch_size):
        self.loader, self.images_taken = DataLoader(dataset, batch_size=batch_size), 0

    def __iter__(self):
        for images, labels in self.loader:
            self.images_taken += len(images)
            yield images, labels


@pytest.fixture(scope="module")
def float_model():
    torch.manual_seed(0)
    return resnet20().eval()


def test_int8_model_agrees_with_the_float_model_and_leaves_it_unchanged(float_model):
    before = {k: v.clone() for k, v in float_model.state_dict().items()}
    int8_model = quantize_fx(float_model, DataLoader(image_set(64), batch_size=32))
    images = image_set(32, seed=1).tensors[0]
    with torch.no_grad():
        expected, got = float_model(images), int8_model(images)
    relative_error = (got - expected).norm() / expected.norm()
    assert relative_error < 0.1, f"INT8 logits differ from FP32 by {relative_error:.1%}"
    assert any(p.is_quantized for p in int8_model.state_dict().values() if isinstance(p, torch.Tensor))
    assert all(torch.equal(before[k], v) for k, v in float_model.state_dict().items())


def test_calibration_stops_after_num_images(float_model):
    loader = CountingLoader(image_set(100), batch_size=8)
    quantize_fx(float_model, loader, num_images=10)
    assert loader.images_taken == 8 + 16  # one batch for the example input, then 8 + 2 images


def test_torch_ao_deprecation_warnings_are_hidden_inside_labkit_only(float_model):
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_fx(float_model, DataLoader(image_set(8), batch_size=8))
    assert [str(w.message)[:80] for w in caught] == []
    assert warnings.filters == filters_before
    # The control: the same call outside labkit still warns, so the filter above was what hid it
    # (reduce_range's UserWarning on every torch tried, 2.6-2.15; the torch.ao deprecation on the newer ones).
    from torch.ao.quantization import QConfigMapping, get_default_qconfig
    from torch.ao.quantization.quantize_fx import prepare_fx
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_fx(resnet20().eval(), QConfigMapping().set_global(get_default_qconfig("fbgemm")),
                   example_inputs=(torch.randn(1, 3, 32, 32),))
    assert any("torch.ao.quantization is deprecated" in str(w.message) or "reduce_range" in str(w.message)
               for w in caught), [str(w.message)[:80] for w in caught]


def test_unknown_backend_names_the_known_ones(float_model):
    with pytest.raises(ValueError, match="backend must be one of"):
        quantize_fx(float_model, DataLoader(image_set(8), batch_size=8), backend="tpu")


def test_calibration_sweep_gives_one_row_per_size(float_model):
    rows = calibration_sweep(float_model, image_set(40), DataLoader(image_set(20, seed=2), batch_size=10),
                             [1, 5, 40], seed=0, batch_size=16, progress=False)
    assert [row["num_images"] for row in rows] == [1, 5, 40]
    assert all(0.0 <= row["accuracy"] <= 100.0 and row["seconds"] > 0 for row in rows)


def test_calibration_sweep_refuses_more_images_than_the_training_set(float_model):
    with pytest.raises(ValueError, match=r"calibration sizes \[50\] exceed the 40 training images; "
                                         r"use sizes up to 40, or None for the default sweep \[1, 5, 10, 40\]"):
        calibration_sweep(float_model, image_set(40), None, [10, 50], progress=False)


@pytest.mark.parametrize("num_images, top", [(45000, 45000), (20000, 20000), (10000, 10000), (500, 500),
                                             (7, 7)])
def test_default_sweep_ends_at_all_the_training_images_there_are(num_images, top):
    sizes = default_calibration_sizes(num_images)
    assert sizes[-1] == top and max(sizes) == num_images
    assert sizes == sorted(set(sizes)) and sizes[0] == 1
    assert len(sizes) >= 5 or num_images < 50  # the lab asks for at least 5 sizes


def test_the_kept_calibration_is_the_most_accurate_and_the_smaller_on_a_tie():
    rows = [{"num_images": 1, "accuracy": 80.0}, {"num_images": 50, "accuracy": 91.2},
            {"num_images": 500, "accuracy": 91.2}, {"num_images": 5000, "accuracy": 91.1}]
    assert best_calibration(rows)["num_images"] == 50
    with pytest.raises(ValueError, match="no sweep rows"):
        best_calibration([])


def test_int8_state_dict_is_about_a_quarter_of_the_float_one(float_model):
    test_loader = DataLoader(image_set(8), batch_size=8)
    int8_model = quantize_fx(float_model, test_loader)
    example = torch.randn(1, 3, 32, 32)
    fp32 = measure_model(float_model, test_loader, example_input=example, repeats=2)
    int8 = measure_model(int8_model, test_loader, example_input=example, repeats=2)
    assert set(fp32) == {"accuracy", "state_dict_kib", "latency_ms", "threads", "batch_size"}
    assert 0.2 < int8["state_dict_kib"] / fp32["state_dict_kib"] < 0.45
    assert int8["latency_ms"] > 0 and fp32["latency_ms"] > 0
