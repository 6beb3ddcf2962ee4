"""Record a notebook's key metrics so a batch runner can collect them.

``record(name, value)`` shows the value in the notebook and emits it as a display output with the
MIME type ``application/vnd.labkit.metric+json``; papermill keeps outputs in the executed notebook,
and ``labkit.run`` reads them back (``collect_records``). One mechanism for every notebook.

Example:
    >>> record("dice", 0.91, display=False)
    {'dice': 0.91}
"""
from __future__ import annotations

import json
from pathlib import Path

MIME_TYPE = "application/vnd.labkit.metric+json"
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
