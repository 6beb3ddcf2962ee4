"""Post-training quantization by hand: Conv-BN fusion, calibration, a quantized ResNet-20, sensitivity.

Built on two modules beneath it: :mod:`labkit.quant.affine` (the scale and zero point of a range,
``quantize`` / ``dequantize``, per-channel weight quantization) and :mod:`labkit.quant.calibration`
(the observers that choose each activation's range: min/max, the lab's default; percentile, MSE,
moving average). No torch.ao observers or qparam helpers are used (the lab's rule); ``torch.min`` /
``torch.max`` are. ``fuse_conv_bn`` is a Lab 04 TODO (``affine_qparams``, the other, is in affine.py).
The result is a :class:`~labkit.models.quantized_resnet20.QuantizedResNet20`, whose state_dict has
the course's names (``quant.output_scale``, ``conv1.weight_int8``, ``layer2.0.downsample.0.*``, ...),
so its file is what the course's check loads.

Example:
    >>> import torch
    >>> from labkit.models.resnet20 import resnet20
    >>> float_model = resnet20().eval()
    >>> calibration = [(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))]
    >>> int8_model = quantize_resnet20(float_model, calibration)
    >>> int8_model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> int8_model.state_dict()["layer2.0.downsample.0.weight_int8"].dtype
    torch.int8
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn

from labkit.evaluate import evaluate_classification
from labkit.models.quantized_resnet20 import QuantizedConv2d, QuantizedResNet20
from labkit.models.resnet20 import CifarResNet
# The formula (scale, zero point, quantize, dequantize) lives in affine.py; the observers (how a range
# is chosen: min/max, percentile, MSE, moving average) in calibration.py. Neither imports this module.
from labkit.quant.affine import ACTIVATION_MAX, ACTIVATION_MIN, dequantize, quantize, quantize_weight
from labkit.quant.calibration import METHODS, Observer, make_observer
from labkit.quant.fx import calibration_loader

__all__ = ["fuse_conv_bn", "observer_factory", "calibrate", "quantize_resnet20", "calibration_method_sweep",
           "layer_sensitivity"]


# ----------------------------------------------------------------------------- Conv-BN fusion
@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to ``bn(conv(x))`` with BN in eval mode.

    BN computes ``gamma * (y - mean) / sqrt(var + eps) + beta`` per channel; with
    ``factor = gamma / sqrt(var + eps)`` that is a conv with ``w' = w * factor`` and
    ``b' = (b - mean) * factor + beta``.
    """
    ### BEGIN SOLUTION
    factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = conv.weight * factor.reshape(-1, 1, 1, 1)
    bias = (conv_bias - bn.running_mean) * factor + bn.bias
    return weight.float(), bias.float()
    ### END SOLUTION


# ----------------------------------------------------------------------------- calibration
def _conv_bn_pairs(model: CifarResNet) -> dict[str, tuple[nn.Conv2d, nn.BatchNorm2d, bool]]:
    """``{quantized layer name: (conv, bn, followed by ReLU)}`` for every conv of a ResNet-20."""
    pairs = {"conv1": (model.conv1, model.bn1, True)}
    for stage in ("layer1", "layer2", "layer3"):
        for index, block in enumerate(getattr(model, stage)):
            prefix = f"{stage}.{index}"
            pairs[f"{prefix}.conv1"] = (block.conv1, block.bn1, True)
            pairs[f"{prefix}.conv2"] = (block.conv2, block.bn2, False)
            if block.downsample is not None:
                pairs[f"{prefix}.downsample.0"] = (block.downsample[0], block.downsample[1], False)
    return pairs


def observer_factory(method="minmax"):
    """A function that makes a fresh activation observer: ``method`` is a name or such a function.

    Names are those of :func:`labkit.quant.calibration.make_observer` (``"minmax"``,
    ``"percentile99.9"``, ``"mse"``, ...); a wrong name fails here, before any image is run.
    """
    if callable(method):
        return method
    make_observer(method)  # fail now on an unknown name, not after the calibration pass
    return lambda: make_observer(method)


