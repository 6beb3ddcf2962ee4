"""The grader's own metrics and evaluation loops: the numbers ``checks/`` report come from here only.

The student edition turns some labkit functions into TODOs (``labkit.metrics.dice_score``, the
pruning schedule, the UNet layers, ...). A check that measured with them would grade with the
student's code: before the TODO is written the check could not run, after it a wrong Dice (or one
that returns 1.0) would give a wrong verdict. So every number a check reports is computed here,
in a module that ships unchanged in the student edition and that no lab asks students to edit:

    Dice (per image, averaged)      -> :func:`evaluate_segmentation` (:func:`binary_confusion`,
                                       :func:`dice_from_confusion`)
    confusion-matrix mIoU           -> :func:`confusion_matrix`, :func:`scores_from_confusion`,
                                       :func:`evaluate_multiclass_segmentation`
    top-1 accuracy (%)              -> :func:`evaluate_classification`
    the course's sparsity (%)       -> :func:`course_sparsity`

The semantics are the solution's (``labkit.metrics``, ``labkit.evaluate``, ``labkit.prune.magnitude``), but
the code is written a second time, differently, so the kit's tests (``test_reference_metrics``) can
cross-check the two. Core labkit keeps its own versions for training and the notebooks (core must
not import grading).

Why Dice is measured from confusion counts. This module ships in the student edition (the edition's
checks import it, and a check must not depend on the student's code), so it must not hand out the
answer to the ``dice_score`` TODO. A function "masks (N, H, W) or (N, 1, H, W) in, one Dice per
image out, 1.0 when both are empty" would be exactly that TODO's contract, ready to copy or call.
What is here instead is the grader's view, the way torchvision's ``ConfusionMatrix`` and the
course's Cityscapes running score measure: :func:`binary_confusion` takes a model's *logits* and
the masks and counts, per image, each (target, predicted) pair with one ``bincount``; and
:func:`dice_from_confusion` reads Dice off those counts as ``2 TP / (2 TP + FP + FN)``, the
textbook definition, with the course's convention that an image with nothing to find and nothing
found (no TP, FP or FN) scores 1.0. The TODO teaches something else: mask arithmetic per image
(overlap, sizes, the empty case, the reduction), which no function here does. The numbers are
those of the intersection formula, and the tests check it on hand-computed masks.
(Keeping this module out of the edition was the other choice: then the edition's checks could not
run, or would have to measure with the student's ``dice_score``.)

The models a check builds. ``resnet20`` and ``QuantizedResNet20`` contain no TODO. ``UNet``,
``ResNet34UNet`` and ``EfficientUNet`` are built from layers students write (``DoubleConv``,
``BasicBlock``, ``ECA``, ...): those layers *are* the student's architecture, the network their
weights were trained in, so a check uses them as they are, as the course's TA uses the student's
own model code. Only the measuring is never theirs. While such a layer is still a TODO, the check
refuses with :func:`refuse_student_todos`: it names the file and function and says the file was
not judged (exit 3). The TA's check runs from the course's copy, which has every layer.

Example (image 0: TP 1, FP 1, FN 0 -> 2/3; image 1: nothing to find, nothing found -> 1.0):
    >>> import torch
    >>> logits = torch.tensor([[[[2.0, 0.5], [-1.0, -3.0]]], [[[-1.0, -1.0], [-2.0, -1.0]]]])
    >>> masks = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    >>> binary_confusion(logits, masks)[0].tolist()   # [target][predicted]
    [[2, 1], [0, 1]]
    >>> [round(x, 4) for x in dice_from_confusion(binary_confusion(logits, masks)).tolist()]
    [0.6667, 1.0]
    >>> scores_from_confusion(confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 2))["mIoU"]
    0.5
"""
from __future__ import annotations

import traceback
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from labkit.device import resolve_device

# ----------------------------------------------------------------------------- binary segmentation


