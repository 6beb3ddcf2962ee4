"""Quantization-aware training (eager mode, torch.ao) and the INT8 load path used for grading.

The three steps, for any model with ``QuantStub``/``DeQuantStub``, ``FloatFunctional`` for its
additions and a ``fuse_model(qat=...)`` method (e.g. :class:`labkit.models.efficient_unet.EfficientUNet`):

1. ``prepare_qat(model)``: fuse Conv-BN-ReLU, attach the backend's QAT qconfig and insert fake
   quantization: training now sees the rounding of INT8 and learns around it.
2. Fine-tune a few epochs (``labkit.train.fit(..., amp=False)``: fake quantization wants float32).
3. ``convert_to_int8(qat_model)``: real int8 weights and activations, CPU only.

A grader never unpickles a model. ``build_int8_model(**kwargs)`` repeats steps 1 and 3 on a fresh,
untrained model, which gives exactly the converted structure, and the submitted INT8 state_dict
then loads into it with ``torch.load(weights_only=True)``.

Example:
    >>> import torch
    >>> from labkit.models.efficient_unet import EfficientUNet
    >>> qat_model = prepare_qat(EfficientUNet(base_channels=4, depth=2))
    >>> _ = qat_model(torch.rand(2, 3, 32, 64))            # training steps would go here
    >>> int8_model = convert_to_int8(qat_model)
    >>> graded = build_int8_model(base_channels=4, depth=2)  # what a grader rebuilds
    >>> _ = graded.load_state_dict(int8_model.state_dict())
    >>> image = torch.rand(1, 3, 32, 64)
    >>> torch.equal(graded(image), int8_model(image))
    True
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Mapping

import torch
from torch import nn
from torch.ao.quantization import QConfig, convert, get_default_qat_qconfig
from torch.ao.quantization import prepare_qat as _torch_prepare_qat
from torch.ao.quantization.fake_quantize import FakeQuantize, default_weight_fake_quant

BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")


@contextlib.contextmanager
def quiet_quantization_warnings():
    """Silence torch.ao's known, harmless warnings here only (not for the whole notebook).

    torch 2.14 still warns that eager prepare/convert are deprecated, that ``reduce_range`` is
    used on x86, and when quantized tensors are created (tech-facts.md); none is actionable.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*reduce_range.*")
        warnings.filterwarnings("ignore", message=".*[Qq]uantiz.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*TypedStorage.*")
        warnings.filterwarnings("ignore", message="must run observer before calling calculate_qparams")
        yield


def set_backend(backend: str = "x86") -> None:
    """Select the INT8 kernels (``torch.backends.quantized.engine``); x86 is the fast one on PCs."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"this torch build has no {backend!r} quantized engine; available: "
                           f"{torch.backends.quantized.supported_engines}")
    torch.backends.quantized.engine = backend


def per_tensor_qat_qconfig(backend: str = "x86") -> QConfig:
    """The backend's QAT qconfig with per-tensor (not per-channel) weight fake quantization.

    On x86, ``ConvTranspose2d`` fails with per-channel weights (tech-facts.md); this is the
    qconfig such layers need.
    """
    return QConfig(activation=get_default_qat_qconfig(backend).activation, weight=default_weight_fake_quant)


def prepare_qat(model: nn.Module, *, backend: str = "x86", inplace: bool = False) -> nn.Module:
    """Fuse, attach the ``backend``'s QAT qconfig and insert fake quantization; returns the model.

    The model is put in train mode (QAT fuses Conv-BN keeping BN trainable). Transposed
    convolutions get :func:`per_tensor_qat_qconfig`. ``inplace=False`` works on a deep copy.
    """
    set_backend(backend)
    model = model if inplace else copy.deepcopy(model)
    model.train()
    if hasattr(model, "fuse_model"):
        model.fuse_model(qat=True)
    model.qconfig = get_default_qat_qconfig(backend)
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            module.qconfig = per_tensor_qat_qconfig(backend)
    with quiet_quantization_warnings():
        _torch_prepare_qat(model, inplace=True)
    return model


def convert_to_int8(qat_model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Turn a QAT (or calibrated) model into an INT8 model on the CPU, in eval mode."""
    model = qat_model if inplace else copy.deepcopy(qat_model)
    model.cpu().eval()
    with quiet_quantization_warnings():
        convert(model, inplace=True)
    return model


def build_int8_model(model_class: type[nn.Module] | None = None, *, backend: str = "x86",
                     **model_kwargs) -> nn.Module:
    """An untrained INT8 model with the exact structure a converted QAT model has.

    The grading load path: rebuild the float model (``model_class(**model_kwargs)``, default
    ``EfficientUNet``), ``prepare_qat``, ``convert_to_int8``; then load the submitted INT8
    state_dict into it (``labkit.io.load_into``). The random qparams of this fresh model are all
    overwritten by the load.
    """
    if model_class is None:
        from labkit.models.efficient_unet import EfficientUNet
        model_class = EfficientUNet
    model = prepare_qat(model_class(**model_kwargs), backend=backend, inplace=True)
    with torch.no_grad():
        # One forward pass lets the observers see data, so conversion computes valid (finite)
        # qparams; they are placeholders that the loaded state_dict replaces.
        model(torch.rand(1, getattr(model, "in_channels", 3), 64, 64))
    return convert_to_int8(model, inplace=True)


def freeze_qat(model: nn.Module, *, observers: bool = True, batchnorm: bool = True) -> nn.Module:
    """For the last QAT epochs: stop updating activation ranges and BN statistics.

    Once the ranges settle, freezing them lets the weights adapt to fixed quantization steps;
    frozen BN statistics keep the folded weights stable (the usual recipe in torch's QAT tutorial).
    """
    if observers:
        model.apply(torch.ao.quantization.disable_observer)
    if batchnorm:
        model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    return model


def is_int8_state_dict(state_dict: Mapping) -> bool:
    """True for a state_dict saved from a converted INT8 model (quantized tensors or packed params)."""
    return any(
        (isinstance(value, torch.Tensor) and value.is_quantized)
        or key.endswith(("_packed_params", "_packed_params.dtype"))
        for key, value in state_dict.items())


def fake_quant_modules(model: nn.Module) -> int:
    """How many fake-quantization modules a prepared model holds (0 before ``prepare_qat``)."""
    return sum(isinstance(module, FakeQuantize) for module in model.modules())
