"""Seconds per epoch of notebook 01's FULL recipe on this CPU, trained as the notebook trains it.

The recipe is the one notebook 01 picks on a CPU: ``labkit.recipes.pick("01", smoke=False,
device="cpu")`` (``labkit/recipes/lab01.py``), i.e. its bfloat16 variant where this CPU has bfloat16
units (``labkit.device.cpu_has_bfloat16``: 100 epochs, bfloat16 autocast, BCE + Dice + 0.5 Lovasz, a
moving average of the weights at 0.99) and the float32 one elsewhere. Every option's default is that
recipe's value (``--help`` prints them), and each can be changed alone.

Each timed epoch is the call ``labkit.train.fit`` makes once per epoch on a CPU:
``labkit.train.train_one_epoch`` (forward + backward + AdamW, weight decay 1e-4, the recipe's
learning-rate schedule, ``--schedule``) with channels_last (``--no-channels-last``: contiguous), bfloat16 autocast
(``--bf16``/``--no-bf16``), ``BCEDiceLoss(lovasz_weight=--lovasz)`` and the weight average updated after
every step (``--ema``; 0: none), on the cached Oxford-IIIT Pet loader with the notebook's training
augmentation (``pets.train_transform(size, scale=--scale)``; ``--no-augment``: none), one DataLoader
process per ``--workers``. The validation pass is ``evaluate_segmentation`` of the model ``fit`` scores
(the average, with ``--ema``). Not timed: ``fit``'s checkpoint writes and its best-epoch bookkeeping.
The script projects one epoch of the official train split: 3312 images = 207 steps of 16 (drop_last),
plus one validation pass over the 368 valid images (``--train-images``, ``--valid-images``).

The images are synthetic pets from ``make_fixture``; the step time does not depend on the pixel
values, and the one-time cache build (printed separately) is not part of an epoch. One warm-up
epoch first, then ``--repeats`` timed epochs of ``--steps`` steps; the projection uses the median
(the minimum is printed too: other processes on the machine only ever make a run slower).

``--variants`` also times the bare training step (one fixed batch, a plain loop, BCE + Dice, no
weight average) in float32, float32 channels_last, bfloat16 autocast and both, side by side in the
same run, and prints each one's speed-up over float32. bfloat16 is only fast on CPUs with native
support (AVX512-BF16 or AMX); the script prints whether this one has it.

Run:
    python benchmarks/bench_cpu_recipe.py                  # notebook 01's CPU recipe on this CPU
    python benchmarks/bench_cpu_recipe.py --no-bf16 --lovasz 0 --ema 0   # the float32 recipe
    python benchmarks/bench_cpu_recipe.py --base-channels 32 --image-size 160
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

import torch
from torch.utils.data import DataLoader, Subset

from labkit import recipes
from labkit.data import pets
from labkit.evaluate import evaluate_segmentation
from labkit.losses import BCEDiceLoss
from labkit.models.unet import UNet
from labkit.train import SCHEDULES, make_scheduler, train_one_epoch
from labkit.weight_average import WeightAverage

REAL_TRAIN_IMAGES = 3312  # Oxford-IIIT Pet trainval 3680 lines, i % 10 != 0
REAL_VALID_IMAGES = 368   # i % 10 == 0
NOTEBOOK_DEPTH = 4        # notebook 01's UNet depth in FULL mode


def get_args_parser() -> argparse.ArgumentParser:
    recipe = recipes.pick("01", smoke=False, device="cpu")  # what notebook 01 trains on this CPU
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--base-channels", type=int, default=recipe["base_channels"], help="UNet width")
    parser.add_argument("--depth", type=int, default=NOTEBOOK_DEPTH, help="UNet down-sampling steps")
    parser.add_argument("--image-size", type=int, default=recipe["image_size"], help="square training size (px)")
    parser.add_argument("--batch-size", type=int, default=recipe["batch_size"], help="images per step")
    parser.add_argument("--lr", type=float, default=recipe["lr"], help="(peak) learning rate")
    parser.add_argument("--schedule", choices=SCHEDULES, default=recipe["schedule"],
                        help="learning-rate schedule (labkit.train.make_scheduler)")
    parser.add_argument("--scale", type=float, default=recipe["scale"], help="zoom range of the augmentation")
    parser.add_argument("--lovasz", type=float, default=recipe["lovasz"], help="weight of the Lovasz hinge term")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=recipe["bfloat16"],
                        help="bfloat16 autocast of the forward pass (fit's cpu_bfloat16)")
    parser.add_argument("--ema", type=float, default=recipe["ema"] or 0.0,
                        help="decay of the weights' moving average (fit's ema_decay); 0: none")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels_last memory layout (fit's default)")
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (after one warm-up)")
    parser.add_argument("--train-images", type=int, default=REAL_TRAIN_IMAGES,
                        help="size of the train split the projection is for")
    parser.add_argument("--valid-images", type=int, default=REAL_VALID_IMAGES,
                        help="size of the validation split the projection is for (0: no validation)")
    parser.add_argument("--no-augment", action="store_true",
                        help="train without the notebook's flip/rotate/zoom/colour augmentation")
    parser.add_argument("--workers", type=int, default=recipe["workers"], help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--variants", action="store_true",
                        help="also time the bare step in float32 / channels_last / bfloat16 autocast, side by side")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and augmentation")
    return parser


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


VARIANTS = {  # name: (channels_last, bfloat16 autocast)
    "float32": (False, False),
    "float32 channels_last": (True, False),
    "bfloat16 autocast": (False, True),
    "bfloat16 autocast + channels_last": (True, True),
}


def time_step_variants(args, images: torch.Tensor, masks: torch.Tensor, steps_per_epoch: int) -> None:
    """Seconds per training step of each variant on one fixed batch, rounds alternating."""
    loss_fn, runs = BCEDiceLoss(), {}
    for name, (channels_last, _) in VARIANTS.items():
        torch.manual_seed(args.seed)
        model = UNet(classes=1, base_channels=args.base_channels, depth=args.depth)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        runs[name] = (model.to(memory_format=memory_format),
                      torch.optim.AdamW(model.parameters(), lr=3e-4),
                      images.contiguous(memory_format=memory_format))

    def step(name):
        model, optimizer, inputs = runs[name]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=VARIANTS[name][1]):
            logits = model(inputs)
        loss_fn(logits.float(), masks).backward()  # the loss in float32, as AMP recipes do
        optimizer.step()

    seconds = {name: [] for name in VARIANTS}
    for round_index in range(1 + args.repeats * args.steps):  # round 0 is the warm-up
        for name in (list(VARIANTS) if round_index % 2 else reversed(VARIANTS)):
            elapsed = timed(lambda: step(name))
            if round_index:
                seconds[name].append(elapsed)
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    print(f"\ntraining step variants (plain loop, one fixed batch, median of "
          f"{args.repeats * args.steps} steps; native bfloat16 on this CPU: {native})")
    print(f"{'variant':<36}{'s/step':>8}{'speed-up':>10}{'train epoch':>13}")
    baseline = statistics.median(seconds["float32"])
    for name, values in seconds.items():
        per_step = statistics.median(values)
        print(f"{name:<36}{per_step:>8.3f}{baseline / per_step:>9.2f}x"
              f"{per_step * steps_per_epoch:>11.0f} s")


def main(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    size, batch = args.image_size, args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()})")

    images_needed = args.steps * batch
    workdir = Path(tempfile.mkdtemp(prefix="labkit-cpu-recipe-"))
    try:
        root = pets.make_fixture(workdir / "oxford-iiit-pet", n_trainval=-(-images_needed * 10 // 9) + 1,
                                 n_test=1, size=(375, 500), seed=args.seed)
        started = time.perf_counter()
        train_set = pets.OxfordIIITPet(root, "train", image_size=size, cache=True, progress=False,
                                       transform=None if args.no_augment else
                                       pets.train_transform(size, seed=args.seed, scale=args.scale))
        valid_set = pets.OxfordIIITPet(root, "valid", image_size=size, cache=True, progress=False)
        print(f"one-time cache build (not part of an epoch): {time.perf_counter() - started:.2f} s "
              f"for {len(train_set) + len(valid_set)} images")
        train_loader = DataLoader(Subset(train_set, range(images_needed)), batch_size=batch,
                                  shuffle=True, drop_last=True, num_workers=args.workers)
        valid_loader = DataLoader(valid_set, batch_size=batch, num_workers=args.workers)

        model = UNet(classes=1, base_channels=args.base_channels, depth=args.depth)
        if args.channels_last:  # as fit does
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        scheduler, per_step = make_scheduler(optimizer, args.schedule, epochs=1 + args.repeats, lr=args.lr,
                                             steps_per_epoch=len(train_loader))
        average = WeightAverage(model, decay=args.ema) if args.ema else None
        scored = average.module if average is not None else model  # what fit evaluates and keeps
        loss_fn = BCEDiceLoss(lovasz_weight=args.lovasz)
        device = torch.device("cpu")

        def train_epoch():  # the call fit makes each epoch on a CPU
            train_one_epoch(model, train_loader, optimizer, loss_fn, device=device,
                            step_scheduler=scheduler if per_step else None, channels_last=args.channels_last,
                            autocast_dtype=torch.bfloat16 if args.bf16 else None, weight_average=average,
                            progress=False)
            if not per_step:
                scheduler.step()

        def valid_pass():
            evaluate_segmentation(scored, valid_loader, device=device)

        train_epoch()  # warm-up: allocator, oneDNN kernel selection
        step_seconds, step_cpu_seconds = [], []
        for _ in range(args.repeats):
            cpu_started = time.process_time()
            step_seconds.append(timed(train_epoch) / args.steps)
            step_cpu_seconds.append((time.process_time() - cpu_started) / args.steps)
        valid_pass()
        valid_image_seconds = [timed(valid_pass) / len(valid_set) for _ in range(args.repeats)]
        fixed_batch = next(iter(train_loader))
    finally:
        shutil.rmtree(workdir)

    steps_per_epoch = args.train_images // batch
    per_step, best_step = statistics.median(step_seconds), min(step_seconds)
    per_valid_image = statistics.median(valid_image_seconds)
    train_epoch_seconds = per_step * steps_per_epoch
    valid_seconds = per_valid_image * args.valid_images
    parameters = sum(p.numel() for p in model.parameters())
    print(f"\nUNet(base_channels={args.base_channels}, depth={args.depth}), {parameters / 1e6:.2f} M "
          f"parameters, {size}x{size}, batch {batch}, "
          f"{'no augmentation' if args.no_augment else f'train_transform(scale={args.scale})'}, "
          f"workers={args.workers}")
    print(f"{'recipe':<34}{'channels_last' if args.channels_last else 'contiguous'}, "
          f"{'bfloat16 autocast' if args.bf16 else 'float32'}, BCE + Dice"
          f"{f' + {args.lovasz:g} Lovasz' if args.lovasz else ''}, "
          f"{f'weight average {args.ema:g}' if args.ema else 'no weight average'}, {args.schedule} lr {args.lr:g}")
    print(f"{'timed steps':<34}{args.repeats} x {args.steps} (after 1 warm-up epoch)")
    print(f"{'seconds per step':<34}median {per_step:.3f}, min {best_step:.3f}, "
          f"all {' '.join(f'{s:.3f}' for s in step_seconds)}")
    # CPU seconds of this process (all threads): a check on wall times inflated by other load.
    print(f"{'CPU seconds per step':<34}median {statistics.median(step_cpu_seconds):.3f} "
          f"({torch.get_num_threads()} threads)")
    print(f"{'images per second (training)':<34}{batch / per_step:.1f}")
    print(f"{'seconds per valid image (eval)':<34}{per_valid_image * 1e3:.1f} ms")
    print(f"{'projected train epoch':<34}{steps_per_epoch} steps x {per_step:.3f} s = "
          f"{train_epoch_seconds:.0f} s ({train_epoch_seconds / 60:.1f} min)")
    print(f"{'projected validation pass':<34}{args.valid_images} images = {valid_seconds:.0f} s")
    print(f"{'projected epoch (train + valid)':<34}{train_epoch_seconds + valid_seconds:.0f} s "
          f"({(train_epoch_seconds + valid_seconds) / 60:.1f} min)")
    if args.variants:
        time_step_variants(args, *fixed_batch, steps_per_epoch)
    return {"seconds_per_step": per_step, "train_epoch_seconds": train_epoch_seconds,
            "epoch_seconds": train_epoch_seconds + valid_seconds}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
