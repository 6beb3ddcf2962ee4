"""What every check script shares: arguments, exit codes, the verdict line and ``--json`` output.

Exit codes (design.md, checks contract):
    0 goals achieved, 1 evaluated but below a goal, 2 invalid submission, 3 environment problem.

Example (a check script's main)::

    def evaluate_submission(args) -> CheckResult: ...
    if __name__ == "__main__":
        sys.exit(run_check("pruning", build_parser(), evaluate_submission))
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable

from labkit.download import DatasetNotFoundError
from labkit.io import SubmissionError, load_into, load_state_dict_file

EXIT_PASSED, EXIT_BELOW_GOAL, EXIT_INVALID, EXIT_ENVIRONMENT = 0, 1, 2, 3


@dataclass
class CheckResult:
    """The outcome of one check: ``message`` holds the course-style lines a student reads."""
    task: str
    passed: bool
    message: str
    metrics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    exit_code: int | None = None

    def __post_init__(self):
        if self.exit_code is None:
            self.exit_code = EXIT_PASSED if self.passed else EXIT_BELOW_GOAL


# The course's own words (its check scripts), shown before labkit's specific reason.
LOAD_FAILED = ("Failed to load your model! This may due to your file doesn't exist or your file isn't "
               "a state_dict.")


def load_submission(path, model, *, wrong_architecture: str, notes: list | None = None,
                    explain: Callable[[dict], str | None] | None = None):
    """Safe-load ``path`` into ``model``; failures carry the course's line, then ``hint: <reason>``.

    ``explain(state_dict)`` may return a better hint for an architecture mismatch (e.g. "this is a
    float model"). Returns the loaded model.
    """
    try:
        state_dict = load_state_dict_file(path, notes=notes)
    except SubmissionError as error:
        raise SubmissionError(f"{LOAD_FAILED}\nhint: {error}") from error
    try:
        return load_into(model, state_dict)
    except SubmissionError as error:
        hint = (explain(state_dict) if explain else None) or str(error)
        raise SubmissionError(f"{wrong_architecture}\nhint: {hint}") from error


def versions() -> dict:
    import torch
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def common_parser(description: str) -> argparse.ArgumentParser:
    """``--path``, ``--data``, ``--device``, ``--json``: the arguments every check takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--path", required=True, help="the submitted state_dict file (.pt/.pth)")
    parser.add_argument("--data", default=None, help="dataset root (default: the course's location)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def report(result: CheckResult, *, as_json: bool = False, stream=None) -> int:
    """Print the verdict (text or one JSON object) and return the exit code."""
    stream = stream or sys.stdout  # looked up now, so redirected/captured stdout is honoured
    if as_json:
        payload = asdict(result) | {"versions": versions()}
        print(json.dumps(payload, default=float), file=stream)
    else:
        print(result.message, file=stream)
        for note in result.notes:
            print(f"note: {note}", file=stream)
    return result.exit_code


def run_check(task: str, parser: argparse.ArgumentParser,
              evaluate_submission: Callable[[argparse.Namespace], CheckResult],
              argv: list[str] | None = None) -> int:
    """Parse arguments, run ``evaluate_submission`` and map every failure to its exit code."""
    args = parser.parse_args(argv)
    try:
        result = evaluate_submission(args)
    except SubmissionError as error:
        result = CheckResult(task, False, f"Oops! Something is wrong!\n{error}", exit_code=EXIT_INVALID)
    except DatasetNotFoundError as error:
        result = CheckResult(task, False, f"Cannot evaluate: {error}", exit_code=EXIT_ENVIRONMENT)
    except Exception as error:  # noqa: BLE001 - a grader must answer for every file, never crash
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
        result = CheckResult(task, False, f"Oops! Something is wrong!\nEvaluation failed: {detail}",
                             exit_code=EXIT_INVALID)
    return report(result, as_json=args.json)
