"""Intake: an LMS's bulk download (a folder or a ``.zip``) to a list of submissions, each with a student
id, a time and, when it cannot be graded, why. Every file gets a row; nothing is dropped silently.

    subs = select_latest(open_submissions(Path("bulk.zip"), Path("work"), "pruning", id_pattern="canvas"))

Ids: ``re.search`` of the id pattern on the file's path relative to the download, posix form; the first
match counts. In a student's zip the path is the zip's path without ``.zip``, then the entry's
(``doejohn_12345_67890_hw/123_pruning.pt``), and the zip's own path is tried first: its files belong to
whoever handed it in. Built-in patterns (:data:`ID_PATTERNS`, any letter case, from a path component):

- ``canvas``: ``<sortable name>_[late_]<user id>_<attachment id>_<file name>``, as Canvas's
  ``ContentZipper#get_filename`` (instructure/canvas-lms) writes it: the sortable name without non-word
  characters, lower case (``doejohn``, ``o_brienmary``; ``_<digits>_`` squeezed out), ``late`` when late
  (older Canvas: ``doe--john-late_12345``). A re-upload of the same name is ``pruning-1.pt``. The id is
  the Canvas user id (the gradebook export's ``ID``). Not covered: anonymous grading (no name; use a
  regex), a name ending in ``_<digits>``; group assignments give one file, under one member's id.
- ``moodle``: ``<Full Name>_<participant id>_assignsubmission_file_`` then ``/<file>`` (in folders, the
  default since Moodle 3.1) or ``<file>`` (flat), as mod/assign ``download_submissions`` writes it
  (``_`` in names become spaces). The id is the per-assignment participant id, not the user id.
- ``course``: ``123_pruning.pt`` and ``123/unet.pth`` -> 123, as :func:`labkit.grading.batch.student_id`.

Times: the pattern's ``timestamp`` group (ISO 8601, ``YYYYMMDDHHMMSS``, ``YYYY-MM-DD-HH-MM-SS``; UTC
when it has no zone), else the zip entry's time (zips store no zone: read as UTC; Canvas may give every
entry the time it built the zip), else the file's modification time. Files in a student's zip take the
time of that zip (the LMS's record), not their own (the student's clock).

Zips are checked entry by entry (path, link, password, size, ratio, nesting) and streamed, bytes counted,
into ``work``; a refused entry is listed, never written. Folders are read in place; links are listed,
never followed. ``__MACOSX/`` and ``.DS_Store`` are skipped. Extra files (a README in a student's zip)
are listed with a problem too: filter on ``artifact is None`` to hide them. A folder of extra files with no
weights in it (a run folder's ``data/``) is one row, not one per file. Training checkpoints (under
``checkpoints/``, ``best.pt``, ``last.pt``) are listed with ``checkpoint=True``, never graded, and their
names never give a student id. Lab 05's ``network/`` and ``network2/`` code goes with the weights beside
it (the check grades the pair), so it is not a row of its own. Two files for one artifact of one
student with the same time are both listed as ambiguous, and neither is graded.

Example:
    >>> artifact_name("doejohn_12345_67890_123_pruning-1.pt", "pruning")
    'pruning'
"""
from __future__ import annotations

import csv
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from labkit.grading.batch import SUBMISSION_SUFFIXES, skip_reason
from labkit.grading.handin_files import checkpoint_reason, collapse_extra_folders, is_network_code
from labkit.grading.gradescope_results import artifact_of
from labkit.grading.tasks import TASKS

GiB = 1024 ** 3
_ARTIFACTS = "|".join(sorted({re.escape(s.split(".")[0]) for t in TASKS.values() for s in t.artifact_suffixes},
                             key=len, reverse=True))
ID_PATTERNS: dict[str, str] = {
    "canvas": r"(?:^|/)(?P<name>[^/]+?)_(?:late_)?(?P<student_id>\d+)_(?P<attachment_id>\d+)_",
    "moodle": r"(?:^|/)(?P<name>[^/_]+)_(?P<student_id>\d+)_assignsubmission_[a-z]+_",
    "course": rf"(?:^|/)(?P<student_id>[^/]+?)[_/](?:{_ARTIFACTS})(?:-\d+)?(?:\.pth\.tar|\.pth|\.pt)$",
}
ID_COLUMNS = ("student_id", "ID", "id", "SIS User ID")
NAME_COLUMNS = ("name", "Student")
IGNORED = ("__MACOSX", ".DS_Store")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class ArchiveLimits:
    """What a zip may hold before it is refused (``max_depth=1``: a student's zip inside the download)."""
    max_entries: int = 2000            # entries of one zip
    max_total_bytes: int = 4 * GiB     # unpacked bytes of the whole intake
    max_ratio: float = 200             # unpacked / compressed bytes of one entry (.pt files: about 1)
    max_depth: int = 1                 # zips inside the source, then none deeper
    max_file_bytes: int = 1 * GiB      # unpacked bytes of one entry


