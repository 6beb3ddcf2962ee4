"""Grade a student's own ``network.py`` (the course's hand-in) through the sandbox, metric in the parent.

A check with ``--network path/to/network.py`` does not build a labkit model: the student's
``load_model(MODEL_PATH)`` runs in :class:`~labkit.grading.sandbox.SandboxedModel` (dataset folder
hidden), and :class:`SandboxedNetwork` makes it look like a ``torch.nn.Module`` whose forward sends
the batch to the sandbox and returns the logits. labkit's evaluators then compute Dice / mIoU here,
in the trusted process that alone holds the labels.

Example (a check's evaluate_submission)::

    with sandboxed_network(args.network, args.path, data=args.data, memory=args.memory) as model:
        scores = evaluate_multiclass_segmentation(model, batches, num_classes=8, device="cpu")
    lines += sandbox_lines(model.result)        # isolation, trust boundary, sha256
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from labkit.grading.contract import EXIT_INVALID
from labkit.grading.limits import DEFAULT_MEMORY_BYTES, EnvironmentProblem, FileRefused, parse_memory
from labkit.grading.sandbox import SandboxConfig, SandboxedModel
from labkit.grading.sandbox_budget import cpu_seconds_for, max_processes_for, threads_available, wall_seconds_for


class SandboxedNetwork(nn.Module):
    """``forward(images (N, 3, H, W))`` -> logits ``(N, C, H, W)`` computed by the sandboxed student model."""

    def __init__(self, sandboxed: SandboxedModel):
        super().__init__()
        self.sandboxed = sandboxed

    @property
    def result(self):
        return self.sandboxed.result

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        try:
            logits = self.sandboxed.predict(images.detach().cpu().float().numpy())
        except FileRefused as error:  # the same words as a failure while starting (_raise_for)
            raise FileRefused(f"your network.py could not be graded: {error}") from None
        return torch.from_numpy(logits.copy())


NETWORK_FOLDERS = {1: "network", 2: "network2"}  # Lab 05: the course's ./network/network.py & model_task1.pth
SMOKE_LINE = re.compile(r"^SMOKE_IMAGE_SIZE\s*=\s*\(\s*(\d{1,5})\s*,\s*(\d{1,5})\s*\)", re.MULTILINE)


def network_beside(weights, task: int) -> Path | None:
    """The hand-in's ``network/network.py`` (Task 1) or ``network2/network.py`` (Task 2) beside ``weights``.

    As the course's test: "using your ./network/network.py & model_task1.pth". None when there is
    none; ``FileRefused`` when one is there but is a link or not a file (the check would otherwise
    grade labkit's reference network instead of the student's without a word).

    Example:
        >>> network_beside("/nowhere/model_task1.pth", 1) is None
        True
    """
    path = Path(weights).parent / NETWORK_FOLDERS[task] / "network.py"
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FileRefused(f"{NETWORK_FOLDERS[task]}/network.py beside {Path(weights).name} is a link or not a file; "
                          "hand in the file itself (links are not followed)")
    return path if path.is_file() else None


def smoke_image_size(network) -> tuple[int, int] | None:
    """``(H, W)`` when ``network.py`` says it was trained by a SMOKE run on labkit's synthetic fixture.

    :func:`labkit.grading.network_template.write_network` writes ``SMOKE_IMAGE_SIZE = (64, 128)`` for a
    SMOKE run. Read as text (the file is never imported here), from its first 64 KiB.
    """
    try:
        with open(network, "rb") as handle:
            text = handle.read(65536).decode("utf-8", "replace")
    except OSError:
        return None
    match = SMOKE_LINE.search(text)
    return (int(match[1]), int(match[2])) if match and 0 < int(match[1]) and 0 < int(match[2]) else None


def _raise_for(result) -> None:
    if result.exit_code == EXIT_INVALID:
        error = FileRefused(f"your network.py could not be graded: {result.message}")
        error.details = dict(result.details)   # e.g. {"load_errors": ...} for the verdict's --json
        raise error
    if result.exit_code != 0:
        raise EnvironmentProblem(f"the sandbox failed: {result.message}")


def sandbox_config(*, images: int, image_size, threads: int | None = None, gpu: bool = False,
                   **fields) -> SandboxConfig:
    """A :class:`SandboxConfig` sized for ``images`` images of ``image_size`` (H, W) on ``threads``
    threads (default: the check's share, :func:`~labkit.grading.sandbox_budget.threads_available`).

    Example:
        >>> config = sandbox_config(images=500, image_size=(256, 512), threads=4)
        >>> config.threads, config.cpu_seconds, config.timeout_s, config.max_processes, config.gpu
        (4, 8120, 4060, 64, False)
    """
    threads = threads or threads_available()
    return SandboxConfig(threads=threads, cpu_seconds=cpu_seconds_for(images, image_size),
                         timeout_s=wall_seconds_for(images, image_size, threads=threads),
                         max_processes=max_processes_for(threads), gpu=gpu, **fields)


@contextmanager
def sandboxed_network(network, model_path, *, input_size=(1, 3, 256, 512), data=None,
                      memory=DEFAULT_MEMORY_BYTES, isolation: str = "auto", images: int = 500,
                      image_size=None, threads: int | None = None, gpu: bool = False):
    """Start the student's ``network.py`` + weights in the sandbox; yields a :class:`SandboxedNetwork`.

    ``data`` (the dataset folder) is hidden from the student's code; ``memory`` ("6G" or bytes) is
    the sandbox's address-space cap (not applied with ``gpu``: CUDA reserves more than it uses).
    ``images`` of ``image_size`` (default: ``input_size``'s) size the CPU-time limit and the wall
    clock, ``threads`` the threads (:func:`sandbox_config`); ``gpu`` (``--sandbox-gpu``) binds the
    NVIDIA device nodes and the student's model runs on CUDA. A student's failure (import error,
    wrong ``load_model``, tampering) raises ``FileRefused`` (exit 2); a sandbox that cannot start or
    a GPU that does not work in it, ``EnvironmentProblem`` (exit 3).
    """
    config = sandbox_config(images=images, image_size=tuple(image_size or input_size[2:]), threads=threads, gpu=gpu,
                            memory_bytes=parse_memory(memory), isolation=isolation, hide=(str(data),) if data else ())
    with SandboxedModel(network, model_path, input_size=input_size, config=config) as sandboxed:
        _raise_for(sandboxed.result)
        yield SandboxedNetwork(sandboxed)


def sandbox_lines(result) -> list[str]:
    """What a check prints about a sandboxed run: isolation, the trust boundary and both sha256."""
    return [f"Graded through the sandbox ({result.isolation}). {result.trust_boundary}",
            f"network.py sha256 {result.network_sha256}",
            f"weights sha256 {result.model_sha256}"]
