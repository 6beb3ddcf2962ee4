"""The FULL GPU recipes of notebooks 01, 02 and 05: estimated T4 minutes, and their speed measured here on the CPU.

For every training phase of every GPU recipe (the GPU columns of ``labkit.recipes``, the tables the
notebooks pick from, so the table follows the notebooks):

- **T4 minutes, ESTIMATED** by :mod:`labkit.gpu_budget` (MACs and activations per image, the T4's
  datasheet peaks, 10-15 % utilisation after NVIDIA's published ResNet-50 T4 throughput). No GPU
  has run these recipes: the numbers are estimates.
- **CPU here, MEASURED speed**: seconds per training image (forward, backward, AdamW step, float32,
  channels_last, the notebook's loss: what ``fit`` does on a CPU) and per validation image, the
  fastest of ``--steps`` batches of ``--batch`` images after one warm-up batch (other processes on
  the machine only ever slow a batch down); the minutes are that
  measured speed times the recipe's images and epochs (extrapolated, not a run).

Each phase is timed in a fresh Python process, as a notebook's kernel would train it (a process that
trained a bigger model before allocates memory differently: ``labkit.profile.keep_freed_memory``).
The rows go to ``--results`` (JSON lines, one per phase and run); ``--readme`` rewrites the table
between ``<!-- gpu-budget:begin/end -->`` in that file from the latest row of each phase.

Run:
    python benchmarks/bench_gpu_budget.py --readme README.md              # measure, then the table
    python benchmarks/bench_gpu_budget.py --table-only --readme README.md # the table from the stored rows
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from labkit.gpu_budget import COLAB_SESSION_MINUTES, T4, Phase, bound_by, estimate_minutes, image_cost  # noqa: E402
from labkit.tables import format_table  # noqa: E402
from labkit.tools.readme_table import replace_marked_section  # noqa: E402
from labkit.tools.runner import cpu_model  # noqa: E402

MARKERS = ("<!-- gpu-budget:begin -->", "<!-- gpu-budget:end -->")
RESULTS = REPO_ROOT / "benchmarks" / "rows" / "gpu_budget.jsonl"
NOTEBOOKS = {"01": "01_unet_oxford_pet.ipynb", "02": "02_resnet34_unet.ipynb",
             "05": "05_efficient_unet_cityscapes.ipynb"}
PETS = (3312, 368)         # train, valid images: trainval 3,680, every 10th held out (labkit.data.pets)
CITYSCAPES = (2529, 446)   # 2,975 training frames, 15 % held out (labkit.data.cityscapes.VALID_FRACTION)


@dataclass
class PhaseSpec:
    """A phase of a recipe: what to build and train, on which images."""
    name: str
    build: Callable[[], torch.nn.Module]
    loss: Callable[[], torch.nn.Module]
    image_shape: tuple[int, int, int]
    classes: int
    images: tuple[int, int]
    epochs: int
    batch_size: int
    precision: str = "float16"
    cost_device: str = "meta"

    def phase(self) -> Phase:
        macs, activations = image_cost(self.build, self.image_shape, device=self.cost_device)
        return Phase(self.name, macs, activations, *self.images, self.epochs, self.batch_size, self.precision)


def notebook_recipe(number: str, column: str = "GPU") -> dict:
    """Recipe ``column`` of lab ``number``'s table (``labkit.recipes``), as a dict."""
    from labkit import recipes
    return recipes.table(number).recipe(column)


def recipe_phases(number: str, config: dict) -> list[PhaseSpec]:
    """The training phases notebook ``number`` runs with ``config``, in order."""
    from labkit.losses import BCEDiceLoss, SegmentationLoss
    from labkit.models.efficient_unet import EfficientUNet
    from labkit.models.resnet34_unet import ResNet34UNet
    from labkit.models.unet import UNet
    batch = config["batch_size"]
    if number in ("01", "02"):
        size = config["image_size"]
        shape, tag = (3, size, size), f"{size}x{size}"
        base = config["base_channels"] if number == "01" else config["unet_base_channels"]
        depth = config.get("unet_depth", 4)
        unet = PhaseSpec(f"UNet-{base} {tag}", lambda: UNet(classes=1, base_channels=base, depth=depth),
                         lambda: BCEDiceLoss(lovasz_weight=config.get("lovasz", 0.0)), shape, 1, PETS,
                         config["epochs"], batch)
        if number == "01":
            return [unet]
        return [unet, PhaseSpec(f"ResNet34-UNet {tag}", lambda: ResNet34UNet(classes=1), BCEDiceLoss, shape, 1,
                                PETS, config["epochs"], batch)]
    from labkit.quant.qat import prepare_qat
    height, width = config["image_size"]
    shape, tag = (3, height, width), f"{height}x{width}"
    efficient = lambda: EfficientUNet(classes=8, base_channels=config["task2_width"],  # noqa: E731
                                      depth=config["task2_depth"])
    return [PhaseSpec(f"Task 1 UNet-{config['task1_width']} {tag}",
                      lambda: UNet(classes=8, base_channels=config["task1_width"], depth=config["task1_depth"]),
                      SegmentationLoss, shape, 8, CITYSCAPES, config["task1_epochs"], batch),
            PhaseSpec(f"Task 2 EfficientUNet-{config['task2_width']} {tag}", efficient, SegmentationLoss, shape, 8,
                      CITYSCAPES, config["task2_epochs"], batch),
            PhaseSpec(f"Task 2 QAT EfficientUNet-{config['task2_width']} {tag}", lambda: prepare_qat(efficient()),
                      SegmentationLoss, shape, 8, CITYSCAPES, config["qat_epochs"], batch,
                      precision="float32", cost_device="cpu")]  # fake quantization: float32, not on meta


