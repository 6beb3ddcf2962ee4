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
    assert capsys.readouterr().out.startswith("PASS")


def test_dice_that_returns_one_fails_the_selfcheck(monkeypatch):
    import labkit.metrics
    monkeypatch.setattr(labkit.metrics, "dice_score", lambda p, t, reduction="mean": torch.ones(len(p)))
    with pytest.raises(AssertionError, match="FAIL dice_score gave"):
        selfcheck.check_dice()


def test_double_conv_with_biased_convs_fails_on_its_parameter_count(monkeypatch):
    import labkit.models.unet_parts as parts

    class Biased(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())
    monkeypatch.setattr(parts, "DoubleConv", Biased)
    with pytest.raises(AssertionError, match="38,848"):
        selfcheck.check_double_conv()


def test_qparams_that_do_not_include_zero_fail(monkeypatch):
    import labkit.quant.manual as manual

    def no_zero(min_val, max_val, *, quant_min=0, quant_max=255):
        scale = (max_val - min_val) / (quant_max - quant_min)
        return scale, (quant_min - torch.round(min_val / scale)).to(torch.int32)
    monkeypatch.setattr(manual, "affine_qparams", no_zero)
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
    with pytest.raises(AssertionError, match="input AFTER bn2"):
        selfcheck.check_basic_block()
