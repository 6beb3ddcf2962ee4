"""The course's goal for each lab, and the README's per-lab results table built from a run's summary.

    python -m labkit readme-table runs/smoke/summary.json [more summary.json ...] [--readme README.md]

rewrites the part of README.md between ``<!-- results:start -->`` and ``<!-- results:end -->`` (and
nothing else) with one row per lab (two for lab 05): lab, target, last measured result, hardware
(device and mode) and date. With several summaries, a later one wins for the notebooks it ran (e.g. a SMOKE run of all
labs, then a FULL run of lab 01 on a GPU). ``--print`` shows the table without touching the README.

Goals compare like the course's graders: a value passes when it is ``>=`` the minimum.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from labkit.tables import format_table

START_MARKER, END_MARKER = "<!-- results:start -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Measure:
    """A metric a notebook records (the name it passes to ``labkit.record``) and how to show it."""
    metric: str
    label: str
    unit: str = ""

    def show(self, metrics: dict) -> str:
        if self.metric not in metrics:
            return f"{self.metric} not recorded"
        value = metrics[self.metric]
        shown = f"{value:.2f}" if self.unit == "%" else format_value(value)  # the course prints 91.66%
        return f"{self.label} {shown}{self.unit}"


@dataclass(frozen=True)
class Goal(Measure):
    """A measure the course grades: it passes when the value is ``>= minimum``."""
    minimum: float = 0.0

    def describe(self) -> str:
        minimum = f"{self.minimum:.2f}" if self.minimum < 1 else f"{self.minimum:g}"  # 0.90, 50
        return f"{self.label} ≥ {minimum}{self.unit}"


@dataclass(frozen=True)
class LabTarget:
    """One row of the README table: a notebook, its goals, and what else is worth showing."""
    notebook: str
    title: str
    goals: tuple[Goal, ...]
    also_report: tuple[Measure, ...] = ()
    derived: Callable[[dict], str | None] | None = None  # text computed from the metrics


def task2_figure_of_merit(metrics: dict) -> str | None:
    """FoM = MACs² x size² / (mIoU - 0.65) of the INT8 Task 2 model; undefined at mIoU <= 0.65."""
    if not all(name in metrics for name in ("task2_macs", "task2_size_kb", "task2_int8_miou")):
        return None
    if metrics["task2_int8_miou"] <= 0.65:
        return "FoM undefined (mIoU ≤ 0.65)"
    from labkit.profile import fom  # imports torch: only when there is something to compute
    return f"FoM {fom(metrics['task2_macs'], metrics['task2_size_kb'], metrics['task2_int8_miou']):.4g}"


COURSE_TARGETS = (
    LabTarget("01_unet_oxford_pet", "01 UNet, Oxford-IIIT Pet",
              (Goal("test_dice", "test Dice", minimum=0.90),)),
    LabTarget("02_resnet34_unet", "02 ResNet34-UNet, Oxford-IIIT Pet",
              (Goal("test_dice", "test Dice", minimum=0.90),)),
    LabTarget("03_pruning_cifar10", "03 Pruning ResNet-20, CIFAR-10",
              (Goal("sparsity", "sparsity", "%", minimum=50.0), Goal("accuracy", "accuracy", "%", minimum=90.0))),
    LabTarget("04_quantization_cifar10", "04 INT8 ResNet-20 (hand-made PTQ), CIFAR-10",
              (Goal("hand_accuracy", "INT8 accuracy", "%", minimum=90.0),),
              also_report=(Measure("fp32_accuracy", "FP32", "%"), Measure("fx_accuracy", "FX INT8", "%"))),
    LabTarget("05_efficient_unet_cityscapes", "05 Task 1 segmentation, Cityscapes",
              (Goal("task1_miou", "mIoU", minimum=0.72),)),
    LabTarget("05_efficient_unet_cityscapes", "05 Task 2 low complexity (INT8), Cityscapes",
              (Goal("task2_int8_miou", "mIoU", minimum=0.66),),
              also_report=(Measure("task2_macs", "MACs"), Measure("task2_size_kb", "size", " KB")),
              derived=task2_figure_of_merit),
)


def format_value(value) -> str:
    """Short and exact enough for a table: 0.9132, 91.66, 1.953e+09."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


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
        met = all(metrics[goal.metric] >= goal.minimum for goal in recorded)
        text += " (goal met)" if met else " (below goal)"
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


def results_table(summaries: list[dict], *, sources=()) -> str:
    """The Markdown that goes between the README markers."""
    note = ("Generated by `python -m labkit readme-table " + " ".join(str(s) for s in sources) + "` "
            "from `labkit.record` values in the executed notebooks; do not edit by hand.")
    return format_table(results_rows(summaries)) + "\n\n" + note


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


def update_readme(readme, summary_paths) -> str:
    """Rewrite README's marked section from the summaries; return the new table."""
    summaries = [json.loads(Path(path).read_text()) for path in summary_paths]
    table = results_table(summaries, sources=summary_paths)
    readme = Path(readme)
    readme.write_text(replace_marked_section(readme.read_text(), table))
    return table


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit readme-table",
                                     description="Rewrite README.md's per-lab results table.")
    parser.add_argument("summaries", nargs="+", metavar="SUMMARY_JSON", help="summary.json of a run")
    parser.add_argument("--readme", default="README.md", help="the file with the results markers")
    parser.add_argument("--print", action="store_true", help="only print the table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.print:
        summaries = [json.loads(Path(path).read_text()) for path in args.summaries]
        print(results_table(summaries, sources=args.summaries))
        return 0
    print(update_readme(args.readme, args.summaries))
    print(f"updated the results table in {args.readme}")
    return 0
