"""Multi-class segmentation losses: Dice, Lovasz-Softmax and their weighted sum, on hand cases."""
import math

import pytest
import torch
import torch.nn.functional as F

from labkit.losses import SegmentationLoss, lovasz_grad, lovasz_softmax, multiclass_dice_loss
from labkit.metrics import RunningScore
from tests.helpers import LEARNING_SEED


def logits_from_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) probabilities -> logits whose softmax gives them back exactly."""
    return probabilities.log()


def test_dice_loss_matches_the_formula_on_a_two_pixel_hand_case():
    # pixel a: target 0, p = (0.8, 0.2); pixel b: target 1, p = (0.4, 0.6); eps = 1
    probabilities = torch.tensor([[0.8, 0.4], [0.2, 0.6]]).reshape(1, 2, 1, 2)
    targets = torch.tensor([[[0, 1]]])
    dice_background = (2 * 0.8 + 1) / (0.8 + 0.4 + 1 + 1)
    dice_foreground = (2 * 0.6 + 1) / (0.2 + 0.6 + 1 + 1)
    expected = 1 - (dice_background + dice_foreground) / 2
    loss = multiclass_dice_loss(logits_from_probabilities(probabilities), targets)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_dice_loss_is_near_zero_when_right_and_near_one_when_wrong():
    targets = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    right = 50.0 * F.one_hot(targets, 4).permute(0, 3, 1, 2).float()
    wrong = 50.0 * F.one_hot((targets + 1) % 4, 4).permute(0, 3, 1, 2).float()
    assert multiclass_dice_loss(right, targets, eps=1e-6).item() < 1e-4
    assert multiclass_dice_loss(wrong, targets, eps=1e-6).item() > 0.999


def test_lovasz_grad_of_sorted_targets_is_the_jaccard_increments():
    # targets sorted by error: [1, 0, 1]; Jaccard loss after counting the first k pixels as wrong:
    # k=1: 1 - 1/2, k=2: 1 - 1/3, k=3: 1 - 0/3 -> increments 1/2, 1/6, 1/3
    gradient = lovasz_grad(torch.tensor([1.0, 0.0, 1.0]))
    assert gradient.tolist() == pytest.approx([1 / 2, 1 / 6, 1 / 3])


def test_lovasz_softmax_of_hard_predictions_is_one_minus_iou_of_present_classes():
    generator = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 5, (2, 6, 7), generator=generator)  # class 5 never in the targets
    targets[targets == 3] = 0  # nor class 3
    predictions = torch.randint(0, 6, (2, 6, 7), generator=generator)
    logits = 100.0 * F.one_hot(predictions, 6).permute(0, 3, 1, 2).float()

    score = RunningScore(6)
    score.update(predictions, targets)
    iou = torch.tensor(score.compute()["ClassIoU"])
    present = targets.unique()
    expected = (1 - iou[present]).mean().item()
    assert lovasz_softmax(logits, targets).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.learning
def test_lovasz_softmax_steps_raise_the_iou_of_free_logits(learned):
    generator = torch.Generator().manual_seed(2 + LEARNING_SEED)
    targets = torch.randint(0, 3, (1, 8, 8), generator=generator)
    logits = torch.randn(1, 3, 8, 8, generator=generator, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=50.0)
    losses = []
    for _ in range(20):
        loss = lovasz_softmax(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    learned("last_over_first_loss", losses[-1] / losses[0], at_most=0.5)
    learned("pixel_accuracy", (logits.argmax(1) == targets).float().mean().item(), at_least=0.9)


def test_segmentation_loss_is_the_weighted_sum_of_its_terms():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 8, 5, 6, generator=generator)
    targets = torch.randint(0, 8, (2, 5, 6), generator=generator)
    ce = F.cross_entropy(logits, targets)
    dice = multiclass_dice_loss(logits, targets)
    lovasz = lovasz_softmax(logits, targets)
    combined = SegmentationLoss(ce_weight=1.0, dice_weight=2.0, lovasz_weight=0.5)(logits, targets)
    assert combined.item() == pytest.approx((ce + 2 * dice + 0.5 * lovasz).item(), rel=1e-6)
    assert SegmentationLoss(1, 0, 0)(logits, targets).item() == pytest.approx(ce.item(), rel=1e-6)


def test_ignored_pixels_do_not_change_any_term():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 4, 4, 4, generator=generator)
    targets = torch.randint(0, 4, (1, 4, 4), generator=generator)
    targets[0, 0] = 255
    changed = logits.clone()
    changed[0, :, 0] = torch.randn(4, 4, generator=generator) * 10
    loss = SegmentationLoss(ignore_index=255)
    assert loss(changed, targets).item() == pytest.approx(loss(logits, targets).item(), rel=1e-6)
    assert math.isfinite(loss(logits, torch.full_like(targets, 255)).item())


def test_gradients_flow_and_are_finite_under_every_term():
    logits = torch.randn(2, 8, 8, 16, requires_grad=True)
    SegmentationLoss()(logits, torch.randint(0, 8, (2, 8, 16))).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_one_hot_targets_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="class indices"):
        multiclass_dice_loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.long))
