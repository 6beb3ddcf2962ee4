"""RunningScore (confusion-matrix OverallAcc, MeanAcc, mIoU, per-class IoU) against hand cases and
against the reference formulas the course's running score uses (ptsemseg-style, numpy)."""
import numpy as np
import pytest
import torch

from labkit.metrics import RunningScore


def reference_scores(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    """The course's formulas written out in numpy: a confusion matrix, then nan-means."""
    matrix = np.zeros((num_classes, num_classes))
    for t, p in zip(target.ravel(), prediction.ravel()):
        matrix[t, p] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        class_accuracy = np.diag(matrix) / matrix.sum(axis=1)
        iou = np.diag(matrix) / (matrix.sum(axis=1) + matrix.sum(axis=0) - np.diag(matrix))
    return {"OverallAcc": np.diag(matrix).sum() / matrix.sum(), "MeanAcc": np.nanmean(class_accuracy),
            "mIoU": np.nanmean(iou), "ClassIoU": iou}


def scores(prediction, target, num_classes, **kwargs) -> dict:
    score = RunningScore(num_classes, **kwargs)
    score.update(torch.as_tensor(prediction), torch.as_tensor(target))
    return score.compute()


def test_perfect_prediction_scores_one_everywhere():
    labels = torch.tensor([[0, 1, 2], [2, 1, 0]])
    result = scores(labels, labels, 3)
    assert result["OverallAcc"] == result["MeanAcc"] == result["mIoU"] == 1.0
    assert result["ClassIoU"] == [1.0, 1.0, 1.0]


def test_two_class_hand_case():
    # target [0, 0, 1, 1], prediction [0, 1, 1, 1] -> confusion [[1, 1], [0, 2]]
    result = scores([0, 1, 1, 1], [0, 0, 1, 1], 2)
    assert result["OverallAcc"] == pytest.approx(3 / 4)
    assert result["MeanAcc"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert result["ClassIoU"] == pytest.approx([1 / 2, 2 / 3])  # 1/(2+1-1), 2/(2+3-2)
    assert result["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_all_wrong_prediction_scores_zero():
    result = scores([1, 1, 0], [0, 0, 1], 2)
    assert result["OverallAcc"] == result["MeanAcc"] == result["mIoU"] == 0.0


def test_the_confusion_matrix_counts_target_rows_and_prediction_columns():
    score = RunningScore(3)
    score.update(torch.tensor([2, 2, 0]), torch.tensor([0, 1, 1]))
    assert score.matrix.tolist() == [[0, 0, 1], [1, 0, 1], [0, 0, 0]]


def test_updates_batch_by_batch_equal_one_update_of_everything():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.randint(0, 8, (6, 16, 32), generator=generator)
    targets = torch.randint(0, 8, (6, 16, 32), generator=generator)
    running = RunningScore(8)
    for prediction, target in zip(predictions.split(2), targets.split(2)):
        running.update(prediction, target)
    assert running.compute() == scores(predictions, targets, 8)


def test_random_maps_match_the_reference_formulas():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 8, (3, 20, 24))
    prediction = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 8, target.shape))
    result, expected = scores(prediction, target, 8), reference_scores(prediction, target, 8)
    for key in ("OverallAcc", "MeanAcc", "mIoU"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
    assert result["ClassIoU"] == pytest.approx(list(expected["ClassIoU"]), abs=1e-12)


def test_a_class_absent_from_target_and_prediction_is_left_out_of_the_miou():
    result = scores([0, 1, 1], [0, 1, 0], 3)
    assert np.isnan(result["ClassIoU"][2])
    assert result["mIoU"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_a_class_predicted_but_never_in_the_target_counts_as_iou_zero():
    result = scores([0, 2], [0, 1], 3)  # class 2: union 1, intersection 0
    assert result["ClassIoU"] == pytest.approx([1.0, 0.0, 0.0])
    assert result["mIoU"] == pytest.approx(1 / 3)


def test_mean_accuracy_leaves_out_classes_absent_from_the_targets():
    prediction, target = np.array([0, 2]), np.array([0, 1])  # no pixel of class 2 in the target
    assert scores(prediction, target, 3)["MeanAcc"] == pytest.approx(
        reference_scores(prediction, target, 3)["MeanAcc"])  # (1 + 0) / 2


def test_ignore_index_pixels_are_not_counted():
    result = scores([0, 1, 1, 0], [0, 1, 255, 255], 2, ignore_index=255)
    assert result["OverallAcc"] == 1.0 and result["mIoU"] == 1.0


def test_mismatched_shapes_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="argmax"):
        RunningScore(8).update(torch.zeros(2, 8, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
