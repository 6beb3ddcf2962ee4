"""What Gradescope's ``run_autograder`` runs: labkit's checks on one submission -> ``results.json``.

    python3 -m labkit.grading.gradescope_results --source /autograder/source --root /autograder

1. Find the course's file names in ``ROOT/submission`` (any folder depth): ``<id>_pruning.pt`` (or
   ``.pth``), ``<id>_unet.pth``, ``model_task1.pth`` with ``network/network.py`` beside it, ...
2. Run each file's check as the batch grader does (:func:`labkit.grading.batch.grade_one`: its own
   process and session, ``--json``, the memory cap, a timeout; a student's ``network.py`` only in the
   sandbox, and only under bubblewrap unless the policy says ``sandbox: limits-only``).
3. Write ``ROOT/results/results.json`` in Gradescope's format: one test per goal
   (``GRADED_GOALS``, points from the policy), the check's message and hint as the test's output,
   ``leaderboard`` from ``TASKS[task].ranking`` among files that reached the goals, ``execution_time``,
   the late rule applied to ``score`` from ``ROOT/submission_metadata.json``.

Who is at fault decides the outcome:

- the student's (exit 2, a missing file, a wrong file name, two files for one artifact): visible
  failed tests that say why in plain words; that file's goals earn nothing;
- the grading machine's (exit 3, a check killed by its timeout or ended without a verdict, no
  bubblewrap for a ``network.py``): NO results.json. Gradescope then shows "The autograder failed to
  execute correctly" and records an autograder error (``autograder_error: true`` in later metadata,
  not counted as an attempt) instead of a score, so a broken image never hands out zeros. The cause
  goes to stdout (Gradescope shows it to the TA) and to ``results/autograder_error.json``; exit code 3.

Example (a check's row, as :func:`labkit.grading.batch.grade_one` returns it):
    >>> row = {"file": "42_pruning.pt", "status": "ok", "exit_code": 0, "seconds": 3.1,
    ...        "metrics": {"accuracy": 91.0, "sparsity": 60.0}, "message": "Congratulations! ..."}
    >>> results = results_json("pruning", {"pruning": row}, {}, Policy(), metadata={})
    >>> results["score"], [test["status"] for test in results["tests"]], results["leaderboard"][0]["order"]
    (100.0, ['passed', 'passed', 'passed'], 'desc')
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import labkit
from labkit.grading.batch import SUBMISSION_SUFFIXES, grade_one, network_for, skip_reason
from labkit.grading.contract import EXIT_BELOW_GOAL, EXIT_ENVIRONMENT, EXIT_INVALID, EXIT_PASSED
from labkit.grading.limits import DEFAULT_MEMORY_BYTES, parse_memory
from labkit.grading.policy import STOP_EARLY_S, Policy, days_late, graded_before, parse_time, policy_from_dict
from labkit.grading.tasks import GRADED_GOALS, TASKS, credit_for, score_for

CONFIG = "autograder.json"       # written by `python -m labkit gradescope` beside this package in the zip
MAX_OUTPUT_CHARS = 8000          # per test; Gradescope collapses long output, this keeps it readable
_EPOCH = parse_time("1970-01-01T00:00:00+00:00")  # a previous submission without a time sorts first


class AutograderError(RuntimeError):
    """The grading machine's problem: no score is written, the TA sees the cause."""


# ----------------------------------------------------------------------------- finding the files

def artifact_of(path: Path, task_name: str) -> str | None:
    """The artifact a file is named as (``42_resnet34_unet.pth`` -> ``"resnet34_unet"``), or None.

    Example:
        >>> artifact_of(Path("42_resnet34_unet.pth"), "segmentation"), artifact_of(Path("my.pt"), "pruning")
        ('resnet34_unet', None)
    """
    name = path.name.lower()
    for suffix in sorted(TASKS[task_name].artifact_suffixes, key=len, reverse=True):
        if name == suffix or name.endswith("_" + suffix):
            return suffix.split(".")[0]
    return None


def find_files(submission: Path, task_name: str) -> tuple[dict, dict]:
    """``({artifact: path}, {artifact: why it cannot be graded})`` for every artifact of the task."""
    candidates = sorted(path for path in submission.rglob("*")
                        if path.name.lower().endswith(SUBMISSION_SUFFIXES) and "__MACOSX" not in path.parts)
    task = TASKS[task_name]
    found, problems = {}, {}
    for artifact in task.artifacts:
        suffixes = [s for s in task.artifact_suffixes if s.split(".")[0] == artifact]
        names = f"{' or '.join(suffixes)} (a prefix such as your student id is fine: 123_{suffixes[0]})"
        mine = [path for path in candidates if artifact_of(path, task_name) == artifact]
        usable = [path for path in mine if skip_reason(path) is None]
        if len(usable) == 1:
            found[artifact] = usable[0]
        elif len(usable) > 1:
            problems[artifact] = (f"{len(usable)} files are named like {suffixes[0]}: "
                                  f"{', '.join(_shown(p, submission) for p in usable)}. Hand in one.")
        elif mine:
            problems[artifact] = f"{_shown(mine[0], submission)} is {skip_reason(mine[0])}."
        else:
            others = [_shown(p, submission) for p in candidates if artifact_of(p, task_name) is None]
            problems[artifact] = (f"No file named {names} in your submission. "
                                  + (f"Found {', '.join(others)}: rename it to the course's file name."
                                     if others else "Upload your state_dict under the course's file name."))
    return found, problems