@dataclass
class Submission:
    """One file of the download; ``problem`` is None when it can be graded, else why not (and what to do)."""
    student_id: str | None
    artifact: str | None
    path: Path                 # the file on disk (a refused entry: the zip that holds it)
    origin: str                # bulk.zip!doejohn_12345_67890_hw.zip!123_pruning.pt
    timestamp: str | None      # ISO 8601 with zone
    timestamp_source: str      # "file name" | "file modification time" | "zip entry time"
    problem: str | None
    superseded_by: str | None = None
    checkpoint: bool = False   # a training checkpoint (never graded, never a failure)


def compile_id_pattern(text: str | re.Pattern = "course") -> re.Pattern:
    """``canvas``, ``moodle``, ``course`` (:data:`ID_PATTERNS`) or a regex with a ``student_id`` group.

    Example:
        >>> compile_id_pattern("canvas").search("o_brienmary_LATE_12345_67890_pruning.pt")["student_id"]
        '12345'
    """
    try:
        pattern = (text if isinstance(text, re.Pattern) else
                   re.compile(ID_PATTERNS[text], re.IGNORECASE) if text in ID_PATTERNS else re.compile(text))
    except re.error as error:
        raise ValueError(f"id pattern {text!r} does not compile ({error}); give canvas, moodle, course or "
                         "a regex with a (?P<student_id>...) group") from None
    if "student_id" not in pattern.groupindex:
        raise ValueError(f"id pattern {pattern.pattern!r} has no (?P<student_id>...) group; put one around the "
                         "id, e.g. (?P<student_id>\\d+)_, or give canvas, moodle or course")
    return pattern


def parse_timestamp(text: str) -> datetime:
    """ISO 8601, ``YYYYMMDDHHMMSS`` or ``YYYY-MM-DD-HH-MM-SS``; UTC when no zone is given.

    Example:
        >>> parse_timestamp("2026-03-01-23-59-00").isoformat(), parse_timestamp("20260301235900").hour
        ('2026-03-01T23:59:00+00:00', 23)
    """
    digits = re.fullmatch(r"(\d{4})-?(\d\d)-?(\d\d)-?(\d\d)-?(\d\d)-?(\d\d)", text.strip())
    moment = datetime(*map(int, digits.groups())) if digits else datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _split_resubmission(file_name: str) -> tuple[str, int]:
    """``a/pruning-2.pt`` -> (``pruning.pt``, 2): the ``-N`` an LMS adds to a name uploaded again."""
    name = file_name.rsplit("/", 1)[-1]
    suffix = next((suffix for suffix in SUBMISSION_SUFFIXES if name.lower().endswith(suffix)), None)
    number = suffix and re.search(r"-(\d+)$", name[: -len(suffix)])
    return (name[: number.start()] + name[-len(suffix):], int(number[1])) if number else (name, 0)


def artifact_name(file_name: str, task: str) -> str | None:
    """Which artifact of ``task`` a file is, after any LMS prefix and a resubmission ``-N``; None if none.

    Example:
        >>> artifact_name("x_12345_67890_model_task2-3.pth", "efficient"), artifact_name("README.txt", "pruning")
        ('model_task2', None)
    """
    return artifact_of(Path(_split_resubmission(file_name)[0]), task)


