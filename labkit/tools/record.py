"""Record a notebook's key metrics so a batch runner can collect them.

``record(name, value)`` shows the value in the notebook and emits it as a display output with the
MIME type ``application/vnd.labkit.metric+json``; papermill keeps outputs in the executed notebook,
and ``labkit.run`` reads them back (``collect_records``). One mechanism for every notebook.

``check_learning(name, value, at_least=...)`` is a SMOKE notebook's "it learned" assertion: it records
the value and its threshold under ``learning_checks`` before it asserts, so
``benchmarks/smoke_margins.py`` can measure every assertion's margin over seeds and thread counts.

Example:
    >>> record("dice", 0.91, display=False)
    {'dice': 0.91}
    >>> check_learning("test_dice", 0.97, at_least=0.6, display=False)
    {'value': 0.97, 'at_least': 0.6}
"""
from __future__ import annotations

import json
from pathlib import Path

MIME_TYPE = "application/vnd.labkit.metric+json"
LEARNING_CHECKS = "learning_checks"  # the record holding every check_learning() of a notebook
_RECORDED: dict = {}


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value


def record(name: str, value, *, display: bool = True) -> dict:
    """Record ``value`` (a number, string, or JSON-able dict/list) under ``name``."""
    value = _plain(value)
    json.dumps(value)  # fail here, in the notebook, if the value cannot be collected later
    _RECORDED[name] = value
    if display:
        try:
            from IPython.display import display as ipython_display
            ipython_display({MIME_TYPE: {name: value}, "text/plain": f"{name} = {value}"}, raw=True)
        except ImportError:
            print(f"{name} = {value}")
    return {name: value}


def check_learning(name: str, value, *, at_least=None, at_most=None, why: str = "",
                   display: bool = True) -> dict:
    """Assert ``value >= at_least`` (or ``value <= at_most``) after recording both under ``learning_checks``.

    The record comes first, so a failing run still tells ``benchmarks/smoke_margins.py`` how far off
    it was. Returns the recorded check, e.g. ``{'value': 0.97, 'at_least': 0.6}``.
    """
    if (at_least is None) == (at_most is None):
        raise ValueError(f"check_learning({name!r}): give exactly one of at_least= or at_most=")
    bound = ("at_least", _plain(at_least)) if at_least is not None else ("at_most", _plain(at_most))
    check = {"value": _plain(value), bound[0]: bound[1]}
    checks = {**_RECORDED.get(LEARNING_CHECKS, {}), name: check}
    record(LEARNING_CHECKS, checks, display=display)
    passed = check["value"] >= bound[1] if bound[0] == "at_least" else check["value"] <= bound[1]
    if not passed:
        raise AssertionError(f"{name} = {check['value']:.4g}, needs {bound[0].replace('_', ' ')} "
                             f"{bound[1]:.4g}: {why}")
    return check


def recorded() -> dict:
    """Everything recorded in this process so far."""
    return dict(_RECORDED)


def collect_records(notebook_path: str | Path) -> dict:
    """Read the metrics an executed notebook recorded (last value wins)."""
    notebook = json.loads(Path(notebook_path).read_text())
    metrics = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIME_TYPE in data:
                payload = data[MIME_TYPE]
                metrics.update(json.loads(payload) if isinstance(payload, str) else payload)
    return metrics
