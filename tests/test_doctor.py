import subprocess
import sys

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)

from labkit.tools import doctor


def test_doctor_runs_offline_and_exits_zero_here(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "labkit.tools.doctor", "--data", str(tmp_path)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "torch " + torch.__version__ in completed.stdout
    assert "Oxford-IIIT Pet: not at" in completed.stdout


def test_a_torchvision_built_for_another_torch_is_a_failure_with_a_fix(monkeypatch):
    def missing_operator(*args):
        raise RuntimeError("operator torchvision::nms does not exist")
    monkeypatch.setattr(torch.ops.torchvision, "nms", missing_operator)
    findings = doctor._versions()
    failure = next(f for f in findings if f.level == "fail")
    assert "does not match" in failure.detail and "constraints.txt" in failure.fix


def test_a_missing_kernel_tells_how_to_install_it(monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def no_kernel(self, name):
        raise NoSuchKernel(name)
    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", no_kernel)
    [finding] = doctor._kernel()
    assert finding.level == "fail" and "ipykernel install" in finding.fix


def test_albumentations_update_check_is_flagged_when_not_disabled(monkeypatch):
    monkeypatch.delenv("NO_ALBUMENTATIONS_UPDATE", raising=False)
    finding = next(f for f in doctor._traps() if f.topic == "albumentations")
    assert finding.level == "warn" and "NO_ALBUMENTATIONS_UPDATE=1" in finding.fix


def test_a_present_dataset_is_reported_for_its_lab(tmp_path):
    root = tmp_path / "oxford-iiit-pet"  # the layout pets.check_root asks for, nothing more
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    for name in ("trainval.txt", "test.txt"):
        (root / "annotations" / name).write_text("a 1 1 1\n")
    findings = doctor._datasets(tmp_path)
    assert any(f.level == "ok" and "Oxford-IIIT Pet: found" in f.detail for f in findings)


def test_a_partial_dataset_is_not_reported_as_found(tmp_path):
    (tmp_path / "oxford-iiit-pet" / "annotations").mkdir(parents=True)
    (tmp_path / "oxford-iiit-pet" / "annotations" / "trainval.txt").write_text("a 1 1 1\n")
    finding = next(f for f in doctor._datasets(tmp_path) if "Oxford-IIIT Pet" in f.detail)
    assert finding.level == "warn" and "lacks images" in finding.fix


def test_sandbox_finding_is_ok_for_bubblewrap_and_warns_with_the_detail_for_limits_only(monkeypatch):
    from labkit.grading import sandbox
    monkeypatch.setattr(sandbox, "isolation_available",
                        lambda: {"isolation": "limits-only", "detail": "bwrap not found; install it"})
    [finding] = doctor._sandbox()
    assert finding.level == "warn" and "bwrap not found" in finding.detail and "bubblewrap" in finding.fix
    monkeypatch.setattr(sandbox, "isolation_available",
                        lambda: {"isolation": "bubblewrap", "detail": "/usr/bin/bwrap: no network"})
    [finding] = doctor._sandbox()
    assert finding.level == "ok" and "/usr/bin/bwrap" in finding.detail


def test_the_runtime_line_says_colab_without_a_gpu_and_how_to_get_one(monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261201-060000_RC00")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (runtime,) = [finding for finding in doctor.diagnose(data_root="missing") if finding.topic == "runtime"]
    assert runtime.level == "warn" and "Colab without a GPU" in runtime.detail and "T4 GPU" in runtime.fix
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    monkeypatch.setattr(doctor, "on_colab", lambda: False)
    (runtime,) = [finding for finding in doctor.diagnose(data_root="missing") if finding.topic == "runtime"]
    assert runtime.level == "ok" and runtime.detail.startswith("not Colab")


# ----------------------------------------------------------------------------- issue 36: a GPU torch cannot use

def test_a_gpu_that_fails_at_first_use_is_a_failure_with_the_cause_and_the_fix(monkeypatch):
    """Before: doctor printed the GPU's name and free memory as "ok"; every lab then crashed on it."""
    from tests.cuda_faults import NO_KERNEL_IMAGE, cuda_failing_at_first_use
    with cuda_failing_at_first_use(monkeypatch, NO_KERNEL_IMAGE):
        [finding] = doctor._accelerator()
    assert finding.level == "fail" and "no kernel image is available" in finding.detail
    assert "sm_75" in finding.fix and "--device cpu" in finding.fix


def test_a_gpu_that_torch_cannot_see_is_reported_with_why_not_as_no_gpu(monkeypatch, tmp_path):
    """Before: a driver too old for torch's CUDA made doctor say "no CUDA GPU"."""
    from tests.cuda_faults import DRIVER_TOO_OLD
    gpu = tmp_path / "0000:00:04.0"  # a PCI bus with one NVIDIA 3D controller
    gpu.mkdir()
    (gpu / "vendor").write_text("0x10de\n")
    (gpu / "class").write_text("0x030200\n")

    def too_old():
        raise RuntimeError(DRIVER_TOO_OLD)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", too_old)
    [finding] = doctor._accelerator(pci_root=tmp_path)
    assert finding.level == "warn" and "1 NVIDIA GPU(s) present" in finding.detail and "too old" in finding.detail
    assert "580.65.06" in finding.fix and "--device cpu" in finding.fix
    [finding] = doctor._accelerator(pci_root=tmp_path / "no-bus")
    assert finding.level == "ok" and finding.detail.startswith("no CUDA GPU")