def _shown(path: Path, submission: Path) -> str:
    return path.relative_to(submission).as_posix()


# ----------------------------------------------------------------------------- results.json

def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT_CHARS else text[: MAX_OUTPUT_CHARS - 1] + "…"


def _measured(goal, value) -> str:
    if goal.minimum is not None and goal.minimum > 1:  # a percentage, as the course prints it
        return f"{value:.2f} % (goal ≥ {goal.minimum:g} %)"
    return f"{value:.4f} (goal ≥ {goal.minimum:.2f})"


def goal_tests(task_name: str, artifact: str, row: dict | None, policy: Policy, *, problem: str = "") -> list:
    """The tests of one artifact's goals from its check's row (None with ``problem``: not graded)."""
    points = policy.points_for(task_name)
    graded = row is not None and row["exit_code"] in (EXIT_PASSED, EXIT_BELOW_GOAL)
    metrics = row["metrics"] if row else {}
    goals = [goal for goal in GRADED_GOALS[task_name] if goal.artifact == artifact]
    loads = next(goal.name for goal in goals if goal.metric is None)
    tests = []
    for goal in goals:
        score, met = score_for(goal, metrics, graded=graded, points=points[goal.key], tiers=policy.dice_tiers)
        if goal.metric is None:
            output = f"{Path(row['file']).name} was read and loaded." if graded else (row or {}).get("message", problem)
        elif not graded:
            output = f"Not evaluated: the file could not be graded (see \"{loads}\")."
        else:
            value = metrics.get(goal.metric)
            line = f"{goal.metric}: " + (_measured(goal, value) if isinstance(value, (int, float)) else "not measured")
            if goal.tiered and isinstance(value, (int, float)):
                line += f" -> {credit_for(value, policy.dice_tiers)[1]}"
            output = f"{line}\n\n{row['message']}"
        tests.append({"name": goal.name, "score": round(score, 4), "max_score": points[goal.key],
                      "status": "passed" if met else "failed", "output": _clip(output),
                      "output_format": "text", "visibility": policy.visibility})
    return tests


def leaderboard(task_name: str, rows: dict) -> list:
    """The course's ranking metric of the first file that reached its goals (exit 0), else nothing."""
    ranking = TASKS[task_name].ranking
    if ranking is None:
        return []
    for row in rows.values():
        value = (row or {}).get("metrics", {}).get(ranking.metric)
        if (row and row["exit_code"] == EXIT_PASSED and isinstance(value, (int, float))
                and not isinstance(value, bool) and math.isfinite(value)):
            return [{"name": ranking.label, "value": value, "order": "desc" if ranking.higher_is_better else "asc"}]
    return []


def late_note(policy: Policy, metadata: dict) -> tuple[float, str]:
    """``(fraction of the points kept, what to tell the student)`` from the submission's time."""
    if policy.late.penalty_per_day == 0 and policy.late.max_days is None:
        return 1.0, ""
    if not metadata.get("created_at"):
        return 1.0, "No submission time was given (submission_metadata.json): no late rule applied."
    days = days_late(metadata["created_at"], (metadata.get("assignment") or {}).get("due_date"))
    factor = policy.late_factor(days)
    if days == 0:
        return 1.0, ""
    return factor, (f"Submitted {days} started day(s) after the due date: the course's late rule "
                    f"(-{policy.late.penalty_per_day:.0%} per day"
                    + (f", nothing after {policy.late.max_days} days" if policy.late.max_days is not None else "")
                    + f") keeps {factor:.0%} of the points.")


def results_json(task_name: str, rows: dict, problems: dict, policy: Policy, *, metadata: dict,
                 seconds: float = 0.0) -> dict:
    """Gradescope's results.json from each artifact's check row (or its problem)."""
    tests, files = [], {}
    for artifact in TASKS[task_name].artifacts:
        row = rows.get(artifact)
        tests += goal_tests(task_name, artifact, row, policy, problem=problems.get(artifact, ""))
        if row is not None:
            files[artifact] = {"file": Path(row["file"]).name, "exit_code": row["exit_code"],
                               "seconds": row["seconds"], "metrics": {k: v for k, v in row["metrics"].items()
                                                                       if isinstance(v, (int, float, str, bool))}}
    raw = sum(test["score"] for test in tests)
    factor, late = late_note(policy, metadata)
    total = sum(test["max_score"] for test in tests)
    lines = [f"labkit {task_name} autograder: {raw * factor:.2f} of {total:g} points.", late]
    results = {"score": round(raw * factor, 4), "execution_time": int(round(seconds)),
               "output": "\n".join(line for line in lines if line), "output_format": "text", "tests": tests,
               "extra_data": {"task": task_name, "late_factor": factor, "files": files}}
    if board := leaderboard(task_name, rows):
        results["leaderboard"] = board
    return results


