"""``python -m labkit selfcheck LAB``: every self-check of a lab, one PASS / FAIL / TODO line per TODO.

Exit 0 when all pass, 1 when one fails (the line names the part, what differs and what to fix),
3 when a TODO is still the release's stub (named). The notebooks call :func:`require_lab` before
their training cell, so nobody trains a network that the grader would score differently.

Example:
    >>> run_lab("04", quiet=True)
    0
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

# The check modules themselves, not the package: labkit/selfcheck/__init__.py re-exports from this one.
import labkit.selfcheck.efficient as efficient
import labkit.selfcheck.pruning as pruning
import labkit.selfcheck.quantization as quantization
import labkit.selfcheck.segmentation as segmentation
from labkit.selfcheck.report import SelfCheckFailure, is_todo_stub

UNET_PARTS = [("DoubleConv", segmentation.check_double_conv), ("Up.forward", segmentation.check_up)]
LAB_01 = [("dice_score", segmentation.check_dice), ("DoubleConv", segmentation.check_double_conv),
          ("Up.forward", segmentation.check_up), ("UNet", segmentation.check_unet)]
# Lab 02 builds its decoder from Lab 01's DoubleConv and grades with Lab 01's Dice: those come first.
LABS = {
    "01": LAB_01,
    "02": [(f"{part} (from Lab 01)", check) for part, check in LAB_01[:3]]
          + [("BasicBlock.forward", segmentation.check_basic_block),
             ("DecoderBlock.forward", segmentation.check_decoder_block),
             ("ResNet34UNet", segmentation.check_resnet34_unet)],
    "03": [("prune_to", pruning.check_prune_to), ("iterative_prune", pruning.check_iterative_prune)],
    "04": [("affine_qparams", quantization.check_affine_qparams), ("fuse_conv_bn", quantization.check_fuse_conv_bn)],
    # Lab 05's Task 1 is Lab 01's UNet; Task 2's blocks are checked before Task 1 trains too.
    "05": [(f"{part} (from Lab 01)", check) for part, check in UNET_PARTS]
          + [("DepthwiseSeparableConv.forward", efficient.check_separable_conv), ("ECA.forward", efficient.check_eca),
           ("EfficientUNet", efficient.check_efficient_unet), ("INT8 conversion", efficient.check_int8_conversion)],
}
EXIT_PASSED, EXIT_FAILED, EXIT_TODO = 0, 1, 3


def run_lab(lab: str, *, quiet: bool = False, out=None) -> int:
    """Run every check of ``lab`` (``"01"`` ... ``"05"``); print one line per TODO; return the exit code."""
    out = out or sys.stdout
    failed = todo = False
    for part, check in LABS[lab]:
        details = io.StringIO()
        try:
            with contextlib.redirect_stdout(details):
                check()
            line = f"PASS {part}"
        except SelfCheckFailure as failure:
            failed, line = True, str(failure)
        except NotImplementedError as stub:
            if not is_todo_stub(stub):
                raise
            todo, line = True, f"TODO {part}: not written yet ({stub})"
        if not quiet:
            extra = [text.strip() for text in details.getvalue().splitlines() if "largest difference" in text]
            print(line + (f"  ({extra[-1].split(': ', 1)[-1]})" if extra and line.startswith("PASS") else ""), file=out)
    return EXIT_TODO if todo else EXIT_FAILED if failed else EXIT_PASSED


def require_lab(lab: str, *, enabled: bool = True) -> None:
    """For a notebook's cell before training: run the lab's checks; stop with the failing lines if any.

    ``enabled=False`` (the notebook's ``SELFCHECK`` parameter) lets a TA skip it.
    """
    if not enabled:
        print(f"Lab {lab} self-check skipped (SELFCHECK=False)")
        return
    report = io.StringIO()
    code = run_lab(lab, out=report)
    print(report.getvalue(), end="")
    if code == EXIT_TODO:
        stubs = [line.split(":")[0][5:] for line in report.getvalue().splitlines() if line.startswith("TODO")]
        raise NotImplementedError(f"TODO: implement {', '.join(stubs)} (Lab {lab}'s self-check, before training)")
    if code != EXIT_PASSED:
        problems = [line for line in report.getvalue().splitlines() if not line.startswith("PASS")]
        raise SelfCheckFailure(f"Lab {lab}", "fix this before training, the grader would score it "
                                             "differently:\n  " + "\n  ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit selfcheck", description=__doc__.splitlines()[0])
    parser.add_argument("lab", choices=sorted(LABS) + ["all"], help="the lab whose TODOs to check, or all")
    args = parser.parse_args(argv)
    codes = []
    for lab in sorted(LABS) if args.lab == "all" else [args.lab]:
        started = time.perf_counter()
        print(f"Lab {lab}:")
        codes.append(run_lab(lab))
        print(f"  ({time.perf_counter() - started:.1f} s)")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
