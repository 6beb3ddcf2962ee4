"""check_segmentation.py: verdicts, exit codes and messages, run as a TA runs it (a subprocess)."""
import json
import subprocess
import sys

import pytest
import torch

from labkit.io import save_state_dict
from labkit.models.unet import UNet
from labkit.paths import REPO_ROOT

CHECK = REPO_ROOT / "checks" / "check_segmentation.py"


def run_check(*args):
    completed = subprocess.run([sys.executable, str(CHECK), *map(str, args)], capture_output=True,
                               text=True, timeout=300)
    return completed.returncode, completed.stdout + completed.stderr


@pytest.mark.learning
def test_trained_fixture_model_passes_with_the_notebooks_dice(trained_unet, learned):
    learned("fixture_unet_test_dice", trained_unet["test_dice"], at_least=0.90)  # the goal: exit 0
    code, output = run_check("--path", trained_unet["path"], "--data", trained_unet["data"],
                             "--image-size", 64, "--json")
    verdict = json.loads(output.splitlines()[-1])
    assert code == 0 and verdict["passed"] is True
    assert verdict["metrics"]["dice"] == pytest.approx(trained_unet["test_dice"], abs=1e-6)
    assert verdict["versions"]["torch"] == torch.__version__


def test_untrained_model_is_below_the_goal(pets_fixture_root, tmp_path):
    torch.manual_seed(0)
    path = save_state_dict(UNet(base_channels=4, depth=2), tmp_path / "random.pth")
    code, output = run_check("--path", path, "--data", pets_fixture_root, "--image-size", 64)
    assert code == 1
    assert "no marks (Dice below 0.80)" in output


def test_missing_file_is_an_invalid_submission(pets_fixture_root, tmp_path):
    code, output = run_check("--path", tmp_path / "absent.pth", "--data", pets_fixture_root)
    assert code == 2 and "not found" in output


def test_file_that_is_not_a_state_dict_is_an_invalid_submission(pets_fixture_root, tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    code, output = run_check("--path", tmp_path / "list.pth", "--data", pets_fixture_root)
    assert code == 2 and "not a state_dict" in output


def test_wrong_architecture_names_the_right_option(trained_unet):
    code, output = run_check("--path", trained_unet["path"], "--model", "resnet34_unet",
                             "--data", trained_unet["data"])
    assert code == 2 and "--model" in output


def test_missing_dataset_is_an_environment_problem(trained_unet, tmp_path):
    code, output = run_check("--path", trained_unet["path"], "--data", tmp_path / "no-data")
    assert code == 3 and "images.tar.gz" in output


# the course: Dice >= 0.90 full marks, >= 0.85 80 %, >= 0.80 60 %, else nothing; both sides of each boundary
@pytest.mark.parametrize("dice, credit", [(0.95, 1.0), (0.90, 1.0), (0.8999, 0.8), (0.85, 0.8), (0.8499, 0.6),
                                          (0.80, 0.6), (0.7999, 0.0), (0.0, 0.0)])
def test_course_tiers(dice, credit):
    sys.path.insert(0, str(CHECK.parent))
    from check_segmentation import credit_for
    assert credit_for(dice)[0] == credit


def test_partial_credit_is_below_the_goal_with_its_credit_in_the_verdict():
    """Exit 0 means the goal (Dice >= 0.90), as the README says; 0.80-0.90 earns credit but exits 1."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_segmentation", CHECK)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    args = argparse.Namespace(image_size=64)
    for dice, credit, passed in ((0.8557, 0.8, False), (0.80, 0.6, False), (0.7999, 0.0, False), (0.90, 1.0, True)):
        result = check.verdict(dice, "UNet", range(50), args, notes=[])
        assert (result.passed, result.metrics["credit"]) == (passed, credit), dice
