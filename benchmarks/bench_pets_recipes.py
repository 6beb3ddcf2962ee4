"""Notebook 01's CPU recipe and variants of it on the real Pets images: validation Dice and minutes.

Trains ``UNet(base_channels, depth)`` with notebook 01's training code on a CPU: the same cached
images and loaders (shuffled, drop_last, no workers), ``pets.train_transform`` with the zoom range
``--scale``, ``BCEDiceLoss(lovasz_weight=--lovasz)``, AdamW with weight decay, the one-cycle schedule
stepped per batch, and ``labkit.train.fit`` (channels_last, ``cpu_bfloat16=--bf16``,
``ema_decay=--ema``) choosing the best epoch on the ``valid`` split; it changes one setting per run
from the command line. Where it differs from the notebook: the initial weights (seeded with ``--seed``,
0, right before the model is built, where the notebook's self-checks draw random numbers first), no
checkpoints, and no test evaluation. The defaults are the baseline every row is compared with, notebook 01's first CPU
recipe (the ``"CPU"`` column of lab 01's table in ``labkit.recipes``): 60 epochs, batch 16, 128 px, base 16, depth 4, AdamW 3e-3 with weight decay 1e-4,
one-cycle schedule, zoom 0.25, float32, BCE + soft Dice. The notebook's recipe now, on a CPU with
bfloat16 units, is ``--bf16 --epochs 100 --lovasz 0.5 --ema 0.99`` (the rows that chose it are in
benchmarks/README.md). Rows written before an option existed are read with its default.

It never looks at the test split. By default a recipe is scored on the course's 25 validation
images; with ``--folds K`` it is cross-validated instead: the 250 train + valid images are cut into K
folds (item ``i`` of train then valid is validated in fold ``i % K``), the recipe is trained K times,
each time on the other K-1 folds, and every image is validated exactly once, so a comparison rests on
250 validation images rather than 25. The chosen recipe is measured once on the test images by
notebook 01 itself (``make real``). Every run appends its row (one per fold) to ``--results`` (JSON
lines); ``--readme`` rewrites the two tables in benchmarks/README.md between their markers from all
rows there (one row per run on the course split; one row per cross-validated recipe, its folds
averaged). ``minutes``: training passes only, as the notebook's ``train_minutes``.
Time each run alone: two jobs on two cores slow each other.

Run:
    python benchmarks/bench_pets_recipes.py --readme benchmarks/README.md      # the baseline (minutes: its row 1)
    python benchmarks/bench_pets_recipes.py --image-size 160 --epochs 45
    python benchmarks/bench_pets_recipes.py --bf16 --epochs 100 --lovasz 0.5 --ema 0.99  # notebook 01 now
    python benchmarks/bench_pets_recipes.py --bf16 --epochs 100 --lovasz 0.5 --ema 0.99 --folds 3  # cross-validated
    python benchmarks/bench_pets_recipes.py --fixture --epochs 2 --results /tmp/rows.jsonl  # smoke test
    python benchmarks/bench_pets_recipes.py --table-only --readme benchmarks/README.md     # table from the rows
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from labkit.data import pets
from labkit.device import seed_everything
from labkit.evaluate import evaluate_segmentation
from labkit.losses import BCEDiceLoss
from labkit.models.unet import UNet
from labkit.tables import format_table
from labkit.tools.readme_table import replace_marked_section
from labkit.tools.runner import cpu_model
from labkit.train import fit, make_scheduler

MARKERS = ("<!-- pets-recipes:begin -->", "<!-- pets-recipes:end -->")
CV_MARKERS = ("<!-- pets-recipes-cv:begin -->", "<!-- pets-recipes-cv:end -->")
COLUMNS = ("epochs", "batch_size", "image_size", "base_channels", "depth", "lr", "weight_decay", "scale",
           "bilinear", "lovasz", "bf16", "ema", "seed", "minutes", "best_epoch", "valid_dice", "last_dice",
           "last10_dice", "raw_best_dice", "raw_last_dice", "raw_last10_dice", "machine", "load", "date")
RECIPE = COLUMNS[:COLUMNS.index("seed") + 1]  # what a cross-validated recipe is grouped by
CV_SCORES = ("valid_dice", "last_dice", "last10_dice", "raw_last_dice", "raw_last10_dice")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="../shared/data/oxford-iiit-pet-real", help="Oxford-IIIT Pet root")
    parser.add_argument("--fixture", action="store_true", help="synthetic pets instead of --data")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128, help="square side in pixels")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--lovasz", type=float, default=0.0, help="weight of the Lovasz hinge loss term")
    parser.add_argument("--depth", type=int, default=4, help="UNet down-sampling steps")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the forward pass (fit's cpu_bfloat16)")
    parser.add_argument("--ema", type=float, default=None,
                        help="decay of a moving average of the weights (fit's ema_decay); "
                             "the raw weights are scored beside it in the same run")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, shuffling and augmentation")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--scale", type=float, default=0.25, help="zoom range of the augmentation")
    parser.add_argument("--bilinear", action="store_true", help="bilinear upsampling instead of transposed convs")
    parser.add_argument("--folds", type=int, default=0,
                        help="K >= 2: cross-validate on K folds of train + valid (0: the course's split)")
    parser.add_argument("--results", default="benchmarks/rows/pets_recipes.jsonl", help="JSON lines, appended")
    parser.add_argument("--readme", help="rewrite the table between the markers of this file")
    parser.add_argument("--table-only", action="store_true", help="with --readme: rewrite the table, train nothing")
    return parser


def fold_positions(count: int, folds: int, fold: int) -> tuple[list[int], list[int]]:
    """(train, valid) positions of fold ``fold`` of ``folds``: item ``i`` is validated in fold ``i % folds``.

    >>> fold_positions(7, folds=3, fold=1)
    ([0, 2, 3, 5, 6], [1, 4])
    """
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    return ([i for i in range(count) if i % folds != fold], [i for i in range(count) if i % folds == fold])


def recipe_splits(root: Path, args, *, fold: int | None, cache_dir: Path | None):
    """(train, valid) datasets: the course's split when ``fold`` is None, else fold ``fold`` of train + valid."""
    augment = pets.train_transform(args.image_size, seed=args.seed, scale=args.scale)

    def split(name, transform=None):
        return pets.OxfordIIITPet(root, name, image_size=args.image_size, cache=True, cache_dir=cache_dir,
                                  transform=transform)
    if fold is None:
        return split("train", augment), split("valid")
    augmented = ConcatDataset([split("train", augment), split("valid", augment)])
    plain = ConcatDataset([split("train"), split("valid")])
    train, valid = fold_positions(len(plain), args.folds, fold)
    return Subset(augmented, train), Subset(plain, valid)


