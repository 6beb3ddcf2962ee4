"""ResNet-20: the course's exact state-dict keys and shapes, pretrained loading, hash checks."""

import hashlib
import importlib

import pytest
import torch
from torch import nn

from labkit.download import ChecksumError, DatasetNotFoundError
from labkit.io import SubmissionError, save_state_dict
resnet20_module = importlib.import_module("labkit.models.resnet20")  # the module, not the function
from labkit.models.resnet20 import load_pretrained, resnet20

# The course's (and chenyaofo/pytorch-cifar-models cifar10_resnet20's) weights, written out by hand.
COURSE_WEIGHT_SHAPES = {
    "conv1.weight": (16, 3, 3, 3),
    "layer1.0.conv1.weight": (16, 16, 3, 3), "layer1.0.conv2.weight": (16, 16, 3, 3),
    "layer1.1.conv1.weight": (16, 16, 3, 3), "layer1.1.conv2.weight": (16, 16, 3, 3),
    "layer1.2.conv1.weight": (16, 16, 3, 3), "layer1.2.conv2.weight": (16, 16, 3, 3),
    "layer2.0.conv1.weight": (32, 16, 3, 3), "layer2.0.conv2.weight": (32, 32, 3, 3),
    "layer2.0.downsample.0.weight": (32, 16, 1, 1),
    "layer2.1.conv1.weight": (32, 32, 3, 3), "layer2.1.conv2.weight": (32, 32, 3, 3),
    "layer2.2.conv1.weight": (32, 32, 3, 3), "layer2.2.conv2.weight": (32, 32, 3, 3),
    "layer3.0.conv1.weight": (64, 32, 3, 3), "layer3.0.conv2.weight": (64, 64, 3, 3),
    "layer3.0.downsample.0.weight": (64, 32, 1, 1),
    "layer3.1.conv1.weight": (64, 64, 3, 3), "layer3.1.conv2.weight": (64, 64, 3, 3),
    "layer3.2.conv1.weight": (64, 64, 3, 3), "layer3.2.conv2.weight": (64, 64, 3, 3),
    "fc.weight": (10, 64),
}
# BatchNorm name -> channels; each has weight, bias, running_mean, running_var, num_batches_tracked
COURSE_BATCHNORMS = {
    "bn1": 16,
    "layer1.0.bn1": 16, "layer1.0.bn2": 16, "layer1.1.bn1": 16, "layer1.1.bn2": 16,
    "layer1.2.bn1": 16, "layer1.2.bn2": 16,
    "layer2.0.bn1": 32, "layer2.0.bn2": 32, "layer2.0.downsample.1": 32,
    "layer2.1.bn1": 32, "layer2.1.bn2": 32, "layer2.2.bn1": 32, "layer2.2.bn2": 32,
    "layer3.0.bn1": 64, "layer3.0.bn2": 64, "layer3.0.downsample.1": 64,
    "layer3.1.bn1": 64, "layer3.1.bn2": 64, "layer3.2.bn1": 64, "layer3.2.bn2": 64,
}


def course_state_dict_shapes() -> dict:
    shapes = dict(COURSE_WEIGHT_SHAPES)
    shapes["fc.bias"] = (10,)
    for name, channels in COURSE_BATCHNORMS.items():
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{suffix}"] = (channels,)
        shapes[f"{name}.num_batches_tracked"] = ()
    return shapes


def test_state_dict_keys_and_shapes_equal_the_course_list():
    ours = {key: tuple(value.shape) for key, value in resnet20().state_dict().items()}
    assert ours == course_state_dict_shapes()
    assert len(ours) == 128


def test_conv_and_linear_weights_count_270896():
    model = resnet20()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sum(layer.weight.numel() for layer in layers) == 270_896 == resnet20_module.CONV_LINEAR_WEIGHTS
    assert len(layers) == len(COURSE_WEIGHT_SHAPES)


def test_forward_and_backward_on_a_cifar_batch():
    model = resnet20()
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert model.conv1.weight.grad is not None


def test_default_url_hash_prefix_is_parsed_as_torch_hub_does():
    assert resnet20_module.DEFAULT_URL.endswith("/resnet/cifar10_resnet20-4118986f.pt")
    assert resnet20_module._hash_prefix("cifar10_resnet20-4118986f.pt") == "4118986f"
    assert resnet20_module._hash_prefix("my_model.pt") is None


def test_load_pretrained_from_a_local_file(tmp_path):
    source = resnet20()
    path = save_state_dict(source, tmp_path / "weights.pt")
    loaded = load_pretrained(path)
    assert torch.equal(loaded.fc.weight, source.fc.weight)


def _published_copy(tmp_path, name_with_hash=True):
    """A state_dict file named like a release file: '<name>-<first 8 hex of its sha256>.pt'."""
    source = resnet20()
    staging = save_state_dict(source, tmp_path / "staging.pt")
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = f"cifar10_resnet20-{prefix}.pt" if name_with_hash else "cifar10_resnet20-00000000.pt"
    staging.rename(mirror / name)
    return source, mirror, name


def test_load_pretrained_downloads_through_the_mirror_and_verifies_the_hash(tmp_path, monkeypatch):
    source, mirror, name = _published_copy(tmp_path)
    monkeypatch.setenv("LABKIT_MIRROR", str(mirror))
    model = load_pretrained(f"https://example.invalid/releases/{name}", cache_dir=tmp_path / "cache",
                            progress=False)
    assert torch.equal(model.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    assert (tmp_path / "cache" / name).is_file()


def test_load_pretrained_rejects_a_file_whose_hash_does_not_match(tmp_path, monkeypatch):
    _, mirror, name = _published_copy(tmp_path, name_with_hash=False)
    monkeypatch.setenv("LABKIT_MIRROR", str(mirror))
    with pytest.raises(ChecksumError, match="00000000"):
        load_pretrained(f"https://example.invalid/{name}", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / name).exists()


def test_load_pretrained_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_MIRROR", str(tmp_path / "no-such-mirror"))
    with pytest.raises(DatasetNotFoundError) as error:
        load_pretrained(cache_dir=tmp_path / "cache", progress=False)
    message = str(error.value)
    assert "cifar10_resnet20-4118986f.pt" in message and str(tmp_path / "cache") in message


def test_load_pretrained_explains_a_file_of_another_architecture(tmp_path):
    path = save_state_dict(nn.Linear(3, 2), tmp_path / "other.pt")
    with pytest.raises(SubmissionError, match="missing keys"):
        load_pretrained(path)
