"""checks/check_quantization.py: the course's messages and labkit's exit codes."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit.grading.contract import LOAD_FAILED

from labkit.data.cifar10 import CLASSES
from labkit.io import save_state_dict
from labkit.models.quantized_resnet20 import QuantizedResNet20
from labkit.models.resnet20 import resnet20
from tests.helpers import old_labkit_names

CHECK = Path(__file__).resolve().parents[1] / "checks" / "check_quantization.py"
OOPS = "Oops! Something is wrong!"


def load_check():
    spec = importlib.util.spec_from_file_location("check_quantization", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = load_check()


def run(capsys, *argv) -> tuple[int, str]:
    code = check.main([str(a) for a in argv])
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def cifar_fixture(tmp_path_factory) -> Path:
    from labkit.data.cifar10 import make_fixture
    return make_fixture(tmp_path_factory.mktemp("cifar10"), n_train=50, n_test=200)


def always_cat_submission(path: Path) -> Path:
    """A valid hand-quantized state_dict whose logits ignore the image: the fc bias picks 'cat'."""
    model = QuantizedResNet20()
    bias = torch.zeros(10)
    bias[CLASSES.index("cat")] = 10.0
    model.fc.set_bias(bias)
    return save_state_dict(model, path)


def test_a_model_above_the_goal_passes_with_the_course_message(capsys, cat_only_data, tmp_path):
    path = always_cat_submission(tmp_path / "123_quantization.pt")
    code, out = run(capsys, "--path", path, "--data", cat_only_data, "--device", "cpu")
    assert code == 0, out
    assert out.splitlines() == ["Congratulations! You've achieved the goals of this task.",
                                "Your model's test accuracy is 100.00%."]


def test_an_untrained_model_is_below_the_goal_with_its_accuracy(capsys, cifar_fixture, tmp_path):
    # Every weight zero: constant logits, so the prediction is class 0 for all 200 balanced images.
    path = save_state_dict(QuantizedResNet20(), tmp_path / "123_quantization.pt")
    code, out = run(capsys, "--path", path, "--data", cifar_fixture, "--device", "cpu")
    assert code == 1
    assert out.splitlines()[:2] == [OOPS, "Your test accuracy is 10.00%, which is too low!"]
    assert "hint:" in out


def test_missing_file_gives_the_course_load_error(capsys, cifar_fixture, tmp_path):
    code, out = run(capsys, "--path", tmp_path / "nothing.pt", "--data", cifar_fixture)
    assert code == 2
    assert out.splitlines()[:2] == [OOPS, LOAD_FAILED]
    assert "file not found" in out


def test_a_pickled_whole_model_is_refused_without_being_executed(capsys, cifar_fixture, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(QuantizedResNet20(), path)
    code, out = run(capsys, "--path", path, "--data", cifar_fixture)
    assert code == 2 and LOAD_FAILED in out


def test_a_float_resnet20_gets_the_architecture_error_and_a_hint(capsys, cifar_fixture, tmp_path):
    path = save_state_dict(resnet20(), tmp_path / "float.pt")
    code, out = run(capsys, "--path", path, "--data", cifar_fixture)
    assert code == 2
    assert out.splitlines()[:2] == [OOPS, check.ARCHITECTURE_ERROR]
    assert "float ResNet-20" in out and "quantize_resnet20" in out


def test_float_weights_under_the_right_names_are_refused_by_dtype(capsys, cifar_fixture, tmp_path):
    state = QuantizedResNet20().state_dict()
    state["conv1.weight_int8"] = state["conv1.weight_int8"].float()
    path = save_state_dict(state, tmp_path / "wrong_dtype.pt")
    code, out = run(capsys, "--path", path, "--data", cifar_fixture)
    assert code == 2 and check.ARCHITECTURE_ERROR in out
    assert "conv1.weight_int8 has dtype torch.float32, expected torch.int8" in out




def test_labkit_old_int8_names_get_the_architecture_error_and_the_renames(capsys, cifar_fixture, tmp_path):
    path = save_state_dict(old_labkit_names(QuantizedResNet20().state_dict()), tmp_path / "old.pt")
    code, out = run(capsys, "--path", path, "--data", cifar_fixture)
    assert code == 2
    assert out.splitlines()[:2] == [OOPS, check.ARCHITECTURE_ERROR]
    for rename in ("conv1.weight -> conv1.weight_int8", "input_scale -> quant.output_scale",
                   "input_zero_point -> quant.output_zero_point",
                   "layer2.0.downsample.bias_fp32 -> layer2.0.downsample.0.bias_fp32"):
        assert rename in out, rename
    assert "rebuild with this labkit version" in out and "34 keys" in out


def test_old_names_with_other_differences_still_say_what_else_is_wrong(capsys, cifar_fixture, tmp_path):
    old = old_labkit_names(QuantizedResNet20().state_dict())
    del old["fc.bias_fp32"]
    path = save_state_dict(old, tmp_path / "old_and_broken.pt")
    code, out = run(capsys, "--path", path, "--data", cifar_fixture)
    assert code == 2 and "conv1.weight -> conv1.weight_int8" in out
    assert "even renamed, 1 keys differ from the course's (e.g. fc.bias_fp32)" in out


def test_a_file_of_exactly_the_course_schema_is_accepted_for_grading(capsys, cifar_fixture, tmp_path):
    # Built from the course's JSON alone: zeros of each dtype and shape. Graded (10%), not refused.
    schema = Path(__file__).resolve().parents[2] / "shared/docs/course-int8-resnet20-keys.json"
    if not schema.is_file():
        pytest.skip(f"{schema} not present (the course schema lives in ../shared beside the repo)")
    state = {key: torch.zeros(shape, dtype=getattr(torch, dtype))
             for key, dtype, shape in json.loads(schema.read_text())["keys"]}
    path = save_state_dict(state, tmp_path / "course_schema.pt")
    code, out = run(capsys, "--path", path, "--data", cifar_fixture, "--device", "cpu")
    assert code == 1, out
    assert out.splitlines()[:2] == [OOPS, "Your test accuracy is 10.00%, which is too low!"]


def test_missing_dataset_is_an_environment_problem(capsys, tmp_path):
    path = always_cat_submission(tmp_path / "123_quantization.pt")
    code, out = run(capsys, "--path", path, "--data", tmp_path / "no-cifar")
    assert code == 3
    assert "cifar-10-python.tar.gz" in out


def test_command_line_json_output_and_exit_code(cifar_fixture, tmp_path):
    path = save_state_dict(QuantizedResNet20(), tmp_path / "123_quantization.pt")
    completed = subprocess.run([sys.executable, str(CHECK), "--path", str(path), "--data", str(cifar_fixture),
                                "--device", "cpu", "--json"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1, completed.stderr
    payload = json.loads(completed.stdout)
    assert payload["task"] == "quantization" and payload["passed"] is False
    assert payload["metrics"]["accuracy"] == pytest.approx(10.0)


def test_an_fx_int8_state_dict_is_recognised_in_the_hint(capsys, cifar_fixture, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from labkit.quant.fx import quantize_fx

    images = TensorDataset(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))
    fx_model = quantize_fx(resnet20().eval(), DataLoader(images, batch_size=8))
    path = save_state_dict(fx_model, tmp_path / "fx.pt")
    code, out = run(capsys, "--path", path, "--data", cifar_fixture)
    assert code == 2
    assert out.splitlines()[:2] == [OOPS, check.ARCHITECTURE_ERROR]
    assert "torch.ao (FX/eager) INT8 state_dict" in out
