"""How many submissions per minute the batch grader checks, per task, at ``--jobs 1`` and ``--jobs 2``.

Each task gets ``--files`` submissions built here from the shared data (``../shared``), all graded
by the real check on the real data, in a fresh folder per run (no kept results: every file graded):

- pruning: the shared ResNet-20 pruned to 50 % (global L1, ``prune.remove`` done), on
  ``cifar10-real/test`` (5,000 images);
- quantization: the same model quantized by hand (``labkit.quant.manual``, 4 calibration batches of
  the training images), on ``cifar10-real/test``;
- segmentation: an untrained labkit UNet (the file's weights do not change the check's time), on the
  50 ``oxford-iiit-pet-real`` test images at the check's default size;
- efficient: Lab 05 Task 2 with a student's own ``network2/network.py`` (``tests/students/task2_net``),
  run in the sandbox (bubblewrap when installed) on the 50 ``cityscapes-real`` validation frames at the
  course's 256x512.

The rows (task, jobs, files, seconds, files per minute) go to ``--results`` (JSON lines); ``--readme``
rewrites the table between ``<!-- grading-throughput:begin/end -->`` in that file. Time it alone: two
jobs sharing 2 cores slow each other several-fold.

Run:
    python benchmarks/bench_grading_throughput.py --files 4 --readme README.md
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402

from labkit.grading.batch import grade_folder, not_graded  # noqa: E402
from labkit.io import save_state_dict  # noqa: E402
from labkit.tables import format_table  # noqa: E402
from labkit.tools.readme_table import replace_marked_section  # noqa: E402
from labkit.tools.runner import cpu_model  # noqa: E402

SHARED = REPO_ROOT.parent / "shared"
DATA = SHARED / "data"
MARKERS = ("<!-- grading-throughput:begin -->", "<!-- grading-throughput:end -->")


def pruned_resnet20():
    from labkit.models.resnet20 import load_pretrained
    model = load_pretrained(SHARED / "models" / "resnet20_cifar10_45k.pt", progress=False)
    layers = [(module, "weight") for module in model.modules() if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))]
    torch_prune.global_unstructured(layers, pruning_method=torch_prune.L1Unstructured, amount=0.5)
    for module, name in layers:
        torch_prune.remove(module, name)
    return model


def quantized_resnet20():
    from labkit.data.cifar10 import cifar10_loaders
    from labkit.models.resnet20 import load_pretrained
    from labkit.quant.manual import quantize_resnet20
    loaders = cifar10_loaders(DATA / "cifar10-real", augment_train=False, train_subset=512)
    return quantize_resnet20(load_pretrained(SHARED / "models" / "resnet20_cifar10_45k.pt", progress=False),
                             loaders.train, num_batches=4)


def write_submissions(task: str, folder: Path, files: int) -> None:
    """``files`` copies of one submission of ``task`` under the course's names (``s0_pruning.pt``, ...)."""
    if task == "pruning":
        state, name = pruned_resnet20().state_dict(), "pruning.pt"
    elif task == "quantization":
        state, name = quantized_resnet20().state_dict(), "quantization.pt"
    elif task == "segmentation":
        from labkit.models.unet import UNet
        state, name = UNet().state_dict(), "unet.pth"
    else:
        sys.path.insert(0, str(REPO_ROOT / "tests" / "students" / "task2_net"))
        import network
        state, name = network.LiteSeg().eval().state_dict(), "model_task2.pth"
    for index in range(files):
        student = folder / f"s{index}"
        student.mkdir(parents=True)
        save_state_dict(state, student / f"s{index}_{name}")
        if task == "efficient":
            (student / "network2").mkdir()
            shutil.copy(REPO_ROOT / "tests" / "students" / "task2_net" / "network.py", student / "network2")


DATASETS = {"pruning": "cifar10-real", "quantization": "cifar10-real", "segmentation": "oxford-iiit-pet-real",
            "efficient": "cityscapes-real"}


def measure(task: str, jobs: int, files: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "submissions"
        write_submissions(task, folder, files)
        started = time.perf_counter()
        rows = grade_folder(folder, task, check_arguments=["--device", "cpu", "--data", str(DATA / DATASETS[task])],
                            jobs=jobs, progress=False)
        seconds = time.perf_counter() - started
    failed = [row["message"][:200] for row in rows if not_graded(row)]
    if failed:
        raise SystemExit(f"{task}: {len(failed)} file(s) not graded: {failed[0]}")
    return {"task": task, "jobs": jobs, "files": files, "seconds": round(seconds, 1),
            "files_per_minute": round(60 * files / seconds, 2), "seconds_per_file": round(seconds / files, 1),
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "torch": torch.__version__, "bubblewrap": shutil.which("bwrap") is not None, "date": date.today().isoformat()}


def table(rows: list[dict]) -> str:
    first = rows[0]
    header = (f"{first['date']}, {cpu_model()}, {first['cores']} cores, torch {first['torch']}; "
              f"{first['files']} files per task and setting; made by `python benchmarks/bench_grading_throughput.py`.")
    shown = [{key: row[key] for key in ("task", "jobs", "files", "seconds", "seconds_per_file", "files_per_minute")}
             for row in rows]
    return header + "\n\n" + format_table(shown, digits=3)



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tasks", nargs="+", default=list(DATASETS))
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "benchmarks" / "rows" / "grading_throughput.jsonl")
    parser.add_argument("--readme", type=Path, default=None)
    args = parser.parse_args(argv)
    missing = [DATA / DATASETS[task] for task in args.tasks if not (DATA / DATASETS[task]).is_dir()]
    if missing:
        print(f"error: the shared data is not here: {', '.join(map(str, missing))}", file=sys.stderr)
        return 3
    rows = []
    for task in args.tasks:
        for jobs in args.jobs:
            rows.append(measure(task, jobs, args.files))
            print(json.dumps(rows[-1]), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    text = table(rows)
    print(text)
    if args.readme is not None:
        args.readme.write_text(replace_marked_section(args.readme.read_text(), text, start=MARKERS[0], end=MARKERS[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
