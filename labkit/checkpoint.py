"""Checkpoints of a training run: ``last.pt`` written after every epoch and read back to resume.

``last.pt`` holds the model, optimizer, scheduler, scaler, epoch, best metric, history, every RNG
state and the record of the recipe that wrote it (:func:`recipe_record`), so
``labkit.train.fit(..., resume=True)`` continues after a disconnect (Colab) exactly where it stopped,
on any device: it is read to the CPU, the weights and optimizer state go to the model's device and
each RNG state back to its own device. A checkpoint of another recipe (another architecture,
optimizer or recipe name) is refused with :class:`CheckpointMismatch`, which says what to do.

Example:
    >>> import tempfile, torch
    >>> model = torch.nn.Linear(4, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> path = Path(tempfile.mkdtemp()) / "last.pt"
    >>> write_checkpoint(path, model, optimizer, epoch=3, best_metric=0.5, best_epoch=2, history=[]).name
    'last.pt'
    >>> resume_checkpoint(path, model, optimizer)[0]  # the epoch it stopped after
    3
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from labkit.weight_average import WeightAverage


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    """Restore every RNG on its own device: torch's CPU state from a CPU tensor, and the CUDA states
    (one per GPU that wrote them) only where CUDA is available, for the GPUs present."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy(), *rest))
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_states[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device=index)



class CheckpointMismatch(ValueError):
    """``last.pt`` belongs to another recipe (architecture, optimizer or recipe name): nothing was
    loaded. The message names both recipes, the first difference and what to do."""


def recipe_record(model: nn.Module, optimizer: torch.optim.Optimizer, *, recipe: str | None = None,
                  device=None) -> dict:
    """What a checkpoint records about the recipe that wrote it (plain values, ``weights_only``-safe).

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> recipe_record(model, torch.optim.SGD(model.parameters(), lr=0.1), recipe="FULL-CPU")
        {'model': 'Linear', 'parameters': 10, 'optimizer': 'SGD', 'recipe': 'FULL-CPU', 'device': 'cpu'}
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return {"model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "optimizer": type(optimizer).__name__, "recipe": recipe, "device": torch.device(device).type}


def write_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, scheduler=None,
                     scaler: torch.amp.GradScaler | None = None, epoch: int, best_metric, best_epoch,
                     history: list[dict], weight_average: WeightAverage | None = None,
                     recipe: str | None = None, device=None) -> Path:
    """Save everything :func:`resume_checkpoint` needs to continue after ``epoch`` (RNG states too).

    The file is written beside ``path`` and then renamed, so a disconnect mid-save never leaves a
    broken ``last.pt`` behind. Keys: model, optimizer, lr_scheduler, scaler, epoch, best_metric,
    best_epoch, history, rng (as torchvision's references, plus what picks the best epoch),
    weight_average (the averaged weights, or None) and recipe (:func:`recipe_record`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch, "best_metric": best_metric, "best_epoch": best_epoch,
        "history": history, "rng": _rng_state(),
        "weight_average": weight_average.state_dict() if weight_average is not None else None,
        "recipe": recipe_record(model, optimizer, recipe=recipe, device=device),
    }
    tmp_path = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp_path)
    tmp_path.replace(path)
    return path


