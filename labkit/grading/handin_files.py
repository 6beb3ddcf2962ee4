"""Which files of a download are a hand-in: checkpoints, Lab 05's network code and extra folders told apart.

A student may hand in a whole run folder: the course's files (``model_task1.pth`` + ``network/network.py``,
...) beside ``checkpoints/<run>/best.pt`` and ``last.pt`` and a SMOKE run's fixture images. The batch
grader (:mod:`labkit.grading.batch`) and the class intake (:mod:`labkit.grading.intake`) use these rules:

- a training checkpoint (under ``checkpoints/``, or named ``best.pt`` / ``last.pt``) is never graded,
  never gives a student id and is listed as skipped (:func:`checkpoint_reason`);
- a ``.py`` file in Lab 05's ``network/`` or ``network2/`` folder goes with the weights beside it (the
  check grades the pair), so it is not a row of its own (:func:`is_network_code`);
- a folder of other files holding no weights at all (a run's ``data/``) is one row, not one per file
  (:func:`collapse_extra_folders`).

Example:
    >>> checkpoint_reason("123/checkpoints/task1/best.pt")[:40]
    'a training checkpoint (under checkpoints'
    >>> checkpoint_reason("123/model_task1.pth") is None, is_network_code("123/network2/network.py", "efficient")
    (True, True)
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from labkit.grading.student_network import NETWORK_FOLDERS

SUBMISSION_SUFFIXES = (".pth.tar", ".pth", ".pt")  # a weights file's name ends so (compared in lower case)
CHECKPOINT_FOLDER = "checkpoints"                   # labkit.train writes checkpoints/<run>/last.pt and best.pt
CHECKPOINT_NAMES = ("best.pt", "last.pt")


def checkpoint_reason(relative: str | Path) -> str | None:
    """Why a file is a training checkpoint, not a hand-in (``relative``: its path below the graded folder)."""
    parts = [part.lower() for part in Path(relative).parts]
    if CHECKPOINT_FOLDER in parts[:-1]:
        where = f"under {CHECKPOINT_FOLDER}/"
    elif parts and parts[-1] in CHECKPOINT_NAMES:
        where = f"named {parts[-1]}"
    else:
        return None
    return (f"a training checkpoint ({where}), not a hand-in; hand in the course's files (python -m labkit "
            "handin writes them), not the run folder")


def is_network_code(relative: str, task: str) -> bool:
    """A ``.py`` file in a Lab 05 hand-in's ``network/`` or ``network2/`` folder (``relative``: posix path)."""
    parts = relative.lower().split("/")
    return (task == "efficient" and parts[-1].endswith(".py")
            and any(part in NETWORK_FOLDERS.values() for part in parts[:-1]))


def _holds_candidates(relative: str) -> bool:
    return relative.lower().endswith(SUBMISSION_SUFFIXES + (".zip",))


def collapse_extra_folders(found: list, relative: list[str]) -> list:
    """``found`` (intake Submissions, ``relative[i]`` the posix path of ``found[i]`` in the download) with one
    row per folder of extra files instead of one per file.

    A file's folder is the highest one below the download's root that holds no candidate (a weights
    file or a zip); files in a folder that holds candidates keep their own rows (a README beside the
    weights), and so do refused entries. A folder of one extra file keeps that file's row.
    """
    with_candidates = set()
    for rel in relative:
        if _holds_candidates(rel):
            parts = rel.split("/")
            with_candidates.update("/".join(parts[:i]) for i in range(1, len(parts)))
    groups: dict[str, list[int]] = {}
    for index, (rel, submission) in enumerate(zip(relative, found)):
        if (submission.artifact is not None or submission.checkpoint or _holds_candidates(rel)
                or (submission.problem or "").startswith("refused")):
            continue
        parts = rel.split("/")
        folder = next((prefix for prefix in ("/".join(parts[:i]) for i in range(1, len(parts)))
                       if prefix not in with_candidates), None)
        if folder is not None:
            groups.setdefault(folder, []).append(index)
    result, drop = list(found), set()
    for folder, indices in groups.items():
        if len(indices) < 2:
            continue
        first = found[indices[0]]
        names = ", ".join(relative[i].rsplit("/", 1)[-1] for i in indices[:3])
        result[indices[0]] = replace(
            first, path=Path(os.path.commonpath([str(found[i].path) for i in indices])),
            origin=f"{first.origin} and {len(indices) - 1} more in {folder}/",
            problem=(f"{len(indices)} files in {folder}/ ({names}, ...) are not hand-in files (no weights in that "
                     "folder): not graded; hand in only the course's files"))
        drop.update(indices[1:])
    return [submission for index, submission in enumerate(result) if index not in drop]
