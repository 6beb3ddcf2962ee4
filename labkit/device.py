"""Device choice, naming and seeding, shared by training, evaluation and checks; and the words for a
GPU that torch cannot use (driver too old, an architecture the wheel lacks, a busy device), so a
broken GPU is reported as the machine's problem with its fix, never blamed on a submission.
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    CUDA asked for where it is not available raises :class:`DeviceUnusable` (a ``RuntimeError``) with
    torch's reason and the fix. Nothing runs on the device here: :func:`probe_device` also tries it.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnusable(str(device), cuda_unavailable_fault())
    return torch.device(device)


def recipe_notice(device: torch.device, *, smoke: bool, recipe: dict) -> str:
    """One message for FULL mode without a CUDA GPU (e.g. a Colab CPU runtime), else ``""``: which
    recipe runs, how to learn how long it takes, and how to get the GPU recipe. When the machine has
    an NVIDIA GPU that torch cannot use (a driver too old for this torch), a first line says so and
    how to fix it (:func:`unusable_gpu_notice`).

    Example:
        >>> "FULL mode without a CUDA GPU" in recipe_notice(torch.device("cpu"), smoke=False, recipe={"epochs": 60})
        True
        >>> recipe_notice(torch.device("cpu"), smoke=True, recipe={})
        ''
    """
    if smoke or device.type == "cuda":
        return ""
    return unusable_gpu_notice() + (
        f"FULL mode without a CUDA GPU: this runs the CPU recipe {recipe}. The README's Results table "
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

    Where it does, ``fit(..., cpu_bfloat16=True)`` trains a small conv net faster (the UNet-16 step
    of notebook 01's CPU recipe: ``benchmarks/bench_cpu_recipe.py --variants``, benchmarks/README.md); where it does not, bfloat16 is emulated
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


# ----------------------------------------------------------------------------- a GPU torch cannot use

# The oldest Linux driver each CUDA major version runs on (NVIDIA's CUDA compatibility table:
# 13.x >= 580.65.06, 12.x >= 525.60.13, 11.x >= 450.80.02).
MIN_DRIVER = {"13": "580.65.06", "12": "525.60.13", "11": "450.80.02"}

# How torch and the CUDA runtime word each fault (lower case), most specific first.
_FAULT_SIGNS = (
    ("driver", ("driver on your system is too old", "driver version is insufficient",
                "cudaerrorinsufficientdriver", "forward compatibility was attempted")),
    ("architecture", ("no kernel image is available", "not compatible with the current pytorch installation",
                      "invalid device function", "cudaerrornokernelimagefordevice")),
    ("busy", ("busy or unavailable", "cudaerrordevicesunavailable", "all cuda-capable devices are busy")),
    ("memory", ("cuda out of memory", "cuda error: out of memory", "cudaerrormemoryallocation",
                "cublas_status_alloc_failed")),
    ("unavailable", ("found no nvidia driver", "no cuda gpus are available", "cuda driver initialization failed",
                     "cuda is not available", "torch not compiled with cuda enabled", "no cuda-capable device")),
    ("cuda", ("cuda error", "cuda driver error", "cuda runtime error", "cudnn_status", "cudnn error",
              "cublas_status", "cusolver", "nvrtc", "cuda kernel errors", "cudaerror", "nccl error")),
)


@dataclass(frozen=True)
class DeviceFault:
    """Why a device cannot run torch here: ``kind`` (driver, architecture, busy, memory, unavailable,
    cuda), ``cause`` (torch's own first line) and ``fix`` (what the person at the machine does)."""
    kind: str
    cause: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)


class DeviceUnusable(RuntimeError):
    """The requested device cannot run torch here. ``fault`` holds the kind, the cause and the fix.

    Example:
        >>> error = DeviceUnusable("cuda", DeviceFault("busy", "CUDA-capable device(s) is/are busy or unavailable",
        ...                                            "free the GPU"))
        >>> str(error).startswith("the cuda device cannot be used: CUDA-capable device(s)")
        True
    """

    def __init__(self, device: str, fault: DeviceFault):
        self.device, self.fault = str(device), fault
        super().__init__(f"the {self.device} device cannot be used: {fault.cause}. Fix: {fault.fix}")


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300].rstrip(". ") if text else type(error).__name__


