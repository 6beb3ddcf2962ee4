"""One Colab session's setup, run by every notebook's first cell every time it runs.

The first run on a new VM, a run after *Runtime -> Restart session*, and a second run in the same
kernel all end in the same state; only what is missing is done (the pip install, the copy of the
course's code to Drive). Two places, one kept and one rebuilt::

    /content/drive/MyDrive/labkit-course/    ON DRIVE (course=): what must survive a recycled VM
        labkit/            your copy of the course's code: the TODOs you edit (never overwritten)
        notebooks/         your copies of the notebooks (open them from here)
        runs/              checkpoints and saved models, so RESUME finds them on a new VM
        data-archives/     dataset archives, downloaded once and MD5-checked (LABKIT_ARCHIVES)
        releases/          the TA's release zips; a newer release's changed files go beside yours
    /content/labkit-course/                  ON THE VM's DISK (workdir=): fast, rebuilt every session
        notebooks/         the kernel's working folder: runs/ and the notebooks link to Drive's
        data/              the datasets, extracted from the archives on Drive (many small files)
        checks/, README.md the TA's, from the release unpacked on the VM (checks/ copied, see build_workdir)

labkit is imported from Drive's ``labkit/`` (a path entry: ``sys.path`` now, a ``.pth`` file for
new processes), so ``%autoreload`` picks up an edit and a recycled VM keeps it. pip installs only the
release's other requirements, constrained to the torch and torchvision already installed (by the
*distribution's* version, which pip knows: ``2.14.1``, not ``torch.__version__``'s ``2.14.1+cu130``).

Standard library only: it runs before labkit can be imported. The cell loads this file from the
release unpacked on the VM. Example (temporary folders stand in for Drive and the VM)::

    >>> import pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (tmp / "release" / "labkit").mkdir(parents=True), (tmp / "release" / "labkit" / "a.py").write_text("x = 1\\n")
    >>> sync_course(tmp / "release", tmp / "drive", version="1.0")["copied"]
    ['labkit/a.py']
    >>> _ = (tmp / "drive" / "labkit" / "a.py").write_text("x = 2  # my edit\\n")
    >>> sync_course(tmp / "release", tmp / "drive", version="1.0")["kept"]
    ['labkit/a.py']
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip's own copy of the same parser
    from pip._vendor import tomli as tomllib

STUDENT_OWNED = ("labkit", "notebooks")  # copied to Drive once, then the student's: never overwritten
TA_OWNED = ("checks", "README.md", "data")  # used from the release on the VM, so always the TA's latest
KEEP_INSTALLED = ("torch", "torchvision")  # Colab's build; pip must never replace them
BASELINE = ".labkit-course.json"  # what the release gave each file, to tell edits from TA changes
PTH_NAME = "labkit_course.pth"
DRIVE_FOLDER = "MyDrive/labkit-course"  # as the notebooks' "Your turn" cells name it (the cell's COURSE)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(source: Path, target: Path) -> None:
    """Copy through ``<target>.part`` so an interrupted copy never looks like a finished file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    shutil.copyfile(source, part)
    os.replace(part, target)


