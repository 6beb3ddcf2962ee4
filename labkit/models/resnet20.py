"""CIFAR ResNet-20, with exactly the course's state-dict keys.

The layout (and so every key) matches the public ``chenyaofo/pytorch-cifar-models``
``cifar10_resnet20`` model that the course hands out as the pretrained network:
``conv1.weight``, ``bn1.*``, ``layer{1,2,3}.{0,1,2}.{conv1,bn1,conv2,bn2}.*``,
``layer{2,3}.0.downsample.{0,1}.*``, ``fc.weight``, ``fc.bias``.

Example:
    >>> import torch
    >>> model = resnet20()
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

import torch
from torch import nn


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