def _cpu_fallback() -> str:
    return "or run on the CPU meanwhile (--device cpu for a check, DEVICE = \"cpu\" in a notebook)"


def _fix_for(kind: str) -> str:
    cuda = torch.version.cuda
    if kind == "driver":
        need = MIN_DRIVER.get(str(cuda).split(".")[0], "the one your CUDA version needs")
        return (f"install NVIDIA driver {need} or newer (this torch {torch.__version__} is built for CUDA "
                f"{cuda}; `nvidia-smi` shows the driver installed), or install a torch build for the CUDA "
                f"your driver supports; {_cpu_fallback()}")
    if kind == "architecture":
        return (f"this torch build has GPU code for {', '.join(torch.cuda.get_arch_list()) or 'no GPU'} only"
                f"{_gpu_architecture()}: install a torch build that includes this GPU's architecture, or use a "
                f"supported GPU (e.g. a Colab T4, sm_75); {_cpu_fallback()}")
    if kind == "busy":
        return ("another process holds the GPU or it is in exclusive-process mode (`nvidia-smi` shows who): wait "
                f"for it, free it or pick another GPU with CUDA_VISIBLE_DEVICES; {_cpu_fallback()}")
    if kind == "memory":
        return ("the GPU is out of memory (`nvidia-smi` shows other processes holding it): free it, lower "
                f"--batch-size, {_cpu_fallback()}")
    if kind == "unavailable":
        if cuda is None:
            return (f"this torch {torch.__version__} is a CPU-only build: install the CUDA build "
                    f"(pip install -c constraints.txt torch torchvision), {_cpu_fallback()}")
        return (f"check that an NVIDIA GPU and its driver are present (`nvidia-smi`; torch {torch.__version__} "
                f"needs driver {MIN_DRIVER.get(str(cuda).split('.')[0], '')} or newer for CUDA {cuda}), "
                f"{_cpu_fallback()}")
    return (f"the GPU failed (`nvidia-smi` shows its state; a reboot or a driver reinstall may be needed), "
            f"{_cpu_fallback()}")


def _gpu_architecture() -> str:
    """``"; this GPU is Tesla P100 (sm_60)"``, or ``""`` when torch cannot even say that."""
    try:
        major, minor = torch.cuda.get_device_capability(0)
        return f"; this GPU is {torch.cuda.get_device_name(0)} (sm_{major}{minor})"
    except Exception:  # noqa: BLE001 - a broken GPU may refuse this too
        return ""


def device_fault(error: BaseException | str) -> DeviceFault | None:
    """The :class:`DeviceFault` an error (or its text) describes, or ``None`` when it is no device fault.

    A grader calls it on any error raised while evaluating: a fault is the machine's (exit 3), not
    the submission's. A ``DeviceUnusable`` answers its own fault.

    Example:
        >>> device_fault(RuntimeError("CUDA error: no kernel image is available for execution on the device")).kind
        'architecture'
        >>> device_fault(ValueError("size mismatch for inc.weight")) is None
        True
    """
    if isinstance(error, DeviceUnusable):
        return error.fault
    lowered = str(error).lower()
    for kind, signs in _FAULT_SIGNS:
        if any(sign in lowered for sign in signs):
            return DeviceFault(kind, _first_line(error), _fix_for(kind))
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return DeviceFault("cuda", _first_line(error), _fix_for("cuda"))
    return None


