"""Self-checks for the TODOs students write: known values, a clear PASS line, or an error saying what is wrong.

The lab notebooks call these right after the cell that explains a TODO; they check the student's
code against numbers computed by hand or from the paper's architecture, never against the
student's own functions. Each returns ``True`` and prints ``PASS ...``, or raises ``AssertionError``
(a wrong value) / ``NotImplementedError`` (the TODO is still there) with what to fix.

Example:
    >>> check_dice()  # doctest: +ELLIPSIS
    PASS dice_score: ...
    True
"""
from __future__ import annotations

import torch
from torch import nn

UNET64_PARAMETERS = 31_037_633  # UNet(3 -> 1 class, base 64, depth 4, transposed convs), as in the paper


def _pass(what: str) -> bool:
    print(f"PASS {what}")
    return True


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"FAIL {message}")


def _expect_same(out: torch.Tensor, expected: torch.Tensor, *, shape: tuple, name: str, formula: str,
                 hint: str, tolerance: float = 1e-5) -> None:
    """``out`` has ``shape`` and equals the reference ``expected`` to within ``tolerance``."""
    _expect(tuple(out.shape) == shape, f"{name} gave {tuple(out.shape)}, expected {shape}")
    error = (out - expected).abs().max().item()
    _expect(error < tolerance, f"{name} differs from {formula} by {error:.2e}: {hint}")


def check_double_conv() -> bool:
    """``DoubleConv(3, 64)``: (conv3x3 no bias -> BN -> ReLU) x 2, same H x W, 38,848 parameters."""
    from labkit.models.unet_parts import DoubleConv

    block = DoubleConv(3, 64)
    out = block(torch.randn(2, 3, 17, 19))
    _expect(tuple(out.shape) == (2, 64, 17, 19),
            f"DoubleConv(3, 64) on (2, 3, 17, 19) gave {tuple(out.shape)}, expected (2, 64, 17, 19): "
            "use padding=1 so H and W stay the same")
    count = sum(p.numel() for p in block.parameters())
    # 3*64*9 + 64*64*9 weights (bias=False: BN has its own shift) + 2 BN x (64 weight + 64 bias)
    _expect(count == 3 * 64 * 9 + 64 * 64 * 9 + 2 * 128,
            f"DoubleConv(3, 64) has {count:,} parameters, expected 38,848: two 3x3 convs with bias=False, "
            "each followed by BatchNorm2d and ReLU")
    _expect(bool((out >= 0).all()), "DoubleConv's output has negative values: end with ReLU")
    return _pass("DoubleConv: shape (2, 64, 17, 19), 38,848 parameters, ReLU at the end")


def check_up() -> bool:
    """``Up(128, 64)`` on a coarse (1, 128, 4, 5) map and an odd-sized skip (1, 64, 9, 11) -> (1, 64, 9, 11)."""
    from labkit.models.unet_parts import Up

    out = Up(128, 64)(torch.randn(1, 128, 4, 5), torch.randn(1, 64, 9, 11))
    _expect(tuple(out.shape) == (1, 64, 9, 11),
            f"Up(128, 64) gave {tuple(out.shape)}, expected (1, 64, 9, 11): upsample, pad_to_match the skip, "
            "cat([skip, x], dim=1), then DoubleConv")
    return _pass("Up: odd-sized skip (9, 11) matched")


def check_unet() -> bool:
    """UNet-64 has 31,037,633 parameters and keeps odd input sizes: (1, 3, 97, 75) -> (1, 1, 97, 75)."""
    from labkit.models.unet import UNet

    model = UNet(in_channels=3, classes=1, base_channels=64).eval()
    count = sum(p.numel() for p in model.parameters())
    _expect(count == UNET64_PARAMETERS, f"UNet-64 has {count:,} parameters, expected {UNET64_PARAMETERS:,} "
            "(check DoubleConv's bias=False and Up's channels)")
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 75))
    _expect(tuple(out.shape) == (1, 1, 97, 75), f"UNet on (1, 3, 97, 75) gave {tuple(out.shape)}, "
            "expected (1, 1, 97, 75)")
    return _pass(f"UNet-64: {count:,} parameters, (1, 3, 97, 75) -> (1, 1, 97, 75)")


