"""Issue 40's two grading-time cases: caught by ``selfcheck`` before training, and graded differently by the TA.

1. ``Up.forward`` concatenating ``[x, skip]``: shapes and counts are unchanged, yet the same weights give
   another Dice in the course's UNet than in the student's, so the student's own check and the TA's disagree.
2. ``DoubleConv`` as two nested ``nn.Sequential``: same function, other keys; the TA's check refuses the
   file (exit 2) and its message names the first differing key and the cause, not ``--model``.
"""
import io
import subprocess
import sys

import pytest
from torch.utils.data import DataLoader

from labkit.data import pets
from labkit.grading.reference import evaluate_segmentation
from labkit.io import save_state_dict
from labkit.models.unet import UNet
from labkit.paths import REPO_ROOT
from labkit.selfcheck import run_lab
from tests.test_selfcheck_mistakes import MISTAKES, apply_mistake


def mistake(part: str, says: str):
    return next(m for m in MISTAKES if m[4] == part and m[5] == says)


def test_cat_order_is_caught_before_training_and_changes_the_tas_dice(trained_unet, monkeypatch):
    lab, target, old, new, part, says = mistake("Up.forward", "skip connection's channels first")
    test_set = pets.OxfordIIITPet(trained_unet["data"], "test", image_size=64, cache=True)
    loader = DataLoader(test_set, batch_size=8)
    course = evaluate_segmentation(trained_unet["model"], loader, device="cpu")["dice"]

    apply_mistake(monkeypatch, target, old, new)
    report = io.StringIO()
    assert run_lab("01", out=report) == 1 and "FAIL Up.forward" in report.getvalue()
    student = UNet(classes=1, base_channels=trained_unet["model"].inc.double_conv[0].out_channels,
                   depth=len(trained_unet["model"].downs))
    student.load_state_dict(trained_unet["model"].state_dict())  # the same file, the student's Up
    swapped = evaluate_segmentation(student, loader, device="cpu")["dice"]
    print(f"course Dice {course:.4f}, same file with [x, skip]: {swapped:.4f}")
    assert course - swapped > 0.1, (course, swapped)  # one file, two verdicts: only the self-check warns


def test_nested_sequential_is_caught_before_training_and_refused_by_the_ta_with_the_key(
        trained_unet, monkeypatch, tmp_path):
    lab, target, old, new, part, says = mistake("DoubleConv", "nested nn.Sequential")
    apply_mistake(monkeypatch, target, old, new)
    report = io.StringIO()
    assert run_lab("01", out=report) == 1
    assert "FAIL DoubleConv" in report.getvalue() and "nested nn.Sequential" in report.getvalue()
    path = save_state_dict(UNet(classes=1, base_channels=4, depth=2), tmp_path / "unet.pth")
    assert any(".0.0.weight" in key for key in __import__("torch").load(path, weights_only=True))
    monkeypatch.undo()  # the TA's check runs the course's code, in its own process
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "checks" / "check_segmentation.py"), "--path", str(path),
                                "--data", str(trained_unet["data"]), "--image-size", "64", "--device", "cpu"],
                               capture_output=True, text=True, timeout=300)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    assert "nested nn.Sequential" in output and "double_conv.0.0.weight" in output, output
    assert "--model" not in output
    print(output)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
