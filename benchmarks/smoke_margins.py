"""How far every "it learned" assertion clears its threshold, over seeds and CPU thread counts.

A seeded SMOKE run trains to other numbers on another CPU or with another thread count (torch picks
other kernels), so a threshold is only safe with a margin measured over both. This script runs

- every SMOKE notebook (``python -m labkit run --mode smoke -p SEED s``), whose assertions are
  :func:`labkit.tools.record.check_learning` calls that record the value and its threshold, and
- the tests marked ``learning`` (``pytest -m learning tests``), whose ``learned`` fixture does the same
  into ``$LABKIT_LEARNING_LOG`` and which read their seed from ``$LABKIT_TEST_SEED``,

once per seed and thread count (``OMP_NUM_THREADS``), appends one JSON row per assertion and run to
``--rows``, and prints one table row per assertion: threshold, min, median, max, the margin (the worst
run's distance from the threshold: ``value - at_least`` or ``at_most - value``), that margin in
standard deviations of the run-to-run spread, the seed and threads of the worst run, and failures.
Every row names the CPU model and torch build it ran on. ``--readme`` rewrites the table in
benchmarks/README.md between its markers (rows of the newest CPU and torch build only).

``--break-learning`` proves the assertions can fail: every process it starts imports a
``sitecustomize`` that turns ``torch.optim.Optimizer.step`` into a no-op (learning rate 0: training and
fine-tuning skipped), and every learning assertion should then fail (its rows go to
``<work>/broken.jsonl``, never to ``--rows``).

Run (one notebook+test pass per seed and thread count; run it alone):
    python benchmarks/smoke_margins.py --seeds 0-9 --threads 1 2 --readme benchmarks/README.md
    python benchmarks/smoke_margins.py --seeds 0 --threads 2 --notebooks 03 --no-tests   # one pass
    python benchmarks/smoke_margins.py --table-only --readme benchmarks/README.md
    python benchmarks/smoke_margins.py --seeds 0 --threads 2 --break-learning
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import torch

from labkit.paths import REPO_ROOT
from labkit.tables import format_table
from labkit.tools.readme_table import replace_marked_section
from labkit.tools.record import LEARNING_CHECKS
from labkit.tools.runner import cpu_model

MARKERS = ("<!-- smoke-margins:begin -->", "<!-- smoke-margins:end -->")
DEFAULT_ROWS = REPO_ROOT / "benchmarks" / "rows" / "smoke_margins.jsonl"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,7")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="OMP_NUM_THREADS values")
    parser.add_argument("--notebooks", nargs="*", default=None, help="numbers or names (default: all)")
    parser.add_argument("--no-notebooks", action="store_true", help="only the tests marked learning")
    parser.add_argument("--no-tests", action="store_true", help="only the notebooks")
    parser.add_argument("--rows", type=Path, default=DEFAULT_ROWS, help="JSON lines, appended to")
    parser.add_argument("--work", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--table-only", action="store_true", help="no runs: the table from --rows")
    parser.add_argument("--readme", type=Path, default=None, help="rewrite the table in this file")
    parser.add_argument("--break-learning", action="store_true",
                        help="every optimizer step a no-op: each learning assertion should fail")
    return parser


def parse_seeds(text: str) -> list[int]:
    """``"0-3"`` -> [0, 1, 2, 3]; ``"1,5"`` -> [1, 5].

        >>> parse_seeds("0-2"), parse_seeds("4,7")
        ([0, 1, 2], [4, 7])
    """
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(part) for part in text.split(",")]


def machine() -> dict:
    return {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version()}


BREAK_LEARNING = """# written by benchmarks/smoke_margins.py --break-learning: no optimizer ever steps
import torch
for optimizer_class in (torch.optim.Optimizer, *torch.optim.Optimizer.__subclasses__()):
    optimizer_class.step = lambda self, closure=None: None
