"""README.md's results section: every run's measured rows, then the course goals per lab.

    python -m labkit readme-table runs/smoke/summary.json runs/real/summary.json [--readme README.md]

rewrites the part of README.md between ``<!-- results:start -->`` and ``<!-- results:end -->`` (and
nothing else): one row per notebook per summary (SMOKE beside real data, with data set, split,
metrics, hardware and minutes), then one row per lab goal from :data:`labkit.grading.tasks.COURSE_TARGETS`
(the latest run of each lab; SMOKE rows get no verdict: synthetic data). ``--print`` only shows it.

Example:
    >>> summary = {"started": "2026-11-25T10:00:00+00:00", "mode": "full", "device": "NVIDIA H100",
    ...            "notebooks": [{"notebook": "01_unet_oxford_pet", "status": "ok",
    ...                           "device": "NVIDIA H100", "metrics": {"test_dice": 0.9132}}]}
    >>> rows = results_rows([summary])
    >>> rows[0]["Last measured result"]
    'test Dice 0.9132 (goal met)'
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from labkit.grading.tasks import COURSE_TARGETS, LabTarget, format_value
from labkit.tables import format_table
from labkit.tools.runner import machine_description

START_MARKER, END_MARKER = "<!-- results:start -->", "<!-- results:end -->"


# ----------------------------------------------------------------------------- the course goals, per lab

def latest_entries(summaries: list[dict]) -> dict:
    """notebook name -> (its entry, the summary it came from); later summaries win."""
    latest = {}
    for summary in summaries:
        for entry in summary["notebooks"]:
            latest[entry["notebook"]] = (entry, summary)
    return latest


def measured_result(target: LabTarget, entry: dict, mode: str) -> str:
    """``test Dice 0.9132 (goal met)``; SMOKE numbers are on synthetic data, so no verdict for them."""
    metrics = entry.get("metrics", {})
    parts = [goal.show(metrics) for goal in target.goals]
    parts += [measure.show(metrics) for measure in target.also_report if measure.metric in metrics]
    derived = target.derived(metrics) if target.derived else None
    text = ", ".join(parts + ([derived] if derived else []))
    if entry.get("status") != "ok":
        return f"{text} (run {entry.get('status')})"
    recorded = [goal for goal in target.goals if goal.metric in metrics]
    if mode == "full" and recorded:
        verdicts = [goal.verdict(metrics) for goal in recorded]
        text += f" ({next((v for v in verdicts if v != 'goal met'), 'goal met')})"
    return text


def results_rows(summaries: list[dict], targets=COURSE_TARGETS) -> list[dict]:
    """One dict per target with the columns of the README table."""
    latest = latest_entries(summaries)
    rows = []
    for target in targets:
        row = {"Lab": target.title, "Target": ", ".join(goal.describe() for goal in target.goals)}
        if target.notebook in latest:
            entry, summary = latest[target.notebook]
            mode = summary.get("mode", "?")
            device = entry.get("device") or summary.get("device")
            if device == "cpu" and summary.get("cpu_cores"):
                device = f"cpu ({summary['cpu_cores']} cores)"
            hardware = f"{device}, {mode.upper()}"
            if mode == "smoke":
                hardware += " (synthetic fixture data)"
            row |= {"Last measured result": measured_result(target, entry, mode), "Hardware": hardware,
                    "Date": str(summary.get("started", "?"))[:10]}
        else:
            row |= {"Last measured result": "not run yet", "Hardware": "-", "Date": "-"}
        rows.append(row)
    return rows


def replace_marked_section(text: str, new_content: str, *, start=START_MARKER, end=END_MARKER) -> str:
    """Swap what lies between the two marker *lines* (kept) for ``new_content``; the rest stays byte
    for byte. Only a line that is exactly a marker counts, so prose may mention the markers."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == start]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(f"expected one '{start}' line followed by one '{end}' line; add them where the "
                         "results table should go")
    head, tail = "".join(lines[:starts[0] + 1]), "".join(lines[ends[0]:])
    return f"{head}{new_content.strip()}\n{tail}"


# ----------------------------------------------------------------------------- every run's rows

BOOKKEEPING = re.compile(r"exit_code|threads|seconds|epochs|pid")  # recorded, but not a result
DURATION = re.compile(r"minutes")  # a result (train_minutes), but measured on no split
SPLIT_NAMES = {"test": "test", "valid": "valid", "val": "valid", "validation": "valid", "train": "train"}


def headline_metrics(metrics: dict) -> dict:
    """The recorded numbers worth a table cell: scalars, minus bookkeeping (times per epoch, exit codes)."""
    return {name: value for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not BOOKKEEPING.search(name)}