def measure(spec: PhaseSpec, *, batch: int, steps: int) -> dict:
    """Seconds per training and per validation image of ``spec`` on this CPU (see the module docstring)."""
    from labkit.train import train_one_epoch
    torch.manual_seed(0)
    model = spec.build().to(memory_format=torch.channels_last)
    images = torch.rand(batch, *spec.image_shape)
    targets = ((images[:, :1] > 0.5).float() if spec.classes == 1
               else torch.randint(0, spec.classes, (batch, *spec.image_shape[1:])))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = spec.loss()

    def train_step():
        train_one_epoch(model, [(images, targets)], optimizer, loss_fn, device=torch.device("cpu"),
                        channels_last=True, progress=False)

    def valid_step():
        with torch.no_grad():
            model.eval()(images.contiguous(memory_format=torch.channels_last))

    train, valid = (_fastest_seconds(step, steps) / batch for step in (train_step, valid_step))
    return {"phase": spec.name, "train_s_per_image": float(f"{train:.4g}"), "valid_s_per_image": float(f"{valid:.4g}"),
            "batch": batch, "steps": steps, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "load": round(os.getloadavg()[0], 1), "torch": torch.__version__, "date": date.today().isoformat()}


def measure_in_child(number: str, index: int, *, batch: int, steps: int) -> dict:
    """:func:`measure` of phase ``index`` of notebook ``number``'s GPU recipe, in a new process."""
    command = [sys.executable, __file__, "--measure-one", number, str(index), "--batch", str(batch),
               "--steps", str(steps)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _fastest_seconds(step: Callable[[], None], steps: int) -> float:
    """The shortest wall time of ``steps`` calls of ``step``, after one warm-up call."""
    step()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return min(seconds)


def table(rows: list[dict]) -> str:
    """The README's table: every phase of every GPU recipe, its T4 estimate and its measured CPU speed."""
    latest = {row["phase"]: row for row in rows}
    lines, measured = [], []
    for number in NOTEBOOKS:
        phases = [spec.phase() for spec in recipe_phases(number, notebook_recipe(number))]
        for phase in phases:
            fast, slow = estimate_minutes([phase])
            row = latest.get(phase.name)
            cpu = (phase.epochs * (phase.train_images * row["train_s_per_image"]
                                   + phase.valid_images * row["valid_s_per_image"]) / 3600) if row else None
            measured += [row] if row else []
            lines.append({"notebook": number, "phase": phase.name, "epochs": phase.epochs, "batch": phase.batch_size,
                          "GMACs/image": phase.macs / 1e9, "T4 bound": bound_by(phase),
                          "T4 minutes (estimate)": f"{fast:.0f}-{slow:.0f}",
                          "CPU s/image here (measured)": row["train_s_per_image"] if row else "not measured",
                          "CPU hours here (extrapolated)": f"{cpu:.1f}" if cpu is not None else ""})
        fast, slow = estimate_minutes(phases)
        lines.append({"notebook": number, "phase": "**all phases**",
                      "T4 minutes (estimate)": f"**{fast:.0f}-{slow:.0f}**", "CPU hours here (extrapolated)": ""})
    where = "; ".join(sorted({f"{row['cpu']}, {row['threads']} threads, {row['date']}" for row in measured}))
    loads = sorted(row["load"] for row in measured)
    where += f", load average {loads[0]}-{loads[-1]}" if loads else "not measured"
    header = (f"T4 minutes are ESTIMATES (`labkit.gpu_budget`: {T4.source}; optimistic-pessimistic, training and "
              f"validation passes; at most {COLAB_SESSION_MINUTES} per Colab session: one session per notebook, "
              f"02 one per model). CPU s/image: forward + backward + AdamW in float32, MEASURED here ({where}; "
              f"fastest of the timed batches); the CPU hours extrapolate that speed to the recipe's images and "
              f"epochs. Made by `python benchmarks/bench_gpu_budget.py --readme README.md`.")
    columns = ["notebook", "phase", "epochs", "batch", "GMACs/image", "T4 bound", "T4 minutes (estimate)",
               "CPU s/image here (measured)", "CPU hours here (extrapolated)"]
    return header + "\n\n" + format_table(lines, columns=columns, digits=2)



def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="images per timed batch (default 2)")
    parser.add_argument("--steps", type=int, default=4,
                        help="timed batches per phase (the fastest counts), after one warm-up")
    parser.add_argument("--notebooks", nargs="+", default=list(NOTEBOOKS), choices=list(NOTEBOOKS))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--table-only", action="store_true", help="measure nothing: the table from --results")
    parser.add_argument("--readme", type=Path, default=None)
    parser.add_argument("--measure-one", nargs=2, metavar=("NOTEBOOK", "PHASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_one:  # the child process of measure_in_child
        number, index = args.measure_one
        print(json.dumps(measure(recipe_phases(number, notebook_recipe(number))[int(index)], batch=args.batch,
                                 steps=args.steps)))
        return 0
    if not args.table_only:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        for number in args.notebooks:
            for index in range(len(recipe_phases(number, notebook_recipe(number)))):
                row = measure_in_child(number, index, batch=args.batch, steps=args.steps)
                print(json.dumps(row), flush=True)
                with open(args.results, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
    text = table(read_rows(args.results))
    print(text)
    if args.readme is not None:
        args.readme.write_text(replace_marked_section(args.readme.read_text(), text, start=MARKERS[0], end=MARKERS[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
