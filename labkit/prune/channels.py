"""Structured (channel) pruning: remove whole filters, so the network really gets smaller and faster.

Unstructured pruning (:mod:`labkit.prune.magnitude`) sets single weights to zero. The tensors keep their
shapes, and a dense convolution kernel multiplies the zeros like any other number: 90% zeros cost
the same time as none (only sparse kernels, which pay off at far higher sparsity or on special
hardware, could skip them). *Channel* pruning removes whole output channels of a convolution
instead, so every tensor after it shrinks: the BatchNorm's entries, the next convolution's input
channels and — in a ResNet — every layer that adds into the same residual stream. Those coupled
layers form a *group* that must lose the same channels. Working the groups out by hand is error
prone; Torch-Pruning (``torch-pruning`` on PyPI; Fang et al., "DepGraph", CVPR 2023) traces the model
once with an example input, builds the dependency graph and removes each group's channels together.

The recipe here mirrors :func:`labkit.prune.gradual.gradual_prune`: remove channels in a few steps
during the first ``prune_fraction`` of training (each step ranks the channels of a group, by default by
the L2 norm of their weights, and drops the weakest), then fine-tune the thinner network while the learning
rate decays, with distillation from the dense model as the teacher (:mod:`labkit.prune.distill`).

Example:
    >>> from labkit.models.resnet20 import resnet20
    >>> model = resnet20()
    >>> channel_prune(model, ratio=0.5)
    >>> channel_widths(model)["layer1.0.conv1"], channel_widths(model)["layer3.2.conv2"]
    (8, 32)
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from labkit.profile import count_macs
from labkit.prune.distill import evaluation_steps, frozen_teacher, progress_row, train_step, training_layout


def _torch_pruning():
    """Import Torch-Pruning, with a message that says how to get it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its import warns about optional extras it does not need here
            import torch_pruning
    except ImportError as error:  # pragma: no cover - it is a dependency of labkit
        raise ImportError("structured pruning needs Torch-Pruning: pip install torch-pruning") from error
    return torch_pruning


# ResNet-20's three stages by module name; the stem ("conv1") feeds stage 1's residual stream.
RESNET20_STAGES = ("layer1", "layer2", "layer3")


def resnet20_stage_ratios(stage1: float, stage2: float, stage3: float) -> dict[str, float]:
    """Per-stage channel fractions for :func:`channel_pruner`: the stem belongs to stage 1 (they share
    its residual stream).

    Stage 1 runs at 32x32 with 16 channels, stage 3 at 8x8 with 64: each stage costs about the same
    MACs, but stage 3 holds most of the weights. Thinning the early stages therefore costs less
    accuracy for the MACs (and, measured cleanly, the time) it saves (benchmarks/README.md).

    Example:
        >>> resnet20_stage_ratios(0.5, 0.0, 0.0)
        {'conv1': 0.5, 'layer1': 0.5, 'layer2': 0.0, 'layer3': 0.0}
    """
    return {"conv1": stage1, **dict(zip(RESNET20_STAGES, (stage1, stage2, stage3)))}


# Notebook 03's structured-section recipe (prune_channels_gradually's settings) is the "structured" part of
# lab 03's table in labkit.recipes, with how it was chosen.


def ratio_from_list(values: list[float], *, name: str = "a channel ratio") -> float | dict[str, float]:
    """One fraction for every stage (``[0.25]`` -> ``0.25``) or one per stage (``[0.5, 0, 0]`` ->
    :func:`resnet20_stage_ratios`), e.g. from a notebook parameter parsed by ``labkit.params.as_float_list``;
    ``name`` (e.g. the parameter's) starts the error for any other count.

    Example:
        >>> ratio_from_list([0.25]), ratio_from_list([0.5, 0, 0])["layer1"]
        (0.25, 0.5)
    """
    if len(values) == 1:
        return float(values[0])
    if len(values) == 3:
        return resnet20_stage_ratios(*(float(value) for value in values))
    raise ValueError(f"{name} is one fraction (0.25) or three, stage 1 (with the stem), 2 and 3 "
                     f"([0.5, 0, 0]); got {len(values)} values: {list(values)}")


