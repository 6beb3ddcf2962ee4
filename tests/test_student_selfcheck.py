"""labkit.selfcheck: passes on the reference code, and fails loudly on a wrong or missing student TODO."""
import pytest
import torch
from torch import nn

from labkit import selfcheck


@pytest.mark.parametrize("check", [selfcheck.check_double_conv, selfcheck.check_up, selfcheck.check_unet,
                                   selfcheck.check_dice, selfcheck.check_affine_qparams,
                                   selfcheck.check_fuse_conv_bn, selfcheck.check_basic_block,
                                   selfcheck.check_decoder_block])
def test_each_selfcheck_passes_on_the_reference_solution(check, capsys):
    assert check() is True
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS")


def test_dice_that_returns_one_fails_the_selfcheck(monkeypatch):
    import labkit.metrics
    monkeypatch.setattr(labkit.metrics, "dice_score", lambda p, t, reduction="mean": torch.ones(len(p)))
    with pytest.raises(AssertionError, match="FAIL dice_score: reduction='none' differs"):
        selfcheck.check_dice()


def test_double_conv_in_another_layout_fails_naming_the_first_key(monkeypatch):
    import labkit.models.unet_parts as parts

    class Biased(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())
    monkeypatch.setattr(parts, "DoubleConv", Biased)
    with pytest.raises(AssertionError, match="missing double_conv.0.weight"):
        selfcheck.check_double_conv()


def test_qparams_that_do_not_include_zero_fail(monkeypatch):
    import labkit.quant.affine as affine

    def no_zero(min_val, max_val, *, quant_min=0, quant_max=255):
        scale = (max_val - min_val) / (quant_max - quant_min)
        return scale, (quant_min - torch.round(min_val / scale)).to(torch.int32)
    monkeypatch.setattr(affine, "affine_qparams", no_zero)
    with pytest.raises(AssertionError, match="include 0"):
        selfcheck.check_affine_qparams()


def test_a_todo_still_there_raises_not_implemented(monkeypatch):
    import labkit.quant.manual as manual

    def stub(conv, bn):
        raise NotImplementedError("TODO: implement fuse_conv_bn()")
    monkeypatch.setattr(manual, "fuse_conv_bn", stub)
    with pytest.raises(NotImplementedError, match="fuse_conv_bn"):
        selfcheck.check_fuse_conv_bn()


def test_basic_block_without_the_residual_fails(monkeypatch):
    import labkit.models.resnet34_unet as r34
    monkeypatch.setattr(r34.BasicBlock, "forward", lambda self, x: self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))))
    with pytest.raises(AssertionError, match=r"add the \(downsampled\) input"):
        selfcheck.check_basic_block()


@pytest.mark.parametrize("check", [selfcheck.check_separable_conv, selfcheck.check_eca,
                                   selfcheck.check_efficient_unet])
def test_each_efficient_unet_selfcheck_passes_on_the_reference_solution(check, capsys):
    assert check() is True
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS")


def test_separable_conv_without_its_depthwise_step_fails(monkeypatch):
    import labkit.models.efficient_unet as eff
    monkeypatch.setattr(eff.DepthwiseSeparableConv, "forward", lambda self, x: self.pointwise(x))
    with pytest.raises(AssertionError, match=r"expected \(2, 16, 5, 6\)"):
        selfcheck.check_separable_conv()


def test_separable_conv_that_skips_the_pointwise_bn_relu_fails(monkeypatch):
    import labkit.models.efficient_unet as eff
    monkeypatch.setattr(eff.DepthwiseSeparableConv, "forward",
                        lambda self, x: self.pointwise[0](self.depthwise(x)))
    with pytest.raises(AssertionError, match="the depthwise ConvBNReLU first"):
        selfcheck.check_separable_conv()


def test_eca_kernel_size_left_even_fails(monkeypatch):
    import math

    import labkit.models.efficient_unet as eff
    monkeypatch.setattr(eff, "eca_kernel_size", lambda channels, gamma=2, b=1: int((math.log2(channels) + b) / gamma))
    with pytest.raises(AssertionError, match=r"conv.weight has shape \(1, 1, 2, 1\)"):
        selfcheck.check_eca()


def test_eca_that_slides_its_kernel_along_the_wrong_axis_fails(monkeypatch):
    import labkit.models.efficient_unet as eff

    def wrong_axis(self, x):  # pooled viewed as (N, 1, 1, C): the (k, 1) kernel never crosses channels
        batch, channels = x.shape[:2]
        gate = self.gate(self.conv(self.pool(x).reshape(batch, 1, 1, channels))).reshape(batch, channels, 1, 1)
        return self.scale.mul(x, gate.expand_as(x))
    monkeypatch.setattr(eff.ECA, "forward", wrong_axis)
    with pytest.raises(AssertionError, match=r"\(N, 1, C, 1\)"):
        selfcheck.check_eca()


