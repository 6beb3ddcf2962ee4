"""Issue 40's corpus: plausible student mistakes, each applied to the solution's source, each caught.

A mistake is a text edit of one TODO's solution (``old`` -> ``new``); the edited function is compiled
in its module and patched in, then ``run_lab`` must exit 1 with a FAIL line naming the part and
saying what is wrong (``says``). Nothing is shown that the student has to read twice: no torch text.
"""
import importlib
import inspect
import io
import textwrap

import pytest

from labkit.selfcheck import run_lab

# (lab, "module:Qualified.name", old text, new text, part named, words the message must contain)
MISTAKES = [
    ("01", "labkit.metrics:dice_score", "torch.full_like(total, empty_score)", "torch.zeros_like(total)",
     "dice_score", "both masks empty"),
    ("01", "labkit.metrics:dice_score", "2.0 * intersection / safe_total", "intersection / safe_total",
     "dice_score", "differs from the course's"),
    ("01", "labkit.metrics:dice_score", "2.0 * intersection / safe_total",
     "intersection / (safe_total - intersection).clamp(min=1.0)", "dice_score", "differs from the course's"),
    ("01", "labkit.models.unet_parts:DoubleConv.__init__",
     "nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),\n"
     "            nn.BatchNorm2d(mid_channels),\n            nn.ReLU(inplace=True),",
     "nn.Sequential(nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),\n"
     "            nn.BatchNorm2d(mid_channels),\n            nn.ReLU(inplace=True)),", "DoubleConv", "nested nn.Sequential"),
    ("01", "labkit.models.unet_parts:DoubleConv.__init__", "kernel_size=3, padding=1, bias=False",
     "kernel_size=3, padding=1", "DoubleConv", "has no bias"),
    ("01", "labkit.models.unet_parts:DoubleConv.__init__", "nn.BatchNorm2d(out_channels),\n            nn.ReLU(inplace=True),",
     "nn.BatchNorm2d(out_channels),", "DoubleConv", "end with the second ReLU"),
    ("01", "labkit.models.unet_parts:DoubleConv.__init__", "nn.Conv2d(in_channels, mid_channels",
     "nn.Conv2d(in_channels, out_channels", "DoubleConv", "of another shape"),
    ("01", "labkit.models.unet_parts:Up.forward", "torch.cat([skip, x], dim=1)", "torch.cat([x, skip], dim=1)",
     "Up.forward", "skip connection's channels first"),
    ("01", "labkit.models.unet_parts:Up.forward", "x = pad_to_match(self.up(x), skip)", "x = self.up(x)",
     "Up.forward", "pad_to_match(x, skip)"),
    ("01", "labkit.models.unet_parts:Up.forward", "pad_to_match(self.up(x), skip)", "pad_to_match(x, skip)",
     "Up.forward", "channels"),
    ("02", "labkit.models.resnet34_unet:BasicBlock.forward", "out = self.bn2(self.conv2(out))\n        return self.relu(out + identity)",
     "out = self.relu(self.bn2(self.conv2(out)))\n        return out + identity", "BasicBlock.forward",
     "after the addition"),
    ("02", "labkit.models.resnet34_unet:BasicBlock.forward",
     "identity = x if self.downsample is None else self.downsample(x)", "identity = x", "BasicBlock.forward",
     "self.downsample(x)"),
    ("02", "labkit.models.resnet34_unet:BasicBlock.forward", "return self.relu(out + identity)", "return out + identity",
     "BasicBlock.forward", "differs from the course's"),
    ("02", "labkit.models.resnet34_unet:DecoderBlock.forward", "torch.cat([skip, x], dim=1)", "torch.cat([x, skip], dim=1)",
     "DecoderBlock.forward", "skip connection's channels first"),
    ("02", "labkit.models.resnet34_unet:DecoderBlock.forward", 'mode="nearest"', 'mode="bilinear"',
     "DecoderBlock.forward", "mode='nearest'"),
    ("02", "labkit.models.resnet34_unet:DecoderBlock.forward",
     'x = pad_to_match(F.interpolate(x, scale_factor=2.0, mode="nearest"), skip)',
     'x = F.interpolate(x, scale_factor=2.0, mode="nearest")', "DecoderBlock.forward", "pad_to_match(x, skip)"),
    ("03", "labkit.prune.magnitude:prune_to",
     "prune.global_unstructured(\n            [(layer, \"weight\") for layer in ranked], pruning_method=prune.L1Unstructured,\n"
     "            amount=to_remove,\n            importance_scores={(layer, \"weight\"): weight_scores(layer, ranking) "
     "for layer in ranked})",
     "[prune.l1_unstructured(layer, \"weight\", amount=target) for layer in ranked]", "prune_to", "local"),
    ("03", "labkit.prune.magnitude:prune_to", " - sum(map(_masked_count, ranked))", "", "prune_to",
     "not the whole target again"),
    ("03", "labkit.prune.magnitude:prune_to", "pruning_method=prune.L1Unstructured",
     "pruning_method=prune.RandomUnstructured", "prune_to", "by |w|"),
    ("03", "labkit.prune.magnitude:iterative_prune", "_restore(model, last_passing)", "pass", "iterative_prune",
     "not undone"),
    ("03", "labkit.prune.magnitude:iterative_prune", "            break\n", "", "iterative_prune",
     "stop at the first round"),
    ("04", "labkit.quant.affine:affine_qparams", "quant_max).to(torch.int32)", "quant_max).float()",
     "affine_qparams", "torch.int32"),
    ("04", "labkit.quant.affine:affine_qparams", "    min_val = torch.clamp(min_val, max=0.0)\n    max_val = torch.clamp(max_val, min=0.0)\n",
     "", "affine_qparams", "include it"),
    ("04", "labkit.quant.affine:affine_qparams", "torch.round(min_val / scale)", "(min_val / scale)",
     "affine_qparams", "do not truncate"),
    ("04", "labkit.quant.manual:fuse_conv_bn", "conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)",
     "conv_bias = torch.zeros_like(bn.running_mean)", "fuse_conv_bn", "own bias was dropped"),
    ("04", "labkit.quant.manual:fuse_conv_bn", "bn.running_var + bn.eps", "bn.running_var", "fuse_conv_bn", "include eps"),
    ("05", "labkit.models.efficient_unet:DepthwiseSeparableConv.forward", "self.pointwise(self.depthwise(x))",
     "self.depthwise(self.pointwise(x))", "DepthwiseSeparableConv.forward", "depthwise first"),
    ("05", "labkit.models.efficient_unet:DepthwiseSeparableConv.forward", "self.pointwise(self.depthwise(x))",
     "self.pointwise(self.depthwise(x)) + x", "DepthwiseSeparableConv.forward", "FloatFunctional"),
    ("05", "labkit.models.efficient_unet:ECA.forward", "self.scale.mul(x, gate.expand_as(x))", "x * gate",
     "ECA.forward", "self.scale.mul"),
    ("05", "labkit.models.efficient_unet:ECA.forward", "self.gate(self.conv(pooled))", "self.conv(pooled)",
     "ECA.forward", "self.gate"),
    ("05", "labkit.models.efficient_unet:ECA.forward", "pooled = self.pool(x)", "pooled = x.amax(dim=(2, 3))",
     "ECA.forward", "not the maximum"),
]


