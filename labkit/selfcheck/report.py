"""How a self-check speaks: one PASS line, or a failure naming the part, what differs and what to fix.

A self-check never shows the answer: it compares the student's output with values recorded from
the course's solution (:mod:`labkit.selfcheck.recorded`) and prints the tolerance and the largest
difference, as cs231n's gradient checks do. Torch's own error texts are translated into the part
and the fix (:func:`translated_errors`).

Example:
    >>> import torch
    >>> compare("Up.forward", torch.zeros(2), torch.zeros(2), tolerance=1e-5, hint="")
    0.0
    >>> try:
    ...     compare("Up.forward", torch.ones(2), torch.zeros(2), tolerance=1e-5, hint="check the order")
    ... except SelfCheckFailure as failure:
    ...     print(failure)
    FAIL Up.forward: its output differs from the course's by 1.0e+00 (tolerance 1e-05): check the order
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import contextmanager

import torch


class SelfCheckFailure(AssertionError):
    """A TODO gives a wrong result; ``part`` names the function or class (``"Up.forward"``)."""

    def __init__(self, part: str, message: str):
        super().__init__(f"FAIL {part}: {message}")
        self.part = part


def is_todo_stub(error: BaseException) -> bool:
    """True for the release's TODO stub, a ``NotImplementedError`` whose text starts with "TODO" (left as it is)."""
    return isinstance(error, NotImplementedError) and str(error).startswith("TODO")


def expect(condition: bool, part: str, message: str) -> None:
    """Raise :class:`SelfCheckFailure` for ``part`` with ``message`` unless ``condition``."""
    if not condition:
        raise SelfCheckFailure(part, message)


def passed(what: str) -> bool:
    """Print the PASS line and return True (what the notebooks' check cells show)."""
    print(f"PASS {what}")
    return True


def shape_of(value) -> tuple:
    return tuple(value.shape) if hasattr(value, "shape") else ()


def compare(part: str, got: torch.Tensor, expected: torch.Tensor, *, tolerance: float, hint: str,
            what: str = "its output", mistakes: Mapping[str, tuple[torch.Tensor, str]] | None = None) -> float:
    """``got`` must have ``expected``'s shape and match it within ``tolerance``; returns the largest difference.

    Shapes are checked first. On a mismatch, ``mistakes`` (``{name: (output of that mistake, message)}``,
    recorded by applying the mistake to the solution) name the likely cause when one matches.
    """
    expect(shape_of(got) == shape_of(expected), part,
           f"{what} has shape {shape_of(got)}, expected {shape_of(expected)}")
    got = torch.as_tensor(got).detach().double()
    expected = expected.double()
    difference = (got - expected).abs().max().item() if got.numel() else 0.0
    if not difference <= tolerance:  # also catches NaN
        for mistake_output, message in (mistakes or {}).values():
            if shape_of(mistake_output) == shape_of(got) and \
                    (got - mistake_output.double()).abs().max().item() <= tolerance:
                raise SelfCheckFailure(part, f"{what} differs from the course's by {difference:.1e} "
                                             f"(tolerance {tolerance:g}): {message}")
        raise SelfCheckFailure(part, f"{what} differs from the course's by {difference:.1e} "
                                     f"(tolerance {tolerance:g}): {hint}")
    return difference


# A torch error text -> what it means in a student's TODO. Checked in order; the first match wins.
KNOWN_TORCH_ERRORS = (
    (r"Sizes of tensors must match except in dimension", "the tensors you concatenate have different heights "
     "or widths"),
    (r"must match the size of tensor b|The size of tensor a .* must match", "two tensors you combine "
     "elementwise have different shapes"),
    (r"expected input\[.*\] to have (\d+) channels", "a layer receives a different number of channels than "
     "it was built for"),
    (r"mat1 and mat2 shapes cannot be multiplied", "a Linear layer receives a different number of features "
     "than it was built for"),
)


@contextmanager
def translated_errors(part: str, *, advice: Mapping[str, str] | None = None, doing: str = ""):
    """Run a student's code; a torch error becomes a failure naming ``part`` (a TODO stub passes through).

    ``advice`` maps a regular expression of the error text to the fix for this part (checked before
    :data:`KNOWN_TORCH_ERRORS`); the raw torch text is never shown for a known error.
    """
    try:
        yield
    except SelfCheckFailure:
        raise
    except Exception as error:  # the student's code: any error is reported, never a crash of the check
        if is_todo_stub(error):
            raise
        text = str(error)
        for pattern, fix in list((advice or {}).items()) + list(KNOWN_TORCH_ERRORS):
            if re.search(pattern, text):
                raise SelfCheckFailure(part, f"failed {doing}: {fix}".replace("failed : ", "failed: ")) from None
        first_line = text.strip().splitlines()[0][:200] if text.strip() else ""
        raise SelfCheckFailure(part, f"raised {type(error).__name__} {doing}: {first_line}") from None