def train_recipe(root: Path, args, *, fold: int | None = None, cache_dir: Path | None = None) -> dict:
    """Train one recipe on ``root``'s train split (or fold ``fold``); returns its minutes and validation Dice.

    ``valid_dice`` is the best epoch's (what ``fit`` keeps), ``last_dice`` the last epoch's and
    ``last10_dice`` the mean of the last 10: the best of 100 noisy epochs on 25 images is an
    optimistic number, the last ones are not chosen. With ``--ema`` these are the average's, and
    the ``raw_*`` columns score the trained weights themselves after the same epochs.
    ``cache_dir``: where the decoded images are cached (default: the per-user cache folder).
    """
    seed_everything(args.seed)  # the initial weights too, so a rerun gives the same row
    train_set, valid_set = recipe_splits(root, args, fold=fold, cache_dir=cache_dir)
    loader_args = dict(batch_size=args.batch_size, num_workers=0, worker_init_fn=pets.seed_augmentation_worker)
    train_loader = DataLoader(train_set, shuffle=True, drop_last=True, **loader_args)
    valid_loader = DataLoader(valid_set, **loader_args)
    model = UNet(classes=1, base_channels=args.base_channels, depth=args.depth, bilinear=args.bilinear)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler, per_step = make_scheduler(optimizer, "onecycle", epochs=args.epochs, lr=args.lr,
                                         steps_per_epoch=len(train_loader))

    def evaluate(scored, loader, device):  # with --ema, ``scored`` is the average; score the weights too
        metrics = evaluate_segmentation(scored, loader, device=device)
        if args.ema is not None:
            metrics["raw_dice"] = evaluate_segmentation(model, loader, device=device)["dice"]
        return metrics

    result = fit(model, train_loader, loss_fn=BCEDiceLoss(lovasz_weight=args.lovasz), epochs=args.epochs,
                 optimizer=optimizer, scheduler=scheduler, scheduler_per_step=per_step, ema_decay=args.ema,
                 valid_loader=valid_loader, evaluate=evaluate, monitor="dice", device="cpu",
                 seed=args.seed, cpu_bfloat16=args.bf16, progress=False, log=None)
    history = result["history"]
    row = {"valid_items": len(valid_set),
           "minutes": sum(epoch["seconds"] for epoch in history) / 60, "best_epoch": result["best_epoch"],
           "valid_dice": result["best_metric"], "last_dice": history[-1]["dice"],
           "last10_dice": sum(epoch["dice"] for epoch in history[-10:]) / len(history[-10:])}
    if args.ema is not None:
        raw = [epoch["raw_dice"] for epoch in history]
        row.update(raw_best_dice=max(raw), raw_last_dice=raw[-1], raw_last10_dice=sum(raw[-10:]) / len(raw[-10:]))
    return row


