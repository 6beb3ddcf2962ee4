"""Building blocks of U-Net (Ronneberger et al., 2015), in the style of milesial's Pytorch-UNet.

Four parts make the whole network:

- ``DoubleConv``: (conv 3x3 -> BatchNorm -> ReLU) x 2, "same" padding, so H and W are kept.
- ``Down``: max-pool 2x2 (halves H and W), then ``DoubleConv``.
- ``Up``: upsample x2, pad to the skip connection's size, concatenate, ``DoubleConv``.
- ``OutConv``: a 1x1 convolution that maps features to class logits.

Unlike the original paper (valid convolutions, 572 -> 388), every convolution pads, and ``Up`` pads
the upsampled map to the size of its skip connection, so any input size works and the output has
the input's size.

Example:
    >>> import torch
    >>> block = Up(in_channels=32, out_channels=16)
    >>> deep, skip = torch.randn(1, 32, 17, 17), torch.randn(1, 16, 35, 35)
    >>> block(deep, skip).shape
    torch.Size([1, 16, 35, 35])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_input(x: torch.Tensor, in_channels: int, min_size: int, model_name: str) -> None:
    """Raise a ``ValueError`` that names the fix when ``x`` is not an (N, in_channels, H, W) batch.

    Args:
        x: the input batch.
        in_channels: channels the model was built for.
        min_size: smallest H and W the model accepts.
        model_name: name used in the message, e.g. ``"UNet(depth=4)"``.
    """
    shape = tuple(x.shape)
    if x.dim() != 4 or shape[1] != in_channels:
        if x.dim() == 3:
            hint = "add a batch dimension with x.unsqueeze(0)"
        elif x.dim() == 4 and shape[-1] == in_channels:
            hint = "this looks channels-last (N, H, W, C); use x.permute(0, 3, 1, 2)"
        elif x.dim() == 4:
            hint = (f"convert the images to {in_channels} channels or build the model "
                    f"with in_channels={shape[1]}")
        else:
            hint = "pass a batch of images shaped (N, C, H, W)"
        raise ValueError(
            f"{model_name} expected (N, {in_channels}, H, W) input, got {shape}; {hint}"
        )
    if min(shape[-2:]) < min_size:
        raise ValueError(
            f"{model_name} needs H, W >= {min_size}, got {shape}; resize the input"
        )


def pad_to_match(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Pad (or crop) ``x`` so that its H and W equal those of ``reference``.

    After a stride-2 encoder step an odd size is floored (71 -> 35), so upsampling gives back one
    pixel less (35 -> 70) than the skip connection holds (71). Padding splits the difference
    between both sides, like milesial's ``Up``. A negative difference crops, which happens in
    encoders that round up (a ResNet stem turns 571 into 286, upsampled back to 572).

    Args:
        x: tensor of shape (N, C, H, W).
        reference: tensor of shape (N, C', H', W').

    Returns:
        ``x`` with shape (N, C, H', W').
    """
    diff_h = reference.shape[-2] - x.shape[-2]
    diff_w = reference.shape[-1] - x.shape[-1]
    if diff_h == 0 and diff_w == 0:
        return x
    # F.pad order: (left, right, top, bottom); negative values crop.
    return F.pad(x, [diff_w // 2, diff_w - diff_w // 2, diff_h // 2, diff_h - diff_h // 2])


class DoubleConv(nn.Module):
    """(conv 3x3 -> BatchNorm -> ReLU) x 2; keeps H and W.

    The convolutions have no bias because the BatchNorm right after them adds its own.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        mid_channels: channels between the two convolutions (default: ``out_channels``).

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid_channels = mid_channels or out_channels
        ### BEGIN SOLUTION
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Max-pool 2x2, then ``DoubleConv``: halves H and W (rounding down).

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H // 2, W // 2).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Upsample x2, pad to the skip connection's size, concatenate, ``DoubleConv``.

    The upsampling step halves the channels (``in_channels`` -> ``in_channels // 2``) so that,
    concatenated with a skip connection of ``out_channels == in_channels // 2`` channels, the
    ``DoubleConv`` sees ``in_channels`` channels, as in the paper.

    Args:
        in_channels: channels of the deeper (coarser) input.
        out_channels: channels of the skip connection and of the output.
        bilinear: False (default): a learned ``ConvTranspose2d(kernel 2, stride 2)``.
            True: bilinear interpolation followed by a 1x1 convolution that halves the channels;
            fewer parameters and no checkerboard artefacts.

    Shapes: deep (N, in_channels, h, w), skip (N, out_channels, H, W) with H in {2h, 2h + 1}
    -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = False):
        super().__init__()
        upsampled_channels = in_channels // 2
        if bilinear:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, upsampled_channels, kernel_size=1),
            )
        else:
            self.up = nn.ConvTranspose2d(in_channels, upsampled_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(upsampled_channels + out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        x = pad_to_match(self.up(x), skip)
        # Skip first, like milesial: cat([skip, upsampled]).
        return self.conv(torch.cat([skip, x], dim=1))
        ### END SOLUTION


class OutConv(nn.Module):
    """A 1x1 convolution from features to class logits.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
