"""Affine quantization: the scale and zero point of a range, and the maps between reals and integers.

Affine quantization maps a real range ``[min, max]`` onto the integers ``[q_min, q_max]``::

    scale      = (max - min) / (q_max - q_min)
    zero_point = q_min - round(min / scale)              (the integer that stands for 0.0)
    q          = clamp(round(x / scale) + zero_point, q_min, q_max)
    x_hat      = (q - zero_point) * scale                |x - x_hat| <= scale / 2 inside the range

Activations use uint8 ``[ACTIVATION_MIN, ACTIVATION_MAX] = [0, 255]`` with one (scale, zero_point)
per tensor; weights use int8 ``[WEIGHT_MIN, WEIGHT_MAX] = [-128, 127]`` with one (scale, zero_point)
per output channel (:func:`quantize_weight`). The ranges are the integer dtypes that
:class:`~labkit.models.quantized_resnet20.QuantizedResNet20` stores, so they are defined there
(models sit beneath quant) and named here too.

This module is the bottom of Lab 04's quantization code: the observers that choose a range
(:mod:`labkit.quant.calibration`) and the hand-made post-training quantization
(:mod:`labkit.quant.manual`) both use it, and it uses neither. ``affine_qparams`` is a Lab 04 TODO.
Only ``torch.min`` / ``torch.max`` / ``torch.round`` / ``torch.clamp`` are used, no torch.ao
observers or qparam helpers (the lab's rule).

Example:
    >>> x = torch.tensor([-1.0, 0.0, 0.5, 3.0])
    >>> scale, zero_point = affine_qparams(x.min(), x.max())
    >>> q = quantize(x, scale, zero_point, quant_min=ACTIVATION_MIN, quant_max=ACTIVATION_MAX, dtype=torch.uint8)
    >>> q
    tensor([  0,  64,  96, 255], dtype=torch.uint8)
    >>> dequantize(q, scale, zero_point)
    tensor([-1.0039,  0.0000,  0.5020,  2.9961])
"""
from __future__ import annotations

import torch

from labkit.models.quantized_resnet20 import ACTIVATION_MAX, ACTIVATION_MIN, WEIGHT_MAX, WEIGHT_MIN

__all__ = ["ACTIVATION_MIN", "ACTIVATION_MAX", "WEIGHT_MIN", "WEIGHT_MAX", "EPS", "affine_qparams", "quantize",
           "dequantize", "quantize_weight"]

# The smallest scale allowed: a constant tensor (max == min == 0) must not divide by zero.
EPS = torch.finfo(torch.float32).eps


# ----------------------------------------------------------------------------- scale and zero point
def affine_qparams(min_val: torch.Tensor, max_val: torch.Tensor, *, quant_min: int = ACTIVATION_MIN,
                   quant_max: int = ACTIVATION_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float32) and zero point (int32) that map ``[min_val, max_val]`` onto ``[quant_min, quant_max]``.

    Works elementwise, so per-channel min/max give per-channel qparams. Example:
        >>> affine_qparams(torch.tensor(-1.0), torch.tensor(3.0))
        (tensor(0.0157), tensor(64, dtype=torch.int32))
    """
    # The range always contains 0, so that 0.0 (zero padding, ReLU output) is exactly representable.
    ### BEGIN SOLUTION
    min_val = torch.clamp(min_val, max=0.0)
    max_val = torch.clamp(max_val, min=0.0)
    scale = torch.clamp((max_val - min_val) / float(quant_max - quant_min), min=EPS)
    zero_point = quant_min - torch.round(min_val / scale).to(torch.int32)
    return scale.float(), torch.clamp(zero_point, quant_min, quant_max).to(torch.int32)
    ### END SOLUTION


# ----------------------------------------------------------------------------- reals <-> integers
def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, *, quant_min: int,
             quant_max: int, dtype: torch.dtype) -> torch.Tensor:
    """``clamp(round(x / scale) + zero_point, quant_min, quant_max)`` as ``dtype``.

    Example:
        >>> quantize(torch.tensor([-0.1, 0.26, 9.0]), torch.tensor(0.1), torch.tensor(1), quant_min=0,
        ...          quant_max=255, dtype=torch.uint8)
        tensor([ 0,  4, 91], dtype=torch.uint8)
    """
    return torch.clamp(torch.round(x / scale) + zero_point, quant_min, quant_max).to(dtype)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """The real values the integers ``q`` stand for: ``(q - zero_point) * scale``.

    Example:
        >>> dequantize(torch.tensor([0, 4, 91], dtype=torch.uint8), torch.tensor(0.5), torch.tensor(1))
        tensor([-0.5000,  1.5000, 45.0000])
    """
    return (q.float() - zero_point) * scale


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-output-channel int8 quantization of a conv ``(C_out, C_in, k, k)`` or linear ``(out, in)`` weight.

    Each output channel's range is its own minimum and maximum (what
    :class:`~labkit.quant.calibration.PerChannelMinMaxObserver` finds), through :func:`affine_qparams`
    onto ``[WEIGHT_MIN, WEIGHT_MAX]``. Returns ``(int8 weight, float32 scale, int32 zero_point)``;
    scale and zero point have the weight's number of dimensions, e.g. ``(C_out, 1, 1, 1)``, so they
    broadcast over it.

    Example (two output channels, each with its own range: ``[-1, 0.5]`` and ``[0, 2]``):
        >>> q, scale, zero_point = quantize_weight(torch.tensor([[-1.0, 0.5], [0.0, 2.0]]))
        >>> q.tolist(), zero_point.flatten().tolist(), tuple(scale.shape)
        ([[-128, 127], [-128, 127]], [42, -128], (2, 1))
        >>> dequantize(q, scale, zero_point)
        tensor([[-1.0000,  0.5000],
                [ 0.0000,  2.0000]])
    """
    rows = weight.detach().float().flatten(1)  # (output channels, everything else)
    scale, zero_point = affine_qparams(torch.min(rows, dim=1).values, torch.max(rows, dim=1).values,
                                       quant_min=WEIGHT_MIN, quant_max=WEIGHT_MAX)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    q = quantize(weight, scale, zero_point, quant_min=WEIGHT_MIN, quant_max=WEIGHT_MAX, dtype=torch.int8)
    return q, scale, zero_point
