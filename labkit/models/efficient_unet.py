"""EfficientUNet: a U-Net made cheap enough for the Cityscapes low-complexity task (Task 2).

Four ideas cut the cost of a plain U-Net, each in one small class:

- ``DepthwiseSeparableConv``: a 3x3 convolution split into a per-channel (depthwise) 3x3 and a
  1x1 (pointwise) mix. For C_in -> C_out channels the MACs per pixel drop from ``9 C_in C_out``
  to ``9 C_in + C_in C_out`` (about 8x fewer at 64 channels).
- ``ECA`` (Efficient Channel Attention, Wang et al., CVPR 2020): re-weights channels with a
  sigmoid gate computed by a tiny 1-D convolution over the globally pooled channel vector; it
  costs ``k`` weights, not the ``2 C^2 / r`` of a squeeze-and-excitation block.
- ``EfficientUp``: bilinear up-sampling (no weights) instead of a transposed convolution, and an
  *additive* skip: the deep features and the skip are projected by 1x1 convolutions to the same
  width and added, so the next convolution sees C channels instead of the 2C of a concatenation.
- INT8-ready: ``QuantStub``/``DeQuantStub`` around the network, every addition and
  multiplication through ``FloatFunctional`` (eager-mode quantization needs a module for them)
  and Conv-BN-ReLU triples that ``fuse_model`` folds into one layer before quantization.

Example:
    >>> import torch
    >>> model = EfficientUNet(classes=8, base_channels=8)
    >>> model(torch.rand(2, 3, 64, 128)).shape
    torch.Size([2, 8, 64, 128])
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules, fuse_modules_qat

from labkit.models.unet_parts import check_input


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU, named ``0``, ``1``, ``2`` so they can be fused.

    ``relu=False`` leaves out the ReLU (a linear projection). ``groups=in_channels`` makes the
    convolution depthwise. Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 groups: int = 1, relu: bool = True):
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                            padding=kernel_size // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(out_channels)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def fuse(self, *, qat: bool) -> None:
        """Fold BN (and ReLU) into the convolution: one quantized op instead of three."""
        names = ["0", "1", "2"] if len(self) == 3 else ["0", "1"]
        (fuse_modules_qat if qat else fuse_modules)(self, names, inplace=True)


class DepthwiseSeparableConv(nn.Module):
    """Depthwise 3x3 (one filter per channel) then pointwise 1x1, each with BN and ReLU.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1):
        super().__init__()
        self.depthwise = ConvBNReLU(in_channels, in_channels, 3, stride=stride, groups=in_channels)
        self.pointwise = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.pointwise(self.depthwise(x))
        ### END SOLUTION


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel size: the odd number nearest to ``(log2(C) + b) / gamma``."""
    size = int(abs((math.log2(channels) + b) / gamma))
    return size if size % 2 else size + 1


class ECA(nn.Module):
    """Efficient Channel Attention: ``x * sigmoid(conv1d_k(avgpool(x)))`` over the channel axis.

    The 1-D convolution across channels is written as a Conv2d with a (k, 1) kernel on the
    pooled vector viewed as (N, 1, C, 1): the same computation, and Conv2d is the op every
    quantization backend supports. Unlike the paper's it has a bias (one number: a learned
    offset of the gate). A bias-free quantized conv stores ``bias: None`` in its INT8 state_dict,
    which ``labkit.io.load_state_dict_file`` refuses as a non-tensor entry.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int | None = None):
        super().__init__()
        kernel_size = kernel_size or eca_kernel_size(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(1, 1, kernel_size=(kernel_size, 1), padding=(kernel_size // 2, 0))
        self.gate = nn.Sigmoid()
        self.scale = FloatFunctional()  # x * gate, quantizable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        batch, channels = x.shape[:2]
        pooled = self.pool(x).reshape(batch, 1, channels, 1)
        gate = self.gate(self.conv(pooled)).reshape(batch, channels, 1, 1)
        return self.scale.mul(x, gate.expand_as(x))
        ### END SOLUTION


class EfficientDown(nn.Module):
    """Halve H and W with a stride-2 separable conv, a second separable conv, then ECA.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / 2), ceil(W / 2)).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.reduce = DepthwiseSeparableConv(in_channels, out_channels, stride=2)
        self.conv = DepthwiseSeparableConv(out_channels, out_channels)
        self.attention = ECA(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.conv(self.reduce(x)))


class EfficientUp(nn.Module):
    """Project the deep features to ``out_channels`` (1x1), upsample bilinearly to the skip's
    size, add the skip projected by its own 1x1, then a separable conv.

    The projection runs before the upsampling, at a quarter of the pixels. The skip projection
    also lets the skip and the deep path be scaled separately, which INT8 needs (``add`` has one
    output scale).

    Shapes: deep (N, in_channels, h, w), skip (N, skip_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.project_deep = ConvBNReLU(in_channels, out_channels, 1, relu=False)
        self.project_skip = ConvBNReLU(skip_channels, out_channels, 1, relu=False)
        self.merge = FloatFunctional()  # deep + skip, quantizable; add_relu fuses the ReLU
        self.conv = DepthwiseSeparableConv(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.project_deep(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(self.merge.add_relu(x, self.project_skip(skip)))


class EfficientUNet(nn.Module):
    """U-Net of separable convs with ECA, bilinear up-sampling and additive skips; INT8-ready.

    Channels double at every down step: ``base_channels * 2**i`` at level ``i``.

    Args:
        in_channels: 3 for RGB.
        classes: output channels (8 Cityscapes categories; ``argmax(dim=1)`` is the prediction).
        base_channels: width of the first level; the cost grows about with its square.
        depth: number of down-sampling steps; H and W must be at least ``2**depth``.

    Layers: ``quant``, ``inc``, ``downs[0..depth-1]``, ``ups[0..depth-1]``, ``outc``, ``dequant``.
    Shapes: (N, in_channels, H, W) -> logits (N, classes, H, W).

    For INT8: ``labkit.quant.qat.prepare_qat`` calls ``fuse_model`` and inserts fake quantization;
    ``convert_to_int8`` turns the trained model into quantized layers (``quant`` converts the
    float input, ``dequant`` returns float logits).
    """

    def __init__(self, in_channels: int = 3, classes: int = 8, base_channels: int = 16, depth: int = 4):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.in_channels = in_channels
        self.classes = classes
        self.depth = depth
        channels = [base_channels * 2**level for level in range(depth + 1)]

        self.quant = QuantStub()
        self.inc = nn.Sequential(ConvBNReLU(in_channels, channels[0], 3),
                                 DepthwiseSeparableConv(channels[0], channels[0]))
        self.downs = nn.ModuleList(EfficientDown(channels[i], channels[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(EfficientUp(channels[i + 1], channels[i], channels[i])
                                 for i in reversed(range(depth)))
        self.outc = nn.Conv2d(channels[0], classes, kernel_size=1)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, 2**self.depth, f"EfficientUNet(depth={self.depth})")
        x = self.inc(self.quant(x))
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.dequant(self.outc(x))

    def fuse_model(self, *, qat: bool = False) -> "EfficientUNet":
        """Fuse every Conv-BN(-ReLU) in place; ``qat=True`` keeps BN trainable (model in train mode),
        ``qat=False`` folds it for post-training quantization (model in eval mode)."""
        for module in self.modules():
            if isinstance(module, ConvBNReLU):
                module.fuse(qat=qat)
        return self


def efficient_unet_kwargs(state_dict: Mapping) -> dict:
    """Constructor arguments of the EfficientUNet a state_dict (float or INT8) was saved from.

    Read from weight shapes: ``inc.0.0.weight`` is (base_channels, in_channels, 3, 3) and
    ``outc.weight`` is (classes, base_channels, 1, 1); ``depth`` counts ``downs.<i>``. Returns ``{}``
    when the keys are not an EfficientUNet's.

    Example:
        >>> efficient_unet_kwargs(EfficientUNet(base_channels=8, depth=3).state_dict())
        {'in_channels': 3, 'classes': 8, 'base_channels': 8, 'depth': 3}
    """
    first, head = state_dict.get("inc.0.0.weight"), state_dict.get("outc.weight")
    if first is None or head is None or not hasattr(first, "shape") or not hasattr(head, "shape"):
        return {}
    depth = len({key.split(".")[1] for key in state_dict if key.startswith("downs.")})
    return {"in_channels": first.shape[1], "classes": head.shape[0], "base_channels": first.shape[0],
            "depth": depth}
