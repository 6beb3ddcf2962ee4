"""Plots used by the notebooks (matplotlib; every function returns the figure)."""
from labkit.viz.cityscapes import colorize, overlay, plot_class_iou, show_segmentations
from labkit.viz.curves import plot_history
from labkit.viz.pruning import plot_layer_sparsity, plot_schedule
from labkit.viz.quantization import plot_calibration_sweep, plot_model_comparison
from labkit.viz.segmentation import plot_dice_histogram, show_predictions, to_displayable

__all__ = ["plot_history", "plot_dice_histogram", "show_predictions", "to_displayable",
           "plot_layer_sparsity", "plot_schedule", "plot_calibration_sweep", "plot_model_comparison",
           "colorize", "overlay", "plot_class_iou", "show_segmentations"]
