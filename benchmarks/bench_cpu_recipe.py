"""Seconds per epoch of notebook 01's CPU recipe: UNet(base 16, depth 4), 128x128, batch 16.

Times ``labkit.train.train_one_epoch`` (forward + backward + AdamW, ``BCEDiceLoss``) on the cached
Oxford-IIIT Pet loader with the notebook's training augmentation, exactly as the notebook trains on
a CPU, then projects one epoch of the real train split: 3312 images = 207 steps of 16 (drop_last),
plus one validation pass over the 368 valid images (forward only, ``evaluate_segmentation``).

The images are synthetic pets from ``make_fixture``; the step time does not depend on the pixel
values, and the one-time cache build (printed separately) is not part of an epoch. One warm-up
epoch first, then ``--repeats`` timed epochs of ``--steps`` steps; the projection uses the median
(the minimum is printed too: other processes on the machine only ever make a run slower).

``--variants`` also times the bare training step (one fixed batch) in float32, float32
channels_last, bfloat16 autocast and both, with a plain loop: what ``fit`` would gain on this CPU
if it used them. bfloat16 is only fast on CPUs with native support (AVX512-BF16 or AMX); the script
prints whether this one has it.

Run:
    python benchmarks/bench_cpu_recipe.py                  # about 1 minute on 2 CPU cores
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

from labkit.data import pets
from labkit.evaluate import evaluate_segmentation
from labkit.losses import BCEDiceLoss
from labkit.models.unet import UNet
from labkit.train import train_one_epoch

REAL_TRAIN_IMAGES = 3312  # Oxford-IIIT Pet trainval 3680 lines, i % 10 != 0
REAL_VALID_IMAGES = 368   # i % 10 == 0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128, help="square training size (px)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (after one warm-up)")
    parser.add_argument("--train-images", type=int, default=REAL_TRAIN_IMAGES,
                        help="size of the train split the projection is for")
    parser.add_argument("--valid-images", type=int, default=REAL_VALID_IMAGES,
                        help="size of the validation split the projection is for (0: no validation)")
    parser.add_argument("--no-augment", action="store_true",
                        help="train without the notebook's flip/rotate/colour augmentation")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--variants", action="store_true",
                        help="also time the step in float32 / channels_last / bfloat16 autocast")
    parser.add_argument("--seed", type=int, default=0)
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
                                       transform=None if args.no_augment else pets.train_transform(size))
        valid_set = pets.OxfordIIITPet(root, "valid", image_size=size, cache=True, progress=False)
        print(f"one-time cache build (not part of an epoch): {time.perf_counter() - started:.2f} s "
              f"for {len(train_set) + len(valid_set)} images")
        train_loader = DataLoader(Subset(train_set, range(images_needed)), batch_size=batch,
                                  shuffle=True, drop_last=True, num_workers=args.workers)
        valid_loader = DataLoader(valid_set, batch_size=batch, num_workers=args.workers)

        model = UNet(classes=1, base_channels=args.base_channels, depth=args.depth)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
        device = torch.device("cpu")

        def train_epoch():
            train_one_epoch(model, train_loader, optimizer, BCEDiceLoss(), device=device,
                            progress=False)

        def valid_pass():
            evaluate_segmentation(model, valid_loader, device=device)

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
          f"{'no augmentation' if args.no_augment else 'train_transform'}, workers={args.workers}")
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