def resume_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, scheduler=None,
                      scaler: torch.amp.GradScaler | None = None, weight_average: WeightAverage | None = None,
                      device="cpu", recipe: str | None = None, log: Callable | None = None
                      ) -> tuple[int, list, object, object]:
    """Load a :func:`write_checkpoint` file into model, optimizer, scheduler, scaler, weight average and RNGs.

    The file is read to the CPU; the weights and the optimizer state go to the device the model's
    parameters are on (``device``: the device this run trains on, for the note when the checkpoint
    was written on another kind), each RNG state to its own device. A checkpoint of another recipe
    (:func:`check_recipe`) raises :class:`CheckpointMismatch` before anything is loaded; one written
    before checkpoints recorded their recipe is judged by its weights' names and shapes.

    Returns ``(epoch, history, best_metric, best_epoch)``: training continues at ``epoch + 1``.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    check_recipe(path, state, model, optimizer, recipe=recipe)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])  # torch moves its state to each parameter's device
    if scheduler is not None and state.get("lr_scheduler") is not None:
        scheduler.load_state_dict(state["lr_scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if weight_average is not None:
        if state.get("weight_average") is None:
            raise ValueError(f"{path} was written without a weight average: resume with the ema_decay "
                             "it was trained with (None), or start afresh")
        weight_average.load_state_dict(state["weight_average"])
    _set_rng_state(state["rng"])
    written_on = (state.get("recipe") or {}).get("device")
    here = torch.device(device).type if device is not None else None
    if log and written_on and here and written_on != here:
        log(f"note: {path} was written on {written_on} and resumes on {here}; the weights and optimizer state "
            "carry over, the random numbers of the rest of the run differ from an uninterrupted run")
    return state["epoch"], state["history"], state["best_metric"], state["best_epoch"]


def check_recipe(path, state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 recipe: str | None = None) -> None:
    """Raise :class:`CheckpointMismatch` unless checkpoint ``state`` (read from ``path``) belongs to
    this recipe: the same weight names and shapes, the same optimizer and parameter groups, and the
    same recipe name where both have one. Checkpoints without a record are judged by the first two.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> state = {"model": torch.nn.Linear(4, 3).state_dict(), "optimizer": optimizer.state_dict()}
        >>> try:
        ...     check_recipe("runs/last.pt", state, model, optimizer)
        ... except CheckpointMismatch as error:
        ...     print(str(error)[:119])
        runs/last.pt belongs to another training recipe, so this run cannot resume it: 'weight' is (3, 4) there and (2, 4) here
    """
    record = state.get("recipe") or {}
    ours = recipe_record(model, optimizer, recipe=recipe)
    difference = (_weights_difference(state["model"], model.state_dict())
                  or _optimizer_difference(state.get("optimizer"), optimizer, record.get("optimizer"))
                  or (f"it was recorded as recipe {record['recipe']!r}, this run is {recipe!r}"
                      if record.get("recipe") and recipe and record["recipe"] != recipe else None))
    if difference is None:
        return
    theirs = (f"It holds {record['model']} with {record['parameters']:,} parameters, {record['optimizer']}, "
              f"trained on {record['device']}" + (f" (recipe {record['recipe']!r})" if record.get("recipe") else "")
              if record else "It was written before checkpoints recorded their recipe")
    folder = Path(path).parent
    raise CheckpointMismatch(
        f"{path} belongs to another training recipe, so this run cannot resume it: {difference}. "
        f"{theirs}; this run trains {ours['model']} with {ours['parameters']:,} parameters, {ours['optimizer']}, "
        f"on {ours['device']}" + (f" (recipe {recipe!r})" if recipe else "") + ". Give each recipe its own "
        f"checkpoint folder (checkpoint_dir={folder / '<recipe>'}, or a new OUT_DIR in a notebook) to keep "
        f"both, or start this recipe afresh with RESUME = False (fit(..., resume=False)), which overwrites "
        f"the checkpoints in {folder}.")


def _shape(value) -> tuple:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def _weights_difference(saved: dict, current: dict) -> str | None:
    """The first difference between two state_dicts' names and shapes, in words; None when they fit."""
    missing = [key for key in current if key not in saved]
    extra = [key for key in saved if key not in current]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"it lacks {len(missing)} of this model's weights (e.g. {missing[0]!r})")
        if extra:
            parts.append(f"it has {len(extra)} weights this model lacks (e.g. {extra[0]!r})")
        return " and ".join(parts)
    for key, value in current.items():
        if _shape(saved[key]) != _shape(value):
            return f"{key!r} is {_shape(saved[key])} there and {_shape(value)} here"
    return None


def _optimizer_difference(saved: dict | None, optimizer: torch.optim.Optimizer, saved_name: str | None) -> str | None:
    if saved_name and saved_name != type(optimizer).__name__:
        return f"it was trained with {saved_name}, this run uses {type(optimizer).__name__}"
    if saved is None:
        return None
    saved_groups = [len(group["params"]) for group in saved.get("param_groups", [])]
    groups = [len(group["params"]) for group in optimizer.param_groups]
    if saved_groups != groups:
        return (f"its optimizer has parameter groups of sizes {saved_groups}, this run's {groups} "
                "(another optimizer set-up)")
    return None


