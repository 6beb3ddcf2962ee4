"""Run a course check script as the TA would, from a notebook or the batch grader: one way for all.

The command is always ``python checks/check_<task>.py --path FILE --json`` plus the check's own
flags, each written once here (``image_size=(64, 128)`` -> ``--image-size 64 128``). A notebook
calls :func:`call_check`, which also asserts what every lab asserts: the check ran (exit code 0 or
1, never 2 "invalid file" or 3 "no dataset") and agrees with the number the notebook measured.
The batch grader builds the same command with :func:`check_command` and reads the same verdict
with :func:`last_json_line`.

Example (a notebook's last cell)::

    check = call_check("segmentation", model_path, model="unet", data=data_root, image_size=64,
                       agree={"dice": test["dice"]})
    check.returncode, check.metrics["dice"], check.verdict["message"]
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from labkit.grading.tasks import TASKS
from labkit.paths import CHECKS_DIR

CHECK_RAN = (0, 1)  # goal reached / evaluated but below it; 2 and 3 mean the check could not grade


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


def call_check(task_name: str, path, /, *, agree: dict | None = None, tolerance: float = 1e-6,
               checks_dir=CHECKS_DIR, echo: bool = True, **flags) -> CheckRun:
    """Run the check on ``path`` in a child process, as the TA would; return a :class:`CheckRun`.

    Args:
        task_name: a key of :data:`labkit.grading.tasks.TASKS` (``"pruning"``, ``"efficient"``, ...).
        agree: ``{metric: value the notebook measured}``; each must match the check's metric within
            ``tolerance`` (an ``AssertionError`` "check and notebook disagree" otherwise).
        echo: print the check's message, its notes and its exit code.
        flags: the check's options, as in :func:`check_command` (``data=``, ``device=``, ...).

    Raises ``AssertionError`` when the check could not grade (exit code 2 or 3: its output is in the
    message) or disagrees with the notebook.
    """
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
        checked = verdict["metrics"][metric]
        assert abs(checked - value) < tolerance, (f"check and notebook disagree on {metric}: "
                                                  f"check {checked}, notebook {value}")
    return CheckRun(completed.returncode, verdict, completed.stdout, completed.stderr)
