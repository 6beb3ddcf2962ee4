"""ResNet-20 with simulated integer arithmetic: uint8 activations, int8 weights, float math.

The model that the hand-made post-training quantization of Lab 04 produces (see
:mod:`labkit.quant.manual`). Every tensor the integer hardware would hold is stored with its
integer dtype; the arithmetic runs in float32 on integer-valued tensors, so it runs anywhere
(CPU or CUDA) and its results are what an integer kernel would compute (up to float rounding
of very large accumulators).

An activation is a :class:`QuantizedActivation` ``(values uint8, scale, zero_point)`` that
stands for the real tensor ``(values - zero_point) * scale``. The layers (course semantics):

- :class:`QuantizedConv2d` (Conv-BN fused): int8 ``weight``, per-output-channel ``weight_scale``
  (float32, ``[C, 1, 1, 1]``) and ``weight_zero_point`` (int32, same shape), ``bias_fp32``, and
  the ``output_scale`` / ``output_zero_point`` of its result::

      q_out = clamp(round(conv(x - z_x, w - z_w) * s_x * s_w / s_out + b / s_out) + z_out, 0, 255)

  With ``relu=True`` the ReLU is applied before rounding and ``z_out`` is 0.
- :class:`QuantizedAdd`: dequantize both inputs, add, (ReLU), requantize with its own qparams.
- :class:`QuantizedAvgPool`: the rounded uint8 mean; keeps the input's (scale, zero_point).
- :class:`QuantizedLinear`: int8 weights with ``[out, 1]`` scale / zero point; returns float logits.

The module names mirror :func:`labkit.models.resnet20.resnet20` (``conv1``,
``layer1.0.conv1``, ``layer2.0.downsample``, ``fc``, ...); the BatchNorms are gone (fused).
An empty model (zeros, scales of 1) has every tensor at its final dtype and shape, so a saved
state_dict loads into ``QuantizedResNet20()`` without calibration; loading checks dtypes too.

Example:
    >>> import torch
    >>> model = QuantizedResNet20()
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> model.state_dict()["layer1.0.conv1.weight"].dtype
    torch.int8
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

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
    """int8 ``weight`` with one (scale, zero_point) per output channel, and a float32 ``bias_fp32``."""

    def __init__(self, weight_shape: tuple[int, ...]):
        super().__init__()
        out_channels = weight_shape[0]
        per_channel = (out_channels,) + (1,) * (len(weight_shape) - 1)  # broadcasts over the weight
        self.register_buffer("weight", torch.zeros(weight_shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(per_channel))
        self.register_buffer("weight_zero_point", torch.zeros(per_channel, dtype=torch.int32))
        self.bias_fp32 = nn.Parameter(torch.zeros(out_channels), requires_grad=False)

    def set_weight(self, weight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        """int8 ``weight``, float32 ``scale`` and int32 ``zero_point``, one per output channel.

        Shapes: conv ``(C_out, C_in, k, k)`` and ``(C_out, 1, 1, 1)``; linear ``(out, in)`` and ``(out, 1)``.
        """
        self.weight = check_tensor("weight", weight, torch.int8, self.weight.shape)
        self.weight_scale = check_tensor("weight_scale", scale, torch.float32, self.weight_scale.shape)
        self.weight_zero_point = check_tensor("weight_zero_point", zero_point, torch.int32,
                                              self.weight_zero_point.shape)

    def set_bias(self, bias: torch.Tensor) -> None:
        """float32 bias ``(C_out,)``, kept in float: it is added after the integer accumulation."""
        self.bias_fp32.data = check_tensor("bias_fp32", bias, torch.float32, self.bias_fp32.shape)


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
        accumulator = F.conv2d(x.values.float() - x.zero_point, self.weight.float() - self.weight_zero_point,
                               stride=self.stride, padding=self.padding)
        multiplier = (x.scale * self.weight_scale / self.output_scale).reshape(1, -1, 1, 1)
        out = accumulator * multiplier + (self.bias_fp32 / self.output_scale).reshape(1, -1, 1, 1)
        if self.relu:
            out = torch.relu(out)
        return QuantizedActivation(requantize(out, self.output_zero_point), self.output_scale,
                                   self.output_zero_point)

    def extra_repr(self) -> str:
        out_channels, in_channels, kernel_size, _ = self.weight.shape
        return (f"{in_channels}, {out_channels}, kernel_size={kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, relu={self.relu}")


class QuantizedAdd(_QuantizedModule):
    """Residual add: dequantize both inputs, add, (ReLU), requantize with its own qparams."""

    def __init__(self, *, relu: bool = True):
        super().__init__()
        self.relu = relu
        self._register_output_qparams()

    def forward(self, a: QuantizedActivation, b: QuantizedActivation) -> QuantizedActivation:
        total = a.dequantize() + b.dequantize()
        if self.relu:
            total = torch.relu(total)
        return QuantizedActivation(requantize(total / self.output_scale, self.output_zero_point),
                                   self.output_scale, self.output_zero_point)

    def extra_repr(self) -> str:
        return f"relu={self.relu}"


class QuantizedAvgPool(nn.Module):
    """Global average pooling ``(N, C, H, W) -> (N, C, 1, 1)``: the rounded uint8 mean, same qparams.

    The mean of values sharing one (scale, zero_point) is the mean of the real values, so no
    requantization is needed, only rounding back to integers.
    """

    def forward(self, x: QuantizedActivation) -> QuantizedActivation:
        mean = x.values.float().mean(dim=(2, 3), keepdim=True)
        return QuantizedActivation(requantize(mean, 0), x.scale, x.zero_point)


class QuantizedLinear(_IntegerWeightLayer):
    """Linear layer on uint8 inputs ``(N, in)`` with int8 per-row weights; returns float ``(N, out)``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__((out_features, in_features))

    def forward(self, x: QuantizedActivation) -> torch.Tensor:
        accumulator = (x.values.float() - x.zero_point) @ (self.weight.float() - self.weight_zero_point).t()
        return accumulator * (x.scale * self.weight_scale.t()) + self.bias_fp32

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class QuantizedBasicBlock(nn.Module):
    """conv1 (+ReLU) -> conv2, plus the shortcut (``downsample`` when the shape changes), add + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = QuantizedConv2d(in_channels, out_channels, 3, stride=stride, padding=1, relu=True)
        self.conv2 = QuantizedConv2d(out_channels, out_channels, 3, padding=1)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = QuantizedConv2d(in_channels, out_channels, 1, stride=stride)
        self.add = QuantizedAdd(relu=True)

    def forward(self, x: QuantizedActivation) -> QuantizedActivation:
        identity = x if self.downsample is None else self.downsample(x)
        return self.add(self.conv2(self.conv1(x)), identity)


class QuantizedResNet20(_QuantizedModule):
    """ResNet-20 for 32x32 CIFAR images with simulated integer inference.

    Input: course-normalised float images ``(N, 3, H, W)``; they are quantized to uint8 with
    the calibrated ``input_scale`` / ``input_zero_point``. Output: float logits ``(N, num_classes)``.
    Build a calibrated one with :func:`labkit.quant.manual.quantize_resnet20`.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.register_buffer("input_zero_point", torch.tensor(0, dtype=torch.int32))
        self.conv1 = QuantizedConv2d(3, 16, 3, padding=1, relu=True)
        self.layer1 = nn.Sequential(*[QuantizedBasicBlock(16, 16) for _ in range(3)])
        self.layer2 = nn.Sequential(QuantizedBasicBlock(16, 32, stride=2),
                                    *[QuantizedBasicBlock(32, 32) for _ in range(2)])
        self.layer3 = nn.Sequential(QuantizedBasicBlock(32, 64, stride=2),
                                    *[QuantizedBasicBlock(64, 64) for _ in range(2)])
        self.avgpool = QuantizedAvgPool()
        self.fc = QuantizedLinear(64, num_classes)

    def set_input_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        """float32 ``scale`` and int32 ``zero_point`` (scalars) for quantizing the input images."""
        self.input_scale = check_tensor("input_scale", scale, torch.float32, torch.Size([]))
        self.input_zero_point = check_tensor("input_zero_point", zero_point, torch.int32, torch.Size([]))

    def quantize_input(self, images: torch.Tensor) -> QuantizedActivation:
        values = requantize(images / self.input_scale, self.input_zero_point)
        return QuantizedActivation(values, self.input_scale, self.input_zero_point)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.quantize_input(images))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        x = QuantizedActivation(torch.flatten(x.values, 1), x.scale, x.zero_point)
        return self.fc(x)
