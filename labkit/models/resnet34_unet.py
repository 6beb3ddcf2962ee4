"""ResNet34-UNet: a ResNet-34 encoder (He et al., 2016) with a U-Net decoder.

The encoder is written here, block by block, and its parameter and buffer names equal those of
``torchvision.models.resnet34()`` without the classifier ``fc``: ``conv1``, ``bn1``,
``layer1``..``layer4`` (``layerK.I.conv1/bn1/conv2/bn2``, ``layerK.0.downsample.0/1``). So
``model.encoder.state_dict()`` has exactly torchvision's keys and shapes, and ImageNet weights
*could* be loaded with ``load_torchvision_encoder``. The course trains from scratch (no pretrained
weights), so nothing is loaded by default and labkit never downloads weights.

The encoder gives five feature maps; the decoder fuses them from the deepest up:

    input           (N,   3, H,     W)
    stem            (N,  64, H/2,   W/2)    conv 7x7 stride 2 + BN + ReLU
    layer1          (N,  64, H/4,   W/4)    after max-pool, 3 BasicBlocks
    layer2          (N, 128, H/8,   W/8)    4 BasicBlocks
    layer3          (N, 256, H/16,  W/16)   6 BasicBlocks
    layer4          (N, 512, H/32,  W/32)   3 BasicBlocks
    decoder: 5 x (upsample x2, pad to the skip, concat, DoubleConv) -> (N, 16, H, W)
    head: 1x1 conv  -> logits (N, classes, H, W)

Sizes are rounded up in the stride-2 steps (571 -> 286), so upsampling can overshoot the skip by a
pixel; ``pad_to_match`` then crops. Any input size of at least 32x32 works.

The output convention is U-Net's (see ``labkit.models.unet``): ``classes=1`` gives one logit per
pixel, ``logit > 0`` is foreground.

Example:
    >>> import torch
    >>> model = ResNet34UNet(in_channels=3, classes=1)
    >>> model(torch.randn(1, 3, 255, 257)).shape
    torch.Size([1, 1, 255, 257])
    >>> sorted(model.encoder.state_dict())[:2]
    ['bn1.bias', 'bn1.num_batches_tracked']
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from labkit.models.unet_parts import DoubleConv, OutConv, check_input, pad_to_match


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


# The same block as labkit.models.resnet20.BasicBlock, kept apart on purpose: students write this one
# in Lab 02, while Labs 03/04 use the given ResNet-20 and must run before that TODO is done.
class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the (projected) input, then ReLU.

    ``downsample`` (1x1 conv stride s + BN) projects the input when the block changes the
    resolution or the channels; the names match torchvision's ``BasicBlock``.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)
        ### END SOLUTION


class ResNet34Encoder(nn.Module):
    """ResNet-34 without its classifier; returns the feature maps of all five scales.

    Args:
        in_channels: channels of the input images. With a value other than 3 the shape of
            ``conv1.weight`` differs from torchvision's, so ImageNet weights no longer fit.

    Shapes: (N, in_channels, H, W) -> [stem (N, 64, H/2, W/2), layer1 (N, 64, H/4, W/4),
    layer2 (N, 128, H/8, W/8), layer3 (N, 256, H/16, W/16), layer4 (N, 512, H/32, W/32)],
    sizes rounded up.
    """

    blocks_per_stage = (3, 4, 6, 3)
    out_channels = (64, 64, 128, 256, 512)  # stem, layer1, ..., layer4

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(64, 64, self.blocks_per_stage[0], stride=1)
        self.layer2 = self._make_stage(64, 128, self.blocks_per_stage[1], stride=2)
        self.layer3 = self._make_stage(128, 256, self.blocks_per_stage[2], stride=2)
        self.layer4 = self._make_stage(256, 512, self.blocks_per_stage[3], stride=2)

    @staticmethod
    def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        # Only the first block of a stage changes stride and channels.
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(stem))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [stem, x1, x2, x3, x4]


class DecoderBlock(nn.Module):
    """Upsample x2 (nearest), pad/crop to the skip's size, concatenate, ``DoubleConv``.

    Args:
        in_channels: channels of the deeper input.
        skip_channels: channels of the skip connection (0 for the last block, which has none and
            upsamples to the input resolution).
        out_channels: channels of the output.

    Shapes: x (N, in_channels, h, w), skip (N, skip_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Nearest-neighbour upsampling has no weights; the DoubleConv after it does the learning.
        ### BEGIN SOLUTION
        x = pad_to_match(F.interpolate(x, scale_factor=2.0, mode="nearest"), skip)
        if skip.shape[1] > 0:
            x = torch.cat([skip, x], dim=1)
        return self.conv(x)
        ### END SOLUTION


class ResNet34UNet(nn.Module):
    """U-Net with a ResNet-34 encoder (21.3 M of its 24.4 M parameters) and a light decoder.

    Args:
        in_channels: channels of the input images (3 for RGB).
        classes: output channels: 1 for binary segmentation (``logit > 0`` is foreground),
            K for K-class segmentation with ``CrossEntropyLoss``.
        decoder_channels: output channels of the five decoder blocks, deepest first; the
            blocks fuse layer3, layer2, layer1, the stem, and finally the input resolution.

    Shapes: (N, in_channels, H, W) -> logits (N, classes, H, W), for any H, W >= 32. (In
    training mode BatchNorm needs more than one value per channel, so a single 32x32 image,
    whose layer4 map is 1x1, needs a batch of 2 or more.)

    Submodules: ``encoder`` (torchvision names), ``decoder`` (5 ``DecoderBlock``), ``head``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ):
        super().__init__()
        if len(decoder_channels) != 5:
            raise ValueError(
                f"decoder_channels needs 5 values (one per encoder scale), got {decoder_channels}"
            )
        self.in_channels = in_channels
        self.classes = classes
        self.encoder = ResNet34Encoder(in_channels)

        # Skips for the five blocks: layer3, layer2, layer1, stem, and none (input resolution).
        skip_channels = list(reversed(ResNet34Encoder.out_channels[:-1])) + [0]
        block_inputs = [ResNet34Encoder.out_channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(block_in, skip, block_out)
            for block_in, skip, block_out in zip(block_inputs, skip_channels, decoder_channels)
        )
        self.head = OutConv(decoder_channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, 32, "ResNet34UNet")
        stem, x1, x2, x3, x4 = self.encoder(x)
        # The last block has no skip: an empty (N, 0, H, W) view carries the input's size.
        skips = [x3, x2, x1, stem, x[:, :0]]
        out = x4
        for block, skip in zip(self.decoder, skips):
            out = block(out, skip)
        return self.head(out)

    def load_torchvision_encoder(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a ``torchvision.models.resnet34`` state dict into ``self.encoder``.

        The classifier (``fc.*``) is dropped; every other key must match (strict loading), so a
        state dict of a different network fails loudly instead of half-loading. The course trains
        from scratch; use this only where pretrained weights are allowed.

        Args:
            state_dict: e.g. ``torchvision.models.resnet34(weights=...).state_dict()``.

        Example:
            >>> import torchvision
            >>> model = ResNet34UNet()
            >>> model.load_torchvision_encoder(torchvision.models.resnet34().state_dict())
        """
        encoder_state = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        self.encoder.load_state_dict(encoder_state, strict=True)
