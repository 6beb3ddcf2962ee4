"""Self-checks of Lab 05: ``DepthwiseSeparableConv``, ``ECA``, the ``EfficientUNet`` layout, INT8 conversion.

The conversion check builds a small Task 2 model from the student's blocks, prepares it for QAT,
converts it to INT8 and runs one forward, so that a block that cannot be quantized (a float ``+``
instead of a ``FloatFunctional``) is found before any training, with the block named.

Example:
    >>> check_separable_conv()  # doctest: +ELLIPSIS
      DepthwiseSeparableConv.forward: largest difference ...
    PASS DepthwiseSeparableConv.forward: ...
    True
"""
from __future__ import annotations

import contextlib

import torch

from labkit.selfcheck.module_case import check_course_layout, check_module_case
from labkit.selfcheck.report import SelfCheckFailure, expect, passed, translated_errors

RESIDUAL = ("adds the block's input to its output (a residual): the course's block has none, and in an INT8 model "
            "a float + fails unless it goes through a FloatFunctional")
FLOAT_OP_IN_INT8 = ("{where} does arithmetic with + , * or torch.cat on quantized tensors; an INT8 model needs a "
                    "FloatFunctional for each (self.add = FloatFunctional() in __init__, then self.add.add(a, b), "
                    ".mul(a, b) or .cat([a, b], dim=1) in forward)")
INT8_ADVICE = {
    r"QuantizedCPU|quantized::|Could not run 'aten::|not supported on quantized tensors": FLOAT_OP_IN_INT8,
    r"fuse|Fus": "fuse_model() must fuse every Conv-BN(-ReLU) before prepare_qat",
}


# ----------------------------------------------------------------------------- builders (also recorded)
def build_separable_conv():
    from labkit.models.efficient_unet import DepthwiseSeparableConv
    return DepthwiseSeparableConv(8, 16, stride=2)


def build_separable_conv_same():
    from labkit.models.efficient_unet import DepthwiseSeparableConv
    return DepthwiseSeparableConv(8, 8)


def build_eca():
    from labkit.models.efficient_unet import ECA
    return ECA(16)


def build_small_efficient_unet():
    from labkit.models.efficient_unet import EfficientUNet
    return EfficientUNet(classes=8, base_channels=4, depth=2)


# ----------------------------------------------------------------------------- checks
def check_separable_conv() -> bool:
    """``DepthwiseSeparableConv(8, 16, stride=2)`` and ``(8, 8)`` (eval) on recorded weights and inputs."""
    hint = "the depthwise ConvBNReLU first (one 3x3 filter per channel), then the pointwise 1x1"
    advice = {r"expected input\[.*\] to have \d+ channels": "the pointwise conv ran before the depthwise one: "
              "depthwise first (it keeps the channels), then pointwise (it changes them)",
              r"size of tensor a .* must match|must match the size": RESIDUAL}
    check_module_case("DepthwiseSeparableConv.forward", build_separable_conv, "separable_conv", inputs=("x",),
                      hint=hint, advice=advice)
    check_module_case("DepthwiseSeparableConv.forward", build_separable_conv_same, "separable_conv_same",
                      inputs=("x",), hint=hint, advice=advice, mistakes={"residual": RESIDUAL})
    return passed("DepthwiseSeparableConv.forward: stride 2 (8 -> 16) and stride 1 (8 -> 8), recorded outputs")


def check_eca() -> bool:
    """``ECA(16)`` (eval) on recorded weights and inputs; the product goes through ``self.scale`` (INT8)."""
    hint = ("average-pool to one number per channel, slide self.conv across the channels (view (N, 1, C, 1)), "
            "self.gate, then scale x channel by channel")
    calls = []

    def build_with_probe():
        eca = build_eca()
        eca.scale.activation_post_process.register_forward_hook(lambda *args: calls.append(1))
        return eca

    check_module_case("ECA.forward", build_with_probe, "eca", inputs=("x",), hint=hint,
                      mistakes={"no_gate": "apply self.gate (the sigmoid) to the conv's output",
                                "max_pool": "pool with the mean (self.pool), not the maximum"})
    expect(bool(calls), "ECA.forward", "multiplied without self.scale: an INT8 model needs the FloatFunctional for its "
           "multiplication (self.scale.mul(a, b) where float code would write a * b)")
    return passed("ECA.forward: recorded output, product through self.scale.mul")


def check_efficient_unet() -> bool:
    """The course's EfficientUNet layout; EfficientUNet-4 (depth 2) on an odd (1, 3, 35, 67) as recorded."""
    from labkit.models.efficient_unet import EfficientUNet

    with translated_errors("EfficientUNet", doing="while building it"):
        model = EfficientUNet(classes=8)
    check_course_layout("EfficientUNet", model, "efficient_unet")
    check_module_case("EfficientUNet", build_small_efficient_unet, "efficient_unet_small", inputs=("x",),
                      hint="the blocks pass on their own: check how they are wired", tolerance=1e-4)
    return passed("EfficientUNet: the course's layout; EfficientUNet-4 on (1, 3, 35, 67) as recorded")


@contextlib.contextmanager
def _innermost_module(model: torch.nn.Module, where: list):
    """Keep ``where[-1]`` = the qualified name and class of the innermost module still running."""
    handles = []
    for name, module in model.named_modules():
        label = f"{type(module).__name__} ({name or 'the model'})"
        handles.append(module.register_forward_pre_hook(lambda *args, label=label: where.append(label) and None))
        handles.append(module.register_forward_hook(lambda *args: where.pop() and None))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_int8_conversion() -> bool:
    """A small Task 2 model from the student's blocks: QAT prepare, one step, convert to INT8, one forward."""
    from labkit.quant.qat import convert_to_int8, prepare_qat, quiet_quantization_warnings

    where: list[str] = []
    with translated_errors("INT8 conversion", doing="while building EfficientUNet-4"):
        model = build_small_efficient_unet()
    try:
        with quiet_quantization_warnings(), translated_errors("INT8 conversion", advice=INT8_ADVICE,
                                                               doing="while preparing QAT"):
            qat_model = prepare_qat(model)
            qat_model(torch.rand(2, 3, 32, 64))
            int8_model = convert_to_int8(qat_model)
        with quiet_quantization_warnings(), _innermost_module(int8_model, where), torch.no_grad(), \
                translated_errors("INT8 conversion", advice=INT8_ADVICE, doing="in the INT8 forward"):
            int8_model(torch.rand(1, 3, 32, 64))
    except SelfCheckFailure as failure:
        message = str(failure).split(": ", 1)[1].replace("{where}", where[-1] if where else "a block")
        raise SelfCheckFailure("INT8 conversion", message) from None
    return passed("INT8 conversion: EfficientUNet-4 prepared for QAT, converted to INT8 and run once")
