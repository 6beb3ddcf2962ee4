"""labkit.grading.reference: the checks' own metrics agree with the solution's, and a student's wrong
metric in the student edition cannot change a check's verdict."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from labkit import metrics
from labkit.grading import reference
from labkit.io import save_state_dict
from labkit.models.resnet20 import resnet20
from labkit.models.unet import UNet
from labkit.paths import REPO_ROOT
from labkit.prune import magnitude
from tests.helpers import CAT, constant_model


# ----------------------------------------------------------------------------- same numbers as the solution
def as_logits(masks: torch.Tensor) -> torch.Tensor:
    """Masks {0, 1} as a model's logits: +1 foreground, -1 background."""
    return masks.float() * 2 - 1


def test_reference_dice_is_the_hand_computed_dice_of_small_masks_with_empty_ones():
    # 2 |P & G| / (|P| + |G|), worked by hand; both empty -> 1.0, one side empty -> 0.0.
    cases = [  # (prediction, target, Dice)
        ([[1, 1], [0, 0]], [[1, 0], [0, 0]], 2 * 1 / (2 + 1)),
        ([[0, 0], [0, 0]], [[0, 0], [0, 0]], 1.0),
        ([[0, 0], [0, 0]], [[1, 1], [1, 0]], 0.0),
        ([[1, 0], [0, 1]], [[0, 0], [0, 0]], 0.0),
        ([[1, 1], [1, 1]], [[1, 1], [1, 1]], 1.0),
        ([[1, 1], [1, 1]], [[1, 0], [0, 0]], 2 * 1 / (4 + 1)),
        ([[1, 1], [1, 0]], [[0, 1], [1, 1]], 2 * 2 / (3 + 3)),
    ]
    prediction = torch.tensor([case[0] for case in cases])[:, None]
    target = torch.tensor([case[1] for case in cases], dtype=torch.float32)[:, None]
    confusion = reference.binary_confusion(as_logits(prediction), target)
    assert confusion.sum(dim=(1, 2)).tolist() == [4] * len(cases)               # every pixel counted once
    assert confusion[0].tolist() == [[2, 1], [0, 1]]                           # [target][predicted]
    dice = reference.dice_from_confusion(confusion)
    assert dice.dtype == torch.float64
    assert dice.tolist() == [case[2] for case in cases]
    assert metrics.dice_score(prediction, target, reduction="none").tolist() == pytest.approx(dice.tolist(), abs=1e-7)


def test_reference_dice_counts_a_zero_logit_as_background_and_any_nonzero_mask_value_as_foreground():
    logits = torch.tensor([[[[0.0, 0.1], [-0.1, 5.0]]]])
    masks = torch.tensor([[[[255.0, 1.0], [0.0, 0.0]]]])                       # 0/255 masks still count
    assert reference.binary_confusion(logits, masks)[0].tolist() == [[1, 1], [1, 1]]  # TP 1, FP 1, FN 1
    assert reference.dice_from_confusion(reference.binary_confusion(logits, masks)).tolist() == [0.5]
    with pytest.raises(ValueError, match="ONE logit channel"):
        reference.binary_confusion(torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 2))


def test_reference_dice_equals_the_solution_dice_on_random_and_empty_masks():
    generator = torch.Generator().manual_seed(0)
    pred = (torch.rand(16, 1, 9, 7, generator=generator) > 0.6).to(torch.uint8)
    true = (torch.rand(16, 1, 9, 7, generator=generator) > 0.4).float()
    pred[3], true[3] = 0, 0            # both empty -> 1.0
    pred[4], true[5] = 0, 0            # one side empty -> 0.0
    expected = metrics.dice_score(pred, true, reduction="none")
    ours = reference.dice_from_confusion(reference.binary_confusion(as_logits(pred), true))
    assert torch.allclose(ours, expected.double(), atol=1e-7)
    assert ours[3] == 1.0 and ours[4] == 0.0 and ours[5] == 0.0


def test_reference_segmentation_evaluation_equals_labkit_evaluate():
    from labkit.evaluate import evaluate_segmentation
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2)
    images = torch.randn(6, 3, 32, 32)
    masks = (torch.rand(6, 1, 32, 32) > 0.5).float()
    loader = DataLoader(torch.utils.data.TensorDataset(images, masks), batch_size=4)
    ours = reference.evaluate_segmentation(model, loader, device="cpu")
    theirs = evaluate_segmentation(model, loader, device="cpu")
    assert ours["dice"] == pytest.approx(theirs["dice"], abs=1e-6)
    assert torch.allclose(ours["per_image_dice"].float(), theirs["per_image_dice"].float(), atol=1e-6)


def test_reference_confusion_scores_equal_running_score_with_absent_classes_and_ignored_pixels():
    generator = torch.Generator().manual_seed(1)
    target = torch.randint(0, 6, (3, 8, 8), generator=generator)   # class 6 never appears, 7 is absent too
    prediction = torch.randint(0, 7, (3, 8, 8), generator=generator)
    target[0, 0] = 255                                              # an out-of-range label is skipped
    running = metrics.RunningScore(8)
    running.update(prediction, target)
    expected = running.compute()
    ours = reference.scores_from_confusion(reference.confusion_matrix(prediction, target, 8))
    assert torch.equal(reference.confusion_matrix(prediction, target, 8), running.matrix)
    for key in ("OverallAcc", "MeanAcc", "mIoU"):
        assert ours[key] == pytest.approx(expected[key], abs=1e-12)
    assert ours["ClassIoU"] == pytest.approx(expected["ClassIoU"], nan_ok=True)


