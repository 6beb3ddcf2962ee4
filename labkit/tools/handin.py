"""``python -m labkit handin LAB``: build the zip a lab hands in, and check it as the TA will.

    python -m labkit handin 03 [--student-id r0123] [--runs notebooks/runs] [--out r0123_lab03.zip]
        [--data data/cifar10] [--image-size 64] [--device cpu] [--timeout 1800] [--no-check]

1. Finds the files the lab's notebook saved in its run folder (the notebook's ``OUT_DIR``, read from
   its parameters cell: ``notebooks/runs/<notebook name>``; or ``--runs``: that folder or one holding
   it), in the folder itself or its ``saved_models/``. The names come from
   ``labkit.grading.tasks.TASKS`` (``unet.pth``, ``<id>_pruning.pt``, ...); Lab 05 also hands in
   ``network/network.py`` and ``network2/network.py``, beside its weights.
2. Refuses (exit 2) when a file is missing (naming it and the notebook cell that writes it), when
   ``labkit`` (the copy Python imports) still has a ``TODO`` stub of this lab (a function the lab's
   notebook names, or one its file imports; every stub when the notebook cannot be read), or when a
   handed-in ``network.py`` has one (it carries a copy of the student's labkit source).
3. Writes the zip: every file as ``<student id>_<name>`` at its root, networks in their folders, the
   layout ``python -m labkit grade`` reads. The student id is ``--student-id``, else the one in the
   saved file names (``123_pruning.pt``).
4. Extracts the zip to a temporary folder and runs the TA's check on each file there, as the batch
   grader does (``labkit.grading.batch.grade_one``: own process, memory cap, timeout). Exit 2 from a
   check: refused, with the check's message. Exit 3 or no verdict: a problem of this machine or its
   dataset, not of the files (exit 3). Below the goal (exit 1) is a valid hand-in: written, verdict shown.

The zip is written to a temporary file and renamed only once the check accepted it, so a refused
hand-in never touches the last good zip; an existing zip of the same name is kept as
``<name>.previous.zip`` (one generation).

Example (a notebook's last cell; ``runs`` is the notebook's ``out_dir``)::

    from labkit.tools.handin import handin
    zip_path = handin("03", student_id=STUDENT_ID, runs=out_dir, data=data_root, device="cpu")

Which lab is which, and the name its file gets in the zip:
    >>> number, notebook = resolve_lab("pruning")
    >>> number, notebook, f"r0123_{TASKS[LABS[number][0]].artifact_suffixes[0]}"
    ('03', '03_pruning_cifar10', 'r0123_pruning.pt')
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import labkit
from labkit.grading.batch import grade_one
from labkit.grading.call_check import check_command
from labkit.grading.contract import EXIT_BELOW_GOAL, EXIT_ENVIRONMENT, EXIT_INVALID, EXIT_PASSED
from labkit.grading.tasks import COURSE_TARGETS, TASKS
from labkit.paths import CHECKS_DIR, NOTEBOOKS_DIR

# lab -> (its task in TASKS, the artifacts of that task its notebook saves)
LABS = {"01": ("segmentation", ("unet",)), "02": ("segmentation", ("resnet34_unet",)),
        "03": ("pruning", ("pruning",)), "04": ("quantization", ("quantization",)),
        "05": ("efficient", ("model_task1", "model_task2"))}
# Lab 05: the student's network beside each weights file (where labkit.grading.batch.network_for looks)
NETWORKS = {"model_task1": "network/network.py", "model_task2": "network2/network.py"}
# What labkit.tools.release writes for each solution block of the student edition
STUB = re.compile(r'^\s*raise NotImplementedError\("TODO: implement ([^"{}]+)"\)', re.MULTILINE)
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}")
DEFAULT_TIMEOUT = 1800.0  # seconds per check: the full test split on a CPU


class HandinRefused(RuntimeError):
    """No zip was written; ``exit_code`` 2 (the files) or 3 (this machine or its dataset)."""

    def __init__(self, message: str, exit_code: int = EXIT_INVALID):
        super().__init__(message)
        self.exit_code = exit_code


def resolve_lab(lab) -> tuple[str, str]:
    """``"3"``, ``"03"``, ``"lab03"``, ``"03_pruning_cifar10"``, ``"pruning"`` -> ``("03", notebook name)``."""
    key = str(lab).strip().lower().removeprefix("lab").lstrip("_ ")
    for number, (task, artifacts) in LABS.items():
        notebook = next(target.notebook for target in COURSE_TARGETS if target.notebook.startswith(number))
        unique_task = [t for t, _ in LABS.values()].count(task) == 1
        if key in (number, number.lstrip("0"), notebook, *artifacts) or (unique_task and key == task):
            return number, notebook
    raise ValueError(f"unknown lab {lab!r}: give 01..05 (or e.g. pruning, quantization, efficient)")


def notebook_cells(notebooks_dir: Path, notebook: str) -> list[dict] | None:
    path = Path(notebooks_dir) / f"{notebook}.ipynb"
    if not path.is_file():
        return None
    return [{**cell, "source": "".join(cell["source"])} for cell in json.loads(path.read_text())["cells"]]


def run_folder(runs, notebook: str, cells: list[dict] | None, notebooks_dir: Path) -> Path:
    """The notebook's OUT_DIR: ``runs`` (or ``runs/<notebook>``), else the parameters cell's value."""
    if runs is not None:
        return Path(runs) / notebook if (Path(runs) / notebook).is_dir() else Path(runs)
    parameters = next((c["source"] for c in cells or [] if "parameters" in c.get("metadata", {}).get("tags", [])), "")
    match = re.search(r'^OUT_DIR = ["\']([^"\']+)["\']', parameters, re.MULTILINE)
    return Path(notebooks_dir) / (match[1] if match else f"runs/{notebook}")  # a notebook runs in notebooks/


def writer_of(cells: list[dict] | None, notebook: str, pattern: str) -> str:
    """Where the notebook writes a file: its section and the line of code that matches ``pattern``."""
    section = ""
    for cell in cells or []:
        if cell["cell_type"] == "markdown":
            section = ([""] + re.findall(r"^#+\s*(.+)$", cell["source"], re.MULTILINE))[-1] or section
        elif cell["cell_type"] == "code" and re.search(pattern, cell["source"]):
            line = next(line for line in cell["source"].splitlines() if re.search(pattern, line))
            return f"notebook {notebook}.ipynb writes it, section '{section}': `{line.strip()}`"
    return f"notebook {notebook}.ipynb's save cell writes it"


def todo_stubs(package_dir) -> list[tuple[str, str]]:
    """``(file, "Class.method()")`` for every TODO stub left in a labkit package folder."""
    package_dir = Path(package_dir)
    return [(f"{package_dir.name}/{path.relative_to(package_dir).as_posix()}", match[1])
            for path in sorted(package_dir.rglob("*.py")) for match in STUB.finditer(path.read_text(errors="replace"))]


def lab_stubs(stubs, cells: list[dict] | None, package_dir: Path) -> list[tuple[str, str]]:
    """The stubs this lab's notebook names (``Up.forward``, ``prune_to``), and those their files import
    by name (ResNet34-UNet's ``DoubleConv``), until none is added; every stub without a notebook."""
    if cells is None:
        return list(stubs)
    text = "\n".join(cell["source"] for cell in cells)
    relevant = {(file, name) for file, name in stubs
                if re.search(rf"(?<![\w.]){re.escape(name.removesuffix('()'))}(?!\w)", text)}
    while True:
        imported = {(node.module.replace(".", "/") + ".py", alias.name) for file in {file for file, _ in relevant}
                    for node in ast.walk(ast.parse((package_dir.parent / file).read_text()))
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labkit.")
                    for alias in node.names}
        added = {(file, name) for file, name in stubs if (file, name.split(".")[0].removesuffix("()")) in imported}
        if added <= relevant:
            return [stub for stub in stubs if stub in relevant]
        relevant |= added


def collect(folder: Path, task: str, artifacts, student_id: str | None, cells, notebook) -> tuple[str, dict]:
    """``(student id, {name in the zip: saved file})``; refuses a missing file or an unknown id."""
    places = (folder, folder / "saved_models")
    suffixes = {a: [s for s in TASKS[task].artifact_suffixes if s.split(".")[0] == a] for a in artifacts}
    named = {path: path.name[:-len(suffix) - 1] for a in artifacts for suffix in suffixes[a] for where in places
             for path in sorted(where.glob(f"*_{suffix}")) if STUDENT_ID.fullmatch(path.name[:-len(suffix) - 1])}
    if student_id is None:
        if len(set(named.values())) != 1:
            found = ", ".join(map(str, named)) or f"no file in {folder} carries one"
            raise HandinRefused(f"give your student id (--student-id, or student_id=): the zip and its files "
                                f"are named <id>_... ({found})")
        student_id = next(iter(named.values()))
    if not STUDENT_ID.fullmatch(student_id):
        raise HandinRefused(f"student id {student_id!r} cannot name a file: use letters, digits, '.' and '-'")
    files = {}
    for artifact in artifacts:
        found = next(((where / name, suffix) for where in places for suffix in suffixes[artifact]
                      for name in (f"{student_id}_{suffix}", suffix) if (where / name).is_file()), None)
        if found is None:
            suffix = suffixes[artifact][0]
            others = [str(path) for path, other in named.items() if other != student_id and suffix in path.name]
            hint = (f"\nfound {', '.join(others)}: saved under another STUDENT_ID; set yours and re-run that cell"
                    if others else "")
            written = writer_of(cells, notebook, "(?:[\"']|\\}_)" + re.escape(suffix) + "[\"']")
            raise HandinRefused(f"missing {student_id}_{suffix} (or {suffix}) in {folder} or its saved_models/: "
                                f"{written}{hint}")
        path, suffix = found
        files[f"{student_id}_{suffix}"] = path
        if artifact in NETWORKS:
            network = path.parent / NETWORKS[artifact]
            if not network.is_file():
                written = writer_of(cells, notebook, "[\"']" + re.escape(NETWORKS[artifact].split("/")[0]) + "[\"']")
                raise HandinRefused(f"missing {network}, the network.py the TA imports for {path.name}: {written}")
            files[NETWORKS[artifact]] = network
    return student_id, files


def run_checks(zip_path: Path, task: str, names, *, checks_dir, timeout: float, flags: dict) -> list[str]:
    """The TA's check on each weights file as extracted from the zip; the verdict lines, or a refusal."""
    words = check_command(task, "", **flags)[5:]  # the flags in the check's words (call_check's converter)
    lines = []
    with tempfile.TemporaryDirectory(prefix="handin-") as folder:
        zipfile.ZipFile(zip_path).extractall(folder)
        for name in names:
            row = grade_one(Path(folder) / name, task, check_arguments=words, timeout=timeout, checks_dir=checks_dir)
            script = TASKS[task].script
            if row["status"] == "ok" and row["exit_code"] == EXIT_INVALID:
                raise HandinRefused(f"the course's check refuses {name} ({script}, exit code 2):\n{row['message']}")
            if row["status"] != "ok" or row["exit_code"] not in (EXIT_PASSED, EXIT_BELOW_GOAL):
                raise HandinRefused(f"{script} could not grade {name} on this machine (exit code {row['exit_code']}, "
                                    f"{row['status']}): a problem of this machine or its dataset, not of your "
                                    f"files; fix it and hand in again:\n{row['message']}", EXIT_ENVIRONMENT)
            verdict = "passed" if row["exit_code"] == EXIT_PASSED else "below the goal (still a valid hand-in)"
            lines.append(f"{script} on {name}, as extracted from the zip: {verdict} (exit code {row['exit_code']})\n"
                         + "\n".join(f"    {line}" for line in row["message"].splitlines()))
    return lines


def handin(lab, *, student_id: str | None = None, runs=None, out=None, check: bool = True,
           timeout: float = DEFAULT_TIMEOUT, checks_dir=CHECKS_DIR, package_dir=None, notebooks_dir=NOTEBOOKS_DIR,
           **flags) -> Path:
    """Build, check and write a lab's hand-in zip; print what went in and the verdict; return its path.

    ``flags``: the check's options by their Python names (``data=``, ``image_size=``, ``device=``), as
    in :func:`labkit.grading.call_check.call_check`. ``package_dir``: the labkit folder scanned for TODO
    stubs (default: the imported one). Raises :class:`HandinRefused` and writes nothing on a refusal.
    """
    number, notebook = resolve_lab(lab)
    task, artifacts = LABS[number]
    cells = notebook_cells(notebooks_dir, notebook)
    folder = run_folder(runs, notebook, cells, notebooks_dir)
    student_id, files = collect(folder, task, artifacts, student_id, cells, notebook)
    package_dir = Path(package_dir or Path(labkit.__file__).parent)
    stubs = lab_stubs(todo_stubs(package_dir), cells, package_dir)
    stubs += [(str(path), match[1]) for name, path in files.items() if name.endswith(".py")
              for match in STUB.finditer(path.read_text(errors="replace"))]
    if stubs:
        raise HandinRefused(f"Lab {number} still has TODO stubs:\n"
                            + "\n".join(f"  {file}: {name}" for file, name in stubs)
                            + "\nimplement each (the notebook explains it; its self-check cell says when it is "
                              "right), restart the kernel, re-run the notebook's save cells, then hand in again")
    out = Path(out) if out is not None else folder / f"{student_id}_lab{number}.zip"  # kept with the run
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary, previous = out.with_name(f".{out.name}.{os.getpid()}.tmp"), out.with_name(f"{out.stem}.previous.zip")
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for name, path in files.items():  # .pt/.pth are zip archives already: stored, not deflated
                archive.write(path, name, zipfile.ZIP_DEFLATED if name.endswith(".py") else zipfile.ZIP_STORED)
        print(f"Lab {number} hand-in of student {student_id}:")
        for name, path in files.items():
            print(f"  {name:<28} {path.stat().st_size:>12,} bytes  <- {path}")
        weights = [name for name in files if not name.endswith(".py")]
        verdicts = (run_checks(temporary, task, weights, checks_dir=checks_dir, timeout=timeout, flags=flags)
                    if check else ["not checked (--no-check): run the check before you submit"])
        print("\n".join(verdicts))
        kept = out.exists()
        if kept:
            out.replace(previous)
        temporary.replace(out)
    finally:
        temporary.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)" + (f"; the one before is now {previous}" if kept else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit handin", description=__doc__.splitlines()[0])
    parser.add_argument("lab", help="01..05, or a lab's name: unet, resnet34_unet, pruning, quantization, efficient")
    parser.add_argument("--student-id", help="names the zip and its files (default: the id in the saved file names)")
    parser.add_argument("--runs", help="the notebook's OUT_DIR or a folder holding it (default: its parameters cell's)")
    parser.add_argument("--out", help="the zip (default: <id>_lab<NN>.zip in the run folder, on Drive on Colab; an old one "
                             "becomes .previous.zip)")
    parser.add_argument("--data", help="dataset root for the check (default: the check's)")
    parser.add_argument("--image-size", type=int, nargs="+", help="the check's evaluation size (Labs 01, 02, 05)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the check runs (default: its own)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per check")
    parser.add_argument("--no-check", action="store_true", help="write the zip without running the check")
    args = parser.parse_args(argv)
    try:
        handin(args.lab, student_id=args.student_id, runs=args.runs, out=args.out, check=not args.no_check,
               timeout=args.timeout, data=args.data, image_size=args.image_size, device=args.device)
    except HandinRefused as refusal:
        print(f"labkit handin: refused, no zip written: {refusal}", file=sys.stderr)
        return refusal.exit_code
    return 0
