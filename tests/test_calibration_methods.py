"""Calibration methods: each observer against torch's (where one exists), and per-layer sensitivity.

Tolerances: min/max and moving-average min/max are the same formulas as torch's observers, so they
agree at 1e-6. There is no percentile observer in torch.ao; the percentile ranges are checked against
``torch.quantile`` of all the values, within one histogram bin (the histogram's resolution). torch's
``HistogramObserver`` minimises an L2 error over its bins with a greedy search that moves both ends;
ours searches one shrink factor for both ends and measures the real quantize-dequantize error at bin
centers. So the two only agree approximately: scales within 15 %, and ours is never worse than
torch's on the quantization MSE of the samples themselves (within 1 %).
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.ao.quantization.observer import HistogramObserver as TorchHistogramObserver
from torch.ao.quantization.observer import MovingAverageMinMaxObserver as TorchMovingAverageObserver
from torch.utils.data import DataLoader, TensorDataset

from labkit.models.resnet20 import resnet20
from labkit.quant.affine import dequantize, quantize
from labkit.quant.calibration import (METHODS, HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver,
                                      MSEObserver, PercentileObserver, make_observer)
from labkit.quant.manual import calibrate, layer_sensitivity, quantize_resnet20


def sample_mse(x: torch.Tensor, scale, zero_point) -> float:
    """Mean squared quantize-dequantize error of the values ``x`` with uint8 qparams."""
    q = quantize(x, scale, zero_point, quant_min=0, quant_max=255, dtype=torch.float32)
    return ((dequantize(q, scale, zero_point) - x) ** 2).mean().item()


def growing_batches(seed: int, count: int = 5, size: int = 20_000) -> list[torch.Tensor]:
    """Batches whose range grows (each wider than the last), so the histogram has to double."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=generator) * (1.0 + 2.0 * index) + 0.3 for index in range(count)]


# Activation-like distributions: after a ReLU, a long (squared) tail, a signed Gaussian.
DISTRIBUTIONS = {
    "relu_gaussian": lambda g: torch.relu(torch.randn(20_000, generator=g)),
    "relu_squared": lambda g: torch.relu(torch.randn(20_000, generator=g)) ** 2,
    "signed_gaussian": lambda g: torch.randn(20_000, generator=g) * 2 + 0.5,
}


# ----------------------------------------------------------------------------- moving average
@pytest.mark.parametrize("averaging_constant", [0.01, 0.3])
def test_moving_average_range_and_qparams_equal_torch_observer(averaging_constant):
    ours = MovingAverageMinMaxObserver(averaging_constant=averaging_constant)
    theirs = TorchMovingAverageObserver(averaging_constant=averaging_constant, dtype=torch.quint8)
    for batch in growing_batches(seed=0):
        ours(batch)
        theirs(batch)
    assert abs(ours.min_val.item() - theirs.min_val.item()) <= 1e-6
    assert abs(ours.max_val.item() - theirs.max_val.item()) <= 1e-6
    scale, zero_point = ours.qparams(0, 255)
    torch_scale, torch_zero_point = theirs.calculate_qparams()
    assert abs(scale.item() - torch_scale.item()) <= 1e-6 and zero_point.item() == torch_zero_point.item()


def test_moving_average_is_not_the_running_extremes():
    moving, extremes = MovingAverageMinMaxObserver(), MinMaxObserver()
    for batch in growing_batches(seed=1):
        moving(batch)
        extremes(batch)
    assert moving.max_val < 0.9 * extremes.max_val  # one wide batch moves the average by 1 % of the gap


# ----------------------------------------------------------------------------- histogram and percentile
def test_histogram_keeps_every_value_and_a_fixed_size_while_its_range_doubles():
    observer = HistogramObserver(bins=1024)
    batches = growing_batches(seed=2)
    for batch in batches:
        observer(batch)
    everything = torch.cat(batches)
    assert observer.histogram.shape == (1024,) and observer.histogram.sum().item() == everything.numel()
    assert observer.radius >= everything.abs().max().item() > observer.radius / 2
    at_once = torch.histc(everything, bins=1024, min=-observer.radius, max=observer.radius).double()
    assert (observer.histogram - at_once).abs().sum().item() <= 2  # only float ties at bin edges may move