def ratio_label(ratio: float | Mapping[str, float]) -> str:
    """``0.25`` -> ``"0.25"``; :func:`resnet20_stage_ratios` ``(0.5, 0, 0)`` -> ``"0.5/0/0"`` (stage 1/2/3).

    Example:
        >>> ratio_label(0.25), ratio_label(resnet20_stage_ratios(0.5, 0.0, 0.0))
        ('0.25', '0.5/0/0')
    """
    if isinstance(ratio, Mapping):
        return "/".join(f"{ratio.get(stage, 0.0):g}" for stage in RESNET20_STAGES)
    return f"{ratio:g}"


def _check_ratio(ratio: float, what: str) -> None:
    if not 0 <= ratio < 1:
        raise ValueError(f"{what} is the fraction of channels to remove, in [0, 1), e.g. 0.4; got {ratio}")


# How a group's channels are ranked before the weakest are removed (Torch-Pruning's importance criteria).
IMPORTANCE = {
    "l2": "the L2 norm of each channel's weights over the whole group",
    "taylor": "|weight x gradient| (first-order Taylor estimate of the loss change); needs .grad filled first",
    "bn_scale": "the absolute BatchNorm scale (gamma) of each channel",
}


def _importance(name: str):
    tp = _torch_pruning()
    makers = {"l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
              "taylor": tp.importance.GroupTaylorImportance, "bn_scale": tp.importance.BNScaleImportance}
    if name not in makers:
        raise ValueError(f"importance is one of {sorted(makers)}, got {name!r}")
    return makers[name]()


def channel_pruner(model: nn.Module, *, ratio: float | Mapping[str, float], steps: int = 1,
                   example_input: torch.Tensor | None = None, keep: tuple[str, ...] = ("fc",),
                   importance: str = "l2"):
    """A Torch-Pruning pruner that removes ``ratio`` of each group's channels in ``steps`` calls of ``.step()``.

    ``ratio`` is one fraction for every group, or a mapping from module names to fractions (each
    applies to that module and everything inside it, e.g. :func:`resnet20_stage_ratios`; modules not
    named keep their channels). ``example_input`` (default one CIFAR image ``(1, 3, 32, 32)`` on the
    model's device) is traced once to find the coupled layers; modules named in ``keep`` keep their
    output channels (the classifier's 10 outputs are the classes). ``importance`` ranks the channels
    (:data:`IMPORTANCE`); with ``"taylor"`` call ``loss.backward()`` before every ``.step()``.
    """
    tp = _torch_pruning()
    ranking = _importance(importance)
    modules = dict(model.named_modules())
    if isinstance(ratio, Mapping):
        unknown = sorted(set(ratio) - set(modules))
        if unknown:
            raise ValueError(f"ratio names modules the model does not have: {unknown}; "
                             f"top-level modules: {[name for name, _ in model.named_children()]}")
        for name, value in ratio.items():
            _check_ratio(value, f"ratio[{name!r}]")
        per_module = {modules[name]: value for name, value in ratio.items() if value > 0}
        if not per_module:
            raise ValueError(f"every ratio is 0, nothing would be pruned: {dict(ratio)}")
        uniform = 0.0
    else:
        _check_ratio(ratio, "ratio")
        if ratio == 0:
            raise ValueError("ratio 0 prunes nothing; give a fraction in (0, 1), e.g. 0.4")
        per_module, uniform = None, ratio
    if example_input is None:
        example_input = torch.randn(1, 3, 32, 32, device=next(model.parameters()).device)
    kept = [module for name, module in modules.items() if name in keep]
    return tp.pruner.MetaPruner(model, example_input, importance=ranking,
                                pruning_ratio=uniform, pruning_ratio_dict=per_module, iterative_steps=steps,
                                ignored_layers=kept)


def channel_prune(model: nn.Module, *, ratio: float | Mapping[str, float], **options) -> None:
    """Remove ``ratio`` of the channels of every prunable group of ``model`` at once (in place);
    ``ratio`` as in :func:`channel_pruner`."""
    pruner = channel_pruner(model, ratio=ratio, **options)  # traces with autograd on
    with torch.no_grad():
        pruner.step()


