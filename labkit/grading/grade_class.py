"""Grade a class: from the LMS's download to per-file verdicts, a gradebook, feedback and two rankings.

    python -m labkit grade canvas_download.zip --task pruning --data data/cifar10 --id-pattern canvas \\
        --roster roster.csv --deadline 2026-03-01T23:59:00+01:00 --extensions extensions.csv \\
        --policy course.yaml --jobs 2 --out lab03/grades.csv --gradebook lab03/gradebook.csv \\
        --feedback lab03/feedback --html lab03/ranking.html --public lab03/public.html \\
        --similarity lab03/similarity.csv --reference resnet20.pt

One run, in order:

1. **Intake** (:mod:`labkit.grading.intake`): a folder or a ``.zip``; students' own zips inside it
   are opened safely (traversal, links, bombs and deeper archives refused and listed); the student
   id comes from ``--id-pattern`` (``canvas``, ``moodle``, ``course`` or a regex with a
   ``student_id`` group); the latest file per (student, artifact) is graded, the others are listed as
   ``superseded``. Zips are unpacked into ``<out>.files/`` beside the CSV (replaced on every run).
2. **Checks** (:mod:`labkit.grading.batch`): one check process per file, ``--jobs`` at a time, each
   under ``--memory`` and ``--timeout`` (default: from the task's test set and the threads per check,
   :func:`~labkit.grading.sandbox_budget.grade_timeout`; ``--sandbox-gpu``: Lab 05's network.py may use
   CUDA in the sandbox). A file already graded with the same sha256, labkit version,
   task, check arguments, check scripts and dataset is not graded again
   (:mod:`labkit.grading.result_store`, ``<out>.store.jsonl``; ``--force`` re-grades everything);
   an interrupted run resumes where it stopped.
3. **Outputs**: the per-file CSV and JSON (``--out``: every file, its verdict, where it came from,
   its sha256 and the labkit version that graded it); ``--gradebook``: one row per student (every
   rostered one, "missing" when nothing came) with points, late penalty and score
   (:mod:`labkit.grading.gradebook`; points and the late rule from ``--policy``); ``--feedback``: one
   file per student, about them only; ``--html``: the TA's page; ``--public``: a ranking of
   students under pseudonyms, safe to show the class (``--secret`` or ``LABKIT_RANKING_SECRET``);
   ``--similarity``: pairs of submissions that look copied (a lead for a human, never a grade),
   also shown on the TA's page.

Exit code: 0 when every file got a verdict, 1 when one did not (refused by the intake, timed out,
crashed: each is printed), 2 for a wrong argument, 3 when the grading device is broken (probed before
any check runs; a check that meets a device fault stops the scheduling; said once, no row blames a student).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from functools import partial
from pathlib import Path

from labkit.grading.batch import (grade_one, network_for, not_graded, not_started_row, outcome, summary,
                                  threads_per_check, write_results)
from labkit.grading.device_guard import EXIT_DEVICE, describe, probe_grading_device, run_until_device_fault
from labkit.grading.intake import Submission, open_submissions, select_latest
from labkit.grading.limits import DEFAULT_MEMORY_BYTES, GiB, parse_memory
from labkit.grading.policy import Policy
from labkit.download import sha256sum
from labkit.grading.result_store import ResultStore, grading_key, setup_fingerprint
from labkit.grading.sandbox_budget import grade_timeout
from labkit.grading.tasks import TASKS
from labkit.paths import CHECKS_DIR
from labkit.version import __version__

UNKNOWN_ID = "(unknown)"  # a file no id could be read from (listed in the per-file CSV only)
WORK_MARKER = ".labkit-intake"  # a folder holding it was made by this module and may be replaced


def intake_folder(out: Path) -> Path:
    """``<out>.files/unpacked/`` beside the CSV, new for this run; never replaces a folder labkit did not make."""
    root = out.with_name(out.stem + ".files")
    if root.exists():
        if not (root / WORK_MARKER).exists():
            raise ValueError(f"{root} exists and was not made by labkit grade; move it or choose another --out")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / WORK_MARKER).write_text("unpacked submissions of one `labkit grade` run; replaced by the next\n")
    return root / "unpacked"


def _provenance(submission: Submission) -> dict:
    return {"artifact": submission.artifact, "origin": submission.origin, "timestamp": submission.timestamp,
            "timestamp_source": submission.timestamp_source}


def listed_row(submission: Submission) -> dict:
    """The row of a file that is not graded: refused by the intake, misnamed, or superseded."""
    status = "superseded" if submission.superseded_by else "skipped"
    return {"id": submission.student_id or UNKNOWN_ID, "file": str(submission.path), "status": status,
            "exit_code": None, "passed": False, "metrics": {}, "message": submission.problem or "",
            "seconds": 0.0, **_provenance(submission), **({"checkpoint": True} if submission.checkpoint else {})}


def grade_submission(submission: Submission, task: str, *, store: ResultStore, setup: str, reuse: bool = True,
                     check_arguments: list[str], timeout: float, checks_dir: Path, memory_bytes: int,
                     threads: int | None = None) -> dict:
    """The kept row when the same file was graded the same way before (and ``reuse``), else a fresh check's.

    ``setup`` is the run's :func:`~labkit.grading.result_store.setup_fingerprint`.
    """
    network = network_for(submission.path, task)
    file_sha256 = sha256sum(submission.path)
    key = grading_key(file_sha256, setup, network_sha256=sha256sum(network) if network else None)
    kept = store.get(key) if reuse else None
    if kept is None:
        row = grade_one(submission.path, task, check_arguments=check_arguments, timeout=timeout,
                        checks_dir=checks_dir, memory_bytes=memory_bytes, student=submission.student_id,
                        threads=threads)
        row.update(sha256=file_sha256, labkit_version=__version__)
        store.put(key, row)
    row = dict(kept or row, id=submission.student_id, file=str(submission.path), reused=kept is not None)
    return {**row, **_provenance(submission)}


def grade_class(source: Path, task: str, *, out: Path, check_arguments=(), data=None, jobs: int = 1,
                timeout: float = 600, memory_bytes: int = DEFAULT_MEMORY_BYTES, checks_dir: Path = CHECKS_DIR,
                id_pattern: str = "course", force: bool = False, store_path: Path | None = None,
                progress: bool = True) -> list[dict]:
    """Every file of ``source`` as a row (graded, kept from an earlier run, superseded or refused)."""
    submissions = select_latest(open_submissions(Path(source), intake_folder(out), task, id_pattern=id_pattern))
    store = ResultStore(store_path or out.with_name(out.stem + ".store.jsonl"))
    gradable = [submission for submission in submissions if submission.problem is None]
    rows = [listed_row(submission) for submission in submissions if submission.problem is not None]
    setup = setup_fingerprint(task, check_arguments=check_arguments, checks_dir=checks_dir, data=data)
    arguments = dict(store=store, setup=setup, reuse=not force, check_arguments=list(check_arguments), timeout=timeout,
                     checks_dir=checks_dir, memory_bytes=memory_bytes, threads=threads_per_check(jobs))
    jobs_to_run = [partial(grade_submission, submission, task, **arguments) for submission in gradable]
    rows += run_until_device_fault(jobs_to_run, jobs=jobs, progress=progress, not_started=lambda index, fault: {
        **not_started_row(gradable[index].path, gradable[index].student_id, fault), **_provenance(gradable[index])})
    return sorted(rows, key=lambda row: (str(row["id"]), str(row.get("artifact")), str(row.get("origin"))))


# ----------------------------------------------------------------------------- the command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit grade", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the submissions: a folder (searched recursively) or an LMS .zip")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--data", help="dataset root passed to the check")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=1, help="checks run at the same time")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per submission (default: from the task's test set and the threads per check, "
                             "labkit.grading.sandbox_budget.grade_timeout; printed)")
    parser.add_argument("--sandbox-gpu", action="store_true",
                        help="students' network.py (Lab 05) may use CUDA in the sandbox: the NVIDIA device nodes "
                             "are bound read-write, nothing else (default: CPU only)")
    parser.add_argument("--memory", default=f"{DEFAULT_MEMORY_BYTES // GiB}G",
                        help="address-space cap of each check process, e.g. 6G")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), help="per-file CSV (JSON beside it)")
    parser.add_argument("--id-pattern", default="course",
                        help="canvas, moodle, course (123_pruning.pt) or a regex with a student_id group")
    parser.add_argument("--roster", type=Path, help="CSV of enrolled students (student_id or ID column)")
    parser.add_argument("--policy", type=Path, help="course.yaml: points, Dice tiers, late rule")
    parser.add_argument("--deadline", help="ISO 8601 due date with a zone, e.g. 2026-03-01T23:59:00+01:00")
    parser.add_argument("--extensions", type=Path, help="CSV student_id,deadline: a later due date per student")
    parser.add_argument("--gradebook", type=Path, help="write one row per student here (points, late, score)")
    parser.add_argument("--feedback", type=Path, help="write one file per student into this folder")
    parser.add_argument("--html", type=Path, default=None, help="the TA's ranking page, e.g. ranking.html")
    parser.add_argument("--public", type=Path, help="a ranking safe to show the class (pseudonyms only)")
    parser.add_argument("--secret", help="the pseudonyms' secret (else LABKIT_RANKING_SECRET); keep it private")
    parser.add_argument("--similarity", type=Path, help="write pairs of submissions that look copied here")
    parser.add_argument("--reference", type=Path,
                        help="the handed-out weights everyone starts from (Labs 03 and 04): compare differences from it")
    parser.add_argument("--force", action="store_true", help="grade every file again (ignore kept results)")
    parser.add_argument("--checks-dir", type=Path, default=CHECKS_DIR, help=argparse.SUPPRESS)
    return parser


def _inputs(args):
    """Everything read before grading starts, so a wrong argument fails in a second, not after an hour."""
    from labkit.grading.gradebook import read_extensions
    from labkit.grading.intake import compile_id_pattern, read_roster
    from labkit.grading.policy import load_policy, parse_time
    from labkit.grading.public_page import secret_from
    compile_id_pattern(args.id_pattern)
    if args.deadline:
        parse_time(args.deadline)
    return {"roster": read_roster(args.roster) if args.roster else None,
            "policy": load_policy(args.policy) if args.policy else Policy(),
            "extensions": read_extensions(args.extensions) if args.extensions else None,
            "secret": secret_from(args.secret) if args.public else None,
            "memory": parse_memory(args.memory)}


def similar_pairs(rows: list[dict], task: str, *, reference: Path | None) -> list[dict]:
    """Copies among the graded files (weights; Lab 05's network.py too), strongest first."""
    from labkit.grading.similarity import find_similar
    from labkit.grading.source_similarity import similar_sources
    graded = [row for row in rows if row["status"] == "ok" and row["exit_code"] in (0, 1)]
    pairs = find_similar([(row["id"], row["artifact"], Path(row["file"])) for row in graded], task,
                         reference=reference)
    networks = [(row["id"], network) for row in graded if (network := network_for(Path(row["file"]), task))]
    return pairs + ([dict(pair, task=task) for pair in similar_sources(networks)] if networks else [])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.source.exists():
        print(f"error: {args.source} is neither a folder nor a .zip of submissions", file=sys.stderr)
        return 2
    try:
        inputs = _inputs(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    fault = probe_grading_device(args.device)
    if fault is None and args.sandbox_gpu and args.device != "cuda":
        fault = probe_grading_device("cuda")   # the sandbox's GPU is the grader's too: proven before any check
    if fault is not None:  # said once, before any check runs; no submission is marked
        print(f"error: {describe(fault)}", file=sys.stderr)
        return EXIT_DEVICE
    check_arguments = (["--device", args.device] + (["--data", args.data] if args.data else [])
                       + (["--sandbox-gpu"] if args.sandbox_gpu else []))
    if args.timeout is None:
        threads = threads_per_check(args.jobs)
        args.timeout = grade_timeout(args.task, threads=threads)
        print(f"timeout per submission: {args.timeout:g} s (from the {args.task} test set at {threads} thread(s) "
              "per check: labkit.grading.sandbox_budget; --timeout to change it)")
    rows = grade_class(args.source, args.task, out=args.out, check_arguments=check_arguments, data=args.data,
                       jobs=args.jobs, timeout=args.timeout, memory_bytes=inputs["memory"],
                       checks_dir=args.checks_dir, id_pattern=args.id_pattern, force=args.force)
    if not rows:
        print(f"error: no submission files found in {args.source}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} and {write_results(rows, args.out)}")
    write_class_outputs(rows, args, inputs)
    print(summary(rows))
    checkpoints = [row.get("origin") or row["file"] for row in rows if row.get("checkpoint")]
    if checkpoints:
        print(f"skipped {len(checkpoints)} training checkpoints (checkpoints/, best.pt, last.pt are never graded): "
              + ", ".join(checkpoints[:10]) + (" ..." if len(checkpoints) > 10 else ""))
    faults = [row["device_fault"] for row in rows if row.get("device_fault")]
    if faults:  # the machine's problem: said once, exit 3, no row blames a student
        print(f"error: grading stopped: {describe(faults[0])}", file=sys.stderr)
        return EXIT_DEVICE
    failed = [row for row in rows if not_graded(row)]
    for row in failed:
        print(f"not graded: {row.get('origin') or row['file']}: {outcome(row)}: {row['message'][:200]}",
              file=sys.stderr)
    return 1 if failed else 0


def write_class_outputs(rows: list[dict], args, inputs: dict) -> None:
    """The gradebook, feedback, similarity CSV and both pages that ``args`` asks for."""
    # a refused or misnamed file stays in (its student is "not graded": the TA looks); a superseded one does not
    # a training checkpoint is listed in the per-file CSV only: it is never a hand-in
    graded = [row for row in rows if row["status"] != "superseded" and row["id"] != UNKNOWN_ID
              and not row.get("checkpoint")]
    scores = None
    if args.gradebook or args.feedback:
        from labkit.grading.gradebook import student_scores, write_gradebook
        scores = student_scores(graded, args.task, inputs["policy"], roster=inputs["roster"],
                                deadline=args.deadline, extensions=inputs["extensions"])
    if args.gradebook:
        print(f"wrote {write_gradebook(scores, args.gradebook)}")
    if args.feedback:
        from labkit.grading.feedback import write_feedback
        written = write_feedback(scores, graded, args.task, args.feedback, policy=inputs["policy"])
        print(f"wrote {len(written)} feedback files into {args.feedback}")
    pairs = None
    if args.similarity or args.html:
        pairs = similar_pairs(rows, args.task, reference=args.reference)
    if args.similarity:
        from labkit.grading.similarity import write_similarity_csv
        print(f"wrote {write_similarity_csv(pairs, args.similarity)} ({len(pairs)} pairs flagged)")
    if args.html:
        from labkit.grading.ranking_page import write_ranking_page
        print(f"wrote {write_ranking_page(rows, args.task, args.html, source=str(args.source), similar=pairs)}")
    if args.public:
        from labkit.grading.public_page import write_public_page
        print(f"wrote {write_public_page(graded, args.task, args.public, secret=inputs['secret'])}")


if __name__ == "__main__":
    sys.exit(main())
