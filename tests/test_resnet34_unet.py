"""ResNet34UNet: the shared segmentation-model behaviours (``segmentation_model_tester``), and what is
its own: torchvision-compatible encoder names and block layout, loading torchvision weights."""
import pytest
import torch
import torchvision
from torch import nn

from labkit.models.resnet34_unet import ResNet34UNet
from tests.segmentation_model_tester import SegmentationModelTester


def torchvision_encoder_state(state_dict):
    return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


class TestResNet34UNet(SegmentationModelTester):
    sizes = ((572, 572), (571, 571), (255, 257))
    gradient_input = (2, 65, 63)
    min_size = 32

    def make_model(self, seed: int = 0, **kwargs) -> ResNet34UNet:
        torch.manual_seed(seed)
        return ResNet34UNet(**kwargs).eval()

    def test_encoder_keys_and_shapes_equal_torchvision_resnet34_without_fc(self, model):
        expected = torchvision_encoder_state(torchvision.models.resnet34().state_dict())
        ours = model.encoder.state_dict()
        assert list(ours) == list(expected)
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in expected.items()}

    def test_encoder_uses_torchvisions_block_layout(self, model):
        # [3, 4, 6, 3] BasicBlocks; a projection shortcut only where the stage changes resolution.
        assert [len(getattr(model.encoder, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
        assert model.encoder.layer1[0].downsample is None
        assert isinstance(model.encoder.layer2[0].downsample, nn.Sequential)


def test_random_torchvision_weights_load_strictly_into_the_encoder():
    torch.manual_seed(1)
    torchvision_state = torchvision.models.resnet34().state_dict()  # random init, no download
    model = ResNet34UNet()
    model.load_torchvision_encoder(torchvision_state)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, torchvision_state[key]), key


def test_loading_another_networks_weights_fails_loudly():
    with pytest.raises(RuntimeError, match="Missing key"):
        ResNet34UNet().load_torchvision_encoder(torchvision.models.resnet18().state_dict())
