"""``python -m labkit record-selfcheck``: record the self-checks' expected values from the solution (TA only).

Run it in the TA's kit (the solution), whenever a TODO's solution or a self-check case changes; it
rewrites ``labkit/selfcheck/recorded/`` and ``tests/test_selfcheck_recorded.py`` fails until it has.
Each case builds the module with the same builder the self-check uses (``labkit.selfcheck.*``),
seeds its weights and inputs, and stores the solution's outputs; for a few common mistakes it also
stores what the mistaken code gives, so that a self-check can name the mistake when it sees it.
This file ships only in the TA's kit (the release leaves it out).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labkit.selfcheck import segmentation as seg
from labkit.selfcheck.recorded import RECORDED_DIR, Case, save_case


def seeded_state(module: nn.Module, seed: int) -> dict:
    """Random weights *and* BatchNorm statistics, so that every part of the layer shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if not value.is_floating_point():
            state[key] = value.clone()
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=generator) * 1.5 + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=generator) * 0.5
    return state


def module_case(build, inputs: dict, *, seed: int = 0, mistakes: dict | None = None) -> Case:
    """Run the solution's module (and each mistaken variant, built by ``mistakes[name]()``) on ``inputs``."""
    module = build()
    state = seeded_state(module, seed)
    case = Case(inputs=inputs, state=state)
    for name, variant in [("", build)] + list((mistakes or {}).items()):
        model = variant()
        model.load_state_dict(state)
        with torch.no_grad():
            out = model.eval()(*[value.clone() for value in inputs.values()])
        if name:
            case.mistakes[name] = {"out": out}
        else:
            case.expected["out"] = out
    return case


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- mistaken variants
def _cat_order_up():
    from labkit.models.unet_parts import Up, pad_to_match

    class CatOrderUp(Up):
        def forward(self, x, skip):
            return self.conv(torch.cat([pad_to_match(self.up(x), skip), skip], dim=1))
    return CatOrderUp(8, 4)


def _no_last_relu_double_conv():
    module = seg.build_double_conv()
    module.double_conv[5] = nn.Identity()
    return module


def _relu_before_add_block():
    from labkit.models.resnet34_unet import BasicBlock

    class ReluBeforeAdd(BasicBlock):
        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))) + identity
    return ReluBeforeAdd


def _decoder_variant(*, cat_order=False, mode="nearest"):
    from labkit.models.resnet34_unet import DecoderBlock
    from labkit.models.unet_parts import pad_to_match

    class Variant(DecoderBlock):
        def forward(self, x, skip):
            kwargs = {"align_corners": False} if mode == "bilinear" else {}
            x = pad_to_match(F.interpolate(x, scale_factor=2.0, mode=mode, **kwargs), skip)
            return self.conv(torch.cat([x, skip] if cat_order else [skip, x], dim=1))
    return Variant(8, 4, 6)


def _dice_case() -> Case:
    from labkit.metrics import dice_score

    generator = torch.Generator().manual_seed(0)
    prediction = (torch.rand(6, 1, 5, 7, generator=generator) > 0.5).to(torch.uint8)
    target = (torch.rand(6, 1, 5, 7, generator=generator) > 0.4).to(torch.uint8)
    target[3] = prediction[3]          # a perfect image
    target[4] = 1 - prediction[4]      # disjoint
    prediction[5], target[5] = 0, 0    # both empty
    case = Case(inputs={"prediction": prediction, "target": target})
    case.expected = {"none": dice_score(prediction, target, reduction="none"), "mean": dice_score(prediction, target)}
    both_empty_zero = case.expected["none"].clone()
    both_empty_zero[5] = 0.0
    p, t = prediction.flatten().float(), target.flatten().float()
    case.mistakes = {"both_empty_zero": {"none": both_empty_zero},
                     "whole_batch": {"none": (2 * (p * t).sum() / (p.sum() + t.sum())).expand(6).clone()}}
    return case