@pytest.mark.parametrize("percentile", [99.0, 99.9, 99.99])
def test_percentile_range_equals_torch_quantile_within_one_bin(percentile):
    observer = PercentileObserver(percentile=percentile)
    batches = growing_batches(seed=3)
    for batch in batches:
        observer(batch)
    everything = torch.cat(batches).double()
    low, high = observer.range()
    bin_width = 2 * observer.radius / observer.bins
    ends = torch.tensor([1 - percentile / 100, percentile / 100], dtype=torch.float64)
    expected = torch.quantile(everything, ends)
    ordered = everything.sort().values
    for ours, quantile, fraction in zip((low.item(), high.item()), expected.tolist(), ends.tolist()):
        # In a sparse tail neighbouring values can lie bins apart, and the histogram only knows
        # which bin the k-th value is in: the estimate lies within a bin of the values around it.
        k = int(fraction * len(ordered))
        assert ordered[k - 1] - bin_width <= ours <= ordered[k + 1] + bin_width
        assert abs(ours - quantile) <= max(bin_width, (ordered[k + 1] - ordered[k - 1]).item() + bin_width)


def test_percentile_clips_a_rare_outlier_that_min_max_keeps():
    x = torch.cat([torch.rand(100_000, generator=torch.Generator().manual_seed(4)), torch.tensor([1000.0])])
    clipped, minmax = make_observer("percentile99.99"), make_observer("minmax")
    clipped(x)
    minmax(x)
    assert minmax.range()[1].item() == 1000.0
    assert 0.99 <= clipped.range()[1].item() <= 1.01
    assert sample_mse(x[:-1], *clipped.qparams()) < sample_mse(x[:-1], *minmax.qparams()) / 100


