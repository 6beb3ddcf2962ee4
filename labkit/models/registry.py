"""Build the segmentation models a check grades, with widths read from the submitted file.

Students may train a smaller network on a CPU (``UNet(base_channels=16)``), so a grader cannot
assume the classic widths. The few hyper-parameters are read from weight *shapes*; the file is then
loaded strictly into the network labkit builds — any other difference still fails loudly.

Example:
    >>> from labkit.models.unet import UNet
    >>> state = UNet(base_channels=8, depth=3).state_dict()
    >>> infer_kwargs("unet", state)
    {'base_channels': 8, 'depth': 3, 'bilinear': False, 'classes': 1}
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

SEGMENTATION_MODELS = ("unet", "resnet34_unet")


def build_model(name: str, **kwargs) -> nn.Module:
    """``"unet"`` -> :class:`UNet`, ``"resnet34_unet"`` -> :class:`ResNet34UNet`."""
    if name == "unet":
        from labkit.models.unet import UNet
        return UNet(**kwargs)
    if name == "resnet34_unet":
        from labkit.models.resnet34_unet import ResNet34UNet
        return ResNet34UNet(**kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(SEGMENTATION_MODELS)}")


def _shape(state: Mapping, key: str):
    value = state.get(key)
    return tuple(value.shape) if value is not None and hasattr(value, "shape") else None


def infer_kwargs(name: str, state: Mapping) -> dict:
    """Constructor arguments that match ``state``'s widths; ``{}`` when nothing can be read."""
    if name == "unet":
        first = _shape(state, "inc.double_conv.0.weight")
        head = _shape(state, "outc.conv.weight")
        if first is None or head is None:
            return {}
        depth = len({key.split(".")[1] for key in state if key.startswith("downs.")})
        return {"base_channels": first[0], "depth": depth,
                "bilinear": "ups.0.up.weight" not in state, "classes": head[0]}
    if name == "resnet34_unet":
        widths = [_shape(state, f"decoder.{i}.conv.double_conv.3.weight") for i in range(5)]
        head = _shape(state, "head.conv.weight")
        if None in widths or head is None:
            return {}
        return {"decoder_channels": tuple(width[0] for width in widths), "classes": head[0]}
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(SEGMENTATION_MODELS)}")
