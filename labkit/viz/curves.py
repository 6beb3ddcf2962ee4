"""Training curves from a :func:`labkit.train.fit` history.

Example:
    >>> history = [{"epoch": 1, "train_loss": 0.9, "dice": 0.5}, {"epoch": 2, "train_loss": 0.6, "dice": 0.7}]
    >>> figure = plot_history(history, metrics=("dice",))
"""
from __future__ import annotations

import matplotlib.pyplot as plt


def plot_history(history: list[dict], *, metrics: tuple[str, ...] = (), title: str | None = None,
                 labels: dict | None = None):
    """Loss on the left, each validation metric on the right, against the epoch.

    ``history`` may also be ``{"name": history, ...}`` to compare several runs on the same axes.
    """
    runs = history if isinstance(history, dict) else {None: history}
    figure, axes = plt.subplots(1, 1 + bool(metrics), figsize=(5 + 5 * bool(metrics), 3.5), squeeze=False)
    loss_axis = axes[0, 0]
    for name, rows in runs.items():
        epochs = [row["epoch"] for row in rows]
        prefix = f"{name}: " if name else ""
        loss_axis.plot(epochs, [row["train_loss"] for row in rows], marker="o", label=f"{prefix}train loss")
        for metric in metrics:
            values = [row.get(metric) for row in rows]
            axes[0, 1].plot(epochs, values, marker="o", label=prefix + (labels or {}).get(metric, metric))
    loss_axis.set(xlabel="epoch", ylabel="loss", title="training loss")
    loss_axis.legend()
    if metrics:
        axes[0, 1].set(xlabel="epoch", ylabel="score", title="validation")
        axes[0, 1].legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
