"""The tables of ``benchmarks/gpu_check.py``: each timed model's full-recipe minutes here and on a T4."""
from __future__ import annotations

import json
from pathlib import Path

from gpu_check_lib import T4_TFLOPS


def recipe_table(work: Path, info: dict) -> list[dict]:
    """Each timed model with its extrapolated full-recipe minutes here and on a T4 (estimate); ``None``
    where nothing was measured (a step's failure says why)."""
    table = []
    for path in sorted((work / "recipes").glob("*/rows.json")):
        for row in json.loads(path.read_text()):
            work_flop = row["full_epochs"] * row["full_images"] * row["train_gflop_per_image"] * 1e9
            speed = row["images_per_s"] if row["images_per_s"] > 0 else None
            minutes = row["full_epochs"] * row["full_images"] / speed / 60 if speed else None
            table.append({key: value for key, value in row.items() if key != "history"} | {
                "notebook": path.parent.name, "minutes_here": minutes,
                "t4_minutes": minutes * info["t4_ratio"] if minutes and info.get("t4_ratio") else None,
                "t4_floor_minutes": work_flop / (T4_TFLOPS * 1e12) / 60,
                "achieved_tflops": row["images_per_s"] * row["train_gflop_per_image"] / 1e3})
    return table


def number(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    info, rows = report["env"], report["recipes"]
    where = info.get("gpu") or f"CPU ({info.get('cpu', '?')})"
    lines = [f"GPU check on {where}, torch {info.get('torch', '?')} (CUDA {info.get('cuda')}), {report['date']}, "
             f"{'SMOKE sizes (not the recipes)' if report['smoke'] else 'FULL GPU recipes on the data subset'}; "
             f"T4 minutes = minutes here x {info.get('peak_tflops', '?')} / {T4_TFLOPS} TFLOP/s "
             f"({info.get('peak_source', '?')}): an estimate, not a T4 run.", "",
             "| recipe | image | batch | images/s | timed epochs x images | full epochs x images | minutes here "
             "| T4 minutes (est.) | T4 floor | TFLOP/s achieved | peak MB |", "|" + "---|" * 11]
    for row in rows:
        lines.append(f"| {row['recipe']} | {'x'.join(map(str, row['image_size']))} | {row['batch_size']} | "
                     f"{number(row['images_per_s'], '.4g')} | {row['epochs_timed']} x {row['epoch_images']} | "
                     f"{row['full_epochs']} x {row['full_images']} | {number(row['minutes_here'])} | "
                     f"{number(row['t4_minutes'])} | {number(row['t4_floor_minutes'])} | "
                     f"{number(row['achieved_tflops'])} | {number(row['peak_memory_mb'], '.0f')} |")
    for notebook in sorted({row["notebook"] for row in rows}):
        mine = [row for row in rows if row["notebook"] == notebook]
        here, t4, floor = (None if any(row[key] is None for row in mine) else sum(row[key] for row in mine)
                           for key in ("minutes_here", "t4_minutes", "t4_floor_minutes"))
        lines.append(f"| **notebook {notebook}, all models** | | | | | | **{number(here)}** | **{number(t4)}** "
                     f"| {number(floor)} | | |")
    lines += ["", "| step | status | seconds | note |", "|---|---|---|---|"]
    for result in report["steps"]:
        note = result.get("reason") or ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in (result.get("metrics") or {}).items()
                                                 if isinstance(v, (int, float, str)))
        lines.append(f"| {result['name']} | {result['status']} | {result.get('seconds', '')} | {note} |")
    return "\n".join(lines) + "\n"
