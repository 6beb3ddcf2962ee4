import pytest
import torch

from labkit.metrics import accuracy, binarize, dice_score


def test_dice_matches_hand_computed_overlap():
    prediction = torch.tensor([[[1, 1, 0], [0, 1, 0]]])   # |P| = 3
    target = torch.tensor([[[1, 0, 0], [0, 1, 1]]])       # |G| = 3, |P∩G| = 2
    assert dice_score(prediction, target).item() == pytest.approx(2 * 2 / (3 + 3))


def test_dice_is_averaged_per_image_not_pooled():
    prediction = torch.tensor([[[1, 1], [1, 1]], [[1, 0], [0, 0]]])
    target = torch.tensor([[[1, 1], [1, 1]], [[0, 0], [0, 1]]])
    per_image = dice_score(prediction, target, reduction="none")
    assert per_image.tolist() == pytest.approx([1.0, 0.0])
    assert dice_score(prediction, target).item() == pytest.approx(0.5)  # pooled would give 8/10


def test_dice_of_two_empty_masks_is_the_documented_empty_score():
    empty = torch.zeros(1, 1, 4, 4)
    assert dice_score(empty, empty).item() == 1.0
    assert dice_score(empty, empty, empty_score=0.0).item() == 0.0


def test_dice_of_empty_prediction_against_a_pet_is_zero():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :2] = 1
    assert dice_score(torch.zeros_like(target), target).item() == 0.0


def test_dice_rejects_mismatched_shapes_with_a_hint():
    with pytest.raises(ValueError, match="same"):
        dice_score(torch.zeros(2, 4, 4), torch.zeros(2, 1, 4, 4))


def test_binarize_treats_positive_logits_as_foreground():
    assert binarize(torch.tensor([-1.0, 0.0, 0.5])).tolist() == [0, 0, 1]


def test_accuracy_in_percent():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == pytest.approx(75.0)