"""
NOT_REACHED = {"value": -1.0, "at_least": 0.0}  # a run that never reached its assertions counts as failed


def environment(threads: int, seed: int, broken: Path | None = None) -> dict:
    """The variables of one run; ``broken``: a folder holding the ``--break-learning`` sitecustomize.py."""
    variables = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                 "LABKIT_SMOKE": "1", "LABKIT_TEST_SEED": str(seed), "PYTHONHASHSEED": "0",
                 "NO_ALBUMENTATIONS_UPDATE": "1", "MPLBACKEND": "Agg"}
    if broken:
        variables["PYTHONPATH"] = os.pathsep.join(filter(None, [str(broken), os.environ.get("PYTHONPATH")]))
    return variables


def check_rows(source: str, checks: dict, **context) -> list[dict]:
    """One row per recorded check: ``{"source", "check", "value", "at_least"|"at_most", ...context}``."""
    return [{"source": source, "check": name, **check, **context} for name, check in checks.items()]


def run_notebooks(notebooks, *, threads: int, seed: int, work: Path, broken: Path | None = None) -> list[dict]:
    out = work / f"notebooks-t{threads}-s{seed}"
    command = [sys.executable, "-m", "labkit", "run", *(notebooks or []), "--mode", "smoke",
               "-p", "SEED", str(seed), "--out", str(out)]
    subprocess.run(command, cwd=REPO_ROOT, env=environment(threads, seed, broken), check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    rows = []
    for entry in summary["notebooks"]:
        checks = entry["metrics"].get(LEARNING_CHECKS, {})
        if not checks:  # failed before its first check: a failed row, never a dropped one
            checks = {"(no check reached)": NOT_REACHED}
        rows += check_rows(entry["notebook"], checks, status=entry["status"], seconds=entry["seconds"])
    return rows


def run_tests(*, threads: int, seed: int, work: Path, broken: Path | None = None) -> list[dict]:
    log = work / f"tests-t{threads}-s{seed}.jsonl"
    log.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-m", "learning", "tests", "-p", "no:cacheprovider",
               f"--basetemp={work / f'pytest-t{threads}-s{seed}'}"]  # its own: never another run's temporary files
    completed = subprocess.run(command, cwd=REPO_ROOT, env={**environment(threads, seed, broken),
                               "LABKIT_LEARNING_LOG": str(log)}, capture_output=True, text=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if completed.returncode not in (0, 1):  # 1: a test failed (its row is there); else no test ran at all
        rows.append({"source": "pytest -m learning", "check": f"(exit {completed.returncode}: no test ran)",
                     **NOT_REACHED})
    status = "ok" if completed.returncode == 0 else "failed"
    return [{**row, "status": status} for row in rows]


def margin_of(row: dict) -> float:
    """The row's distance from failing (negative: it failed).

        >>> margin_of({"value": 0.9, "at_least": 0.6}), margin_of({"value": 1.0, "at_most": 3.0})
        (0.30000000000000004, 2.0)
    """
    return row["value"] - row["at_least"] if "at_least" in row else row["at_most"] - row["value"]


def margin_table(rows: list[dict]) -> list[dict]:
    """One row per (source, check): threshold, min/median/max, margin, margin in SDs, worst run, failures."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["source"], row["check"]), []).append(row)
    table = []
    for (source, check), runs in groups.items():
        values = [run["value"] for run in runs]
        margins = [margin_of(run) for run in runs]
        worst = runs[margins.index(min(margins))]
        bounds = sorted({run.get("at_least", run.get("at_most")) for run in runs})
        kind = ">=" if "at_least" in worst else "<="
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        table.append({"source": source, "assertion": f"{check} {kind} " + (
                          f"{bounds[0]:.4g}" if len(bounds) == 1 else f"{bounds[0]:.3g}..{bounds[-1]:.3g}"),
                      "runs": len(runs), "min": min(values), "median": statistics.median(values),
                      "max": max(values), "margin": min(margins),
                      "margin/SD": min(margins) / spread if spread > 0 else float("inf"),
                      "worst (seed, threads)": f"{worst['seed']}, {worst['threads']}",
                      "failed": sum(margin < 0 for margin in margins)})
    return table


def table_text(rows: list[dict], *, source: str = "benchmarks/rows/smoke_margins.jsonl") -> str:
    newest = rows[-1]
    rows = [row for row in rows if (row["cpu"], row["torch"]) == (newest["cpu"], newest["torch"])]
    seeds = sorted({row["seed"] for row in rows})
    threads = sorted({row["threads"] for row in rows})
    dates = sorted({row["date"] for row in rows})
    header = (f"{newest['cpu']}, torch {newest['torch']}, Python {newest['python']}; seeds "
              f"{seeds[0]}-{seeds[-1]} ({len(seeds)}), threads {threads}; {dates[0]} to {dates[-1]}. "
              f"Made by `python benchmarks/smoke_margins.py --table-only` from `{source}`.")
    return header + "\n\n" + format_table(margin_table(rows), digits=4)


def main(args) -> None:
    if not args.table_only:
        work = args.work or Path(tempfile.mkdtemp(prefix="smoke-margins-"))
        work.mkdir(parents=True, exist_ok=True)
        broken = work / "break-learning" if args.break_learning else None
        if broken:
            broken.mkdir(parents=True, exist_ok=True)
            (broken / "sitecustomize.py").write_text(BREAK_LEARNING)
            args.rows, args.readme = work / "broken.jsonl", None
        context = {**machine(), "date": datetime.now().strftime("%Y-%m-%d")}
        args.rows.parent.mkdir(parents=True, exist_ok=True)
        for seed in parse_seeds(args.seeds):
            for threads in args.threads:
                rows = []
                if not args.no_notebooks:
                    rows += run_notebooks(args.notebooks, threads=threads, seed=seed, work=work, broken=broken)
                if not args.no_tests:
                    rows += run_tests(threads=threads, seed=seed, work=work, broken=broken)
                with args.rows.open("a") as file:
                    for row in rows:
                        file.write(json.dumps({**row, "seed": seed, "threads": threads, **context}) + "\n")
                worst = min(rows, key=margin_of, default=None)
                print(f"threads {threads} seed {seed}: {len(rows)} assertions, smallest margin "
                      f"{margin_of(worst):.4g} ({worst['source']} {worst['check']})" if worst else "no rows",
                      flush=True)
    lines = args.rows.read_text().splitlines() if args.rows.exists() else []
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        raise SystemExit(f"no rows in {args.rows}: nothing to tabulate")
    shown = args.rows.relative_to(REPO_ROOT) if args.rows.is_relative_to(REPO_ROOT) else args.rows
    text = table_text(rows, source=str(shown))
    print(text)
    if args.readme:
        args.readme.write_text(replace_marked_section(args.readme.read_text(), text + "\n",
                                                      start=MARKERS[0], end=MARKERS[1]))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