def check_dice() -> bool:
    """Dice on hand-made 2x4 masks: half overlap, perfect, disjoint, and both empty (-> 1.0)."""
    from labkit.metrics import dice_score

    pred = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]],    # 2 pixels, 1 shared: 2*1/(2+2) = 0.5
                         [[1, 1, 1, 1], [0, 0, 0, 0]],    # identical: 1.0
                         [[1, 0, 0, 0], [0, 0, 0, 0]],    # disjoint: 0.0
                         [[0, 0, 0, 0], [0, 0, 0, 0]]])   # both empty: 1.0 (nothing to find, nothing found)
    true = torch.tensor([[[0, 1, 1, 0], [0, 0, 0, 0]],
                         [[1, 1, 1, 1], [0, 0, 0, 0]],
                         [[0, 0, 0, 0], [0, 0, 0, 1]],
                         [[0, 0, 0, 0], [0, 0, 0, 0]]])
    scores = dice_score(pred, true, reduction="none")
    expected = torch.tensor([0.5, 1.0, 0.0, 1.0])
    _expect(tuple(scores.shape) == (4,), f"dice_score(reduction='none') gave shape {tuple(scores.shape)}, "
            "expected (4,): one score per image")
    _expect(torch.allclose(scores.float(), expected), f"dice_score gave {scores.tolist()}, expected "
            f"{expected.tolist()} (half overlap, perfect, disjoint, both empty -> empty_score)")
    _expect(torch.isclose(dice_score(pred, true).float(), torch.tensor(0.625)), "the mean of the four should be 0.625")
    return _pass("dice_score: 0.5, 1.0, 0.0, empty 1.0; mean 0.625")


def check_affine_qparams() -> bool:
    """``affine_qparams(-1, 3)`` onto [0, 255]: scale 4/255, zero point 64; a positive-only range keeps 0."""
    from labkit.quant.manual import affine_qparams

    scale, zero_point = affine_qparams(torch.tensor(-1.0), torch.tensor(3.0), quant_min=0, quant_max=255)
    _expect(abs(float(scale) - 4 / 255) < 1e-7, f"scale {float(scale):.6f}, expected 4/255 = {4 / 255:.6f}")
    _expect(int(zero_point) == 64 and zero_point.dtype == torch.int32,
            f"zero point {zero_point!r}, expected 64 as int32 (0 - round(-1 / scale))")
    scale, zero_point = affine_qparams(torch.tensor(0.5), torch.tensor(2.0), quant_min=0, quant_max=255)
    _expect(int(zero_point) == 0 and abs(float(scale) - 2 / 255) < 1e-7,
            f"range [0.5, 2] gave scale {float(scale):.6f}, zero point {int(zero_point)}: widen the range to "
            "include 0 first (expected 2/255 and 0)")
    return _pass("affine_qparams: [-1, 3] -> scale 4/255, zero point 64; [0.5, 2] includes 0")


