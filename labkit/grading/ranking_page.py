"""A static ranking page from batch grading: one self-contained HTML file for the TA.

    python -m labkit grade submissions/ --task pruning --data data/cifar10 --out grades.csv --html ranking.html

The page needs nothing at view time: CSS inline, the plot an inline SVG drawn here, no script, no
URL of any kind, and a Content-Security-Policy (``default-src 'none'; style-src 'unsafe-inline';
img-src data:``) so a browser refuses anything else. It shows, top to bottom:

1. the task, the date, the number of files and the outcome counts (the batch grader's last line),
   and what the grader trusted (the sandbox's isolation and trust boundary where a row carries one);
2. the ranking among qualifying students, in the course's order (``TASKS[task].ranking``: pruning by
   sparsity, quantization by INT8 accuracy, higher first; Lab 05 Task 2 by FoM, lower first);
   with ``similar=``, the possible copies another tool flagged (a lead for a human, never a grade);
3. a plot: sparsity vs accuracy (pruning), accuracy per submission (quantization), FoM vs mIoU
   (Lab 05 Task 2), Dice per submission (segmentation), goal lines drawn;
4. every submission (qualifiers, those below a goal, invalid ones, timeouts, crashes): its verdict
   and the check's message, in the batch's order (student id, then file).

A qualifier is a submission the check passed (exit 0) whose verdict carries the ranking metric as a
finite number (Lab 05: a Task 2 file only). The ranking ranks students, not files: a student with
several qualifiers gets one line, their best file. Ties are stable: equal values share a rank
(1, 2, 2, 4) and are listed by student id, then file name. :mod:`labkit.grading.public_page` writes
the same ranking under pseudonyms, for the class; both take the escaping, the policy and
:func:`ranked` from :mod:`labkit.grading.page_parts`. Every student-controlled string (ids, file
names, messages) is HTML-escaped, its control and bidirectional characters shown as ``\\u....``
escapes, and capped in length.

Example:
    >>> rows = [{"id": "7", "file": "7_pruning.pt", "status": "ok", "exit_code": 0, "passed": True,
    ...          "metrics": {"accuracy": 91.0, "sparsity": 80.0}, "message": "Congratulations!", "seconds": 3.0}]
    >>> [(rank, row["id"]) for rank, row in ranked(rows, "pruning")]
    [(1, '7')]
    >>> "<svg" in page_html(rows, "pruning") and "://" not in page_html(rows, "pruning")
    True
"""
from __future__ import annotations

import html  # noqa: F401  (the browser test patches html.escape through this module)
import math
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labkit.grading.batch import outcome, summary
from labkit.grading.page_parts import (BASE_STYLE, CONTENT_SECURITY_POLICY, is_other_artifact,  # noqa: F401
                                       ranked, ranking_value, text)
from labkit.grading.tasks import ACCURACY_GOAL, DICE_GOAL, MIOU_GOALS, SPARSITY_GOAL, TASKS, format_value
from labkit.version import __version__


def not_ranked_reason(row: dict, task_name: str) -> str:
    """Why a row is absent from the ranking (empty for a qualifier)."""
    ranking = TASKS[task_name].ranking
    if ranking is None:
        return "the course does not rank this task"
    if ranking_value(row, task_name) is not None:
        return ""
    if row.get("status") != "ok" or row.get("exit_code") != 0:
        return "—"  # the verdict column says why
    if is_other_artifact(row, task_name):
        return f"not ranked: {ranking.note}"
    return f"not ranked: the verdict has no {ranking.label}" + (f" ({ranking.note})" if ranking.note else "")


# ----------------------------------------------------------------------------- the plot

@dataclass(frozen=True)
class Plot:
    """What the page plots for a task: a metric per axis (x None: the submission's row number)."""
    y: str
    y_label: str
    x: str | None = None
    x_label: str = "submission (its row in the table of every submission)"
    x_goal: float | None = None
    y_goal: float | None = None
    log_y: bool = False


