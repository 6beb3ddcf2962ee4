"""Images per second of labkit's data+train loop against a seed-style loop, side by side on a CPU.

The *seed-style* loop is what a first version of the U-Net lab does: a Dataset whose
``__getitem__`` opens the JPEG and the trimap with PIL, resizes both, builds the mask and returns
contiguous float32 tensors -- every item, every epoch -- and a plain
zero_grad / forward / loss / backward / step loop.

*labkit's* loop reads the split from the decode-once uint8 cache
(``labkit.data.pets.OxfordIIITPet(cache=True)``) and trains with ``labkit.train.fit`` (one epoch per
call, its defaults, ``device="cpu"``), so whatever ``fit`` does on a CPU is what is measured.

Both sides use the same model (``UNet(base_channels=16, depth=4)``, built from the same seed), the
same loss (``BCEDiceLoss``), optimizer (AdamW), batch, image size, DataLoader settings and number of
steps; no augmentation on either side. Only the data path and the loop differ. The sources are
synthetic pets written by ``make_fixture`` at the real dataset's typical size (375x500 JPEG,
quality 90), so a decode costs about what it costs on the real files.

Rounds alternate between the two sides (A B, B A, ...) after one warm-up epoch each, so that load
from other processes hits both alike; the table reports the median round. Three rows tell where
the time goes: the data path alone, the training step alone (same pre-loaded batches on both
sides: the ratio should be ~1.0) and the two together (the benchmark).

Run:
    python benchmarks/bench_data_train.py              # the defaults (benchmarks/README.md: measured rows)
    python benchmarks/bench_data_train.py --rounds 5 --images 128
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from labkit.data import pets
from labkit.losses import BCEDiceLoss
from labkit.models.unet import UNet
from labkit.train import fit

GOAL_RATIO = 3.0  # issue 2, item 9


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128, help="square training size (px)")
    parser.add_argument("--source-size", type=int, nargs=2, default=(375, 500), metavar=("H", "W"),
                        help="size of the fixture's JPEGs (the real set's typical size)")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per side, alternating")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (both sides)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--root", type=Path, default=None,
                        help="fixture folder (default: a temporary one, deleted at the end)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


class SeedStylePets(Dataset):
    """A first version's dataset: decode, resize and convert every item on every access.

    Returns image float32 (3, H, W) in [0, 1] and mask float32 (1, H, W) in {0, 1}, contiguous.
    """

    def __init__(self, root: Path, split: str, image_size: int):
        self.root = Path(root)
        self.names = pets.split_names(root, split)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        name, size = self.names[i], (self.image_size, self.image_size)
        image = Image.open(self.root / "images" / f"{name}.jpg").convert("RGB")
        trimap = Image.open(self.root / "annotations" / "trimaps" / f"{name}.png")
        image = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32) / 255.0
        mask = (np.asarray(trimap.resize(size, Image.NEAREST)) != 2).astype(np.float32)
        return (torch.from_numpy(image).permute(2, 0, 1).contiguous(),
                torch.from_numpy(mask)[None].contiguous())


def seed_style_epoch(model, batches, optimizer, loss_fn) -> None:
    """The plain loop a first version writes (CPU, float32, contiguous tensors)."""
    model.train()
    for images, masks in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(images), masks)
        loss.backward()
        optimizer.step()


def labkit_epoch(model, batches, optimizer, loss_fn) -> None:
    """One epoch of ``labkit.train.fit`` with its defaults (no validation, no checkpoints)."""
    fit(model, batches, loss_fn=loss_fn, epochs=1, optimizer=optimizer, device="cpu",
        progress=False, log=None)


def make_fixture(args) -> Path:
    root = args.root or Path(tempfile.mkdtemp(prefix="labkit-bench-")) / "oxford-iiit-pet"
    # Train keeps the trainval lines with i % 10 != 0: ask for enough lines to get args.images.
    n_trainval = -(-args.images * 10 // 9) + 1
    started = time.perf_counter()
    pets.make_fixture(root, n_trainval=n_trainval, n_test=1, size=tuple(args.source_size),
                      seed=args.seed)
    print(f"fixture: {n_trainval} synthetic {args.source_size[0]}x{args.source_size[1]} JPEGs "
          f"in {root} ({time.perf_counter() - started:.1f} s)")
    return root


def make_loaders(args, root: Path):
    """Both loaders over the same first ``args.images`` training images; also the cache's cost."""
    subset = range(args.images)
    seed_set = Subset(SeedStylePets(root, "train", args.image_size), subset)
    started = time.perf_counter()
    labkit_full = pets.OxfordIIITPet(root, "train", image_size=args.image_size, cache=True,
                                     progress=False)  # the per-user cache folder, never inside root
    cache_seconds = time.perf_counter() - started
    labkit_set = Subset(labkit_full, subset)

    def loader(dataset):
        generator = torch.Generator().manual_seed(args.seed)
        return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                          num_workers=args.workers, generator=generator)

    return loader(seed_set), loader(labkit_set), cache_seconds, len(labkit_full)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers end each epoch)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def time_it(function) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads, workers included) of one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    function()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def alternate(sides: dict, rounds: int) -> dict:
    """Run each side's callable once to warm up, then ``rounds`` times, alternating the order.

    Returns ``{side: [(wall seconds, CPU seconds), ...]}``.
    """
    for run in sides.values():
        run()
    seconds = {name: [] for name in sides}
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            seconds[name].append(time_it(sides[name]))
    return seconds


