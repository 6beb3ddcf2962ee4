"""A CUDA that fails at first use, for CPU tests (issue 36): ``torch.cuda.is_available()`` says True,
and any tensor made on or moved to a CUDA device raises the error a broken GPU raises.

Example::

    with cuda_failing_at_first_use(monkeypatch, NO_KERNEL_IMAGE):
        torch.zeros(1, device="cuda")  # RuntimeError: CUDA error: no kernel image is available ...

In processes a test starts (a check, a batch grader and its checks):
``env=os.environ | broken_cuda_environment(message)``.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

NO_KERNEL_IMAGE = "CUDA error: no kernel image is available for execution on the device"
DRIVER_TOO_OLD = ("The NVIDIA driver on your system is too old (found version 11040). Please update your GPU "
                  "driver by downloading and installing a new version from the URL: "
                  "http://www.nvidia.com/Download/index.aspx")
DEVICE_BUSY = "CUDA error: CUDA-capable device(s) is/are busy or unavailable"


def _names_cuda(value) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    if isinstance(value, str):
        return value.startswith("cuda")
    return False


class FailOnCuda(TorchFunctionMode):
    """Every torch call that names a CUDA device (``device="cuda"``, ``.to("cuda")``, ``.cuda()``) raises."""

    def __init__(self, message: str = NO_KERNEL_IMAGE):
        super().__init__()
        self.message = message

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.device:  # naming a device touches no GPU
            return func(*args, **kwargs)
        if getattr(func, "__name__", "") == "cuda" or any(map(_names_cuda, (*args, *kwargs.values()))):
            raise RuntimeError(self.message)
        return func(*args, **kwargs)


@contextlib.contextmanager
def cuda_failing_at_first_use(monkeypatch, message: str = NO_KERNEL_IMAGE):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with FailOnCuda(message):
        yield


def break_cuda_in_this_process(message: str = NO_KERNEL_IMAGE) -> None:
    """For a whole process (a check run as a command): CUDA available, and failing at first use."""
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    FailOnCuda(message).__enter__()


def broken_cuda_environment(message: str = NO_KERNEL_IMAGE) -> dict:
    """Environment variables under which every Python process started (a check, a batch grader's
    checks) has CUDA failing at first use with ``message``: ``subprocess.run(..., env=os.environ | this)``
    or ``monkeypatch.setenv`` each for a grader that starts checks with the inherited environment."""
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here / "broken_cuda_site"), str(here.parent),
                            *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, "LABKIT_TEST_BROKEN_CUDA": message}
