"""benchmarks/gpu_check.py, the prepared GPU check (issue 36), run on the CPU in SMOKE size on fixture data:
its logic is tested here, in CI; on a GPU it runs the same code at the FULL GPU recipes' sizes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit.data import cifar10, cityscapes_fixture, pets
from labkit.io import save_state_dict
from labkit.models.resnet20 import resnet20

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402
from gpu_check_lib import NOTEBOOKS, PRUNING_MODEL, T4_TFLOPS, read_recipe  # noqa: E402

# 45-130 s on 2 cores: with the slow journeys (make journey-test, which CI runs), not in make test's 10 minutes.
pytestmark = pytest.mark.journey


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One CPU run in SMOKE size (~45 s on 2 cores) on a fixture laid out as `--prepare` lays out the subset."""
    root = tmp_path_factory.mktemp("gpu_check")
    data = root / "subset"
    pets.make_fixture(data / "oxford-iiit-pet", n_trainval=12, n_test=4)
    cityscapes_fixture.make_fixture(data / "cityscapes", n_train=10, n_val=2, size=(64, 128))
    cifar10.make_fixture(data / "cifar10", n_train=100, n_test=50)
    torch.manual_seed(0)
    save_state_dict(resnet20(), data / PRUNING_MODEL)  # untrained and dense: the pruning check exits 1
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                           "--data", str(data), "--out", str(root / "out"), "--work", str(root / "work")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert (root / "out" / "gpu_check.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((root / "out" / "gpu_check.json").read_text())
    return {"done": done, "report": report, "steps": {step["name"]: step for step in report["steps"]},
            "markdown": (root / "out" / "gpu_check.md").read_text()}


def test_the_cpu_smoke_run_passes_what_it_can_and_says_why_it_skips_what_needs_cuda(smoke_run):
    done, steps = smoke_run["done"], smoke_run["steps"]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert smoke_run["report"]["ok"] and not smoke_run["report"]["failed"]
    assert {step["status"] for step in steps.values()} <= {"ok", "skipped"}
    assert all(step["reason"] for step in steps.values() if step["status"] == "skipped")
    assert "needs CUDA" in steps["notebooks SMOKE on cuda"]["reason"]
    assert steps["grade --sandbox-gpu"]["status"] == "skipped" and "CUDA" in steps["grade --sandbox-gpu"]["reason"]
    grade = steps["grade Task 1 (sandbox on the CPU, --device cpu)"]  # the same grading, its network.py on the CPU
    assert grade["status"] == "ok" and grade["exit_code"] == 0, grade
    for name in ("device", "tests (one, SMOKE)", "recipe 01, 1 epoch(s)", "recipe 02, 1 epoch(s)", "recipe 05, 1 epoch(s)"):
        assert steps[name]["status"] == "ok", steps[name]


def test_every_full_gpu_recipe_has_a_row_with_images_per_second_and_a_t4_estimate(smoke_run):
    report = smoke_run["report"]
    rows = report["recipes"]
    assert {row["notebook"] for row in rows} == set(NOTEBOOKS)
    assert len(rows) == 6  # 01 UNet; 02 ResNet34-UNet and UNet; 05 Task 1, Task 2 and its QAT epochs
    assert report["t4"]["tflops"] == T4_TFLOPS and report["t4"]["estimate"] and report["t4"]["ratio"] > 0
    for row in rows:
        assert row["images_per_s"] > 0 and row["epochs_timed"] == 1, row
        assert row["minutes_here"] == pytest.approx(row["full_epochs"] * row["full_images"] / row["images_per_s"] / 60)
        assert row["t4_minutes"] == pytest.approx(row["minutes_here"] * report["t4"]["ratio"])
        assert row["t4_floor_minutes"] > 0 and row["achieved_tflops"] > 0
    # The minutes are extrapolated to the notebooks' FULL GPU recipes, not to the SMOKE sizes that were timed.
    by_name = {row["recipe"]: row for row in rows}
    assert by_name["01 UNet-8"]["full_epochs"] == read_recipe(NOTEBOOKS["01"])["epochs"]
    assert by_name["05 Task 2 EfficientUNet-8 QAT"]["full_epochs"] == read_recipe(NOTEBOOKS["05"])["qat_epochs"]
    assert "T4 minutes (est.)" in smoke_run["markdown"] and all(name in smoke_run["markdown"] for name in by_name)


def test_the_resume_after_a_kill_continued_from_the_checkpoint(smoke_run):
    resume = smoke_run["steps"]["resume after a kill"]
    assert resume["status"] == "ok", resume
    killed, epochs = resume["metrics"]["killed_after_epoch"], resume["metrics"]["epochs"]
    assert 1 <= killed < epochs and resume["metrics"]["trained_after_resume"] == epochs - killed


def test_the_checks_ran_on_the_trained_files_with_a_verdict_each(smoke_run):
    checks = {name: step for name, step in smoke_run["steps"].items() if name.startswith("check_")}
    ran = {name: step for name, step in checks.items() if step["status"] == "ok"}
    assert len(ran) == 5, checks  # UNet, ResNet34-UNet, Task 1, Task 2, the dense ResNet-20
    assert all(step["exit_code"] in (0, 1) and step["metrics"] for step in ran.values())
    pruning = ran["check_pruning dense ResNet-20 (CIFAR-10 subset)"]
    assert pruning["exit_code"] == 1 and pruning["metrics"]["sparsity"] == 0  # dense: below the goal, graded
    assert {step["status"] for name, step in checks.items() if name not in ran} == {"skipped"}  # notebooks 03/04 did not run


def test_a_failing_or_hanging_step_is_reported_and_the_others_still_run(tmp_path, capsys):
    psutil = pytest.importorskip("psutil")
    pid_file = tmp_path / "kernel.pid"  # a hanging step whose child left its session, as a notebook's kernel does
    hang = (f"import subprocess, sys, time; kernel = subprocess.Popen([sys.executable, '-c', 'import time; "
            f"time.sleep(60)'], start_new_session=True); open({str(pid_file)!r}, 'w').write(str(kernel.pid)); "
            "time.sleep(60)")
    steps = [gpu_check.step("fails", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], 30),
             gpu_check.step("hangs", [sys.executable, "-c", hang], 3),
             gpu_check.step("works", [sys.executable, "-c", "print('fine')"], 30)]
    results = gpu_check.run_steps(steps, deadline=gpu_check.time.monotonic() + 60, logs=tmp_path, env=None)
    assert [result["status"] for result in results] == ["failed", "timeout", "ok"]
    assert results[0]["exit_code"] == 3 and "boom" in results[0]["tail"] and results[0]["reason"] == "boom"
    assert "[failed] fails" in capsys.readouterr().out
    kernel = int(pid_file.read_text())
    gpu_check.time.sleep(0.5)
    assert not psutil.pid_exists(kernel) or psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE
    late = gpu_check.run_steps(steps[2:], deadline=gpu_check.time.monotonic() + 1, logs=tmp_path, env=None)
    assert late[0]["status"] == "failed" and "budget" in late[0]["reason"]


def test_without_the_data_subset_every_step_fails_and_the_exit_code_says_so(tmp_path):
    code = gpu_check.main(["--device", "cpu", "--smoke", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out"),
                           "--work", str(tmp_path / "work"), "--budget", "1"])
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert code == 1 and not report["ok"] and "data subset" in report["failed"]
    assert "run --prepare first" in next(step["reason"] for step in report["steps"] if step["name"] == "data subset")