def test_eca_that_multiplies_without_the_float_functional_fails(monkeypatch):
    import labkit.models.efficient_unet as eff

    def plain_mul(self, x):
        batch, channels = x.shape[:2]
        gate = self.gate(self.conv(self.pool(x).reshape(batch, 1, channels, 1))).reshape(batch, channels, 1, 1)
        return x * gate
    monkeypatch.setattr(eff.ECA, "forward", plain_mul)
    with pytest.raises(AssertionError, match="self.scale.mul"):
        selfcheck.check_eca()


def test_eca_todo_still_there_raises_not_implemented(monkeypatch):
    import labkit.models.efficient_unet as eff

    def stub(self, x):
        raise NotImplementedError("TODO: implement ECA.forward()")
    monkeypatch.setattr(eff.ECA, "forward", stub)
    with pytest.raises(NotImplementedError, match="ECA.forward"):
        selfcheck.check_eca()


# ----------------------------------------------------------------------------- Lab 03: prune_to, iterative_prune
def test_pruning_selfchecks_pass_on_the_reference_solution(capsys):
    assert selfcheck.check_prune_to() is True
    assert selfcheck.check_iterative_prune() is True
    assert capsys.readouterr().out.count("PASS") == 2


def test_prune_to_that_counts_biases_and_batchnorm_fails_on_the_exact_count(monkeypatch):
    import math

    from labkit.prune import magnitude
    from torch.nn.utils import prune as torch_prune

    def counts_every_parameter(model, target, *, light_layers=magnitude.DEFAULT_LIGHT_LAYERS):
        ranked = [layer for name, layer in magnitude.prunable_layers(model).items()]
        total = sum(p.numel() for p in model.parameters())          # the mistake: biases and BN too
        already = sum(int((magnitude.effective_weight(layer) == 0).sum()) for layer in ranked)
        torch_prune.global_unstructured([(layer, "weight") for layer in ranked],
                                        pruning_method=torch_prune.L1Unstructured,
                                        amount=math.ceil(target * total) - already)
        return magnitude.course_sparsity(model)
    monkeypatch.setattr(magnitude, "prune_to", counts_every_parameter)
    with pytest.raises(AssertionError, match="count only Conv2d/Linear .weight"):
        selfcheck.check_prune_to()


def test_prune_to_that_prunes_each_layer_on_its_own_fails_on_the_global_ranking(monkeypatch):
    import math

    from labkit.prune import magnitude
    from torch.nn.utils import prune as torch_prune

    def per_layer(model, target, *, light_layers=magnitude.DEFAULT_LIGHT_LAYERS):
        layers = magnitude.prunable_layers(model)
        for name, fraction in light_layers.items():
            torch_prune.l1_unstructured(layers[name], "weight", amount=math.ceil(fraction * layers[name].weight.numel()))
        total = sum(layer.weight.numel() for layer in layers.values())
        ranked = [layer for name, layer in layers.items() if name not in light_layers]
        missing = math.ceil(target * total) - sum(int((magnitude.effective_weight(l) == 0).sum()) for l in layers.values())
        sizes = [layer.weight.numel() for layer in ranked]
        shares = [missing * size // sum(sizes) for size in sizes]
        shares[-1] += missing - sum(shares)                        # the right total, the wrong ranking
        for layer, share in zip(ranked, shares):
            torch_prune.l1_unstructured(layer, "weight", amount=share)
        return magnitude.course_sparsity(model)
    monkeypatch.setattr(magnitude, "prune_to", per_layer)
    with pytest.raises(AssertionError, match="rank the layers that are not light together"):
        selfcheck.check_prune_to()


def test_prune_to_that_removes_its_masks_fails(monkeypatch):
    from labkit.prune import magnitude
    solution = magnitude.prune_to

    def removes_masks(model, target, **kwargs):
        sparsity = solution(model, target, **kwargs)
        magnitude.make_permanent(model)                             # the mistake: masks gone mid-schedule
        return sparsity
    monkeypatch.setattr(magnitude, "prune_to", removes_masks)
    with pytest.raises(AssertionError, match="no weight_mask"):
        selfcheck.check_prune_to()


def test_iterative_prune_that_keeps_a_round_below_the_floor_fails(monkeypatch):
    from labkit.prune import magnitude
    monkeypatch.setattr(magnitude, "_restore", lambda model, snapshot: None)   # never goes back
    with pytest.raises(AssertionError, match="not undone"):
        selfcheck.check_iterative_prune()


def test_iterative_prune_that_fine_tunes_without_masks_fails(monkeypatch):
    from labkit.prune import magnitude
    solution = magnitude.fine_tune

    def unmasked_fine_tune(model, train_loader, **kwargs):
        magnitude.make_permanent(model)                             # the mistake: zeros free to move
        return solution(model, train_loader, **kwargs)
    monkeypatch.setattr(magnitude, "fine_tune", unmasked_fine_tune)
    with pytest.raises(AssertionError, match="FAIL"):
        selfcheck.check_iterative_prune()
