"""``python -m labkit doctor``: what this machine has, what each lab can run, and known traps.

Every finding is one line: ``ok``, ``warn`` (works, but read the fix) or ``fail`` (a lab cannot run),
each problem with the command that fixes it. Runs offline; exits 1 only when something fails.

Example:
    >>> findings = diagnose(data_root="data")
    >>> {finding.level for finding in findings} <= {"ok", "warn", "fail"}
    True
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Finding:
    level: str      # "ok", "warn" or "fail"
    topic: str
    detail: str
    fix: str = ""


def _versions() -> list[Finding]:
    findings = [Finding("ok" if sys.version_info >= (3, 10) else "fail", "python",
                        f"Python {platform.python_version()} at {sys.executable}",
                        "" if sys.version_info >= (3, 10) else "install Python 3.10 or newer")]
    try:
        import torch
        import torchvision
    except ImportError as error:
        return findings + [Finding("fail", "torch", f"cannot import torch/torchvision: {error}",
                                   "run `make setup` (pins torch==2.14.1, torchvision==0.29.1)")]
    findings.append(Finding("ok", "torch", f"torch {torch.__version__}, torchvision {torchvision.__version__}"))
    try:
        # A torchvision built for another torch imports, then fails at its first compiled op.
        torch.ops.torchvision.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    except (RuntimeError, AttributeError) as error:
        findings.append(Finding("fail", "torch/torchvision", f"torchvision does not match torch ({error})",
                                "reinstall the pair together: pip install -c constraints.txt torch torchvision "
                                "(on Colab: pip install torchvision matching the preinstalled torch)"))
    return findings


def _accelerator(pci_root: str | Path = "/sys/bus/pci/devices") -> list[Finding]:
    """The GPU line: usable (name, memory), none, or present but unusable by torch and why.

    A GPU torch cannot see (driver too old for this torch's CUDA, a CPU-only torch) is a ``warn``:
    ``DEVICE="auto"`` runs the CPU recipes. A GPU torch sees but cannot run (an architecture the
    wheel lacks, a busy or failing device) is a ``fail``: ``"auto"`` picks it and every lab stops.
    """
    import torch

    from labkit.device import DeviceUnusable, cuda_unavailable_fault, nvidia_gpus, probe_device
    if not torch.cuda.is_available():
        present = nvidia_gpus(pci_root)
        if not present:
            return [Finding("ok", "device", "no CUDA GPU: SMOKE mode and the CPU recipes run here; the FULL "
                            "recipes are GPU recipes")]
        fault = cuda_unavailable_fault()
        return [Finding("warn", "device", f"{present} NVIDIA GPU(s) present, but torch {torch.__version__} cannot "
                        f"use them ({fault.cause}): DEVICE=\"auto\" runs the CPU recipes", fault.fix)]
    try:
        probe_device("cuda")
    except DeviceUnusable as error:
        return [Finding("fail", "device", f"CUDA {torch.version.cuda} sees a GPU but cannot run on it "
                        f"({error.fault.kind}: {error.fault.cause}); DEVICE=\"auto\" and --device auto "
                        "pick it and fail", error.fault.fix)]
    free, total = torch.cuda.mem_get_info()
    major, minor = torch.cuda.get_device_capability(0)
    return [Finding("ok", "device", f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)} (sm_{major}{minor}), "
                    f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free")]


def on_colab() -> bool:
    """Google Colab: its ``google.colab`` package (or the release tag Colab sets in the environment)."""
    import importlib.util
    return bool(os.environ.get("COLAB_RELEASE_TAG")) or (
        importlib.util.find_spec("google") is not None and importlib.util.find_spec("google.colab") is not None)


def _runtime() -> list[Finding]:
    """Which runtime this is, and where the labkit that Python imports comes from."""
    import torch

    import labkit
    source = f"labkit from {Path(labkit.__file__).parent}"
    if not on_colab():
        return [Finding("ok", "runtime", f"not Colab (a local Python); {source}")]
    if torch.cuda.is_available():
        try:
            name = torch.cuda.get_device_name(0)
        except Exception as error:  # noqa: BLE001 - the device line says why; this one only names the runtime
            text = str(error).strip()
            name = f"one torch cannot query: {text.splitlines()[0][:120] if text else repr(error)}"
        return [Finding("ok", "runtime", f"Colab with a GPU ({name}); {source}")]
    return [Finding("warn", "runtime", f"Colab without a GPU: FULL mode trains the CPU recipes; {source}",
                    "Runtime > Change runtime type > T4 GPU, then run the notebook's first cell again")]


def _kernel() -> list[Finding]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return [Finding("warn", "kernel", "jupyter_client not installed: notebooks cannot run headless",
                        "pip install -e '.[dev]' (or make setup)")]
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return [Finding("fail", "kernel", "no 'python3' kernel: papermill and nbval cannot start notebooks",
                        f"{sys.executable} -m ipykernel install --sys-prefix --name python3")]
    python = spec.argv[0]
    if python not in ("python", "python3", sys.executable):
        return [Finding("warn", "kernel", f"kernel 'python3' runs {python}, not this interpreter",
                        f"{sys.executable} -m ipykernel install --sys-prefix --name python3")]
    return [Finding("ok", "kernel", f"kernel 'python3' -> {python}")]


def _traps() -> list[Finding]:
    import torch
    findings = []
    if os.environ.get("NO_ALBUMENTATIONS_UPDATE") != "1":
        findings.append(Finding("warn", "albumentations", "albumentations checks PyPI for updates at import "
                                "(slow or hanging offline)", "export NO_ALBUMENTATIONS_UPDATE=1 (make does this)"))
    else:
        findings.append(Finding("ok", "albumentations", "update check disabled"))
    engines = torch.backends.quantized.supported_engines
    usable = [engine for engine in ("x86", "fbgemm", "qnnpack") if engine in engines]
    if usable:
        findings.append(Finding("ok", "quantization", f"engines {usable}, current "
                                f"{torch.backends.quantized.engine!r} (labs 04/05 use x86 or fbgemm)"))
    else:
        findings.append(Finding("fail", "quantization", f"no usable quantized engine in {engines}",
                                "use an x86-64 or ARM build of torch from PyPI"))
    return findings


def _cifar10_check_root(root: Path) -> Path:
    """CIFAR-10 has no ``check_root`` yet: both splits found (either layout), else its error."""
    from labkit.data import cifar10
    for split in cifar10.FILE_SPLITS:
        cifar10.find_layout(root, split)
    return root


def _dataset_checks() -> dict:
    """lab -> (folder under the data root, the dataset module's own "is it here?" question)."""
    from labkit.data import cityscapes, pets
    return {"01/02 Oxford-IIIT Pet": ("oxford-iiit-pet", pets.check_root),
            "03/04 CIFAR-10": ("cifar10", _cifar10_check_root),
            "05 Cityscapes": ("cityscapes", cityscapes.check_root)}


def _datasets(data_root: Path) -> list[Finding]:
    from labkit.download import DatasetNotFoundError
    findings = []
    for lab, (folder, check_root) in _dataset_checks().items():
        root = data_root / folder
        try:
            check_root(root)
        except DatasetNotFoundError as error:
            reason = str(error).splitlines()[0]
            findings.append(Finding("warn", "data", f"{lab}: not at {root} (SMOKE mode still works)",
                                    f"{reason} See data/README.md for how to get it"))
        else:
            findings.append(Finding("ok", "data", f"{lab}: found at {root}"))
    usage = shutil.disk_usage(data_root if data_root.exists() else Path.cwd())
    level = "ok" if usage.free > 10 * 2**30 else "warn"
    findings.append(Finding(level, "disk", f"{usage.free / 2**30:.1f} GiB free",
                            "" if level == "ok" else "the datasets and caches need ~10 GiB; free some space"))
    findings.append(_cache_folder())
    return findings


def _cache_folder() -> Finding:
    """Where ``cache=True`` puts decoded images (a per-user folder, never inside a dataset)."""
    from labkit.data.cache import user_cache_home
    home = user_cache_home()
    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder is created on first use: can its parent be written?
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return Finding("ok", "cache", f"decoded-image caches go to {home}")
    return Finding("warn", "cache", f"{home} cannot be written; caches would fall back to a temporary folder",
                   "set LABKIT_CACHE_DIR to a folder you can write (e.g. on the course's scratch disk)")


def _sandbox() -> list[Finding]:
    """How a student's network.py would run here (labkit.grading.sandbox.isolation_available)."""
    from labkit.grading.sandbox import isolation_available
    available = isolation_available()
    if available["isolation"] == "bubblewrap":
        return [Finding("ok", "sandbox", f"bubblewrap: {available['detail']}")]
    return [Finding("warn", "sandbox", f"limits-only: {available['detail']}",
                    "apt-get install -y bubblewrap (and allow user namespaces) to isolate students' network.py")]


def diagnose(*, data_root: str | Path = "data") -> list[Finding]:
    """All findings, in the order they are printed."""
    findings = _versions()
    if any(f.level == "fail" and f.topic == "torch" for f in findings):
        return findings
    importlib.import_module("torch")
    return findings + _runtime() + _accelerator() + _kernel() + _traps() + _sandbox() + _datasets(Path(data_root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="the folder holding the datasets")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    findings = diagnose(data_root=args.data)
    if args.json:
        print(json.dumps([asdict(finding) for finding in findings], indent=2))
    else:
        for finding in findings:
            print(f"[{finding.level:4}] {finding.topic}: {finding.detail}")
            if finding.fix:
                print(f"       fix: {finding.fix}")
    return 1 if any(finding.level == "fail" for finding in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
