"""labkit models: every network the labs use, each in its own module."""
from labkit.models.efficient_unet import ECA, DepthwiseSeparableConv, EfficientDown, EfficientUNet, EfficientUp
from labkit.models.quantized_resnet20 import QuantizedResNet20
from labkit.models.resnet20 import CifarResNet, load_pretrained, resnet20
from labkit.models.resnet34_unet import ResNet34Encoder, ResNet34UNet
from labkit.models.unet import UNet
from labkit.models.unet_parts import DoubleConv, Down, OutConv, Up

__all__ = ["UNet", "DoubleConv", "Down", "Up", "OutConv", "ResNet34UNet", "ResNet34Encoder", "resnet20", "CifarResNet", "load_pretrained",
           "EfficientUNet", "DepthwiseSeparableConv", "ECA", "EfficientDown", "EfficientUp", "QuantizedResNet20"]
