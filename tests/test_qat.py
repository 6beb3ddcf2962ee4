"""QAT on the x86 engine: preparation, conversion, the grading load path, and honest INT8 accounting."""
import warnings

import pytest
import torch
from torch import nn
from torch.ao.quantization import QuantWrapper

from labkit.io import SubmissionError, load_into, load_state_dict_file, save_state_dict
from labkit.models.efficient_unet import EfficientUNet
from labkit.models.unet import UNet
from labkit.profile import count_macs, model_size_bytes
from labkit.quant import qat
from tests.helpers import LEARNING_SEED

CONFIG = {"base_channels": 4, "depth": 2}
FULL_TASK2_CONFIG = {"base_channels": 16, "depth": 4}  # the notebook's FULL Task 2 network


def trained_qat_model(config=CONFIG, steps: int = 3, seed: int = 0) -> nn.Module:
    """A QAT model after a few SGD steps, so weights, BN and observer ranges have all moved."""
    torch.manual_seed(seed)
    model = qat.prepare_qat(EfficientUNet(**config))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        images = torch.rand(4, 3, 32, 64)
        loss = nn.functional.cross_entropy(model(images), torch.randint(0, 8, (4, 32, 64)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def int8_model():
    return qat.convert_to_int8(trained_qat_model())


def test_prepare_fuses_and_fakes_quantization_on_a_copy():
    model = EfficientUNet(**CONFIG)
    prepared = qat.prepare_qat(model)
    assert qat.fake_quant_modules(prepared) > 0 and qat.fake_quant_modules(model) == 0
    assert isinstance(prepared.inc[0][0], torch.ao.nn.intrinsic.qat.ConvBnReLU2d)  # fused
    assert isinstance(prepared.ups[0].project_skip[0], torch.ao.nn.intrinsic.qat.ConvBn2d)
    assert type(model.inc[0][0]) is nn.Conv2d                                     # original untouched
    assert torch.backends.quantized.engine == "x86"


def test_converted_model_runs_int8_and_returns_float_logits(int8_model):
    assert any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in int8_model.modules())
    logits = int8_model(torch.rand(2, 3, 32, 64))
    assert logits.shape == (2, 8, 32, 64) and logits.dtype == torch.float32


@pytest.mark.learning
def test_int8_predictions_agree_with_the_fake_quantized_model(learned):
    qat_model = trained_qat_model(seed=LEARNING_SEED).eval()
    int8_model = qat.convert_to_int8(qat_model)
    images = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        fake, int8 = qat_model(images), int8_model(images)
    step = int8_model.outc.scale  # one step of the INT8 logits
    # the INT8 logits are the fake-quantized ones up to rounding: seeds 0-9 gave at most 1.07 steps
    learned("int8_logit_error_in_steps", ((fake - int8).abs().max() / step).item(), at_most=2.0)
    # and predict the same class wherever no rounding can flip it (two classes closer than 2 steps can
    # tie: after 3 steps on noise, seed 3 predicted one class everywhere with a tie at every pixel)
    top2 = fake.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * step
    assert torch.equal(fake.argmax(1)[clear], int8.argmax(1)[clear])


def test_round_trip_through_the_grading_load_path_gives_identical_outputs(int8_model, tmp_path):
    path = save_state_dict(int8_model, tmp_path / "model_task2.pth")
    state = load_state_dict_file(path)  # torch.load(weights_only=True, map_location="cpu")
    assert qat.is_int8_state_dict(state)
    graded = load_into(qat.build_int8_model(**CONFIG), state)
    images = torch.rand(3, 3, 32, 64)
    assert torch.equal(graded(images), int8_model(images))


def test_a_bias_free_quantized_conv_loads_through_the_safe_loader(tmp_path):
    model = qat.prepare_qat(QuantWrapper(nn.Conv2d(3, 4, 3, bias=False)))
    model(torch.rand(1, 3, 8, 8))
    int8 = qat.convert_to_int8(model)
    assert int8.state_dict()["module.bias"] is None
    state = load_state_dict_file(save_state_dict(int8, tmp_path / "conv.pth"))
    assert state["module.bias"] is None


def test_a_float_state_dict_is_not_taken_for_int8_and_does_not_load_into_it():
    state = EfficientUNet(**CONFIG).state_dict()
    assert not qat.is_int8_state_dict(state)
    with pytest.raises(SubmissionError, match="architecture does not match"):
        load_into(qat.build_int8_model(**CONFIG), state)


def test_int8_macs_equal_fp32_macs_for_the_same_architecture():
    float_model = EfficientUNet(**FULL_TASK2_CONFIG)
    int8 = qat.build_int8_model(**FULL_TASK2_CONFIG)
    float_macs = count_macs(float_model, input_size=(1, 3, 64, 128))
    assert float_macs > 0
    assert count_macs(int8, input_size=(1, 3, 64, 128)) == float_macs


def test_int8_size_is_within_30_percent_of_a_quarter_of_fp32():
    fp32_bytes = model_size_bytes(EfficientUNet(**FULL_TASK2_CONFIG))
    int8_bytes = model_size_bytes(qat.build_int8_model(**FULL_TASK2_CONFIG))
    assert 0.7 * fp32_bytes / 4 <= int8_bytes <= 1.3 * fp32_bytes / 4


def test_transposed_convs_get_per_tensor_weights_which_x86_needs():
    model = qat.prepare_qat(QuantWrapper(UNet(base_channels=4, depth=2, classes=8)))
    transposed = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert transposed and all(m.qconfig.weight().qscheme == torch.per_tensor_symmetric for m in transposed)
    model(torch.rand(2, 3, 32, 32))
    assert qat.convert_to_int8(model)(torch.rand(1, 3, 32, 32)).shape == (1, 8, 32, 32)


def test_freezing_stops_observers_and_batchnorm_statistics():
    model = qat.freeze_qat(trained_qat_model(steps=1))
    fake_quant = model.inc[0][0].activation_post_process
    scale_before = fake_quant.scale.clone()
    running_mean = model.inc[0][0].bn.running_mean.clone()
    model.train()(torch.rand(2, 3, 32, 64) * 5)
    assert torch.equal(fake_quant.scale, scale_before)
    assert torch.equal(model.inc[0][0].bn.running_mean, running_mean)


def test_quantization_warnings_are_silenced_only_inside_labkit_calls():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qat.convert_to_int8(qat.prepare_qat(EfficientUNet(**CONFIG)))
        warnings.warn("a student's own deprecation", DeprecationWarning)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert messages == ["a student's own deprecation"]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        qat.prepare_qat(EfficientUNet(**CONFIG), backend="tensorrt")