# ----------------------------------------------------------------------------- MSE-optimal clipping
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_mse_clipping_agrees_with_torch_histogram_observer(name):
    generator = torch.Generator().manual_seed(5)
    batches = [DISTRIBUTIONS[name](generator) for _ in range(5)]
    ours, theirs = MSEObserver(), TorchHistogramObserver(dtype=torch.quint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in batches:
            ours(batch)
            theirs(batch)
        torch_scale, torch_zero_point = theirs.calculate_qparams()
    scale, zero_point = ours.qparams(0, 255)
    assert abs(scale.item() / torch_scale.item() - 1) <= 0.15
    x = torch.cat(batches)
    assert sample_mse(x, scale, zero_point) <= 1.01 * sample_mse(x, torch_scale, torch_zero_point)


def test_mse_clipping_is_the_best_shrink_factor_on_the_samples():
    # |Laplace(1)| = Exponential(1): a tail long enough that clipping it pays at 8 bits
    x = -torch.log(torch.rand(400_000, generator=torch.Generator().manual_seed(6)))
    observer = MSEObserver()
    observer(x)
    chosen = sample_mse(x, *observer.qparams())
    minmax = make_observer("minmax")
    minmax(x)
    brute_force = []
    for factor in torch.linspace(0.01, 1.0, 100):
        probe = MinMaxObserver()
        probe(x * factor)  # the range [0, factor * max]
        brute_force.append(sample_mse(x, *probe.qparams()))
    assert chosen <= 1.02 * min(brute_force)  # the histogram's bin centers stand in for the samples
    assert chosen < 0.9 * sample_mse(x, *minmax.qparams())  # measured: 0.87
    assert observer.range()[1] < 0.95 * x.max()  # measured: 0.905 of the max


# ----------------------------------------------------------------------------- by name, in the PTQ
def test_every_method_name_makes_an_observer_and_a_wrong_one_lists_them():
    for method in METHODS:
        observer = make_observer(method)
        observer(torch.randn(1000))
        low, high = observer.range()
        assert low.dtype == high.dtype == torch.float32 and low < 0 < high
    with pytest.raises(ValueError, match="percentile99.9, percentile99.99, mse"):
        make_observer("kl")
    with pytest.raises(ValueError, match="unknown calibration method 'percentile100'"):
        make_observer("percentile100")


def test_an_observer_without_data_says_to_calibrate():
    for method in METHODS:
        with pytest.raises(RuntimeError, match="calibration images"):
            make_observer(method).qparams()


@pytest.fixture(scope="module")
def float_model_and_images():
    torch.manual_seed(0)
    images = TensorDataset(torch.randn(32, 3, 32, 32), torch.zeros(32, dtype=torch.long))
    return resnet20().eval(), DataLoader(images, batch_size=16)


def test_default_method_is_min_max(float_model_and_images):
    model, loader = float_model_and_images
    default, minmax = quantize_resnet20(model, loader), quantize_resnet20(model, loader, method="minmax")
    assert all(torch.equal(default.state_dict()[key], value) for key, value in minmax.state_dict().items())
    assert all(type(observer) is MinMaxObserver for observer in calibrate(model, loader).values())


def test_percentile_calibration_narrows_every_activation_range(float_model_and_images):
    model, loader = float_model_and_images
    minmax, clipped = (quantize_resnet20(model, loader, method=method).state_dict()
                       for method in ("minmax", "percentile99.9"))
    scales = [key for key in minmax if key.endswith("output_scale")]
    assert all(clipped[key] <= minmax[key] * (1 + 1e-6) for key in scales)
    assert sum(bool(clipped[key] < 0.95 * minmax[key]) for key in scales) >= len(scales) // 2
    assert list(clipped) == list(minmax)  # the course's keys, whatever the method


def test_quantize_resnet20_refuses_an_unknown_method_before_calibrating(float_model_and_images):
    model, loader = float_model_and_images
    with pytest.raises(ValueError, match="unknown calibration method 'entropy'"):
        quantize_resnet20(model, loader, method="entropy")


# ----------------------------------------------------------------------------- per-layer sensitivity
def sign_classifier() -> tuple[nn.Module, DataLoader, DataLoader]:
    """Class = sign of the first input; layer 0 is fragile when a calibration outlier widens its input range.

    Layer "0" reads inputs of size 0.05 ... 1; one calibration value of 1000 makes its uint8 step about
    4, so every input rounds to 0 and the two logits tie. Layer "2" reads tanh outputs in [-1, 1].
    """
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[10.0, 0.0], [-10.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[-1.0, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0]]))
        model[2].bias.zero_()
    generator = torch.Generator().manual_seed(7)
    magnitude = 0.05 + 0.95 * torch.rand(2000, 1, generator=generator)
    sign = torch.where(torch.rand(2000, 1, generator=generator) < 0.5, -1.0, 1.0)
    x = torch.cat([sign * magnitude, torch.randn(2000, 1, generator=generator) * 0.1], dim=1)
    labels = (x[:, 0] > 0).long()
    calibration = torch.cat([x, torch.tensor([[1000.0, 0.0]])])
    return (model, DataLoader(TensorDataset(calibration, torch.zeros(len(calibration), dtype=torch.long)), batch_size=500),
            DataLoader(TensorDataset(x, labels), batch_size=500))


def test_sensitivity_names_the_layer_whose_int8_costs_the_most():
    model, calibration, validation = sign_classifier()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    rows = layer_sensitivity(model, calibration, validation)
    assert [row["layer"] for row in rows] == ["none (FP32)", "0", "2"]
    change = {row["layer"]: row["change"] for row in rows}
    flipped = {row["layer"]: row["flipped"] for row in rows}
    assert rows[0]["accuracy"] == 100.0 and change["none (FP32)"] == 0.0
    assert change["0"] <= -40.0 and flipped["0"] >= 40.0  # every input rounded to 0: a coin toss
    assert abs(change["2"]) <= 1.0 and flipped["2"] <= 1.0
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_sensitivity_with_percentile_calibration_removes_the_outliers_cost():
    model, calibration, validation = sign_classifier()
    rows = layer_sensitivity(model, calibration, validation, method="percentile99.9")
    assert all(abs(row["change"]) <= 1.0 for row in rows), rows


def test_sensitivity_refuses_a_layer_that_is_not_conv_or_linear():
    model, calibration, validation = sign_classifier()
    with pytest.raises(ValueError, match=r"layers \['1'\] are not Conv2d/Linear.*choose among \['0', '2'\]"):
        layer_sensitivity(model, calibration, validation, layers=["1"])
