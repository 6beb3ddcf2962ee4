"""The course's ``state_dict`` layout (key names and shapes) and the first way a model differs from it.

The TA's check builds the course's model and loads a student's file *strictly*: every key name and
shape must match. A model can compute the same function with another layout (two nested
``nn.Sequential``, a renamed attribute, a conv with a bias) and still pass a shape test, then be
refused at grading. :func:`layout_difference` names the first differing key and the likely cause;
the course's layouts for the graded models are recorded from the solution in ``recorded/layouts.json``.

Example:
    >>> print(layout_difference({"double_conv.0.0.weight": (8, 3, 3, 3)}, {"double_conv.0.weight": (8, 3, 3, 3)}))
    nested nn.Sequential: you have double_conv.0.0.weight, the course expects double_conv.0.weight (put the layers in one nn.Sequential, in order) [1 missing, 1 unexpected, 0 of another shape]
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

from labkit.selfcheck.recorded import RECORDED_DIR

LAYOUTS_FILE = RECORDED_DIR / "layouts.json"


def layout_of(state: Mapping) -> dict[str, tuple]:
    """``{key: shape}`` of a ``state_dict`` (or of a model's)."""
    state = state.state_dict() if hasattr(state, "state_dict") else state
    return {key: tuple(getattr(value, "shape", ())) for key, value in state.items()}


@lru_cache(maxsize=None)
def course_layouts() -> dict[str, dict[str, tuple]]:
    """``{model name: {key: shape}}`` of the models the checks build, as the course's solution has them."""
    raw = json.loads(LAYOUTS_FILE.read_text())
    return {name: {key: tuple(shape) for key, shape in layout.items()} for name, layout in raw.items()}


def _without_one_index(key: str) -> set[str]:
    """``a.0.0.weight`` -> ``{a.0.weight}``: the key with one numeric segment removed."""
    parts = key.split(".")
    return {".".join(parts[:i] + parts[i + 1:]) for i, part in enumerate(parts) if part.isdigit()}


def _likely_cause(missing: list[str], unexpected: list[str], got, expected) -> str:
    for key in unexpected:
        for target in missing:
            if target in _without_one_index(key):
                return (f"nested nn.Sequential: you have {key}, the course expects {target} "
                        "(put the layers in one nn.Sequential, in order)")
    for key in unexpected:
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "bias" and key[:-4] + "weight" in expected and len(expected[key[:-4] + "weight"]) == 4:
            return (f"unexpected {key}: the course's convolution has no bias (bias=False; the BatchNorm "
                    "after it adds its own shift)")
    for key in unexpected:
        for target in missing:
            ours, theirs = key.split("."), target.split(".")
            differing = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
            if len(ours) == len(theirs) and len(differing) == 1 and got[key] == expected[target]:
                name = theirs[differing[0]]
                return (f"renamed attribute: you have {key}, the course expects {target} (keep the name "
                        f"{name!r} given in the skeleton)")
    if missing:
        return f"missing {missing[0]} (shape {expected[missing[0]]})" + \
               (f"; you have {unexpected[0]} instead" if unexpected else "")
    return f"unexpected {unexpected[0]} (shape {got[unexpected[0]]}): the course's module has no such parameter"


def layout_difference(got: Mapping[str, tuple], expected: Mapping[str, tuple], *,
                      sizes_may_differ: bool = False) -> str | None:
    """None when ``got`` has exactly ``expected``'s keys and shapes, else the first difference and its likely cause.

    ``sizes_may_differ=True`` (a file whose width and depth are the student's choice, compared with the
    course's default model): only the first key naming a differently built module is reported, no counts.
    """
    missing = [key for key in expected if key not in got]
    unexpected = [key for key in got if key not in expected]
    reshaped = [key for key in expected if key in got and tuple(got[key]) != tuple(expected[key])]
    if sizes_may_differ:
        return _likely_cause(missing, unexpected, got, expected) if unexpected else None
    if not (missing or unexpected or reshaped):
        return None
    counts = f"[{len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape]"
    if missing or unexpected:
        return f"{_likely_cause(missing, unexpected, got, expected)} {counts}"
    key = reshaped[0]
    return f"{key} has shape {tuple(got[key])}, the course expects {tuple(expected[key])} {counts}"
