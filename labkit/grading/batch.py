"""Grade files: one check process per file, in parallel, with a timeout; the per-file CSV.

``python -m labkit grade`` (:mod:`labkit.grading.grade_class`) calls :func:`grade_one` for every file
of a class's download; :func:`grade_folder` grades a folder of the course's file names as it is.

Each submission runs ``checks/check_<task>.py --path FILE --json`` in its own process (its own
session, so a hang is killed with everything it started), so a crash, a hang or a hostile file in one
submission cannot affect the others. Results go to a CSV and a JSON file (same rows, sorted by student
id then file name): id, file, status, exit_code, passed, the check's metrics, message, seconds.

Student ids come from the course's file names (``123_pruning.pt`` -> ``123``,
``123_model_task1.pth`` -> ``123``) or, for a file named exactly like the artifact (``unet.pth``), from
the folder it was handed in under (``DIR/123/unet.pth`` -> ``123``; ``DIR/123/run/unet.pth`` -> ``123``).

Only the course's file names for the task are graded (``labkit.grading.tasks``: ``model_task1.pth``,
``123_pruning.pt``, ...). Every other candidate (a name ending ``.pt``/``.pth``/``.pth.tar`` in any letter
case) gets a ``skipped`` row with the reason: a folder or a symbolic link with such a name, a file named
like no artifact, and training checkpoints (anything under ``checkpoints/``, ``best.pt``, ``last.pt``: a
run folder handed in whole), which never give a student id and never count as a failure. Two files for
one artifact of one student get one ``skipped`` row naming both, not a guess. For Lab 05 the
``network/network.py`` (Task 1) or ``network2/network.py`` (Task 2) beside the weights is the architecture
(graded through the sandbox, as the single-file check does). Each check runs under a memory cap
(``--memory``). CSV cells are escaped against formula injection and capped in length. :func:`not_graded`
says which rows got no verdict (skipped, timed out, crashed, or a problem of the grading machine);
:func:`summary` counts each outcome.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from labkit.grading.call_check import check_command, last_json_line
from labkit.grading.contract import EXIT_BELOW_GOAL, EXIT_ENVIRONMENT, EXIT_INVALID, EXIT_PASSED, device_fault_of
from labkit.grading.device_guard import describe, run_until_device_fault
from labkit.grading.handin_files import SUBMISSION_SUFFIXES, checkpoint_reason
from labkit.grading.limits import DEFAULT_MEMORY_BYTES, FileRefused
from labkit.grading.student_network import network_beside
from labkit.grading.tasks import TASKS, Task
from labkit.paths import CHECKS_DIR

EXIT_TIMEOUT = 124  # what GNU timeout uses; the check itself never returns it
MAX_CELL_CHARS = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# where a row came from, when the class grader (labkit.grading.grade_class) made it: CSV columns after "seconds"
PROVENANCE = ("artifact", "origin", "timestamp", "timestamp_source", "sha256", "labkit_version", "reused")
OUTCOMES = {EXIT_PASSED: "passed", EXIT_BELOW_GOAL: "below goal", EXIT_INVALID: "invalid submission",
            EXIT_ENVIRONMENT: "environment problem"}
UNKNOWN_ID = "(unknown)"  # a row no student id could be read for
def artifact_names(task: Task) -> str:
    """``model_task1.pth or model_task2.pth``: how a task's files are named, for messages."""
    return " or ".join(task.artifact_suffixes)


def student_id(path: Path, task: Task, root: Path | None = None) -> str:
    """``123_pruning.pt`` -> ``"123"``; ``123/unet.pth`` -> ``"123"``; else the folder handed in, or (unknown).

    ``root``: the graded folder; a file named exactly like the artifact takes the name of the first folder
    below it (``root/123/run/unet.pth`` -> ``123``), else of its own folder. A name that is no artifact of
    the task (``best.pt``) never gives an id of its own.
    """
    name = path.name.lower()
    top = _top_folder(path, root)
    for suffix in sorted(task.artifact_suffixes, key=len, reverse=True):
        if name == suffix.lower():
            return top or path.parent.name
        if name.endswith("_" + suffix.lower()):
            return path.name[: -len(suffix) - 1]
    return top or UNKNOWN_ID


def _top_folder(path: Path, root: Path | None) -> str | None:
    if root is None:
        return None
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def skip_reason(path: Path) -> str | None:
    """Why a candidate is not graded (a folder, a link, not a regular file), or None."""
    if path.is_symlink():
        return "a symbolic link; hand in the file itself (links are not followed)"
    if path.is_dir():
        return "a folder named like a weights file; hand in the file itself"
    if not path.is_file():
        return "not a regular file"
    return None


