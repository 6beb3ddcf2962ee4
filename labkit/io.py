"""Safe saving and loading of state dicts — the one loader every check uses.

Loading never unpickles arbitrary objects: ``torch.load(weights_only=True, map_location="cpu")``
after size and format checks, then a strict load into an architecture labkit builds. Every way a
submission can be wrong gets its own message saying what to do.

Example:
    >>> import tempfile, torch
    >>> model = torch.nn.Linear(2, 1)
    >>> path = save_state_dict(model, tempfile.mkdtemp() + "/m.pth")
    >>> load_into(torch.nn.Linear(2, 1), load_state_dict_file(path))
    Linear(in_features=2, out_features=1, bias=True)
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

MAX_FILE_BYTES = 512 * 2**20  # far above any lab model (UNet-64 is ~124 MB); stops zip bombs
HALF_DTYPES = (torch.float16, torch.bfloat16)


class SubmissionError(ValueError):
    """The file cannot be a valid submission (a check exits with code 2)."""


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


def _check_archive(path: Path, max_bytes: int) -> list[str]:
    """Size and format checks before torch.load touches the file; returns notes."""
    if not path.exists():
        raise SubmissionError(f"{path}: file not found; check the path (expected a file saved with "
                              "torch.save(model.state_dict(), path))")
    if path.is_dir():
        raise SubmissionError(f"{path}: is a folder, not a file; pass the .pt/.pth file itself")
    size = path.stat().st_size
    if size == 0:
        raise SubmissionError(f"{path}: file is empty (0 bytes); the save was interrupted — save again")
    if size > max_bytes:
        raise SubmissionError(f"{path}: file is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} "
                              "MiB limit; save only model.state_dict(), not optimizer or history")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            head = handle.read(2)
        kind = "a legacy (pre-1.6) torch.save or raw pickle" if head[:1] == b"\x80" else "not a torch.save file"
        raise SubmissionError(f"{path}: {kind} — expected the zip format that torch.save writes; save "
                              "with torch.save(model.state_dict(), path) in torch >= 1.6")
    notes = []
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            unpacked = sum(entry.file_size for entry in entries)
            if unpacked > max_bytes:
                raise SubmissionError(f"{path}: archive unpacks to {unpacked / 2**20:.0f} MiB, over the "
                                      f"{max_bytes / 2**20:.0f} MiB limit; refusing to load it")
            pickles = [e for e in entries if e.filename.endswith("data.pkl")]
            if not pickles:
                raise SubmissionError(f"{path}: zip file without data.pkl — not written by torch.save")
            if b"cuda" in archive.read(pickles[0]):
                notes.append("tensors were saved from CUDA; loaded onto the CPU (save "
                             "{k: v.cpu() ...} so the course's check, which has no map_location, "
                             "also reads it on a CPU machine)")
    except zipfile.BadZipFile as error:
        raise SubmissionError(f"{path}: damaged zip ({error}); the file is truncated or corrupt — save "
                              "again and re-upload") from error
    return notes


def _is_allowed_value(value) -> bool:
    """Tensors, plus the extras torch.ao INT8 state dicts contain (packed-param tuples, dtypes,
    and ``None`` for the bias of a bias-free quantized conv)."""
    if value is None or isinstance(value, (torch.Tensor, torch.dtype, int, float)):
        return True
    if isinstance(value, (tuple, list)):
        return all(v is None or _is_allowed_value(v) for v in value)
    return False


def load_state_dict_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES,
                         notes: list[str] | None = None, allow_half: bool = True) -> dict:
    """Read a state_dict file safely and return ``{name: tensor}`` on the CPU.

    Raises :class:`SubmissionError` with a specific message for: a missing, empty, oversized,
    truncated or non-zip file; a pickled object (a whole model, or anything hostile) instead of a
    state_dict; a training checkpoint dict; non-tensor values; NaN/Inf weights. fp16/bf16 tensors
    are converted to float32 when ``allow_half`` (a note says so), else refused.
    Notes about what was converted are appended to ``notes`` when given.
    """
    path = Path(path)
    notes = notes if notes is not None else []
    notes.extend(_check_archive(path, max_bytes))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        what = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "global" in line), "")
        raise SubmissionError(
            f"{path}: holds pickled Python objects, not just tensors ({what[:160]}); refused for safety. "
            "Save model.state_dict(), not the model: torch.save(model.state_dict(), path)") from error
    except (RuntimeError, EOFError, OSError) as error:
        raise SubmissionError(f"{path}: cannot be read by torch.load ({str(error).splitlines()[0][:200]}); "
                              "the file is truncated or corrupt — save again") from error
    if isinstance(state, nn.Module):
        raise SubmissionError(f"{path}: holds a whole model; save model.state_dict() instead")
    if not isinstance(state, Mapping):
        raise SubmissionError(f"{path}: holds a {type(state).__name__}, not a state_dict; save "
                              "torch.save(model.state_dict(), path)")
    if {"model", "optimizer"} & set(state) or "state_dict" in state:
        inner = "model" if "model" in state else "state_dict"
        raise SubmissionError(f"{path}: looks like a training checkpoint (keys {sorted(state)[:6]}); "
                              f"save only the weights: torch.save(checkpoint['{inner}'], path)")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not _is_allowed_value(v)]
    if bad:
        raise SubmissionError(f"{path}: entries that are not tensors: {bad[:5]}; a state_dict maps "
                              "parameter names to tensors")
    converted = []
    clean = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.dtype in HALF_DTYPES:
            if not allow_half:
                raise SubmissionError(f"{path}: {key} is {value.dtype}; save float32 weights "
                                      "(model.float().state_dict())")
            converted.append(key)
            value = value.float()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise SubmissionError(f"{path}: {key} contains NaN or Inf values; training diverged — "
                                  "retrain (lower learning rate) and save a finite model")
        clean[key] = value
    if converted:
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
