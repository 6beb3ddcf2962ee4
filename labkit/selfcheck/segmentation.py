"""Self-checks of Labs 01 and 02: ``dice_score``, ``DoubleConv``, ``Up``, ``BasicBlock``, ``DecoderBlock``.

Each check builds the student's class, compares its ``state_dict`` layout with the course's, loads
recorded weights and compares its outputs with the solution's (:mod:`labkit.selfcheck.module_case`).
The builders below are also what ``labkit.tools.record_selfcheck`` records with.

Nothing here computes an expected value: it is read from ``labkit/selfcheck/recorded`` (this module
ships in the student edition, and a check that re-derived ``DecoderBlock.forward`` would show the
answer in its source). The hints say in words what the notebook says; the release's
``scan_for_reimplementations`` fails the edition if a function here computed what a TODO asks.

Example:
    >>> check_up()  # doctest: +ELLIPSIS
      Up.forward: largest difference ...
    PASS Up.forward: ...
    True
"""
from __future__ import annotations

from labkit.selfcheck.module_case import check_course_layout, check_module_case
from labkit.selfcheck.recorded import load_case
from labkit.selfcheck.report import compare, expect, passed, translated_errors

UNET64_PARAMETERS = 31_037_633  # UNet(3 -> 1 class, base 64, depth 4, transposed convs), as in the paper
CAT_ORDER = ("concatenates in the other order: the course's layer puts the skip connection's channels first, "
             "then the upsampled ones, and weights trained in the course's layout expect that order")
PAD_ADVICE = "the upsampled x and the odd-sized skip differ by a row or column: pad_to_match(x, skip) before torch.cat"


# ----------------------------------------------------------------------------- builders (also recorded)
def build_double_conv():
    from labkit.models.unet_parts import DoubleConv
    return DoubleConv(3, 8)


def build_double_conv_mid():
    from labkit.models.unet_parts import DoubleConv
    return DoubleConv(4, 6, mid_channels=5)


def build_up():
    from labkit.models.unet_parts import Up
    return Up(8, 4)


def build_small_unet():
    from labkit.models.unet import UNet
    return UNet(in_channels=3, classes=1, base_channels=4, depth=2)


def build_basic_block():
    from labkit.models.resnet34_unet import BasicBlock
    return BasicBlock(8, 16, stride=2)


def build_basic_block_identity():
    from labkit.models.resnet34_unet import BasicBlock
    return BasicBlock(8, 8)


def build_decoder_block():
    from labkit.models.resnet34_unet import DecoderBlock
    return DecoderBlock(8, 4, 6)


def build_last_decoder_block():
    from labkit.models.resnet34_unet import DecoderBlock
    return DecoderBlock(8, 0, 6)


# ----------------------------------------------------------------------------- Lab 01
def check_dice() -> bool:
    """``dice_score`` on recorded masks ``(6, 1, 5, 7)``: per image (``reduction="none"``) and the mean."""
    from labkit.metrics import dice_score

    case = load_case("dice")
    prediction, target = case.inputs["prediction"], case.inputs["target"]
    with translated_errors("dice_score", doing="on masks (6, 1, 5, 7)"):
        per_image = dice_score(prediction.clone(), target.clone(), reduction="none")
        mean = dice_score(prediction.clone(), target.clone())
    mistakes = {"both_empty_zero": (case.mistakes["both_empty_zero"]["none"],
                                    "image 6 has both masks empty: score it empty_score (1.0), nothing to find and "
                                    "nothing found"),
                "whole_batch": (case.mistakes["whole_batch"]["none"],
                                "one Dice for the whole batch: compute one per image (flatten from dim 1), then average")}
    difference = compare("dice_score", per_image, case.expected["none"], tolerance=1e-6, what="reduction='none'",
                         hint="one score per image, 2 x overlap / (pixels in prediction + pixels in target)",
                         mistakes=mistakes)
    compare("dice_score", mean, case.expected["mean"], tolerance=1e-6, what="reduction='mean'",
            hint="the mean of the per-image scores")
    return passed(f"dice_score: 6 recorded mask pairs (one both empty), per image and mean, largest difference "
                  f"{difference:.1e} (tolerance 1e-06)")


