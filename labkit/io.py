"""Safe saving and loading of state dicts — the one loader every check uses.

Loading never unpickles arbitrary objects: the file is inspected once by its declarations
(:mod:`labkit.torch_file`: zip layout, CRCs, the globals data.pkl names, every tensor's dtype and
size), then ``torch.load(weights_only=True, map_location="cpu")``, then a strict load into an
architecture labkit builds. Every way a submission can be wrong gets its own message saying what
to do. ``SubmissionError`` is defined in :mod:`labkit.torch_file` and importable from here.

Example:
    >>> import tempfile, torch
    >>> model = torch.nn.Linear(2, 1)
    >>> path = save_state_dict(model, tempfile.mkdtemp() + "/m.pth")
    >>> load_into(torch.nn.Linear(2, 1), load_state_dict_file(path))
    Linear(in_features=2, out_features=1, bias=True)
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from labkit.torch_file import (ALL_DTYPES, ArchiveReport, Limits, SubmissionError, inspect_torch_file,
                               load_inspected)

MAX_FILE_BYTES = Limits.max_file_bytes  # far above any lab model (UNet-64 is ~124 MB); stops zip bombs
HALF_DTYPES = (torch.float16, torch.bfloat16)


def save_state_dict(model_or_state: nn.Module | Mapping, path: str | Path) -> Path:
    """Save a state_dict with CPU tensors (loads anywhere), writing atomically; returns the path."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    state = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + ".tmp")
    torch.save(state, tmp_path)
    os.replace(tmp_path, path)
    return path


def load_state_dict_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES,
                         notes: list[str] | None = None, allow_half: bool = True) -> dict:
    """Read a state_dict file safely and return ``{name: tensor}`` on the CPU.

    The file is inspected by its declarations (:func:`labkit.torch_file.inspect_torch_file`, any
    dtype) and then loaded by :func:`state_dict_of`. Raises :class:`SubmissionError` with a specific
    message for: a missing, empty, oversized, truncated or non-zip file; a pickled object (a whole
    model, or anything hostile) instead of a state_dict; a training checkpoint dict; non-tensor
    values; NaN/Inf weights. fp16/bf16 tensors are converted to float32 when ``allow_half`` (a note
    says so), else refused. Notes (CUDA tensors, conversions) are appended to ``notes`` when given.
    """
    notes = notes if notes is not None else []
    dtypes = ALL_DTYPES if allow_half else tuple(d for d in ALL_DTYPES if d not in ("float16", "bfloat16"))
    report = inspect_torch_file(path, Limits(max_file_bytes=max_bytes, allowed_dtypes=dtypes))
    notes.extend(report.notes)
    return state_dict_of(report, notes=notes)


def state_dict_of(report: ArchiveReport, *, notes: list[str] | None = None) -> dict:
    """The state_dict of a file already inspected (``report``), fp16/bf16 tensors as float32.

    Loads with :func:`labkit.torch_file.load_inspected` (``torch.load(weights_only=True)``, NaN/Inf
    refused); the file is not inspected again. A note says how many tensors were converted.
    """
    converted, clean = [], {}
    for key, value in load_inspected(report).items():
        if isinstance(value, torch.Tensor) and value.dtype in HALF_DTYPES:
            converted.append(key)
            value = value.float()
        clean[key] = value
    if converted and notes is not None:
        notes.append(f"{len(converted)} fp16/bf16 tensors converted to float32 (e.g. {converted[0]})")
    return clean


def _preview(names, limit: int = 5) -> str:
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_into(model: nn.Module, state_dict: Mapping) -> nn.Module:
    """Strictly load ``state_dict`` into ``model``, explaining any mismatch in plain words."""
    expected = model.state_dict()
    pruned = [k for k in state_dict if k.endswith(("weight_orig", "weight_mask"))]
    if pruned:
        raise SubmissionError(f"keys end in weight_orig/weight_mask ({_preview(pruned, 3)}): call "
                              "torch.nn.utils.prune.remove(module, 'weight') on every pruned layer "
                              "before saving")
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        from labkit.selfcheck.layout import layout_difference, layout_of  # lazily: selfcheck imports the models

        cause = layout_difference(layout_of(state_dict), layout_of(expected))
        raise SubmissionError(f"the architecture does not match ({cause.split(' [')[0]}) — " + "; ".join(parts) +
                              ". Build the model with labkit's constructor and save its state_dict")
    wrong_shapes = [f"{k}: got {tuple(state_dict[k].shape)}, expected {tuple(v.shape)}"
                    for k, v in expected.items()
                    if isinstance(v, torch.Tensor) and isinstance(state_dict[k], torch.Tensor)
                    and v.shape != state_dict[k].shape]
    if wrong_shapes:
        raise SubmissionError(f"wrong shapes ({len(wrong_shapes)}): " + "; ".join(wrong_shapes[:5]) +
                              ". Check the model's width/depth arguments")
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise SubmissionError(f"the state_dict does not load: {str(error).splitlines()[0][:300]}") from error
    return model
