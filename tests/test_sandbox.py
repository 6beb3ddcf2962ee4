"""The sandbox for students' own network.py: hostile files end with the right outcome, nothing escapes,
honest designs that are not labkit models are graded exactly (FP32 and INT8). See tests/hostile/README.md."""
from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.grading.sandbox import SandboxConfig, SandboxedModel, isolation_available
from labkit.profile import count_macs, model_size_bytes
from tests.helpers import requires

HERE = Path(__file__).parent
HOSTILE, STUDENTS = HERE / "hostile", HERE / "students"
HAS_BWRAP = isolation_available()["isolation"] == "bubblewrap"
needs_bwrap = requires(HAS_BWRAP, f"no bubblewrap sandbox: {isolation_available()['detail']}")
IMAGES = np.random.default_rng(0).random((2, 3, 32, 64), dtype=np.float32)


def small(**overrides) -> SandboxConfig:
    """Small caps so each hostile run ends in seconds."""
    values = dict(memory_bytes=5 * 2**30, cpu_seconds=20, timeout_s=60, start_timeout_s=40, max_processes=48,
                  max_file_bytes=8 * 2**20, scratch_bytes=64 * 2**20)
    return SandboxConfig(**{**values, **overrides})


def hostile(name: str, folder: Path, **replace) -> Path:
    """Copy tests/hostile/<name>/network.py into ``folder``, filling its placeholders."""
    text = (HOSTILE / name / "network.py").read_text()
    for key, value in replace.items():
        text = text.replace(f"__{key}__", str(value))
    target = folder / "network" / "network.py"
    target.parent.mkdir(parents=True)
    target.write_text(text)
    return target


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "model_task1.pth"
    torch.save(torch.nn.Conv2d(3, 8, 1).state_dict(), path)
    return path


def run(network, weights, config, images=IMAGES):
    started = time.monotonic()
    with SandboxedModel(network, weights, input_size=(1, 3, 32, 64), config=config) as model:
        logits = model.predict(images) if model.result.exit_code == 0 else None
    return model.result, logits, time.monotonic() - started


def load_student(name: str):
    spec = importlib.util.spec_from_file_location(f"student_{name}", STUDENTS / name / "network.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------- honest students
@pytest.mark.parametrize("isolation", [pytest.param("bubblewrap", marks=needs_bwrap), "limits-only"])
def test_tiny_unet_with_other_names_is_graded_exactly(tmp_path, isolation):
    student = load_student("tiny_unet")
    model = student.TinySegNet().eval()
    torch.save(model.state_dict(), tmp_path / "model_task1.pth")
    result, logits, _ = run(STUDENTS / "tiny_unet" / "network.py", tmp_path / "model_task1.pth",
                            small(isolation=isolation))
    with torch.no_grad():
        expected = model(torch.from_numpy(IMAGES)).numpy()
    assert result.exit_code == 0, result.message
    assert result.isolation == isolation
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert result.macs == count_macs(model, input_size=(1, 3, 32, 64))
    assert result.size_bytes == model_size_bytes(model)
    assert len(result.network_sha256) == 64 and "Untrusted" in result.trust_boundary


@needs_bwrap
@pytest.mark.parametrize("int8", [False, True])
def test_task2_net_fp32_and_int8_is_graded_exactly(tmp_path, int8):
    student = load_student("task2_net")
    model = student.LiteSeg().eval()
    if int8:
        model = student.quantized_model(model, torch.from_numpy(IMAGES))
    torch.save(model.state_dict(), tmp_path / "model_task2.pth")
    result, logits, _ = run(STUDENTS / "task2_net" / "network.py", tmp_path / "model_task2.pth", small())
    with torch.no_grad():
        expected = model(torch.from_numpy(IMAGES)).numpy()
    assert result.exit_code == 0, result.message
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert result.quantized or not int8   # (FloatFunctional makes labkit call the FP32 net "quantized" too)
    assert result.macs == count_macs(model, input_size=(1, 3, 32, 64)) > 0
    assert result.size_bytes == model_size_bytes(model) > 0


# ------------------------------------------------------------------------------------------ hostile
@needs_bwrap
def test_socket_reaches_neither_the_graders_loopback_nor_the_internet(tmp_path, weights):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    result, _, seconds = run(hostile("socket_out", tmp_path, PORT=port), weights, small())
    with pytest.raises(socket.timeout):
        listener.accept()
    listener.close()
    assert result.exit_code == 2 and "network reached: []" in result.message
    assert seconds < 30


@needs_bwrap
def test_labels_outside_the_sandbox_are_not_visible(tmp_path, weights):
    labels = tmp_path / "ta" / "labels.txt"
    labels.parent.mkdir()
    labels.write_text("SECRET-LABELS-42")
    result, _, _ = run(hostile("read_labels", tmp_path, LABELS=labels), weights, small())
    assert result.exit_code == 2 and "load_model(path) failed" in result.message
    assert "No such file" in result.message
    assert "SECRET-LABELS-42" not in result.log_tail + result.message


@needs_bwrap
def test_writes_outside_scratch_do_not_escape(tmp_path, weights):
    name = f"labkit-escape-{os.getpid()}"
    marker, repo = tmp_path / "escaped.txt", HERE.parent
    result, logits, _ = run(hostile("write_outside", tmp_path, MARKER=marker, NAME=name, REPO=repo), weights, small())
    assert result.exit_code == 0 and logits.shape == (2, 8, 32, 64)
    assert not marker.exists() and not (repo / name).exists() and not Path("/work", name).exists()
    assert "wrote /scratch/ok.txt" in result.log_tail   # its own scratch folder works


@needs_bwrap
def test_fork_bomb_is_bounded_by_the_process_limit_and_cleaned_up(tmp_path, weights):
    result, _, seconds = run(hostile("fork_bomb", tmp_path), weights, small(max_processes=24))
    assert result.exit_code == 2
    forked = int(result.message.split("forked ")[1].split()[0])
    assert forked < 24, result.message
    time.sleep(0.5)
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _uid(p) == 65534 and "sleep" not in _cmd(p)]
    assert not [p for p in leftovers if "python" in _cmd(p)]
    assert seconds < 30


