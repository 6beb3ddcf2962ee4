"""Keep each graded file's row, so a re-run grades only what is new and an interrupted run resumes.

A row is reused when its **key** matches: the sha256 of the submitted file (and of Lab 05's
``network.py`` beside it), the labkit version, the task, the check's arguments, a fingerprint of the
check scripts and one of the dataset folder. Change any of them — a new file, a fixed check, another
dataset, ``--device cuda`` — and the file is graded again. Rows without a verdict (a timeout, a
crash, a problem of the grading machine) are never reused: the next run tries them again.

The store is one JSON-lines file (``grades.store.jsonl`` beside the CSV by default). Each row is
appended and flushed as soon as its check ends, so a run stopped half-way (Ctrl-C, a lost SSH
session, a reboot) keeps what it graded; the next run starts where it stopped. A damaged last line
(a run killed while writing) is skipped.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "7_pruning.pt").write_bytes(b"weights")
    7
    >>> store = ResultStore(folder / "grades.store.jsonl")
    >>> from labkit.download import sha256sum
    >>> setup = setup_fingerprint("pruning", check_arguments=["--device", "cpu"], checks_dir=folder, data=None)
    >>> key = grading_key(sha256sum(folder / "7_pruning.pt"), setup)
    >>> store.get(key) is None
    True
    >>> store.put(key, {"id": "7", "status": "ok", "exit_code": 0, "metrics": {}})
    >>> ResultStore(folder / "grades.store.jsonl").get(key)["exit_code"]
    0
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from labkit.version import __version__

REUSABLE_EXIT_CODES = (0, 1, 2)  # a verdict on the file; 3 (the grader's machine) and timeouts are retried
MAX_FINGERPRINT_FILES = 200_000  # a dataset folder larger than this is fingerprinted by its first files


def folder_fingerprint(folder: Path | None, *, pattern: str = "*") -> str:
    """sha256 of every file's relative path and size below ``folder`` (sorted); ``"none"`` without one.

    Sizes, not contents: hashing a dataset of 60,000 images on every run would cost more than it
    saves. A file replaced by another of the same size and name is not noticed; ``--force`` re-grades.
    """
    if folder is None or not Path(folder).exists():
        return "none"
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(path for path in folder.rglob(pattern) if path.is_file() and not path.is_symlink())
    for path in files[:MAX_FINGERPRINT_FILES]:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def setup_fingerprint(task: str, *, check_arguments, checks_dir: Path, data) -> str:
    """What every verdict of one run depends on besides the file: version, task, arguments, checks, data.

    Computed once per run (walking a dataset of 30,000 images once, not once per submission).
    """
    parts = {"labkit": __version__, "task": task, "arguments": list(check_arguments),
             "checks": _sources_hash(Path(checks_dir)), "data": folder_fingerprint(Path(data) if data else None)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def grading_key(file_sha256: str, setup: str, *, network_sha256: str | None = None) -> str:
    """One file's key: its sha256 (and its network.py's) under one :func:`setup_fingerprint`."""
    return hashlib.sha256(f"{file_sha256}\0{network_sha256}\0{setup}".encode()).hexdigest()


def _sources_hash(checks_dir: Path) -> str:
    """The check scripts' contents: a fixed check re-grades everything it graded."""
    digest = hashlib.sha256()
    for script in sorted(checks_dir.glob("*.py")):
        digest.update(script.name.encode() + b"\0" + script.read_bytes())
    return digest.hexdigest()


class ResultStore:
    """Rows by grading key, read from and appended to one JSON-lines file; safe to share between threads."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._rows: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    self._rows[entry["key"]] = entry["row"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a killed run

    def get(self, key: str) -> dict | None:
        """The kept row for ``key`` when it holds a verdict on the file, else None."""
        row = self._rows.get(key)
        if row is None or row.get("status") != "ok" or row.get("exit_code") not in REUSABLE_EXIT_CODES:
            return None
        return dict(row)

    def put(self, key: str, row: dict) -> None:
        """Keep ``row`` and append it to the file at once (flushed to disk)."""
        with self._lock:
            self._rows[key] = row
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"key": key, "row": row}, default=float) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