def test_reference_sparsity_equals_the_course_count_with_masks_attached_and_in_a_state_dict():
    model = resnet20()
    magnitude.prune_to(model, 0.6)                                 # masks attached: weight_orig * weight_mask
    assert reference.course_sparsity(model) == pytest.approx(magnitude.course_sparsity(model), abs=1e-12)
    assert reference.course_sparsity(model.state_dict()) == pytest.approx(magnitude.course_sparsity(model), abs=1e-12)
    magnitude.make_permanent(model)
    with torch.no_grad():
        model.bn1.weight.zero_()                                    # BatchNorm and biases never count
        model.fc.bias.zero_()
    assert reference.course_sparsity(model) == pytest.approx(magnitude.course_sparsity(model), abs=1e-12)


def test_reference_accuracy_is_top1_in_percent():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])
    loader = DataLoader(torch.utils.data.TensorDataset(logits, labels), batch_size=3)
    assert reference.evaluate_classification(nn.Identity(), loader, device="cpu")["accuracy"] == 50.0


# ----------------------------------------------------------------------------- a student edition with wrong metrics
@pytest.fixture(scope="module")
def built_edition(tmp_path_factory) -> Path:
    from labkit.tools.release import build_student_edition
    edition = tmp_path_factory.mktemp("edition") / "student"
    build_student_edition(REPO_ROOT, edition)
    return edition


def edition_copy(built_edition: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "student"
    shutil.copytree(built_edition, copy)
    return copy


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text, f"{file} no longer contains {old!r}; update this test"
    file.write_text(text.replace(old, new))


def run_edition_check(edition: Path, script: str, *args) -> tuple[int, str]:
    """The edition's checks/<script> in a fresh process that imports the EDITION's labkit (asserted)."""
    prelude = ("import runpy, sys, labkit; "
               "assert labkit.__file__.startswith(sys.argv[1]), 'imported ' + labkit.__file__; "
               "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=str(edition))
    completed = subprocess.run([sys.executable, "-c", prelude, str(edition), str(edition / "checks" / script),
                                *map(str, args)], capture_output=True, text=True, timeout=300,
                               cwd=edition, env=env)
    return completed.returncode, completed.stdout + completed.stderr


def test_edition_whose_dice_score_returns_one_still_reports_the_true_dice(built_edition, pets_fixture_root,
                                                                         tmp_path):
    edition = edition_copy(built_edition, tmp_path)
    # The student did the UNet layers (the solution's file) but wrote a Dice that always says 1.0.
    shutil.copy(REPO_ROOT / "labkit" / "models" / "unet_parts.py", edition / "labkit" / "models" / "unet_parts.py")
    edit(edition / "labkit" / "metrics.py", 'raise NotImplementedError("TODO: implement dice_score()")',
         "scores = torch.ones(prediction.shape[0])  # every image 1.0, whatever the masks")
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2)                          # untrained: far below the goal
    path = save_state_dict(model, tmp_path / "unet.pth")

    from labkit.data import pets
    from labkit.evaluate import evaluate_segmentation
    test_set = pets.OxfordIIITPet(pets_fixture_root, "test", image_size=64)
    true_dice = evaluate_segmentation(model, DataLoader(test_set, batch_size=8), device="cpu")["dice"]
    assert true_dice < 0.8

    code, output = run_edition_check(edition, "check_segmentation.py", "--path", path, "--data",
                                     pets_fixture_root, "--image-size", 64, "--device", "cpu", "--json")
    verdict = json.loads(output.splitlines()[-1])
    assert verdict["metrics"]["dice"] == pytest.approx(true_dice, abs=1e-6), output
    assert code == 1 and verdict["passed"] is False


def test_edition_whose_sparsity_and_accuracy_say_100_still_reports_the_true_numbers(built_edition,
                                                                                   cat_only_data, tmp_path):
    edition = edition_copy(built_edition, tmp_path)
    with (edition / "labkit" / "prune" / "magnitude.py").open("a") as file:  # a student's "fix" of the counters
        file.write("\n\ndef course_sparsity(model_or_state_dict):\n    return 100.0\n")
    with (edition / "labkit" / "evaluate.py").open("a") as file:
        file.write("\n\ndef evaluate_classification(model, loader, **kwargs):\n    return {'accuracy': 100.0}\n")
    model = constant_model(CAT + 1, target_sparsity=None)           # always wrong, nothing pruned
    path = save_state_dict(model, tmp_path / "123_pruning.pt")

    code, output = run_edition_check(edition, "check_pruning.py", "--path", path, "--data", cat_only_data,
                                     "--device", "cpu")
    assert code == 1, output
    assert "Your test accuracy is 0.00%, which is too low!" in output
    assert f"Your model's sparsity is {magnitude.course_sparsity(model):.2f}%, which is too low!" in output


def test_edition_whose_unet_layers_are_todos_refuses_and_names_the_function(built_edition, pets_fixture_root,
                                                                            tmp_path):
    torch.manual_seed(0)
    path = save_state_dict(UNet(base_channels=4, depth=2), tmp_path / "unet.pth")
    code, output = run_edition_check(built_edition, "check_segmentation.py", "--path", path, "--data",
                                     pets_fixture_root, "--image-size", 64, "--device", "cpu")
    assert code == 3, output
    assert "labkit/models/unet_parts.py" in output and "DoubleConv.__init__()" in output
    assert "Your file was not judged" in output and "Traceback" not in output
