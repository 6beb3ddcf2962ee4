"""One Markdown feedback file per student, holding that student's data and nobody else's.

:func:`write_feedback` writes ``FOLDER/<student id>.md`` for each record of
:func:`labkit.grading.gradebook.student_scores`: the verdict of each of the student's files, its
metrics and the check's message (with its hint), the points of each goal (the Gradescope tests of
:func:`~labkit.grading.gradescope_results.goal_tests`), the late penalty and why, the score.

Only the student's own rows (``row["id"]``) and record are read for their file. File names come
from the id: characters other than letters, digits, ``. _ -`` become ``_``; an id with a path
separator, a NUL or that is ``.``/``..`` is refused, as are two ids that would share a file. Every
file starts with :data:`MARKER`; a file already there is replaced only when it starts with it, so a
TA's own notes in the folder are never overwritten, and nothing is ever deleted.

Example:
    >>> safe_name("s123"), safe_name("Ana María")
    ('s123', 'Ana_Mar_a')
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from labkit.grading.batch import outcome
from labkit.grading.policy import Policy
from labkit.grading.tasks import format_value

MARKER = "<!-- labkit feedback: written by labkit.grading.feedback; the next run replaces this file -->"


def safe_name(student_id: str) -> str:
    """The file stem for ``student_id``; ValueError for an id that could leave the folder.

    Example:
        >>> safe_name("../7")
        Traceback (most recent call last):
        ...
        ValueError: student id '../7' cannot name a feedback file (a path separator, NUL, '.' or '..')
    """
    text = str(student_id)
    if not text.strip() or text in (".", "..") or any(c in text for c in "/\\\0"):
        raise ValueError(f"student id {text!r} cannot name a feedback file (a path separator, NUL, '.' or '..')")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    return "_" + name[1:] if name.startswith(".") else name  # no hidden files


def _ours(path: Path) -> bool:
    """Whether ``path`` is a plain file labkit wrote (its first line is MARKER)."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().rstrip("\n") == MARKER


def _block(text: str) -> list[str]:
    fence = "~~~~" if "```" in text else "```"
    return [f"{fence}text", text.strip() or "(no message)", fence]


def feedback_text(record: dict, rows: list[dict], task: str, *, policy: Policy) -> str:
    """The Markdown of one student from their record and their own rows (``policy``: the late rule shown)."""
    student = record["student_id"]
    rows = [row for row in rows if str(row["id"]).strip() == student]  # never another student's
    lines = [MARKER, f"# {task}: feedback for {student}", ""]
    score = record["score"]
    lines.append(f"**Score: {score:g} of {record['max_score']:g} points**" if score is not None else
                 f"**Score: not yet given (of {record['max_score']:g} points)**: a file of yours could not be "
                 "graded automatically; a TA will look at it.")
    if record["status"] == "missing":
        lines.append("\nNo file of yours was received for this task.")
    lines += ["", "## Your files", ""]
    for row in rows:
        name = Path(row["file"]).name
        lines.append(f"### {name}")
        lines.append(f"- verdict: {outcome(row)} (exit code {row.get('exit_code')}), {row.get('seconds', 0):g} s")
        if row.get("timestamp"):
            lines.append(f"- submitted: {row['timestamp']} ({row.get('timestamp_source') or 'source unknown'})")
        metrics = {k: v for k, v in (row.get("metrics") or {}).items() if isinstance(v, (int, float, str, bool))}
        if metrics:
            lines.append("- metrics: " + ", ".join(f"{k} {format_value(v)}" for k, v in sorted(metrics.items())))
        lines += ["- the check's message:", "", *_block(row.get("message", "")), ""]
    if not rows:
        lines.append("(none)\n")
    lines += ["## Points per goal", "", "| goal | points | status | measured |", "|---|---|---|---|"]
    for goal in record["goals"]:
        first = (goal["output"].strip().splitlines() or [""])[0].replace("|", "\\|")
        points, status = ((f"{goal['score']:g}", goal["status"]) if score is not None else ("–", "not graded yet"))
        lines.append(f"| {goal['name']} | {points} / {goal['max_score']:g} | {status} | {first} |")
    lines += ["", "## Late rule", ""]
    if record.get("deadline") and not rows:
        lines.append(f"Deadline: {record['deadline']}.")
    elif record.get("deadline"):
        lines.append(f"Deadline: {record['deadline']}; your latest file: {record.get('timestamp') or 'time unknown'}"
                     f" ({record['days_late']} started day(s) late).")
    else:
        lines.append("No deadline was set for this task.")
    if record.get("late_note"):
        lines.append(record["late_note"])
    if record.get("late_penalty"):
        lines.append(f"Late penalty: -{record['late_penalty']:g} points (of {record['raw_score']:g} earned).")
    elif policy.late.penalty_per_day == 0 and policy.late.max_days is None:
        lines.append("The course has no late penalty.")
    return "\n".join(lines) + "\n"


def write_feedback(scores: list[dict], rows: list[dict], task: str, folder: str | Path, *,
                   policy: Policy) -> list[Path]:
    """Write ``folder/<safe id>.md`` for each record of ``scores``; the paths written.

    Raises (before writing anything): ValueError for an unsafe id or two ids sharing a file;
    FileExistsError for a file there that labkit did not write (it is left alone).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets: dict[Path, dict] = {}
    for record in scores:
        path = folder / f"{safe_name(record['student_id'])}.md"
        if path.parent.resolve() != folder.resolve():
            raise ValueError(f"student id {record['student_id']!r} would leave {folder}")
        if path in targets:
            raise ValueError(f"student ids {targets[path]['student_id']!r} and {record['student_id']!r} "
                             f"would share the feedback file {path.name}")
        targets[path] = record
    foreign = [path.name for path in targets if (path.exists() or path.is_symlink()) and not _ours(path)]
    if foreign:
        raise FileExistsError(f"{folder}: {', '.join(foreign)} exist and were not written by labkit "
                              f"(no first line {MARKER!r}); move them or choose another folder")
    written = []
    for path, record in targets.items():
        partial = path.with_name(path.name + ".partial")
        with open(partial, "x", encoding="utf-8") as handle:  # "x": never through a file or link already there
            handle.write(feedback_text(record, rows, task, policy=policy))
        os.replace(partial, path)  # replaces the file itself, never a file a link points to
        written.append(path)
    return written
