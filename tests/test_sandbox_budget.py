"""The sandbox's budget (threads, CPU seconds, wall clock, grade's timeout) scales with the test set and the
cores; ``--sandbox-gpu`` binds the NVIDIA device nodes and nothing else, and only when asked."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.grading import sandbox_budget
from labkit.grading.batch import threads_per_check
from labkit.grading.grade_class import build_parser, main as grade_main
from labkit.grading.sandbox import SandboxConfig, SandboxedModel, _stage
from labkit.grading.sandbox_budget import (TEST_SETS, gpu_bind_args, grade_timeout, nvidia_device_paths,
                                           threads_available)
from labkit.grading.student_network import sandbox_config, sandboxed_network
from labkit.grading.tasks import TASKS
from tests.test_sandbox import IMAGES, load_student, small

STUDENTS = Path(__file__).parent / "students"
FAKE_GPUS = ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]


# ------------------------------------------------------------------------------------- CPU budget
def test_lab05_cpu_limit_fits_a_unet64_on_one_thread():
    """The bug: 1800 CPU-s on one thread; a UNet-64 takes an estimated 4-7 s per 256x512 frame, 500 frames."""
    config = sandbox_config(images=500, image_size=(256, 512), threads=1)
    assert config.cpu_seconds >= 7 * 500 and config.timeout_s >= 7 * 500
    assert sandbox_config(images=10, image_size=(64, 128), threads=1).cpu_seconds == 1800   # the floor


def test_threads_are_the_checks_share_of_the_cores(monkeypatch):
    """The bug: the sandbox ran on one thread whatever the grader gave the check (OMP_NUM_THREADS)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    config = sandbox_config(images=500, image_size=(256, 512))
    assert threads_available() == 6 and config.threads == 6
    assert config.max_processes >= 6 + 32
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads_available() == len(os.sched_getaffinity(0))


def test_the_child_runs_on_the_threads_it_was_given(tmp_path):
    """End to end (limits-only, no bwrap needed): the student's torch sees the threads passed in."""
    network = tmp_path / "network" / "network.py"
    network.parent.mkdir()
    network.write_text((STUDENTS / "tiny_unet" / "network.py").read_text().replace(
        "    model = TinySegNet()\n", "    print('threads', torch.get_num_threads(), flush=True)\n    model = TinySegNet()\n"))
    weights = tmp_path / "model_task1.pth"
    torch.save(load_student("tiny_unet").TinySegNet().state_dict(), weights)
    with sandboxed_network(network, weights, input_size=(1, 3, 32, 64), isolation="limits-only", images=2,
                           threads=3) as model:
        logits = model(torch.from_numpy(np.zeros((1, 3, 32, 64), np.float32)))
    assert logits.shape == (1, 8, 32, 64)
    assert "threads 3" in model.result.log_tail and model.result.limits["threads"] == 3


def test_grade_timeout_covers_the_recipe_and_every_task_has_a_test_set():
    """The bug: --timeout 600 cut off even the recipe's own UNet-32 (8-15 min on Lab 05's 500 frames)."""
    assert set(TEST_SETS) == set(TASKS)
    assert grade_timeout("efficient", threads=1) > 15 * 60
    assert grade_timeout("efficient", threads=8) < grade_timeout("efficient", threads=1)
    assert all(grade_timeout(task, threads=64) >= 600 for task in TASKS)


def test_grade_prints_the_timeout_it_chose_and_timeout_still_overrides(tmp_path, capsys):
    assert build_parser().parse_args(["x", "--task", "efficient"]).timeout is None
    empty = tmp_path / "submissions"
    empty.mkdir()
    assert grade_main([str(empty), "--task", "efficient", "--out", str(tmp_path / "g.csv")]) == 2   # no files
    chosen = grade_timeout("efficient", threads=threads_per_check(1))
    assert f"timeout per submission: {chosen} s" in capsys.readouterr().out
    assert grade_main([str(empty), "--task", "efficient", "--timeout", "77", "--out", str(tmp_path / "g.csv")]) == 2
    assert "timeout per submission" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ GPU
