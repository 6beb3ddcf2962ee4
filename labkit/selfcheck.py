"""Self-checks for the TODOs students write: known values, a clear PASS line, or an error saying what is wrong.

The lab notebooks call these right after the cell that explains a TODO; they check the student's
code against numbers computed by hand or from the paper's architecture, never against the
student's own functions. Each returns ``True`` and prints ``PASS ...``, or raises ``AssertionError``
(a wrong value) / ``NotImplementedError`` (the TODO is still there) with what to fix.

Example:
    >>> check_dice()  # doctest: +ELLIPSIS
    PASS dice_score: ...
    True
"""
from __future__ import annotations

import torch
from torch import nn

UNET64_PARAMETERS = 31_037_633  # UNet(3 -> 1 class, base 64, depth 4, transposed convs), as in the paper


def _pass(what: str) -> bool:
    print(f"PASS {what}")
    return True


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"FAIL {message}")


def check_double_conv() -> bool:
    """``DoubleConv(3, 64)``: (conv3x3 no bias -> BN -> ReLU) x 2, same H x W, 38,848 parameters."""
    from labkit.models.unet_parts import DoubleConv

    block = DoubleConv(3, 64)
    out = block(torch.randn(2, 3, 17, 19))
    _expect(tuple(out.shape) == (2, 64, 17, 19),
            f"DoubleConv(3, 64) on (2, 3, 17, 19) gave {tuple(out.shape)}, expected (2, 64, 17, 19): "
            "use padding=1 so H and W stay the same")
    count = sum(p.numel() for p in block.parameters())
    # 3*64*9 + 64*64*9 weights (bias=False: BN has its own shift) + 2 BN x (64 weight + 64 bias)
    _expect(count == 3 * 64 * 9 + 64 * 64 * 9 + 2 * 128,
            f"DoubleConv(3, 64) has {count:,} parameters, expected 38,848: two 3x3 convs with bias=False, "
            "each followed by BatchNorm2d and ReLU")
    _expect(bool((out >= 0).all()), "DoubleConv's output has negative values: end with ReLU")
    return _pass("DoubleConv: shape (2, 64, 17, 19), 38,848 parameters, ReLU at the end")


def check_up() -> bool:
    """``Up(128, 64)`` on a coarse (1, 128, 4, 5) map and an odd-sized skip (1, 64, 9, 11) -> (1, 64, 9, 11)."""
    from labkit.models.unet_parts import Up

    out = Up(128, 64)(torch.randn(1, 128, 4, 5), torch.randn(1, 64, 9, 11))
    _expect(tuple(out.shape) == (1, 64, 9, 11),
            f"Up(128, 64) gave {tuple(out.shape)}, expected (1, 64, 9, 11): upsample, pad_to_match the skip, "
            "cat([skip, x], dim=1), then DoubleConv")
    return _pass("Up: odd-sized skip (9, 11) matched")


def check_unet() -> bool:
    """UNet-64 has 31,037,633 parameters and keeps odd input sizes: (1, 3, 97, 75) -> (1, 1, 97, 75)."""
    from labkit.models.unet import UNet

    model = UNet(in_channels=3, classes=1, base_channels=64).eval()
    count = sum(p.numel() for p in model.parameters())
    _expect(count == UNET64_PARAMETERS, f"UNet-64 has {count:,} parameters, expected {UNET64_PARAMETERS:,} "
            "(check DoubleConv's bias=False and Up's channels)")
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 75))
    _expect(tuple(out.shape) == (1, 1, 97, 75), f"UNet on (1, 3, 97, 75) gave {tuple(out.shape)}, "
            "expected (1, 1, 97, 75)")
    return _pass(f"UNet-64: {count:,} parameters, (1, 3, 97, 75) -> (1, 1, 97, 75)")


def check_dice() -> bool:
    """Dice on hand-made 2x4 masks: half overlap, perfect, disjoint, and both empty (-> 1.0)."""
    from labkit.metrics import dice_score

    pred = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]],    # 2 pixels, 1 shared: 2*1/(2+2) = 0.5
                         [[1, 1, 1, 1], [0, 0, 0, 0]],    # identical: 1.0
                         [[1, 0, 0, 0], [0, 0, 0, 0]],    # disjoint: 0.0
                         [[0, 0, 0, 0], [0, 0, 0, 0]]])   # both empty: 1.0 (nothing to find, nothing found)
    true = torch.tensor([[[0, 1, 1, 0], [0, 0, 0, 0]],
                         [[1, 1, 1, 1], [0, 0, 0, 0]],
                         [[0, 0, 0, 0], [0, 0, 0, 1]],
                         [[0, 0, 0, 0], [0, 0, 0, 0]]])
    scores = dice_score(pred, true, reduction="none")
    expected = torch.tensor([0.5, 1.0, 0.0, 1.0])
    _expect(tuple(scores.shape) == (4,), f"dice_score(reduction='none') gave shape {tuple(scores.shape)}, "
            "expected (4,): one score per image")
    _expect(torch.allclose(scores.float(), expected), f"dice_score gave {scores.tolist()}, expected "
            f"{expected.tolist()} (half overlap, perfect, disjoint, both empty -> empty_score)")
    _expect(torch.isclose(dice_score(pred, true).float(), torch.tensor(0.625)), "the mean of the four should be 0.625")
    return _pass("dice_score: 0.5, 1.0, 0.0, empty 1.0; mean 0.625")


