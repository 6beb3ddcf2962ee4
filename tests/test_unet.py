"""UNet: the shared segmentation-model behaviours (``segmentation_model_tester``) for depths 3 and 4,
and what is UNet's own: the bilinear variant, milesial's parameter count, the layer names."""
import torch
from torch import nn

from labkit.models.unet import UNet
from tests.segmentation_model_tester import SegmentationModelTester


def tiny_unet(seed: int = 0, **kwargs) -> UNet:
    torch.manual_seed(seed)
    return UNet(**{"base_channels": 4, "depth": 3, **kwargs}).eval()


class TestUNet(SegmentationModelTester):
    sizes = ((572, 572), (571, 571), (255, 257))
    configs = ({"depth": 3}, {"depth": 4})
    gradient_kwargs = {"depth": 4}
    gradient_input = (2, 35, 33)
    min_size = 8  # 2 ** depth

    def make_model(self, seed: int = 0, **kwargs) -> UNet:
        return tiny_unet(seed, **kwargs)


def test_bilinear_variant_keeps_the_size_without_transposed_convs():
    model = tiny_unet(bilinear=True)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 75, 61))
    assert logits.shape == (2, 1, 75, 61)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


def test_classic_configuration_has_milesials_parameter_count():
    # milesial's UNet(n_channels=3, n_classes=1, bilinear=False): 31,037,633 parameters.
    model = UNet(in_channels=3, classes=1, base_channels=64, depth=4)
    assert sum(p.numel() for p in model.parameters()) == 31_037_633


def test_layers_are_named_inc_downs_ups_outc():
    model = tiny_unet(depth=4)
    top_level = [name for name, _ in model.named_children()]
    assert top_level == ["inc", "downs", "ups", "outc"]
    assert len(model.downs) == len(model.ups) == 4
