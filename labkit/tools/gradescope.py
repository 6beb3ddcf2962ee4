"""``python -m labkit gradescope``: one Gradescope autograder (a .zip) for one task.

    python -m labkit gradescope --task pruning --data data/cifar10 [--policy course.yaml] --out autograder.zip
        [--data-url URL] [--max-bundle-mb 200]

Gradescope unpacks the zip to ``/autograder/source`` and runs ``setup.sh`` once while it builds the
image; for every submission it copies ``run_autograder`` to ``/autograder/run_autograder`` and runs it
there. The zip holds:

    setup.sh          apt: python3, pip, bubblewrap (where it installs); pip: CPU torch/torchvision and
                      labkit's dependencies pinned by constraints.txt, then labkit itself from this folder
    run_autograder    python3 -m labkit.grading.gradescope_results (every path found from its own folder)
    autograder.json   the task, the data folder, the policy (course.yaml checked and resolved)
    labkit/ checks/ pyproject.toml constraints.txt README.md   the TA's labkit, as source
    data/<dataset>/   the held-out data when it is small (CIFAR-10: the test split only, ~30 MB)
    data.url + fetch_data.sh   otherwise: setup.sh downloads the archive written beside the zip (upload
                      it to URL) and checks its sha256 before unpacking it

The held-out data stays in the image: students see their own results.json only. A student's
``network.py`` (Lab 05) runs in labkit's sandbox, whose bubblewrap view holds the system, Python and
labkit's package folder but not ``/autograder`` (no data, no results, no other files); the data folder
is also masked by name. Without bubblewrap, ``run_autograder`` refuses to run a ``network.py``
(an autograder error for the TA) unless course.yaml says ``sandbox: limits-only``.

Example::

    python -m labkit gradescope --task quantization --data data/cifar10 --out dist/lab04-autograder.zip
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
import zipfile
from pathlib import Path

from labkit.grading.gradescope_results import CONFIG
from labkit.grading.policy import load_policy
from labkit.grading.tasks import TASKS
from labkit.paths import REPO_ROOT
from labkit.version import __version__

CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # Gradescope's images have no GPU
SOURCE_FILES = ("labkit", "checks", "pyproject.toml", "constraints.txt", "README.md")
ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed, so the same inputs give the same zip
MIN_PYTHON = (3, 11)  # what constraints.txt's pins need (numpy 2.4, matplotlib 3.11): Ubuntu 24.04, not 22.04

SETUP_SH = """#!/usr/bin/env bash
# labkit {version} autograder, task {task}: Gradescope runs this once, as root, when it builds the image.
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
export DEBIAN_FRONTEND=noninteractive PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1
apt-get update -q
apt-get install -y -q python3 python3-pip curl
# bubblewrap isolates a student's network.py (Lab 05); without it run_autograder refuses network.py
# (an autograder error the TA sees) unless course.yaml says sandbox: limits-only.
apt-get install -y -q bubblewrap || echo "setup.sh: bubblewrap could not be installed"
python3 -c 'import sys; sys.exit(sys.version_info < {min_python} and "setup.sh: constraints.txt pins need Python \
>= {min_python_text}; this image has " + sys.version.split()[0] + ": choose an Ubuntu 24.04 base image")'
python3 -m pip install --index-url {cpu_index} {torch_pins}
python3 -m pip install -c constraints.txt .
if [ -f data.url ]; then bash fetch_data.sh; fi
python3 -c "import torch, labkit; print('labkit', labkit.__version__, 'torch', torch.__version__)"
python3 -c "from labkit.grading.sandbox import isolation_available as a; print('sandbox:', a()['detail'])"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# labkit {version} autograder, task {task}. Gradescope runs a copy at /autograder/run_autograder; the
# zip's files are in source/ beside it (or beside this script when it runs from inside source/).
set -uo pipefail
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
if [ -f "$here/source/{config}" ]; then source_dir="$here/source"; else source_dir="$here"; fi
root="$(dirname "$source_dir")"
cd "$source_dir"
export PYTHONPATH="$source_dir${{PYTHONPATH:+:$PYTHONPATH}}" PYTHONDONTWRITEBYTECODE=1
exec python3 -m labkit.grading.gradescope_results --source "$source_dir" --root "$root"
"""

FETCH_DATA_SH = """#!/usr/bin/env bash
# Download the held-out data named in data.url ("URL SHA256"), check its sha256, unpack it into data/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
read -r url sha256 < data.url
curl -fsSL --retry 3 -o data.tar.gz "$url"
echo "$sha256  data.tar.gz" | sha256sum -c - || { rm -f data.tar.gz; echo "fetch_data.sh: wrong sha256" >&2; exit 1; }
tar -xzf data.tar.gz --no-same-owner
rm data.tar.gz
"""


def held_out_files(task_name: str, data: Path) -> list[tuple[Path, str]]:
    """``(file, path in the zip)`` of the data the task's check reads; CIFAR-10: the test split only.

    Example (the official batches: the test batch and the class names, not the 150 MB of training data):
        >>> import tempfile
        >>> from labkit.data.cifar10 import make_fixture
        >>> root = make_fixture(tempfile.mkdtemp(), n_train=10, n_test=10)
        >>> [name for _, name in held_out_files("pruning", root)]
        ['data/cifar10/cifar-10-batches-py/test_batch', 'data/cifar10/cifar-10-batches-py/batches.meta']
    """
    dataset = TASKS[task_name].dataset
    data = Path(data)
    if not data.is_dir():
        raise ValueError(f"--data {data} is not a folder; give the held-out {dataset} data the check reads")
    if dataset == "cifar10":
        from labkit.data.cifar10 import find_layout
        from labkit.download import DatasetNotFoundError
        try:
            layout, folder = find_layout(data, "test")
        except DatasetNotFoundError as error:
            raise ValueError(str(error)) from None
        files = ([folder / name for name in ("test_batch", "batches.meta") if (folder / name).is_file()]
                 if layout == "batches" else sorted(p for p in folder.rglob("*") if p.is_file()))
    else:
        files = sorted(path for path in data.rglob("*") if path.is_file())
    if not files:
        raise ValueError(f"--data {data} holds no files")
    return [(path, f"data/{dataset}/{path.relative_to(data).as_posix()}") for path in files]


def _torch_pins(constraints: Path) -> str:
    pins = [line.strip() for line in constraints.read_text().splitlines()
            if line.strip().startswith(("torch==", "torchvision=="))]
    if len(pins) != 2:
        raise ValueError(f"{constraints} must pin torch and torchvision (torch==X, torchvision==Y)")
    return " ".join(pins)


def _add(bundle: zipfile.ZipFile, name: str, data: bytes, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    bundle.writestr(info, data)


def _source_files(root: Path):
    for entry in SOURCE_FILES:
        path = root / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                yield file, file.relative_to(root).as_posix()


def data_archive(files: list[tuple[Path, str]], path: Path) -> str:
    """Write the held-out files as a .tar.gz at ``path``; return its sha256."""
    with tarfile.open(path, "w:gz") as archive:
        for file, name in files:
            archive.add(file, arcname=name, recursive=False)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_autograder(task_name: str, data: Path, out: Path, *, policy_path: Path | None = None,
                     data_url: str | None = None, max_bundle_mb: float = 200.0, source_root: Path = REPO_ROOT) -> dict:
    """Write the autograder zip; return what went in (``points``, ``bundled``, ``archive``, ...)."""
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; the tasks are {', '.join(sorted(TASKS))}")
    policy = load_policy(policy_path)  # a wrong key fails here, not in Gradescope
    files = held_out_files(task_name, data)
    size = sum(file.stat().st_size for file, _ in files)
    bundled = size <= max_bundle_mb * 1e6
    out.parent.mkdir(parents=True, exist_ok=True)
    archive = sha256 = None
    if not bundled:
        if not data_url:
            raise ValueError(f"the held-out data is {size / 1e6:.0f} MB, over --max-bundle-mb {max_bundle_mb:g}: "
                             "give --data-url URL (where you will upload the archive written beside the zip)")
        archive = out.with_name(out.stem + ".data.tar.gz")
        sha256 = data_archive(files, archive)
    config = {"task": task_name, "data": f"data/{TASKS[task_name].dataset}", "labkit": __version__,
              "policy": policy.to_dict(), "points": sum(policy.points_for(task_name).values())}
    fill = {"version": __version__, "task": task_name, "config": CONFIG}
    with zipfile.ZipFile(out, "w") as bundle:
        _add(bundle, "setup.sh", SETUP_SH.format(**fill, cpu_index=CPU_INDEX, min_python=MIN_PYTHON,
                                                 min_python_text=".".join(map(str, MIN_PYTHON)),
                                                 torch_pins=_torch_pins(source_root / "constraints.txt")).encode(),
             executable=True)
        _add(bundle, "run_autograder", RUN_AUTOGRADER.format(**fill).encode(), executable=True)
        _add(bundle, CONFIG, json.dumps(config, indent=2).encode())
        if policy_path is not None:
            _add(bundle, "course.yaml", Path(policy_path).read_bytes())
        for file, name in _source_files(source_root):
            _add(bundle, name, file.read_bytes())
        if bundled:
            for file, name in files:
                _add(bundle, name, file.read_bytes())
        else:
            _add(bundle, "data.url", f"{data_url} {sha256}\n".encode())
            _add(bundle, "fetch_data.sh", FETCH_DATA_SH.encode(), executable=True)
    return {"zip": out, "points": config["points"], "timeout_s": policy.timeout_s, "bundled": bundled,
            "data_mb": size / 1e6, "archive": archive, "sha256": sha256}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit gradescope", description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--data", type=Path, required=True, help="the held-out data the check grades on")
    parser.add_argument("--policy", type=Path, default=None, help="course.yaml: points, tiers, late rule, ...")
    parser.add_argument("--out", type=Path, default=Path("autograder.zip"))
    parser.add_argument("--data-url", default=None, help="where the data archive will be served, when not bundled")
    parser.add_argument("--max-bundle-mb", type=float, default=200.0, help="bundle the data up to this size")
    args = parser.parse_args(argv)
    built = build_autograder(args.task, args.data, args.out, policy_path=args.policy, data_url=args.data_url,
                             max_bundle_mb=args.max_bundle_mb)
    where = ("bundled" if built["bundled"] else
             f"NOT bundled: upload {built['archive']} to {args.data_url} (sha256 {built['sha256']})")
    print(f"wrote {built['zip']} ({built['zip'].stat().st_size / 1e6:.1f} MB): task {args.task}, "
          f"{built['points']:g} points, held-out data {built['data_mb']:.1f} MB {where}")
    print(f"On Gradescope: Configure Autograder -> upload the zip (Ubuntu 24.04 base image); give the assignment "
          f"{built['points']:g} autograder points, memory >= 3 GB, and an autograder timeout equal to "
          f"timeout_s in course.yaml ({built['timeout_s']:g} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