def main(args) -> float:
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.images // args.batch_size
    if steps < 1:
        raise SystemExit(f"--images {args.images} is less than one batch of {args.batch_size}")
    images_per_epoch = steps * args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}); UNet(base_channels={args.base_channels}, "
          f"depth={args.depth}), batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"{steps} steps per epoch, workers={args.workers}")
    root = make_fixture(args)
    seed_loader, labkit_loader, cache_seconds, cached_images = make_loaders(args, root)
    print(f"one-time cache build (labkit, not in the timed epochs): {cache_seconds:.2f} s for "
          f"{cached_images} images ({1e3 * cache_seconds / cached_images:.1f} ms/image)")

    loss_fn = BCEDiceLoss()
    models, optimizers = {}, {}
    for name in ("seed-style", "labkit"):
        torch.manual_seed(args.seed)  # the same initial weights on both sides
        models[name] = UNet(classes=1, base_channels=args.base_channels, depth=args.depth)
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-3)
    loaders = {"seed-style": seed_loader, "labkit": labkit_loader}
    epochs = {"seed-style": seed_style_epoch, "labkit": labkit_epoch}

    def data_only(name):
        return lambda: sum(1 for _ in loaders[name])

    fixed_batches = list(labkit_loader)  # the training step alone: the same tensors on both sides

    def train_only(name):
        return lambda: epochs[name](models[name], fixed_batches, optimizers[name], loss_fn)

    def data_and_train(name):
        return lambda: epochs[name](models[name], loaders[name], optimizers[name], loss_fn)

    rows, cpu_rows = {}, {}
    for label, make in (("data only", data_only), ("train step only", train_only),
                        ("data + train (benchmark)", data_and_train)):
        seconds = alternate({name: make(name) for name in loaders}, args.rounds)
        rows[label] = {name: images_per_epoch / statistics.median(wall for wall, _ in runs)
                       for name, runs in seconds.items()}
        cpu_rows[label] = {name: images_per_epoch / statistics.median(cpu for _, cpu in runs)
                           for name, runs in seconds.items()}
        spread = ", ".join(f"{name} {min(w for w, _ in runs):.2f}-{max(w for w, _ in runs):.2f} s"
                           for name, runs in seconds.items())
        print(f"  {label}: wall time per epoch {spread}")

    # CPU seconds are less disturbed than wall time when other processes share the cores.
    for title, table in ((f"images/s (wall clock), median of {args.rounds} alternating rounds of "
                          f"{images_per_epoch} images", rows),
                         ("images per CPU-second (all threads and workers), same rounds", cpu_rows)):
        print(f"\n{title}")
        print(f"{'':<26}{'seed-style':>12}{'labkit':>12}{'ratio':>9}")
        for label, speed in table.items():
            ratio = speed["labkit"] / speed["seed-style"]
            print(f"{label:<26}{speed['seed-style']:>12.1f}{speed['labkit']:>12.1f}{ratio:>8.2f}x")

    print("\nlabkit side: fit(device='cpu') with its defaults (channels_last during training); "
          "seed-style: contiguous float32")
    ratio = rows["data + train (benchmark)"]["labkit"] / rows["data + train (benchmark)"]["seed-style"]
    # Amdahl: even a data path that costs nothing cannot beat (data + train) / train.
    data_over_train = rows["train step only"]["seed-style"] / rows["data only"]["seed-style"]
    print(f"seed-style data path = {100 * data_over_train / (1 + data_over_train):.0f}% of its "
          f"data + train time: a free data path gives at most {1 + data_over_train:.2f}x here.")
    print(f"benchmark ratio (labkit / seed-style, data + train): {ratio:.2f}x "
          f"(goal >= {GOAL_RATIO:.0f}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'})")
    if args.root is None:
        shutil.rmtree(root.parent)
    return ratio


if __name__ == "__main__":
    main(get_args_parser().parse_args())
