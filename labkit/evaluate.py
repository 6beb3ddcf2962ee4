"""Evaluation loops shared by notebooks and checks (one function per task, so both agree).

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> model = torch.nn.Conv2d(3, 1, 1)
    >>> loader = DataLoader(TensorDataset(torch.randn(4, 3, 8, 8), torch.ones(4, 1, 8, 8)), batch_size=2)
    >>> sorted(evaluate_segmentation(model, loader, device="cpu"))
    ['dice', 'per_image_dice']
"""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from labkit.device import resolve_device
from labkit.metrics import RunningScore, binarize, dice_score


def _batches(loader, description: str, progress: bool):
    return tqdm(loader, desc=description, leave=False, disable=not progress)


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, loader, *, device="auto", progress: bool = False) -> dict:
    """Binary segmentation: mean per-image Dice (the course's number) and the per-image scores.

    ``loader`` yields ``(images (N, 3, H, W), masks (N, 1, H, W))``; the model returns one logit
    channel ``(N, 1, H, W)``.
    """
    device = resolve_device(device)
    model.eval().to(device)
    scores = []
    for images, masks in _batches(loader, "eval", progress):
        logits = model(images.to(device))
        scores.append(dice_score(binarize(logits).cpu(), masks, reduction="none"))
    per_image = torch.cat(scores)
    return {"dice": per_image.mean().item(), "per_image_dice": per_image}


@torch.no_grad()
def evaluate_classification(model: nn.Module, loader, *, device="auto", progress: bool = False,
                            per_image: bool = False) -> dict:
    """Top-1 accuracy in percent; ``loader`` yields ``(images, labels)``.

    ``per_image=True`` adds ``per_image_correct``, a float tensor ``(N,)`` of 1.0 / 0.0 (for
    :func:`labkit.confidence.bootstrap_interval`).
    """
    device = resolve_device(device)
    model.eval().to(device)
    hits = []
    for images, labels in _batches(loader, "eval", progress):
        logits = model(images.to(device))
        hits.append((logits.argmax(dim=1).cpu() == labels).flatten())
    if not hits or sum(len(batch) for batch in hits) == 0:
        raise ValueError("the evaluation loader is empty; check the dataset root and split")
    correct = torch.cat(hits).double()
    result = {"accuracy": 100.0 * correct.sum().item() / correct.numel()}
    return {**result, "per_image_correct": correct} if per_image else result


@torch.no_grad()
def evaluate_multiclass_segmentation(model: nn.Module, loader, *, num_classes: int, device="auto",
                                     progress: bool = False, per_image: bool = False) -> dict:
    """Semantic segmentation: OverallAcc, MeanAcc, mIoU and per-class IoU from one confusion matrix.

    ``loader`` yields ``(images (N, 3, H, W), labels (N, H, W) int64)``. ``per_image=True`` adds
    ``per_image_confusion`` ``(N, C, C)`` (rows: target, columns: prediction), whose sum is the
    matrix the scores come from (for :func:`labkit.confidence.bootstrap_interval`).
    """
    device = resolve_device(device)
    model.eval().to(device)
    score = RunningScore(num_classes)
    per_image_matrices = []
    for images, labels in _batches(loader, "eval", progress):
        predictions = model(images.to(device)).argmax(dim=1).cpu()
        if per_image:
            for prediction, label in zip(predictions, labels):
                one = RunningScore(num_classes)
                one.update(prediction, label)
                per_image_matrices.append(one.matrix)
        score.update(predictions, labels)
    result = score.compute()
    return {**result, "per_image_confusion": torch.stack(per_image_matrices)} if per_image else result
