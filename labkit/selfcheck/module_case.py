"""Check a student's module on a recorded case: layout first, then outputs on the recorded weights.

The module is built by the student's code, compared with the recorded ``state_dict`` layout (names
and shapes), loaded with the recorded weights (so how it initialises does not matter), run in eval
mode on the recorded inputs and compared with the solution's outputs. Nothing here computes the
answer: the numbers come from :mod:`labkit.selfcheck.recorded`.

Example (``+ELLIPSIS``: the difference is 0 here, a rounding's worth on another CPU):
    >>> from labkit.models.unet_parts import Up
    >>> difference = check_module_case("Up.forward", lambda: Up(8, 4), "up", inputs=("x", "skip"), hint="")
      Up.forward: largest difference ... (tolerance 1e-05)
    >>> difference <= 1e-5
    True
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from labkit.selfcheck.layout import layout_difference, layout_of
from labkit.selfcheck.recorded import load_case
from labkit.selfcheck.report import compare, expect, translated_errors

TOLERANCE = 1e-5  # float32 on any CPU or GPU; a wrong formula differs by far more


def _describe(tensors) -> str:
    return " and ".join(str(tuple(t.shape)) for t in tensors)


def check_module_case(part: str, build: Callable[[], nn.Module], case_name: str, *, inputs: tuple[str, ...],
                      hint: str, mistakes: Mapping[str, str] | None = None,
                      advice: Mapping[str, str] | None = None, tolerance: float = TOLERANCE,
                      output: str = "out") -> float:
    """Build, compare the layout, load the recorded weights, run, compare; returns the largest difference.

    ``mistakes``: ``{recorded mistake: what to fix}`` for mistakes whose outputs the case recorded.
    ``advice``: ``{regex of an error text: what to fix}`` for errors the student's forward may raise.
    """
    case = load_case(case_name)
    with translated_errors(part, doing="while building the module"):
        module = build()
    problem = layout_difference(layout_of(module), layout_of(case.state))
    expect(problem is None, part, f"its parameters differ from the course's layout: {problem}")
    module.load_state_dict(case.state)
    module.eval()
    arguments = [case.inputs[name] for name in inputs]
    with translated_errors(part, advice=advice, doing=f"on inputs {_describe(arguments)}"), torch.no_grad():
        got = module(*[argument.clone() for argument in arguments])
    recorded_mistakes = {name: (case.mistakes[name][output], text) for name, text in (mistakes or {}).items()
                         if name in case.mistakes}
    difference = compare(part, got, case.expected[output], tolerance=tolerance, hint=hint,
                         what=f"its output on {_describe(arguments)}", mistakes=recorded_mistakes)
    print(f"  {part}: largest difference {difference:.1e} (tolerance {tolerance:g})")
    return difference


def check_course_layout(part: str, model: nn.Module, model_name: str) -> None:
    """The model's ``state_dict`` names and shapes are exactly the course's for ``model_name``."""
    from labkit.selfcheck.layout import course_layouts

    problem = layout_difference(layout_of(model), course_layouts()[model_name])
    expect(problem is None, part, f"the TA's check loads the course's {model_name} strictly and would refuse "
                                  f"this layout: {problem}")
