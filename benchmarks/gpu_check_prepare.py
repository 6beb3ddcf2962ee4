"""``python benchmarks/gpu_check.py --prepare``: copy a subset of the real data (../shared) and the Python
wheels a lent GPU machine lacks into ``gpu_subset/`` (git-ignored; <= 50 MB, so it travels with the tree).

Layout (what gpu_check.py and tests/test_gpu_check.py's fixture share): ``oxford-iiit-pet/`` (official
layout, shortened lists), ``cityscapes/`` (course layout), ``cifar10/`` (image folders),
``models/resnet20_cifar10_45k.pt``, ``wheels/*.whl`` and ``SUBSET.json`` (what was copied, from where).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from gpu_check_lib import PRUNING_MODEL

# The subset --prepare copies from ../shared (<= 50 MB with the wheels): (train, test) per data set.
SUBSET = {"pets": (100, 20), "cityscapes": (100, 20), "cifar10": (10, 50)}  # cifar10: images per class
# Packages labkit's notebooks and tests need that the lent GPU machines' image lacks: --prepare downloads
# them as Python 3.12 wheels (that image's Python) at the versions of this venv. The image holds torch
# and the rest of this set (ON_DEVICE), which stay out so that the image's CUDA build is the one used.
ROOTS = ("papermill", "ipykernel", "nbformat", "nbclient", "albumentations", "torch-pruning")
ON_DEVICE = set("""attrs certifi charset-normalizer click contourpy cycler filelock fonttools fsspec idna
iniconfig jinja2 kiwisolver markupsafe matplotlib mpmath networkx numpy opencv-python-headless packaging
pillow pip pluggy psutil pygments pyparsing pytest python-dateutil pyyaml requests scipy setuptools six
sympy torch torchvision tqdm triton typing-extensions urllib3""".split())


def prepare(source: Path, dest: Path, *, wheels: bool = True, limit_mb: float = 50.0) -> dict:
    """Copy a subset of ``source/data`` (+ the ResNet-20) into ``dest`` and the missing wheels."""
    data, dest = Path(source) / "data", Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    copied = {}
    pets_src, pets_dest = data / "oxford-iiit-pet-real", dest / "oxford-iiit-pet"
    for split, count in zip(("trainval", "test"), SUBSET["pets"]):
        lines = [line for line in (pets_src / "annotations" / f"{split}.txt").read_text().splitlines() if line.strip()]
        lines = lines[::max(1, len(lines) // count)][:count]  # spread over the breeds
        for name in (line.split()[0] for line in lines):
            _copy(pets_src / "images" / f"{name}.jpg", pets_dest / "images")
            _copy(pets_src / "annotations" / "trimaps" / f"{name}.png", pets_dest / "annotations" / "trimaps")
        (pets_dest / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        copied[f"pets {split}"] = len(lines)
    for split, count in zip(("training", "validation"), SUBSET["cityscapes"]):
        images = sorted((data / "cityscapes-real" / split / "image").glob("*.png"))
        for image in images[::max(1, len(images) // count)][:count]:
            for kind in ("image", "semantic_rgb"):
                _copy(image.parent.parent / kind / image.name, dest / "cityscapes" / split / kind)
        copied[f"cityscapes {split}"] = len(list((dest / "cityscapes" / split / "image").glob("*.png")))
    for split, count in zip(("train", "test"), SUBSET["cifar10"]):
        for folder in sorted(p for p in (data / "cifar10-real" / split).iterdir() if p.is_dir()):
            for image in sorted(folder.glob("*.png"))[:count]:
                _copy(image, dest / "cifar10" / split / folder.name)
        copied[f"cifar10 {split}"] = len(list((dest / "cifar10" / split).rglob("*.png")))
    _copy(Path(source) / PRUNING_MODEL, dest / "models")
    if wheels:
        copied["wheels"] = download_wheels(dest / "wheels")
    size_mb = sum(path.stat().st_size for path in dest.rglob("*") if path.is_file()) / 2**20
    summary = {"source": str(Path(source).resolve()), "copied": copied, "size_mb": round(size_mb, 1)}
    (dest / "SUBSET.json").write_text(json.dumps(summary, indent=1))
    if size_mb > limit_mb:
        raise SystemExit(f"{dest} is {size_mb:.1f} MB, over {limit_mb} MB: lower SUBSET in {__file__}")
    return summary


def _copy(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, folder / path.name)


def download_wheels(folder: Path) -> int:
    """pip-download (no deps) every package under ROOTS in this venv that the GPU image lacks."""
    import importlib.metadata as metadata
    from packaging.requirements import Requirement
    pins, todo = {}, list(ROOTS)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in pins or name in ON_DEVICE or name.startswith(("nvidia-", "cuda-")):
            continue
        dist = metadata.distribution(name)
        pins[name] = dist.version
        todo += [req.name for req in map(Requirement, dist.requires or [])
                 if not req.marker or req.marker.evaluate({"extra": ""})]
    platforms = [arg for tag in ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux1")
                 for arg in ("--platform", f"{tag}_x86_64")]
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                           "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder),
                           *(f"{name}=={version}" for name, version in sorted(pins.items()))],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"pip download failed (rerun with --no-wheels to copy the data only):\n{done.stderr[-3000:]}")
    return len(list(folder.glob("*.whl")))