def binary_confusion(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image confusion counts of a one-logit model, int64 ``(N, 2, 2)``: ``[image, target, predicted]``.

    ``logits``: the model's output ``(N, 1, H, W)`` (a pixel is predicted foreground when its logit is
    > 0); ``masks``: ``(N, 1, H, W)``, any non-zero value is foreground. One ``bincount`` over
    ``4 * image + 2 * target + predicted``, as torchvision's ``ConfusionMatrix`` does for one image.
    """
    if logits.shape != masks.shape:
        raise ValueError(f"the model returned {tuple(logits.shape)} for masks {tuple(masks.shape)}; a "
                         "binary model returns ONE logit channel (N, 1, H, W) of the input's size")
    images = logits.shape[0]
    image = torch.arange(images).repeat_interleave(logits.shape[1:].numel())
    pairs = 4 * image + 2 * (masks.reshape(-1) != 0).long() + (logits.reshape(-1) > 0).long()
    return torch.bincount(pairs, minlength=4 * images).view(images, 2, 2)


def dice_from_confusion(confusion: torch.Tensor, *, nothing_to_find: float = 1.0) -> torch.Tensor:
    """Dice of each image from its confusion counts (:func:`binary_confusion`), float64 ``(N,)``.

    ``2 TP / (2 TP + FP + FN)``; an image without TP, FP or FN (empty target, nothing predicted)
    scores ``nothing_to_find`` (1.0, the course's convention; every Pet image has a pet).
    """
    counts = confusion.to(torch.float64)
    true_positive, false_positive, false_negative = counts[:, 1, 1], counts[:, 0, 1], counts[:, 1, 0]
    denominator = 2 * true_positive + false_positive + false_negative
    return torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), nothing_to_find)


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, loader, *, device="auto") -> dict:
    """Mean per-image Dice of a one-logit model: ``{"dice": float, "per_image_dice": (N,) float64 tensor}``.

    ``loader`` yields ``(images (N, 3, H, W), masks (N, 1, H, W))``; the model returns ``(N, 1, H, W)``.
    """
    device = resolve_device(device)
    model.eval().to(device)
    per_image = []
    for images, masks in loader:
        per_image.append(dice_from_confusion(binary_confusion(model(images.to(device)).cpu(), masks)))
    if not per_image:
        raise ValueError("the evaluation loader is empty; check the dataset root and split")
    scores = torch.cat(per_image)
    return {"dice": scores.mean().item(), "per_image_dice": scores}


# ----------------------------------------------------------------------------- classification


@torch.no_grad()
def evaluate_classification(model: nn.Module, loader, *, device="auto") -> dict:
    """Top-1 accuracy in percent, ``{"accuracy": float}``; ``loader`` yields ``(images, labels (N,))``."""
    device = resolve_device(device)
    model.eval().to(device)
    hits = seen = 0
    for images, labels in loader:
        predicted = model(images.to(device)).argmax(dim=1).cpu()
        hits += int(torch.eq(predicted, labels).sum())
        seen += len(labels)
    if seen == 0:
        raise ValueError("the evaluation loader is empty; check the dataset root and split")
    return {"accuracy": hits * 100.0 / seen}


# ----------------------------------------------------------------------------- multi-class segmentation


def confusion_matrix(prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 counts, rows = target class, columns = predicted class.

    Pixels whose target is outside ``[0, num_classes)`` are skipped; a prediction outside it is an error.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ; "
                         "pass class indices of the same shape, e.g. logits.argmax(1)")
    predicted = prediction.reshape(-1).long().cpu()
    actual = target.reshape(-1).long().cpu()
    if predicted.numel() and not bool(((predicted >= 0) & (predicted < num_classes)).all()):
        raise ValueError(f"predictions must be class indices in [0, {num_classes})")
    valid = (actual >= 0) & (actual < num_classes)
    matrix = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    matrix.index_add_(0, actual[valid] * num_classes + predicted[valid],
                      torch.ones(int(valid.sum()), dtype=torch.int64))
    return matrix.view(num_classes, num_classes)


def scores_from_confusion(matrix: torch.Tensor) -> dict:
    """``OverallAcc``, ``MeanAcc``, ``mIoU`` and ``ClassIoU`` (a list) of a confusion matrix.

    A class absent from both targets and predictions has no IoU (0/0): NaN in ``ClassIoU`` and left
    out of ``mIoU``; a class absent from the targets is left out of ``MeanAcc`` likewise.
    """
    counts = matrix.to(torch.float64)
    hits = torch.diagonal(counts)
    in_target, in_prediction = counts.sum(dim=1), counts.sum(dim=0)
    union = in_target + in_prediction - hits
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    class_iou = torch.where(union > 0, hits / torch.where(union > 0, union, 1.0), nan)
    class_accuracy = torch.where(in_target > 0, hits / torch.where(in_target > 0, in_target, 1.0), nan)
    total = counts.sum()
    return {"OverallAcc": (hits.sum() / total).item() if total > 0 else 0.0,
            "MeanAcc": class_accuracy.nanmean().item(),
            "mIoU": class_iou.nanmean().item(),
            "ClassIoU": class_iou.tolist()}


@torch.no_grad()
def evaluate_multiclass_segmentation(model: nn.Module, loader, *, num_classes: int, device="auto") -> dict:
    """One confusion matrix over the loader (``(images, labels (N, H, W))``) -> :func:`scores_from_confusion`."""
    device = resolve_device(device)
    model.eval().to(device)
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for images, labels in loader:
        matrix += confusion_matrix(model(images.to(device)).argmax(dim=1).cpu(), labels, num_classes)
    return scores_from_confusion(matrix)


# ----------------------------------------------------------------------------- sparsity


def _counted_weights(model_or_state_dict: nn.Module | Mapping) -> list[torch.Tensor]:
    """The weights the course counts: every Conv2d/Linear ``.weight`` (a still-pruned one as orig * mask)."""
    if isinstance(model_or_state_dict, nn.Module):
        weights = []
        for module in model_or_state_dict.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                mask = getattr(module, "weight_mask", None)
                weights.append(module.weight_orig * mask if mask is not None else module.weight)
        return weights
    state = model_or_state_dict
    weights = [value for key, value in state.items() if key.endswith(".weight") and value.dim() in (2, 4)]
    weights += [value * state[key.removesuffix("_orig") + "_mask"] for key, value in state.items()
                if key.endswith(".weight_orig") and value.dim() in (2, 4)]
    return weights


@torch.no_grad()
def course_sparsity(model_or_state_dict: nn.Module | Mapping) -> float:
    """Percentage of zeros over every Conv2d and Linear weight (no biases, no BatchNorm), as the course's check.

    Example:
        >>> layer = nn.Linear(4, 2)
        >>> _ = layer.weight.data[0].zero_()
        >>> course_sparsity(nn.Sequential(layer))
        50.0
    """
    weights = _counted_weights(model_or_state_dict)
    total = sum(weight.numel() for weight in weights)
    if total == 0:
        raise ValueError("no Conv2d or Linear weights found; is this the right model?")
    nonzero = sum(int(torch.count_nonzero(weight)) for weight in weights)
    return 100.0 * (total - nonzero) / total


# ----------------------------------------------------------------------------- student TODOs in a model


class StudentTodoInModel(RuntimeError):
    """A layer the check builds is still a student TODO in this copy of labkit (the file was not judged)."""


@contextmanager
def refuse_student_todos(model_name: str):
    """Turn a student TODO hit while building or running ``model_name`` into a clear refusal.

    The check's process raises ``labkit.grading.limits.EnvironmentProblem`` (exit 3: the file was
    not judged) naming the file and function to implement. Any other error passes through.

    Example::

        with refuse_student_todos("UNet"):
            model = load_into(build_model("unet", **kwargs), state)
            dice = evaluate_segmentation(model, loader)["dice"]
    """
    from labkit.grading.limits import EnvironmentProblem
    try:
        yield
    except NotImplementedError as error:
        text = str(error)
        if not text.startswith("TODO: implement"):
            raise
        raised_in = Path(traceback.extract_tb(error.__traceback__)[-1].filename)
        parts = raised_in.parts
        where = "/".join(parts[len(parts) - 1 - parts[::-1].index("labkit"):]) if "labkit" in parts else str(raised_in)
        raise EnvironmentProblem(
            f"this check builds labkit's {model_name}, and in this copy of labkit `{where}` still has "
            f"'{text}'. Implement it (the lab notebook's hand-off cell before it says what it must do, "
            "the self-check cell after it tells you when it is right) and run the check again. "
            "Your file was not judged; the TA's check builds the course's own layers.") from None
