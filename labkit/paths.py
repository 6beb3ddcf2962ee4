"""Where the repository's folders are, written once (every module asks here, none counts parents).

``REPO_ROOT`` is the folder that holds ``labkit/`` (a checkout, or the source an editable install
points at); ``CHECKS_DIR``, ``NOTEBOOKS_DIR`` and ``DATA_DIR`` are its ``checks/``, ``notebooks/``
and ``data/``. They are plain paths: whether they exist is for the caller to ask.

When labkit is installed from a wheel (the student edition on Colab), the folder above the package
is ``site-packages``, which has no ``checks/``: then the course folder is ``$LABKIT_ROOT`` if set,
else the nearest of the working directory and its parents that holds ``checks/`` (a notebook runs
in ``notebooks/``, beside it).

Example:
    >>> (REPO_ROOT / "labkit" / "paths.py").is_file()
    True
    >>> CHECKS_DIR.name, NOTEBOOKS_DIR.name, DATA_DIR.name
    ('checks', 'notebooks', 'data')
"""
from __future__ import annotations

import os
from pathlib import Path



def find_repo_root(package_parent: Path | None = None, *, cwd: Path | None = None, environ=None) -> Path:
    """The course folder: see the module docstring for the order in which places are tried."""
    package_parent = package_parent or Path(__file__).resolve().parents[1]
    environ = os.environ if environ is None else environ
    if environ.get("LABKIT_ROOT"):
        return Path(environ["LABKIT_ROOT"]).resolve()
    if (package_parent / "checks").is_dir():
        return package_parent
    cwd = (cwd or Path.cwd()).resolve()
    return next((folder for folder in (cwd, *cwd.parents) if (folder / "checks").is_dir()), package_parent)


REPO_ROOT = find_repo_root()
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
