"""Values recorded from the course's solution, one ``.npz`` per case, shipped inside labkit.

A case holds the inputs (``input.<name>``), the weights the module is loaded with (``state.<key>``),
the solution's outputs (``expected.<name>``) and, where a common mistake has a recognisable result,
that mistake's outputs (``mistake.<name>.<output>``). ``labkit.tools.record_selfcheck`` writes them
from the solution, and the kit's tests check them against it. The files are read
with ``numpy.load(allow_pickle=False)``: plain arrays, nothing executed.

Example:
    >>> case = load_case("up")
    >>> sorted(case.inputs), tuple(case.expected["out"].shape)
    (['skip', 'x'], (1, 4, 9, 11))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

RECORDED_DIR = Path(__file__).with_name("recorded")


@dataclass
class Case:
    """One recorded case: inputs, weights, expected outputs and known mistakes' outputs."""
    inputs: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    mistakes: dict = field(default_factory=dict)  # {mistake: {output: tensor}}


def load_case(name: str, *, folder: Path = RECORDED_DIR) -> Case:
    """Read ``<folder>/<name>.npz`` into a :class:`Case` of CPU tensors."""
    path = folder / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"the self-check data {path.name} is missing from {folder}: reinstall labkit "
                                "(pip install --force-reinstall) or ask your TA for the current release")
    case = Case()
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            kind, _, rest = key.partition(".")
            value = torch.from_numpy(np.array(archive[key]))
            if kind == "mistake":
                mistake, _, output = rest.partition(".")
                case.mistakes.setdefault(mistake, {})[output] = value
            else:
                getattr(case, {"input": "inputs", "state": "state", "expected": "expected"}[kind])[rest] = value
    return case


def save_case(name: str, case: Case, *, folder: Path = RECORDED_DIR) -> Path:
    """Write ``case`` as ``<folder>/<name>.npz`` (used by ``labkit.tools.record_selfcheck``)."""
    arrays = {f"input.{k}": v for k, v in case.inputs.items()}
    arrays |= {f"state.{k}": v for k, v in case.state.items()}
    arrays |= {f"expected.{k}": v for k, v in case.expected.items()}
    arrays |= {f"mistake.{m}.{k}": v for m, outputs in case.mistakes.items() for k, v in outputs.items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    np.savez_compressed(path, **{k: torch.as_tensor(v).detach().cpu().numpy() for k, v in arrays.items()})
    return path
