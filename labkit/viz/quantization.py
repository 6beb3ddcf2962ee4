"""Plots for the quantization lab: the calibration sweep and the FP32 / INT8 comparison.

Example:
    >>> rows = [{"num_images": 1, "accuracy": 88.1}, {"num_images": 100, "accuracy": 92.2}]
    >>> figure = plot_calibration_sweep(rows, fp32_accuracy=92.6)
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt


def plot_calibration_sweep(rows: Sequence[dict], *, fp32_accuracy: float | None = None, ax=None,
                           title: str = "FX INT8 accuracy vs. calibration images",
                           split: str = "validation", chosen: int | None = None):
    """Accuracy on ``split`` against the number of calibration images (log scale), FP32 dashed.

    ``rows`` are :func:`labkit.quant.fx.calibration_sweep` rows (``num_images``, ``accuracy``);
    ``chosen`` marks the kept size (e.g. :func:`labkit.quant.fx.best_calibration`'s).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    sizes = [row["num_images"] for row in rows]
    ax.plot(sizes, [row["accuracy"] for row in rows], marker="o", label="INT8 (FX)")
    if chosen is not None:
        kept = next(row for row in rows if row["num_images"] == chosen)
        ax.plot([chosen], [kept["accuracy"]], marker="*", markersize=14, linestyle="none",
                label=f"kept: {chosen} images")
    if fp32_accuracy is not None:
        ax.axhline(fp32_accuracy, color="gray", linestyle="--", label=f"FP32 ({fp32_accuracy:.2f}%)")
    ax.set_xscale("log")
    ax.set(xlabel="calibration images (training split)", ylabel=f"{split} accuracy (%)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax.figure


def plot_model_comparison(rows: Sequence[dict], *, columns: Sequence[str] = ("accuracy", "state_dict_kib",
                                                                             "latency_ms"),
                          labels: dict | None = None):
    """One bar chart per measure (accuracy, file size, latency), one bar per model.

    ``rows`` are :func:`labkit.quant.fx.measure_model` results with a ``"model"`` name added.
    """
    labels = {"accuracy": "test accuracy (%)", "state_dict_kib": "state_dict size (KiB)",
              "latency_ms": "CPU latency (ms)", **(labels or {})}
    figure, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.5), squeeze=False)
    names = [row["model"] for row in rows]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, column in zip(axes[0], columns):
        values = [row[column] for row in rows]
        bars = ax.bar(names, values, color=colours[:len(rows)])
        ax.bar_label(bars, fmt="%.2f" if column == "accuracy" else "%.1f")
        ax.set(title=labels.get(column, column))
        if column == "accuracy":  # differences of a fraction of a point would be invisible from 0
            ax.set_ylim(max(0.0, min(values) - 5.0), min(100.0, max(values) + 2.0))
        ax.tick_params(axis="x", labelrotation=15)
    figure.tight_layout()
    return figure


def plot_calibration_methods(rows: Sequence[dict], *, fp32_accuracy: float | None = None, ax=None,
                             split: str = "validation"):
    """Hand INT8 accuracy against calibration images (log scale), one line per method, FP32 dashed.

    ``rows`` are :func:`labkit.quant.manual.calibration_method_sweep` rows (``method``, ``num_images``,
    ``accuracy``), methods in the order they first appear.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for method in dict.fromkeys(row["method"] for row in rows):
        points = [(row["num_images"], row["accuracy"]) for row in rows if row["method"] == method]
        ax.plot(*zip(*points), marker="o", label=method)
    if fp32_accuracy is not None:
        ax.axhline(fp32_accuracy, color="black", linestyle="--", linewidth=1, label="FP32")
    ax.set(xscale="log", xlabel="calibration images (train split)", ylabel="hand INT8 accuracy (%)",
           title=f"Calibration methods on the {split} split")
    ax.legend(fontsize=8)
    return ax.figure


def plot_layer_sensitivity(rows: Sequence[dict], *, highlight: str | None = None):
    """Two bar rows per layer of :func:`labkit.quant.manual.layer_sensitivity` (without its FP32 row):
    the accuracy change (``highlight``, e.g. the costliest layer, in red) and the predictions flipped."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    names = [row["layer"] for row in rows]
    top.bar(names, [row["change"] for row in rows],
            color=["tab:red" if name == highlight else "tab:blue" for name in names])
    top.axhline(0, color="black", linewidth=0.8)
    top.set(ylabel="accuracy change\n(points)", title="One layer INT8, the rest FP32 (validation split)")
    bottom.bar(names, [row["flipped"] for row in rows], color="tab:gray")
    bottom.set(ylabel="predictions\nflipped (%)")
    bottom.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return fig
