"""Binary segmentation losses (one logit channel): the Lovasz hinge and BCEDiceLoss, on hand cases."""
import torch
import torch.nn.functional as F

from labkit.losses import BCEDiceLoss, lovasz_hinge, soft_dice_loss

TARGETS = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]], [[[0.0, 1.0], [0.0, 0.0]]]])  # (N=2, 1, 2, 2)


def test_lovasz_hinge_is_zero_when_every_pixel_is_right_by_a_margin_of_one():
    logits = 2.0 * TARGETS - 1.0  # +1 on the pet, -1 elsewhere: every hinge error is 0
    assert lovasz_hinge(logits, TARGETS).item() == 0.0


def test_lovasz_hinge_of_zero_logits_is_one_the_hinge_bound_of_one_minus_iou():
    # all errors equal 1, and the Lovasz extension of the Jaccard loss sums the increments to 1
    assert torch.isclose(lovasz_hinge(torch.zeros_like(TARGETS), TARGETS), torch.tensor(1.0))


def test_lovasz_hinge_of_one_wrong_pixel_is_its_error_times_the_jaccard_step():
    # image 0, margin 1 everywhere except a background pixel at logit +1 (error 2): IoU loss 1 - 2/3
    logits = 2.0 * TARGETS[:1] - 1.0
    logits[0, 0, 1, 0] = 1.0
    assert torch.isclose(lovasz_hinge(logits, TARGETS[:1]), torch.tensor(2.0 * (1.0 - 2.0 / 3.0)))


def test_bce_dice_loss_adds_the_lovasz_term_only_when_weighted():
    logits = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    plain = F.binary_cross_entropy_with_logits(logits, TARGETS) + soft_dice_loss(logits, TARGETS)
    assert torch.isclose(BCEDiceLoss()(logits, TARGETS), plain)
    assert torch.isclose(BCEDiceLoss(lovasz_weight=0.5)(logits, TARGETS), plain + 0.5 * lovasz_hinge(logits, TARGETS))