def segmentation_cases() -> dict[str, Case]:
    """Labs 01 and 02."""
    relu_before_add = _relu_before_add_block()
    x_up, skip = _randn(1, 8, 4, 5, seed=1), _randn(1, 4, 9, 11, seed=2)
    return {
        "dice": _dice_case(),
        "double_conv": module_case(seg.build_double_conv, {"x": _randn(2, 3, 9, 11, seed=1)},
                                   mistakes={"no_last_relu": _no_last_relu_double_conv}),
        "double_conv_mid": module_case(seg.build_double_conv_mid, {"x": _randn(2, 4, 7, 6, seed=1)}),
        "up": module_case(seg.build_up, {"x": x_up, "skip": skip}, mistakes={"cat_order": _cat_order_up}),
        "unet_small": module_case(seg.build_small_unet, {"x": _randn(1, 3, 19, 23, seed=1)}),
        "basic_block": module_case(seg.build_basic_block, {"x": _randn(2, 8, 9, 11, seed=1)},
                                   mistakes={"relu_before_add": lambda: relu_before_add(8, 16, stride=2)}),
        "basic_block_identity": module_case(seg.build_basic_block_identity, {"x": _randn(2, 8, 9, 11, seed=1)},
                                            mistakes={"relu_before_add": lambda: relu_before_add(8, 8)}),
        "decoder_block": module_case(seg.build_decoder_block, {"x": x_up, "skip": skip},
                                     mistakes={"cat_order": lambda: _decoder_variant(cat_order=True),
                                               "bilinear": lambda: _decoder_variant(mode="bilinear")}),
        "decoder_block_last": module_case(seg.build_last_decoder_block,
                                          {"x": x_up, "skip": torch.zeros(1, 0, 8, 10)}),
    }



def quantization_cases() -> dict[str, Case]:
    """Lab 04: qparams for negative, positive-only, negative-only, constant and skewed ranges; two fusions."""
    from labkit.quant.affine import affine_qparams
    from labkit.quant.manual import fuse_conv_bn
    from labkit.selfcheck.quantization import QPARAM_RANGES, random_conv_bn

    low = torch.tensor([-1.0, 0.5, -2.0, 0.0, -0.3, -7.1, -0.05])
    high = torch.tensor([3.0, 2.0, -0.5, 0.0, 5.7, 0.2, 0.07])
    cases = {}
    for name, (quant_min, quant_max) in QPARAM_RANGES.items():
        scale, zero_point = affine_qparams(low, high, quant_min=quant_min, quant_max=quant_max)
        wrong_scale = torch.clamp((high - low) / float(quant_max - quant_min), min=torch.finfo(torch.float32).eps)
        truncated = quant_min - (torch.clamp(low, max=0.0) / scale).to(torch.int32)
        cases[name] = Case(inputs={"min": low, "max": high}, expected={"scale": scale, "zero_point": zero_point},
                           mistakes={"no_zero": {"scale": wrong_scale.float()},
                                     "truncated": {"zero_point": torch.clamp(truncated, quant_min, quant_max)}})
    for name, bias in (("fuse_no_bias", False), ("fuse_bias", True)):
        torch.manual_seed(3 if bias else 2)
        conv, bn = random_conv_bn(4, 6, bias=bias)
        bn.running_var[:2] = 2e-5  # a nearly dead channel: there, eps changes the result visibly
        weight, fused_bias = fuse_conv_bn(conv, bn)
        state = {f"conv.{k}": v for k, v in conv.state_dict().items()} | {f"bn.{k}": v for k, v in bn.state_dict().items()}
        with torch.no_grad():
            no_eps = bn.weight / torch.sqrt(bn.running_var)
            conv_bias = conv.bias if bias else torch.zeros(6)
            mistakes = {"no_eps": {"weight": conv.weight * no_eps.reshape(-1, 1, 1, 1),
                                   "bias": (conv_bias - bn.running_mean) * no_eps + bn.bias}}
            if bias:
                factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                mistakes["bias_dropped"] = {"bias": -bn.running_mean * factor + bn.bias}
        cases[name] = Case(state=state, expected={"weight": weight, "bias": fused_bias}, mistakes=mistakes)
    return cases


