"""Self-checks of Lab 03: ``prune_to`` (global magnitude ranking) and ``iterative_prune`` (rounds, floor).

``prune_to`` is compared with the masks the solution leaves on a tiny 1,052-weight net (recorded);
when the student's per-layer zero counts are those of a per-layer (local) ranking, the check says so.

Example:
    >>> check_prune_to()  # doctest: +ELLIPSIS
    PASS prune_to: ...
    True
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labkit.selfcheck.recorded import load_case
from labkit.selfcheck.report import expect, passed, translated_errors

PRUNED_LAYERS = ("conv1", "conv2", "conv3", "fc")
LIGHT_LAYERS = {"conv1": 0.25, "fc": 0.5}
TARGETS = (0.5, 0.8)
AMOUNT_ADVICE = {r"amount=\d+ should be smaller than the number of parameters": "it asked torch to prune more "
                 "weights than are left: subtract the zeros earlier calls already masked and remove only what is "
                 "still missing, not the whole target again"}


def tiny_prunable_net(seed: int = 0) -> nn.Module:
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


def computed_weight(layer: nn.Module) -> torch.Tensor:
    """The weight a (possibly pruned) layer computes with: ``weight_orig * weight_mask`` or ``weight``."""
    return layer.weight_orig * layer.weight_mask if hasattr(layer, "weight_mask") else layer.weight


def check_prune_to() -> bool:
    """``prune_to`` at 0.5 then 0.8 on the tiny net: the recorded masks, light layers apart, masks kept.

    BatchNorm and biases are neither counted nor pruned; a second call keeps every earlier zero.
    """
    from labkit.prune import magnitude

    case = load_case("prune_to")
    net = tiny_prunable_net()
    layers = {name: getattr(net, name) for name in PRUNED_LAYERS}
    total = sum(layer.weight.numel() for layer in layers.values())                  # 1,052
    bn_weight, conv2_bias = net.bn1.weight.detach().clone(), net.conv2.bias.detach().clone()
    for target in TARGETS:
        with translated_errors("prune_to", doing=f"at target {target}", advice=AMOUNT_ADVICE):
            returned = magnitude.prune_to(net, target, light_layers=LIGHT_LAYERS)
        masks = {name: (computed_weight(layer) == 0) for name, layer in layers.items()}
        zeros = {name: int(mask.sum()) for name, mask in masks.items()}
        expected = {name: case.expected[f"{name}@{target}"].bool() for name in PRUNED_LAYERS}
        expected_zeros = {name: int(mask.sum()) for name, mask in expected.items()}
        local = {name: int(count) for name, count in zip(PRUNED_LAYERS, case.mistakes["local"][f"zeros@{target}"])}
        expect(zeros != local or local == expected_zeros, "prune_to",
               f"target {target}: each layer lost the same share ({zeros}): that is a per-layer (local) ranking; "
               "rank conv2 and conv3 together (prune.global_unstructured with L1Unstructured)")
        expect(sum(zeros.values()) == sum(expected_zeros.values()), "prune_to",
               f"prune_to(net, {target}) left {sum(zeros.values())} zeros in the {total} conv/linear weights, "
               f"expected {sum(expected_zeros.values())}: count only Conv2d/Linear .weight (no biases, no "
               "BatchNorm), round the number up, and remove only what is still missing, not the whole target again")
        expect(abs(float(returned) - float(case.expected[f"sparsity@{target}"])) < 1e-6, "prune_to",
               f"returned {returned}, expected the course sparsity in percent of the pruned model")
        expect(all(zeros[name] == expected_zeros[name] for name in LIGHT_LAYERS), "prune_to",
               f"light layers: conv1 has {zeros['conv1']} zeros and fc {zeros['fc']}, expected "
               f"{expected_zeros['conv1']} and {expected_zeros['fc']}: prune each on its own to its fraction, once, "
               "and keep them out of the global ranking")
        expect(zeros == expected_zeros, "prune_to",
               f"target {target}: zeros per layer {zeros}, expected {expected_zeros}: rank the layers that are not "
               "light together by |w| (prune.global_unstructured with L1Unstructured)")
        expect(all(torch.equal(masks[name], expected[name]) for name in PRUNED_LAYERS), "prune_to",
               f"target {target}: the right number of zeros per layer, but not the smallest |w|: use L1 magnitude")
        for name, layer in layers.items():
            expect(hasattr(layer, "weight_mask") and hasattr(layer, "weight_orig"), "prune_to",
                   f"after prune_to, {name} has no weight_mask: keep the masks attached (torch.nn.utils.prune); "
                   "make_permanent removes them only before saving")
    expect(torch.equal(net.bn1.weight.detach(), bn_weight) and torch.equal(net.conv2.bias.detach(), conv2_bias)
           and not hasattr(net.bn1, "weight_mask"), "prune_to",
           "prune_to changed BatchNorm or a bias: prune only the .weight of Conv2d and Linear layers")
    return passed(f"prune_to: targets {TARGETS} on {total} weights give the recorded masks (global L1 ranking, "
                  "light layers apart, earlier zeros kept)")


def check_iterative_prune() -> bool:
    """``iterative_prune`` on a tiny net and 64 random images: one row per round, masks kept, the floor undone.

    Two rounds (0.5, 0.75) with one fine-tuning epoch each must end at exactly ceil(0.75 x 1,052)
    zeros with the masks still attached (fine-tuning does not bring pruned weights back); with an
    impossible floor (101%) the first round is undone and the schedule stops.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from labkit.prune import magnitude

    def require(condition: bool, message: str) -> None:
        expect(condition, "iterative_prune", message)

    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 3, 6, 6, generator=generator), torch.randint(0, 10, (64,), generator=generator))
    train_loader = DataLoader(data, batch_size=16, shuffle=True, generator=generator)
    valid_loader = DataLoader(data, batch_size=32)
    light = LIGHT_LAYERS
    net = tiny_prunable_net()
    total = sum(p.numel() for name, p in net.named_parameters() if name.endswith("weight") and p.dim() in (2, 4))

    with translated_errors("iterative_prune", doing="on the tiny net"):
        rows = magnitude.iterative_prune(net, train_loader, valid_loader, targets=(0.5, 0.75), epochs_per_round=1,
                                         lr=0.05, accuracy_floor=0.0, light_layers=light, device="cpu",
                                         progress=False, log=None)
    require([row["round"] for row in rows] == [0, 1, 2],
            f"rounds {[row.get('round') for row in rows]}, expected [0, 1, 2]: row 0 is the model as given, "
            "then one row per target")
    for row, target in zip(rows[1:], (0.5, 0.75)):
        require(abs(row["sparsity"] - 100.0 * math.ceil(target * total) / total) < 1e-6 and row["kept"],
                f"round {row['round']}: sparsity {row['sparsity']:.3f}%, expected "
                f"{100.0 * math.ceil(target * total) / total:.3f}% (prune_to the target, then fine-tune)")
    layers = [net.conv1, net.conv2, net.conv3, net.fc]
    zeros = sum(int((computed_weight(layer) == 0).sum()) for layer in layers)
    require(zeros == math.ceil(0.75 * total),
            f"after the schedule the net has {zeros} zeros, expected {math.ceil(0.75 * total)}: fine-tune with "
            "the masks attached (a prune.remove before fine-tuning lets the zeros move)")
    require(all(hasattr(layer, "weight_mask") for layer in layers),
            "iterative_prune removed the masks: keep them; the notebook calls save_pruned after the schedule")

    net = tiny_prunable_net()
    start = {name: value.clone() for name, value in net.state_dict().items()}
    with translated_errors("iterative_prune", doing="on the tiny net"):
        rows = magnitude.iterative_prune(net, train_loader, valid_loader, targets=(0.5, 0.75), epochs_per_round=1,
                                         lr=0.05, accuracy_floor=101.0, light_layers=light, device="cpu",
                                         progress=False, log=None)
    require(len(rows) == 2 and rows[1]["kept"] is False,
            f"with an impossible floor got {len(rows)} rows (kept: {[row.get('kept') for row in rows]}), expected 2 "
            "with round 1 not kept: stop at the first round below accuracy_floor")
    now = magnitude.make_permanent(net).state_dict()
    require(all(torch.allclose(now[name], value) for name, value in start.items() if name in now),
            "the round below the floor was not undone: go back to the last round that passed (_restore)")
    return passed(f"iterative_prune: rounds 0/1/2 at 0 / {100.0 * math.ceil(0.5 * total) / total:.2f} / "
                 f"{100.0 * math.ceil(0.75 * total) / total:.2f}% with masks kept; a round below the floor undone")
