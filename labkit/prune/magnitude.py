"""Magnitude pruning of a CNN: global L1 pruning, an iterative schedule with fine-tuning, sparsity.

The idea: weights with a small absolute value contribute little, so set them to zero. *Global*
pruning ranks the weights of all layers together (a layer full of small weights loses more of them),
*iterative* pruning removes a bit more in each round and fine-tunes in between, so the network can
adapt. ``torch.nn.utils.prune`` implements a pruned weight as

    weight = weight_orig * weight_mask        (recomputed by a forward pre-hook)

While the mask is attached, training updates ``weight_orig`` but the masked entries stay zero.
``prune.remove`` bakes ``weight`` back into a plain parameter: do it only after the last
fine-tuning step (one more momentum step after ``remove`` brings the zeros back), then save.

Sparsity is counted as the course does: zeros / total over the ``.weight`` of every ``Conv2d`` and
``Linear`` (no biases, no BatchNorm).

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(288, 2))
    >>> prune_to(model, 0.75, light_layers={})    # 216 + 576 weights -> 594 zeros
    75.0
    >>> _ = make_permanent(model); round(course_sparsity(model.state_dict()), 2)
    75.0
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from labkit.evaluate import evaluate_classification
from labkit.io import save_state_dict
from labkit.train import fit

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)  # the layers the course's sparsity counts

# The first conv and the classifier are small and sensitive: prune each on its own to this fraction
# (per-layer L1), once, and keep them out of the global ranking.
DEFAULT_LIGHT_LAYERS = {"conv1": 0.3, "fc": 0.3}

# How prune_to ranks the weights of the big layers against each other (see weight_scores).
RANKINGS = ("magnitude", "lamp")

# The round-by-round schedules of iterative_prune (SMOKE's, and the first build's "CPU (iterative)" and
# "GPU (iterative)") are columns of lab 03's table in labkit.recipes.


# ----------------------------------------------------------------------------- counting
def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: layer}`` for every ``Conv2d`` and ``Linear`` in ``model``, in definition order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, PRUNABLE_TYPES)}


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the layer computes with: ``weight_orig * weight_mask`` while pruned, else ``weight``."""
    if hasattr(layer, "weight_mask"):
        return layer.weight_orig * layer.weight_mask
    return layer.weight


def _masked_count(layer: nn.Module) -> int:
    """How many of the layer's weights a pruning mask already removes (0 when not pruned)."""
    return int((layer.weight_mask == 0).sum()) if hasattr(layer, "weight_mask") else 0


def _weights_of_state_dict(state_dict: Mapping) -> list[torch.Tensor]:
    """Conv/linear weights of a state_dict: 4-D and 2-D ``*.weight`` entries (BatchNorm's are 1-D)."""
    weights = []
    for key, value in state_dict.items():
        if key.endswith(".weight") and value.dim() in (2, 4):
            weights.append(value)
        elif key.endswith(".weight_orig") and value.dim() in (2, 4):
            weights.append(value * state_dict[key[:-len("_orig")] + "_mask"])
    return weights


def course_sparsity(model_or_state_dict: nn.Module | Mapping) -> float:
    """Percentage of zeros over all Conv2d and Linear weights (biases and BatchNorm excluded).

    For a model, the layers are found by type; for a state_dict, the 4-D and 2-D ``*.weight``
    tensors are taken (``*.weight_orig * *.weight_mask`` for a still-pruned one).
    """
    if isinstance(model_or_state_dict, nn.Module):
        weights = [effective_weight(layer) for layer in prunable_layers(model_or_state_dict).values()]
    else:
        weights = _weights_of_state_dict(model_or_state_dict)
    total = sum(weight.numel() for weight in weights)
    if total == 0:
        raise ValueError("no Conv2d or Linear weights found; is this the right model?")
    zeros = sum((weight == 0).sum().item() for weight in weights)
    return 100.0 * zeros / total


def layer_sparsity(model: nn.Module) -> list[dict]:
    """One row per Conv2d/Linear layer: ``layer``, ``shape``, ``weights``, ``zeros``, ``sparsity`` (%)."""
    rows = []
    for name, layer in prunable_layers(model).items():
        weight = effective_weight(layer)
        zeros = int((weight == 0).sum())
        rows.append({"layer": name, "shape": tuple(weight.shape), "weights": weight.numel(),
                     "zeros": zeros, "sparsity": 100.0 * zeros / weight.numel()})
    return rows


