"""The bootstrap interval beside a small split's test number (labkit.confidence)."""
import math

import pytest
import torch

from labkit.confidence import bootstrap_interval, describe_interval, miou_of_confusion, resample_counts


def test_items_that_all_agree_give_an_interval_of_one_point():
    assert bootstrap_interval(torch.full((30,), 0.8)) == pytest.approx((0.8, 0.8))


def test_an_accuracy_interval_matches_the_normal_approximation_of_a_proportion():
    # 400 items, 200 correct: p = 0.5, standard error sqrt(p (1 - p) / n) = 0.025, 95 %: +-1.96 * 0.025 = 0.049
    correct = torch.tensor([1.0, 0.0]).repeat(200)
    low, high = bootstrap_interval(correct, resamples=4000)
    half_width = 1.96 * math.sqrt(0.5 * 0.5 / 400)
    assert low == pytest.approx(0.5 - half_width, abs=0.006) and high == pytest.approx(0.5 + half_width, abs=0.006)


def test_a_wider_level_gives_a_wider_interval_and_a_seed_gives_the_same_interval():
    dice = torch.linspace(0.5, 1.0, 50)
    low90, high90 = bootstrap_interval(dice, level=0.90)
    low99, high99 = bootstrap_interval(dice, level=0.99)
    assert low99 < low90 < dice.mean().item() < high90 < high99
    assert bootstrap_interval(dice, seed=3) == bootstrap_interval(dice, seed=3)


def test_each_resample_draws_n_items():
    counts = resample_counts(7, resamples=100, seed=1)
    assert counts.shape == (100, 7) and torch.all(counts.sum(dim=1) == 7) and torch.all(counts >= 0)
    assert counts.std(dim=0).min() > 0  # items are drawn more or less often, not a fixed pattern


def test_miou_of_confusion_is_the_mean_iou_of_the_classes_present():
    # target rows, prediction columns; class 0: TP 3, FN 1, FP 0 -> 3/4; class 1: TP 2, FN 0, FP 1 -> 2/3;
    # class 2 absent from both -> left out
    matrix = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    assert miou_of_confusion(matrix[None]).item() == pytest.approx((3 / 4 + 2 / 3) / 2)


def test_an_miou_interval_resamples_whole_images():
    # two kinds of image: one predicted perfectly (IoU 1 for both classes), one with half its pixels wrong
    perfect = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    half_wrong = torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    same = torch.stack([perfect] * 20)
    assert bootstrap_interval(same, statistic=miou_of_confusion) == pytest.approx((1.0, 1.0))
    mixed = torch.stack([perfect, half_wrong] * 20)
    low, high = bootstrap_interval(mixed, statistic=miou_of_confusion)
    # summed: [[120, 40], [40, 120]]: each class TP 120 over a union of 200, so mIoU 0.6
    overall = miou_of_confusion(mixed.sum(dim=0, keepdim=True)).item()
    assert overall == pytest.approx(12 / 20)
    assert low < overall < high and high - low < 0.2


def test_describe_interval_names_the_level_and_the_number_of_items():
    assert describe_interval(0.8557, (0.83, 0.879), n=50) == "0.8557 (95% CI 0.8300-0.8790, 50 items)"


@pytest.mark.parametrize("per_item, options, message", [
    (torch.zeros(0), {}, "empty"),
    (torch.ones(5), {"level": 95}, "between 0 and 1"),
    (torch.ones(5, 2, 2), {}, "one number per resample"),
])
def test_bad_input_is_refused_with_the_reason(per_item, options, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_interval(per_item, **options)


def test_the_evaluations_give_the_per_image_values_an_interval_resamples():
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from labkit.evaluate import evaluate_classification, evaluate_multiclass_segmentation
    # identity "classifier" on one-hot inputs: images 0 and 2 are right, 1 and 3 wrong (by construction)
    inputs = torch.eye(3)[[0, 1, 2, 0]]
    labels = torch.tensor([0, 2, 2, 1])
    result = evaluate_classification(nn.Identity(), DataLoader(TensorDataset(inputs, labels), batch_size=3),
                                     device="cpu", per_image=True)
    assert result["per_image_correct"].tolist() == [1.0, 0.0, 1.0, 0.0] and result["accuracy"] == 50.0
    # identity "segmenter": logits are one-hot of a prediction map; image 0 all right, image 1 one pixel wrong
    predicted = torch.tensor([[[0, 1], [1, 1]], [[0, 0], [1, 0]]])
    targets = torch.tensor([[[0, 1], [1, 1]], [[0, 0], [1, 1]]])
    logits = nn.functional.one_hot(predicted, 2).permute(0, 3, 1, 2).float()
    scores = evaluate_multiclass_segmentation(nn.Identity(), DataLoader(TensorDataset(logits, targets), batch_size=2),
                                              num_classes=2, device="cpu", per_image=True)
    assert scores["per_image_confusion"].tolist() == [[[1, 0], [0, 3]], [[2, 0], [1, 1]]]
    # summed [[3, 0], [1, 4]]: IoU 3/4 and 4/5
    assert miou_of_confusion(scores["per_image_confusion"].sum(0, keepdim=True).double()).item() \
        == pytest.approx(scores["mIoU"]) == pytest.approx((3 / 4 + 4 / 5) / 2)