@torch.no_grad()
def calibrate(model: CifarResNet, loader, *, num_batches: int | None = None, device="cpu",
              method="minmax") -> dict[str, Observer]:
    """Run calibration images through the float ResNet-20 and observe every activation's range.

    Returns one observer per module of :class:`QuantizedResNet20` with output qparams, under
    its name: ``"quant"`` (the input images), ``"conv1"``, ``"layer1.0.conv1"``, ...,
    ``"layer2.0.downsample.0"``, ``"layer1.0.add"``. Outputs followed by a ReLU are observed
    after it (their range starts at 0; for an ``add`` that is the block's output, so its
    zero point is 0). ``loader`` yields ``(images (N, 3, 32, 32), labels)``. ``method`` chooses
    how each range is read from the observed values (see :mod:`labkit.quant.calibration`;
    default ``"minmax"``), or is a function returning a fresh observer.
    """
    new_observer = observer_factory(method)
    model = model.eval().to(device)
    observers = {"quant": new_observer()}
    handles = [model.conv1.register_forward_pre_hook(lambda module, args: observers["quant"](args[0]))]

    def observe(name: str, relu: bool):
        observers[name] = new_observer()
        return lambda module, args, output: observers[name](torch.relu(output) if relu else output)

    for name, (conv, bn, relu) in _conv_bn_pairs(model).items():
        # The BN output is the fused conv's output (the downsample's BN is the Sequential's end).
        handles.append(bn.register_forward_hook(observe(name, relu)))
    for stage in ("layer1", "layer2", "layer3"):
        for index, block in enumerate(getattr(model, stage)):
            # A block returns relu(conv path + shortcut): the quantized add's output after its relu.
            handles.append(block.register_forward_hook(observe(f"{stage}.{index}.add", relu=False)))
    try:
        for batch_index, (images, _) in enumerate(loader):
            if num_batches is not None and batch_index >= num_batches:
                break
            model(images.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return observers


def quantize_resnet20(float_model: CifarResNet, calibration_loader, *, num_batches: int | None = None,
                      device="cpu", method="minmax") -> QuantizedResNet20:
    """Hand-made PTQ: calibrate, fuse Conv-BN, quantize weights, fill a :class:`QuantizedResNet20`.

    The float model is not changed. ``calibration_loader`` should hold training images only;
    ``num_batches`` limits how many of its batches are used, ``device`` is where calibration runs.
    ``method`` chooses the activation ranges: ``"minmax"`` (the lab's, the default),
    ``"moving_average"``, ``"percentile99.9"``, ``"percentile99.99"``, ``"mse"``
    (:mod:`labkit.quant.calibration`); weights always use per-channel min/max.
    The result is on the CPU (move it with ``.to(device)``).
    """
    float_model = copy.deepcopy(float_model).eval()
    observers = calibrate(float_model, calibration_loader, num_batches=num_batches, device=device,
                          method=method)
    float_model.cpu()
    quantized = QuantizedResNet20(num_classes=float_model.fc.out_features)
    layers = dict(quantized.named_modules())
    for name, (conv, bn, _) in _conv_bn_pairs(float_model).items():
        layer: QuantizedConv2d = layers[name]
        weight, bias = fuse_conv_bn(conv, bn)
        layer.set_weight(*quantize_weight(weight))
        layer.set_bias(bias)
    for name, observer in observers.items():  # quant, every conv, every add
        layers[name].set_output_qparams(*observer.qparams())
    quantized.fc.set_weight(*quantize_weight(float_model.fc.weight.detach()))
    quantized.fc.set_bias(float_model.fc.bias.detach().float())
    return quantized.eval()


def calibration_method_sweep(float_model: CifarResNet, train_dataset, eval_loader, *, sizes=(64, 512, 2048),
                             methods=METHODS, seed: int = 0, batch_size: int = 128, device="cpu") -> list[dict]:
    """Hand-made PTQ for every calibration method and size, each measured on ``eval_loader``.

    Pass the validation loader (carved from the training images, disjoint from ``train_dataset``):
    this compares choices, so the test split stays out of it. The calibration images of a size are
    the same for every method (:func:`labkit.quant.fx.calibration_loader`, one ``seed``: nested
    sets), so only the method changes within a size. Returns one row per (size, method):
    ``{"method", "num_images", "accuracy" (%), "seconds"}`` (``seconds``: calibrate + build, on
    ``device``; not the evaluation).

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from labkit.models.resnet20 import resnet20
        >>> images = TensorDataset(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))
        >>> rows = calibration_method_sweep(resnet20(), images, DataLoader(images, batch_size=8), sizes=[4, 8],
        ...                                 methods=["minmax", "mse"])
        >>> [(row["num_images"], row["method"]) for row in rows]
        [(4, 'minmax'), (4, 'mse'), (8, 'minmax'), (8, 'mse')]
    """
    rows = []
    for size in sizes:
        loader = calibration_loader(train_dataset, size, seed=seed, batch_size=batch_size)
        for method in methods:
            started = time.perf_counter()
            int8_model = quantize_resnet20(float_model, loader, device=device, method=method)
            seconds = time.perf_counter() - started
            accuracy = evaluate_classification(int8_model, eval_loader, device=device)["accuracy"]
            rows.append({"method": method, "num_images": size, "accuracy": accuracy, "seconds": seconds})
    return rows


# ----------------------------------------------------------------------------- per-layer sensitivity
@torch.no_grad()
def _predictions(model: nn.Module, loader, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted classes, labels)`` of every image of ``loader``, on the CPU."""
    predicted, labels = [], []
    for images, targets in loader:
        predicted.append(model(images.to(device)).argmax(dim=1).cpu())
        labels.append(targets)
    if not predicted:
        raise ValueError("the evaluation loader is empty; check the dataset root and split")
    return torch.cat(predicted), torch.cat(labels)


@torch.no_grad()
def layer_sensitivity(float_model: nn.Module, calibration_loader, eval_loader, *, method="minmax",
                      layers: list[str] | None = None, device="cpu") -> list[dict]:
    """The accuracy each layer costs when it alone is INT8 and every other layer stays FP32.

    One layer at a time (every ``nn.Conv2d`` and ``nn.Linear``, or the names in ``layers``): its
    weight is quantized to int8 per output channel and dequantized
    (:func:`~labkit.quant.affine.quantize_weight`), and its input is quantized to uint8 per tensor
    with the range the calibration images gave
    (``method``, as in :func:`quantize_resnet20`) and dequantized before the layer computes in
    float. The rest of the model computes in float32, so the change on ``eval_loader`` (a
    validation split) is that one layer's. The conv is quantized before its BatchNorm is folded
    in: BN multiplies each output channel by one factor and per-channel quantization scales with
    it, so this is the fused conv's weight error up to float rounding. The float model is not
    changed; one calibration pass observes every layer's input.

    Returns one row per layer in model order, after a first row ``"none (FP32)"``:
    ``{"layer", "accuracy" (%), "change" (accuracy - FP32's, points; negative is a cost),
    "flipped" (% of images whose predicted class differs from FP32's)}``. ``flipped`` sees
    what accuracy hides when gains and losses cancel, or when one image is 0.02 points.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> tiny = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
        >>> data = DataLoader(TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,))), batch_size=8)
        >>> [row["layer"] for row in layer_sensitivity(tiny, data, data)]
        ['none (FP32)', '0', '3']
    """
    new_observer = observer_factory(method)
    model = copy.deepcopy(float_model).eval().to(device)
    modules = dict(model.named_modules())
    quantizable = [name for name, module in modules.items() if isinstance(module, (nn.Conv2d, nn.Linear))]
    layers = quantizable if layers is None else list(layers)
    unknown = [name for name in layers if name not in quantizable]
    if unknown or not layers:
        raise ValueError(f"layers {unknown or layers} are not Conv2d/Linear modules of the model; "
                         f"choose among {quantizable}")
    observers = {name: new_observer() for name in layers}
    handles = [modules[name].register_forward_pre_hook(lambda module, args, name=name: observers[name](args[0]))
               for name in layers]
    try:
        for images, _ in calibration_loader:
            model(images.to(device))
    finally:
        for handle in handles:
            handle.remove()

    def row(name: str, predicted: torch.Tensor) -> dict:
        accuracy = 100.0 * (predicted == labels).float().mean().item()
        return {"layer": name, "accuracy": accuracy, "change": accuracy - fp32,
                "flipped": 100.0 * (predicted != fp32_predicted).float().mean().item()}

    fp32_predicted, labels = _predictions(model, eval_loader, device)
    fp32 = 100.0 * (fp32_predicted == labels).float().mean().item()
    rows = [row("none (FP32)", fp32_predicted)]
    for name in layers:
        layer = modules[name]
        float_weight = layer.weight.data
        layer.weight.data = dequantize(*quantize_weight(float_weight.cpu())).to(float_weight.device)
        scale, zero_point = (t.to(device) for t in observers[name].qparams(ACTIVATION_MIN, ACTIVATION_MAX))

        def fake_quantize_input(module, args, scale=scale, zero_point=zero_point):
            q = quantize(args[0], scale, zero_point, quant_min=ACTIVATION_MIN, quant_max=ACTIVATION_MAX,
                         dtype=torch.uint8)
            return (dequantize(q, scale, zero_point),) + tuple(args[1:])

        handle = layer.register_forward_pre_hook(fake_quantize_input)
        try:
            predicted, _ = _predictions(model, eval_loader, device)
        finally:
            handle.remove()
            layer.weight.data = float_weight
        rows.append(row(name, predicted))
    return rows