# ----------------------------------------------------------------------------- ranking
def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every entry of one layer's weight (Lee et al., 2021), same shape as ``weight``:

        score(u) = w_u^2 / (sum of w_v^2 over the layer's entries with |w_v| >= |w_u|)

    A layer's largest weight scores 1, and a weight scores low when the layer's larger weights carry
    most of its energy, so scores compare across layers whatever each layer's scale (after a
    BatchNorm, a layer's scale says nothing about its importance). Zeros score 0.

    Example:
        >>> [round(score, 3) for score in lamp_scores(torch.tensor([1.0, -2.0, 0.0, 3.0])).tolist()]
        [0.071, 0.308, 0.0, 1.0]
    """
    squares = weight.detach().flatten() ** 2
    ascending, order = squares.sort()
    energy_at_or_above = ascending.flip(0).cumsum(0).flip(0).clamp_min(torch.finfo(squares.dtype).tiny)
    scores = torch.empty_like(squares)
    scores[order] = ascending / energy_at_or_above
    return scores.view_as(weight)


def check_ranking(ranking: str) -> str:
    """``ranking`` if it is one of :data:`RANKINGS`, else a ValueError naming them."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")
    return ranking


def weight_scores(layer: nn.Module, ranking: str = "magnitude") -> torch.Tensor:
    """What :func:`prune_to` ranks a layer's weights by: ``|w|`` (``"magnitude"``) or :func:`lamp_scores`."""
    weight = effective_weight(layer).detach()
    return weight.abs() if check_ranking(ranking) == "magnitude" else lamp_scores(weight)


# ----------------------------------------------------------------------------- pruning
def prune_to(model: nn.Module, target: float, *,
             light_layers: Mapping[str, float] = DEFAULT_LIGHT_LAYERS, ranking: str = "magnitude") -> float:
    """Prune ``model`` until ``target`` (a fraction, e.g. 0.9) of its conv/linear weights are zero.

    Layers named in ``light_layers`` are pruned on their own to their fraction (0 keeps them whole);
    all other Conv2d/Linear weights are ranked together by ``|w|`` (``prune.global_unstructured``
    with L1; ``ranking="lamp"``: by :func:`lamp_scores`) and the lowest are removed until the whole
    model reaches ``target``. Calling it again
    with a higher target prunes further; masks already there are kept. Returns the course sparsity (%).
    """
    check_ranking(ranking)  # before anything is pruned
    layers = prunable_layers(model)
    unknown = set(light_layers) - set(layers)
    if unknown:
        raise ValueError(f"light_layers names {sorted(unknown)}, which are not Conv2d/Linear layers of "
                         f"the model; choose from {list(layers)[:4]} ...")
    # An integer amount means "mask this many more of the weights not masked yet" (the smallest |w|).
    # Counting what the masks already remove (not all zeros) keeps this exact when a weight is
    # 0.0 without a mask, e.g. in a model that was pruned, saved and loaded again.
    for name, fraction in light_layers.items():
        still_needed = math.ceil(fraction * layers[name].weight.numel()) - _masked_count(layers[name])
        if still_needed > 0:
            prune.l1_unstructured(layers[name], "weight", amount=still_needed)

    ### BEGIN SOLUTION
    ranked = [layer for name, layer in layers.items() if name not in light_layers]
    total = sum(effective_weight(layer).numel() for layer in layers.values())
    zeros_in_light_layers = sum(int((effective_weight(layers[name]) == 0).sum()) for name in light_layers)
    to_remove = math.ceil(target * total) - zeros_in_light_layers - sum(map(_masked_count, ranked))
    if to_remove > 0:
        prune.global_unstructured(
            [(layer, "weight") for layer in ranked], pruning_method=prune.L1Unstructured,
            amount=to_remove,
            importance_scores={(layer, "weight"): weight_scores(layer, ranking) for layer in ranked})
    ### END SOLUTION
    return course_sparsity(model)


def make_permanent(model: nn.Module) -> nn.Module:
    """``prune.remove`` on every pruned layer: plain ``.weight`` parameters, zeros baked in.

    Do this after the last fine-tuning step and before saving: a state_dict with
    ``weight_orig``/``weight_mask`` keys does not load into the plain model.
    """
    for layer in prunable_layers(model).values():
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")
    return model


def save_pruned(model: nn.Module, path: str | Path) -> Path:
    """Make the pruning permanent and save the state_dict (CPU tensors); returns the path."""
    make_permanent(model)
    return save_state_dict(model, path)


# ----------------------------------------------------------------------------- fine-tuning
class _FirstBatches:
    """The first ``count`` batches of a (shuffled) loader: a fraction of an epoch."""

    def __init__(self, loader, count: int):
        self.loader, self.count = loader, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if index == self.count:
                return
            yield batch


