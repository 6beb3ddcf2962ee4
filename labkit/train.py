"""One fit loop for every lab: progress bars, history, best checkpoint, resume, AMP (CUDA; bfloat16 on CPU).

A checkpoint is written after every epoch (``last.pt``: model, optimizer, scheduler, scaler, epoch,
best metric, history, RNG states, and the record of the recipe that wrote it), so
``fit(..., resume=True)`` continues after a disconnect (Colab) exactly where it stopped, on any
device: it is read to the CPU, the weights and optimizer state go to the model's device and each
RNG state back to its own device. A checkpoint of another recipe (another architecture, optimizer
or recipe name: e.g. a GPU recipe's UNet-64 met by the CPU recipe's UNet-16 after Colab reconnects
without a GPU) is refused with :class:`labkit.checkpoint.CheckpointMismatch`, which says what to do
(the checkpoint file itself: :mod:`labkit.checkpoint`). The best weights
by the monitored validation metric go to ``best.pt`` (a plain state_dict).

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> data = TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    >>> model = torch.nn.Linear(4, 2)
    >>> result = fit(model, DataLoader(data, batch_size=8), loss_fn=torch.nn.CrossEntropyLoss(),
    ...              epochs=2, device="cpu", progress=False, log=None)
    >>> [row["epoch"] for row in result["history"]]
    [1, 2]
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from labkit import recipes
from labkit.checkpoint import resume_checkpoint, write_checkpoint
from labkit.device import resolve_device, seed_everything
from labkit.profile import peak_memory_mb
from labkit.weight_average import WeightAverage


# Non-finite losses in a row under float16 + GradScaler before training stops: each one halves the
# scale (65536 -> 2**-34 after 50), so by then the overflow is the forward pass's, not the scale's.
MAX_OVERFLOW_STEPS = 50


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, loss_fn: Callable, *,
                    device: torch.device, scaler: torch.amp.GradScaler | None = None,
                    step_scheduler=None, channels_last: bool = False, progress: bool = True,
                    autocast_dtype: torch.dtype | None = None, weight_average: WeightAverage | None = None,
                    description: str = "train", stats: dict | None = None,
                    max_overflow_steps: int = MAX_OVERFLOW_STEPS) -> float:
    """One pass over ``loader``; returns the mean training loss of the steps taken.

    ``step_scheduler`` (optional) is stepped after every optimizer step (e.g. OneCycleLR), and
    ``weight_average`` (optional) updated.
    The forward pass runs under autocast to ``autocast_dtype`` (``torch.bfloat16`` on a CPU;
    float16 whenever ``scaler`` is given, CUDA only); the loss is computed in float32.

    A non-finite loss without a ``scaler`` stops training (``FloatingPointError``: the run
    diverged). Under a ``scaler`` (float16) it is an overflow, the scaler's to handle: the step is
    skipped and the scale lowered, as for an overflowing gradient; only ``max_overflow_steps``
    non-finite losses in a row stop training (the forward pass itself overflows float16, which no
    scale fixes). Non-finite losses are left out of the mean loss; ``stats`` (a dict, optional)
    receives ``skipped_steps``, the steps the scaler skipped (for any overflow, a gradient's too).
    """
    if scaler is not None and autocast_dtype is None:
        autocast_dtype = torch.float16
    model.train()
    total_loss, total_items = 0.0, 0
    skipped = overflow_run = 0
    bar = tqdm(loader, desc=description, leave=False, disable=not progress)
    for inputs, targets in bar:
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last and inputs.dim() == 4:  # images (N, C, H, W); other inputs stay as they are
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, autocast_dtype):
            outputs = model(inputs)
        if autocast_dtype is not None and isinstance(outputs, torch.Tensor):
            outputs = outputs.float()
        loss = loss_fn(outputs, targets)
        finite = bool(torch.isfinite(loss))
        if not finite and scaler is None:
            raise FloatingPointError(f"training loss became {loss.item()}; lower the learning rate "
                                     "or check the inputs for NaN")
        overflow_run = 0 if finite else overflow_run + 1
        if overflow_run >= max_overflow_steps:
            raise FloatingPointError(
                f"training loss was {loss.item()} for {overflow_run} steps in a row under float16 autocast "
                f"(GradScaler skipped each; its scale is now {scaler.get_scale():g}): the forward pass "
                "overflows float16. Lower the learning rate, or train in float32 (fit(..., amp=False))")
        if scaler is not None:
            scale = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # skipped when a gradient is inf/NaN (always after a non-finite loss)
            scaler.update()         # ... and then the scale is lowered
            skipped += scaler.get_scale() < scale
        else:
            loss.backward()
            optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        if weight_average is not None:
            weight_average.update(model)
        if finite:
            total_loss += loss.item() * inputs.shape[0]
            total_items += inputs.shape[0]
        shown = {"skipped": skipped} if skipped else {}
        bar.set_postfix(loss=f"{total_loss / max(total_items, 1):.4f}", **shown)
    if stats is not None:
        stats["skipped_steps"] = skipped
    if total_items == 0:
        return float("nan") if skipped else 0.0
    return total_loss / total_items


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if mode == "max" else value < best


# ----------------------------------------------------------------------------- schedules, augmentation seeds
SCHEDULES = ("cosine", "onecycle", "step")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str = "cosine", *, epochs: int,
                   lr: float, steps_per_epoch: int, pct_start: float = 0.2):
    """``(scheduler, stepped_per_batch)`` for ``schedule`` in :data:`SCHEDULES`; pass both to
    :func:`fit` (``scheduler=``, ``scheduler_per_step=``).

    - ``"cosine"``: ``lr`` decays to 0 over ``epochs``, stepped once per epoch.
    - ``"onecycle"``: ``OneCycleLR`` stepped every batch, warming up to the peak ``lr`` over the first
      ``pct_start`` of the ``epochs * steps_per_epoch`` steps, then annealing to ~0 (a high peak
      rate trains a small network in few epochs).
    - ``"step"``: the optimizer's rate, then a tenth of it for the last 30 % of the steps, stepped
      every batch (a short run: a constant rate, then a settling one).

    Example:
        >>> optimizer = torch.optim.AdamW(nn.Linear(2, 1).parameters(), lr=3e-3)
        >>> scheduler, per_step = make_scheduler(optimizer, "onecycle", epochs=2, lr=3e-3,
        ...                                      steps_per_epoch=5)
        >>> type(scheduler).__name__, per_step, scheduler.total_steps
        ('OneCycleLR', True, 10)
    """
    total_steps = epochs * max(1, steps_per_epoch)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs), False
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                   pct_start=pct_start), True
    if schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[int(0.7 * total_steps)], gamma=0.1), True
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


def seed_augmentations(loader, seed: int) -> bool:
    """Reseed the augmentations of ``loader.dataset.transform``; ``False`` if it has no own RNG.

    albumentations keeps its own random generator, which ``seed_everything`` does not reach:
    without this the second model of a comparison would continue the first one's stream and see
    different augmentations.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> seed_augmentations(DataLoader(TensorDataset(torch.zeros(2, 1))), 0)   # no transform to seed
        False
    """
    transform = getattr(loader.dataset, "transform", None)
    if not hasattr(transform, "set_random_seed"):
        return False
    transform.set_random_seed(seed)
    return True


def fit(model: nn.Module, train_loader, *, loss_fn: Callable, epochs: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        scheduler=None, scheduler_per_step: bool = False,
        valid_loader=None, evaluate: Callable | None = None, monitor: str | None = None,
        mode: str = "max", device="auto", checkpoint_dir: str | Path | None = None,
        resume: bool = False, recipe: str | None = None, amp: bool = True, cpu_bfloat16: bool = False, channels_last: bool = True,
        ema_decay: float | None = None, seed: int | None = None, restore_best: bool = True, progress: bool = True,
        log: Callable | None = print) -> dict:
    """Train ``model`` for ``epochs`` epochs and return ``{"history", "best_metric", "best_epoch"}``.

    Args:
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        optimizer: defaults to ``AdamW(lr=lr)``.
        scheduler: stepped once per epoch, or per batch with ``scheduler_per_step=True``.
        valid_loader, evaluate: ``evaluate(model, valid_loader, device=...) -> dict`` of metrics
            (e.g. :func:`labkit.evaluate.evaluate_segmentation`); scalar entries go to the history.
        monitor: the metric that picks the best epoch (``"dice"``, ``"accuracy"``, ``"mIoU"``);
            defaults to the first scalar metric. ``mode``: ``"max"`` or ``"min"``.
        checkpoint_dir: where ``last.pt`` (every epoch) and ``best.pt`` go; ``None`` keeps nothing.
            One folder per recipe (e.g. ``out_dir / "checkpoints" / "FULL-GPU"``): a recipe never
            resumes another's checkpoint.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists (on any device). A
            checkpoint of another recipe raises :class:`labkit.checkpoint.CheckpointMismatch` before anything is loaded.
        recipe: this recipe's name (e.g. ``"FULL-GPU"``), recorded in ``last.pt``; resuming a
            checkpoint recorded under another name is refused. ``None``: the architecture and the
            optimizer alone decide.
        amp: float16 autocast with a GradScaler, CUDA only. An overflow (a non-finite loss or
            gradient) skips that step and lowers the scale instead of stopping the run; the
            history rows then count ``skipped_steps``, and only a loss that stays non-finite for
            ``MAX_OVERFLOW_STEPS`` steps in a row stops it (:func:`train_one_epoch`).
        cpu_bfloat16: bfloat16 autocast of the forward pass on a CPU (loss, gradients and weights
            stay float32). Measured 1.79-2.08x faster per UNet-16 step on an AVX512-BF16 CPU
            (``benchmarks/bench_cpu_recipe.py --variants``, side by side; benchmarks/README.md);
            on a CPU without bfloat16 units it can be slower (see ``labkit.device.cpu_has_bfloat16``),
            and it changes the numbers a little: off by default.
        channels_last: NHWC memory layout for conv nets, on CUDA and CPU (the UNet-16
            step measured 1.29-1.38x faster on 2 CPU cores, ``benchmarks/bench_cpu_recipe.py --variants``); the model
            is handed back in the default layout, so quantization and saving see plain tensors.
        ema_decay: keep an exponential moving average of the weights (``labkit.weight_average``),
            updated after every optimizer step with this decay (e.g. 0.99); the validation metrics,
            the best epoch and the weights handed back are then the average's.
        seed: seeds every RNG first (ignored when resuming: the saved RNG state is restored).
        restore_best: load the best weights back into ``model`` at the end.

    Each history row: ``epoch``, ``train_loss``, ``lr``, ``seconds``, ``peak_memory_mb``,
    ``skipped_steps`` (float16 on CUDA only) and the validation metrics.
    """
    device = resolve_device(device)
    if seed is not None:
        seed_everything(seed)
    on_cuda = device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cuda") if (amp and on_cuda) else None
    autocast_dtype = torch.bfloat16 if (cpu_bfloat16 and device.type == "cpu") else None
    average = WeightAverage(model, decay=ema_decay) if ema_decay is not None else None
    scored = average.module if average is not None else model  # the weights evaluated and kept
    history: list[dict] = []
    best_metric, best_epoch, start_epoch = None, None, 0
    best_state = None

    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    last_path = checkpoint_dir / "last.pt" if checkpoint_dir else None
    best_path = checkpoint_dir / "best.pt" if checkpoint_dir else None
    if resume and last_path is not None and last_path.exists():
        start_epoch, history, best_metric, best_epoch = resume_checkpoint(
            last_path, model, optimizer, scheduler=scheduler, scaler=scaler, weight_average=average,
            device=device, recipe=recipe, log=log)
        if log:
            log(f"resumed from {last_path} after epoch {start_epoch}")

    for epoch in range(start_epoch + 1, epochs + 1):
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        stats: dict = {}
        train_loss = train_one_epoch(
            model, train_loader, optimizer, loss_fn, device=device, scaler=scaler,
            step_scheduler=scheduler if scheduler_per_step else None, channels_last=channels_last,
            autocast_dtype=autocast_dtype, weight_average=average, progress=progress,
            description=f"epoch {epoch}/{epochs}", stats=stats)
        if scheduler is not None and not scheduler_per_step:
            scheduler.step()
        row = {"epoch": epoch, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - started, "peak_memory_mb": peak_memory_mb(device)}
        if scaler is not None:  # float16: the steps GradScaler skipped for an overflow
            row["skipped_steps"] = stats["skipped_steps"]
        if valid_loader is not None and evaluate is not None:
            metrics = evaluate(scored, valid_loader, device=device)
            row.update({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
            monitor = monitor or next(k for k, v in metrics.items() if isinstance(v, (int, float)))
            if _is_better(row[monitor], best_metric, mode):
                best_metric, best_epoch = row[monitor], epoch
                best_state = _copy_to_cpu(scored.state_dict())
                if best_path is not None:
                    best_path.parent.mkdir(parents=True, exist_ok=True)
                    torch.save(best_state, best_path)
        history.append(row)
        if log:
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if epoch == start_epoch + 1 and epoch < epochs:  # the first epoch of this run: how long the rest takes
                log(f"about {(epochs - epoch) * row['seconds'] / 60:.1f} min for the other {epochs - epoch} "
                    f"epochs at this epoch's speed")
        if last_path is not None:
            write_checkpoint(last_path, model, optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch,
                             best_metric=best_metric, best_epoch=best_epoch, history=history,
                             weight_average=average, recipe=recipe, device=device)

    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    if average is not None:
        model.load_state_dict(average.state_dict())
    if restore_best and best_epoch is not None:
        _restore_best(model, best_state, best_path)
    return {"history": history, "best_metric": best_metric, "best_epoch": best_epoch}


def _copy_to_cpu(state_dict: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


def _restore_best(model: nn.Module, best_state: dict | None, best_path: Path | None) -> None:
    """Load the best epoch's weights: kept in memory in this run, else ``best.pt`` (a resumed run)."""
    if best_state is None and best_path is not None and best_path.exists():
        best_state = torch.load(best_path, map_location="cpu", weights_only=True)
    if best_state is not None:
        model.load_state_dict(best_state)


# Training from scratch: the "GPU (from scratch)" column of lab 03's table (labkit.recipes).
_FROM_SCRATCH = recipes.table("03").recipe("GPU (from scratch)")


def train_baseline(model: nn.Module, train_loader, *, valid_loader=None, epochs: int = _FROM_SCRATCH["epochs"],
                   lr: float = _FROM_SCRATCH["lr"], momentum: float = _FROM_SCRATCH["momentum"],
                   weight_decay: float = _FROM_SCRATCH["weight_decay"], nesterov: bool = _FROM_SCRATCH["nesterov"],
                   device="auto", checkpoint_dir=None, resume: bool = False,
                   progress: bool = True, log=print) -> dict:
    """Train a CIFAR ResNet (``labkit.models.resnet20``) from scratch; the defaults are lab 03's
    ``"GPU (from scratch)"`` recipe in :mod:`labkit.recipes` (SGD with momentum, cosine learning rate,
    stepped per batch: the usual CIFAR ResNet recipe, not measured by labkit).

    Returns :func:`fit`'s result (history, best accuracy on ``valid_loader``). Resumable:
    pass ``checkpoint_dir`` and ``resume=True`` after a disconnect.
    """
    from labkit.evaluate import evaluate_classification

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay, nesterov=nesterov)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))
    return fit(model, train_loader, loss_fn=nn.CrossEntropyLoss(), epochs=epochs, optimizer=optimizer,
               scheduler=scheduler, scheduler_per_step=True, valid_loader=valid_loader,
               evaluate=evaluate_classification if valid_loader is not None else None,
               monitor="accuracy", device=device, checkpoint_dir=checkpoint_dir, resume=resume,
               progress=progress, log=log)