def channel_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d, by module name (e.g. ``{"conv1": 16, "layer1.0.conv1": 16, ...}``)."""
    return {name: module.out_channels for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}


def _cosine(step: int, total: int, lr: float) -> float:
    return 0.5 * lr * (1 + math.cos(math.pi * step / total))


def prune_channels_gradually(model: nn.Module, train_loader, valid_loader=None, *,
                             ratio: float | Mapping[str, float] = 0.4,
                             epochs: float = 8, prune_fraction: float = 0.25, prune_steps: int = 4,
                             lr: float = 0.02, momentum: float = 0.9, weight_decay: float = 5e-4,
                             distill_alpha: float = 0.7, temperature: float = 4.0, evaluations: int = 4,
                             importance: str = "l2", device: str | torch.device = "cpu", log=print) -> list[dict]:
    """Remove ``ratio`` of the channels of ``model`` in ``prune_steps`` steps while fine-tuning it (in place);
    ``ratio`` as in :func:`channel_pruner` (one fraction, or fractions by module name).

    The steps are spread evenly over the first ``prune_fraction`` of the ``epochs * len(train_loader)``
    SGD steps (the first at step 0); the learning rate follows one cosine from ``lr`` to 0. After each
    pruning step the parameters are new tensors, so the optimizer starts again (momentum is lost, the
    learning rate continues). With ``distill_alpha > 0`` a frozen copy of the dense model is the teacher.
    ``importance`` ranks the channels (:data:`IMPORTANCE`); ``"taylor"`` takes its gradient from the
    cross-entropy of the batch at hand, just before each pruning step.

    Args:
        train_loader: batches ``(images (N, 3, 32, 32), labels (N,))``, shuffled and augmented.
        valid_loader: if given, evaluated ``evaluations`` times, evenly spread (the last at the end);
            nothing is chosen on it.

    Returns one row per evaluation: ``epoch``, ``step``, ``macs`` (per 32x32 image), ``loss``
    (training, mean since the previous row), ``accuracy`` (validation, % or None), ``seconds``.
    """
    if not 0 < prune_fraction <= 1:
        raise ValueError(f"prune_fraction is the part of the steps that prunes, in (0, 1]; got {prune_fraction}")
    if prune_steps < 1:
        raise ValueError(f"prune_steps must be >= 1, got {prune_steps}")
    device = torch.device(device)
    layout = training_layout(device)
    model.to(device)
    teacher = frozen_teacher(model, memory_format=layout) if distill_alpha > 0 else None
    example = torch.randn(1, 3, 32, 32, device=device)
    model.eval()
    pruner = channel_pruner(model, ratio=ratio, steps=prune_steps, example_input=example, importance=importance)
    total_steps = max(1, round(epochs * len(train_loader)))
    last_prune_step = max(0, round(prune_fraction * total_steps) - 1)
    prune_at = {round(last_prune_step * index / max(prune_steps - 1, 1)) for index in range(prune_steps)}
    if len(prune_at) < prune_steps:
        raise ValueError(f"{prune_steps} pruning steps do not fit in {last_prune_step + 1} SGD steps: "
                         "train longer or prune in fewer steps")
    evaluate_at = evaluation_steps(total_steps, evaluations, validating=valid_loader is not None)

    def new_optimizer():
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    history, started, step, loss_sum, loss_count = [], time.perf_counter(), 0, 0.0, 0
    optimizer = new_optimizer()
    while step < total_steps:
        for images, labels in train_loader:
            if step in prune_at:
                model.to(memory_format=torch.contiguous_format).eval()
                if importance == "taylor":
                    model.zero_grad(set_to_none=True)
                    F.cross_entropy(model(images.to(device)), labels.to(device)).backward()
                with torch.no_grad():
                    pruner.step()
                model.zero_grad(set_to_none=True)
                model.to(memory_format=layout)
                optimizer = new_optimizer()
            model.train()
            for group in optimizer.param_groups:
                group["lr"] = _cosine(step, total_steps, lr)
            images = images.to(device).contiguous(memory_format=layout)
            labels = labels.to(device)
            loss = train_step(model, images, labels, optimizer, teacher=teacher, alpha=distill_alpha,
                              temperature=temperature)
            step += 1
            loss_sum, loss_count = loss_sum + loss, loss_count + 1
            if step in evaluate_at:
                macs = count_macs(model, input_size=(1, 3, 32, 32))
                history.append(progress_row(model, valid_loader, step=step, steps_per_epoch=len(train_loader),
                                            mean_loss=loss_sum / loss_count, started=started, device=device,
                                            measures={"macs": macs}, shown=f"{macs / 1e6:.1f} M MACs", log=log))
                loss_sum, loss_count = 0.0, 0
            if step == total_steps:
                break
    model.to(memory_format=torch.contiguous_format).eval()
    return history