def fine_tune(model: nn.Module, train_loader, *, epochs: float, lr: float = 0.01, momentum: float = 0.9,
              weight_decay: float = 5e-4, valid_loader=None, device="auto", progress: bool = True,
              log=None) -> dict:
    """SGD with momentum and a cosine learning rate (``lr`` -> 0) for ``epochs`` (may be 0.5).

    Pruning masks stay attached, so pruned weights stay zero. With ``valid_loader`` the best epoch's
    weights are kept. Returns ``labkit.train.fit``'s result.
    """
    whole_epochs = max(1, math.ceil(epochs))
    batches = max(1, round(epochs / whole_epochs * len(train_loader)))
    loader = train_loader if batches >= len(train_loader) else _FirstBatches(train_loader, batches)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=whole_epochs * len(loader))
    return fit(model, loader, loss_fn=nn.CrossEntropyLoss(), epochs=whole_epochs, optimizer=optimizer,
               scheduler=scheduler, scheduler_per_step=True, valid_loader=valid_loader,
               evaluate=evaluate_classification if valid_loader is not None else None,
               monitor="accuracy", device=device, progress=progress, log=log)


def _snapshot(model: nn.Module) -> tuple[dict, dict]:
    """A copy of the weights and masks, to go back to if a later round falls below the floor."""
    masks = {name: layer.weight_mask.detach().clone()
             for name, layer in prunable_layers(model).items() if hasattr(layer, "weight_mask")}
    return copy.deepcopy(model.state_dict()), masks


def _restore(model: nn.Module, snapshot: tuple[dict, dict]) -> None:
    state, masks = snapshot
    make_permanent(model)
    for name, layer in prunable_layers(model).items():
        if name in masks:  # re-attach the snapshot's masks so the state_dict keys match again
            prune.custom_from_mask(layer, "weight", masks[name])
    model.load_state_dict(state)


def iterative_prune(model: nn.Module, train_loader, valid_loader, *, targets: Sequence[float],
                    epochs_per_round: float | Sequence[float] = 1, lr: float = 0.01,
                    accuracy_floor: float = 90.0, light_layers: Mapping[str, float] = DEFAULT_LIGHT_LAYERS,
                    device="auto", progress: bool = True, log=print) -> list[dict]:
    """Prune to each target in turn, fine-tuning after each round; stop below ``accuracy_floor``.

    Every decision (each round's best epoch, the floor) is made on ``valid_loader``, images held out
    from the training data; evaluate the test split once, after the schedule, and report that.

    Args:
        targets: increasing sparsities as fractions, e.g. ``(0.5, 0.7, 0.8, 0.9)``.
        epochs_per_round: fine-tuning epochs after each round (one number, or one per target).
        accuracy_floor: validation accuracy (%) a round must keep; the first round below it is undone
            (the model goes back to the last round that passed) and the schedule stops.

    Returns one row per round (``round``, ``target``, ``sparsity``, ``accuracy``, ``epochs``,
    ``seconds``, ``kept``), starting with round 0 = the model as given. The model is changed in
    place and keeps its masks: call :func:`save_pruned` (or :func:`make_permanent`) afterwards.
    """
    if list(targets) != sorted(targets) or not all(0 < t < 1 for t in targets):
        raise ValueError(f"targets must be increasing fractions in (0, 1), got {list(targets)}")
    epochs_list = list(epochs_per_round) if isinstance(epochs_per_round, Sequence) else \
        [epochs_per_round] * len(targets)
    if len(epochs_list) != len(targets):
        raise ValueError(f"epochs_per_round has {len(epochs_list)} entries for {len(targets)} targets")

    def valid_accuracy() -> float:
        return evaluate_classification(model, valid_loader, device=device)["accuracy"]

    rows = [{"round": 0, "target": 0.0, "sparsity": course_sparsity(model), "accuracy": valid_accuracy(),
             "epochs": 0, "seconds": 0.0, "kept": True}]
    if rows[0]["accuracy"] < accuracy_floor and log:
        log(f"note: the starting model is already below the floor ({rows[0]['accuracy']:.2f}% < "
            f"{accuracy_floor}%); rounds will stop at the first that does not reach it")
    ### BEGIN SOLUTION
    last_passing = _snapshot(model)
    for index, (target, epochs) in enumerate(zip(targets, epochs_list), start=1):
        started = time.perf_counter()
        sparsity = prune_to(model, target, light_layers=light_layers)
        if epochs > 0:
            result = fine_tune(model, train_loader, epochs=epochs, lr=lr, valid_loader=valid_loader,
                               device=device, progress=progress, log=None)
            accuracy = result["best_metric"]
        else:
            accuracy = valid_accuracy()
        row = {"round": index, "target": 100.0 * target, "sparsity": sparsity, "accuracy": accuracy,
               "epochs": epochs, "seconds": time.perf_counter() - started,
               "kept": accuracy >= accuracy_floor}
        rows.append(row)
        if log:
            log(f"round {index}: target {row['target']:.1f}% -> sparsity {sparsity:.2f}%, "
                f"accuracy {accuracy:.2f}% ({row['seconds']:.0f} s)")
        if not row["kept"]:
            _restore(model, last_passing)
            if log:
                log(f"accuracy fell below {accuracy_floor}%: went back to the previous round and stopped")
            break
        last_passing = _snapshot(model)
    ### END SOLUTION
    return rows