PLOTS = {
    "pruning": Plot("accuracy", "test accuracy (%)", x="sparsity", x_label="sparsity (%)",
                    x_goal=SPARSITY_GOAL, y_goal=ACCURACY_GOAL),
    "quantization": Plot("accuracy", "INT8 test accuracy (%)", y_goal=ACCURACY_GOAL),
    "efficient": Plot("fom", "FoM, log scale (lower is better)", x="miou", x_label="mIoU (Task 2)",
                      x_goal=MIOU_GOALS[2], log_y=True),
    "segmentation": Plot("dice", "test Dice", y_goal=DICE_GOAL),
}


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _ticks(low: float, high: float, *, log: bool) -> list[float]:
    if log:
        return [10.0 ** k for k in range(math.ceil(low), math.floor(high) + 1)] or [10.0 ** low]
    step = 10 ** math.floor(math.log10((high - low) / 4))
    step *= next(m for m in (1, 2, 5, 10) if (high - low) / (step * m) <= 6)
    return [k * step for k in range(math.ceil(low / step), math.floor(high / step) + 1)]


def plot_svg(rows: list[dict], task_name: str, *, width: int = 720, height: int = 380) -> str:
    """An inline SVG scatter of every graded row: qualifiers filled and labelled with their rank.

    Points carry no student text but a ``<title>`` (escaped) naming the submission.
    """
    spec = PLOTS[task_name]
    ranks = {id(row): rank for rank, row in ranked(rows, task_name)}
    points = []
    for number, row in enumerate(rows, start=1):
        y = _number(row.get("metrics", {}).get(spec.y))
        x = float(number) if spec.x is None else _number(row.get("metrics", {}).get(spec.x))
        if x is None or y is None or (spec.log_y and y <= 0):
            continue
        points.append((x, math.log10(y) if spec.log_y else y, ranks.get(id(row)), row))
    left, right, top, bottom = 80, 20, 20, 50
    parts = [f'<svg id="plot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{text(spec.y_label)}">']
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
                 'fill="#fafafa" stroke="#888"/>')
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no graded submission has '
                     f'{text(spec.y_label)}</text></svg>')
        return "".join(parts)
    y_goal = None if spec.y_goal is None else (math.log10(spec.y_goal) if spec.log_y else spec.y_goal)
    xs = [p[0] for p in points] + ([spec.x_goal] if spec.x_goal is not None else [])
    ys = [p[1] for p in points] + ([y_goal] if y_goal is not None else [])
    (x0, x1), (y0, y1) = [(min(v) - 0.05 * (max(v) - min(v) or 1), max(v) + 0.05 * (max(v) - min(v) or 1))
                          for v in (xs, ys)]

    def sx(x: float) -> float:  # data -> pixels
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    x_ticks = (_ticks(x0, x1, log=False) if spec.x is not None
               else range(1, len(rows) + 1, max(1, math.ceil(len(rows) / 10))))  # row numbers
    for tick in (tick for tick in x_ticks if x0 <= tick <= x1):
        parts.append(f'<text x="{sx(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                     f'font-size="11">{text(format_value(tick))}</text>')
    for tick in _ticks(y0, y1, log=spec.log_y):
        value = math.log10(tick) if spec.log_y else tick
        label = f"1e{round(value)}" if spec.log_y else format_value(tick)
        parts.append(f'<text x="{left - 6}" y="{sy(value) + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
    if spec.x_goal is not None:
        parts.append(f'<line class="goal" x1="{sx(spec.x_goal):.1f}" x2="{sx(spec.x_goal):.1f}" y1="{top}" '
                     f'y2="{height - bottom}" stroke="#c00" stroke-dasharray="6 4"/>'
                     f'<text x="{sx(spec.x_goal) + 4:.1f}" y="{top + 14}" fill="#c00" font-size="11">'
                     f'goal {format_value(spec.x_goal)}</text>')
    if y_goal is not None:
        parts.append(f'<line class="goal" x1="{left}" x2="{width - right}" y1="{sy(y_goal):.1f}" '
                     f'y2="{sy(y_goal):.1f}" stroke="#c00" stroke-dasharray="6 4"/>'
                     f'<text x="{width - right - 4}" y="{sy(y_goal) - 4:.1f}" text-anchor="end" fill="#c00" '
                     f'font-size="11">goal {format_value(spec.y_goal)}</text>')
    for x, y, rank, row in points:
        fill = "#1f5fa8" if rank is not None else "none"
        title = f"{text(row['id'])} — {text(row['file'])}: {text(outcome(row))}"
        parts.append(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{fill}" '
                     f'stroke="#1f5fa8"><title>{title}</title></circle>')
        if rank is not None:
            parts.append(f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 6:.1f}" font-size="11">{rank}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle" '
                 f'font-size="13">{text(spec.x_label)}</text>')
    parts.append(f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" '
                 f'text-anchor="middle" font-size="13">{text(spec.y_label)}</text></svg>')
    return "".join(parts)


# ----------------------------------------------------------------------------- the page

STYLE = BASE_STYLE + """td.message { white-space: pre-wrap; font-family: monospace; font-size: 0.85em; }
tr.passed td.verdict { color: #1a7f37; } tr.failed td.verdict { color: #b35900; }
"""


def _measured(row: dict) -> str:
    """The row's scalar metrics, ``name value`` each (dicts such as the sandbox record left out)."""
    pairs = [f"{name} {format_value(value)}" for name, value in sorted(row.get("metrics", {}).items())
             if isinstance(value, (int, float, str, bool)) or value is None]
    return text(", ".join(pairs))


def trust_lines(rows: list[dict]) -> list[str]:
    """What the grader trusted: each isolation the sandbox used and its trust boundary, else that none ran."""
    records = [row["metrics"]["sandbox"] for row in rows
               if isinstance(row.get("metrics", {}).get("sandbox"), dict)]
    if not records:
        return ["No submission ran student code: the checks loaded each file's weights only "
                "(a state_dict, torch.load(weights_only=True)) into labkit's own networks."]
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record.get("isolation"))] = counts.get(str(record.get("isolation")), 0) + 1
    boundaries = sorted({str(record.get("trust_boundary", "")) for record in records} - {""})
    return ["Students' network.py ran in the sandbox: " + ", ".join(f"{name} ({n})" for name, n in
                                                                   sorted(counts.items())) + ".", *boundaries]