def pruning_cases() -> dict[str, Case]:
    """Lab 03: the solution's masks on the tiny net, and the zero counts a per-layer (local) ranking gives."""
    from torch.nn.utils import prune as torch_prune

    from labkit.prune import magnitude
    from labkit.selfcheck.pruning import LIGHT_LAYERS, PRUNED_LAYERS, TARGETS, computed_weight, tiny_prunable_net

    net = tiny_prunable_net()
    case = Case()
    for target in TARGETS:
        case.expected[f"sparsity@{target}"] = torch.tensor(magnitude.prune_to(net, target, light_layers=LIGHT_LAYERS),
                                                           dtype=torch.float64)
        for name in PRUNED_LAYERS:
            case.expected[f"{name}@{target}"] = (computed_weight(getattr(net, name)) == 0).to(torch.uint8)
        local = tiny_prunable_net()
        for name in PRUNED_LAYERS:
            torch_prune.l1_unstructured(getattr(local, name), "weight", amount=LIGHT_LAYERS.get(name, target))
        case.mistakes.setdefault("local", {})[f"zeros@{target}"] = torch.tensor(
            [int((computed_weight(getattr(local, name)) == 0).sum()) for name in PRUNED_LAYERS])
    return {"prune_to": case}


def _residual_separable():
    from labkit.models.efficient_unet import DepthwiseSeparableConv

    class Residual(DepthwiseSeparableConv):
        def forward(self, x):
            return self.pointwise(self.depthwise(x)) + x
    return Residual(8, 8)


def _eca_variant(*, gate=True, pool="mean"):
    from labkit.models.efficient_unet import ECA

    class Variant(ECA):
        def forward(self, x):
            batch, channels = x.shape[:2]
            pooled = x.mean(dim=(2, 3)) if pool == "mean" else x.amax(dim=(2, 3))
            weights = self.conv(pooled.reshape(batch, 1, channels, 1))
            weights = self.gate(weights) if gate else weights
            return self.scale.mul(x, weights.reshape(batch, channels, 1, 1).expand_as(x))
    return Variant(16)


def efficient_cases() -> dict[str, Case]:
    """Lab 05's blocks and a small EfficientUNet."""
    from labkit.selfcheck import efficient as eff

    x = _randn(2, 8, 9, 11, seed=1)
    return {
        "separable_conv": module_case(eff.build_separable_conv, {"x": x}),
        "separable_conv_same": module_case(eff.build_separable_conv_same, {"x": x},
                                           mistakes={"residual": _residual_separable}),
        "eca": module_case(eff.build_eca, {"x": _randn(2, 16, 5, 7, seed=1)},
                           mistakes={"no_gate": lambda: _eca_variant(gate=False),
                                     "max_pool": lambda: _eca_variant(pool="max")}),
        "efficient_unet_small": module_case(eff.build_small_efficient_unet, {"x": _randn(1, 3, 35, 67, seed=1)}),
    }


def course_layouts() -> dict:
    """``{model: {key: shape}}`` of the models the checks build with the course's sizes."""
    from labkit.models.efficient_unet import EfficientUNet
    from labkit.models.resnet34_unet import ResNet34UNet
    from labkit.models.unet import UNet

    models = {"unet": UNet(in_channels=3, classes=1, base_channels=64), "resnet34_unet": ResNet34UNet(classes=1),
              "efficient_unet": EfficientUNet(classes=8)}
    return {name: {key: list(value.shape) for key, value in model.state_dict().items()}
            for name, model in models.items()}


def all_cases() -> dict[str, Case]:
    return segmentation_cases() | quantization_cases() | pruning_cases() | efficient_cases()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit record-selfcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECORDED_DIR)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    for name, case in all_cases().items():
        print(f"recorded {save_case(name, case, folder=args.out)}")
    (args.out / "layouts.json").write_text(json.dumps(course_layouts(), indent=0, sort_keys=True) + "\n")
    print(f"recorded {args.out / 'layouts.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
