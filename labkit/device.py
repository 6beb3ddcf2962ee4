"""Device choice, naming and seeding, shared by training, evaluation and checks."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available here; "
                           "use device='auto' or 'cpu'")
    return torch.device(device)


def recipe_notice(device: torch.device, *, smoke: bool, recipe: dict) -> str:
    """One message for FULL mode without a CUDA GPU (e.g. a Colab CPU runtime), else ``""``: which
    recipe runs, how to learn how long it takes, and how to get the GPU recipe.

    Example:
        >>> recipe_notice(torch.device("cpu"), smoke=False, recipe={"epochs": 60}).startswith("FULL mode without")
        True
        >>> recipe_notice(torch.device("cpu"), smoke=True, recipe={})
        ''
    """
    if smoke or device.type == "cuda":
        return ""
    return (f"FULL mode without a CUDA GPU: this runs the CPU recipe {recipe}. The README's Results table "
            "gives its minutes on a 2-core CPU, and training prints its own estimate after the first epoch. "
            "For the GPU recipe on Colab: Runtime > Change runtime type > T4 GPU, then run the notebook "
            "from the top.")


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA).

    ``deterministic=True`` also asks cuDNN/torch for deterministic kernels (slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def describe_device(device: str | torch.device) -> str:
    """A short name for a results table: ``"cpu (2 threads)"``, ``"cuda (NVIDIA H100 ...)"``."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({torch.get_num_threads()} threads)"


def cpu_has_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (x86 ``avx512_bf16`` or ``amx_bf16`` flags).

    Where it does, ``fit(..., cpu_bfloat16=True)`` trains a small conv net ~1.6x faster (notebook
    01's CPU recipe, ``benchmarks/bench_pets_recipes.py``); where it does not, bfloat16 is emulated
    and can be slower than float32. Reads Linux's ``/proc/cpuinfo``; elsewhere answers ``False``.

    Example:
        >>> isinstance(cpu_has_bfloat16(), bool)
        True
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})