def find_candidates(folder: Path, task: Task) -> list[Path]:
    """Every path below ``folder`` named like a submission (``.pt``, ``.PT``, ``.pth.tar``, ...), sorted.

    Links are listed, not followed; :func:`skip_reason` says which ones are not graded.
    """
    found, stack = [], [folder]
    while stack:
        for path in sorted(stack.pop().iterdir()):
            if path.name.lower().endswith(SUBMISSION_SUFFIXES):
                found.append(path)
            elif path.is_dir() and not path.is_symlink():
                stack.append(path)
    return sorted(found, key=str)


def find_submissions(folder: Path, task: Task) -> list[Path]:
    """The gradable candidates (regular files, not links), sorted."""
    return [path for path in find_candidates(folder, task) if skip_reason(path) is None]


def network_for(path: Path, task_name: str) -> Path | None:
    """Lab 05's ``network/network.py`` (Task 1) or ``network2/network.py`` (Task 2) beside ``path``.

    The same file the single-file check finds (:func:`labkit.grading.student_network.network_beside`);
    None when there is none, or when it is a link (the check then refuses it with the reason).
    """
    if task_name != "efficient":
        return None
    try:
        return network_beside(path, _file_flags(path, task_name)["task"])
    except FileRefused:
        return None


def _file_flags(path: Path, task_name: str) -> dict:
    """Per-file options a check needs beyond --path (the model or task named by the file)."""
    name = path.name.lower()
    if task_name == "segmentation":
        return {"model": "resnet34_unet" if "resnet34_unet" in name else "unet"}
    if task_name == "efficient":
        return {"task": 2 if "task2" in name else 1}
    return {}


def grade_one(path: Path, task_name: str, *, check_arguments: list[str], timeout: float,
              checks_dir: Path = CHECKS_DIR, python: str = sys.executable,
              memory_bytes: int = DEFAULT_MEMORY_BYTES, student: str | None = None,
              threads: int | None = None) -> dict:
    """Run the check on one file under a memory cap; always returns a row, whatever the file does.

    ``student`` is the id the row carries (default: read from the course's file name); ``threads``
    caps the check's CPU threads (``OMP_NUM_THREADS``; :func:`threads_per_check`), None: torch's default.
    """
    task = TASKS[task_name]
    row = {"id": student if student is not None else student_id(path, task), "file": str(path), "status": "ok", "exit_code": None,
           "passed": False, "metrics": {}, "message": "", "seconds": 0.0}
    reason = skip_reason(path)
    if reason is not None:
        row.update(status="skipped", message=f"not graded: {reason}")
        return row
    network = network_for(path, task_name)
    command = check_command(task_name, path, *check_arguments, checks_dir=checks_dir, python=python,
                            memory=memory_bytes, network=network, **_file_flags(path, task_name))
    started = time.perf_counter()
    environment = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads),
                                                "MKL_NUM_THREADS": str(threads)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=environment)  # the check caps itself first (--memory)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the check and anything it started
        process.communicate()
        row.update(status="timeout", exit_code=EXIT_TIMEOUT,
                   message=f"timed out after {timeout:g} s; the check was stopped")
    else:
        row["exit_code"] = process.returncode
        verdict = last_json_line(stdout)
        if verdict is None:
            tail = (stderr.strip().splitlines() or ["no output"])[-1]
            row.update(status="crashed", message=f"the check ended without a verdict: {tail[:300]}")
        else:
            row.update(passed=bool(verdict.get("passed")), metrics=verdict.get("metrics", {}),
                       message=verdict.get("message", ""))
        if process.returncode == EXIT_ENVIRONMENT or verdict is None:
            row["device_fault"] = device_fault_of(verdict, stderr)
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def threads_per_check(jobs: int, *, cores: int | None = None) -> int:
    """The CPU cores shared out among ``jobs`` checks at once: each gets its share, at least one.

    Without it every check starts as many threads as the machine has cores, and ``--jobs 2`` on two
    cores is slower than ``--jobs 1`` (measured: ``benchmarks/bench_grading_throughput.py``).

    Example:
        >>> threads_per_check(2, cores=16), threads_per_check(4, cores=2)
        (8, 1)
    """
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def not_started_row(path: Path, student: str, fault: dict) -> dict:
    """A file the batch did not grade because the grading device failed on an earlier one."""
    return {"id": student, "file": str(path), "status": "not graded", "exit_code": None, "passed": False,
            "metrics": {}, "message": f"not graded: {describe(fault)}", "seconds": 0.0, "device_fault": fault}


def skipped_row(student: str, file: str, reason: str, **extra) -> dict:
    """A row for a candidate that is listed, not graded."""
    return {"id": student, "file": file, "status": "skipped", "exit_code": None, "passed": False, "metrics": {},
            "message": f"not graded: {reason}", "seconds": 0.0, **extra}