def check_affine_qparams() -> bool:
    """``affine_qparams(-1, 3)`` onto [0, 255]: scale 4/255, zero point 64; a positive-only range keeps 0."""
    from labkit.quant.manual import affine_qparams

    scale, zero_point = affine_qparams(torch.tensor(-1.0), torch.tensor(3.0), quant_min=0, quant_max=255)
    _expect(abs(float(scale) - 4 / 255) < 1e-7, f"scale {float(scale):.6f}, expected 4/255 = {4 / 255:.6f}")
    _expect(int(zero_point) == 64 and zero_point.dtype == torch.int32,
            f"zero point {zero_point!r}, expected 64 as int32 (0 - round(-1 / scale))")
    scale, zero_point = affine_qparams(torch.tensor(0.5), torch.tensor(2.0), quant_min=0, quant_max=255)
    _expect(int(zero_point) == 0 and abs(float(scale) - 2 / 255) < 1e-7,
            f"range [0.5, 2] gave scale {float(scale):.6f}, zero point {int(zero_point)}: widen the range to "
            "include 0 first (expected 2/255 and 0)")
    return _pass("affine_qparams: [-1, 3] -> scale 4/255, zero point 64; [0.5, 2] includes 0")


def check_fuse_conv_bn(*, tolerance: float = 1e-5) -> bool:
    """A fused conv equals conv -> BN (eval) to within ``tolerance`` on random input."""
    from labkit.quant.manual import fuse_conv_bn

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    bn.eval()
    x = torch.randn(2, 4, 7, 7)
    weight, bias = fuse_conv_bn(conv, bn)
    with torch.no_grad():
        error = (nn.functional.conv2d(x, weight, bias, padding=1) - bn(conv(x))).abs().max().item()
    _expect(error < tolerance, f"fused conv differs from conv -> BN by {error:.2e} (> {tolerance:g}): "
            "w' = w * gamma / sqrt(var + eps), b' = beta + (b - mean) * gamma / sqrt(var + eps)")
    return _pass(f"fuse_conv_bn: max error {error:.1e} < {tolerance:g}")


def check_basic_block() -> bool:
    """``BasicBlock(64, 128, stride=2)`` (eval) equals relu(bn2(conv2(relu(bn1(conv1 x)))) + downsample(x))."""
    from labkit.models.resnet34_unet import BasicBlock

    torch.manual_seed(0)
    block = BasicBlock(64, 128, stride=2).eval()
    x = torch.randn(2, 64, 15, 17)
    with torch.no_grad():
        out = block(x)
        expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))) + block.downsample(x))
    _expect(tuple(out.shape) == (2, 128, 8, 9), f"BasicBlock(64, 128, stride=2) on (2, 64, 15, 17) gave "
            f"{tuple(out.shape)}, expected (2, 128, 8, 9)")
    error = (out - expected).abs().max().item()
    _expect(error < 1e-5, f"BasicBlock differs from the ResNet formula by {error:.2e}: add the (downsampled) "
            "input AFTER bn2, then ReLU")
    return _pass("BasicBlock: (2, 64, 15, 17) -> (2, 128, 8, 9), residual added before the last ReLU")


def check_decoder_block() -> bool:
    """``DecoderBlock``: nearest x2, pad to the skip (odd 9 x 11), cat([skip, x]); no skip (0 channels) works."""
    import torch.nn.functional as F

    from labkit.models.resnet34_unet import DecoderBlock
    from labkit.models.unet_parts import pad_to_match

    torch.manual_seed(0)
    block = DecoderBlock(32, 16, 16).eval()
    x, skip = torch.randn(1, 32, 4, 5), torch.randn(1, 16, 9, 11)
    with torch.no_grad():
        out = block(x, skip)
        expected = block.conv(torch.cat([skip, pad_to_match(F.interpolate(x, scale_factor=2.0), skip)], dim=1))
    _expect(tuple(out.shape) == (1, 16, 9, 11), f"DecoderBlock gave {tuple(out.shape)}, expected (1, 16, 9, 11)")
    _expect((out - expected).abs().max().item() < 1e-5, "DecoderBlock: upsample with nearest x2, pad_to_match the "
            "skip, then torch.cat([skip, x], dim=1) (skip first) and self.conv")
    last = DecoderBlock(32, 0, 16).eval()
    with torch.no_grad():
        out = last(x, torch.zeros(1, 0, 8, 10))
    _expect(tuple(out.shape) == (1, 16, 8, 10), f"the last DecoderBlock (no skip) gave {tuple(out.shape)}, "
            "expected (1, 16, 8, 10): skip has 0 channels, do not concatenate it")
    return _pass("DecoderBlock: odd skip (9, 11) matched, skip first; the skip-less last block works")
