"""U-Net (Ronneberger et al., 2015) with "same" padding, so the output has the input's size.

Output convention (the same for every segmentation model in labkit):

- Binary segmentation (Oxford-IIIT Pet): ``classes=1``, ONE logit channel. A pixel is foreground
  when ``sigmoid(logit) > 0.5``, i.e. when ``logit > 0``. Masks are float tensors of 0.0 and 1.0,
  shape (N, 1, H, W), and the loss is ``BCEWithLogitsLoss`` (plus Dice, if you like).
- Multi-class segmentation (Cityscapes, 8 categories): ``classes=8`` gives (N, 8, H, W) logits for
  ``CrossEntropyLoss`` with integer labels of shape (N, H, W); the prediction is ``argmax(dim=1)``.

The model returns logits, never probabilities: the losses above apply sigmoid/softmax themselves,
in a numerically stable way.

Example:
    >>> import torch
    >>> model = UNet(in_channels=3, classes=1, base_channels=16)   # small enough for a CPU
    >>> logits = model(torch.randn(2, 3, 128, 128))
    >>> logits.shape
    torch.Size([2, 1, 128, 128])
    >>> foreground = logits > 0                                      # same as sigmoid > 0.5
"""
from __future__ import annotations

import torch
from torch import nn

from labkit.models.unet_parts import DoubleConv, Down, OutConv, Up, check_input


class UNet(nn.Module):
    """U-Net: an encoder of ``depth`` ``Down`` steps, a decoder of ``depth`` ``Up`` steps.

    Channels double at every ``Down`` step: ``base_channels * 2**i`` at level ``i``. The classic
    network (31.0 M parameters) is ``base_channels=64, depth=4``: 64-128-256-512-1024 channels.
    On a CPU use ``base_channels=16`` (1.9 M parameters, 16x fewer MACs).

    Args:
        in_channels: channels of the input images (3 for RGB).
        classes: output channels: 1 for binary segmentation (one logit, ``logit > 0`` is
            foreground), K for K-class segmentation with ``CrossEntropyLoss``.
        base_channels: channels of the first level; each deeper level doubles them.
        depth: number of down-sampling steps; H and W must be at least ``2**depth``.
        bilinear: upsample with bilinear interpolation + a 1x1 conv instead of a transposed
            convolution (see ``Up``).

    Shapes: (N, in_channels, H, W) -> logits (N, classes, H, W), for any H, W >= 2**depth
    (odd sizes included: 572, 571, 255x257 all work).

    Layers: ``inc``, ``downs[0..depth-1]``, ``ups[0..depth-1]``, ``outc``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        base_channels: int = 64,
        depth: int = 4,
        bilinear: bool = False,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.in_channels = in_channels
        self.classes = classes
        self.depth = depth
        channels = [base_channels * 2**level for level in range(depth + 1)]  # 64, 128, ..., 1024

        self.inc = DoubleConv(in_channels, channels[0])
        self.downs = nn.ModuleList(Down(channels[i], channels[i + 1]) for i in range(depth))
        # Decoder from the deepest level up: up[0] maps 1024 -> 512, ..., up[-1] maps 128 -> 64.
        self.ups = nn.ModuleList(
            Up(channels[i + 1], channels[i], bilinear) for i in reversed(range(depth))
        )
        self.outc = OutConv(channels[0], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, 2**self.depth, f"UNet(depth={self.depth})")
        x = self.inc(x)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.outc(x)
