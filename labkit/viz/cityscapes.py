"""Figures for the Cityscapes lab: category colours, overlays of predictions, per-class IoU bars.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 16, 32)
    >>> labels = torch.randint(0, 8, (2, 16, 32))
    >>> colorize(labels[0]).shape
    (16, 32, 3)
    >>> figure = show_segmentations(images, labels, labels)
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from labkit.data.cityscapes import CATEGORY_COLORS, CATEGORY_NAMES


def _numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def colorize(labels) -> np.ndarray:
    """Category map (H, W) with values 0..7 -> uint8 RGB (H, W, 3) in the category colours."""
    return CATEGORY_COLORS[_numpy(labels).astype(np.int64)]


def overlay(image, labels, *, alpha: float = 0.5) -> np.ndarray:
    """Blend the category colours of ``labels`` (H, W) over ``image`` (3, H, W) in [0, 1].

    Returns float (H, W, 3) in [0, 1]; ``alpha`` is the weight of the colours.
    """
    picture = _numpy(image).transpose(1, 2, 0).clip(0, 1)
    return (1 - alpha) * picture + alpha * colorize(labels) / 255.0


def category_legend(target, *, location: str = "lower center") -> None:
    """A legend with one coloured patch per category on ``target`` (a matplotlib axis or figure)."""
    handles = [Patch(color=CATEGORY_COLORS[i] / 255.0, label=name) for i, name in enumerate(CATEGORY_NAMES)]
    target.legend(handles=handles, loc=location, ncol=len(handles), bbox_to_anchor=(0.5, -0.02),
                frameon=False, fontsize="small")


def show_segmentations(images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor, *,
                       max_rows: int = 3, alpha: float = 0.6, title: str | None = None):
    """One row per image: the image, ground truth over it, prediction over it (with its pixel accuracy).

    Args:
        images: (N, 3, H, W) in [0, 1] (the course's unnormalised inputs).
        labels, predictions: (N, H, W) category indices 0..7 (``logits.argmax(1)``).
    """
    rows = min(max_rows, images.shape[0])
    figure, axes = plt.subplots(rows, 3, figsize=(12, 2.4 * rows + 0.6), squeeze=False)
    for row in range(rows):
        accuracy = (_numpy(predictions[row]) == _numpy(labels[row])).mean()
        panels = [_numpy(images[row]).transpose(1, 2, 0).clip(0, 1),
                  overlay(images[row], labels[row], alpha=alpha),
                  overlay(images[row], predictions[row], alpha=alpha)]
        titles = ["image", "ground truth", f"prediction (pixel acc. {accuracy:.1%})"]
        for axis, panel, name in zip(axes[row], panels, titles):
            axis.imshow(panel)
            axis.set_title(name, fontsize="medium")
            axis.axis("off")
    category_legend(figure, location="lower center")
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def plot_class_iou(class_iou: dict[str, list[float]], *, title: str = "IoU per category"):
    """Grouped bars: one group per category, one bar per model (``{"model name": ClassIoU list}``)."""
    figure, axis = plt.subplots(figsize=(10, 3.5))
    width = 0.8 / max(1, len(class_iou))
    positions = np.arange(len(CATEGORY_NAMES))
    for k, (name, values) in enumerate(class_iou.items()):
        axis.bar(positions + k * width, np.nan_to_num(np.asarray(values, dtype=float)), width, label=name)
    axis.set_xticks(positions + width * (len(class_iou) - 1) / 2, CATEGORY_NAMES)
    axis.set(ylim=(0, 1), ylabel="IoU", title=title)
    axis.legend(fontsize="small")
    figure.tight_layout()
    return figure