def over_limit(policy: Policy, metadata: dict) -> dict | None:
    """Past ``max_submissions``: the last graded result, kept, with a note (Gradescope's advice); else None."""
    if policy.max_submissions is None or graded_before(metadata) < policy.max_submissions:
        return None
    previous = sorted((p for p in metadata.get("previous_submissions") or [] if not p.get("autograder_error")),
                      key=lambda p: parse_time(p["submission_time"]) if p.get("submission_time") else _EPOCH)[-1]
    kept = dict(previous.get("results") or {"score": previous.get("score", 0.0)})
    note = (f"You have used the {policy.max_submissions} graded submissions the course allows; this one "
            "was not graded and your last graded result stands.")
    kept["output"] = note + ("\n\n" + kept["output"] if kept.get("output") else "")
    return kept


# ----------------------------------------------------------------------------- one run

def grade_submission(task_name: str, submission: Path, *, data: Path, policy: Policy, checks_dir: Path,
                     python: str = sys.executable, started: float | None = None) -> tuple[dict, dict]:
    """Run the check on every artifact found; ``({artifact: row}, {artifact: problem})``.

    The checks share the run's ``policy.timeout_s`` (from ``started``, a ``time.monotonic()``) and stop
    ``STOP_EARLY_S`` before it.
    """
    deadline = (time.monotonic() if started is None else started) + policy.timeout_s - STOP_EARLY_S
    found, problems = find_files(submission, task_name)
    memory = parse_memory(policy.memory) if policy.memory else DEFAULT_MEMORY_BYTES
    rows = {}
    for artifact, path in found.items():
        if network_for(path, task_name) is not None and policy.sandbox == "bubblewrap":
            from labkit.grading.sandbox import isolation_available
            if (available := isolation_available())["isolation"] != "bubblewrap":
                raise AutograderError(f"{path.name} comes with a network.py, which runs only under bubblewrap "
                                      f"and {available['detail']}. Fix the image (setup.sh) or accept "
                                      "'sandbox: limits-only' in course.yaml.")
        if (left := deadline - time.monotonic()) <= 0:
            raise AutograderError(f"{path.name}: no time left of timeout_s {policy.timeout_s:g} s; raise it "
                                  "(course.yaml) with Gradescope's autograder timeout")
        row = grade_one(path, task_name, check_arguments=["--device", "cpu", "--data", str(data)],
                        timeout=left, checks_dir=checks_dir, python=python, memory_bytes=memory)
        if row["status"] != "ok" or row["exit_code"] not in (EXIT_PASSED, EXIT_BELOW_GOAL, EXIT_INVALID):
            reason = {"timeout": f"the check was stopped {STOP_EARLY_S:g} s before timeout_s",
                      "crashed": "the check ended without a verdict"}.get(
                row["status"], f"the check exited {row['exit_code']} (environment problem)")
            raise AutograderError(f"{path.name}: {reason}: {row['message']}")
        rows[artifact] = row
    return rows, problems


def run_autograder(source: Path, root: Path, *, python: str = sys.executable) -> int:
    """Grade ``root/submission`` as ``source/autograder.json`` says; 0 with results.json, 3 on an autograder error."""
    started = time.monotonic()
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results.json").unlink(missing_ok=True)
    config = json.loads((source / CONFIG).read_text())
    task_name, policy = config["task"], policy_from_dict(config.get("policy"), source=CONFIG)
    metadata_path = root / "submission_metadata.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    print(f"labkit autograder, task {task_name}: labkit from {Path(labkit.__file__).parent}, python {sys.executable}")
    try:
        results = over_limit(policy, metadata)
        if results is None:
            rows, problems = grade_submission(task_name, root / "submission", data=source / config["data"],
                                              policy=policy, checks_dir=source / "checks", python=python,
                                              started=started)
            for artifact, row in rows.items():
                print(f"checked {row['file']}: exit code {row['exit_code']} in {row['seconds']} s\n{row['message']}\n")
            results = results_json(task_name, rows, problems, policy, metadata=metadata,
                                   seconds=time.monotonic() - started)
    except AutograderError as error:
        cause = f"AUTOGRADER ERROR (the grading machine's problem, not the student's): {error}"
        print(cause)
        (results_dir / "autograder_error.json").write_text(json.dumps(
            {"autograder_error": True, "task": task_name, "cause": str(error)}, indent=2))
        return EXIT_ENVIRONMENT
    partial = results_dir / "results.json.partial"
    partial.write_text(json.dumps(results, indent=2, default=float))
    partial.replace(results_dir / "results.json")  # Gradescope never reads half a file
    print(results["output"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labkit.grading.gradescope_results",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the unpacked autograder (/autograder/source)")
    parser.add_argument("--root", type=Path, required=True, help="Gradescope's root (/autograder)")
    args = parser.parse_args(argv)
    return run_autograder(args.source.resolve(), args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
