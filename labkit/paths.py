"""Where the repository's folders are, written once (every module asks here, none counts parents).

``REPO_ROOT`` is the folder that holds ``labkit/`` (a checkout, or the source an editable install
points at); ``CHECKS_DIR``, ``NOTEBOOKS_DIR`` and ``DATA_DIR`` are its ``checks/``, ``notebooks/``
and ``data/``. They are plain paths: whether they exist is for the caller to ask.

Example:
    >>> (REPO_ROOT / "labkit" / "paths.py").is_file()
    True
    >>> CHECKS_DIR.name, NOTEBOOKS_DIR.name, DATA_DIR.name
    ('checks', 'notebooks', 'data')
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKS_DIR = REPO_ROOT / "checks"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DATA_DIR = REPO_ROOT / "data"


def check_script(name: str) -> Path:
    """``checks/check_<name>.py`` for a task name (``"pruning"``), or a script name as it is.

    Example:
        >>> check_script("pruning").name
        'check_pruning.py'
    """
    return CHECKS_DIR / (name if name.endswith(".py") else f"check_{name}.py")
