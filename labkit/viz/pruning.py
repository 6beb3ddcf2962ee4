"""Pictures for the pruning lab: per-layer sparsity bars and the schedule (tables: labkit.tables).

Example:
    >>> from labkit.models.resnet20 import resnet20
    >>> from labkit.prune.magnitude import layer_sparsity
    >>> figure = plot_layer_sparsity(layer_sparsity(resnet20()))
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt


def plot_layer_sparsity(rows: Sequence[dict], *, ax=None, title: str = "Sparsity per layer"):
    """Bar chart of ``labkit.prune.magnitude.layer_sparsity(model)`` rows, with the overall sparsity as a line.

    Each label carries the layer's weight count: the big layers decide the overall number.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.5))
    labels = [f"{row['layer']} ({row['weights']:,})" for row in rows]
    ax.bar(range(len(rows)), [row["sparsity"] for row in rows], color="tab:blue")
    total = sum(row["weights"] for row in rows)
    overall = 100.0 * sum(row["zeros"] for row in rows) / total
    ax.axhline(overall, color="tab:red", linestyle="--", label=f"overall {overall:.2f}%")
    ax.set_xticks(range(len(rows)), labels, rotation=75, fontsize=7)
    ax.set_ylabel("zeros (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return ax


def plot_schedule(rounds: Sequence[dict], *, accuracy_floor: float | None = None, ax=None):
    """Validation accuracy against sparsity after each round of ``labkit.prune.magnitude.iterative_prune``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    kept = [row for row in rounds if row["kept"]]
    dropped = [row for row in rounds if not row["kept"]]
    ax.plot([r["sparsity"] for r in kept], [r["accuracy"] for r in kept], "o-", label="kept rounds")
    if dropped:
        ax.plot([r["sparsity"] for r in dropped], [r["accuracy"] for r in dropped], "x", color="tab:red",
                markersize=10, label="undone (below the floor)")
    if accuracy_floor is not None:
        ax.axhline(accuracy_floor, color="gray", linestyle=":", label=f"floor {accuracy_floor:g}%")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Accuracy along the pruning schedule")
    ax.legend()
    return ax


def plot_gradual(history: Sequence[dict], *, accuracy_floor: float | None = None, ax=None):
    """Sparsity and validation accuracy against epochs of ``labkit.prune.gradual.gradual_prune``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["accuracy"] for row in history], "o-", color="tab:blue", label="validation accuracy")
    if accuracy_floor is not None:
        ax.axhline(accuracy_floor, color="gray", linestyle=":", label=f"floor {accuracy_floor:g}%")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(loc="lower left")
    sparsity_axis = ax.twinx()
    sparsity_axis.plot(epochs, [row["sparsity"] for row in history], "s--", color="tab:red")
    sparsity_axis.set_ylabel("sparsity (%)", color="tab:red")
    sparsity_axis.set_ylim(0, 100)
    ax.set_title("Gradual pruning: sparsity and accuracy")
    return ax


def plot_cost_vs_accuracy(rows: Sequence[dict], *, costs: Sequence[str] = ("macs", "latency_b128_ms"),
                          labels: dict[str, str] | None = None, axes=None):
    """Accuracy against each cost (one panel per cost), one labelled point per model.

    ``rows`` have ``model``, ``accuracy`` and the ``costs`` columns (e.g. from
    ``labkit.profile.compare_latency`` merged with MACs and accuracy): unstructured zeros move a
    model left on no axis of real cost, channel pruning moves it left on all of them.
    """
    labels = {"macs": "MACs per image (millions)", "latency_b1_ms": "latency, batch 1 (ms)",
              "latency_b128_ms": "latency, batch 128 (ms)", **(labels or {})}
    if axes is None:
        _, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 3.8))
    axes = [axes] if len(costs) == 1 else list(axes)
    for ax, cost in zip(axes, costs):
        scale = 1e-6 if cost == "macs" else 1.0
        for row in rows:
            ax.plot(row[cost] * scale, row["accuracy"], "o", markersize=8)
            ax.annotate(row["model"], (row[cost] * scale, row["accuracy"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        ax.set_xlabel(labels.get(cost, cost))
        ax.set_ylabel("test accuracy (%)")
        ax.set_xlim(0, 1.3 * max(row[cost] * scale for row in rows))  # room for the labels
        ax.grid(alpha=0.3)
    axes[0].set_title("Accuracy against cost: left is cheaper, up is better")
    return axes
