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
def evaluate_classification(model: nn.Module, loader, *, device="auto", progress: bool = False) -> dict:
    """Top-1 accuracy in percent; ``loader`` yields ``(images, labels)``."""
    device = resolve_device(device)
    model.eval().to(device)
    correct = total = 0
    for images, labels in _batches(loader, "eval", progress):
        logits = model(images.to(device))
        correct += (logits.argmax(dim=1).cpu() == labels).sum().item()
        total += labels.numel()
    if total == 0:
        raise ValueError("the evaluation loader is empty; check the dataset root and split")
    return {"accuracy": 100.0 * correct / total}


@torch.no_grad()
def evaluate_multiclass_segmentation(model: nn.Module, loader, *, num_classes: int, device="auto",
                                     progress: bool = False) -> dict:
    """Semantic segmentation: OverallAcc, MeanAcc, mIoU and per-class IoU from one confusion matrix.

    ``loader`` yields ``(images (N, 3, H, W), labels (N, H, W) int64)``.
    """
    device = resolve_device(device)
    model.eval().to(device)
    score = RunningScore(num_classes)
    for images, labels in _batches(loader, "eval", progress):
        logits = model(images.to(device))
        score.update(logits.argmax(dim=1).cpu(), labels)
    return score.compute()