def plan_folder(folder: Path, task_name: str) -> tuple[list[tuple[Path, str]], list[dict]]:
    """``([(file to grade, student id)], [skipped rows])`` for every candidate below ``folder``.

    Graded: the course's file names for the task, one per student and artifact. Listed as skipped:
    checkpoints, names of no artifact, and two or more files for one artifact of one student (one row).
    """
    task = TASKS[task_name]
    groups: dict[tuple[str, str], list[Path]] = {}
    graded, skipped = [], []
    for path in find_candidates(folder, task):
        student = student_id(path, task, root=folder)
        checkpoint = checkpoint_reason(path.relative_to(folder))
        if checkpoint:
            skipped.append(skipped_row(_top_folder(path, folder) or UNKNOWN_ID, str(path), checkpoint, checkpoint=True))
        elif task.artifact_of(path.name) is None:
            skipped.append(skipped_row(student, str(path), f"not named like {artifact_names(task)} (a prefix such as "
                                       f"the student id is fine: 123_{task.artifact_suffixes[0]}); rename it if it "
                                       "is the hand-in"))
        elif skip_reason(path) is not None:
            graded.append((path, student))   # a link or a folder: grade_one lists it with the reason
        else:
            groups.setdefault((student, task.artifact_of(path.name)), []).append(path)
    for (student, artifact), paths in sorted(groups.items()):
        if len(paths) == 1:
            graded.append((paths[0], student))
            continue
        names = ", ".join(str(path.relative_to(folder)) for path in paths)
        skipped.append(skipped_row(student, "; ".join(map(str, paths)), f"{len(paths)} files for {artifact} of "
                                   f"student {student} ({names}); which one is the hand-in? Keep exactly one"))
    return graded, skipped


def grade_folder(folder: Path, task_name: str, *, check_arguments: list[str] = (), jobs: int = 1,
                 timeout: float = 600, checks_dir: Path = CHECKS_DIR, progress: bool = True,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES) -> list[dict]:
    """Grade the hand-in files in ``folder``; every other candidate gets a skipped row (:func:`plan_folder`).

    Rows in a deterministic order (student id, file).
    """
    files, rows = plan_folder(Path(folder), task_name)
    jobs_to_run = [partial(grade_one, path, task_name, check_arguments=list(check_arguments), timeout=timeout,
                           checks_dir=checks_dir, memory_bytes=memory_bytes, student=student,
                           threads=threads_per_check(jobs)) for path, student in files]
    rows += run_until_device_fault(jobs_to_run, jobs=jobs, progress=progress,
                                   not_started=lambda index, fault: not_started_row(*files[index], fault))
    return sorted(rows, key=lambda row: (row["id"], row["file"]))


def csv_cell(value, *, max_chars: int = MAX_CELL_CHARS):
    """A CSV cell a spreadsheet shows as text: capped, and a leading ``= + - @`` tab or CR defused.

    Example:
        >>> csv_cell("=HYPERLINK(1)"), csv_cell(-0.5), csv_cell("x" * 5, max_chars=3)
        ("'=HYPERLINK(1)", -0.5, 'xx…')
    """
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    return value if len(value) <= max_chars else value[: max_chars - 1] + "…"


def outcome(row: dict) -> str:
    """``passed``, ``below goal``, ``invalid submission``, ``environment problem``, ``timeout``, ..."""
    if row["status"] != "ok":
        return row["status"]
    return OUTCOMES.get(row["exit_code"], f"exit code {row['exit_code']}")


def not_graded(row: dict) -> bool:
    """True when the submission got no verdict (skipped, timeout, crashed, the grader's problem).

    A superseded file (a later one of the same student and artifact was graded) and a training
    checkpoint (never a hand-in) are not failures.
    """
    if row["status"] == "superseded" or row.get("checkpoint"):
        return False
    return row["status"] != "ok" or row["exit_code"] not in (EXIT_PASSED, EXIT_BELOW_GOAL, EXIT_INVALID)


def summary(rows: list[dict]) -> str:
    """``graded 5 candidates: 2 passed, 1 below goal, 1 invalid submission, 1 skipped``."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[outcome(row)] = counts.get(outcome(row), 0) + 1
    return f"graded {len(rows)} candidates: " + ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


def write_results(rows: list[dict], csv_path: Path) -> Path:
    """Write ``csv_path`` (metrics flattened into ``metric_<name>`` columns) and the JSON beside it."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    metric_names = sorted({name for row in rows for name, value in row["metrics"].items()
                           if isinstance(value, (int, float, str, bool))})
    provenance = [key for key in PROVENANCE if any(key in row for row in rows)]
    columns = ["id", *[key for key in provenance if key == "artifact"], "file", "status", "exit_code", "passed",
               *[f"metric_{m}" for m in metric_names], "message", "seconds",
               *[key for key in provenance if key != "artifact"]]
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            flat = {key: row[key] for key in columns if key in row}
            flat.update({f"metric_{m}": row["metrics"].get(m) for m in metric_names})
            flat["message"] = row["message"].replace("\n", " | ")
            writer.writerow({key: csv_cell(value) for key, value in flat.items()})
    json_path = csv_path.with_suffix(".json")
    json_path.write_text(json.dumps(rows, indent=2, default=float))
    return json_path
