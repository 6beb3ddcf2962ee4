"""Self-checks for the TODOs students write: the student's grader before the grader.

Each check runs the student's code on fixed inputs and weights and compares the outputs with values
recorded from the course's solution (``recorded/``, :mod:`labkit.selfcheck.recorded`): values, not
just shapes, and the ``state_dict`` layout the TA's check loads strictly. A check prints ``PASS ...``
and returns True, or raises :class:`SelfCheckFailure` (an ``AssertionError``) naming the part, what
differs and what to fix; a TODO still a stub raises its ``NotImplementedError`` unchanged. It never shows
the answer: no formula and no reference forward live here.

``python -m labkit selfcheck 01`` (or ``all``) runs a lab's checks, one line per TODO
(:mod:`labkit.selfcheck.labs`); the notebooks call the same checks.

Example:
    >>> check_dice()  # doctest: +ELLIPSIS
    PASS dice_score: ...
    True
"""
from labkit.selfcheck.efficient import check_efficient_unet, check_eca, check_int8_conversion, check_separable_conv
from labkit.selfcheck.labs import LABS, require_lab, run_lab
from labkit.selfcheck.pruning import check_iterative_prune, check_prune_to
from labkit.selfcheck.quantization import check_affine_qparams, check_fuse_conv_bn, random_conv_bn
from labkit.selfcheck.report import SelfCheckFailure
from labkit.selfcheck.segmentation import (check_basic_block, check_decoder_block, check_dice, check_double_conv,
                                           check_resnet34_unet, check_unet, check_up)

__all__ = ["LABS", "SelfCheckFailure", "check_affine_qparams", "check_basic_block",
           "check_decoder_block", "check_dice", "check_double_conv", "check_eca", "check_efficient_unet",
           "check_fuse_conv_bn", "check_int8_conversion", "check_iterative_prune", "check_prune_to",
           "check_resnet34_unet", "check_separable_conv", "check_unet", "check_up", "random_conv_bn",
           "require_lab", "run_lab"]
