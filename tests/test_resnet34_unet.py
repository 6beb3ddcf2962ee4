"""ResNet34UNet: torchvision-compatible encoder names, output size, gradients, save/load."""
import pytest
import torch
import torchvision
from torch import nn

from labkit.models.resnet34_unet import ResNet34UNet


@pytest.fixture(scope="module")
def model() -> ResNet34UNet:
    torch.manual_seed(0)
    return ResNet34UNet().eval()


def torchvision_encoder_state(state_dict):
    return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


def test_encoder_keys_and_shapes_equal_torchvision_resnet34_without_fc(model):
    expected = torchvision_encoder_state(torchvision.models.resnet34().state_dict())
    ours = model.encoder.state_dict()
    assert list(ours) == list(expected)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in expected.items()}


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


@pytest.mark.parametrize("size", [(572, 572), (571, 571), (255, 257)])
def test_logits_have_the_input_size_for_odd_sizes(model, size):
    with torch.no_grad():
        logits = model(torch.randn(1, 3, *size))
    assert logits.shape == (1, 1, *size)


def test_eight_classes_give_eight_logit_channels():
    with torch.no_grad():
        logits = ResNet34UNet(classes=8).eval()(torch.randn(1, 3, 64, 128))
    assert logits.shape == (1, 8, 64, 128)


def test_wrong_channel_count_error_names_the_expected_shape(model):
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) input, got \(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(0)
    model = ResNet34UNet().train()
    model(torch.randn(2, 3, 65, 63)).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_state_dict_round_trip_gives_identical_outputs(model, tmp_path):
    path = tmp_path / "resnet34_unet.pth"
    torch.save(model.state_dict(), path)

    fresh = ResNet34UNet()
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    fresh.eval()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_encoder_uses_torchvisions_block_layout(model):
    # [3, 4, 6, 3] BasicBlocks; a projection shortcut only where the stage changes resolution.
    assert [len(getattr(model.encoder, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert model.encoder.layer1[0].downsample is None
    assert isinstance(model.encoder.layer2[0].downsample, nn.Sequential)
