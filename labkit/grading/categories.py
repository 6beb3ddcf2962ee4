"""Cityscapes-8 logits with any channel count, graded the same way on every route of ``check_efficient``.

The course's model returns 8 channels, one per category (0 void ... 7 vehicle), and the prediction
is ``argmax(dim=1)``. A student's own network may return another count; the check then grades it
(it is the student's design) and says what it means, identically whether the model is labkit's
reference network or the student's ``network.py`` in the sandbox:

- fewer than 8 (e.g. 7): the argmax never reaches the missing categories, so they are never
  predicted and their IoU is 0 wherever they appear;
- more than 8 (e.g. 19, Cityscapes' train ids): channel k is read as category k for k < 8, and a
  pixel whose highest logit is in channel 8 or above predicts no category at all: it counts as a
  miss for its true category and as a hit for none. (The course's test builds an 8x8 confusion
  matrix, which fails on such a pixel.)

:class:`CategoryLogits` folds channels 8.. into one extra "no category" channel (their maximum, so
the argmax is unchanged), the grader's confusion matrix runs with 9 classes, and
:func:`category_scores` keeps the 8 real categories.

Example:
    >>> import torch
    >>> wrapped = CategoryLogits(torch.nn.Conv2d(3, 19, 1))
    >>> wrapped(torch.rand(1, 3, 4, 4)).shape[1], wrapped.channels
    (9, 19)
    >>> channel_note(7)[:60]
    'your model returns 7 output channels, not 8: category 7 vehi'
"""
from __future__ import annotations

import torch
from torch import nn

from labkit.data.cityscapes import CATEGORY_NAMES, NUM_CLASSES

GRADED_CLASSES = NUM_CLASSES + 1  # the 8 categories + "no category" (a channel >= 8 won the argmax)


class CategoryLogits(nn.Module):
    """``model``'s logits with channels ``8..C-1`` folded into one ``no category`` channel; counts as it goes.

    ``channels``: the model's output channel count (None before the first batch); ``pixels`` and
    ``no_category_pixels``: how many pixels were predicted, and how many as channel >= 8.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.channels: int | None = None
        self.pixels = 0
        self.no_category_pixels = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        channels = int(logits.shape[1])
        if self.channels is not None and channels != self.channels:
            raise ValueError(f"the model returned {self.channels} channels for one batch and {channels} for "
                             "another; it must always return the same logits (N, 8, H, W)")
        self.channels = channels
        if channels > NUM_CLASSES:
            logits = torch.cat([logits[:, :NUM_CLASSES], logits[:, NUM_CLASSES:].amax(dim=1, keepdim=True)], dim=1)
            self.no_category_pixels += int((logits.argmax(dim=1) == NUM_CLASSES).sum())
        self.pixels += logits.shape[0] * logits.shape[2] * logits.shape[3]
        return logits


def category_scores(scores: dict) -> dict:
    """The 8 categories' scores from a confusion matrix of :data:`GRADED_CLASSES` (mIoU over those 8)."""
    class_iou = list(scores["ClassIoU"])[:NUM_CLASSES]
    miou = torch.tensor(class_iou, dtype=torch.float64).nanmean().item()  # as labkit.grading.reference does
    return {**scores, "ClassIoU": class_iou, "mIoU": miou}


def channel_note(channels: int | None, no_category_share: float | None = None) -> str | None:
    """What a channel count other than 8 means for the grade, or None for 8 channels.

    Example:
        >>> channel_note(8) is None
        True
        >>> "no category" in channel_note(19, 0.25) and "25.0%" in channel_note(19, 0.25)
        True
    """
    if channels is None or channels == NUM_CLASSES:
        return None
    categories = ", ".join(f"{index} {name}" for index, name in enumerate(CATEGORY_NAMES))
    if channels < NUM_CLASSES:
        never = [f"{index} {CATEGORY_NAMES[index]}" for index in range(channels, NUM_CLASSES)]
        which = f"categor{'y' if len(never) == 1 else 'ies'} {', '.join(never)}"
        return (f"your model returns {channels} output channels, not {NUM_CLASSES}: {which} can never be predicted "
                f"(the argmax only picks channels 0..{channels - 1}), so {'its' if len(never) == 1 else 'their'} "
                f"IoU is 0 wherever {'it appears' if len(never) == 1 else 'they appear'}. Cityscapes-8 needs one "
                f"channel per category: {categories}")
    share = "" if no_category_share is None else f" ({no_category_share:.1%} of the pixels here)"
    return (f"your model returns {channels} output channels, not {NUM_CLASSES}: the grader reads channel k as category "
            f"k for k = 0..{NUM_CLASSES - 1} ({categories}); a pixel whose highest logit is in channel "
            f"{NUM_CLASSES}..{channels - 1} predicts no category and counts as a miss for its true category"
            f"{share}. The course's test fails on such a pixel (its confusion matrix has {NUM_CLASSES} classes): "
            f"return exactly {NUM_CLASSES} channels")