def test_nvidia_device_paths_finds_the_nodes_and_nothing_else(tmp_path):
    for name in ("nvidia10", "nvidia2", "nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvme0", "fuse"):
        (tmp_path / name).touch()
    (tmp_path / "nvidia-caps").mkdir()
    names = [Path(p).name for p in nvidia_device_paths(str(tmp_path))]
    assert names == ["nvidia0", "nvidia2", "nvidia10", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"]
    assert gpu_bind_args(["/dev/nvidia0"]) == ["--dev-bind", "/dev/nvidia0", "/dev/nvidia0"]


def bwrap_args(tmp_path, monkeypatch, *, gpu: bool) -> list[str]:
    """The bubblewrap command the sandbox would run (nothing is started), on a machine with FAKE_GPUS."""
    monkeypatch.setattr(sandbox_budget, "nvidia_device_paths", lambda dev="/dev": list(FAKE_GPUS))
    network = tmp_path / "network" / "network.py"
    network.parent.mkdir(exist_ok=True)
    network.write_text("def load_model(path): pass\n")
    weights = tmp_path / "model_task1.pth"
    weights.write_bytes(b"0")
    model = SandboxedModel(network, weights, config=SandboxConfig(gpu=gpu))
    model.staging, staged_network, staged_model = _stage(network, weights, model.config)
    command, _, _ = model._command("bubblewrap", {}, staged_network, staged_model)
    return command[:command.index("--")]


def test_without_sandbox_gpu_no_nvidia_device_is_bound(tmp_path, monkeypatch):
    args = bwrap_args(tmp_path, monkeypatch, gpu=False)
    assert "--dev-bind" not in args and not [a for a in args if a.startswith("/dev/nvidia")]
    assert SandboxedModel("n.py", "m.pth")._env()["CUDA_VISIBLE_DEVICES"] == ""


def test_sandbox_gpu_binds_exactly_the_nvidia_nodes_after_the_private_dev(tmp_path, monkeypatch):
    args = bwrap_args(tmp_path, monkeypatch, gpu=True)
    binds = [args[i + 1] for i, a in enumerate(args) if a == "--dev-bind"]
    assert binds == FAKE_GPUS
    assert all(args[args.index(p) + 1] == p for p in FAKE_GPUS)        # same path inside
    assert args.index("--dev-bind") > args.index("--dev")               # on top of the private /dev
    assert [a for a in args if a.startswith("/dev/")] == [p for p in FAKE_GPUS for _ in (0, 1)]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert "CUDA_VISIBLE_DEVICES" not in SandboxedModel("n.py", "m.pth", config=SandboxConfig(gpu=True))._env()


def test_sandbox_gpu_without_working_cuda_is_the_graders_problem(tmp_path, monkeypatch):
    """A GPU that does not work inside the sandbox is exit 3 (never the student's exit 2)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")   # no usable GPU, on any machine
    network = STUDENTS / "tiny_unet" / "network.py"
    weights = tmp_path / "model_task1.pth"
    torch.save(torch.nn.Module().state_dict(), weights)
    config = sandbox_config(images=1, image_size=(32, 64), threads=1, gpu=True, isolation="limits-only")
    with SandboxedModel(network, weights, input_size=(1, 3, 32, 64), config=config) as model:
        pass
    assert model.result.exit_code == 3 and "--sandbox-gpu" in model.result.message, model.result.message


@pytest.mark.skipif(not (torch.cuda.is_available() and nvidia_device_paths()),
                    reason="no usable NVIDIA GPU here: --sandbox-gpu is proven only where one is lent")
def test_sandbox_gpu_grades_on_cuda(tmp_path):
    student = load_student("tiny_unet")
    model = student.TinySegNet().eval()
    torch.save(model.state_dict(), tmp_path / "model_task1.pth")
    with SandboxedModel(STUDENTS / "tiny_unet" / "network.py", tmp_path / "model_task1.pth",
                        input_size=(1, 3, 32, 64), config=small(gpu=True, cpu_seconds=120)) as sandboxed:
        logits = sandboxed.predict(IMAGES) if sandboxed.result.exit_code == 0 else None
    assert sandboxed.result.exit_code == 0, sandboxed.result.message
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.from_numpy(IMAGES)).numpy(), atol=1e-4)


def test_sandbox_gpu_lifts_the_address_space_cap_even_the_checks_own():
    """CUDA reserves far more address space than it uses: an RLIMIT_AS inherited from the check stops it."""
    import resource
    import subprocess
    import sys
    from labkit.grading.sandbox import _preexec

    def limits(gpu: bool) -> str:
        def start():
            resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))  # the check's
            _preexec(SandboxConfig(gpu=gpu, memory_bytes=5 * 2**30), None)()
        return subprocess.run([sys.executable, "-c", "import resource; print(resource.getrlimit(resource.RLIMIT_AS))"],
                              capture_output=True, text=True, preexec_fn=start, check=True).stdout.strip()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    assert limits(gpu=True) == str((hard, hard))
    assert limits(gpu=False) == str((5 * 2**30, 5 * 2**30))
