"""ResNet-20 with simulated integer arithmetic: uint8 activations, int8 weights, float math.

The model that the hand-made post-training quantization of Lab 04 produces (see
:mod:`labkit.quant.manual`). Every tensor the integer hardware would hold is stored with its
integer dtype; the arithmetic runs in float32 on integer-valued tensors, so it runs anywhere
(CPU or CUDA) and its results are what an integer kernel would compute (up to float rounding
of very large accumulators).

An activation is a :class:`QuantizedActivation` ``(values uint8, scale, zero_point)`` that
stands for the real tensor ``(values - zero_point) * scale``. The layers (course semantics):

- :class:`QuantizeLayer` (``quant``): float images -> uint8 with its calibrated ``output_scale`` /
  ``output_zero_point``: ``clamp(round(x / s) + z, 0, 255)``.
- :class:`QuantizedConv2d` (Conv-BN fused): int8 ``weight_int8``, per-output-channel ``weight_scale``
  (float32, ``[C, 1, 1, 1]``) and ``weight_zero_point`` (int32, same shape), ``bias_fp32``, and
  the ``output_scale`` / ``output_zero_point`` of its result::

      q_out = clamp(round(conv(x - z_x, w - z_w) * s_x * s_w / s_out + b / s_out) + z_out, 0, 255)

  With ``relu=True`` the ReLU is applied before rounding and ``z_out`` is 0.
- :class:`QuantizedAdd`: dequantize both inputs, add, requantize with its own qparams.
- :class:`QuantizedReLU`: ``max(values, zero_point)`` (the real value 0), same qparams.
- :class:`QuantizedAvgPool`: the rounded uint8 mean; keeps the input's (scale, zero_point).
- :class:`QuantizedFlatten`: ``(N, C, 1, 1) -> (N, C)``, same qparams.
- :class:`QuantizedLinear`: int8 weights with ``[out, 1]`` scale / zero point; returns float logits.

**The names are the course's** (its ``check_quantization.py`` builds its own INT8 ResNet-20 and
loads a submission with ``strict=True``): ``quant``, ``conv1``, ``layer{1,2,3}.{0,1,2}.{conv1,
conv2, relu, add}``, the shortcut ``layer{2,3}.0.downsample.0`` (a one-conv ``Sequential``, as in
the float model), ``avgpool``, ``flat``, ``fc``; in each layer ``bias_fp32`` (a Parameter), then
``weight_int8``, ``weight_scale``, ``weight_zero_point``, ``output_scale``, ``output_zero_point``.
150 keys; :func:`course_names_for_old_keys` maps labkit 0.1's first names onto them. The
BatchNorms are gone (fused). An empty model (zeros, scales of 1) has every tensor at its final
dtype and shape, so a saved state_dict loads into ``QuantizedResNet20()`` without calibration;
loading checks dtypes too.

Example:
    >>> import torch
    >>> model = QuantizedResNet20()
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> state = model.state_dict()
    >>> len(state), list(state)[:3]
    (150, ['quant.output_scale', 'quant.output_zero_point', 'conv1.bias_fp32'])
    >>> state["layer2.0.downsample.0.weight_int8"].dtype, tuple(state["fc.weight_scale"].shape)
    (torch.int8, (10, 1))
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# The integer ranges of the stored dtypes; labkit.quant.affine quantizes onto them (and names them too).
ACTIVATION_MIN, ACTIVATION_MAX = 0, 255    # uint8 activations
WEIGHT_MIN, WEIGHT_MAX = -128, 127         # int8 weights


class QuantizedActivation(NamedTuple):
    """A uint8 tensor ``values`` standing for ``(values - zero_point) * scale``."""
    values: torch.Tensor      # uint8, e.g. (N, C, H, W)
    scale: torch.Tensor       # float32 scalar
    zero_point: torch.Tensor  # int32 scalar

    def dequantize(self) -> torch.Tensor:
        return (self.values.float() - self.zero_point) * self.scale


def requantize(real_over_scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """``clamp(round(v) + zero_point, 0, 255)`` as uint8, for ``v = real value / output scale``."""
    return (torch.round(real_over_scale) + zero_point).clamp(ACTIVATION_MIN, ACTIVATION_MAX).to(torch.uint8)


def check_tensor(name: str, value: torch.Tensor, dtype: torch.dtype, shape: torch.Size) -> torch.Tensor:
    """Raise a clear error unless ``value`` is a tensor of ``dtype`` and ``shape``; return it."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dtype {dtype}, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {value.dtype}; convert it with "
                        f".to({dtype}) after rounding and clamping to the integer range")
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


