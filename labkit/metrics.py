"""Metrics: Dice for binary masks, accuracy, and a confusion-matrix running score.

Conventions:
    * Binary segmentation: the model outputs ONE logit channel ``(N, 1, H, W)``; a pixel is
      foreground when its logit is > 0 (sigmoid > 0.5). Masks are ``{0, 1}``.
    * Multi-class segmentation: logits ``(N, C, H, W)``, labels ``(N, H, W)`` integers in ``[0, C)``.

Example:
    >>> import torch
    >>> pred = torch.tensor([[[1, 1], [0, 0]]])
    >>> target = torch.tensor([[[1, 0], [0, 0]]])
    >>> round(dice_score(pred, target).item(), 4)     # 2*1 / (2 + 1)
    0.6667
"""
from __future__ import annotations

import torch


def binarize(logits: torch.Tensor) -> torch.Tensor:
    """Foreground mask from one-channel logits: ``logit > 0`` (i.e. sigmoid > 0.5), as uint8."""
    return (logits > 0).to(torch.uint8)


def dice_score(prediction: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean",
               empty_score: float = 1.0) -> torch.Tensor:
    """Per-image Dice ``2|P∩G| / (|P| + |G|)`` of binary masks, as the course defines it.

    Args:
        prediction: binary mask ``(N, H, W)`` or ``(N, 1, H, W)``; any non-zero value is foreground.
            Binarise logits first with :func:`binarize`.
        target: ground-truth mask of the same shape, values ``{0, 1}``.
        reduction: ``"mean"`` (average over images, the course's number) or ``"none"`` (one per image).
        empty_score: Dice of an image where both masks are empty (0/0). The course's formula is
            undefined there; we count a correct "nothing here" as a perfect 1.0 (every Pet image
            has a pet, so this never changes the course's number).

    Returns:
        A scalar (``"mean"``) or a float tensor ``(N,)`` (``"none"``).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape "
                         f"{tuple(target.shape)}; pass masks of the same (N, H, W) or (N, 1, H, W) shape")
    if prediction.dim() < 3:
        raise ValueError(f"expected a batch of masks (N, H, W) or (N, 1, H, W), got shape "
                         f"{tuple(prediction.shape)}; add a batch dimension with mask[None]")
    ### BEGIN SOLUTION
    pred = (prediction != 0).flatten(1).float()
    true = (target != 0).flatten(1).float()
    intersection = (pred * true).sum(dim=1)
    total = pred.sum(dim=1) + true.sum(dim=1)
    safe_total = total.clamp(min=1.0)
    scores = torch.where(total > 0, 2.0 * intersection / safe_total,
                         torch.full_like(total, empty_score))
    ### END SOLUTION
    if reduction == "mean":
        return scores.mean()
    if reduction == "none":
        return scores
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent of ``(N, classes)`` logits against ``(N,)`` labels."""
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


class RunningScore:
    """Confusion-matrix score for semantic segmentation, updated batch by batch.

    The matrix comes from one ``bincount(num_classes * target + prediction)`` (as torchvision's
    ``references/segmentation``). Pixels whose target is ``ignore_index`` are skipped.

    Example:
        >>> score = RunningScore(num_classes=2)
        >>> score.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
        >>> score.compute()["mIoU"]
        0.5
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``prediction`` and ``target`` are class indices of the same shape."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape "
                             f"{tuple(target.shape)}; pass class indices, e.g. logits.argmax(1)")
        prediction = prediction.flatten().to("cpu", torch.int64)
        target = target.flatten().to("cpu", torch.int64)
        if prediction.numel() and (prediction.min() < 0 or prediction.max() >= self.num_classes):
            raise ValueError(f"predictions must be class indices in [0, {self.num_classes}), got values "
                             f"{prediction.min().item()}..{prediction.max().item()}; pass logits.argmax(1)")
        keep = (target >= 0) & (target < self.num_classes)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        index = self.num_classes * target[keep] + prediction[keep]
        self.matrix += torch.bincount(index, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    def reset(self) -> None:
        self.matrix.zero_()

    def compute(self) -> dict:
        """``OverallAcc``, ``MeanAcc``, ``mIoU`` (mean over classes seen) and ``ClassIoU`` (list, NaN if unseen)."""
        matrix = self.matrix.double()
        true_positive = matrix.diag()
        per_target = matrix.sum(dim=1)
        per_prediction = matrix.sum(dim=0)
        overall = true_positive.sum() / matrix.sum().clamp(min=1)
        # Classes absent from the targets have no accuracy (0/0) and are left out, as for IoU.
        class_accuracy = torch.where(per_target > 0, true_positive / per_target.clamp(min=1), torch.nan)
        union = per_target + per_prediction - true_positive
        # A class absent from both target and prediction has no IoU (0/0): it is left out of the
        # mean instead of counting as 0. On the full validation set every class is present.
        iou = torch.where(union > 0, true_positive / union.clamp(min=1), torch.nan)
        return {
            "OverallAcc": overall.item(),
            "MeanAcc": class_accuracy.nanmean().item(),
            "mIoU": iou.nanmean().item(),
            "ClassIoU": iou.tolist(),
        }
