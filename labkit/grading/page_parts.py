"""What both ranking pages share: how a student-controlled string becomes HTML text, the page's
Content-Security-Policy and style, and the course's ranking of students (:func:`ranked`).

:mod:`labkit.grading.ranking_page` (the TA's page) and :mod:`labkit.grading.public_page` (the class's
page, pseudonyms only) both import from here, so both rank alike.
"""
from __future__ import annotations

import html
import math
import re

from labkit.grading.tasks import TASKS, format_value

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_TEXT_CHARS = 2000   # a message or a file name longer than this is cut (like the CSV's cells)
# C0/C1 controls (but tab and newline) and the bidirectional overrides that can make a name read backwards
INVISIBLE = re.compile("[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def text(value, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Any value as HTML text: escaped (quotes too), invisible characters made visible, capped.

    Example:
        >>> text('<img src=x onerror="alert(1)">')
        '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
        >>> text("abc\\u202egpj.pt"), text("x" * 10, max_chars=4)
        ('abc\\\\u202egpj.pt', 'xxx…')
    """
    value = value if isinstance(value, str) else format_value(value)
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")  # undecodable file-name bytes
    value = INVISIBLE.sub(lambda match: f"\\u{ord(match.group()):04x}", value)
    if len(value) > max_chars:
        value = value[: max_chars - 1] + "…"
    return html.escape(value, quote=True)


def artifact_of(row: dict, task_name: str) -> str | None:
    """The artifact a row graded (``"model_task2"``): its ``artifact``, else read from its file name."""
    if row.get("artifact"):
        return str(row["artifact"])
    name = str(row.get("file", "")).replace("\\", "/").rsplit("/", 1)[-1].lower()
    for suffix in sorted(TASKS[task_name].artifact_suffixes, key=len, reverse=True):
        if name == suffix or name.endswith("_" + suffix):
            return suffix.split(".")[0]
    return None


def is_other_artifact(row: dict, task_name: str) -> bool:
    """Whether the row graded an artifact the course does not rank (Lab 05's Task 1)."""
    wanted = TASKS[task_name].ranking.artifact
    return wanted is not None and artifact_of(row, task_name) not in (None, wanted)


def ranking_value(row: dict, task_name: str) -> float | None:
    """The row's ranking metric when it qualifies (passed, the ranked artifact, a finite metric), else None."""
    ranking = TASKS[task_name].ranking
    if ranking is None or row.get("status") != "ok" or row.get("exit_code") != 0:
        return None
    if is_other_artifact(row, task_name):
        return None
    value = row.get("metrics", {}).get(ranking.metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def ranked(rows: list[dict], task_name: str) -> list[tuple[int, dict]]:
    """The qualifying students as ``(rank, their best row)`` in the course's order, one per student id.

    Ties share a rank and are listed by id; a student's equal files, by file name.

    Example:
        >>> rows = [{"id": i, "file": f"{i}{n}.pt", "status": "ok", "exit_code": 0, "metrics": {"fom": v}}
        ...         for i, n, v in (("a", 1, 3.0), ("b", 1, 1.0), ("c", 1, 3.0), ("d", 1, 5.0), ("b", 2, 2.0))]
        >>> [(rank, row["file"]) for rank, row in ranked(rows, "efficient")]      # lower FoM first
        [(1, 'b1.pt'), (2, 'a1.pt'), (2, 'c1.pt'), (4, 'd1.pt')]
    """
    ranking = TASKS[task_name].ranking
    if ranking is None:
        return []
    sign = -1.0 if ranking.higher_is_better else 1.0
    scored = [(ranking_value(row, task_name), row) for row in rows]
    scored = sorted(((value, row) for value, row in scored if value is not None),
                    key=lambda pair: (sign * pair[0], str(pair[1]["id"]), str(pair[1]["file"])))
    result, students, previous, rank = [], set(), None, 0
    for value, row in scored:
        if str(row["id"]) in students:
            continue  # the student's best file came first
        students.add(str(row["id"]))
        if value != previous:
            rank, previous = len(result) + 1, value
        result.append((rank, row))
    return result


BASE_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; table-layout: fixed; width: 100%; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.5em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #eee; }
.meta { color: #555; }
"""