class _QuantizedModule(nn.Module):
    """Base of the quantized layers: dtype-checked loading and (for layers that requantize) output qparams.

    ``load_state_dict`` would otherwise silently cast, e.g. float weights into the int8 buffer.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        own = dict(self.named_parameters(recurse=False)) | dict(self.named_buffers(recurse=False))
        for name, tensor in own.items():
            given = state_dict.get(prefix + name)
            if isinstance(given, torch.Tensor) and given.dtype != tensor.dtype:
                raise TypeError(f"{prefix + name} has dtype {given.dtype}, expected {tensor.dtype} "
                                "(int8 weights, int32 zero points, float32 scales and biases)")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _register_output_qparams(self):
        self.register_buffer("output_scale", torch.tensor(1.0))
        self.register_buffer("output_zero_point", torch.tensor(0, dtype=torch.int32))

    def set_output_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        """Set the (scale, zero_point) of this layer's output (float32 and int32 scalars)."""
        check_tensor("output_scale", scale, torch.float32, torch.Size([]))
        check_tensor("output_zero_point", zero_point, torch.int32, torch.Size([]))
        if getattr(self, "relu", False) and zero_point.item() != 0:
            raise ValueError("a layer with a fused ReLU has output_zero_point 0 (its outputs are >= 0)")
        self.output_scale, self.output_zero_point = scale, zero_point


