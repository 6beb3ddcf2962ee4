"""An honest student's Task 2 network: depthwise-separable convs, additive skip; FP32 or eager INT8.

``load_model(path)`` looks at the saved keys: an INT8 file (saved after torch.ao eager
``prepare`` + ``convert``) is rebuilt the same way before loading, on the CPU (qnnpack).
"""
import torch
from torch import nn
from torch.ao import quantization as tq


def separable(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in),
                         nn.Conv2d(c_in, c_out, 1), nn.ReLU())


class LiteSeg(nn.Module):
    def __init__(self, classes=8, width=6):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
        self.body = separable(width, width)
        self.skip = nn.quantized.FloatFunctional()
        self.head = nn.Conv2d(width, classes, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        x = self.stem(self.quant(x))
        x = self.skip.add(x, self.body(x))
        return self.dequant(self.up(self.head(x)))


def quantized_model(model, calibration=None, engine="qnnpack"):
    """Eager post-training INT8 of ``model`` (calibrated on ``calibration`` when given)."""
    torch.backends.quantized.engine = engine
    model.eval()
    model.qconfig = tq.get_default_qconfig(engine)
    prepared = tq.prepare(model)
    with torch.no_grad():
        prepared(calibration if calibration is not None else torch.rand(2, 3, 32, 64))
    return tq.convert(prepared)


def load_model(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = LiteSeg()
    if any(k.endswith("zero_point") for k in state):
        model = quantized_model(model)
    model.load_state_dict(state)
    return model
