"""What makes one CPU fine-tuning step of the pruned ResNet-20 cheaper: variants side by side, one process.

Lab 03's recipe spends its budget in fine-tuning steps (SGD, batch of augmented CIFAR-10 images, a
ResNet-20 with pruning masks attached). Each variant below runs the same number of steps from the
same weights on the same real images; rounds alternate between variants (A B C, C B A, ...) so
outside load hits them alike, and the table shows the median round's images/s and its ratio to the
first row (labkit's loop as ``labkit.prune.magnitude.fine_tune`` runs it).

Variants (``--variants`` picks some):

- ``labkit``: ``CIFAR10`` items through a ``DataLoader`` (per-item crop + flip + normalise),
  channels_last model, ``torch.get_num_threads()`` threads — what ``fine_tune`` does;
- ``nchw``: the same, contiguous (NCHW) memory layout;
- ``batched-data``: augmentation done on the whole uint8 batch at once
  (``labkit.data.cifar10.BatchedLoader``), same crop/flip distribution;
- ``batch256``: batches of 256 instead of 128 (changes the optimisation: a recipe that uses it must
  be re-tuned, so it is listed for speed only);
- ``1-thread``: one intra-op thread (how two jobs on two cores would each run);
- ``compile``: ``torch.compile`` of the model (first steps compile; they are not timed);
- ``bf16``: ``batched-data`` plus bfloat16 autocast (changes the numerics: fast only on CPUs with
  native bfloat16, e.g. AVX512-BF16 or AMX; a recipe that uses it must show the same accuracy).

Run alone on the machine (``--readme`` writes the table into benchmarks/README.md):
    python benchmarks/bench_finetune_step.py --data ../shared/data/cifar10-real --readme benchmarks/README.md
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from labkit.data import cifar10
from labkit.models.resnet20 import resnet20
from labkit.prune.magnitude import prune_to
from labkit.tables import format_table
from labkit.tools.readme_table import replace_marked_section

MARKERS = ("<!-- finetune-step:begin -->", "<!-- finetune-step:end -->")
VARIANTS = ("labkit", "nchw", "batched-data", "batch256", "1-thread", "compile", "bf16")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/cifar10-real", help="CIFAR-10 root (either layout)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from " + ", ".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--readme", help="write the table between this file's finetune-step markers")
    return parser


class Variant:
    """One way of running fine-tuning steps: its loader, model layout, threads and batch size."""

    def __init__(self, name: str, train_set, model: nn.Module, *, threads: int):
        self.name, self.threads = name, threads if name != "1-thread" else 1
        batch_size = 256 if name == "batch256" else 128
        if name in ("batched-data", "bf16"):
            self.loader = cifar10.BatchedLoader(train_set, batch_size=batch_size, shuffle=True, augment=True)
        else:
            self.loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
        self.model = copy.deepcopy(model)
        prune_to(self.model, 0.9)  # masks attached, as during the recipe's late rounds
        self.channels_last = name != "nchw"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.bfloat16 = name == "bf16"
        self.forward = torch.compile(self.model) if name == "compile" else self.model
        self.batches = iter(self.loader)

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def run(self, steps: int) -> float:
        """Run ``steps`` training steps; return images per second."""
        torch.set_num_threads(self.threads)
        self.model.train()
        images_seen, started = 0, time.perf_counter()
        for _ in range(steps):
            images, labels = self.next_batch()
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                loss = nn.functional.cross_entropy(self.forward(images), labels)
            loss.backward()
            self.optimizer.step()
            images_seen += images.shape[0]
        return images_seen / (time.perf_counter() - started)


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    names = [name.strip() for name in args.variants.split(",")]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.manual_seed(0)
    train_set = cifar10.CIFAR10(args.data, "train", augment=True)
    model = resnet20()
    variants = [Variant(name, train_set, model, threads=args.threads) for name in names]
    for variant in variants:  # warm-up: first batches, allocator, compilation
        variant.run(3)
    speeds = {variant.name: [] for variant in variants}
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for variant in order:
            speeds[variant.name].append(variant.run(args.steps))
    torch.set_num_threads(args.threads)
    baseline = statistics.median(speeds[names[0]])
    rows = [{"variant": name, "images/s": statistics.median(values),
             "ratio": statistics.median(values) / baseline,
             "rounds": " ".join(f"{value:.0f}" for value in values)} for name, values in speeds.items()]
    note = (f"{len(train_set)} training images from {args.data}; {args.steps} steps x {args.rounds} rounds "
            f"per variant; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{args.threads} threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    table = format_table(rows, digits=2)
    print(f"{table}\n\n{note}")
    if args.readme:
        path = Path(args.readme)
        path.write_text(replace_marked_section(path.read_text(), f"{table}\n\n{note}", start=MARKERS[0],
                                               end=MARKERS[1]))
        print(f"wrote the table into {path}")


if __name__ == "__main__":
    main()
