"""checks/check_efficient.py: course-style lines, FP32 and INT8 files, goals, exit codes, --json."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit.data.cityscapes_fixture import make_fixture
from labkit.download import DatasetNotFoundError
from labkit.io import SubmissionError, save_state_dict
from labkit.models.efficient_unet import EfficientUNet
from labkit.models.unet import UNet
from labkit.grading.tasks import fom
from labkit.profile import count_macs
from labkit.quant import qat
from tests.helpers import load_check_module

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "checks" / "check_efficient.py"
SIZE = ["32", "64"]


def load_check():
    return load_check_module("check_efficient.py")


@pytest.fixture(scope="module")
def check():
    return load_check()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("check_efficient")
    data = make_fixture(folder / "cityscapes", n_train=1, n_val=2, size=(32, 64))
    torch.manual_seed(0)
    task1 = save_state_dict(UNet(classes=8, base_channels=4, depth=2), folder / "model_task1.pth")
    float_model = EfficientUNet(base_channels=4, depth=2)
    task2_fp32 = save_state_dict(float_model, folder / "model_task2_fp32.pth")
    prepared = qat.prepare_qat(float_model)
    prepared(torch.rand(2, 3, 32, 64))
    task2_int8 = save_state_dict(qat.convert_to_int8(prepared), folder / "model_task2.pth")
    garbage = folder / "garbage.pth"
    garbage.write_bytes(b"not a model")
    return {"data": data, "task1": task1, "fp32": task2_fp32, "int8": task2_int8, "garbage": garbage}


def grade(check, *argv):
    """The CheckResult for these arguments (its message is what the script prints)."""
    args = check.build_parser().parse_args([*map(str, argv), "--image-size", *SIZE, "--device", "cpu"])
    return check.evaluate_submission(args)


def exit_code(check, *argv) -> int:
    return check.main([*map(str, argv), "--image-size", *SIZE, "--device", "cpu"])


def test_task1_prints_the_course_lines_for_a_unet(check, files):
    result = grade(check, "--task", "1", "--path", files["task1"], "--data", files["data"])
    assert result.exit_code in (0, 1)
    macs = count_macs(UNet(classes=8, base_channels=4, depth=2), input_size=(1, 3, 256, 512))
    assert f"\nflops ={macs}\n" in result.message
    assert "Model parameter size =" in result.message and "Final IoU = " in result.message
    assert "FoM" not in result.message


def test_task2_int8_is_detected_and_counted_honestly(check, files):
    result = grade(check, "--task", "2", "--path", files["int8"], "--data", files["data"])
    assert result.metrics["int8"] and "INT8 counted honestly" in result.message
    # EfficientUNet(base_channels=4, depth=2), counted by hand on 1x3x256x512: levels of P0 = 256*512,
    # P1 = P0/4, P2 = P0/16 pixels and 4, 8, 16 channels; a conv costs pixels * C_out * C_in/groups * k*k.
    P0, P1, P2 = 256 * 512, 256 * 512 // 4, 256 * 512 // 16
    macs = (P0 * 4 * 3 * 9 + P0 * 4 * 9 + P0 * 4 * 4                                 # inc
            + P1 * 4 * 9 + P1 * 8 * 4 + P1 * 8 * 9 + P1 * 8 * 8 + 8 * 3              # downs[0] + ECA(k=3)
            + P2 * 8 * 9 + P2 * 16 * 8 + P2 * 16 * 9 + P2 * 16 * 16 + 16 * 3         # downs[1] + ECA(k=3)
            + P2 * 8 * 16 + P1 * 8 * 8 + P1 * 8 * 9 + P1 * 8 * 8                     # ups[0]: projections, conv
            + P1 * 4 * 8 + P0 * 4 * 4 + P0 * 4 * 9 + P0 * 4 * 4                      # ups[1]
            + P0 * 8 * 4)                                                             # outc
    assert macs == 54_329_416
    assert f"\nflops ={macs}\n" in result.message

    def int8_conv(c_out, c_in_per_group, kernel_elements):  # int8 weights + per-channel scale/zp (8 B)
        return c_out * c_in_per_group * kernel_elements + 12 * c_out + 8  # + float32 bias + output qparams
    size = (int8_conv(4, 3, 9) + int8_conv(4, 1, 9) + int8_conv(4, 4, 1)
            + int8_conv(4, 1, 9) + int8_conv(8, 4, 1) + int8_conv(8, 1, 9) + int8_conv(8, 8, 1) + int8_conv(1, 1, 3) + 8
            + int8_conv(8, 1, 9) + int8_conv(16, 8, 1) + int8_conv(16, 1, 9) + int8_conv(16, 16, 1) + int8_conv(1, 1, 3)
            + 8 + int8_conv(8, 16, 1) + int8_conv(8, 8, 1) + 8 + int8_conv(8, 1, 9) + int8_conv(8, 8, 1)
            + int8_conv(4, 8, 1) + int8_conv(4, 4, 1) + 8 + int8_conv(4, 1, 9) + int8_conv(4, 4, 1)
            + int8_conv(8, 4, 1) + 12)  # the 8s: ECA's mul and the skips' add_relu qparams; 12: quant's buffers
    assert size == 3498
    assert f"Model parameter size ={size / 1024:.3f} KB" in result.message


def test_task2_fp32_and_int8_have_equal_flops_and_a_quarter_of_the_size(check, files):
    fp32 = grade(check, "--task", "2", "--path", files["fp32"], "--data", files["data"]).metrics
    int8 = grade(check, "--task", "2", "--path", files["int8"], "--data", files["data"]).metrics
    assert fp32["macs"] == int8["macs"] > 0
    assert fp32["int8"] is False and int8["int8"] is True
    assert int8["size_kb"] < 0.5 * fp32["size_kb"]


def test_goals_decide_the_exit_code_and_fom_follows_the_course_formula(check, files, monkeypatch):
    def evaluate_at(miou):
        return lambda *args, **kwargs: {"mIoU": miou, "OverallAcc": 0.9, "MeanAcc": 0.8, "ClassIoU": [miou] * 8}

    monkeypatch.setattr(check, "evaluate_multiclass_segmentation", evaluate_at(0.70))
    result = grade(check, "--task", "2", "--path", files["int8"], "--data", files["data"])
    assert result.passed and result.exit_code == 0
    assert result.metrics["fom"] == pytest.approx(fom(result.metrics["macs"], result.metrics["size_kb"], 0.70))
    assert f"FoM = {result.metrics['fom']:.4e}" in result.message
    assert exit_code(check, "--task", "2", "--path", files["int8"], "--data", files["data"]) == 0
    result = grade(check, "--task", "1", "--path", files["task1"], "--data", files["data"])
    assert result.exit_code == 1 and "below the goal of 0.72" in result.message

    monkeypatch.setattr(check, "evaluate_multiclass_segmentation", evaluate_at(0.655))
    result = grade(check, "--task", "2", "--path", files["fp32"], "--data", files["data"])
    assert result.exit_code == 1 and "below the goal of 0.66" in result.message
    assert result.metrics["fom"] == pytest.approx(fom(result.metrics["macs"], result.metrics["size_kb"], 0.655))


def test_a_model_handed_in_for_the_wrong_task_is_invalid_with_a_hint(check, files):
    with pytest.raises(SubmissionError, match="--task 1"):
        grade(check, "--task", "2", "--path", files["task1"], "--data", files["data"])
    with pytest.raises(SubmissionError, match="--task 2"):
        grade(check, "--task", "1", "--path", files["int8"], "--data", files["data"])
    assert exit_code(check, "--task", "1", "--path", files["int8"], "--data", files["data"]) == 2


def test_unreadable_file_exits_2_and_missing_dataset_exits_3(check, files, tmp_path):
    assert exit_code(check, "--task", "2", "--path", files["garbage"], "--data", files["data"]) == 2
    with pytest.raises(DatasetNotFoundError, match="gtFine_trainvaltest.zip"):
        grade(check, "--task", "2", "--path", files["int8"], "--data", tmp_path / "none")
    assert exit_code(check, "--task", "2", "--path", files["int8"], "--data", tmp_path / "none") == 3


def test_runs_as_a_script_with_json_output(files):
    completed = subprocess.run(
        [sys.executable, str(CHECK), "--task", "2", "--path", str(files["int8"]), "--data",
         str(files["data"]), "--image-size", *SIZE, "--json"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    result = json.loads(completed.stdout)
    assert completed.returncode == result["exit_code"] in (0, 1)
    assert result["task"] == "efficient-task2" and result["metrics"]["int8"] is True
    assert "flops =" in result["message"] and "torch" in result["versions"]