@dataclass
class _Run:
    """One intake: its task, id pattern, limits, the bytes it may still unpack, and the rows so far."""
    task: str
    pattern: re.Pattern
    label: str
    limits: ArchiveLimits
    budget: int
    found: list = field(default_factory=list)
    relative: list = field(default_factory=list)   # each found file's path in the download (for extra folders)

    def add(self, rel: str, origin: str, path: Path, when: tuple, problem: str | None = None,
            outer: str | None = None) -> None:
        """List one file: its id (from ``outer``, the student's zip, first), artifact, time and problem."""
        if problem is None and is_network_code(rel, self.task):
            return   # Lab 05's network/network.py: graded with the weights beside it
        checkpoint = checkpoint_reason(rel) if rel.lower().endswith(SUBMISSION_SUFFIXES) else None
        match = (outer is not None and self.pattern.search(outer)) or self.pattern.search(rel)
        stamp, source = when
        if match and match.groupdict().get("timestamp"):
            try:
                stamp, source = parse_timestamp(match["timestamp"]).isoformat(), "file name"
            except ValueError:
                problem = problem or (f"the time {match['timestamp']!r} in its name is not ISO 8601, "
                                      "YYYYMMDDHHMMSS or YYYY-MM-DD-HH-MM-SS; fix the id pattern or the name")
        student, artifact = (match and match["student_id"]) or None, artifact_name(rel, self.task)
        if checkpoint:
            if student and student.lower() in ("best", "last", "checkpoints"):
                student = None   # never an id from a checkpoint's own name
            artifact, problem = None, problem or f"not graded: {checkpoint}"
        if problem is None and student is None:
            problem = f"no student id: {rel!r} does not match the id pattern {self.label}; rename it or change it"
        if problem is None and artifact is None:
            names = " or ".join(TASKS[self.task].artifact_suffixes)
            problem = (f"not named like {names} (a prefix such as the student id is fine: 123_"
                       f"{names.split()[0]}); rename it if it is the submission, else it is an extra file")
        self.found.append(Submission(student, artifact, path, origin, stamp, source, problem,
                                     checkpoint=checkpoint is not None))
        self.relative.append(rel)


def _mtime(path: Path) -> tuple[str, str]:
    return datetime.fromtimestamp(path.lstat().st_mtime, timezone.utc).isoformat(), "file modification time"


