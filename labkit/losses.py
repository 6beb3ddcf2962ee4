"""Segmentation losses.

Binary convention: logits ``(N, 1, H, W)``, targets ``(N, 1, H, W)`` float in ``{0, 1}``.

Example:
    >>> import torch
    >>> loss = BCEDiceLoss()
    >>> logits = torch.full((2, 1, 4, 4), 10.0)
    >>> round(loss(logits, torch.ones(2, 1, 4, 4)).item(), 3)
    0.0
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """``1 - soft Dice`` per image on sigmoid probabilities, averaged over the batch.

    ``eps`` smooths the ratio so an empty mask predicted empty costs ~0 and gradients stay finite.
    """
    probabilities = torch.sigmoid(logits).flatten(1)
    targets = targets.flatten(1).to(probabilities.dtype)
    intersection = (probabilities * targets).sum(dim=1)
    total = probabilities.sum(dim=1) + targets.sum(dim=1)
    return (1.0 - (2.0 * intersection + eps) / (total + eps)).mean()


def lovasz_hinge(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary Lovasz hinge (Berman et al., CVPR 2018) per image, averaged over the batch.

    A surrogate of ``1 - IoU`` of the mask ``logit > 0``: the hinge errors ``1 - logit * sign``
    (sign +1 on the pet, -1 elsewhere) sorted in decreasing order, weighted by :func:`lovasz_grad`.
    """
    losses = []
    for image_logits, image_targets in zip(logits.float().flatten(1), targets.float().flatten(1)):
        errors = 1.0 - image_logits * (2.0 * image_targets - 1.0)
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(F.relu(errors_sorted), lovasz_grad(image_targets[order])))
    return torch.stack(losses).mean()


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCEWithLogits + dice_weight * soft Dice (+ lovasz_weight * Lovasz hinge)``:
    BCE for per-pixel calibration, Dice for the overlap the course grades."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, lovasz_weight: float = 0.0):
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.lovasz_weight = lovasz_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ; "
                             "binary masks must be (N, 1, H, W) like the one-channel logits")
        loss = self.bce_weight * F.binary_cross_entropy_with_logits(logits, targets.float())
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, targets)
        if self.lovasz_weight:
            loss = loss + self.lovasz_weight * lovasz_hinge(logits, targets)
        return loss


# --- Multi-class segmentation ------------------------------------------------------------------
# Convention: logits (N, C, H, W), targets (N, H, W) int64 class indices in [0, C).
# Each loss computes in float32, so it is safe under fp16 autocast.


def _flatten_probabilities(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None):
    """Softmax probabilities (P, C) and targets (P,) of the pixels that count."""
    if logits.dim() != 4 or targets.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits (N, C, H, W) and targets (N, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}; targets are class indices, not one-hot")
    probabilities = logits.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    targets = targets.reshape(-1)
    if ignore_index is not None:
        keep = targets != ignore_index
        probabilities, targets = probabilities[keep], targets[keep]
    return probabilities, targets


def multiclass_dice_loss(logits: torch.Tensor, targets: torch.Tensor, *, eps: float = 1.0,
                         ignore_index: int | None = None) -> torch.Tensor:
    """``1 - mean over classes of soft Dice``, each class's Dice taken over the whole batch.

    ``Dice_c = (2 sum(p_c * t_c) + eps) / (sum(p_c) + sum(t_c) + eps)`` with ``p_c`` the softmax
    probability of class c and ``t_c`` its one-hot target. Averaging over classes gives small
    classes (poles, people) the same weight as the road, as mIoU does. ``eps`` keeps a class that
    is absent and not predicted at a loss of ~0.
    """
    probabilities, targets = _flatten_probabilities(logits, targets, ignore_index)
    one_hot = F.one_hot(targets, probabilities.shape[1]).to(probabilities.dtype)
    intersection = (probabilities * one_hot).sum(dim=0)
    total = probabilities.sum(dim=0) + one_hot.sum(dim=0)
    return 1.0 - ((2.0 * intersection + eps) / (total + eps)).mean()


def lovasz_grad(sorted_targets: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss for targets sorted by decreasing error.

    Entry i is how much the Jaccard loss grows when the i-th worst pixel is counted as wrong
    (Berman et al., CVPR 2018, Alg. 1).
    """
    positives = sorted_targets.sum()
    intersection = positives - sorted_targets.cumsum(0)
    union = positives + (1.0 - sorted_targets).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int | None = None) -> torch.Tensor:
    """Lovasz-Softmax loss (Berman et al., CVPR 2018): a smooth surrogate of ``1 - IoU`` per class.

    For each class present in ``targets``: sort the pixels' errors ``|t_c - p_c|`` in decreasing
    order and weight them with :func:`lovasz_grad`; the mean over present classes is returned.
    With one-hot probabilities it equals ``mean_c (1 - IoU_c)`` exactly, so it optimises the
    metric the course grades. Computed over the whole batch (not per image).
    """
    probabilities, targets = _flatten_probabilities(logits, targets, ignore_index)
    losses = []
    for cls in torch.unique(targets).tolist():
        foreground = (targets == cls).to(probabilities.dtype)
        errors = (foreground - probabilities[:, cls]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(foreground[order])))
    if not losses:  # every pixel ignored
        return logits.sum() * 0.0
    return torch.stack(losses).mean()


class SegmentationLoss(nn.Module):
    """``ce_weight * CrossEntropy + dice_weight * Dice + lovasz_weight * Lovasz-Softmax``.

    Cross-entropy gives every pixel a well-behaved gradient from the start; Dice and
    Lovasz-Softmax push on the per-class overlap that mIoU measures, which matters for thin and
    rare classes. The default weights (1, 1, 0.5) are the recipe from the course's strongest
    low-complexity report. A weight of 0 skips that term.

    Example:
        >>> import torch
        >>> loss = SegmentationLoss()
        >>> logits = torch.randn(2, 8, 16, 32, requires_grad=True)
        >>> loss(logits, torch.randint(0, 8, (2, 16, 32))).backward()
    """

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, lovasz_weight: float = 0.5,
                 *, ignore_index: int | None = None):
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.lovasz_weight = lovasz_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight:
            ignore_index = -100 if self.ignore_index is None else self.ignore_index
            counted = (targets != ignore_index).sum().clamp(min=1)  # a batch all ignored costs 0, not NaN
            loss = loss + self.ce_weight * F.cross_entropy(
                logits.float(), targets, ignore_index=ignore_index, reduction="sum") / counted
        if self.dice_weight:
            loss = loss + self.dice_weight * multiclass_dice_loss(logits, targets, ignore_index=self.ignore_index)
        if self.lovasz_weight:
            loss = loss + self.lovasz_weight * lovasz_softmax(logits, targets, ignore_index=self.ignore_index)
        return loss
