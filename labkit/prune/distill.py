"""Distillation from the dense model, and the fine-tuning step both pruning recipes train with.

A pruned network trained on a small training set easily overfits. *Distillation* (Hinton et al.,
2015) lets the dense model, frozen, teach it: the loss mixes the labels' cross-entropy with the KL
divergence between the two models' outputs softened by a temperature ``T``:

    loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

``T^2`` keeps the soft term's gradients on the scale of the hard term's whatever ``T`` is. Gradual
magnitude pruning (:mod:`labkit.prune.gradual`) and channel pruning (:mod:`labkit.prune.channels`)
both train with :func:`train_step` against :func:`frozen_teacher` and log with :func:`progress_row`.

Example:
    >>> import torch
    >>> student = torch.nn.Linear(4, 3)
    >>> teacher = frozen_teacher(student)             # a frozen copy: the dense model
    >>> optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    >>> loss = train_step(student, torch.randn(8, 4), torch.randint(0, 3, (8,)), optimizer, teacher=teacher)
    >>> loss >= 0, teacher.training, any(p.requires_grad for p in teacher.parameters())
    (True, False, False)
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from labkit.evaluate import evaluate_classification


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      alpha: float = 0.7, temperature: float = 4.0) -> torch.Tensor:
    """``(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`` on logits ``(N, classes)``, labels ``(N,)``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> round(distillation_loss(logits, logits, torch.tensor([0]), alpha=1.0).item(), 6)  # same outputs
        0.0
    """
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return hard
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1), reduction="batchmean", log_target=True)
    return (1 - alpha) * hard + alpha * temperature ** 2 * soft


def frozen_teacher(model: nn.Module, *, memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """A copy of ``model`` as it is now (the dense model), in eval mode with no gradients: the teacher.

    Example:
        >>> teacher = frozen_teacher(torch.nn.Linear(2, 2))
        >>> teacher.training, teacher.weight.requires_grad
        (False, False)
    """
    teacher = copy.deepcopy(model).to(memory_format=memory_format).eval()
    teacher.requires_grad_(False)
    return teacher


def train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer, *,
               teacher: nn.Module | None = None, alpha: float = 0.7, temperature: float = 4.0) -> float:
    """One SGD step on a batch ``(N, 3, H, W)``: cross-entropy, or :func:`distillation_loss` against a
    frozen ``teacher`` when one is given. Returns the batch's loss."""
    logits = model(images)
    if teacher is not None:
        with torch.no_grad():
            teacher_logits = teacher(images)
        loss = distillation_loss(logits, teacher_logits, labels, alpha=alpha, temperature=temperature)
    else:
        loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def training_layout(device: torch.device) -> torch.memory_format:
    """The memory format a pruning loop trains in: channels_last on a CPU (NCHW ran at 0.74x of it on a
    2-core CPU, benchmarks/bench_finetune_step.py), the plain layout elsewhere.

    Example:
        >>> training_layout(torch.device("cpu"))
        torch.channels_last
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def evaluation_steps(total_steps: int, evaluations: int, *, validating: bool) -> set[int]:
    """The SGD steps after which a loop evaluates: ``evaluations`` of them evenly spread, the last at
    ``total_steps``; only the last when not ``validating`` (no validation loader) or ``evaluations`` is 0.

    Example:
        >>> sorted(evaluation_steps(10, 4, validating=True)), evaluation_steps(10, 4, validating=False)
        ([3, 5, 8, 10], {10})
    """
    if not validating or evaluations <= 0:
        return {total_steps}
    return {math.ceil(total_steps * (index + 1) / evaluations) for index in range(evaluations)}


def progress_row(model: nn.Module, valid_loader, *, step: int, steps_per_epoch: int, mean_loss: float,
                 started: float, device, measures: Mapping[str, float], shown: str, log=print) -> dict:
    """One history row of a pruning loop: ``epoch``, ``step``, the ``measures`` (e.g. sparsity),
    ``loss`` (mean training loss), ``accuracy`` (validation, % or None without a loader), ``seconds``
    since ``started``; logged as ``epoch E: <shown>, validation accuracy ..., training loss ...``."""
    accuracy = evaluate_classification(model, valid_loader, device=device)["accuracy"] \
        if valid_loader is not None else None
    row = {"epoch": step / steps_per_epoch, "step": step, **measures, "loss": mean_loss, "accuracy": accuracy,
           "seconds": time.perf_counter() - started}
    if log:
        accuracy_text = f"validation accuracy {accuracy:.2f}%, " if accuracy is not None else ""
        log(f"epoch {row['epoch']:.1f}: {shown}, {accuracy_text}training loss {mean_loss:.3f} ({row['seconds']:.0f} s)")
    return row
