"""labkit.profile: exact MACs (float and INT8), sizes, latency, and the Task 2 FoM."""
import copy
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub

from labkit import profile as profile_module
from labkit.grading.tasks import fom
from labkit.models.unet import UNet
from labkit.profile import (
    count_macs,
    count_params,
    latency,
    model_size_bytes,
    state_dict_size_bytes,
)


def hand_counted_net() -> nn.Module:
    """Input (1, 3, 16, 16); one layer of each kind that count_macs knows."""
    return nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=3, padding=1),                       # -> (1, 8, 16, 16)
        nn.Conv2d(8, 8, kernel_size=3, padding=1, groups=8),             # depthwise, same shape
        nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2),               # -> (1, 4, 32, 32)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


@pytest.mark.parametrize("method", ["flop_counter", "hooks"])
def test_count_macs_equals_the_hand_count(method):
    conv = 8 * 16 * 16 * (3 * 3 * 3)         # out pixels * (in_ch * k * k)         = 55,296
    depthwise = 8 * 16 * 16 * (1 * 3 * 3)    # in_ch / groups = 1                   = 18,432
    transposed = 8 * 16 * 16 * (4 * 2 * 2)   # in pixels * (out_ch * k * k)         = 32,768
    linear = 4 * 10                          # in_features * out_features           =     40
    # (thop would count the transposed conv per *output* pixel: 4*32*32 * 8*2*2 = 4x as many.)
    macs = count_macs(hand_counted_net(), input_size=(1, 3, 16, 16), method=method)
    assert macs == conv + depthwise + transposed + linear == 106_536


@pytest.mark.parametrize("bilinear", [False, True])
def test_hooks_agree_with_flop_counter_on_a_float_unet(bilinear):
    model = UNet(base_channels=4, depth=3, bilinear=bilinear)
    x = torch.randn(1, 3, 37, 45)
    assert count_macs(model, x, method="hooks") == count_macs(model, x, method="flop_counter") > 0


def test_count_macs_leaves_training_mode_and_batchnorm_statistics_alone():
    model = UNet(base_channels=4, depth=2).train()
    before = copy.deepcopy(model.state_dict())
    count_macs(model, input_size=(1, 3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class TinyConvNet(nn.Module):
    """Float net with stubs, ready for eager quantization; 64x64 conv weights dominate its size."""

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.up = nn.ConvTranspose2d(64, 8, kernel_size=2, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(self.quant(x)))))
        x = self.pool(self.up(x)).flatten(1)
        return self.dequant(self.fc(x))


@pytest.fixture(scope="module")
def float_and_int8():
    torch.manual_seed(0)
    float_model = TinyConvNet().eval()
    model = copy.deepcopy(float_model)
    with warnings.catch_warnings():  # prepare/convert are deprecated but still the eager API
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.backends.quantized.engine = "x86"
        model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        # x86 has no per-channel ConvTranspose: per-tensor for that layer (tech-facts.md).
        model.up.qconfig = torch.ao.quantization.default_qconfig
        model = torch.ao.quantization.fuse_modules(model, [["conv1", "relu1"], ["conv2", "relu2"]])
        torch.ao.quantization.prepare(model, inplace=True)
        model(torch.randn(8, 3, 16, 16))  # calibration
        torch.ao.quantization.convert(model, inplace=True)
    return float_model, model


def test_int8_model_has_the_macs_of_its_float_twin(float_and_int8):
    float_model, int8_model = float_and_int8
    x = torch.randn(1, 3, 16, 16)
    assert count_macs(int8_model, x) == count_macs(float_model, x) > 0
    # The flop counter cannot see quantized ops, which is why "auto" uses hooks for them.
    assert count_macs(int8_model, x, method="flop_counter") == 0


def test_int8_model_size_is_about_a_quarter_of_the_float_twin(float_and_int8):
    float_model, int8_model = float_and_int8
    float_bytes, int8_bytes = model_size_bytes(float_model), model_size_bytes(int8_model)
    assert float_bytes == 4 * count_params(float_model)  # no buffers: all float32 parameters
    assert abs(int8_bytes - float_bytes / 4) < 0.3 * float_bytes / 4
    # The course's measure (parameters + buffers only) sees almost nothing of an INT8 model.
    course_measure = sum(t.nelement() * t.element_size()
                         for t in [*int8_model.parameters(), *int8_model.buffers()])
    assert course_measure < 0.01 * int8_bytes


def test_float_size_is_parameters_plus_buffers():
    model = nn.Sequential(nn.Conv2d(3, 8, kernel_size=3, bias=False), nn.BatchNorm2d(8))
    # conv 8*3*3*3 + BN weight, bias, running mean, running var 4*8 floats (4 bytes each),
    # plus num_batches_tracked (one int64, 8 bytes).
    assert model_size_bytes(model) == (216 + 32) * 4 + 8


def test_state_dict_size_is_close_to_the_tensor_bytes_for_a_float_model():
    model = nn.Conv2d(64, 64, kernel_size=3)
    assert 1.0 < state_dict_size_bytes(model) / model_size_bytes(model) < 1.05


def test_count_params_can_skip_frozen_parameters():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    assert count_params(model) == (4 * 3 + 3) + (3 * 2 + 2)
    assert count_params(model, trainable_only=True) == 3 * 2 + 2


def test_latency_reports_the_median_of_the_timed_calls(monkeypatch):
    # five timed calls of 5, 1, 9, 2 and 30 ms (a clock read before and after each): median 5, mean 9.4
    readings = iter([0.0, 0.005, 1.0, 1.001, 2.0, 2.009, 3.0, 3.002, 4.0, 4.030])
    monkeypatch.setattr(profile_module, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    stats = latency(nn.Conv2d(3, 4, kernel_size=3), torch.randn(1, 3, 32, 32), warmup=1, repeats=5)
    assert stats["median_ms"] == pytest.approx(5.0) and stats["mean_ms"] == pytest.approx(9.4)
    assert stats["min_ms"] == pytest.approx(1.0) and stats["max_ms"] == pytest.approx(30.0)
    assert stats["repeats"] == 5 and stats["device"] == "cpu" and stats["batch_size"] == 1


def test_fom_is_macs_squared_times_size_squared_over_miou_margin():
    assert fom(2_000, 30.0, 0.75) == pytest.approx(2_000**2 * 30.0**2 / 0.10)
    # The TA's printout: flops=1953431552, size=1522.402 KB, mIoU=0.678319.
    assert fom(1953431552, 1522.402, 0.678319) == pytest.approx(3.1230e26, rel=1e-4)


@pytest.mark.parametrize("miou", [0.65, 0.5])
def test_fom_is_undefined_at_or_below_miou_0_65(miou):
    with pytest.raises(ValueError, match="undefined"):
        fom(1e9, 1000.0, miou)
