"""``python -m labkit <command>`` (or the ``labkit`` script): the kit's command line.

    python -m labkit run --mode smoke --out runs/smoke      execute notebooks, write summary.json/.md
    python -m labkit readme-table runs/smoke/summary.json runs/real/summary.json
                                                            rewrite README.md's results table

Each command is a function ``main(argv) -> exit code`` with its own argument parser, named
``"module"`` (its ``main``) or ``"module:function"``; adding a command is one line in ``COMMANDS``.
A module is imported only when its command runs, so ``python -m labkit --help`` answers at once
(no torch import).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

# name -> ("module" with main(argv) or "module:function", one-line help)
COMMANDS = {
    "run": ("labkit.tools.runner", "execute notebooks with papermill; write summary.json and summary.md"),
    "readme-table": ("labkit.tools.readme_table",
                     "rewrite README.md's results table from summaries (SMOKE and real-data rows)"),
    "grade": ("labkit.grading.grade_class",
              "grade a class: LMS download -> verdicts, gradebook, feedback, rankings, copies"),
    "gradebook": ("labkit.grading.gradebook", "join labs' gradebooks into one sheet (plain or Canvas import)"),
    "gradescope": ("labkit.tools.gradescope", "write a Gradescope autograder .zip: setup.sh, run_autograder, data"),
    "release": ("labkit.tools.release", "build the student edition (solutions -> TODO stubs) with a leak scan"),
    "doctor": ("labkit.tools.doctor", "check the environment: versions, GPU, kernel, datasets, known traps"),
    "selfcheck": ("labkit.selfcheck.labs", "run a lab's self-checks (01 ... 05 or all): one PASS/FAIL line per TODO"),
    "record-selfcheck": ("labkit.tools.record_selfcheck",
                         "TA: record the self-checks' expected values from the solution"),
    "handin": ("labkit.tools.handin", "build a lab's hand-in zip (the course's file names), checked as the TA will"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items() if available(name)]
    return "usage: python -m labkit COMMAND [--help] ...\n\ncommands:\n" + "\n".join(lines)


def available(name: str) -> bool:
    """False for a TA command whose module the student edition leaves out (``release``, ``record-selfcheck``)."""
    return importlib.util.find_spec(COMMANDS[name][0].partition(":")[0]) is not None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from labkit.version import __version__
        print(f"labkit {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"labkit: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    if not available(name):
        print(f"labkit: '{name}' is a TA command; it is not part of the student edition", file=sys.stderr)
        return 2
    module_name, _, function_name = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module_name), function_name or "main")
    try:
        return command(rest)
    except (FileNotFoundError, ValueError) as error:  # a wrong argument or file: say what, no traceback
        print(f"labkit {name}: {error}", file=sys.stderr)
        return 2