def metric_splits(metrics: dict) -> str:
    """Which splits the metrics are on, read from their names (``test_dice``, ``task1_valid_miou``), with
    the split sizes when the notebook recorded ``splits`` ({"test": 50, ...}); says so when some
    metrics name no split (name them ``test_...``/``valid_...`` to make the table exact).

    Example:
        >>> metric_splits({"test_dice": 0.8, "valid_dice": 0.82, "splits": {"train": 200, "test": 50}})
        'test (50), valid'
    """
    found, unnamed = [], 0
    for name in headline_metrics(metrics):
        if DURATION.search(name):
            continue
        splits = [SPLIT_NAMES[token] for token in re.split(r"[^a-z0-9]+", name.lower()) if token in SPLIT_NAMES]
        unnamed += not splits
        found += [split for split in splits if split not in found]
    if not found:
        return "not in the metric names"
    sizes = metrics.get("splits") if isinstance(metrics.get("splits"), dict) else {}
    order = ["test", "valid", "train"]
    shown = ", ".join(f"{split} ({sizes[split]})" if split in sizes else split
                      for split in sorted(found, key=order.index))
    return f"{shown}; the rest name no split" if unnamed else shown


def _dataset_name(entry: dict, mode: str) -> str:
    data = entry.get("data") or {}
    if data.get("name"):
        return data["name"]
    if mode == "smoke":
        return "synthetic fixture"
    root = (entry.get("parameters") or {}).get("DATA_ROOT")
    return Path(root).name if root else "?"


def _interval(metrics: dict, name: str) -> str:
    """`` (95% CI 0.83-0.88)`` where the notebook recorded ``<name>_ci`` (a test split under 500 items)."""
    interval = metrics.get(f"{name}_ci")
    return f" (95% CI {format_value(interval[0])}-{format_value(interval[1])})" if interval else ""


def run_rows(summaries: list[dict]) -> list[dict]:
    """One row per notebook per summary, grouped by notebook so a SMOKE row sits beside a FULL one."""
    rows = []
    for order, summary in enumerate(summaries):
        mode = str(summary.get("mode", "?"))
        for entry in summary.get("notebooks", []):
            metrics = entry.get("metrics") or {}
            shown = ", ".join(f"{name} {format_value(value)}{_interval(metrics, name)}"
                              for name, value in headline_metrics(metrics).items())
            if entry.get("status") != "ok":
                shown = f"{shown} (run {entry.get('status')})".strip()
            seconds = entry.get("seconds")
            rows.append((entry["notebook"], order, {
                "Notebook": entry["notebook"], "Mode": mode.upper(), "Data set": _dataset_name(entry, mode),
                "Split": metric_splits(metrics), "Metrics": shown or "-",
                "Hardware": machine_description(summary, entry),
                "Minutes": f"{seconds / 60:.1f}" if isinstance(seconds, (int, float)) else "?",
                "Date": str(summary.get("started", "?"))[:10]}))
    return [row for _, _, row in sorted(rows, key=lambda item: item[:2])]


def readme_table(summaries: list[dict], *, sources=()) -> str:
    """The Markdown between the README markers: every run's rows, then the course goals (latest run per lab)."""
    command = "python -m labkit readme-table " + " ".join(str(source) for source in sources)
    return "\n".join([
        format_table(run_rows(summaries)), "",
        "Course goals, from the latest run of each lab (SMOKE rows get no verdict: synthetic data):", "",
        format_table(results_rows(summaries)), "",
        f"Generated by `{command.strip()}` from `labkit.tools.record` values in the executed notebooks and "
        "the machine each summary describes; do not edit by hand."])


def main(argv: list[str] | None = None) -> int:
    """``labkit readme-table SUMMARY_JSON ...``: rewrite README.md's results section (or ``--print`` it)."""
    parser = argparse.ArgumentParser(prog="labkit readme-table",
                                     description="Rewrite README.md's results table from run summaries "
                                                 "(e.g. a SMOKE run and a FULL run on real data).")
    parser.add_argument("summaries", nargs="+", metavar="SUMMARY_JSON", help="summary.json of a run")
    parser.add_argument("--readme", default="README.md", help="the file with the results markers")
    parser.add_argument("--print", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    summaries = []
    for path in args.summaries:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such summary; make one with 'python -m labkit run ... --out DIR'")
        summaries.append(json.loads(Path(path).read_text()))
    table = readme_table(summaries, sources=args.summaries)
    print(table)
    if not args.print:
        readme = Path(args.readme)
        readme.write_text(replace_marked_section(readme.read_text(), table))
        print(f"updated the results table in {readme}")
    return 0