def apply_mistake(monkeypatch, target: str, old: str, new: str) -> None:
    """Edit the solution's source of ``target`` and patch the edited function in (undone after the test)."""
    module_name, _, qualified = target.partition(":")
    module = importlib.import_module(module_name)
    owner_name, _, function_name = qualified.rpartition(".")
    owner = getattr(module, owner_name) if owner_name else module
    source = inspect.getsource(getattr(owner, function_name))
    assert old in source, f"the mistake no longer applies to {target}: {old!r} is not in its source"
    if owner_name:  # compiled outside its class, a method needs super()'s arguments spelled out
        source = source.replace("super().", f"super({owner_name}, self).")
    namespace = dict(vars(module))
    exec(compile(textwrap.dedent(source.replace(old, new)), f"<mistake in {target}>", "exec"), namespace)
    monkeypatch.setattr(owner, function_name, namespace[function_name])


@pytest.mark.parametrize("lab, target, old, new, part, says", MISTAKES,
                         ids=[f"{m[1].split(':')[1]}-{i}" for i, m in enumerate(MISTAKES)])
def test_each_mistake_fails_its_selfcheck_and_names_the_part(monkeypatch, lab, target, old, new, part, says):
    apply_mistake(monkeypatch, target, old, new)
    report = io.StringIO()
    assert run_lab(lab, out=report) == 1, report.getvalue()
    failures = [line for line in report.getvalue().splitlines() if line.startswith("FAIL")]
    assert failures and failures[0].startswith(f"FAIL {part}"), report.getvalue()
    assert says in failures[0], failures[0]
    assert "Facebook" not in report.getvalue() and "Traceback" not in report.getvalue()


def test_the_corpus_has_at_least_two_mistakes_per_todo():
    per_todo = {}
    for mistake in MISTAKES:
        per_todo[mistake[1]] = per_todo.get(mistake[1], 0) + 1
    assert len(per_todo) == 11 and min(per_todo.values()) >= 2, per_todo


@pytest.mark.parametrize("target, old, new, block", [
    ("labkit.models.efficient_unet:DepthwiseSeparableConv.forward", "return self.pointwise(self.depthwise(x))",
     "out = self.pointwise(self.depthwise(x))\n        return out + x if out.shape == x.shape else out",
     "DepthwiseSeparableConv (inc.1)"),
    ("labkit.models.efficient_unet:ECA.forward", "self.scale.mul(x, gate.expand_as(x))", "x * gate",
     "ECA (downs.0.attention)")])
def test_the_int8_conversion_check_names_the_block_with_a_float_op(monkeypatch, target, old, new, block):
    """A MobileNet-style residual or a plain product trains in float and dies in INT8: found before training."""
    apply_mistake(monkeypatch, target, old, new)
    report = io.StringIO()
    assert run_lab("05", out=report) == 1
    line = next(line for line in report.getvalue().splitlines() if line.startswith("FAIL INT8 conversion"))
    assert block in line and "FloatFunctional" in line, line
    assert "QuantizedCPU" not in line and "empty_strided" not in line
