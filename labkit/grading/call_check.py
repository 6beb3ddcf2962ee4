"""Run a course check script as the TA would, from a notebook or the batch grader: one way for all.

The command is always ``python checks/check_<task>.py --path FILE --json`` plus the check's own
flags, each written once here (``image_size=(64, 128)`` -> ``--image-size 64 128``). A notebook
calls :func:`call_check`, which also asserts what every lab asserts: the check ran (exit code 0 or
1, never 2 "invalid file" or 3 "no dataset") and agrees with the number the notebook measured.
The batch grader builds the same command with :func:`check_command` and reads the same verdict
with :func:`last_json_line`.

The agreement is meant to be exact, so the notebook passes the check its own ``device`` and
``batch_size`` (the check then evaluates as the notebook did), and each metric is held to the
tolerance :data:`AGREEMENT` states for those conditions: exact on the CPU with the same batch
(up to float rounding of two implementations), a stated tolerance where kernels may differ (CUDA)
or the check cannot evaluate where the notebook did (the sandbox's CPU after a GPU notebook).

Example (a notebook's last cell)::

    check = call_check("segmentation", model_path, model="unet", data=data_root, image_size=64,
                       device=device.type, batch_size=test_loader.batch_size, agree={"dice": test["dice"]})
    check.returncode, check.metrics["dice"], check.verdict["message"]
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from labkit.grading.tasks import TASKS
from labkit.paths import CHECKS_DIR

CHECK_RAN = (0, 1)  # goal reached / evaluated but below it; 2 and 3 mean the check could not grade


@dataclass(frozen=True)
class Agreement:
    """How far a check's number of one metric may be from the notebook's, by the conditions it ran in."""
    cpu: float    # both on the CPU, same batch size
    cuda: float   # both on CUDA, same batch size: cuDNN may pick other kernels in another process
    other: float  # another device (e.g. the sandbox's CPU after a GPU notebook)
    why: str


# The cpu column is what every SMOKE notebook run holds the check to (the kit's notebook tests). The cuda and other
# columns are reasoned bounds, not measured: no GPU has run these notebooks yet.
_FLOAT_SCORE = ("a mean of float scores: the notebook's code and the grader's (labkit.grading.reference) round "
                "differently (1e-6); on CUDA or across devices other kernels round logits differently, and the "
                "pixels whose logit is that close to a decision flip")
AGREEMENT = {
    "accuracy": Agreement(0.0, 0.02, 0.1, "percent of the test images predicted right, a count: the same "
                          "predictions give the same number; 0.02 is 2 of 10,000 images whose top two logits "
                          "are within rounding of each other, 0.1 is 10"),
    "sparsity": Agreement(0.0, 0.0, 0.0, "zeros counted in the file's weights: no device or batch involved"),
    "dice": Agreement(1e-6, 1e-4, 1e-3, _FLOAT_SCORE),
    "miou": Agreement(1e-6, 1e-4, 1e-3, _FLOAT_SCORE),
}


def agreement_tolerance(metric: str, *, measured_on: str, checked_on: str) -> float:
    """The :data:`AGREEMENT` tolerance of ``metric`` when the notebook measured on ``measured_on``
    and the check evaluated on ``checked_on`` (``"cpu"``/``"cuda"``), both with the same batch size.

    Example:
        >>> agreement_tolerance("dice", measured_on="cpu", checked_on="cpu")
        1e-06
        >>> agreement_tolerance("miou", measured_on="cuda", checked_on="cpu")  # the sandbox runs on the CPU
        0.001
    """
    if metric not in AGREEMENT:
        raise ValueError(f"no stated tolerance for {metric!r} (the stated ones: {', '.join(AGREEMENT)}); "
                         "pass call_check(..., tolerance={...}) with the reason beside it")
    agreement = AGREEMENT[metric]
    if measured_on != checked_on:
        return agreement.other
    return agreement.cuda if checked_on == "cuda" else agreement.cpu


def _device_type(device) -> str:
    name = str(device)
    if name == "auto":
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name.split(":")[0]


def check_command(task_name: str, path, /, *extra: str, checks_dir=CHECKS_DIR, python: str = sys.executable,
                  **flags) -> list[str]:
    """``[python, checks/check_<task>.py, --path, PATH, --json, --flag value ..., *extra]``.

    ``flags`` are the check's options by their Python names (``image_size=256``, ``task=2``,
    ``device="cpu"``); a list or tuple value gives several words, ``None`` leaves the flag out.

    Example:
        >>> check_command("efficient", "m.pth", task=2, image_size=(64, 128), python="python")[2:]
        ['--path', 'm.pth', '--json', '--task', '2', '--image-size', '64', '128']
    """
    if task_name not in TASKS:
        raise ValueError(f"no check for task {task_name!r}; the tasks are {', '.join(sorted(TASKS))}")
    command = [python, str(Path(checks_dir) / TASKS[task_name].script), "--path", str(path), "--json"]
    for name, value in flags.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        command += ["--" + name.replace("_", "-"), *(str(item) for item in values)]
    return command + list(extra)


def last_json_line(text: str) -> dict | None:
    """The last line of ``text`` that is a JSON object (a check's ``--json`` verdict), else ``None``."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


@dataclass
class CheckRun:
    """A finished check: its exit code (named like ``subprocess``'s), its ``--json`` verdict, its output."""
    returncode: int
    verdict: dict  # task, passed, message, metrics, notes, exit_code, versions
    stdout: str = ""
    stderr: str = ""

    @property
    def metrics(self) -> dict:
        return self.verdict["metrics"]


def call_check(task_name: str, path, /, *, agree: dict | None = None, measured_on: str | None = None,
               tolerance: float | Mapping[str, float] | None = None, checks_dir=CHECKS_DIR, echo: bool = True,
               **flags) -> CheckRun:
    """Run the check on ``path`` in a child process, as the TA would; return a :class:`CheckRun`.

    Args:
        task_name: a key of :data:`labkit.grading.tasks.TASKS` (``"pruning"``, ``"efficient"``, ...).
        agree: ``{metric: value the notebook measured}``, each compared with the check's. Pass the
            check the notebook's ``device=`` and ``batch_size=`` (as flags) so that it evaluates the
            same way; each metric must then match within :func:`agreement_tolerance`
            (an ``AssertionError`` "check and notebook disagree" otherwise).
        measured_on: the device the notebook measured ``agree`` on, where the check evaluates
            elsewhere than its ``device=`` flag says (a student's network.py runs in the sandbox, on
            the CPU: pass ``device="cpu", measured_on=device.type``). Default: the ``device`` flag.
        tolerance: a number or ``{metric: number}`` instead of the stated tolerances (say why).
        echo: print the check's message, its notes, its exit code and the agreement.
        flags: the check's options, as in :func:`check_command` (``data=``, ``device=``, ``batch_size=``, ...).

    Raises ``AssertionError`` when the check could not grade (exit code 2 or 3: its output is in the
    message) or disagrees with the notebook, ``ValueError`` when ``agree`` is given without the
    ``device`` and ``batch_size`` it was measured with (and no ``tolerance``).
    """
    tolerances = _tolerances(agree or {}, tolerance, flags, measured_on)
    completed = subprocess.run(check_command(task_name, path, checks_dir=checks_dir, **flags),
                               capture_output=True, text=True)
    verdict = last_json_line(completed.stdout)
    assert completed.returncode in CHECK_RAN and verdict is not None, completed.stdout + completed.stderr
    if echo:
        print(verdict["message"])
        for note in verdict.get("notes", []):
            print(f"note: {note}")
        print(f"(check exit code {completed.returncode})")
    for metric, value in (agree or {}).items():
        checked, allowed = verdict["metrics"][metric], tolerances[metric]
        assert abs(checked - value) <= allowed, (f"check and notebook disagree on {metric}: check {checked}, "
                                                 f"notebook {value}, more than the tolerance {allowed:g}")
    if echo and agree:
        print("the check agrees with the notebook: " + ", ".join(
            f"{metric} within {tolerances[metric]:g}" for metric in agree) + _conditions(flags, measured_on))
    return CheckRun(completed.returncode, verdict, completed.stdout, completed.stderr)


def _tolerances(agree: dict, tolerance, flags: dict, measured_on: str | None) -> dict:
    """``{metric: tolerance}`` for ``agree``: the explicit ``tolerance``, else the stated one."""
    if tolerance is not None:
        return {metric: (tolerance[metric] if isinstance(tolerance, Mapping) else tolerance) for metric in agree}
    if not agree:
        return {}
    missing = [name for name in ("device", "batch_size") if flags.get(name) is None]
    if missing:
        raise ValueError(f"call_check(agree=...) compares the check with the notebook: pass the "
                         f"{' and '.join(missing)} the notebook measured with "
                         "(e.g. device=device.type, batch_size=test_loader.batch_size), so the check "
                         "evaluates the same way, or a tolerance= with its reason")
    checked_on = _device_type(flags["device"])
    measured = _device_type(measured_on) if measured_on is not None else checked_on
    return {metric: agreement_tolerance(metric, measured_on=measured, checked_on=checked_on) for metric in agree}


def _conditions(flags: dict, measured_on: str | None) -> str:
    if flags.get("device") is None or flags.get("batch_size") is None:
        return ""
    where = _device_type(flags["device"])
    measured = _device_type(measured_on) if measured_on is not None else where
    devices = where if measured == where else f"notebook on {measured}, check on {where}"
    return f" ({devices}, batch {flags['batch_size']})"
