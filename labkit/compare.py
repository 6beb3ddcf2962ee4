"""A fair comparison of segmentation models: one training recipe, the same data, measured cost.

Lab 02 asks whether a ResNet-34 encoder beats the plain U-Net. A comparison is fair only when
everything but the architecture is equal, so :func:`train_and_measure` builds the optimizer
(AdamW), the schedule (cosine over the epochs, or one-cycle) and the loss (BCE + soft Dice) itself from the same
keyword arguments, and seeds the data order and augmentations identically for every model. Each
call returns one table row:

==========================  ================================================================
column                      meaning
==========================  ================================================================
``params (M)``              parameter elements, millions
``GMACs @ 256x256``         multiply-accumulates of one forward pass on a (1, 3, 256, 256)
                            input, always at 256x256 whatever size the model trained at
``valid Dice``              best validation Dice (the epoch whose weights are kept)
``test Dice``               test Dice of those weights (the course's number)
``s/epoch``                 mean training seconds per epoch (validation not included)
``peak memory (MiB)``       CUDA: the allocator's peak during training. CPU: the process's peak
                            resident memory during training (Python, torch, data included),
                            reset before each model on Linux so earlier runs do not count
``epochs``, ``image size``  epochs trained, and the (H, W) of the test images
``device``                  where it ran, e.g. ``cpu (2 threads)``
==========================  ================================================================

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> images = torch.rand(8, 3, 32, 32)
    >>> data = DataLoader(TensorDataset(images, (images[:, :1] > 0.5).float()), batch_size=4)
    >>> loaders = {"train": data, "valid": data, "test": data}
    >>> result = train_and_measure("1x1 conv", torch.nn.Conv2d(3, 1, 1), loaders, epochs=1,
    ...                            device="cpu", progress=False, log=None)
    >>> result["row"]["GMACs @ 256x256"]             # 3 * 256 * 256 MACs
    0.000196608
    >>> figure = plot_comparison([result["row"]])
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable

import matplotlib.pyplot as plt
import torch
from torch import nn

from labkit.device import describe_device, resolve_device
from labkit.evaluate import evaluate_segmentation
from labkit.losses import BCEDiceLoss
from labkit.profile import count_params, macs_on_meta, reset_peak_memory
from labkit.train import fit, make_scheduler, seed_augmentations

MAC_INPUT_SIZE = (1, 3, 256, 256)  # the comparison's MACs column (square, like the Pets labs)
MACS_COLUMN = "GMACs @ 256x256"
TABLE_COLUMNS = ("model", "params (M)", MACS_COLUMN, "valid Dice", "test Dice", "s/epoch",
                 "peak memory (MiB)", "epochs", "image size", "device")
PLOTTED_COLUMNS = ("test Dice", "params (M)", MACS_COLUMN, "s/epoch", "peak memory (MiB)")


def _image_size(loader) -> str:
    image = loader.dataset[0][0]
    return "x".join(str(side) for side in image.shape[-2:])


def train_and_measure(name: str, model: nn.Module, loaders: Mapping, *, epochs: int,
                      lr: float = 1e-3, weight_decay: float = 1e-4,
                      schedule: str = "cosine", loss_fn: Callable | None = None, device="auto",
                      seed: int | None = 0,
                      checkpoint_dir=None, resume: bool = False,
                      mac_input_size: tuple[int, ...] = MAC_INPUT_SIZE, progress: bool = True,
                      log: Callable | None = print) -> dict:
    """Train ``model`` with the comparison's fixed recipe, then measure quality and cost.

    The recipe is the same for every call with the same arguments: AdamW(``lr``,
    ``weight_decay``), the learning-rate ``schedule``, ``loss_fn`` (default BCE + soft Dice), and
    every RNG seeded with ``seed`` before the first epoch, the training transform's own one included
    (see :func:`labkit.train.seed_augmentations`), so all models see the same batches with the same
    augmentations. The best epoch by validation Dice is kept.

    Args:
        name: the model's name in the table.
        model: a binary-segmentation network, ``(N, 3, H, W)`` -> logits ``(N, 1, H, W)``.
            Seed before building it if the initial weights should be reproducible.
        loaders: ``{"train", "valid", "test"}`` DataLoaders of ``(images, masks)``.
        schedule: ``"cosine"``: ``lr`` decays to 0 over ``epochs`` (stepped once per epoch).
            ``"onecycle"``: ``OneCycleLR`` stepped every batch, warming up to the peak ``lr`` over
            the first 20 % of the steps, then annealing to ~0 (the CPU recipes: a high peak
            learning rate trains a small network in few epochs). Built by
            :func:`labkit.train.make_scheduler`, which also knows ``"step"``.
        checkpoint_dir, resume: as in :func:`labkit.train.fit`; use one folder per model.
        mac_input_size: input for the MAC count, (1, 3, 256, 256) by default.

    Returns:
        ``{"row": {TABLE_COLUMNS...}, "history": fit's rows, "test": evaluate_segmentation's
        result (incl. ``per_image_dice``), "model": model}`` with the best weights loaded.
    """
    device = resolve_device(device)
    macs = macs_on_meta(model, mac_input_size)
    model.to(device)  # before the optimizer is built, so its fused kernel matches the device
    # fused=True: the same AdamW update in one kernel; for the 24 M parameters of ResNet34-UNet
    # it made the optimizer step several times faster on a 2-core CPU (measured).
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                  fused=device.type in ("cpu", "cuda"))
    scheduler, per_step = make_scheduler(optimizer, schedule, epochs=epochs, lr=lr,
                                         steps_per_epoch=len(loaders["train"]))
    if seed is not None:
        seed_augmentations(loaders["train"], seed)
    if not reset_peak_memory(device) and log:
        log("note: the CPU peak memory covers this whole process (cannot reset it on this OS)")
    result = fit(model, loaders["train"], loss_fn=loss_fn or BCEDiceLoss(), epochs=epochs,
                 optimizer=optimizer, scheduler=scheduler, scheduler_per_step=per_step,
                 valid_loader=loaders["valid"],
                 evaluate=evaluate_segmentation, monitor="dice", device=device, seed=seed,
                 checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, log=log)
    history = result["history"]
    test = evaluate_segmentation(model, loaders["test"], device=device, progress=progress)
    row = {
        "model": name,
        "params (M)": count_params(model) / 1e6,
        MACS_COLUMN: macs / 1e9,
        "valid Dice": result["best_metric"],
        "test Dice": test["dice"],
        "s/epoch": sum(r["seconds"] for r in history) / len(history),
        "peak memory (MiB)": round(max(r["peak_memory_mb"] for r in history)),
        "epochs": len(history),
        "image size": _image_size(loaders["test"]),
        "device": describe_device(device),
    }
    return {"row": row, "history": history, "test": test, "model": model}


def plot_comparison(rows: Sequence[Mapping], *, columns: Sequence[str] = PLOTTED_COLUMNS,
                    title: str | None = None):
    """One bar chart per column, one bar per model (the rows of :func:`train_and_measure`).

    Each panel has its own scale: Dice and cost live on very different ranges.
    """
    columns = [column for column in columns if all(column in row for row in rows)]
    if not rows or not columns:
        raise ValueError(f"nothing to plot: rows need some of the columns {list(PLOTTED_COLUMNS)}")
    names = [str(row["model"]) for row in rows]
    colours = [f"C{i}" for i in range(len(rows))]
    figure, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 3.2), squeeze=False)
    for axis, column in zip(axes[0], columns):
        values = [float(row[column]) for row in rows]
        bars = axis.bar(names, values, color=colours)
        labels = [f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}" for value in values]
        axis.bar_label(bars, labels=labels, fontsize=8)
        axis.set_title(column, fontsize=10)
        axis.tick_params(axis="x", labelrotation=20, labelsize=8)
        axis.margins(y=0.15)  # room for the value labels above the bars
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