class _IntegerWeightLayer(_QuantizedModule):
    """int8 ``weight_int8`` with one (scale, zero_point) per output channel, and a float32 ``bias_fp32``."""

    def __init__(self, weight_shape: tuple[int, ...]):
        super().__init__()
        out_channels = weight_shape[0]
        per_channel = (out_channels,) + (1,) * (len(weight_shape) - 1)  # broadcasts over the weight
        self.register_buffer("weight_int8", torch.zeros(weight_shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(per_channel))
        self.register_buffer("weight_zero_point", torch.zeros(per_channel, dtype=torch.int32))
        self.bias_fp32 = nn.Parameter(torch.zeros(out_channels), requires_grad=False)

    def set_weight(self, weight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        """int8 ``weight``, float32 ``scale`` and int32 ``zero_point``, one per output channel.

        Stored as ``weight_int8``, ``weight_scale``, ``weight_zero_point``. Shapes: conv
        ``(C_out, C_in, k, k)`` and ``(C_out, 1, 1, 1)``; linear ``(out, in)`` and ``(out, 1)``.
        """
        self.weight_int8 = check_tensor("weight_int8", weight, torch.int8, self.weight_int8.shape)
        self.weight_scale = check_tensor("weight_scale", scale, torch.float32, self.weight_scale.shape)
        self.weight_zero_point = check_tensor("weight_zero_point", zero_point, torch.int32,
                                              self.weight_zero_point.shape)

    def set_bias(self, bias: torch.Tensor) -> None:
        """float32 bias ``(C_out,)``, kept in float: it is added after the integer accumulation."""
        self.bias_fp32.data = check_tensor("bias_fp32", bias, torch.float32, self.bias_fp32.shape)


class QuantizeLayer(_QuantizedModule):
    """The course's ``quant``: float images ``(N, C, H, W)`` -> uint8 with ``output_scale`` / ``output_zero_point``.

    ``q = clamp(round(x / scale) + zero_point, 0, 255)``; the qparams come from calibration
    (the range of the normalised training images).
    """

    def __init__(self):
        super().__init__()
        self._register_output_qparams()

    def forward(self, images: torch.Tensor) -> QuantizedActivation:
        values = requantize(images / self.output_scale, self.output_zero_point)
        return QuantizedActivation(values, self.output_scale, self.output_zero_point)


class QuantizedConv2d(_IntegerWeightLayer):
    """Conv2d (BatchNorm folded in) on uint8 activations with int8 per-channel weights.

    Input and output: :class:`QuantizedActivation` ``(N, C, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, relu: bool = False):
        super().__init__((out_channels, in_channels, kernel_size, kernel_size))
        self.stride, self.padding, self.relu = stride, padding, relu
        self._register_output_qparams()

    def forward(self, x: QuantizedActivation) -> QuantizedActivation:
        # Zero padding of (x - z_x) pads with the real value 0, as the float conv does.
        accumulator = F.conv2d(x.values.float() - x.zero_point, self.weight_int8.float() - self.weight_zero_point,
                               stride=self.stride, padding=self.padding)
        multiplier = (x.scale * self.weight_scale / self.output_scale).reshape(1, -1, 1, 1)
        out = accumulator * multiplier + (self.bias_fp32 / self.output_scale).reshape(1, -1, 1, 1)
        if self.relu:
            out = torch.relu(out)
        return QuantizedActivation(requantize(out, self.output_zero_point), self.output_scale,
                                   self.output_zero_point)

    def extra_repr(self) -> str:
        out_channels, in_channels, kernel_size, _ = self.weight_int8.shape
        return (f"{in_channels}, {out_channels}, kernel_size={kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, relu={self.relu}")


class QuantizedAdd(_QuantizedModule):
    """Residual add: dequantize both inputs, add, requantize with its own qparams."""

    def __init__(self):
        super().__init__()
        self._register_output_qparams()

    def forward(self, a: QuantizedActivation, b: QuantizedActivation) -> QuantizedActivation:
        total = a.dequantize() + b.dequantize()
        return QuantizedActivation(requantize(total / self.output_scale, self.output_zero_point),
                                   self.output_scale, self.output_zero_point)


class QuantizedReLU(nn.Module):
    """ReLU on a quantized tensor: ``max(values, zero_point)`` (the integer standing for 0.0), same qparams.

    No tensors of its own. After an add calibrated on the block's ReLU output (``zero_point`` 0,
    range ``[0, max]``) the add has already clamped negatives to 0, and this changes nothing.
    """

    def forward(self, x: QuantizedActivation) -> QuantizedActivation:
        zero = x.zero_point.to(x.values.dtype)
        return QuantizedActivation(torch.maximum(x.values, zero), x.scale, x.zero_point)


class QuantizedAvgPool(nn.Module):
    """Global average pooling ``(N, C, H, W) -> (N, C, 1, 1)``: the rounded uint8 mean, same qparams.

    The mean of values sharing one (scale, zero_point) is the mean of the real values, so no
    requantization is needed, only rounding back to integers.
    """

    def forward(self, x: QuantizedActivation) -> QuantizedActivation:
        mean = x.values.float().mean(dim=(2, 3), keepdim=True)
        return QuantizedActivation(requantize(mean, 0), x.scale, x.zero_point)


class QuantizedFlatten(nn.Module):
    """``(N, C, 1, 1) -> (N, C)`` on the uint8 values; the qparams stay (the course's ``flat``)."""

    def forward(self, x: QuantizedActivation) -> QuantizedActivation:
        return QuantizedActivation(torch.flatten(x.values, 1), x.scale, x.zero_point)


class QuantizedLinear(_IntegerWeightLayer):
    """Linear layer on uint8 inputs ``(N, in)`` with int8 per-row weights; returns float ``(N, out)``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__((out_features, in_features))

    def forward(self, x: QuantizedActivation) -> torch.Tensor:
        accumulator = (x.values.float() - x.zero_point) @ (self.weight_int8.float() - self.weight_zero_point).t()
        return accumulator * (x.scale * self.weight_scale.t()) + self.bias_fp32

    def extra_repr(self) -> str:
        return f"in_features={self.weight_int8.shape[1]}, out_features={self.weight_int8.shape[0]}"


class QuantizedBasicBlock(nn.Module):
    """conv1 (+ReLU) -> conv2, plus the shortcut (``downsample.0`` when the shape changes), add, relu.

    The shortcut is ``downsample = nn.Sequential(1x1 conv)`` so its keys are ``downsample.0.*``,
    as in the float model's ``downsample = Sequential(conv, bn)`` with the BN fused away.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = QuantizedConv2d(in_channels, out_channels, 3, stride=stride, padding=1, relu=True)
        self.conv2 = QuantizedConv2d(out_channels, out_channels, 3, padding=1)
        self.relu = QuantizedReLU()
        self.downsample = None  # registered before add: the course's key order
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(QuantizedConv2d(in_channels, out_channels, 1, stride=stride))
        self.add = QuantizedAdd()

    def forward(self, x: QuantizedActivation) -> QuantizedActivation:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.add(self.conv2(self.conv1(x)), identity))


class QuantizedResNet20(nn.Module):
    """ResNet-20 for 32x32 CIFAR images with simulated integer inference, under the course's names.

    Input: course-normalised float images ``(N, 3, H, W)``; ``quant`` turns them into uint8 with
    its calibrated ``output_scale`` / ``output_zero_point``. Output: float logits ``(N, num_classes)``.
    Build a calibrated one with :func:`labkit.quant.manual.quantize_resnet20`.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.quant = QuantizeLayer()
        self.conv1 = QuantizedConv2d(3, 16, 3, padding=1, relu=True)
        self.layer1 = nn.Sequential(*[QuantizedBasicBlock(16, 16) for _ in range(3)])
        self.layer2 = nn.Sequential(QuantizedBasicBlock(16, 32, stride=2),
                                    *[QuantizedBasicBlock(32, 32) for _ in range(2)])
        self.layer3 = nn.Sequential(QuantizedBasicBlock(32, 64, stride=2),
                                    *[QuantizedBasicBlock(64, 64) for _ in range(2)])
        self.avgpool = QuantizedAvgPool()
        self.flat = QuantizedFlatten()
        self.fc = QuantizedLinear(64, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.quant(images))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flat(self.avgpool(x)))


def course_names_for_old_keys(keys) -> dict[str, str]:
    """``{old key: course key}`` for the keys of ``keys`` that use labkit 0.1's first INT8 names.

    labkit 0.1 first saved ``input_scale`` / ``input_zero_point`` (now ``quant.output_scale`` /
    ``quant.output_zero_point``), ``<layer>.weight`` for the int8 weights (now
    ``<layer>.weight_int8``; a layer is recognised by its ``<layer>.weight_scale``) and the shortcut
    as ``layer2.0.downsample.*`` (now ``layer2.0.downsample.0.*``). The course's check refuses
    those names. Empty when no key uses them; applying it
    (``{renames.get(k, k): v for k, v in state.items()}``) gives a file that loads into
    :class:`QuantizedResNet20` and the course's check.

    Example:
        >>> course_names_for_old_keys(["input_scale", "conv1.weight", "conv1.weight_scale",
        ...                            "layer2.0.downsample.weight", "layer2.0.downsample.weight_scale",
        ...                            "conv1.bias_fp32"])  # doctest: +NORMALIZE_WHITESPACE
        {'input_scale': 'quant.output_scale', 'conv1.weight': 'conv1.weight_int8',
         'layer2.0.downsample.weight': 'layer2.0.downsample.0.weight_int8',
         'layer2.0.downsample.weight_scale': 'layer2.0.downsample.0.weight_scale'}
    """
    keys = list(keys)
    known = set(keys)
    renames = {}
    for key in keys:
        prefix, _, name = key.rpartition(".")
        if not prefix and name in ("input_scale", "input_zero_point"):
            renames[key] = "quant." + name.replace("input_", "output_")
            continue
        if name == "weight" and f"{prefix}.weight_scale" in known:
            name = "weight_int8"
        if prefix.endswith(".downsample"):
            prefix += ".0"
        new = f"{prefix}.{name}" if prefix else name
        if new != key:
            renames[key] = new
    return renames
