"""Grade a folder of submissions: one check process per file, in parallel, with a timeout.

    python -m labkit grade DIR --task pruning --data data/cifar10 --jobs 2 --timeout 600 --out grades.csv

Each submission runs ``checks/check_<task>.py --path FILE --json`` in its own process (its own
session, so a hang is killed with everything it started), so a crash, a hang or a hostile file in one
submission cannot affect the others. Results go to a CSV and a JSON file (same rows, sorted by student
id then file name): id, file, status, exit_code, passed, the check's metrics, message, seconds.

Student ids come from the course's file names (``123_pruning.pt`` -> ``123``,
``123_model_task1.pth`` -> ``123``) or, for a file named exactly like the artifact (``unet.pth``), from
its folder (``DIR/123/unet.pth`` -> ``123``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from labkit.grading.call_check import check_command, last_json_line
from labkit.grading.tasks import TASKS, Task
from labkit.paths import CHECKS_DIR

EXIT_TIMEOUT = 124  # what GNU timeout uses; the check itself never returns it


def student_id(path: Path, task: Task) -> str:
    """``123_pruning.pt`` -> ``"123"``; ``123/unet.pth`` -> ``"123"``; otherwise the file's stem."""
    for suffix in sorted(task.artifact_suffixes, key=len, reverse=True):
        if path.name == suffix:
            return path.parent.name
        if path.name.endswith("_" + suffix):
            return path.name[: -len(suffix) - 1]
    return path.stem


def find_submissions(folder: Path, task: Task) -> list[Path]:
    """Every ``.pt``/``.pth`` file below ``folder`` (links are not followed), sorted."""
    files = [path for path in folder.rglob("*") if path.suffix in (".pt", ".pth")
             and not path.is_symlink() and not path.is_dir()]
    return sorted(files, key=lambda path: (student_id(path, task), str(path)))


def _file_flags(path: Path, task_name: str) -> dict:
    """Per-file options a check needs beyond --path (the model or task named by the file)."""
    if task_name == "segmentation":
        return {"model": "resnet34_unet" if path.name.endswith("resnet34_unet.pth") else "unet"}
    if task_name == "efficient":
        return {"task": 2 if path.name.endswith("task2.pth") else 1}
    return {}


def grade_one(path: Path, task_name: str, *, check_arguments: list[str], timeout: float,
              checks_dir: Path = CHECKS_DIR, python: str = sys.executable) -> dict:
    """Run the check on one file; always returns a row, whatever the file does."""
    task = TASKS[task_name]
    command = check_command(task_name, path, *check_arguments, checks_dir=checks_dir, python=python,
                            **_file_flags(path, task_name))
    row = {"id": student_id(path, task), "file": str(path), "status": "ok", "exit_code": None,
           "passed": False, "metrics": {}, "message": "", "seconds": 0.0}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
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
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def grade_folder(folder: Path, task_name: str, *, check_arguments: list[str] = (), jobs: int = 1,
                 timeout: float = 600, checks_dir: Path = CHECKS_DIR, progress: bool = True) -> list[dict]:
    """Grade every submission in ``folder``; rows in a deterministic order."""
    files = find_submissions(folder, TASKS[task_name])
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(grade_one, path, task_name, check_arguments=list(check_arguments),
                               timeout=timeout, checks_dir=checks_dir) for path in files]
        for future in tqdm(as_completed(futures), total=len(futures), desc="grading", disable=not progress):
            rows.append(future.result())
    return sorted(rows, key=lambda row: (row["id"], row["file"]))


def write_results(rows: list[dict], csv_path: Path) -> Path:
    """Write ``csv_path`` (metrics flattened into ``metric_<name>`` columns) and the JSON beside it."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    metric_names = sorted({name for row in rows for name, value in row["metrics"].items()
                           if isinstance(value, (int, float, str, bool))})
    columns = ["id", "file", "status", "exit_code", "passed", *[f"metric_{m}" for m in metric_names],
               "message", "seconds"]
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            flat = {key: row[key] for key in columns if key in row}
            flat.update({f"metric_{m}": row["metrics"].get(m) for m in metric_names})
            flat["message"] = row["message"].replace("\n", " | ")
            writer.writerow(flat)
    json_path = csv_path.with_suffix(".json")
    json_path.write_text(json.dumps(rows, indent=2, default=float))
    return json_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit grade", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of submissions (searched recursively)")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--data", help="dataset root passed to the check")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=1, help="checks run at the same time")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per submission")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), help="CSV path (JSON beside it)")
    parser.add_argument("--checks-dir", type=Path, default=CHECKS_DIR, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder of submissions", file=sys.stderr)
        return 2
    check_arguments = ["--device", args.device] + (["--data", args.data] if args.data else [])
    rows = grade_folder(args.folder, args.task, check_arguments=check_arguments, jobs=args.jobs,
                        timeout=args.timeout, checks_dir=args.checks_dir)
    if not rows:
        print(f"error: no .pt/.pth files found in {args.folder}", file=sys.stderr)
        return 2
    json_path = write_results(rows, args.out)
    passed = sum(row["passed"] for row in rows)
    print(f"graded {len(rows)} submissions: {passed} passed; wrote {args.out} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
