"""Load many untrusted state_dict files safely in one process: each first in a memory-capped child.

Used by the similarity report (:mod:`labkit.grading.similarity`), which reads a whole class's files
in the TA's own process. A check grades one file per process under its own ``--memory`` cap and
loads through ``labkit.grading.contract.read_submission`` instead.

:func:`safe_load_state_dict` inspects the file once (``labkit.torch_file.inspect_torch_file``, by
its declarations); then :func:`load_in_child` runs ``torch.load`` and its checks
(``labkit.torch_file.load_inspected``) in ``python -m labkit.grading.isolated_load`` under an
address-space cap and a wall clock, without inspecting again; only when the child loaded it does
this process load it (``mmap=True``: pages are read, not copied) and check the tensors again. A
refused file is a ``FileRefused`` (exit 2); a problem of the machine (cannot start the child, out
of memory loading a file that passed every check) an ``EnvironmentProblem`` (exit 3).

Example:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/bad.pth"
    >>> torch.save({"w": torch.zeros(3, dtype=torch.int64)}, path)
    >>> safe_load_state_dict(path, isolate=False)
    Traceback (most recent call last):
    ...
    labkit.torch_file.FileRefused: bad.pth: 'w' has dtype int64; this check grades ...
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from labkit.grading.exits import EXIT_ENVIRONMENT, EXIT_INVALID, EnvironmentProblem
from labkit.grading.limits import DEFAULT_MEMORY_BYTES, apply_memory_cap
from labkit.torch_file import ArchiveReport, FileRefused, Limits, MiB, inspect_torch_file, load_inspected


def safe_load_state_dict(path, limits: Limits | None = None, *, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                         isolate: bool = True, timeout_s: float = 120.0, notes: list | None = None) -> dict:
    """Inspect, then load a state_dict: ``{name: tensor}`` on the CPU, or FileRefused / EnvironmentProblem.

    With ``isolate`` (default) torch.load first runs in a child process under an address-space cap of
    ``memory_bytes`` and a ``timeout_s`` wall clock (:func:`load_in_child`).
    """
    limits = limits or Limits()
    report = inspect_torch_file(path, limits)
    if notes is not None:
        notes.extend(report.notes)
    if isolate:
        outcome = load_in_child(path, limits, memory_bytes=memory_bytes, timeout_s=timeout_s)
        if outcome["exit_code"] == EXIT_INVALID:
            raise FileRefused(outcome["message"])
        if outcome["exit_code"] != 0:
            raise EnvironmentProblem(outcome["message"])
    return _load(report)


def _load(report: ArchiveReport) -> dict:
    try:
        return load_inspected(report, mmap=True)
    except MemoryError:
        raise EnvironmentProblem(f"out of memory loading {Path(report.path).name}, a file that passed every size "
                                 "check; raise --memory") from None


def load_in_child(path, limits: Limits | None = None, *, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                  timeout_s: float = 120.0) -> dict:
    """``torch.load`` + checks of ``path`` in a child under the memory cap; returns its outcome.

    ``{"exit_code": 0 | 2 | 3, "message": str, "peak_rss_kb": int, "seconds": float}``. The file is
    not inspected here (call :func:`~labkit.torch_file.inspect_torch_file` first); this measures
    what torch.load does.
    """
    limits = limits or Limits()
    command = [sys.executable, "-s", "-m", "labkit.grading.isolated_load", str(path), json.dumps(asdict(limits))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                 start_new_session=True, preexec_fn=lambda: apply_memory_cap(memory_bytes))
    except OSError as error:
        raise EnvironmentProblem(f"cannot start the loader process ({error})") from None
    output, peak, timed_out = read_and_reap(child, timeout_s=timeout_s, max_output=MiB)
    if timed_out:
        return {"exit_code": EXIT_ENVIRONMENT, "message": f"loading {path} took over {timeout_s:.0f} s",
                "peak_rss_kb": peak, "seconds": time.monotonic() - start}
    seconds = time.monotonic() - start
    try:
        outcome = json.loads(output.decode().strip().splitlines()[-1])
        outcome["exit_code"] = int(outcome["exit_code"])
    except (ValueError, IndexError, KeyError):
        memory_hint = " (it ran out of memory: raise --memory)" if child.returncode != 0 else ""
        outcome = {"exit_code": EXIT_ENVIRONMENT,
                   "message": f"the loader process for {Path(path).name} ended with code {child.returncode} "
                              f"without an answer{memory_hint}"}
    outcome.update(peak_rss_kb=peak, seconds=seconds)
    return outcome


def read_and_reap(child: subprocess.Popen, *, timeout_s: float, max_output: int = MiB,
                  stream=None) -> tuple[bytes, int, bool]:
    """Read ``child``'s stdout (or ``stream``) to its end, keeping at most ``max_output`` bytes, then reap it.

    After ``timeout_s`` seconds the child's whole process group is killed (SIGKILL). Returns
    ``(output, peak_rss_kb, timed_out)``; the peak is the child's own ``ru_maxrss`` (and of the
    descendants it waited for), from ``os.wait4``.
    """
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        try:
            os.killpg(child.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    stream = stream if stream is not None else child.stdout
    chunks, kept = [], 0
    try:
        while chunk := stream.read1(65536) if hasattr(stream, "read1") else os.read(stream.fileno(), 65536):
            if kept < max_output:
                chunks.append(chunk[:max_output - kept])
                kept += len(chunks[-1])
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    try:
        os.killpg(child.pid, 9)   # anything the child left behind in its group
    except (ProcessLookupError, PermissionError):
        pass
    return b"".join(chunks), usage.ru_maxrss, timed_out.is_set()


def _child_main(argv: list[str]) -> int:
    """The child: load the file the parent inspected (``argv``: path, Limits as JSON) and print one JSON answer."""
    path, limits = Path(argv[0]), Limits(**json.loads(argv[1]))
    limits.allowed_dtypes, limits.integer_key_suffixes = tuple(limits.allowed_dtypes), tuple(limits.integer_key_suffixes)
    report = ArchiveReport(str(path), path.stat().st_size, limits=limits)   # the parent inspected it: not again
    try:
        state = _load(report)
        answer = {"exit_code": 0, "message": f"{len(state)} entries loaded and checked"}
    except FileRefused as error:
        answer = {"exit_code": EXIT_INVALID, "message": str(error)}
    except EnvironmentProblem as error:
        answer = {"exit_code": EXIT_ENVIRONMENT, "message": str(error)}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
