"""labkit.grading.network_faults: torch's text of a student's network fault becomes what to fix.

The texts are made by torch here (not copied), so a torch upgrade that changes them fails these tests.
"""
import warnings

import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from labkit.grading.categories import channel_note
from labkit.grading.network_faults import SHOWN, LoadReport, clean, compare_state_dicts, explain

RAW = ("Facebook", "QuantizedCPU", "is only available for these backends", "registered at")


def torch_error(function) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as caught:
            function()
    return str(caught.value)


class Wide(nn.Module):
    def __init__(self, layers=12, head=8):
        super().__init__()
        self.body = nn.Sequential(*[nn.Conv2d(2, 2, 1) for _ in range(layers)])
        self.head = nn.Conv2d(2, head, 1)


def test_a_state_dict_that_does_not_load_lists_ten_of_each_list_and_counts_them():
    given = Wide(layers=3, head=7).state_dict()
    given.update({f"extra.{i}.weight": torch.zeros(1) for i in range(11)})
    model = Wide(layers=12, head=8)
    text = torch_error(lambda: model.load_state_dict(given))
    report = LoadReport.parse(text)
    assert report.model == "Wide"
    assert len(report.missing) == 18 and len(report.unexpected) == 11  # 9 convs x (weight, bias); 11 extras
    assert report.wrong_shapes == [{"key": "head.weight", "file": [7, 2, 1, 1], "model": [8, 2, 1, 1]},
                                   {"key": "head.bias", "file": [7], "model": [8]}]
    message = report.message("your model (Wide)")
    assert "missing keys (in the model, not in the file) (18; first 10): body.3.weight" in message
    assert "unexpected keys (in the file, not in the model) (11; first 10): extra.0.weight" in message
    assert "wrong shapes (2): head.weight: file (7, 2, 1, 1), model (8, 2, 1, 1)" in message
    assert "body.8.weight" not in message  # the 11th missing key: only the first ten are shown
    as_json = report.to_dict()
    assert as_json["counts"] == {"missing": 18, "unexpected": 11, "wrong_shapes": 2, "other": 0}
    assert len(as_json["missing"]) == len(as_json["unexpected"]) == SHOWN
    # labkit's reference route compares the two state_dicts itself: the same lists, the same lines
    same = compare_state_dicts(model.state_dict(), given, model="Wide")
    assert same.to_dict() == as_json and same.message("x") == report.message("x")


def quantized(module: nn.Module, fuse=None) -> nn.Module:
    torch.backends.quantized.engine = "x86"
    module.eval()
    module.qconfig = tq.get_default_qconfig("x86")
    if fuse:
        tq.fuse_modules(module, fuse, inplace=True)
    prepared = tq.prepare(module)
    prepared(torch.rand(1, 3, 8, 8))
    return tq.convert(prepared)


class Block(nn.Module):
    def __init__(self, op="none", stub=True):
        super().__init__()
        self.quant, self.dequant, self.op, self.stub = tq.QuantStub(), tq.DeQuantStub(), op, stub
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.other = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        x = self.quant(x) if self.stub else x
        y = self.relu(self.bn(self.conv(x)))
        z = self.other(y)
        if self.op == "add":
            y = y + z
        elif self.op == "mul":
            y = y * z
        elif self.op == "add_input":   # INT8 tensors of other scales: torch says something else again
            y = y + x
        return self.dequant(y)


@pytest.mark.parametrize("op, start", [("add", "`+` on INT8"), ("mul", "`*` on INT8"),
                                       ("add_input", "`+`, `*` or `torch.cat` on INT8")])
def test_float_arithmetic_in_an_int8_model_names_floatfunctional(op, start):
    model = quantized(Block(op), fuse=[["conv", "bn", "relu"]])
    text = torch_error(lambda: model(torch.rand(1, 3, 8, 8)))
    assert "quantized" in text.lower()   # what torch says (its dispatcher text, or "empty_strided ...") ...
    explained, details = explain(text)
    assert explained.startswith(start) and "FloatFunctional" in explained
    assert details == {} and not any(raw in explained for raw in RAW)   # ... never reaches a student


def test_a_missing_quantstub_says_so():
    model = quantized(Block(stub=False), fuse=[["conv", "bn", "relu"]])
    text = torch_error(lambda: model(torch.rand(1, 3, 8, 8)))
    explained, _ = explain(text)
    assert "QuantStub is missing" in explained and "self.quant(x)" in explained
    assert not any(raw in explained for raw in RAW)


def test_an_int8_file_in_an_unfused_model_says_fuse_before_prepare():
    saved = quantized(Block(), fuse=[["conv", "bn", "relu"]]).state_dict()
    unfused = quantized(Block())
    text = torch_error(lambda: unfused.load_state_dict(saved))
    explained, details = explain(text)
    assert "bn.running_mean" in explained and "fuse" in details["load_errors"]["hint"]
    assert "before prepare" in explained


def test_an_unknown_error_keeps_its_first_line_without_the_dispatcher_tail():
    text = ("Could not run 'aten::foo' with arguments from the 'SparseCPU' backend. This could be because the "
            "operator doesn't exist for this backend. If you are a Facebook employee using PyTorch on mobile ...")
    explained, _ = explain(text)
    assert "SparseCPU" in explained and "Facebook" not in explained
    assert clean("boom. If you are a Facebook employee using PyTorch on mobile, please visit x") == "boom."


def test_channel_counts_other_than_eight_are_explained():
    assert channel_note(8) is None
    seven = channel_note(7)
    assert "category 7 vehicle can never be predicted" in seven and "IoU is 0" in seven
    nineteen = channel_note(19, 0.125)
    assert "channel 8..18 predicts no category" in nineteen and "12.5% of the pixels" in nineteen
    assert "return exactly 8 channels" in nineteen