def random_conv_bn(in_channels: int, out_channels: int, *, stride: int = 1,
                   bias: bool = False) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A 3x3 conv (padding 1) and a BatchNorm in eval mode with trained-looking statistics.

    Example:
        >>> conv, bn = random_conv_bn(4, 6)
        >>> conv.weight.shape, bn.training
        (torch.Size([6, 4, 3, 3]), False)
    """
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride, bias=bias)
    bn = nn.BatchNorm2d(out_channels)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    return conv, bn.eval()


def check_fuse_conv_bn(*, tolerance: float = 1e-5) -> bool:
    """A fused conv equals conv -> BN (eval) to within ``tolerance`` on random input."""
    from labkit.quant.manual import fuse_conv_bn

    torch.manual_seed(0)
    conv, bn = random_conv_bn(4, 6)
    x = torch.randn(2, 4, 7, 7)
    weight, bias = fuse_conv_bn(conv, bn)
    with torch.no_grad():
        error = (nn.functional.conv2d(x, weight, bias, padding=1) - bn(conv(x))).abs().max().item()
    _expect(error < tolerance, f"fused conv differs from conv -> BN by {error:.2e} (> {tolerance:g}): "
            "w' = w * gamma / sqrt(var + eps), b' = beta + (b - mean) * gamma / sqrt(var + eps)")
    return _pass(f"fuse_conv_bn: max error {error:.1e} < {tolerance:g}")


def check_basic_block() -> bool:
    """``BasicBlock(64, 128, stride=2)`` (eval) equals relu(bn2(conv2(relu(bn1(conv1 x)))) + downsample(x))."""
    from labkit.models.resnet34_unet import BasicBlock

    torch.manual_seed(0)
    block = BasicBlock(64, 128, stride=2).eval()
    x = torch.randn(2, 64, 15, 17)
    with torch.no_grad():
        out = block(x)
        expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))) + block.downsample(x))
    _expect_same(out, expected, shape=(2, 128, 8, 9), name="BasicBlock(64, 128, stride=2) on (2, 64, 15, 17)",
                 formula="the ResNet formula", hint="add the (downsampled) input AFTER bn2, then ReLU")
    return _pass("BasicBlock: (2, 64, 15, 17) -> (2, 128, 8, 9), residual added before the last ReLU")


def check_decoder_block() -> bool:
    """``DecoderBlock``: nearest x2, pad to the skip (odd 9 x 11), cat([skip, x]); no skip (0 channels) works."""
    import torch.nn.functional as F

    from labkit.models.resnet34_unet import DecoderBlock
    from labkit.models.unet_parts import pad_to_match

    torch.manual_seed(0)
    block = DecoderBlock(32, 16, 16).eval()
    x, skip = torch.randn(1, 32, 4, 5), torch.randn(1, 16, 9, 11)
    with torch.no_grad():
        out = block(x, skip)
        expected = block.conv(torch.cat([skip, pad_to_match(F.interpolate(x, scale_factor=2.0), skip)], dim=1))
    _expect(tuple(out.shape) == (1, 16, 9, 11), f"DecoderBlock gave {tuple(out.shape)}, expected (1, 16, 9, 11)")
    _expect((out - expected).abs().max().item() < 1e-5, "DecoderBlock: upsample with nearest x2, pad_to_match the "
            "skip, then torch.cat([skip, x], dim=1) (skip first) and self.conv")
    last = DecoderBlock(32, 0, 16).eval()
    with torch.no_grad():
        out = last(x, torch.zeros(1, 0, 8, 10))
    _expect(tuple(out.shape) == (1, 16, 8, 10), f"the last DecoderBlock (no skip) gave {tuple(out.shape)}, "
            "expected (1, 16, 8, 10): skip has 0 channels, do not concatenate it")
    return _pass("DecoderBlock: odd skip (9, 11) matched, skip first; the skip-less last block works")


def check_separable_conv() -> bool:
    """``DepthwiseSeparableConv(16, 32, stride=2)`` (eval) equals depthwise 3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU.

    The reference is written with ``F.conv2d(..., groups=16)`` and ``F.batch_norm`` on the block's own
    weights, so only the order and wiring of ``forward`` are tested. 752 parameters: 16*9 depthwise +
    16*32 pointwise weights + 2 BN x (weight + bias).
    """
    import torch.nn.functional as F

    from labkit.models.efficient_unet import DepthwiseSeparableConv

    torch.manual_seed(0)
    block = DepthwiseSeparableConv(16, 32, stride=2).eval()
    for bn in (block.depthwise[1], block.pointwise[1]):  # non-trivial BN statistics, so BN must be applied
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    count = sum(p.numel() for p in block.parameters())
    _expect(count == 16 * 9 + 16 * 32 + 2 * 16 + 2 * 32,
            f"DepthwiseSeparableConv(16, 32) has {count:,} parameters, expected 752: keep __init__ as given")
    x = torch.randn(2, 16, 15, 17)

    def conv_bn_relu(x, layer, **conv_args):
        conv, bn = layer[0], layer[1]
        x = F.conv2d(x, conv.weight, None, **conv_args)
        return torch.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps))

    with torch.no_grad():
        out = block(x)
        hidden = conv_bn_relu(x, block.depthwise, stride=2, padding=1, groups=16)  # one 3x3 filter per channel
        expected = conv_bn_relu(hidden, block.pointwise)                           # 1x1: mix the channels
    _expect_same(out, expected, shape=(2, 32, 8, 9),
                 name="DepthwiseSeparableConv(16, 32, stride=2) on (2, 16, 15, 17)", formula="depthwise -> pointwise",
                 hint="return self.pointwise(self.depthwise(x)) (depthwise first; each is Conv-BN-ReLU already)")
    return _pass("DepthwiseSeparableConv: (2, 16, 15, 17) -> (2, 32, 8, 9), depthwise then pointwise, 752 parameters")


def check_eca() -> bool:
    """ECA: kernel sizes 3, 3, 5, 5 for 16, 64, 128, 512 channels; ``x * sigmoid(conv1d_k(mean_hw(x)))``
    across the channel axis; through ``self.scale.mul`` (INT8 needs it); 4 parameters for 64 channels."""
    import torch.nn.functional as F

    from labkit.models.efficient_unet import ECA, eca_kernel_size

    sizes = {channels: eca_kernel_size(channels) for channels in (16, 64, 128, 512)}
    _expect(sizes == {16: 3, 64: 3, 128: 5, 512: 5}, f"eca_kernel_size gave {sizes}, expected "
            "{16: 3, 64: 3, 128: 5, 512: 5}: k = int((log2(C) + 1) / 2), made odd by adding 1")
    torch.manual_seed(0)
    eca = ECA(64).eval()
    count = sum(p.numel() for p in eca.parameters())
    _expect(count == 4, f"ECA(64) has {count} parameters, expected 4 (a 3-tap kernel and one bias)")
    calls = []
    eca.scale.activation_post_process.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(2, 64, 5, 7)
    with torch.no_grad():
        nn.init.uniform_(eca.conv.weight, -1.0, 1.0)
        out = eca(x)
        pooled = x.mean(dim=(2, 3)).unsqueeze(1)                                          # (N, 1, C)
        gate = torch.sigmoid(F.conv1d(pooled, eca.conv.weight[:, :, :, 0], eca.conv.bias, padding=1))
        expected = x * gate.reshape(2, 64, 1, 1)
    _expect_same(out, expected, shape=(2, 64, 5, 7), name="ECA(64) on (2, 64, 5, 7)",
                 formula="x * sigmoid(conv1d(avgpool(x)))",
                 hint="view the pooled (N, C, 1, 1) as (N, 1, C, 1) so the (k, 1) kernel slides across the channels, "
                      "apply self.gate, reshape the gate to (N, C, 1, 1)")
    _expect(bool(calls), "ECA multiplied without self.scale: write self.scale.mul(x, gate.expand_as(x)), not "
            "x * gate (an INT8 model needs the FloatFunctional for its multiplication)")
    return _pass("ECA: kernel sizes 3/3/5/5, gate across channels, through self.scale.mul, 4 parameters")


def check_efficient_unet() -> bool:
    """``EfficientUNet(classes=8, base_channels=8, depth=3)``: 17,172 parameters; (1, 3, 67, 131) -> (1, 8, 67, 131)."""
    from labkit.models.efficient_unet import EfficientUNet

    model = EfficientUNet(classes=8, base_channels=8, depth=3).eval()
    count = sum(p.numel() for p in model.parameters())
    _expect(count == 17_172, f"EfficientUNet-8 (depth 3) has {count:,} parameters, expected 17,172: keep the "
            "classes' __init__ as given")
    with torch.no_grad():
        out = model(torch.randn(1, 3, 67, 131))
    _expect(tuple(out.shape) == (1, 8, 67, 131), f"EfficientUNet on (1, 3, 67, 131) gave {tuple(out.shape)}, "
            "expected (1, 8, 67, 131)")
    return _pass("EfficientUNet-8: 17,172 parameters, odd (67, 131) -> (1, 8, 67, 131)")


# ----------------------------------------------------------------------------- Lab 03: pruning
def _tiny_prunable_net(seed: int = 0) -> nn.Module:
    """conv1 (108 w) -> BN -> conv2 (288 w, small, with bias) -> conv3 (576 w) -> pool -> fc (80 w).

    1,052 conv/linear weights; conv2's are three times smaller than conv3's, so a *global* ranking
    takes most zeros from conv2 while a per-layer one takes the same share of each.
    """
    from collections import OrderedDict

    torch.manual_seed(seed)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(4)), ("relu", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 8, 3, padding=1)), ("conv3", nn.Conv2d(8, 8, 3, padding=1, bias=False)),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(8, 10))]))
    with torch.no_grad():
        net.conv2.weight.mul_(1 / 3)
    return net


def _computed_weight(layer: nn.Module) -> torch.Tensor:
    return layer.weight_orig * layer.weight_mask if hasattr(layer, "weight_mask") else layer.weight


def check_prune_to() -> bool:
    """``prune_to`` on a 1,052-weight net: exactly ceil(target x 1,052) zeros, globally ranked, masks kept.

    Light layers ``{"conv1": 0.25, "fc": 0.5}`` lose exactly 27 and 40 weights; the other zeros are
    the smallest ``|w|`` of conv2 and conv3 *together*; BatchNorm and biases are neither counted nor
    pruned; a second call (0.5 -> 0.8) keeps every earlier zero and its masks.
    """
    import math

    from labkit import prune

    net = _tiny_prunable_net()
    light = {"conv1": 0.25, "fc": 0.5}
    layers = {name: getattr(net, name) for name in ("conv1", "conv2", "conv3", "fc")}
    total = sum(layer.weight.numel() for layer in layers.values())                  # 1,052
    original = {name: layer.weight.detach().clone() for name, layer in layers.items()}
    ranked_magnitudes = torch.cat([original["conv2"].abs().flatten(), original["conv3"].abs().flatten()])
    bn_weight, conv2_bias = net.bn1.weight.detach().clone(), net.conv2.bias.detach().clone()

    for target in (0.5, 0.8):
        returned = prune.prune_to(net, target, light_layers=light)
        zeros = {name: int((_computed_weight(layer) == 0).sum()) for name, layer in layers.items()}
        expected_zeros = math.ceil(target * total)
        _expect(sum(zeros.values()) == expected_zeros,
                f"prune_to(net, {target}) left {sum(zeros.values())} zeros in the conv/linear weights, expected "
                f"exactly ceil({target} x {total}) = {expected_zeros}: count only Conv2d/Linear .weight "
                "(no biases, no BatchNorm) and remove what is still missing, not the whole target again")
        _expect(abs(float(returned) - 100.0 * expected_zeros / total) < 1e-6,
                f"prune_to returned {returned}, expected the course sparsity in percent, "
                f"{100.0 * expected_zeros / total:.4f}")
        _expect(zeros["conv1"] == 27 and zeros["fc"] == 40,
                f"light layers: conv1 has {zeros['conv1']} zeros (expected 27 = ceil(0.25 x 108)) and fc "
                f"{zeros['fc']} (expected 40 = ceil(0.5 x 80)); prune them on their own, once, and keep them "
                "out of the global ranking")
        ranked_zeros = zeros["conv2"] + zeros["conv3"]
        threshold = ranked_magnitudes.kthvalue(ranked_zeros).values
        smallest_in_conv2 = int((original["conv2"].abs() <= threshold).sum())
        _expect(zeros["conv2"] == smallest_in_conv2,
                f"target {target}: conv2 has {zeros['conv2']} zeros, but {smallest_in_conv2} of the "
                f"{ranked_zeros} smallest |w| of conv2 + conv3 are in conv2: rank the layers together "
                "(prune.global_unstructured with L1Unstructured), not each layer to the target")
        for name, layer in layers.items():
            pruned_here = _computed_weight(layer) == 0
            if pruned_here.any() and not pruned_here.all():
                _expect(bool(original[name].abs()[pruned_here].max() <= original[name].abs()[~pruned_here].min()),
                        f"{name}: a pruned weight is larger than a kept one; remove the smallest |w| (L1)")
            _expect(hasattr(layer, "weight_mask") and hasattr(layer, "weight_orig"),
                    f"after prune_to, {name} has no weight_mask: keep the masks attached (torch.nn.utils.prune), "
                    "make_permanent removes them only before saving")
        if target == 0.5:
            first_zeros = {name: _computed_weight(layer) == 0 for name, layer in layers.items()}
    _expect(all(bool((_computed_weight(layers[name]) == 0)[mask].all()) for name, mask in first_zeros.items()),
            "the second call (0.8) brought back weights the first (0.5) had pruned: keep earlier masks")
    _expect(torch.equal(net.bn1.weight.detach(), bn_weight) and torch.equal(net.conv2.bias.detach(), conv2_bias)
            and not hasattr(net.bn1, "weight_mask"), "prune_to changed BatchNorm or a bias: prune only the "
            ".weight of Conv2d and Linear layers")
    return _pass(f"prune_to: 0.5 -> {math.ceil(0.5 * total)} and 0.8 -> {math.ceil(0.8 * total)} zeros of "
                 f"{total}, global L1 ranking, light layers 27/40, masks kept")


def check_iterative_prune() -> bool:
    """``iterative_prune`` on a tiny net and 64 random images: one row per round, masks kept, the floor undone.

    Two rounds (0.5, 0.75) with one fine-tuning epoch each must end at exactly ceil(0.75 x 1,052)
    zeros with the masks still attached (fine-tuning does not bring pruned weights back); with an
    impossible floor (101%) the first round is undone and the schedule stops.
    """
    import math

    from torch.utils.data import DataLoader, TensorDataset

    from labkit import prune

    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 3, 6, 6, generator=generator), torch.randint(0, 10, (64,), generator=generator))
    train_loader = DataLoader(data, batch_size=16, shuffle=True, generator=generator)
    valid_loader = DataLoader(data, batch_size=32)
    light = {"conv1": 0.25, "fc": 0.5}
    net = _tiny_prunable_net()
    total = sum(p.numel() for name, p in net.named_parameters() if name.endswith("weight") and p.dim() in (2, 4))

    rows = prune.iterative_prune(net, train_loader, valid_loader, targets=(0.5, 0.75), epochs_per_round=1,
                                 lr=0.05, accuracy_floor=0.0, light_layers=light, device="cpu",
                                 progress=False, log=None)
    _expect([row["round"] for row in rows] == [0, 1, 2],
            f"rounds {[row.get('round') for row in rows]}, expected [0, 1, 2]: row 0 is the model as given, "
            "then one row per target")
    for row, target in zip(rows[1:], (0.5, 0.75)):
        _expect(abs(row["sparsity"] - 100.0 * math.ceil(target * total) / total) < 1e-6 and row["kept"],
                f"round {row['round']}: sparsity {row['sparsity']:.3f}%, expected "
                f"{100.0 * math.ceil(target * total) / total:.3f}% (prune_to the target, then fine-tune)")
    layers = [net.conv1, net.conv2, net.conv3, net.fc]
    zeros = sum(int((_computed_weight(layer) == 0).sum()) for layer in layers)
    _expect(zeros == math.ceil(0.75 * total),
            f"after the schedule the net has {zeros} zeros, expected {math.ceil(0.75 * total)}: fine-tune with "
            "the masks attached (a prune.remove before fine-tuning lets the zeros move)")
    _expect(all(hasattr(layer, "weight_mask") for layer in layers),
            "iterative_prune removed the masks: keep them; the notebook calls save_pruned after the schedule")

    net = _tiny_prunable_net()
    start = {name: value.clone() for name, value in net.state_dict().items()}
    rows = prune.iterative_prune(net, train_loader, valid_loader, targets=(0.5, 0.75), epochs_per_round=1,
                                 lr=0.05, accuracy_floor=101.0, light_layers=light, device="cpu",
                                 progress=False, log=None)
    _expect(len(rows) == 2 and rows[1]["kept"] is False,
            f"with an impossible floor got {len(rows)} rows (kept: {[row.get('kept') for row in rows]}), expected 2 "
            "with round 1 not kept: stop at the first round below accuracy_floor")
    now = prune.make_permanent(net).state_dict()
    _expect(all(torch.allclose(now[name], value) for name, value in start.items() if name in now),
            "the round below the floor was not undone: go back to the last round that passed (_restore)")
    return _pass(f"iterative_prune: rounds 0/1/2 at 0 / {100.0 * math.ceil(0.5 * total) / total:.2f} / "
                 f"{100.0 * math.ceil(0.75 * total) / total:.2f}% with masks kept; a round below the floor undone")
