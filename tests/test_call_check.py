"""labkit.grading.call_check: the one way notebooks and the batch grader run a check."""
import json
import sys
import textwrap

import pytest

from labkit.grading.call_check import call_check, check_command, last_json_line
from labkit.paths import CHECKS_DIR


def fake_checks_dir(tmp_path, *, exit_code=0, dice=0.9):
    """A checks/ folder whose check_segmentation.py echoes its arguments in a --json verdict."""
    folder = tmp_path / "checks"
    folder.mkdir()
    (folder / "check_segmentation.py").write_text(textwrap.dedent(f"""
        import json, sys
        print("some progress line")
        print(json.dumps({{"task": "segmentation", "passed": {exit_code == 0}, "message": "Dice {dice}",
                           "metrics": {{"dice": {dice}}}, "notes": ["argv " + " ".join(sys.argv[1:])]}}))
        sys.exit({exit_code})
    """))
    return folder


def test_the_command_is_the_check_script_with_path_json_and_each_flag_once():
    command = check_command("segmentation", "m.pth", model="unet", image_size=64, device=None)
    assert command == [sys.executable, str(CHECKS_DIR / "check_segmentation.py"), "--path", "m.pth", "--json",
                       "--model", "unet", "--image-size", "64"]
    assert check_command("efficient", "m.pth", "--data", "d", task=2, image_size=(64, 128))[-7:] == [
        "--task", "2", "--image-size", "64", "128", "--data", "d"]


def test_an_unknown_task_names_the_tasks():
    with pytest.raises(ValueError, match="efficient, pruning, quantization, segmentation"):
        check_command("prunning", "m.pth")


def test_the_verdict_is_the_last_json_line():
    assert last_json_line('progress\n{"a": 1}\n[1, 2]\nnot json') == {"a": 1}
    assert last_json_line("nothing here") is None


def test_a_check_that_agrees_returns_its_verdict_and_exit_code(tmp_path, capsys):
    check = call_check("segmentation", tmp_path / "m.pth", checks_dir=fake_checks_dir(tmp_path, exit_code=1),
                       model="unet", agree={"dice": 0.9})
    assert check.returncode == 1 and check.metrics == {"dice": 0.9}
    assert f"--path {tmp_path / 'm.pth'} --json --model unet" in check.verdict["notes"][0]
    assert "Dice 0.9" in capsys.readouterr().out


def test_a_check_that_disagrees_with_the_notebook_fails_loudly(tmp_path):
    with pytest.raises(AssertionError, match="check and notebook disagree on dice"):
        call_check("segmentation", "m.pth", checks_dir=fake_checks_dir(tmp_path, dice=0.8),
                   agree={"dice": 0.9}, echo=False)


@pytest.mark.parametrize("exit_code", [2, 3])
def test_a_check_that_could_not_grade_fails_with_its_output(tmp_path, exit_code):
    with pytest.raises(AssertionError, match="some progress line"):
        call_check("segmentation", "m.pth", checks_dir=fake_checks_dir(tmp_path, exit_code=exit_code), echo=False)


def test_the_verdict_fields_are_the_checks_json():
    verdict = {"task": "t", "passed": True, "message": "m", "metrics": {}, "notes": []}
    assert last_json_line(json.dumps(verdict)) == verdict
