"""Self-checks of Lab 04: ``affine_qparams`` and ``fuse_conv_bn``, against values recorded from the solution.

Example:
    >>> check_fuse_conv_bn()  # doctest: +ELLIPSIS
    PASS fuse_conv_bn: ...
    True
"""
from __future__ import annotations

import torch
from torch import nn

from labkit.selfcheck.recorded import load_case
from labkit.selfcheck.report import compare, expect, passed, translated_errors

FUSION_MISTAKES = {"bias_dropped": "the conv's own bias was dropped: fold it into the fused bias too",
                   "no_eps": "BatchNorm divides by sqrt(running_var + eps): include eps"}
QPARAM_RANGES = {"qparams_uint8": (0, 255), "qparams_int8": (-128, 127)}  # activations, symmetric-range weights


def random_conv_bn(in_channels: int, out_channels: int, *, stride: int = 1,
                   bias: bool = False) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A 3x3 conv (padding 1) and a BatchNorm in eval mode with trained-looking statistics.

    Example:
        >>> conv, bn = random_conv_bn(4, 6)
        >>> conv.weight.shape, bn.training
        (torch.Size([6, 4, 3, 3]), False)
    """
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride, bias=bias)
    bn = nn.BatchNorm2d(out_channels)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    return conv, bn.eval()


def check_affine_qparams() -> bool:
    """``affine_qparams`` on recorded ranges (negative, positive-only, constant) onto [0, 255] and [-128, 127]."""
    from labkit.quant.affine import affine_qparams

    largest = 0.0
    for name, (quant_min, quant_max) in QPARAM_RANGES.items():
        case = load_case(name)
        low, high = case.inputs["min"], case.inputs["max"]
        with translated_errors("affine_qparams", doing=f"onto [{quant_min}, {quant_max}]"):
            scale, zero_point = affine_qparams(low.clone(), high.clone(), quant_min=quant_min, quant_max=quant_max)
        scale, zero_point = torch.as_tensor(scale), torch.as_tensor(zero_point)
        expect(zero_point.dtype == torch.int32, "affine_qparams",
               f"the zero point has dtype {zero_point.dtype}; the course stores zero points as torch.int32 "
               "(convert with .to(torch.int32) after rounding)")
        expect(scale.dtype == torch.float32, "affine_qparams",
               f"the scale has dtype {scale.dtype}; the course's scales are torch.float32")
        where = f"onto [{quant_min}, {quant_max}]"
        largest = max(largest, compare("affine_qparams", scale, case.expected["scale"], tolerance=1e-7,
                                       what=f"the scale {where}",
                hint="spread the range (widened to include 0) over quant_max - quant_min steps",
                mistakes={"no_zero": (case.mistakes["no_zero"]["scale"], "a range that does not contain 0 must "
                                      "first be widened to include it (0.0 must be exactly representable)")}))
        compare("affine_qparams", zero_point, case.expected["zero_point"], tolerance=0, what=f"the zero point {where}",
                hint="the integer that stands for 0.0, rounded and kept inside [quant_min, quant_max]",
                mistakes={"truncated": (case.mistakes["truncated"]["zero_point"],
                                        "round the zero point (torch.round), do not truncate it")})
    return passed(f"affine_qparams: recorded ranges onto [0, 255] and [-128, 127]; float32 scale (largest difference "
                  f"{largest:.1e}, tolerance 1e-07), int32 zero point (exact)")


def _conv_and_bn(case) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    state = case.state
    conv = nn.Conv2d(state["conv.weight"].shape[1], state["conv.weight"].shape[0], 3, padding=1,
                     bias="conv.bias" in state)
    bn = nn.BatchNorm2d(state["conv.weight"].shape[0])
    conv.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("conv.")})
    bn.load_state_dict({k[3:]: v for k, v in state.items() if k.startswith("bn.")})
    return conv, bn.eval()


def check_fuse_conv_bn() -> bool:
    """``fuse_conv_bn`` on two recorded conv + BN pairs, one conv without a bias and one with."""
    from labkit.quant.manual import fuse_conv_bn

    largest = 0.0
    for name in ("fuse_no_bias", "fuse_bias"):
        case = load_case(name)
        conv, bn = _conv_and_bn(case)
        described = "a conv with a bias" if conv.bias is not None else "a conv without a bias"
        with translated_errors("fuse_conv_bn", doing=f"on {described}"):
            weight, bias = fuse_conv_bn(conv, bn)
        for output, got in (("weight", weight), ("bias", bias)):
            mistakes = {mistake: (outputs[output], FUSION_MISTAKES[mistake])
                        for mistake, outputs in case.mistakes.items() if output in outputs}
            largest = max(largest, compare(
                "fuse_conv_bn", got, case.expected[output], tolerance=1e-5, what=f"the fused {output} ({described})",
                hint="the fused conv must compute bn(conv(x)) with BatchNorm in eval mode (running statistics)",
                mistakes=mistakes))
    return passed(f"fuse_conv_bn: convs with and without a bias, largest difference {largest:.1e} (tolerance 1e-05)")
