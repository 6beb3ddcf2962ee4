"""A broken GPU stops a batch once, as the TA's problem: probe before scheduling, stop at the first fault.

Each check probes its device and exits 3 with a ``device_fault`` (``labkit.grading.contract``). A batch
grader adds two things: it probes the device once before it schedules anything (``python -m
labkit.device``, in a process of its own, so the grader never holds a CUDA context), and when a check
still meets a device fault it stops scheduling: the files not started get a "not graded" row naming the
fault, never an "invalid submission" row, and the grader exits 3.

Example:
    >>> probe_grading_device("cpu") is None
    True
    >>> rows = run_until_device_fault([lambda: {"id": "a", "device_fault": None}], jobs=1, progress=False,
    ...                               not_started=lambda index, fault: {})
    >>> [row["id"] for row in rows]
    ['a']
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from tqdm.auto import tqdm

EXIT_DEVICE = 3  # the checks' "environment problem": the machine's fault, not the submission's


def probe_grading_device(device: str, *, python: str = sys.executable, timeout: float = 300) -> dict | None:
    """``None`` when ``device`` works (or is the CPU), else the fault ``{kind, cause, fix, device}``."""
    if device == "cpu":
        return None
    try:
        completed = subprocess.run([python, "-m", "labkit.device", device], capture_output=True, text=True,
                                   timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"kind": "hang", "cause": f"probing {device} did not finish within {timeout:g} s",
                "fix": "check the GPU with nvidia-smi, or grade with --device cpu", "device": device}
    lines = completed.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if lines else {}
    if completed.returncode == 0:
        return None
    return answer.get("device_fault") or {"kind": "probe", "cause": (completed.stderr.strip().splitlines()
                                                                      or ["the probe failed"])[-1][:300],
                                          "fix": "grade with --device cpu", "device": device}


def describe(fault: dict) -> str:
    """One message for a device fault: the grading machine's problem, its cause and its fix."""
    return (f"the grading machine's {fault.get('device', 'GPU')} cannot be used (not the students' fault): "
            f"{fault['cause']}\nfix: {fault['fix']}")


def run_until_device_fault(jobs_to_run: list[Callable[[], dict]], *, jobs: int, progress: bool,
                           not_started: Callable[[int, dict], dict]) -> list[dict]:
    """Run ``jobs_to_run``, at most ``jobs`` at a time; after the first row with a ``device_fault``, start no more.

    A job starts only when a worker is free (nothing waits in a queue), so a fault stops the rest at
    once; each job not started gets ``not_started(index, fault)`` instead of its row.
    """
    rows, fault, pending = [], None, list(enumerate(jobs_to_run))
    bar = tqdm(total=len(jobs_to_run), desc="grading", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running = set()
        while pending or running:
            while pending and fault is None and len(running) < max(1, jobs):
                running.add(pool.submit(pending.pop(0)[1]))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                rows.append(future.result())
                bar.update()
                fault = fault or rows[-1].get("device_fault")
    bar.close()
    return rows + [not_started(index, fault) for index, _ in pending]
