"""What lab 03's benchmarks share: their common options, the data and the starting ResNet-20.

Used by bench_prune_recipes.py and bench_structured_prune.py (run from the repository root; a
script's own folder is on ``sys.path``, so ``import lab03_start`` finds this file).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from labkit import recipes
from labkit.data import cifar10
from labkit.models.resnet20 import load_pretrained, resnet20
from labkit.prune.gradual import gradual_prune
from labkit.tools.runner import cpu_model
from labkit.train import train_baseline

# Notebook 03's graded pruning on a CPU (lab 03's "CPU" recipe in labkit.recipes): gradual_prune's settings.
GRADUAL_KEYS = ("final_sparsity", "epochs", "prune_fraction", "lr", "distill_alpha", "temperature", "ranking")
CPU_GRADUAL = {key: recipes.table("03").recipe("CPU")[key] for key in GRADUAL_KEYS}


def add_common_arguments(parser: argparse.ArgumentParser, *, results: str) -> argparse.ArgumentParser:
    """--data, --pretrained, --threads, --fixture, --results (JSON lines, default ``results``), --readme."""
    parser.add_argument("--data", default="../shared/data/cifar10-real", help="CIFAR-10 root (either layout)")
    parser.add_argument("--pretrained", default="../shared/models/resnet20_cifar10_45k.pt")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--fixture", action="store_true", help="synthetic data and a briefly trained start model")
    parser.add_argument("--results", default=results, help="JSON lines, appended")
    parser.add_argument("--readme", help="rewrite the table between the markers of this file")
    return parser


def data_and_start_model(args, *, valid_size: int | None = None
                         ) -> tuple[Path, cifar10.CifarLoaders, torch.nn.Module]:
    """The CIFAR-10 root, its (train, valid, test) loaders (batch 128; ``valid_size`` validation images as in
    :func:`labkit.data.cifar10.cifar10_loaders`, 0 for none) and the starting model, in eval mode.

    With ``--fixture``: a synthetic CIFAR-10 (500 training, 200 test images) and a ResNet-20 trained on it for 3
    epochs; its folder is removed once the images are loaded (they stay in memory), so the root returned names a
    folder that no longer exists.
    """
    torch.set_num_threads(args.threads)
    if not args.fixture:
        root = Path(args.data)
        return root, cifar10.cifar10_loaders(root, batch_size=128, valid_size=valid_size), \
            load_pretrained(args.pretrained).eval()
    with tempfile.TemporaryDirectory(prefix="lab03-fixture-") as folder:
        root = cifar10.make_fixture(folder, n_train=500, n_test=200, seed=0)
        loaders = cifar10.cifar10_loaders(root, batch_size=128, valid_size=valid_size)
    start_model = resnet20()
    valid = loaders.valid if valid_size != 0 else None
    train_baseline(start_model, loaders.train, valid_loader=valid, epochs=3, lr=0.05, device="cpu")
    return root, loaders, start_model.eval()


def prune_gradually(model: torch.nn.Module, train_dataset, valid_loader=None, *, settings: dict = CPU_GRADUAL,
                    seed: int = 0) -> float:
    """Prune ``model`` in place as notebook 03 does (:func:`labkit.prune.gradual.gradual_prune` with ``settings``,
    default lab 03's CPU recipe): batches of 128 from ``train_dataset``, shuffled and augmented in ``seed``'s
    order. The masks stay attached. Returns the minutes it took.
    """
    train = cifar10.BatchedLoader(train_dataset, batch_size=128, shuffle=True, augment=True, seed=seed)
    started = time.perf_counter()
    gradual_prune(model, train, valid_loader, device="cpu", **settings)
    return (time.perf_counter() - started) / 60


def machine_name(args) -> str:
    """A row's machine: the CPU's name and the threads it used (and ", fixture" on the synthetic data)."""
    return f"{cpu_model()}, {args.threads} threads" + (", fixture" if args.fixture else "")


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` to a JSON-lines results file, one line each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")


def read_rows(path: Path) -> list[dict]:
    """Every row of a results file, in the order the runs wrote them."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such results file; run the benchmark first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
