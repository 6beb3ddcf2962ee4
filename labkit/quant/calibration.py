"""Calibration: how the range of an activation is chosen from the calibration images.

An *observer* is called on every batch an activation takes during calibration and then answers one
question: which real range ``[low, high]`` should the 256 uint8 levels cover? Everything outside is
clipped, everything inside is rounded to one of the levels. A wide range clips nothing but rounds
coarsely; a narrow one rounds finely and clips the rare large values. The observers here answer it
differently:

===============================  ===========================================================
``"minmax"``                     the smallest and largest value seen (nothing clipped)
``"moving_average"``             min/max averaged over batches (``averaging_constant`` 0.01,
                                 as torch's ``MovingAverageMinMaxObserver``)
``"percentile99.9"``, ...        the range between the (100 - p) % and the p % quantiles of
                                 the values, read from a histogram (two-sided, not of ``|x|``)
``"mse"``                        the clipped range ``[t * min, t * max]`` whose quantize-
                                 dequantize error (mean squared) over the histogram is smallest
===============================  ===========================================================

Every observer has the same interface, the one :func:`labkit.quant.manual.calibrate` uses:
``observer(x)`` sees one batch, ``observer.range()`` gives ``(low, high)`` as 0-d float32 tensors,
and ``observer.qparams(quant_min, quant_max)`` the scale and zero point of that range, computed by
:func:`labkit.quant.affine.affine_qparams` (the lab's TODO), so that every method uses the same
formula. Memory stays bounded however many images are observed: min/max observers keep two numbers,
histogram observers ``bins`` counts. This module sits between the other two: it imports
:mod:`labkit.quant.affine`, and :mod:`labkit.quant.manual` imports it.

Example:
    >>> import torch
    >>> x = torch.cat([torch.rand(10_000), torch.tensor([50.0])])   # one outlier
    >>> minmax, clipped = make_observer("minmax"), make_observer("percentile99.9")
    >>> minmax(x); clipped(x)
    >>> round(minmax.range()[1].item(), 1), round(clipped.range()[1].item(), 1)
    (50.0, 1.0)
"""
from __future__ import annotations

import math

import torch

# Looked up as affine.affine_qparams at each call, so the lab's current affine_qparams (a TODO in
# affine.py, edited and autoreloaded in the notebook) is the one formula every observer's range goes through.
import labkit.quant.affine as affine
from labkit.quant.affine import ACTIVATION_MAX, ACTIVATION_MIN

# The names make_observer accepts (any "percentileP" with 50 < P < 100 works too).
METHODS = ("minmax", "moving_average", "percentile99.9", "percentile99.99", "mse")


class Observer:
    """The interface every observer follows: call it on batches, then ask for its range or qparams."""

    def __call__(self, x: torch.Tensor) -> None:
        self.observe(x.detach().float())

    def observe(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)``: the real range the integer levels will cover (0-d float32 tensors)."""
        raise NotImplementedError

    def qparams(self, quant_min: int = ACTIVATION_MIN, quant_max: int = ACTIVATION_MAX):
        """Scale (float32) and zero point (int32) of :meth:`range`, by the lab's ``affine_qparams``."""
        low, high = self.range()
        return affine.affine_qparams(low, high, quant_min=quant_min, quant_max=quant_max)

    def _no_data(self):
        return RuntimeError(f"the {type(self).__name__} has seen no data; run calibration images "
                            "through the model before asking for its range")