def cross_validated(rows: list[dict]) -> list[dict]:
    """One row per cross-validated recipe (and ``folds``): each score averaged over its folds.

    ``<score>_folds`` lists the per-fold values in fold order, so a reader sees the spread; a recipe
    whose folds are not all there yet is left out.

    >>> recipe = {"epochs": 2, "folds": 2}
    >>> row, = cross_validated([{**recipe, "fold": 1, "last_dice": 0.7, "minutes": 3.0, "date": "d"},
    ...                         {**recipe, "fold": 0, "last_dice": 0.8, "minutes": 1.0, "date": "d"}])
    >>> round(row["last_dice"], 4), row["last_dice_folds"], row["minutes"]
    (0.75, '0.8000 0.7000', 2.0)
    """
    groups: dict[tuple, dict[int, dict]] = {}
    for row in rows:
        if row.get("folds"):
            key = tuple(row.get(column) for column in RECIPE) + (row["folds"],)
            groups.setdefault(key, {})[row["fold"]] = row
    table = []
    for key, by_fold in groups.items():
        folds = key[-1]
        if sorted(by_fold) != list(range(folds)):
            continue
        ordered = [by_fold[fold] for fold in range(folds)]
        summary = {**dict(zip(RECIPE, key)), "folds": folds,
                   "valid_items": sum(row.get("valid_items", 0) for row in ordered),
                   "minutes": sum(row["minutes"] for row in ordered) / folds}
        for score in CV_SCORES:
            values = [row.get(score) for row in ordered]
            if None not in values:
                summary[score] = sum(values) / folds
                summary[f"{score}_folds"] = " ".join(f"{value:.4f}" for value in values)
        summary.update(machine=ordered[0].get("machine"), date=ordered[-1].get("date"))
        table.append(summary)
    return table


def write_readme(path: Path, results: Path) -> None:
    """Rewrite both tables in ``path`` from every row in ``results``: the course-split runs between
    ``MARKERS``, the cross-validated recipes between ``CV_MARKERS``."""
    defaults = vars(get_args_parser().parse_args([]))  # a row without an option was taken before it existed
    rows = [{**defaults, **json.loads(line)} for line in results.read_text().splitlines() if line.strip()]
    single = [row for row in rows if not row.get("folds")]
    text = replace_marked_section(path.read_text(), format_table(single, columns=COLUMNS, digits=4),
                                  start=MARKERS[0], end=MARKERS[1])
    recipes = cross_validated(rows)
    if recipes:
        columns = [*RECIPE, "folds", "valid_items", "minutes",
                   *(name for score in CV_SCORES for name in (score, f"{score}_folds")), "machine", "date"]
        text = replace_marked_section(text, format_table(recipes, columns=columns, digits=4),
                                      start=CV_MARKERS[0], end=CV_MARKERS[1])
    path.write_text(text)
    print(f"wrote {len(single)} runs and {len(recipes)} cross-validated recipes into {path}")


def main(argv=None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.table_only and not args.readme:
        parser.error("--table-only rewrites the --readme table: name the file with --readme")
    if args.folds == 1 or args.folds < 0:
        parser.error(f"--folds must be 0 (the course's split) or at least 2, got {args.folds}")
    if args.table_only:
        return write_readme(Path(args.readme), Path(args.results))
    recipe = {key: getattr(args, key) for key in COLUMNS[:COLUMNS.index("minutes")]}
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labkit-pets-recipes-") as scratch:  # the fixture and its caches
        if args.fixture:
            root = pets.make_fixture(Path(scratch) / "oxford-iiit-pet-fixture", n_trainval=40, n_test=10)
            cache_dir = Path(scratch) / "cache"
        else:
            root, cache_dir = pets.check_root(args.data), None
        for fold in range(args.folds) if args.folds else [None]:
            row = {**recipe, **({} if fold is None else {"folds": args.folds, "fold": fold})}
            row.update(train_recipe(root, args, fold=fold, cache_dir=cache_dir))
            row.update(machine=f"{cpu_model() or platform.machine()}, {torch.get_num_threads()} threads"
                               + (", fixture" if args.fixture else ""),
                       load=f"{os.getloadavg()[1]:.1f}", date=time.strftime("%Y-%m-%d"), data=str(root))
            print(format_table([row], columns=[*COLUMNS, "folds", "fold"], digits=4), flush=True)
            with results.open("a") as file:  # each fold as it ends: a long study survives an interruption
                file.write(json.dumps(row) + "\n")
    if args.readme:
        write_readme(Path(args.readme), results)


if __name__ == "__main__":
    main()
