from labkit.device import cpu_has_bfloat16

ZEN4_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SKYLAKE_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"


def test_a_cpu_with_avx512_bf16_or_amx_counts_as_bfloat16(tmp_path):
    (tmp_path / "zen4").write_text(ZEN4_FLAGS)
    (tmp_path / "sapphire").write_text(SKYLAKE_FLAGS.replace("avx512_vnni", "avx512_vnni amx_bf16 amx_tile"))
    assert cpu_has_bfloat16(tmp_path / "zen4") and cpu_has_bfloat16(tmp_path / "sapphire")


def test_avx512_without_bf16_units_or_no_cpuinfo_does_not(tmp_path):
    (tmp_path / "skylake").write_text(SKYLAKE_FLAGS)
    (tmp_path / "model_name").write_text("model name\t: avx512_bf16 lookalike\nflags\t\t: fpu sse2\n")
    assert not cpu_has_bfloat16(tmp_path / "skylake")
    assert not cpu_has_bfloat16(tmp_path / "model_name")  # only the flags line counts
    assert not cpu_has_bfloat16(tmp_path / "missing")


# ----------------------------------------------------------------------------- issue 36: a GPU torch cannot use

import pytest  # noqa: E402
import torch  # noqa: E402

from labkit import device as labkit_device  # noqa: E402
from labkit.device import DeviceUnusable, device_fault, nvidia_gpus, probe_device, unusable_gpu_notice  # noqa: E402
from tests.cuda_faults import DEVICE_BUSY, DRIVER_TOO_OLD, NO_KERNEL_IMAGE, cuda_failing_at_first_use  # noqa: E402


@pytest.mark.parametrize("message, kind, fix", [
    (NO_KERNEL_IMAGE, "architecture", "sm_75"),  # the GPU code this torch build carries is named
    (DRIVER_TOO_OLD, "driver", "580.65.06"),     # torch 2.14.1+cu130: CUDA 13 needs driver 580.65.06
    (DEVICE_BUSY, "busy", "nvidia-smi"),
    ("CUDA out of memory. Tried to allocate 2.00 GiB", "memory", "--batch-size"),
    ("CUDA error: an illegal memory access was encountered", "cuda", "--device cpu"),
])
def test_each_device_failure_is_recognised_with_its_fix(message, kind, fix):
    fault = device_fault(RuntimeError(message))
    assert fault.kind == kind and fix in fault.fix and "--device cpu" in fault.fix
    assert fault.cause == message.splitlines()[0].rstrip(". ")


def test_errors_that_are_no_device_fault_are_not_taken_for_one():
    assert device_fault(RuntimeError("Error(s) in loading state_dict for UNet: size mismatch")) is None
    assert device_fault(ValueError("could not convert string to float")) is None


@pytest.mark.parametrize("asked", ["auto", "cuda"])
def test_a_gpu_failing_at_first_use_fails_the_probe_with_cause_and_fix(monkeypatch, asked):
    with cuda_failing_at_first_use(monkeypatch, NO_KERNEL_IMAGE):
        with pytest.raises(DeviceUnusable) as failed:
            probe_device(asked)  # "auto" too: a silent switch to the CPU would hide the fault
    assert failed.value.fault.kind == "architecture" and "no kernel image" in str(failed.value)
    assert "--device cpu" in str(failed.value)


def test_cuda_asked_for_where_the_driver_is_too_old_says_which_driver(monkeypatch):
    def too_old():
        raise RuntimeError(DRIVER_TOO_OLD)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", too_old)
    with pytest.raises(DeviceUnusable, match="driver on your system is too old.*580.65.06") as failed:
        probe_device("cuda")
    assert isinstance(failed.value, RuntimeError)  # callers catching RuntimeError still do


def _fake_pci(root, *devices):
    for index, (vendor, device_class) in enumerate(devices):
        folder = root / f"0000:00:0{index}.0"
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "class").write_text(device_class + "\n")
    return root


def test_nvidia_gpus_are_counted_from_the_pci_bus_without_a_driver(tmp_path):
    root = _fake_pci(tmp_path, ("0x10de", "0x030200"), ("0x10de", "0x040300"), ("0x8086", "0x030000"))
    assert nvidia_gpus(root) == 1  # the 3D controller; NVIDIA's audio function and Intel's VGA are not GPUs here


def test_auto_on_a_machine_whose_gpu_torch_cannot_use_says_why_instead_of_silently_using_the_cpu(tmp_path, monkeypatch):
    def too_old():
        raise RuntimeError(DRIVER_TOO_OLD)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", too_old)
    root = _fake_pci(tmp_path, ("0x10de", "0x030200"))
    notice = unusable_gpu_notice(root)
    assert "NVIDIA GPU that torch cannot use" in notice and "too old" in notice and "580.65.06" in notice
    assert unusable_gpu_notice(tmp_path / "no-bus") == ""
    monkeypatch.setattr(labkit_device, "unusable_gpu_notice", lambda: notice)
    full_cpu = labkit_device.recipe_notice(torch.device("cpu"), smoke=False, recipe={"epochs": 60})
    assert full_cpu.startswith(notice) and "FULL mode without a CUDA GPU" in full_cpu


def test_the_probe_as_a_command_exits_3_with_the_fault_for_a_batch_grader_to_stop_on(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.cuda_faults import broken_cuda_environment
    probe = [sys.executable, "-m", "labkit.device", "auto"]
    broken = subprocess.run(probe, capture_output=True, text=True, timeout=120,
                            env=os.environ | broken_cuda_environment(DEVICE_BUSY))
    assert broken.returncode == 3, broken.stdout + broken.stderr
    fault = json.loads(broken.stdout)["device_fault"]
    assert fault["kind"] == "busy" and fault["device"] == "cuda" and "--device cpu" in fault["fix"]
    fine = subprocess.run([sys.executable, "-m", "labkit.device", "cpu"], capture_output=True, text=True, timeout=120)
    assert fine.returncode == 0 and json.loads(fine.stdout) == {"device": "cpu", "device_fault": None}