def _uid(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _cmd(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.parametrize("isolation", [pytest.param("bubblewrap", marks=needs_bwrap), "limits-only"])
def test_sleep_forever_is_stopped_by_the_wall_clock(tmp_path, weights, isolation):
    result, _, seconds = run(hostile("sleep_forever", tmp_path), weights, small(start_timeout_s=8,
                                                                                 isolation=isolation))
    assert result.exit_code == 2 and "did not answer within 8 s" in result.message
    assert seconds < 20


@needs_bwrap
def test_cpu_burn_is_stopped_by_the_cpu_limit(tmp_path, weights):
    result, _, seconds = run(hostile("cpu_burn", tmp_path), weights, small(cpu_seconds=6))
    assert result.exit_code == 2 and "more than 6 s of CPU time" in result.message
    assert seconds < 25


@pytest.mark.parametrize("isolation", [pytest.param("bubblewrap", marks=needs_bwrap), "limits-only"])
def test_allocation_past_the_cap_is_out_of_memory(tmp_path, weights, isolation):
    result, _, seconds = run(hostile("memory_hog", tmp_path), weights, small(isolation=isolation))
    assert result.exit_code == 2 and "ran out of memory" in result.message
    assert result.peak_rss_kb < 2 * 2**20   # KiB: the 64 GiB were never touched
    assert seconds < 30


@needs_bwrap
def test_file_past_the_size_limit_stops_the_network(tmp_path, weights):
    result, _, _ = run(hostile("big_file", tmp_path), weights, small())
    assert result.exit_code == 2 and "wrote a file larger than 8.0 MiB" in result.message


@needs_bwrap
def test_patched_mac_counter_is_detected(tmp_path, weights):
    result, _, _ = run(hostile("patch_counter", tmp_path), weights, small())
    assert result.exit_code == 2 and "changed labkit's MAC/size counters" in result.message
    assert result.macs is None


@needs_bwrap
def test_fake_verdict_on_stdout_is_only_student_output(tmp_path, weights):
    result, logits, _ = run(hostile("fake_verdict", tmp_path), weights, small())
    assert result.exit_code == 0 and result.message == ""
    assert "Final IoU = 0.999999" in result.log_tail          # kept as the student's output, never parsed
    assert result.macs == 0 and result.size_bytes == 0        # measured, not the fake frame's 1
    assert not logits.any()                                   # the parent scores these zeros itself


# ----------------------------------------------------------------------------- the wire: one framing, both sides
def test_both_sides_frame_with_the_one_wire_module_and_it_needs_only_the_standard_library():
    import subprocess
    import sys

    from labkit.grading import sandbox, sandbox_child, sandbox_wire
    assert sandbox.send is sandbox_wire.send and sandbox.receive is sandbox_wire.receive
    assert sandbox_child.send is sandbox_wire.send and sandbox_child.receive is sandbox_wire.receive
    probe = ("import sys, labkit.grading.sandbox_wire; print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('torch', 'numpy') or m.startswith('labkit.') and m not in ('labkit.version', 'labkit.grading', "
             "'labkit.grading.sandbox_wire')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"   # the child imports it before anything heavy, and keeps it after hiding labkit


def test_a_frame_is_read_whole_and_never_a_byte_of_the_next():
    from labkit.grading.sandbox_wire import receive, send
    read_fd, write_fd = os.pipe()
    try:
        send(write_fd, {"op": "logits", "shape": [1, 1, 2, 2]}, np.arange(4, dtype=np.float32).tobytes())
        send(write_fd, {"op": "ready", "macs": 7})
        header, payload = receive(read_fd, max_payload=16, timeout_s=5)
        assert header["op"] == "logits" and np.frombuffer(payload, np.float32).tolist() == [0, 1, 2, 3]
        assert receive(read_fd, timeout_s=5) == ({"op": "ready", "macs": 7, "nbytes": 0}, b"")
        with pytest.raises(TimeoutError):   # nothing more: the deadline, not a hang
            receive(read_fd, timeout_s=0.2)
        send(write_fd, {"op": "logits"}, b"\0" * 32)
        with pytest.raises(ValueError, match="payload of 32 bytes"):   # more than the parent expects
            receive(read_fd, max_payload=16, timeout_s=5)
    finally:
        os.close(read_fd)
        os.close(write_fd)