def _release_files(release: Path):
    for top in STUDENT_OWNED:
        for path in sorted((release / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path.relative_to(release).as_posix()


def sync_course(release: Path, course: Path, *, version: str) -> dict:
    """Copy the release's ``labkit/`` and ``notebooks/`` to ``course`` where a file is missing.

    A file already in ``course`` is never overwritten. When it differs from the release it is
    ``kept`` (the student edited it) or ``changed`` (not edited, but this newer release changed it).
    A file that this release changed since the first copy is ``newer``, and its new version goes to
    ``course/releases/<version>/<file>``, beside the student's. Returns lists of relative paths.
    """
    release, course = Path(release), Path(course)
    baseline_path = course / BASELINE
    baseline = json.loads(baseline_path.read_text()) if baseline_path.is_file() else {"files": {}}
    report = {"copied": [], "kept": [], "changed": [], "newer": []}
    for relative in _release_files(release):
        source, target = release / relative, course / relative
        if not target.exists():
            _copy(source, target)
            baseline["files"][relative] = file_hash(source)
            report["copied"].append(relative)
            continue
        ours, theirs, first = file_hash(target), file_hash(source), baseline["files"].get(relative)
        if ours == theirs:
            baseline["files"].setdefault(relative, theirs)  # (an interrupted first run recorded none)
            continue
        report["changed" if first == ours else "kept"].append(relative)  # not edited / edited by the student
        if first != theirs:  # a newer release changed this file: its copy goes beside the student's
            beside = course / "releases" / version / relative
            if not beside.is_file() or file_hash(beside) != theirs:
                _copy(source, beside)
            report["newer"].append(relative)
    baseline.setdefault("version", version)
    text = json.dumps(baseline, indent=1, sort_keys=True)
    if not baseline_path.is_file() or baseline_path.read_text() != text:
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        baseline_path.write_text(text)
    return report


def _link(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` (replacing a wrong link; never a real folder)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} is a real {'folder' if link.is_dir() else 'file'}, not a link to "
                              f"{target}: move it away (it is on the VM's disk and lost at the next recycle)")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def build_workdir(workdir: Path, *, course: Path, release: Path) -> Path:
    """The VM's working folder: local ``data/``; Drive's ``runs/`` and notebooks; the release's checks.
    Returns its ``notebooks/``, where the kernel works."""
    workdir = Path(workdir)
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    (course / "runs").mkdir(parents=True, exist_ok=True)
    _link(workdir / "notebooks" / "runs", course / "runs")
    # A copy, not a link: a check puts the folder above its own resolved path first on sys.path, and
    # above the release's checks/ is the release's labkit/ (the TODO stubs), not the student's.
    if (workdir / "checks").is_symlink():
        (workdir / "checks").unlink()
    shutil.rmtree(workdir / "checks", ignore_errors=True)  # this release's checks only
    shutil.copytree(release / "checks", workdir / "checks")
    _link(workdir / "README.md", release / "README.md")
    for notebook in sorted((course / "notebooks").glob("*.ipynb")):  # what labkit reads of a notebook
        _link(workdir / "notebooks" / notebook.name, notebook)
    return workdir / "notebooks"


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_requirements(pyproject: Path) -> list[str]:
    """The release's requirements that are not installed (or, where ``packaging`` can tell, too old)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors packaging; Colab has it installed anyway
        Requirement = None
    missing = []
    for text in tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]:
        name = re.split(r"[<>=!~ ;\[]", text, maxsplit=1)[0]
        installed = _installed_version(name)
        if installed is None:
            missing.append(text)
        elif Requirement is not None and name not in KEEP_INSTALLED \
                and not Requirement(text).specifier.contains(installed, prereleases=True):
            missing.append(text)
    return missing


def install_requirements(pyproject: Path, *, constraints_file: Path) -> list[str]:
    """pip-install what is missing, with the installed torch/torchvision as constraints. Returns it."""
    missing = missing_requirements(pyproject)
    if not missing:
        return []
    pins = [f"{name}=={version}" for name in KEEP_INSTALLED if (version := _installed_version(name))]
    constraints_file.write_text("".join(pin + "\n" for pin in pins))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(constraints_file), *missing],
                   check=True)
    importlib.invalidate_caches()
    return missing


def add_path_entry(course: Path) -> None:
    """Import labkit from ``course``: in this kernel (``sys.path``), in the processes it starts
    (``PYTHONPATH``: ahead of a labkit wheel a student may have pip-installed) and in a terminal
    (a ``.pth`` file in site-packages, rewritten on every new VM)."""
    if sys.path[:1] != [str(course)]:  # first, also when the .pth entry already put it last
        sys.path[:] = [str(course), *(entry for entry in sys.path if entry != str(course))]
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(course) not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(course), *filter(None, entries)])
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    if not pth.is_file() or pth.read_text().strip() != str(course):
        pth.write_text(f"{course}\n")
    importlib.invalidate_caches()


def runtime() -> str:
    """What the session computes on, in words: ``"GPU (Tesla T4)"`` or ``"CPU only"``."""
    try:
        import torch
    except ImportError:
        return "no torch installed"
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU only"


def bootstrap(*, course: str | Path, release: str | Path, version: str, workdir: str | Path = "/content/labkit-course",
              archives: bool = True, quiet: bool = False) -> dict:
    """Everything the first cell does after Drive is mounted; safe to run any number of times."""
    course, release, workdir = Path(course), Path(release), Path(workdir)
    report = sync_course(release, course, version=version)
    report["installed"] = install_requirements(release / "pyproject.toml",
                                               constraints_file=workdir.parent / "keep-torch.txt")
    add_path_entry(course)
    notebooks = build_workdir(workdir, course=course, release=release)
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"  # albumentations' update check: a network call per import
    os.environ["LABKIT_ROOT"] = str(workdir)  # checks/ and data/ are here, not beside Drive's labkit/
    if archives:
        os.environ["LABKIT_ARCHIVES"] = str(course / "data-archives")
    os.chdir(notebooks)
    report.update(cwd=str(notebooks), runtime=runtime())
    if not quiet:
        print(summary(report, course=course, version=version))
    return report


def summary(report: dict, *, course: Path, version: str) -> str:
    """The lines the first cell prints: what it did, where your code is, and which runtime."""
    lines = [f"labkit {version}: your code is in {course}/labkit (edit the TODOs there); "
             f"working folder {report['cwd']}",
             f"installed: {', '.join(report['installed'])}" if report["installed"] else
             "requirements: already installed",
             f"copied {len(report['copied'])} files of the release to {course}" if report["copied"] else ""]
    if report["kept"]:
        lines.append(f"kept your edits in {len(report['kept'])} files: {', '.join(report['kept'][:6])}"
                     + (" ..." if len(report["kept"]) > 6 else ""))
    if report["newer"]:
        lines.append(f"release {version} changed {len(report['newer'])} files since your copy (yours are kept, "
                     f"never overwritten); its versions are in {course}/releases/{version}/: "
                     f"{', '.join(report['newer'][:6])}" + (" ..." if len(report["newer"]) > 6 else ""))
    lines.append(f"runtime: {report['runtime']}" + ("" if report["runtime"].startswith("GPU") else
                 " - FULL mode runs the CPU recipes; for the GPU recipes: Runtime > Change runtime type > T4 GPU"))
    return "\n".join(line for line in lines if line)