# ----------------------------------------------------------------------------- min/max observers
class MinMaxObserver(Observer):
    """Running minimum and maximum of every tensor it is called on (one pair per tensor).

    Example:
        >>> observer = MinMaxObserver()
        >>> observer(torch.tensor([-1.0, 2.0])); observer(torch.tensor([3.0]))
        >>> observer.min_val.item(), observer.max_val.item()
        (-1.0, 3.0)
    """

    def __init__(self):
        self.min_val = self.max_val = None

    def reduce(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.min(x), torch.max(x)

    def observe(self, x: torch.Tensor) -> None:
        low, high = (t.cpu() for t in self.reduce(x))  # a few numbers: keep them on the CPU
        if self.min_val is not None:
            low, high = self.combine(low, high)
        self.min_val, self.max_val = low, high

    def combine(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The new ``(min_val, max_val)`` from the old ones and this batch's ``low, high``."""
        return torch.min(low, self.min_val), torch.max(high, self.max_val)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.min_val is None:
            raise self._no_data()
        return self.min_val, self.max_val


class PerChannelMinMaxObserver(MinMaxObserver):
    """Minimum and maximum per channel along ``channel_axis`` (output channels of a weight: 0)."""

    def __init__(self, channel_axis: int = 0):
        super().__init__()
        self.channel_axis = channel_axis

    def reduce(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = x.transpose(0, self.channel_axis).flatten(1)  # (channels, everything else)
        return torch.min(rows, dim=1).values, torch.max(rows, dim=1).values


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of each batch's min and max, as torch's observer of that name.

    The first batch sets the range; each later one moves it by ``averaging_constant`` of the way:
    ``min_val += c * (batch_min - min_val)`` (the same for max). One outlier batch barely moves it.
    With the default 0.01 (torch's) and a few calibration batches the range stays close to the first
    batch's: the method is made for the thousands of steps of quantization-aware training.

    Example:
        >>> observer = MovingAverageMinMaxObserver(averaging_constant=0.5)
        >>> observer(torch.tensor([0.0, 2.0])); observer(torch.tensor([0.0, 4.0]))
        >>> observer.max_val.item()
        3.0
    """

    def __init__(self, averaging_constant: float = 0.01):
        super().__init__()
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = averaging_constant

    def combine(self, low, high):
        c = self.averaging_constant
        return self.min_val + c * (low - self.min_val), self.max_val + c * (high - self.max_val)


# ----------------------------------------------------------------------------- histogram observers
class HistogramObserver(Observer):
    """Counts of the observed values in ``bins`` equal bins over ``[-R, R]``, ``R`` a power of two.

    When a batch holds a value beyond ``R``, ``R`` doubles as often as needed; each doubling adds
    neighbouring bins in pairs and pads the two ends, so no count moves between bins and the
    histogram is exactly the one all the values would have given at the final ``R``. Memory is
    ``bins`` numbers, whatever the number of images. Subclasses choose the range from the counts.
    At least a quarter of the bins cover the observed values (half for the sign, half for the power
    of two), so with 8192 bins a uint8 level spans at least 8 bins.

    Example:
        >>> observer = PercentileObserver(percentile=99.0, bins=1024)
        >>> observer(torch.linspace(0, 1, 1001)); observer(torch.linspace(0, 3, 3001))
        >>> observer.radius, int(observer.histogram.sum())
        (4.0, 4002)
    """

    def __init__(self, bins: int = 8192):
        if bins < 4 or bins % 4:
            raise ValueError(f"bins must be a multiple of 4 (it is halved and padded), got {bins}")
        self.bins = bins
        self.histogram = None  # (bins,) float64 counts, on the CPU
        self.radius = None     # R: the histogram covers [-R, R]
        self.min_val = self.max_val = None  # the true extremes, as MinMaxObserver's

    def observe(self, x: torch.Tensor) -> None:
        low, high = torch.min(x).cpu(), torch.max(x).cpu()
        largest = max(abs(low.item()), abs(high.item()))
        if not math.isfinite(largest):
            raise ValueError(f"{type(self).__name__} saw a value {largest}; the model produced inf or NaN")
        if self.histogram is None:
            self.radius = 2.0 ** math.ceil(math.log2(max(largest, 2.0 ** -24)))
            self.histogram = torch.zeros(self.bins, dtype=torch.float64)
            self.min_val, self.max_val = low, high
        else:
            self.min_val, self.max_val = torch.min(low, self.min_val), torch.max(high, self.max_val)
        while largest > self.radius:
            pairs = self.histogram.reshape(-1, 2).sum(dim=1)           # bins of twice the width
            padding = torch.zeros(self.bins // 4, dtype=torch.float64)
            self.histogram = torch.cat([padding, pairs, padding])      # over [-2R, 2R]
            self.radius *= 2.0
        counts = torch.histc(x, bins=self.bins, min=-self.radius, max=self.radius)
        self.histogram += counts.cpu().double()

    def edges(self) -> torch.Tensor:
        """The ``bins + 1`` bin edges, from ``-R`` to ``R``."""
        return torch.linspace(-self.radius, self.radius, self.bins + 1, dtype=torch.float64)

    def centers(self) -> torch.Tensor:
        edges = self.edges()
        return (edges[:-1] + edges[1:]) / 2

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the observed values lie (linear inside a bin)."""
        if self.histogram is None:
            raise self._no_data()
        cumulative = torch.cumsum(self.histogram, dim=0)
        target = q * cumulative[-1].item()
        index = min(int(torch.searchsorted(cumulative, torch.tensor([target], dtype=torch.float64))),
                    self.bins - 1)
        before = cumulative[index - 1].item() if index > 0 else 0.0
        inside = self.histogram[index].item()
        fraction = (target - before) / inside if inside > 0 else 0.0
        width = 2.0 * self.radius / self.bins
        return -self.radius + (index + fraction) * width


class PercentileObserver(HistogramObserver):
    """The range between the ``(100 - percentile)`` % and the ``percentile`` % quantiles of the values.

    Two-sided (each end clipped separately, not a percentile of ``|x|``), because activations use an
    asymmetric uint8 range: after a ReLU the low end is 0 and only the long upper tail is clipped.
    The quantiles are read from the histogram, so they are exact to within one bin width
    (``2R / bins``); the range never leaves ``[min_val, max_val]``.

    Example:
        >>> observer = PercentileObserver(percentile=99.0)
        >>> observer(torch.arange(1001.0))
        >>> [round(end.item()) for end in observer.range()]
        [10, 990]
    """

    def __init__(self, percentile: float = 99.99, bins: int = 8192):
        super().__init__(bins=bins)
        if not 50.0 < percentile < 100.0:
            raise ValueError(f"percentile must be between 50 and 100 (e.g. 99.9), got {percentile}")
        self.percentile = percentile

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.histogram is None:
            raise self._no_data()
        low = max(self.quantile(1.0 - self.percentile / 100.0), self.min_val.item())
        high = min(self.quantile(self.percentile / 100.0), self.max_val.item())
        return torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)


class MSEObserver(HistogramObserver):
    """The clipped range with the smallest quantization error (mean squared) on the observed values.

    Candidates shrink the observed range by one factor ``t``: ``[t * min_val, t * max_val]`` for
    ``steps`` values of ``t`` from ``1 / steps`` to 1. For each, every histogram bin's center ``c`` is
    quantized and dequantized with that range's qparams (the lab's ``affine_qparams``,
    ``quantize``, ``dequantize``), and the error is ``sum(count * (c - c_hat) ** 2) / sum(count)``:
    rounding inside the range, clipping outside. The smallest error wins (the widest range on a
    tie). One factor for both ends is a simplification; torch's ``HistogramObserver`` moves the two
    ends separately with a greedy search, so the two agree only approximately.

    Example:
        >>> observer = MSEObserver()
        >>> observer(torch.randn(100_000, generator=torch.Generator().manual_seed(0)).abs())  # a long tail
        >>> low, high = observer.range()
        >>> 2.0 < high.item() < observer.max_val.item()
        True
    """

    def __init__(self, steps: int = 200, bins: int = 8192, quant_min: int = ACTIVATION_MIN,
                 quant_max: int = ACTIVATION_MAX):
        super().__init__(bins=bins)
        self.steps, self.quant_min, self.quant_max = steps, quant_min, quant_max

    def errors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(factors t (steps,), mean squared error of each (steps,))``."""
        if self.histogram is None:
            raise self._no_data()
        used = self.histogram > 0
        centers, counts = self.centers()[used].float(), self.histogram[used]
        factors = torch.arange(1, self.steps + 1, dtype=torch.float32) / self.steps
        scale, zero_point = affine.affine_qparams(factors * self.min_val, factors * self.max_val,
                                                  quant_min=self.quant_min, quant_max=self.quant_max)
        scale, zero_point = scale[:, None], zero_point[:, None]  # (steps, 1) against (1, used bins)
        q = affine.quantize(centers[None, :], scale, zero_point, quant_min=self.quant_min,
                            quant_max=self.quant_max, dtype=torch.float32)
        squared = (affine.dequantize(q, scale, zero_point) - centers[None, :]).double() ** 2
        return factors, (squared * counts[None, :]).sum(dim=1) / counts.sum()

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        factors, errors = self.errors()
        smallest = errors.min()
        best = factors[errors <= smallest * (1 + 1e-9)].max()  # the widest range among the best
        return (best * self.min_val).float(), (best * self.max_val).float()


# ----------------------------------------------------------------------------- by name
def make_observer(method: str = "minmax") -> Observer:
    """A fresh activation observer for ``method``: one of :data:`METHODS` or ``"percentileP"``.

    Example:
        >>> type(make_observer("percentile99.9")).__name__, make_observer("percentile99.9").percentile
        ('PercentileObserver', 99.9)
    """
    if method == "minmax":
        return MinMaxObserver()
    if method == "moving_average":
        return MovingAverageMinMaxObserver()
    if method == "mse":
        return MSEObserver()
    if isinstance(method, str) and method.startswith("percentile"):
        try:
            return PercentileObserver(percentile=float(method.removeprefix("percentile")))
        except ValueError:
            pass
    raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)} "
                     "(or 'percentileP' with 50 < P < 100, e.g. 'percentile99.5')")
