"""Figures for binary segmentation: image / ground truth / prediction rows, Dice histogram.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 16, 16)
    >>> figure = show_predictions(images, torch.ones(2, 1, 16, 16), torch.zeros(2, 1, 16, 16), normalized=False)
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_displayable(image: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
    """``(3, H, W)`` tensor -> ``(H, W, 3)`` in [0, 1], undoing ImageNet normalisation if applied."""
    image = image.detach().cpu().float()
    if normalized:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        image = image * std + mean
    return image.clamp(0, 1).permute(1, 2, 0)


def show_predictions(images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor, *,
                     scores: torch.Tensor | None = None, normalized: bool = True, max_rows: int = 4):
    """One row per image: the image, its ground truth, the prediction (with its Dice if given).

    Args:
        images: ``(N, 3, H, W)``; masks and predictions: ``(N, 1, H, W)`` or ``(N, H, W)`` in {0, 1}.
    """
    rows = min(max_rows, images.shape[0])
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    for row in range(rows):
        panels = [to_displayable(images[row], normalized=normalized), masks[row].squeeze(), predictions[row].squeeze()]
        titles = ["image", "ground truth", "prediction"]
        if scores is not None:
            titles[2] += f" (Dice {float(scores[row]):.3f})"
        for axis, panel, title in zip(axes[row], panels, titles):
            axis.imshow(panel.cpu(), cmap=None if panel.dim() == 3 else "gray", vmin=0, vmax=1)
            axis.set_title(title)
            axis.axis("off")
    figure.tight_layout()
    return figure


def plot_dice_histogram(per_image_dice: torch.Tensor, *, bins: int = 20, title: str = "test Dice per image"):
    """Histogram of per-image Dice, with the mean (the course's number) marked."""
    values = torch.as_tensor(per_image_dice).cpu().numpy()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.hist(values, bins=bins, range=(0, 1), color="tab:blue", alpha=0.8)
    axis.axvline(values.mean(), color="tab:red", linestyle="--", label=f"mean {values.mean():.3f}")
    axis.set(xlabel="Dice", ylabel="images", title=title)
    axis.legend()
    figure.tight_layout()
    return figure
