"""Plots used by the notebooks (matplotlib; every function returns the figure)."""
from labkit.viz.curves import plot_history
from labkit.viz.segmentation import plot_dice_histogram, show_predictions, to_displayable

__all__ = ["plot_history", "plot_dice_histogram", "show_predictions", "to_displayable"]