SIMILAR_COLUMNS = ("task", "a_id", "a_file", "b_id", "b_file", "kind", "figure", "detail")


def similar_html(similar: list[dict] | None) -> str:
    """The "Possible copies" section: each flagged pair as given, escaped (none given: no section)."""
    if not similar:
        return ""
    out = ['<h2 id="copies">Possible copies</h2><p>Pairs of submissions a similarity check flagged. A flag is '
           "a lead for a human to look at, never a grade: files can also look alike through the same starter "
           "code, the same recipe or chance.</p>",
           '<table id="similar"><thead><tr><th>task</th><th>student</th><th>file</th><th>student</th>'
           "<th>file</th><th>kind</th><th>figure</th><th>detail</th></tr></thead><tbody>"]
    for pair in similar:
        out.append("<tr>" + "".join(f"<td>{text(pair.get(key, ''))}</td>" for key in SIMILAR_COLUMNS) + "</tr>")
    return "\n".join(out) + "\n</tbody></table>"


def page_html(rows: list[dict], task_name: str, *, generated: datetime | None = None,
              source: str = "", similar: list[dict] | None = None) -> str:
    """The page as one string (see the module docstring for what it shows).

    ``similar``: possible copies, ``{"task", "a_id", "a_file", "b_id", "b_file", "kind", "figure", "detail"}``
    each, shown as given (None or empty: no section).
    """
    ranking = TASKS[task_name].ranking
    generated = generated or datetime.now(timezone.utc)
    order = ranked(rows, task_name)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
           f"<title>Ranking: {text(task_name)}</title><style>{STYLE}</style></head><body>",
           f"<h1>Ranking: {text(task_name)}</h1>",
           '<p class="meta" id="meta">',
           f"task <b>{text(task_name)}</b> · generated {generated:%Y-%m-%d %H:%M} UTC · "
           f"<span id=\"file-count\">{len(rows)}</span> files · <span id=\"student-count\">{len(order)}</span> "
           f"students ranked · {text(summary(rows))}",
           f"<br>source: {text(source)}" if source else "",
           f"<br>labkit {text(__version__)}, Python {text(platform.python_version())} on "
           f"{text(platform.platform(terse=True))}</p>",
           '<p class="meta" id="trust">' + "<br>".join(text(line) for line in trust_lines(rows)) + "</p>"]

    out.append("<h2>Ranking among qualifying students</h2>")
    if ranking is None:
        out.append("<p>The course does not rank this task; every submission is listed below.</p>")
    else:
        direction = "higher first" if ranking.higher_is_better else "lower first"
        out.append(f"<p>By {text(ranking.label)}, {direction}, among students whose submission achieved the "
                   "goals: one line per student, their best file. Equal values share a rank and are listed by "
                   "student id."
                   + (f" Note: {text(ranking.note)}." if ranking.note else "") + "</p>")
        out.append(f'<table id="ranking"><thead><tr><th style="width:4em">rank</th><th>student</th><th>file</th>'
                   f"<th>{text(ranking.label)}</th><th>measured</th></tr></thead><tbody>")
        for rank, row in order:
            out.append(f'<tr><td class="rank">{rank}</td><td class="id">{text(row["id"])}</td>'
                       f'<td class="file">{text(row["file"])}</td>'
                       f'<td class="value">{text(row["metrics"][ranking.metric])}</td>'
                       f"<td>{_measured(row)}</td></tr>")
        if not order:
            out.append('<tr class="empty"><td colspan="5">no submission qualified</td></tr>')
        out.append("</tbody></table>")
    out.append(similar_html(similar))

    out.append(f"<h2>Plot</h2>{plot_svg(rows, task_name)}"
               "<p class=\"meta\">Filled points: each ranked student's best file (its rank beside it); hollow points: "
               "the rest (not qualified, or a student's other file). "
               "Dashed red lines: the course's goals.</p>")

    ranks = {id(row): rank for rank, row in order}
    best = {str(row["id"]): (number, ranks[id(row)]) for number, row in enumerate(rows, start=1) if id(row) in ranks}
    out.append("<h2>Every submission</h2>")
    out.append('<table id="submissions"><thead><tr><th style="width:3em">#</th><th>student</th><th>file</th>'
               '<th>verdict</th><th style="width:5em">rank</th><th>measured</th><th style="width:35%">message</th>'
               '<th style="width:5em">seconds</th></tr></thead><tbody>')
    for number, row in enumerate(rows, start=1):
        css = "passed" if row.get("status") == "ok" and row.get("exit_code") == 0 else "failed"
        rank = ranks.get(id(row))
        if rank is None and ranking_value(row, task_name) is not None and str(row["id"]) in best:
            rank = "not ranked: one line per student; their file in row {} ranks {}".format(*best[str(row["id"])])
        out.append(f'<tr class="{css}"><td>{number}</td><td class="id">{text(row["id"])}</td>'
                   f'<td class="file">{text(row["file"])}</td><td class="verdict">{text(outcome(row))}</td>'
                   f'<td class="rank">{rank if rank is not None else text(not_ranked_reason(row, task_name))}</td>'
                   f"<td>{_measured(row)}</td><td class=\"message\">{text(row.get('message', ''))}</td>"
                   f"<td>{text(row.get('seconds', ''))}</td></tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(part for part in out if part) + "\n"


def write_ranking_page(rows: list[dict], task_name: str, path, *, generated: datetime | None = None,
                       source: str = "", similar: list[dict] | None = None) -> Path:
    """Write the page for ``rows`` (what :func:`labkit.grading.batch.grade_folder` returns) to ``path``.

    Args:
        rows: one dict per submission: id, file, status, exit_code, passed, metrics, message, seconds.
        task_name: a key of ``TASKS`` (its ranking decides the order).
        path: the HTML file to write (its folder is created).
        generated: the date shown (default: now, UTC). source: the graded folder, shown as given.
        similar: possible copies to list (see :func:`similar_html`); None: no such section.

    Example:
        >>> import tempfile
        >>> page = write_ranking_page([], "quantization", tempfile.mkdtemp() + "/ranking.html")
        >>> page.read_text().count("<tr>") >= 1
        True
    """
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; choose one of {sorted(TASKS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(rows, task_name, generated=generated, source=source, similar=similar), encoding="utf-8")
    return path