def _safe_parts(name: str) -> list[str] | None:
    """The path components of a zip entry's name, or None when it is absolute or climbs out with ``..``."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\x00" in name:
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return None if ".." in parts else parts


def _refusal(info: zipfile.ZipInfo, limits: ArchiveLimits, budget: int) -> str | None:
    """Why an entry is not unpacked, judged from its header, or None."""
    allowed, ratio = min(limits.max_file_bytes, budget), info.file_size / max(info.compress_size, 1)
    if stat.S_ISLNK(info.external_attr >> 16):
        return "refused: a symbolic link (links are not unpacked or followed); hand in the file itself"
    if info.flag_bits & 0x1:
        return "refused: password-protected; hand in the file without a password"
    if info.file_size > allowed:
        return (f"refused: unpacks to {info.file_size} bytes, more than the {allowed} allowed (ArchiveLimits."
                "max_file_bytes, max_total_bytes); hand in only the files the task asks for")
    if ratio > limits.max_ratio:
        return (f"refused: compressed {ratio:.0f}:1, more than {limits.max_ratio:g}:1 (a zip bomb?); "
                "hand in the file without such compression")
    return None


def _extract(run: _Run, archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> str | None:
    """Stream one entry into a new file ``target``, counting its bytes; why it was refused, or None."""
    cap = min(info.file_size, run.budget, run.limits.max_ratio * max(info.compress_size, 1))
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(target, _NEW_FILE, 0o644)
    except OSError as error:
        return f"refused: cannot be unpacked beside the other entries ({error.strerror}); rename it"
    try:
        with os.fdopen(descriptor, "wb") as out, archive.open(info) as data:
            while chunk := data.read(1 << 20):
                written += len(chunk)
                if written > cap:  # a header that lies about the size
                    raise zipfile.BadZipFile(f"more than the {cap:.0f} bytes its header and the limits allow")
                out.write(chunk)
    except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError, ValueError, RuntimeError) as error:
        target.unlink(missing_ok=True)
        return f"refused: unreadable or damaged entry ({error}); not unpacked; download it or zip it again"
    run.budget -= written
    return None


class _Refused(Exception):
    """A whole zip refused before anything is unpacked."""


def _open_zip(run: _Run, zip_path: Path, rel: str, origin: str, dest: Path, level: int,
              when: tuple | None, outer: str | None) -> None:
    """List every entry of one zip, unpacking the good ones into ``dest``; level 0: the source zip."""
    base = "" if level == 0 else rel[: -len(".zip")] + "/"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            infos = archive.infolist()
            declared = sum(info.file_size for info in infos)
            over = [f"{len(infos)} entries, more than {run.limits.max_entries} (ArchiveLimits.max_entries)"
                    ] if len(infos) > run.limits.max_entries else []
            over += [f"unpacks to {declared} bytes, more than the {run.budget} left (ArchiveLimits."
                     "max_total_bytes)"] if declared > run.budget else []
            if over:
                raise _Refused(f"refused: {' and '.join(over)}; nothing unpacked; hand in only the "
                                           "files the task asks for")
            for info in infos:
                parts = _safe_parts(info.filename)
                if info.is_dir() or (parts and any(part in IGNORED for part in parts)):
                    continue
                try:
                    moment = when or (datetime(*info.date_time, tzinfo=timezone.utc).isoformat(), "zip entry time")
                except ValueError:
                    moment = _mtime(zip_path)
                entry_origin, entry_outer = f"{origin}!{info.filename}", outer if level else None
                if parts is None:
                    run.add(base + info.filename.replace("\\", "/").lstrip("/"), entry_origin, zip_path, moment,
                            f"refused: its path {info.filename!r} is absolute or climbs out with '..'; not "
                            "unpacked; zip the files themselves, with paths inside the zip", entry_outer)
                    continue
                entry_rel, target = base + "/".join(parts), dest.joinpath(*parts)
                nested = entry_rel.lower().endswith(".zip")
                problem = _refusal(info, run.limits, run.budget)
                if problem is None and nested and level + 1 > run.limits.max_depth:
                    problem = (f"refused: a zip nested {level + 1} deep (ArchiveLimits.max_depth="
                               f"{run.limits.max_depth}); not unpacked; hand in the files in one zip")
                problem = problem or _extract(run, archive, info, target)
                if problem or not nested:
                    run.add(entry_rel, entry_origin, zip_path if problem else target, moment, problem, entry_outer)
                else:
                    _open_zip(run, target, entry_rel, entry_origin, target.with_name(target.name + ".d"),
                              level + 1, moment, entry_rel)
    except _Refused as refusal:
        run.add(rel, origin, zip_path, when or _mtime(zip_path), str(refusal), outer)
    except (zipfile.BadZipFile, OSError) as error:
        run.add(rel, origin, zip_path, when or _mtime(zip_path), f"not a readable zip ({error}); download it "
                "again or ask the student for a fresh one", outer)


def _walk_folder(run: _Run, root: Path, folder: Path, work: Path) -> None:
    """List every file below ``folder`` in place; links are listed with the reason, never followed."""
    for path in sorted(folder.iterdir()):
        rel = path.relative_to(root).as_posix()
        origin, when = f"{root.name}/{rel}", _mtime(path)
        if path.name in IGNORED or path.parent.resolve() / path.name == work:
            continue
        if path.is_dir() and not path.is_symlink():
            _walk_folder(run, root, path, work)
        elif skip_reason(path) is not None:
            run.add(rel, origin, path, when, f"not graded: {skip_reason(path)}")
        elif rel.lower().endswith(".zip") and run.limits.max_depth >= 1:
            _open_zip(run, path, rel, origin, work / (rel + ".d"), 1, when, rel)
        else:
            run.add(rel, origin, path, when)


def _order(submission: Submission) -> tuple:
    return submission.student_id or "", submission.artifact or "", submission.origin


def open_submissions(source: Path, work: Path, task: str, *, id_pattern: str | re.Pattern = "course",
                     limits: ArchiveLimits = ArchiveLimits()) -> list[Submission]:
    """Every file of a folder or ``.zip`` download as a :class:`Submission`, sorted by id, artifact, origin.

    Args:
        source: the LMS's bulk download, as downloaded (``.zip``) or unpacked (a folder).
        work: a new or empty folder the zips are unpacked into (nothing is written elsewhere).
        task: a key of :data:`labkit.grading.tasks.TASKS`.
        id_pattern: ``canvas``, ``moodle``, ``course`` or a regex (:func:`compile_id_pattern`).
        limits: what a zip may hold (:class:`ArchiveLimits`).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = (Path(folder) / "123_pruning.pt").write_bytes(b"")
        ...     [(s.student_id, s.problem) for s in open_submissions(folder, Path(folder) / "work", "pruning")]
        [('123', None)]
    """
    source, work = Path(source), Path(work)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(sorted(TASKS))}")
    if work.exists() and (not work.is_dir() or any(work.iterdir())):
        raise ValueError(f"{work} is not an empty folder; give a new folder to unpack the submissions into")
    pattern = compile_id_pattern(id_pattern)
    label = id_pattern if isinstance(id_pattern, str) and id_pattern in ID_PATTERNS else repr(pattern.pattern)
    run = _Run(task, pattern, label, limits, limits.max_total_bytes)
    work.mkdir(parents=True, exist_ok=True)
    if source.is_dir() and not source.is_symlink():
        _walk_folder(run, source, source, work.resolve())
    elif source.is_file() and source.name.lower().endswith(".zip"):
        _open_zip(run, source, source.name, source.name, work / source.stem, 0, None, None)
    else:
        raise ValueError(f"{source} is neither a folder nor a .zip file; give the LMS's download")
    run.found = collapse_extra_folders(run.found, run.relative)
    return sorted(run.found, key=_order)


def select_latest(submissions: list[Submission]) -> list[Submission]:
    """Per (student, artifact), keep the latest gradable one; the others get ``superseded_by`` and a problem.

    Latest: by timestamp, then the higher resubmission number (``pruning-2.pt`` over ``pruning-1.pt``),
    then the path. Returns new objects, all of them, sorted by student id, artifact, origin.

    Example:
        >>> old = Submission("1", "pruning", Path("1_pruning.pt"), "a", "2026-03-01T10:00Z", "file name", None)
        >>> new = replace(old, path=Path("1_pruning-1.pt"), origin="b")  # same time: -1 wins
        >>> [(s.origin, s.superseded_by) for s in select_latest([new, old])]
        [('a', 'b'), ('b', None)]
    """
    def rank(submission: Submission) -> tuple:
        moment = parse_timestamp(submission.timestamp or "0001-01-01T00:00+00:00")
        return moment, _split_resubmission(submission.path.name)[1], str(submission.path)
    groups: dict[tuple, list[Submission]] = {}
    for submission in submissions:
        if submission.problem is None:
            groups.setdefault((submission.student_id, submission.artifact), []).append(submission)
    kept = {key: max(group, key=rank) for key, group in groups.items()}
    tied = {key: [s for s in group if rank(s)[:2] == rank(kept[key])[:2]] for key, group in groups.items()}
    result = []
    for submission in submissions:
        key = (submission.student_id, submission.artifact)
        keeper = kept.get(key)
        if submission.problem is None and len(tied.get(key, ())) > 1:
            names = ", ".join(s.origin for s in tied[key])
            result.append(replace(submission, problem=f"not graded: {len(tied[key])} files for {submission.artifact} "
                                  f"of student {submission.student_id} with the same time ({names}); which one is the "
                                  "hand-in? Keep exactly one") if any(s is submission for s in tied[key]) else
                          replace(submission, superseded_by=keeper.origin, problem="superseded by later files"))
        elif submission.problem is None and keeper is not submission:
            result.append(replace(submission, superseded_by=keeper.origin, problem=f"superseded by "
                                  f"{keeper.origin} (a later submission of the same file); not graded"))
        else:
            result.append(replace(submission))
    return sorted(result, key=_order)


def read_roster(path: Path) -> dict[str, str]:
    r"""``{student id: name}`` from a CSV with a header, e.g. Canvas's gradebook export.

    The id column is the first of ``student_id``, ``ID`` (Canvas's user id), ``id``, ``SIS User ID``
    present; the name column ``name`` or ``Student`` (optional: names are then ""). Rows whose id is empty
    or not id-like (letters, digits, ``._@+-``, no spaces) are skipped: Canvas's "Points Possible" row,
    blank lines. A repeated id keeps its first name.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = (Path(folder) / "g.csv").write_text('Student,ID\n  Points Possible,\n"Doe, John",12345\n')
        ...     read_roster(Path(folder) / "g.csv")
        {'12345': 'Doe, John'}
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = columns = [column.strip() for column in reader.fieldnames or []]
        id_column = next((column for column in ID_COLUMNS if column in columns), None)
        if id_column is None:
            raise ValueError(f"{path}: no id column; looked for {', '.join(ID_COLUMNS)}, found "
                             f"{', '.join(columns) or 'no header'}")
        name_column = next((column for column in NAME_COLUMNS if column in columns), None)
        roster: dict[str, str] = {}
        for row in reader:
            student = (row.get(id_column) or "").strip()
            if re.fullmatch(r"[\w.@+-]+", student):
                roster.setdefault(student, (row.get(name_column) or "").strip() if name_column else "")
    return roster
