"""Gradual magnitude pruning with distillation: lab 03's recipe that spends its budget well.

Iterative pruning (:func:`labkit.prune.iterative_prune`) removes a big slice of weights per round and
then fine-tunes. *Gradual* pruning (Zhu & Gupta, 2017) instead raises the sparsity a little every
few steps along a cubic curve, fast at first (many weights hardly matter) and slowly near the end
(every weight left matters), then fine-tunes at the final sparsity while the learning rate decays:

    s(t) = s_final + (s_start - s_final) * (1 - t / T_prune) ** 3      for 0 <= t <= T_prune

On a small training set the pruned network easily overfits; *distillation* from the dense model
helps: the loss mixes the labels' cross-entropy with the KL divergence to the dense model's softened
outputs (temperature ``T``, Hinton et al., 2015):

    loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

Masks stay attached (``torch.nn.utils.prune``), so pruned weights stay zero; call
:func:`labkit.prune.save_pruned` afterwards. Validation decides nothing here except the
``accuracy_floor`` report: the schedule is fixed in advance.

Example:
    >>> [round(cubic_sparsity(step, steps=4, final=0.9), 3) for step in range(6)]
    [0.0, 0.52, 0.787, 0.886, 0.9, 0.9]
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
from labkit.prune import DEFAULT_LIGHT_LAYERS, prune_to

# The CPU recipe of notebook 03 (FULL on a CPU), after benchmarks/bench_prune_recipes.py on the real
# CIFAR-10 images: one epoch of the 20,000 training images with distillation took ~58 s on 2 idle
# CPU cores (345 images/s), so 28 epochs fit the 30-minute budget with the evaluations. lr 0.05 and
# global |w| ranking were kept from 6-epoch runs of lr 0.02/0.05/0.1, LAMP ranking, alpha 0.9 and a
# shorter pruning phase, chosen on validation (the table in benchmarks/README.md).
CPU_GRADUAL_RECIPE = {"final_sparsity": 0.9, "epochs": 28, "prune_fraction": 0.5, "lr": 0.05,
                      "distill_alpha": 0.7, "temperature": 4.0, "ranking": "magnitude"}
# A longer run for an accelerator (not measured here: no GPU was available).
GPU_GRADUAL_RECIPE = {"final_sparsity": 0.93, "epochs": 150, "prune_fraction": 0.5, "lr": 0.05,
                      "distill_alpha": 0.7, "temperature": 4.0, "ranking": "magnitude"}


def cubic_sparsity(step: int, *, steps: int, final: float, start: float = 0.0) -> float:
    """Target sparsity (a fraction) after ``step`` of ``steps`` pruning steps, on the cubic curve."""
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return final + (start - final) * (1.0 - progress) ** 3


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      alpha: float = 0.7, temperature: float = 4.0) -> torch.Tensor:
    """``(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`` on logits ``(N, classes)``.

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


def gradual_prune(model: nn.Module, train_loader, valid_loader=None, *, final_sparsity: float = 0.9,
                  epochs: float = 40, prune_fraction: float = 0.5, prune_every: int = 50, lr: float = 0.02,
                  momentum: float = 0.9, weight_decay: float = 5e-4, distill_alpha: float = 0.7,
                  temperature: float = 4.0, start_sparsity: float = 0.0,
                  light_layers: Mapping[str, float] = DEFAULT_LIGHT_LAYERS, ranking: str = "magnitude",
                  evaluations: int = 5,
                  device: str | torch.device = "cpu", log=print) -> list[dict]:
    """Prune ``model`` gradually to ``final_sparsity`` while training it; returns a history.

    The first ``prune_fraction`` of the ``epochs * len(train_loader)`` SGD steps raise the sparsity
    every ``prune_every`` steps along :func:`cubic_sparsity`; the rest fine-tune at the final
    sparsity; ``ranking`` says which weights go first (:func:`labkit.prune.prune_to`). The learning
    rate follows one cosine from ``lr`` to 0 over all steps. With
    ``distill_alpha > 0`` a frozen copy of the model as given (dense) is the teacher.

    Args:
        train_loader: batches ``(images (N, 3, H, W), labels (N,))``, shuffled and augmented.
        valid_loader: if given, evaluated ``evaluations`` times, evenly spread (the last at the end),
            and reported in the history; nothing is chosen on it.

    Returns one row per evaluation: ``epoch``, ``step``, ``sparsity`` (%), ``loss`` (training, mean
    since the previous row), ``accuracy`` (validation, % or None) and ``seconds`` since the start.
    The model keeps its masks (call ``labkit.prune.save_pruned``) and is left in eval mode.
    """
    if not 0 < final_sparsity < 1:
        raise ValueError(f"final_sparsity is a fraction in (0, 1), e.g. 0.9; got {final_sparsity}")
    if not 0 < prune_fraction <= 1:
        raise ValueError(f"prune_fraction is the part of the steps that prunes, in (0, 1]; got {prune_fraction}")
    device = torch.device(device)
    # channels_last: NCHW ran at 0.74x of it on a 2-core CPU (benchmarks/bench_finetune_step.py)
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(device)

    def prune_model_to(target: float) -> float:
        model.to(memory_format=torch.contiguous_format)  # torch's pruning needs plain layouts
        reached = prune_to(model, target, light_layers=light_layers, ranking=ranking)
        model.to(memory_format=layout)
        return reached
    teacher = None
    if distill_alpha > 0:
        teacher = copy.deepcopy(model).to(memory_format=layout).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
    total_steps = max(1, round(epochs * len(train_loader)))
    pruning_steps = max(1, round(prune_fraction * total_steps))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    evaluate_at = {math.ceil(total_steps * (index + 1) / evaluations) for index in range(evaluations)} \
        if valid_loader is not None and evaluations > 0 else {total_steps}

    history, started, step, loss_sum, loss_count = [], time.perf_counter(), 0, 0.0, 0
    sparsity = prune_model_to(cubic_sparsity(0, steps=pruning_steps, final=final_sparsity, start=start_sparsity))
    while step < total_steps:
        model.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            if step % prune_every == 0 and step <= pruning_steps:
                target = cubic_sparsity(step, steps=pruning_steps, final=final_sparsity, start=start_sparsity)
                sparsity = prune_model_to(target)
            images = images.contiguous(memory_format=layout)
            loss = train_step(model, images, labels, optimizer, teacher=teacher, alpha=distill_alpha,
                              temperature=temperature)
            scheduler.step()
            step += 1
            loss_sum, loss_count = loss_sum + loss, loss_count + 1
            if step == pruning_steps:  # the cubic curve ends exactly at the final sparsity
                sparsity = prune_model_to(final_sparsity)
            if step in evaluate_at:
                history.append(progress_row(model, valid_loader, step=step, steps_per_epoch=len(train_loader),
                                            mean_loss=loss_sum / loss_count, started=started, device=device,
                                            measures={"sparsity": sparsity}, shown=f"sparsity {sparsity:.2f}%",
                                            log=log))
                loss_sum, loss_count = 0.0, 0
                model.train()
            if step == total_steps:
                break
    model.to(memory_format=torch.contiguous_format).eval()
    return history
