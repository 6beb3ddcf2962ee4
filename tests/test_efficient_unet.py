"""EfficientUNet: the shared segmentation-model behaviours (``segmentation_model_tester``), and what is
its own: its blocks' shapes, the cost of separable convs, ECA against a hand version, fusion, and
reading the configuration back from a state_dict."""
import torch
import torch.nn.functional as F
from torch import nn

from labkit.models.efficient_unet import (ECA, DepthwiseSeparableConv, EfficientDown, EfficientUNet,
                                          EfficientUp, eca_kernel_size, efficient_unet_kwargs)
from labkit.profile import count_macs
from tests.segmentation_model_tester import SegmentationModelTester


def tiny_model(seed: int = 0, **kwargs) -> EfficientUNet:
    torch.manual_seed(seed)
    return EfficientUNet(**{"base_channels": 4, "depth": 3, **kwargs}).eval()


class TestEfficientUNet(SegmentationModelTester):
    classes = 8  # the Cityscapes categories
    sizes = ((64, 128), (75, 131), (33, 40))
    gradient_input = (2, 32, 64)
    min_size = 8  # 2 ** depth

    def make_model(self, seed: int = 0, **kwargs) -> EfficientUNet:
        return tiny_model(seed, **kwargs)


def test_no_transposed_convolutions_and_every_3x3_after_the_stem_is_depthwise():
    model = tiny_model(depth=4)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    three_by_three = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    stem, rest = three_by_three[0], three_by_three[1:]
    assert stem is model.inc[0][0]
    assert rest and all(m.groups == m.in_channels == m.out_channels for m in rest)


def test_separable_conv_costs_9c_plus_c_squared_macs_per_pixel_not_9c_squared():
    channels, height, width = 32, 16, 16
    separable = count_macs(DepthwiseSeparableConv(channels, channels), input_size=(1, channels, height, width))
    full = count_macs(nn.Conv2d(channels, channels, 3, padding=1), input_size=(1, channels, height, width))
    assert separable == (9 * channels + channels * channels) * height * width
    assert full == 9 * channels * channels * height * width


def test_eca_kernel_size_follows_the_papers_rule():
    # k = nearest odd of (log2 C + 1) / 2, as in the ECA reference code
    assert [eca_kernel_size(c) for c in (16, 64, 128, 256, 512)] == [3, 3, 5, 5, 5]


def test_eca_equals_a_hand_written_one_dimensional_channel_convolution():
    torch.manual_seed(1)
    block = ECA(channels=16, kernel_size=5).eval()
    x = torch.randn(2, 16, 6, 7)
    pooled = x.mean(dim=(2, 3))                                    # (N, C)
    kernel = block.conv.weight.reshape(1, 1, 5)                    # the (k, 1) Conv2d as a Conv1d
    gate = torch.sigmoid(F.conv1d(pooled[:, None, :], kernel, block.conv.bias, padding=2))[:, 0]  # (N, C)
    expected = x * gate[:, :, None, None]
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_down_halves_and_up_restores_odd_sizes():
    down, up = EfficientDown(4, 8), EfficientUp(8, 4, 4)
    x = torch.rand(1, 4, 35, 71)
    deep = down(x)
    assert deep.shape == (1, 8, 18, 36)
    assert up(deep, x).shape == (1, 4, 35, 71)


def test_fusion_for_inference_keeps_the_outputs():
    model = tiny_model()
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        before = model(x)
        model.fuse_model(qat=False)
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(before, after, atol=1e-5)


def test_configuration_is_read_back_from_a_state_dict():
    state = EfficientUNet(base_channels=6, depth=2, classes=5).state_dict()
    assert efficient_unet_kwargs(state) == {"in_channels": 3, "classes": 5, "base_channels": 6, "depth": 2}
    assert efficient_unet_kwargs({"fc.weight": torch.zeros(2, 2)}) == {}


def test_cost_grows_with_the_base_width():
    small = count_macs(EfficientUNet(base_channels=4, depth=3), input_size=(1, 3, 64, 128))
    large = count_macs(EfficientUNet(base_channels=8, depth=3), input_size=(1, 3, 64, 128))
    assert 2 * small < large < 4 * small
