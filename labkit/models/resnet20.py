"""CIFAR ResNet-20, with exactly the course's state-dict keys.

The layout (and so every key) matches the public ``chenyaofo/pytorch-cifar-models``
``cifar10_resnet20`` model that the course hands out as the pretrained network:
``conv1.weight``, ``bn1.*``, ``layer{1,2,3}.{0,1,2}.{conv1,bn1,conv2,bn2}.*``,
``layer{2,3}.0.downsample.{0,1}.*``, ``fc.weight``, ``fc.bias``.

``load_pretrained()`` fetches that model (92.60% test accuracy, published by its author) or reads a
local copy; ``labkit.train.train_baseline`` is the recipe for training one yourself.

Example:
    >>> import torch
    >>> model = resnet20()
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    270896
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from labkit.download import ChecksumError, download_url, sha256sum  # core, not labkit.data: models load no dataset
from labkit.io import load_into, load_state_dict_file

# The course's pretrained model. As with torch.hub, the 8 hex digits in the file name are the start of
# the file's SHA-256, and a download is accepted only if they match.
DEFAULT_URL = ("https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/"
               "cifar10_resnet20-4118986f.pt")
PUBLISHED_ACCURACY = 92.60  # % on the CIFAR-10 test set, from the chenyaofo/pytorch-cifar-models README
CONV_LINEAR_WEIGHTS = 270_896  # the weights the course's sparsity counts (conv + linear, no bias/BN)



def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; one ReLU module used twice (as the course's)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem, three stages (16, 32, 64 channels), global pool, fc.

    Args:
        layers: blocks per stage; ``(3, 3, 3)`` is ResNet-20.
        num_classes: size of the output logits.

    Input ``(N, 3, 32, 32)`` (any H, W works), output logits ``(N, num_classes)``.
    """

    def __init__(self, layers: tuple[int, int, int] = (3, 3, 3), num_classes: int = 10):
        super().__init__()
        self.in_channels = 16
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, layers[0], stride=1)
        self.layer2 = self._make_layer(32, layers[1], stride=2)
        self.layer3 = self._make_layer(64, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(conv1x1(self.in_channels, out_channels, stride),
                                       nn.BatchNorm2d(out_channels))
        layers = [BasicBlock(self.in_channels, out_channels, stride, downsample)]
        self.in_channels = out_channels
        layers += [BasicBlock(out_channels, out_channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """The course's ResNet-20 (0.27 M weights in conv and linear layers)."""
    return CifarResNet((3, 3, 3), num_classes=num_classes)


def _hash_prefix(file_name: str) -> str | None:
    """``"cifar10_resnet20-4118986f.pt"`` -> ``"4118986f"`` (torch.hub's naming rule), else None."""
    match = re.search(r"-([a-f0-9]{6,})\.", file_name)
    return match.group(1) if match else None


def default_cache_dir() -> Path:
    """Where downloaded weights go: torch.hub's checkpoint folder, so a copy torch.hub fetched is reused."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_pretrained(path_or_url: str | Path = DEFAULT_URL, *, model: CifarResNet | None = None,
                    cache_dir: str | Path | None = None, progress: bool = True) -> CifarResNet:
    """ResNet-20 with pretrained weights from a local file or a URL (default: the course's model).

    A URL is downloaded once into ``cache_dir`` (default: torch.hub's checkpoint folder) and its
    SHA-256 is checked against the prefix in the file name. ``LABKIT_MIRROR`` may point at a folder
    or server holding the file. Either way the weights are read safely (``weights_only=True``, on
    the CPU) and loaded strictly into ``model`` (a fresh ``resnet20()`` when None).

    Raises ``labkit.download.DatasetNotFoundError`` offline (the message says where to put the
    file), ``ChecksumError`` for a file with the wrong hash, ``labkit.io.SubmissionError`` for a file
    that is not a ResNet-20 state_dict.

    Example::

        model = load_pretrained()                        # download (or reuse) the course's model
        model = load_pretrained("cifar10_resnet20-4118986f.pt")   # a copy you put there by hand
    """
    text = str(path_or_url)
    if "://" in text:
        file_name = Path(urlparse(text).path).name
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = cache_dir / file_name
        hint = (f"The pretrained ResNet-20 could not be fetched. Download {text} on a machine with "
                f"internet access and put it at {path} (or anywhere, then call "
                f"load_pretrained('path/to/{file_name}')), or set LABKIT_MIRROR to a folder holding it.")
        download_url(text, path, progress=progress, hint=hint)
        expected = _hash_prefix(file_name)
        if expected is not None and not sha256sum(path).startswith(expected):
            path.unlink()
            raise ChecksumError(f"{file_name}: SHA-256 does not start with {expected}, so it is not the "
                                f"published file (corrupt or replaced); deleted it. Fetch {text} again.")
    else:
        path = Path(path_or_url)
    model = model if model is not None else resnet20()
    return load_into(model, load_state_dict_file(path))
