"""Honest exit codes (issue 14, Deliver 4; issue 36, Deliver 2): the grading machine's problems (a broken
dataset, memory, a GPU that fails) exit 3 with the TA-facing cause; a student's bad file exits 2 in plain
words; no exception class name reaches the student."""
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from labkit.data import pets
from labkit.io import save_state_dict
from labkit.models.resnet20 import resnet20
from labkit.models.unet import UNet
from labkit.paths import REPO_ROOT

CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Problem|Refused)\b")


def run(check, *args):
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "checks" / check), *map(str, args)],
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout + completed.stderr


def test_corrupt_dataset_image_is_an_environment_problem_naming_the_dataset(tmp_path):
    root = pets.make_fixture(tmp_path / "pets", n_trainval=3, n_test=2, size=(32, 32))
    first_test = (root / "annotations" / "test.txt").read_text().split()[0]
    (root / "images" / f"{first_test}.jpg").write_bytes(b"not a jpeg at all")
    model = save_state_dict(UNet(base_channels=4, depth=2), tmp_path / "unet.pth")
    code, output = run("check_segmentation.py", "--path", model, "--data", root, "--image-size", 32)
    assert code == 3, output
    assert "grading machine" in output and str(root) in output and "could not be read" in output
    assert not CLASS_NAME.search(output), output


def test_unknown_cifar_class_folder_is_an_environment_problem_with_its_name(tmp_path):
    folder = tmp_path / "cifar10" / "test" / "spaceship"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "0.png")
    model = save_state_dict(resnet20(), tmp_path / "pruned.pth")
    code, output = run("check_pruning.py", "--path", model, "--data", tmp_path / "cifar10")
    assert code == 3, output
    assert "unknown class folders ['spaceship']" in output
    assert not CLASS_NAME.search(output), output


def test_pickled_object_is_refused_in_plain_words_before_loading(tmp_path, pets_fixture_root):
    path = tmp_path / "whole_model.pth"
    torch.save(UNet(base_channels=4, depth=2), path)  # a whole model, not a state_dict
    code, output = run("check_segmentation.py", "--path", path, "--data", pets_fixture_root)
    assert code == 2, output
    assert "Oops! Something is wrong!" in output and "model.state_dict()" in output
    assert not CLASS_NAME.search(output), output


def test_float64_weights_are_refused_by_their_declared_dtype(tmp_path, pets_fixture_root):
    state = {k: v.double() if v.is_floating_point() else v for k, v in UNet(base_channels=4, depth=2).state_dict().items()}
    path = tmp_path / "double.pth"
    torch.save(state, path)
    code, output = run("check_segmentation.py", "--path", path, "--data", pets_fixture_root)
    assert code == 2, output
    assert "dtype float64" in output and "model.float()" in output


def test_memory_cap_is_applied_and_running_out_is_exit_3_not_the_students_fault(tmp_path):
    root = pets.make_fixture(tmp_path / "pets", n_trainval=3, n_test=2, size=(32, 32))
    model = save_state_dict(UNet(base_channels=4, depth=2), tmp_path / "unet.pth")
    # 1 GiB of address space is below what torch reserved at import (~3.1 GiB): the next allocation that
    # needs fresh memory fails (reading the dataset or the first convolution, depending on what the heap
    # still holds), and that is the grading machine's limit, not the submission
    code, output = run("check_segmentation.py", "--path", model, "--data", root, "--image-size", 32,
                       "--memory", "1G")
    assert code == 3, output
    assert "raise --memory" in output, output
    assert "out of memory under the --memory cap of 1G" in output or "out of memory reading the dataset" in output, output


def test_unreadable_memory_option_is_a_usage_error(tmp_path, pets_fixture_root):
    code, output = run("check_segmentation.py", "--path", tmp_path / "m.pth", "--data", pets_fixture_root,
                       "--memory", "lots")
    assert code == 2 and "memory must look like 4G" in output


def test_memory_cap_is_not_applied_on_cuda_and_says_so(capsys, monkeypatch):
    import resource

    from labkit import device
    from labkit.grading.contract import CheckResult, common_parser, run_check
    monkeypatch.setattr(device, "probe_device", lambda asked: torch.device("cuda"))  # as on a working GPU
    before = resource.getrlimit(resource.RLIMIT_AS)
    code = run_check("demo", common_parser("demo"), lambda args: CheckResult("demo", True, "fine"),
                     ["--path", "x.pth", "--device", "cuda", "--memory", "4G"], cap_memory=True)
    assert code == 0 and resource.getrlimit(resource.RLIMIT_AS) == before
    assert "not applied on CUDA" in capsys.readouterr().out


# ----------------------------------------------------------------------------- issue 36: device faults are the TA's

def _demo(argv, evaluate=None):
    from labkit.grading.contract import CheckResult, common_parser, run_check
    seen = []

    def evaluate_submission(args):
        seen.append(args)
        return evaluate(args) if evaluate else CheckResult("demo", True, "fine")
    out = io.StringIO()
    code = run_check("demo", common_parser("demo"), evaluate_submission, ["--path", "x.pth", "--json", *argv],
                     stream=out)
    return code, json.loads(out.getvalue()), seen


def test_a_real_check_on_a_gpu_failing_at_first_use_is_exit_3_with_cause_and_fix(tmp_path):
    """Before: the CUDA error raised while evaluating became exit 2, "invalid submission"."""
    from tests.cuda_faults import NO_KERNEL_IMAGE, broken_cuda_environment
    root = pets.make_fixture(tmp_path / "pets", n_trainval=3, n_test=2, size=(32, 32))
    model = save_state_dict(UNet(base_channels=4, depth=2), tmp_path / "unet.pth")
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "checks" / "check_segmentation.py"), "--path", str(model), "--data",
         str(root), "--image-size", "32", "--device", "auto", "--json"],
        capture_output=True, text=True, timeout=300, env=os.environ | broken_cuda_environment(NO_KERNEL_IMAGE))
    assert completed.returncode == 3, completed.stdout + completed.stderr
    verdict = json.loads(completed.stdout.strip().splitlines()[-1])
    assert verdict["device_fault"]["kind"] == "architecture" and verdict["device_fault"]["device"] == "cuda"
    assert "no kernel image is available" in verdict["message"] and "--device cpu" in verdict["message"]
    assert "grading machine, not of the submission" in verdict["message"] and "Oops" not in verdict["message"]
    assert not CLASS_NAME.search(verdict["message"]), verdict["message"]


def test_cuda_asked_for_with_a_driver_too_old_is_exit_3_before_grading(monkeypatch):
    from tests.cuda_faults import DRIVER_TOO_OLD

    def too_old():
        raise RuntimeError(DRIVER_TOO_OLD)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", too_old)
    code, verdict, seen = _demo(["--device", "cuda"])
    assert code == 3 and not seen  # probed first: the submission was never evaluated
    assert verdict["device_fault"]["kind"] == "driver" and "580.65.06" in verdict["message"]
    assert "--device cpu" in verdict["message"]


def test_a_cuda_error_while_evaluating_is_exit_3_on_cuda_and_never_on_the_cpu(monkeypatch):
    from labkit import device
    monkeypatch.setattr(device, "probe_device", lambda asked: torch.device("cuda"))  # the probe passed

    def illegal_access(args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    code, verdict, _ = _demo(["--device", "cuda"], illegal_access)
    assert code == 3 and verdict["device_fault"]["kind"] == "cuda" and "illegal memory access" in verdict["message"]
    code, verdict, _ = _demo(["--device", "cpu"], illegal_access)  # no GPU in use: those words are no device's
    assert code == 2 and verdict["device_fault"] is None
