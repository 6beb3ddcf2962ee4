"""Lab 04's graded file has the course's INT8 ResNet-20 schema: keys in order, dtypes, shapes.

The schema is the course's own list (``../shared/docs/course-int8-resnet20-keys.json``, beside the
repo); the course's ``check_quantization.py`` builds its model and loads a submission with
``strict=True``, so any other name is "Your model's architecture seems to be wrong!".
These tests skip when ``../shared`` is absent.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit.io import save_state_dict
from labkit.models.quantized_resnet20 import QuantizedResNet20
from labkit.models.resnet20 import resnet20
from labkit.quant.manual import quantize_resnet20

SCHEMA = Path(__file__).resolve().parents[2] / "shared/docs/course-int8-resnet20-keys.json"


@pytest.fixture(scope="module")
def course_keys() -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """``[(key, dtype, shape), ...]`` in the course's order."""
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} not present (the course schema lives in ../shared beside the repo)")
    rows = json.loads(SCHEMA.read_text())["keys"]
    return [(key, getattr(torch, dtype), tuple(shape)) for key, dtype, shape in rows]


def course_model_from_schema(course_keys) -> nn.Module:
    """A plain module holding exactly the schema's tensors (zeros of each dtype/shape), no labkit class.

    It stands for the course's own INT8 ResNet-20 as far as ``load_state_dict(strict=True)`` sees it.
    """
    root = nn.Module()
    for key, dtype, shape in course_keys:
        *path, name = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_buffer(name, torch.zeros(shape, dtype=dtype))
    return root


def test_state_dict_keys_are_the_course_keys_in_order(course_keys):
    state = QuantizedResNet20().state_dict()
    assert list(state) == [key for key, _, _ in course_keys]


def test_state_dict_dtypes_and_shapes_are_the_course_ones(course_keys):
    state = QuantizedResNet20().state_dict()
    got = [(key, state[key].dtype, tuple(state[key].shape)) for key, _, _ in course_keys if key in state]
    assert got == course_keys


def test_the_stateless_course_modules_exist_by_name():
    # relu, flat and the Sequential shortcut hold no tensors, so the keys alone cannot show them.
    names = dict(QuantizedResNet20().named_modules())
    for name in ("quant", "flat", "avgpool", "layer1.0.relu", "layer3.2.relu", "layer2.0.downsample.0",
                 "layer3.0.downsample.0"):
        assert name in names, f"{name} missing"
    assert isinstance(names["layer2.0.downsample"], nn.Sequential)
    assert "layer1.0.downsample" not in names


def test_a_calibrated_model_file_strict_loads_into_a_model_built_from_the_schema(course_keys, tmp_path):
    # What notebook 04 saves: quantize_resnet20 on a float ResNet-20, then save_state_dict.
    torch.manual_seed(0)
    calibration = DataLoader(TensorDataset(torch.randn(16, 3, 32, 32), torch.zeros(16, dtype=torch.long)),
                             batch_size=8)
    path = save_state_dict(quantize_resnet20(resnet20().eval(), calibration), tmp_path / "123_quantization.pt")
    submitted = torch.load(path, weights_only=True)  # the course's load: no map_location
    course_model = course_model_from_schema(course_keys)
    course_model.load_state_dict(submitted, strict=True)
    # load_state_dict would silently cast; the course's tensors must arrive with their own dtypes.
    assert [(key, value.dtype, tuple(value.shape)) for key, value in submitted.items()] == course_keys
    assert submitted["quant.output_scale"].item() > 0  # calibrated, not the empty model's 1.0 only