def check_double_conv() -> bool:
    """``DoubleConv(3, 8)`` and ``DoubleConv(4, 6, mid_channels=5)``: course layout, recorded outputs."""
    hint = "(conv 3x3, padding 1, no bias -> BatchNorm -> ReLU) twice, in one nn.Sequential named double_conv"
    mistakes = {"no_last_relu": "the output has negative values: end with the second ReLU"}
    check_module_case("DoubleConv", build_double_conv, "double_conv", inputs=("x",), hint=hint, mistakes=mistakes)
    check_module_case("DoubleConv", build_double_conv_mid, "double_conv_mid", inputs=("x",),
                      hint=hint + "; the first conv gives mid_channels, the second out_channels")
    return passed("DoubleConv: course layout (double_conv.0/1/3/4), recorded outputs for (3 -> 8) and (4 -> 5 -> 6)")


def check_up() -> bool:
    """``Up(8, 4)`` on a coarse (1, 8, 4, 5) map and an odd-sized skip (1, 4, 9, 11) -> (1, 4, 9, 11)."""
    check_module_case("Up.forward", build_up, "up", inputs=("x", "skip"),
                      hint="upsample x with self.up, pad_to_match the skip, concatenate skip first, then self.conv",
                      mistakes={"cat_order": CAT_ORDER}, advice={"Sizes of tensors must match": PAD_ADVICE})
    return passed("Up.forward: odd-sized skip (9, 11) matched, recorded output")


def check_unet() -> bool:
    """UNet-64's layout is the course's (31,037,633 parameters); a small UNet keeps odd sizes (1, 3, 19, 23)."""
    from labkit.models.unet import UNet

    with translated_errors("UNet", doing="while building UNet-64"):
        model = UNet(in_channels=3, classes=1, base_channels=64)
    count = sum(p.numel() for p in model.parameters())
    expect(count == UNET64_PARAMETERS, "UNet", f"UNet-64 has {count:,} parameters, expected {UNET64_PARAMETERS:,} "
           "(check DoubleConv's bias=False and Up's channels)")
    check_course_layout("UNet", model, "unet")
    check_module_case("UNet", build_small_unet, "unet_small", inputs=("x",),
                      hint="the parts pass on their own: check how UNet.forward wires them")
    return passed(f"UNet-64: {count:,} parameters in the course's layout; UNet-4 on (1, 3, 19, 23) as recorded")


# ----------------------------------------------------------------------------- Lab 02
def check_basic_block() -> bool:
    """``BasicBlock(8, 16, stride=2)`` and ``BasicBlock(8, 8)`` (eval): recorded outputs."""
    hint = "conv1 -> bn1 -> ReLU -> conv2 -> bn2, add the (downsampled) input, then ReLU"
    advice = {r"size of tensor a .* must match|must match the size": "the residual has another shape than the "
              "block's output: use self.downsample(x) as the identity when it is not None"}
    mistakes = {"relu_before_add": "the ReLU comes after the addition, not before it"}
    check_module_case("BasicBlock.forward", build_basic_block, "basic_block", inputs=("x",), hint=hint,
                      mistakes=mistakes, advice=advice)
    check_module_case("BasicBlock.forward", build_basic_block_identity, "basic_block_identity", inputs=("x",),
                      hint=hint, mistakes=mistakes, advice=advice)
    return passed("BasicBlock.forward: stride 2 with downsample and stride 1 without, recorded outputs")


def check_decoder_block() -> bool:
    """``DecoderBlock(8, 4, 6)`` with an odd skip (1, 4, 9, 11), and the skip-less last block (0 channels)."""
    hint = "upsample x (nearest, x2), pad_to_match the skip, concatenate skip first, then self.conv"
    check_module_case("DecoderBlock.forward", build_decoder_block, "decoder_block", inputs=("x", "skip"), hint=hint,
                      mistakes={"cat_order": CAT_ORDER, "bilinear": "upsample with mode='nearest', not bilinear"},
                      advice={"Sizes of tensors must match": PAD_ADVICE})
    check_module_case("DecoderBlock.forward", build_last_decoder_block, "decoder_block_last", inputs=("x", "skip"),
                      hint="the last block has a skip with 0 channels: do not concatenate it",
                      advice={"Sizes of tensors must match": PAD_ADVICE})
    return passed("DecoderBlock.forward: odd skip (9, 11) matched, skip first; the skip-less last block works")


def check_resnet34_unet() -> bool:
    """The ResNet34-UNet's ``state_dict`` layout is the course's (what ``check_segmentation`` loads)."""
    from labkit.models.resnet34_unet import ResNet34UNet

    with translated_errors("ResNet34UNet", doing="while building it"):
        model = ResNet34UNet(classes=1)
    check_course_layout("ResNet34UNet", model, "resnet34_unet")
    return passed("ResNet34UNet: the course's layout")