def cuda_unavailable_fault() -> DeviceFault:
    """Why ``torch.cuda.is_available()`` is False here: torch's own reason when CUDA initialisation
    says one (``"The NVIDIA driver on your system is too old ..."``), else a CPU-only build or no GPU."""
    if torch.version.cuda is None:
        return DeviceFault("unavailable", f"torch {torch.__version__} is a CPU-only build", _fix_for("unavailable"))
    try:
        torch.cuda.init()
    except Exception as error:  # noqa: BLE001 - the reason is all we want from it
        return device_fault(error) or DeviceFault("unavailable", _first_line(error), _fix_for("unavailable"))
    return DeviceFault("unavailable", "torch.cuda.is_available() is False", _fix_for("unavailable"))


def nvidia_gpus(pci_root: str | Path = "/sys/bus/pci/devices") -> int:
    """How many NVIDIA display/3D controllers this machine's PCI bus shows, whether or not a driver
    (or torch) can use them. Linux only; elsewhere 0.

    Example:
        >>> nvidia_gpus("/nonexistent")
        0
    """
    count = 0
    try:
        devices = list(Path(pci_root).iterdir())
    except OSError:
        return 0
    for device in devices:
        try:
            vendor = (device / "vendor").read_text().strip().lower()
            device_class = (device / "class").read_text().strip().lower()
        except OSError:
            continue
        if vendor == "0x10de" and device_class.startswith(("0x0300", "0x0302")):
            count += 1
    return count


def probe_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``device`` and run a tiny computation there (a matmul and a convolution, read back),
    so a broken GPU fails here, once, with its cause and fix, not in the middle of the work.

    Raises :class:`DeviceUnusable` (a ``RuntimeError``): CUDA asked for but unavailable (with
    torch's reason: driver too old, no driver, CPU-only build), or the GPU failing at first use (an
    architecture the wheel lacks, a busy device, a CUDA error). ``"auto"`` on a machine whose CUDA is
    available but broken raises too: a silent switch to the CPU would hide the fault.

    Example:
        >>> probe_device("cpu")
        device(type='cpu')
    """
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        return resolved
    try:
        x = torch.ones(4, 4, device=resolved)
        image = torch.ones(1, 1, 6, 6, device=resolved)
        kernel = torch.ones(1, 1, 3, 3, device=resolved)
        total = (x @ x).sum() + torch.nn.functional.conv2d(image, kernel).sum()
        if float(total.to("cpu")) != 64.0 + 144.0:
            raise RuntimeError(f"CUDA error: the probe computed {float(total)} instead of 208 (a faulty GPU?)")
    except Exception as error:  # noqa: BLE001 - every failure at first use is the device's
        fault = device_fault(error) or DeviceFault("cuda", _first_line(error), _fix_for("cuda"))
        raise DeviceUnusable(str(resolved), fault) from None
    return resolved


def unusable_gpu_notice(pci_root: str | Path = "/sys/bus/pci/devices") -> str:
    """One line when this machine has an NVIDIA GPU that torch does not use (driver too old, CPU-only
    torch), else ``""``: so ``DEVICE="auto"`` never falls back to the CPU without saying why.

    Example:
        >>> unusable_gpu_notice("/nonexistent")
        ''
    """
    if torch.cuda.is_available() or not nvidia_gpus(pci_root):
        return ""
    fault = cuda_unavailable_fault()
    return f"This machine has an NVIDIA GPU that torch cannot use: {fault.cause}. Fix: {fault.fix}\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m labkit.device [auto|cpu|cuda]``: probe the device in a process of its own and print one
    JSON line, ``{"device": "cuda", "device_fault": null}`` (exit 0) or the fault (exit 3, the checks'
    "environment problem"). A batch grader runs it once before scheduling any check, so a broken GPU
    stops the batch with its cause and fix, and the grader itself never holds a CUDA context.
    """
    import argparse
    import json
    parser = argparse.ArgumentParser(prog="python -m labkit.device", description=main.__doc__.splitlines()[0])
    parser.add_argument("device", nargs="?", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    try:
        resolved = probe_device(args.device)
    except DeviceUnusable as error:
        print(json.dumps({"device": error.device, "device_fault": error.fault.to_dict() | {"device": error.device}}))
        return 3
    print(json.dumps({"device": str(resolved), "device_fault": None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
