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

from contextlib import contextmanager

import torch
from torch import nn

from labkit.grading.contract import EXIT_INVALID
from labkit.grading.limits import DEFAULT_MEMORY_BYTES, EnvironmentProblem, FileRefused, parse_memory
from labkit.grading.sandbox import SandboxConfig, SandboxedModel


class SandboxedNetwork(nn.Module):
    """``forward(images (N, 3, H, W))`` -> logits ``(N, C, H, W)`` computed by the sandboxed student model."""

    def __init__(self, sandboxed: SandboxedModel):
        super().__init__()
        self.sandboxed = sandboxed

    @property
    def result(self):
        return self.sandboxed.result

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.sandboxed.predict(images.detach().cpu().float().numpy())
        return torch.from_numpy(logits.copy())


def _raise_for(result) -> None:
    if result.exit_code == EXIT_INVALID:
        raise FileRefused(f"your network.py could not be graded: {result.message}")
    if result.exit_code != 0:
        raise EnvironmentProblem(f"the sandbox failed: {result.message}")


@contextmanager
def sandboxed_network(network, model_path, *, input_size=(1, 3, 256, 512), data=None,
                      memory=DEFAULT_MEMORY_BYTES, isolation: str = "auto"):
    """Start the student's ``network.py`` + weights in the sandbox; yields a :class:`SandboxedNetwork`.

    ``data`` (the dataset folder) is hidden from the student's code; ``memory`` ("6G" or bytes) is
    the sandbox's address-space cap. A student's failure (import error, wrong ``load_model``,
    tampering) raises ``FileRefused`` (exit 2); a sandbox that cannot start, ``EnvironmentProblem``
    (exit 3).
    """
    config = SandboxConfig(memory_bytes=parse_memory(memory), isolation=isolation,
                           hide=(str(data),) if data else ())
    with SandboxedModel(network, model_path, input_size=input_size, config=config) as sandboxed:
        _raise_for(sandboxed.result)
        yield SandboxedNetwork(sandboxed)


def sandbox_lines(result) -> list[str]:
    """What a check prints about a sandboxed run: isolation, the trust boundary and both sha256."""
    return [f"Graded through the sandbox ({result.isolation}). {result.trust_boundary}",
            f"network.py sha256 {result.network_sha256}",
            f"weights sha256 {result.model_sha256}"]
