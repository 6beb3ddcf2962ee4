"""UNet: output size for any input size, variants, the input check, gradients, save/load."""
import pytest
import torch
from torch import nn

from labkit.models.unet import UNet


def tiny_unet(**kwargs) -> UNet:
    torch.manual_seed(0)
    return UNet(**{"base_channels": 4, "depth": 3, **kwargs}).eval()


@pytest.mark.parametrize("depth", [3, 4])
@pytest.mark.parametrize("size", [(572, 572), (571, 571), (255, 257)])
def test_logits_have_the_input_size_for_odd_sizes(depth, size):
    model = tiny_unet(depth=depth)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, *size))
    assert logits.shape == (1, 1, *size)


def test_bilinear_variant_keeps_the_size_without_transposed_convs():
    model = tiny_unet(bilinear=True)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 75, 61))
    assert logits.shape == (2, 1, 75, 61)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


def test_eight_classes_give_eight_logit_channels_for_cross_entropy():
    model = tiny_unet(classes=8)
    logits = model(torch.randn(2, 3, 64, 128))
    assert logits.shape == (2, 8, 64, 128)
    loss = nn.CrossEntropyLoss()(logits, torch.randint(0, 8, (2, 64, 128)))
    assert torch.isfinite(loss)


def test_classic_configuration_has_milesials_parameter_count():
    # milesial's UNet(n_channels=3, n_classes=1, bilinear=False): 31,037,633 parameters.
    model = UNet(in_channels=3, classes=1, base_channels=64, depth=4)
    assert sum(p.numel() for p in model.parameters()) == 31_037_633


def test_layers_are_named_inc_downs_ups_outc():
    model = tiny_unet(depth=4)
    top_level = [name for name, _ in model.named_children()]
    assert top_level == ["inc", "downs", "ups", "outc"]
    assert len(model.downs) == len(model.ups) == 4


def test_wrong_channel_count_error_names_the_expected_shape():
    model = tiny_unet()
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) input, got \(2, 1, 64, 64\)"):
        model(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match="permute"):
        model(torch.randn(2, 64, 64, 3))


def test_input_smaller_than_two_to_the_depth_is_rejected():
    with pytest.raises(ValueError, match=r"H, W >= 8"):
        tiny_unet(depth=3)(torch.randn(1, 3, 4, 64))


def test_every_parameter_receives_a_gradient():
    model = tiny_unet(depth=4).train()
    model(torch.randn(2, 3, 35, 33)).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_unet()
    path = tmp_path / "unet.pth"
    torch.save(model.state_dict(), path)

    fresh = UNet(base_channels=4, depth=3)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    fresh.eval()
    x = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))
