"""A lab's gradebook from the batch grader's rows, and the course's gradebook from the labs'.

    python -m labkit gradebook lab03.csv lab04.csv --names "Lab 03" "Lab 04" --out course.csv
    python -m labkit gradebook lab03.csv lab04.csv --format canvas --out canvas_import.csv

:func:`student_scores` scores each student of one task with the Gradescope autograder's own functions
(:func:`~labkit.grading.gradescope_results.goal_tests`, :func:`~labkit.grading.gradescope_results.late_note`),
so a file earns the same points whether the batch grader or Gradescope graded it. A file the check gave
no verdict (timeout, crash, exit 3 "grader's environment problem", skipped) makes the student
"not graded": the score is left empty for the TA, never 0. :func:`write_gradebook` writes one lab's CSV;
:func:`join_gradebooks` reads several and :func:`main` writes one row per student, one column per lab.

``--format canvas`` writes what Canvas's gradebook import reads (``lib/gradebook_importer.rb`` of
instructure/canvas-lms, and the Canvas guide "How do I import grades in the Gradebook?"):

- header ``Student, ID, SIS User ID, SIS Login ID, Section``, then one column per assignment. Canvas
  matches a column to an assignment by ``Name (assignment id)`` or else by its exact name, and creates
  a new assignment for a name it does not know: give ``--names "Lab 03 (12345)"`` to be sure;
- a second row starting ``Points Possible`` with each lab's maximum;
- a student is found by ``ID`` (Canvas's internal user id), else ``SIS User ID``/``SIS Login ID``, else
  by name. labkit does not know Canvas's ids: ``ID`` is left empty and the student id of the file names
  goes to ``SIS User ID`` (``--canvas-id sis_login_id`` puts it in ``SIS Login ID``); ``Section`` is empty;
- an empty cell changes nothing in Canvas: missing and not-graded labs are left empty, so the TA grades
  them there. No total column: Canvas computes its own, and a column it does not know as read-only
  ("Current Score", "Final Points", ...) would become a new assignment.

Where it may differ: Canvas's own export adds read-only columns (scores, grades, "Integration ID") that
this file leaves out, which the importer accepts; cells go through ``batch.csv_cell``, so a name
starting with ``= + - @`` gets a leading ``'`` (the SIS id still matches).

Example:
    >>> from labkit.grading.policy import policy_from_dict
    >>> row = {"id": "42", "file": "42_pruning.pt", "status": "ok", "exit_code": 0, "seconds": 3.0,
    ...        "metrics": {"accuracy": 91.0, "sparsity": 60.0}, "message": "ok", "artifact": "pruning",
    ...        "timestamp": "2026-03-02T10:00:00+00:00", "timestamp_source": "file mtime"}
    >>> [record] = student_scores([row], "pruning", policy_from_dict({"late": {"penalty_per_day": 0.1}}),
    ...                           deadline="2026-03-01T23:59:00+00:00")
    >>> record["raw_score"], record["days_late"], record["late_penalty"], record["score"], record["status"]
    (100.0, 1, 10.0, 90.0, 'graded')
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from labkit.grading.batch import csv_cell, not_graded, outcome
from labkit.grading.gradescope_results import goal_tests, late_note
from labkit.grading.policy import Policy, days_late, parse_time
from labkit.grading.tasks import TASKS

COLUMNS = ("student_id", "name", "raw_score", "late_penalty", "score", "max_score", "status", "days_late",
           "timestamp_source", "note")
STATUSES = ("graded", "missing", "not on roster", "not graded")
CANVAS_STUDENT_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def student_scores(rows: list[dict], task: str, policy: Policy, *, roster=None, deadline: str | None = None,
                   extensions: dict | None = None) -> list[dict]:
    """One record per student: every rostered student, then ids seen but not on the roster.

    Args:
        rows: batch rows of the graded (latest) files, each with ``artifact``, ``timestamp`` (ISO 8601
            or None) and ``timestamp_source``.
        task: a key of ``TASKS``.
        policy: points, Dice tiers and late rule (:func:`labkit.grading.policy.load_policy`).
        roster: ``{student_id: name}`` or an iterable of ids; None: the students are the ids seen.
        deadline: ISO 8601 with a zone; None: nobody is late.
        extensions: ``{student_id: deadline}`` (:func:`read_extensions`), replacing ``deadline``.

    Records: ``student_id, name, status, on_roster, goals`` (goal_tests' tests with ``artifact``),
    ``raw_score, late_penalty, score`` (None when not graded), ``max_score, days_late, deadline,
    timestamp, timestamp_source, files, late_note`` (why a penalty), ``note`` (for the TA).

    Example:
        >>> [record] = student_scores([], "pruning", Policy(), roster={"7": "Ada"})
        >>> record["status"], record["score"], record["max_score"]
        ('missing', 0.0, 100.0)
    """
    for where, value in [("deadline", deadline), *((f"extension of {k}", v) for k, v in (extensions or {}).items())]:
        try:
            value and parse_time(value)  # before anything is scored
        except ValueError as error:
            raise ValueError(f"{where}: {value!r} is not an ISO 8601 time with a zone ({error})") from None
    names = dict(roster) if isinstance(roster, dict) else {str(i): "" for i in roster or ()}
    names = {str(key).strip(): value for key, value in names.items()}
    mine: dict[str, list[dict]] = {}
    for row in rows:
        mine.setdefault(str(row["id"]).strip(), []).append(row)
    ids = list(names) + sorted(i for i in mine if i not in names)
    return [_score_one(i, names.get(i, ""), mine.get(i, []), task, policy, on_roster=roster is None or i in names,
                       deadline=(extensions or {}).get(i) or deadline, extended=i in (extensions or {}))
            for i in ids]


def _score_one(student: str, name: str, rows: list[dict], task: str, policy: Policy, *, on_roster: bool,
               deadline: str | None, extended: bool) -> dict:
    artifacts = TASKS[task].artifacts
    by_artifact: dict[str, list[dict]] = {}
    for row in rows:
        by_artifact.setdefault(row.get("artifact"), []).append(row)
    problems = []  # why the TA must look: no verdict, a file of no artifact, two files for one artifact
    for artifact, found in by_artifact.items():
        files = ", ".join(Path(row["file"]).name for row in found)
        if artifact not in artifacts:
            problems.append(f"{files}: not named like any file of {task} ({', '.join(artifacts)})")
        elif len(found) > 1:
            problems.append(f"{len(found)} files for {artifact}: {files}; keep one")
        problems += [f"{Path(row['file']).name}: {outcome(row)}, no verdict ({row.get('message', '')[:200]})"
                     for row in found if not_graded(row)]
    goals = []
    for artifact in artifacts:
        found = by_artifact.get(artifact, [])
        row = found[0] if len(found) == 1 and not not_graded(found[0]) else None
        problem = ("Not graded yet: no verdict for this file; a TA will look at it." if found
                   else f"No file for {artifact} was received.")
        goals += [{"artifact": artifact, **test} for test in goal_tests(task, artifact, row, policy, problem=problem)]
    max_score = sum(policy.points_for(task).values())
    times = [row for row in rows if row.get("timestamp")]
    latest = max(times, key=lambda row: parse_time(row["timestamp"]), default=None)
    days = days_late(latest["timestamp"], deadline) if latest else 0
    if latest is not None:  # Gradescope's own rule and sentence
        factor, late = late_note(policy, {"created_at": latest["timestamp"], "assignment": {"due_date": deadline}})
    else:
        factor, late = 1.0, ("No submission time is known for these files: no late rule applied."
                             if rows and deadline else "")
    sources = "; ".join(dict.fromkeys(str(row.get("timestamp_source") or "") for row in times))
    if extended and deadline:
        late = f"Deadline {deadline} (extension). " + late
    record = {"student_id": student, "name": name, "on_roster": on_roster, "goals": goals, "max_score": max_score,
              "days_late": days, "deadline": deadline, "timestamp": latest["timestamp"] if latest else None,
              "timestamp_source": sources, "files": [Path(row["file"]).name for row in rows], "late_note": late}
    raw = sum(goal["score"] for goal in goals)
    score = round(raw * factor, 4)  # exactly results_json's score
    roster_note = "" if on_roster else "Not on the roster: check the student id in the file name. "
    if problems:
        return {**record, "status": "not graded", "raw_score": None, "late_penalty": None, "score": None,
                "note": roster_note + "Not graded, the TA must look (score left empty): " + "; ".join(problems)}
    if not rows:
        status, note = "missing", "Nothing was received: 0 points."
    else:
        status = "graded" if on_roster else "not on roster"
        note = f"{score:g} of {max_score:g} points from {', '.join(record['files'])}. {late}".strip()
    return {**record, "status": status, "raw_score": round(raw, 4), "late_penalty": round(raw - score, 4),
            "score": score, "note": roster_note + note}


def read_extensions(path: str | Path) -> dict[str, str]:
    """``{student_id: deadline}`` from a CSV ``student_id,deadline`` (ISO 8601 with a zone).

    Raises:
        ValueError: naming the file and line of a bad time, a missing column or an id given twice.
    """
    path = Path(path)
    extensions: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"student_id", "deadline"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the header 'student_id,deadline', got {reader.fieldnames}")
        for row in reader:
            where, student = f"{path}, line {reader.line_num}", (row["student_id"] or "").strip()
            if not student:
                continue
            try:
                parse_time(row["deadline"] or "")
            except ValueError as error:
                raise ValueError(f"{where}: deadline {row['deadline']!r} of {student} is not an ISO 8601 time "
                                 f"with a zone, e.g. 2026-03-08T23:59:00-08:00 ({error})") from None
            if student in extensions:
                raise ValueError(f"{where}: {student} is given twice")
            extensions[student] = row["deadline"].strip()
    return extensions


def _cells(values) -> list:
    return [csv_cell("" if v is None else v.replace("\n", " | ") if isinstance(v, str) else v) for v in values]


def write_gradebook(scores: list[dict], path: str | Path) -> Path:
    """One lab's gradebook: ``COLUMNS``, one row per record of :func:`student_scores`; empty score when not graded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(_cells(record.get(column) for column in COLUMNS) for record in scores)
    return path


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def join_gradebooks(paths, *, names=None) -> list[dict]:
    """One record per student over several labs' gradebooks (:func:`write_gradebook`'s CSVs).

    Records: ``student_id, name, scores {lab: score or None}, max_scores {lab: max}, statuses {lab: status},
    total`` (sum of the scores there are) and ``open`` (the labs with no score, and why).
    """
    paths = [Path(p) for p in paths]
    labs = list(names) if names else [p.stem for p in paths]
    if len(labs) != len(paths) or len(set(labs)) != len(labs):
        raise ValueError(f"--names: give one distinct name per gradebook ({len(paths)} files, names {labs})")
    students: dict[str, dict] = {}
    maxima: dict[str, float] = {}
    for lab, path in zip(labs, paths):
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if list(reader.fieldnames or ()) != list(COLUMNS):
                raise ValueError(f"{path}: not a labkit gradebook (columns {', '.join(COLUMNS)})")
            for row in reader:
                student = row["student_id"]
                record = students.setdefault(student, {"student_id": student, "name": "", "scores": {},
                                                       "statuses": {}})
                record["name"] = record["name"] or row["name"]
                try:
                    record["scores"][lab], maxima[lab] = _number(row["score"]), float(row["max_score"])
                except ValueError:
                    raise ValueError(f"{path}, line {reader.line_num}: score {row['score']!r} or max_score "
                                     f"{row['max_score']!r} is not a number") from None
                record["statuses"][lab] = row["status"]
    for record in students.values():
        record["max_scores"] = {lab: maxima.get(lab) for lab in labs}
        for lab in labs:
            record["scores"].setdefault(lab, None)
            record["statuses"].setdefault(lab, "not in this gradebook")
        record["total"] = round(sum(s for s in record["scores"].values() if s is not None), 4)
        record["open"] = "; ".join(f"{lab}: {record['statuses'][lab]}" for lab in labs
                                   if record["scores"][lab] is None or record["statuses"][lab] == "missing")
        record["scores"] = {lab: None if record["statuses"][lab] == "missing" else s
                            for lab, s in record["scores"].items()}
    return sorted(students.values(), key=lambda record: record["student_id"])


def write_course(records: list[dict], path: str | Path, *, format: str = "plain",
                 canvas_id: str = "sis_user_id") -> Path:
    """The joined gradebook as ``plain`` (id, name, labs, total, max_total, open) or Canvas's import CSV."""
    path = Path(path)
    labs = list(records[0]["scores"]) if records else []
    maxima = records[0]["max_scores"] if records else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if format == "canvas":
            writer.writerow(_cells([*CANVAS_STUDENT_COLUMNS, *labs]))
            writer.writerow(_cells(["Points Possible", "", "", "", "", *(maxima[lab] for lab in labs)]))
            for r in records:
                sis = [r["student_id"], ""] if canvas_id == "sis_user_id" else ["", r["student_id"]]
                writer.writerow(_cells([r["name"] or r["student_id"], "", *sis, "", *r["scores"].values()]))
        else:
            writer.writerow(_cells(["student_id", "name", *labs, "total", "max_total", "open"]))
            for r in records:
                writer.writerow(_cells([r["student_id"], r["name"], *r["scores"].values(), r["total"],
                                        sum(m for m in maxima.values() if m is not None), r["open"]]))
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit gradebook", description=__doc__.splitlines()[0])
    parser.add_argument("gradebooks", nargs="+", type=Path, help="one lab's gradebook CSV each (write_gradebook)")
    parser.add_argument("--out", type=Path, required=True, help="the course's CSV")
    parser.add_argument("--format", choices=["plain", "canvas"], default="plain")
    parser.add_argument("--names", nargs="+", help='one column name per gradebook, e.g. "Lab 03" (default: file stems)')
    parser.add_argument("--canvas-id", choices=["sis_user_id", "sis_login_id"], default="sis_user_id",
                        help="the Canvas column that holds the student id of the file names")
    return parser


def main(argv: list[str] | None = None) -> int:
    """0, or 1 when some lab of some student was not graded (the TA must look; listed on stderr)."""
    args = build_parser().parse_args(argv)
    records = join_gradebooks(args.gradebooks, names=args.names)
    write_course(records, args.out, format=args.format, canvas_id=args.canvas_id)
    print(f"wrote {args.out} ({args.format}): {len(records)} students, {len(args.gradebooks)} labs")
    open_cells = [(r["student_id"], r["open"]) for r in records if r["open"]]
    for student, why in open_cells:
        print(f"no score: {student}: {why}", file=sys.stderr)
    return 1 if any("not graded" in why for _, why in open_cells) else 0


if __name__ == "__main__":
    sys.exit(main())
