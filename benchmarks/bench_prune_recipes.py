"""Lab 03's pruning recipes compared on real CIFAR-10: minutes, sparsity, accuracy drop.

Each recipe starts from the same pretrained ResNet-20 (``--pretrained``), trains on the training
split minus the 5,000 validation images (``labkit.data.cifar10``, seed 0), and is measured once on
the test split at the end; its drop is against the starting model's accuracy on that same test
split. Recipes:

- ``iterative``: ``labkit.prune.magnitude.iterative_prune`` with lab 03's ``"CPU (iterative)"`` recipe
  (``labkit.recipes``; the first build's schedule:
  prune to 50, 70, 80, 85, 90 %, fine-tune 0.5-3 epochs after each, stop at the validation floor);
- ``gradual``: ``labkit.prune.gradual.gradual_prune`` without distillation (cubic schedule over the
  first half of the steps, then fine-tuning at the final sparsity, one cosine learning rate);
- ``gradual+kd``: the same with distillation from the dense starting model (lab 03's ``"CPU"`` recipe).

``--epochs`` sets the gradual recipes' budget (default: that recipe's); ``--lr``,
``--distill-alpha``, ``--prune-fraction`` and ``--ranking`` (``magnitude``: global ``|w|``; ``lamp``:
layer-adaptive scores, ``labkit.prune.magnitude.lamp_scores``) change one setting of theirs each, and every row
names the settings it ran with. Every run
appends its row to ``--results`` (JSON lines), so runs of different budgets, made one after the
other, end up in one table (``load``: the 5-minute load average at the end of the run; above the
number of threads, other jobs were slowing it down); ``--readme`` rewrites the table in benchmarks/README.md between its
markers from all rows there. Time each run alone: two jobs on two cores slow each other.

Run:
    python benchmarks/bench_prune_recipes.py --recipes gradual+kd --readme benchmarks/README.md
    python benchmarks/bench_prune_recipes.py --recipes iterative,gradual,gradual+kd --epochs 10
    python benchmarks/bench_prune_recipes.py --fixture --epochs 1 --results /tmp/rows.jsonl   # a smoke test
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import torch

from labkit.evaluate import evaluate_classification
from labkit import recipes
from labkit.prune.magnitude import RANKINGS, course_sparsity, iterative_prune
from labkit.tables import format_table
from labkit.tools.readme_table import replace_marked_section
from lab03_start import (CPU_GRADUAL, add_common_arguments, append_rows, data_and_start_model, machine_name,
                         prune_gradually, read_rows)

RECIPES = ("iterative", "gradual", "gradual+kd")
# Lab 03's recipes (labkit.recipes): the "CPU" one's gradual_prune settings (CPU_GRADUAL), and the first build's schedule.
CPU_ITERATIVE = recipes.table("03").recipe("CPU (iterative)")
MARKERS = ("<!-- prune-recipes:begin -->", "<!-- prune-recipes:end -->")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, results="benchmarks/rows/prune_recipes.jsonl")
    parser.add_argument("--recipes", default="gradual+kd", help="comma-separated, from " + ", ".join(RECIPES))
    parser.add_argument("--epochs", type=float, default=CPU_GRADUAL["epochs"],
                        help="training epochs of the gradual recipes")
    parser.add_argument("--lr", type=float, default=CPU_GRADUAL["lr"], help="gradual: peak learning rate")
    parser.add_argument("--distill-alpha", type=float, default=CPU_GRADUAL["distill_alpha"],
                        help="gradual+kd: weight of the distillation term")
    parser.add_argument("--prune-fraction", type=float, default=CPU_GRADUAL["prune_fraction"],
                        help="gradual: share of the steps that raise the sparsity")
    parser.add_argument("--ranking", choices=RANKINGS, default=CPU_GRADUAL["ranking"],
                        help="gradual: which weights go first (global |w| or LAMP scores)")
    return parser


def gradual_settings(name: str, args) -> dict:
    """``CPU_GRADUAL`` with the command line's epochs, lr, alpha, prune fraction and ranking."""
    settings = {**CPU_GRADUAL, "epochs": args.epochs, "lr": args.lr, "distill_alpha": args.distill_alpha,
                "prune_fraction": args.prune_fraction, "ranking": args.ranking}
    if name == "gradual":
        settings["distill_alpha"] = 0.0
    return settings


def run_recipe(name: str, model, loaders, *, settings: dict) -> dict:
    """Prune ``model`` in place with one recipe (``settings``: the gradual ones'); returns its epochs,
    minutes and final sparsity."""
    if name != "iterative":
        minutes = prune_gradually(model, loaders.train.dataset, loaders.valid, settings=settings)
        return {"epochs": settings["epochs"], "minutes": minutes, "sparsity": course_sparsity(model)}
    started = time.perf_counter()
    rounds = iterative_prune(model, loaders.train, loaders.valid, targets=CPU_ITERATIVE["targets"],
                             epochs_per_round=CPU_ITERATIVE["epochs_per_round"], lr=CPU_ITERATIVE["lr"],
                             device="cpu", progress=False)
    return {"epochs": sum(row["epochs"] for row in rounds), "minutes": (time.perf_counter() - started) / 60,
            "sparsity": course_sparsity(model)}


def write_readme(path: Path, rows: list[dict]) -> None:
    columns = ("recipe", "epochs", "lr", "alpha", "prune_fraction", "ranking", "minutes", "sparsity",
               "valid_accuracy", "test_accuracy", "drop", "machine", "load", "date")
    table = format_table(rows, columns=columns, digits=2)
    path.write_text(replace_marked_section(path.read_text(), table, start=MARKERS[0], end=MARKERS[1]))


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    names = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = set(names) - set(RECIPES)
    if unknown:
        raise SystemExit(f"unknown recipes {sorted(unknown)}; choose from {', '.join(RECIPES)}")
    root, loaders, start_model = data_and_start_model(args)
    start_accuracy = evaluate_classification(start_model, loaders.test, device="cpu")["accuracy"]
    print(f"starting model: test accuracy {start_accuracy:.2f}% on {len(loaders.test.dataset)} images")
    results = Path(args.results)
    for name in names:
        torch.manual_seed(0)
        model = copy.deepcopy(start_model)
        settings = gradual_settings(name, args)
        row = {"recipe": name, **run_recipe(name, model, loaders, settings=settings)}
        if name != "iterative":
            row.update(lr=settings["lr"], alpha=settings["distill_alpha"], prune_fraction=settings["prune_fraction"],
                       ranking=settings["ranking"])
        row["valid_accuracy"] = evaluate_classification(model, loaders.valid, device="cpu")["accuracy"]
        row["test_accuracy"] = evaluate_classification(model, loaders.test, device="cpu")["accuracy"]
        row["drop"] = start_accuracy - row["test_accuracy"]
        row.update(machine=machine_name(args), load=f"{os.getloadavg()[1]:.1f}", date=time.strftime("%Y-%m-%d"), data=str(root))
        print(format_table([row]), flush=True)
        append_rows(results, [row])
    if args.readme:
        rows = read_rows(results)
        write_readme(Path(args.readme), rows)
        print(f"wrote {len(rows)} rows into {args.readme}")


if __name__ == "__main__":
    main()
