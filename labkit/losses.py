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


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCEWithLogits + dice_weight * soft Dice``: BCE for per-pixel calibration,
    Dice for the overlap the course grades."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ; "
                             "binary masks must be (N, 1, H, W) like the one-channel logits")
        loss = self.bce_weight * F.binary_cross_entropy_with_logits(logits, targets.float())
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, targets)
        return loss
