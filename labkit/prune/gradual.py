"""Gradual magnitude pruning with distillation: lab 03's recipe that spends its budget well.

Iterative pruning (:func:`labkit.prune.magnitude.iterative_prune`) removes a big slice of weights per
round and then fine-tunes. *Gradual* pruning (Zhu & Gupta, 2017) instead raises the sparsity a little
every few steps along a cubic curve, fast at first (many weights hardly matter) and slowly near the
end (every weight left matters), then fine-tunes at the final sparsity while the learning rate decays:

    s(t) = s_final + (s_start - s_final) * (1 - t / T_prune) ** 3      for 0 <= t <= T_prune

On a small training set the pruned network easily overfits; *distillation* from the dense model
helps (:mod:`labkit.prune.distill`): the loss mixes the labels' cross-entropy with the KL divergence
to the dense model's softened outputs.

Masks stay attached (``torch.nn.utils.prune``), so pruned weights stay zero; call
:func:`labkit.prune.magnitude.save_pruned` afterwards. Validation decides nothing here except the
``accuracy_floor`` report: the schedule is fixed in advance.

Example:
    >>> [round(cubic_sparsity(step, steps=4, final=0.9), 3) for step in range(6)]
    [0.0, 0.52, 0.787, 0.886, 0.9, 0.9]
"""
from __future__ import annotations

import time
from collections.abc import Mapping

import torch
from torch import nn

from labkit.prune.distill import evaluation_steps, frozen_teacher, progress_row, train_step, training_layout
from labkit.prune.magnitude import DEFAULT_LIGHT_LAYERS, prune_to

# Notebook 03's FULL recipes for gradual_prune (CPU and GPU) are lab 03's table in labkit.recipes, with how
# the CPU one was chosen.


def cubic_sparsity(step: int, *, steps: int, final: float, start: float = 0.0) -> float:
    """Target sparsity (a fraction) after ``step`` of ``steps`` pruning steps, on the cubic curve."""
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return final + (start - final) * (1.0 - progress) ** 3


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
    sparsity; ``ranking`` says which weights go first (:func:`labkit.prune.magnitude.prune_to`). The
    learning rate follows one cosine from ``lr`` to 0 over all steps. With ``distill_alpha > 0`` a
    frozen copy of the model as given (dense) is the teacher (:func:`labkit.prune.distill.frozen_teacher`).

    Args:
        train_loader: batches ``(images (N, 3, H, W), labels (N,))``, shuffled and augmented.
        valid_loader: if given, evaluated ``evaluations`` times, evenly spread (the last at the end),
            and reported in the history; nothing is chosen on it.

    Returns one row per evaluation: ``epoch``, ``step``, ``sparsity`` (%), ``loss`` (training, mean
    since the previous row), ``accuracy`` (validation, % or None) and ``seconds`` since the start.
    The model keeps its masks (call ``labkit.prune.magnitude.save_pruned``) and is left in eval mode.
    """
    if not 0 < final_sparsity < 1:
        raise ValueError(f"final_sparsity is a fraction in (0, 1), e.g. 0.9; got {final_sparsity}")
    if not 0 < prune_fraction <= 1:
        raise ValueError(f"prune_fraction is the part of the steps that prunes, in (0, 1]; got {prune_fraction}")
    device = torch.device(device)
    layout = training_layout(device)
    model.to(device)

    def prune_model_to(target: float) -> float:
        model.to(memory_format=torch.contiguous_format)  # torch's pruning needs plain layouts
        reached = prune_to(model, target, light_layers=light_layers, ranking=ranking)
        model.to(memory_format=layout)
        return reached
    teacher = frozen_teacher(model, memory_format=layout) if distill_alpha > 0 else None
    total_steps = max(1, round(epochs * len(train_loader)))
    pruning_steps = max(1, round(prune_fraction * total_steps))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    evaluate_at = evaluation_steps(total_steps, evaluations, validating=valid_loader is not None)

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
