"""checks/check_pruning.py: the course's messages, our hints, and the exit codes."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit.data import cifar10
from labkit.io import save_state_dict
from labkit.models.resnet20 import resnet20
from labkit.prune import magnitude
from tests.helpers import CAT, constant_model

CHECK = Path(__file__).resolve().parents[1] / "checks" / "check_pruning.py"
spec = importlib.util.spec_from_file_location("check_pruning", CHECK)
check_pruning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_pruning)

def run(capsys, *argv):
    code = check_pruning.main([*map(str, argv), "--device", "cpu"])
    return code, capsys.readouterr().out


def test_good_file_passes_with_the_course_message(tmp_path, capsys, cat_only_data):
    model = constant_model(CAT, target_sparsity=0.9)
    path = save_state_dict(model, tmp_path / "123_pruning.pt")
    code, out = run(capsys, "--path", path, "--data", cat_only_data)
    sparsity = magnitude.course_sparsity(model)
    assert code == 0
    assert out.startswith("Congratulations! You've achieved the goals of this task.\n"
                          f"Your model's sparsity is {sparsity:.2f}%.\n")
    assert "test accuracy 100.00% on 20 images" in out and "not the graded number" in out


def test_low_accuracy_file_exits_1_with_the_accuracy_message(tmp_path, capsys, cat_only_data):
    path = save_state_dict(constant_model(CAT + 1, target_sparsity=0.9), tmp_path / "m.pt")
    code, out = run(capsys, "--path", path, "--data", cat_only_data)
    assert code == 1
    assert out.startswith("Oops! Something is wrong!\nYour test accuracy is 0.00%, which is too low!\n")
    assert "fine-tune longer" in out


def test_low_sparsity_file_exits_1_with_the_sparsity_message(tmp_path, capsys, cat_only_data):
    model = constant_model(CAT, target_sparsity=None)
    path = save_state_dict(model, tmp_path / "m.pt")
    code, out = run(capsys, "--path", path, "--data", cat_only_data)
    assert code == 1
    assert f"Your model's sparsity is {magnitude.course_sparsity(model):.2f}%, which is too low!" in out
    assert "Your test accuracy" not in out


def test_file_saved_before_prune_remove_is_invalid_with_a_hint(tmp_path, capsys, cat_only_data):
    model = resnet20()
    magnitude.prune_to(model, 0.9)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)  # the mistake: masks still attached
    code, out = run(capsys, "--path", path, "--data", cat_only_data)
    assert code == 2
    assert out.startswith("Oops! Something is wrong!\nYour model's architecture seems to be wrong! "
                          "Have you removed pruning mask before saving?\n")
    assert "weight_orig/weight_mask" in out and "prune.remove" in out


def test_missing_file_is_invalid_with_the_course_load_message(tmp_path, capsys, cat_only_data):
    code, out = run(capsys, "--path", tmp_path / "nope.pt", "--data", cat_only_data)
    assert code == 2
    assert out.startswith("Oops! Something is wrong!\nFailed to load your model! This may due to your "
                          "file doesn't exist or your file isn't a state_dict.\n")
    assert "file not found" in out


def test_missing_dataset_is_an_environment_problem(tmp_path, capsys):
    path = save_state_dict(constant_model(CAT, target_sparsity=0.9), tmp_path / "m.pt")
    code, out = run(capsys, "--path", path, "--data", tmp_path / "no-data")
    assert code == 3
    assert "cifar-10-python.tar.gz" in out


def test_script_reads_the_official_layout_and_prints_json(tmp_path):
    data = cifar10.make_fixture(tmp_path / "data", n_train=10, n_test=30)
    model = constant_model(CAT, target_sparsity=0.6)
    path = save_state_dict(model, tmp_path / "m.pt")
    done = subprocess.run([sys.executable, str(CHECK), "--path", str(path), "--data", str(data),
                           "--device", "cpu", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    payload = json.loads(done.stdout)
    assert payload["task"] == "pruning" and payload["passed"] is False
    assert payload["metrics"]["accuracy"] == pytest.approx(10.0)  # 3 cats of 30 balanced images
    assert payload["metrics"]["sparsity"] == pytest.approx(magnitude.course_sparsity(model))


def test_the_check_evaluates_at_the_batch_size_the_notebook_passes(tmp_path, capsys, cat_only_data, monkeypatch):
    # notebook 03 evaluates at its own batch size and passes it, so the two numbers agree exactly
    batches = []
    evaluate = check_pruning.evaluate_classification

    def spy(model, loader, **kwargs):
        batches.extend(len(labels) for _, labels in loader)
        return evaluate(model, loader, **kwargs)
    monkeypatch.setattr(check_pruning, "evaluate_classification", spy)
    path = save_state_dict(constant_model(CAT, target_sparsity=0.9), tmp_path / "m.pt")
    code, _ = run(capsys, "--path", path, "--data", cat_only_data, "--batch-size", "7")
    assert code == 0 and batches[0] == 7
