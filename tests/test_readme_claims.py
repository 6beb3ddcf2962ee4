"""What the READMEs name must exist: repository files, labkit modules and attributes, make targets,
and every ``--flag`` shown beside a ``python -m labkit COMMAND``. A rename that forgets the docs fails here."""
from __future__ import annotations

import contextlib
import importlib
import io
import re

import pytest

from labkit.paths import REPO_ROOT
from labkit.tools.cli import COMMANDS

READMES = [REPO_ROOT / "README.md", REPO_ROOT / "benchmarks" / "README.md", REPO_ROOT / "data" / "README.md"]
TRACKED_FOLDERS = ("benchmarks", "checks", "labkit", "notebooks", "params", "tests")  # runs/, data/<set>/: outputs
BACKTICKED = re.compile(r"`([^`\n]+)`")


def backticked(pattern: str) -> list[tuple[str, str]]:
    """``(readme name, text)`` of every backticked span of every README that matches ``pattern``."""
    return [(readme.relative_to(REPO_ROOT).as_posix(), span) for readme in READMES
            for span in BACKTICKED.findall(readme.read_text()) if re.fullmatch(pattern, span)]


def test_every_repository_file_a_readme_names_exists():
    named = backticked(r"(?:%s)/[\w./-]+\.\w+" % "|".join(TRACKED_FOLDERS))
    assert len(named) > 10  # the pattern still finds the READMEs' paths
    missing = [(readme, path) for readme, path in named if not (REPO_ROOT / path).exists()]
    assert not missing, f"README paths that do not exist: {missing}"


def test_every_labkit_name_a_readme_names_imports():
    named = backticked(r"labkit(?:\.\w+)+")
    assert len(named) > 10
    missing = []
    for readme, dotted in named:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                target = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute, None)
        if target is None:
            missing.append((readme, dotted))
    assert not missing, f"README names that labkit does not have: {missing}"


def test_every_make_target_the_readme_runs_exists():
    targets = set(re.findall(r"^([\w-]+):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))
    text = (REPO_ROOT / "README.md").read_text()
    code = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S)) + "\n" + "\n".join(BACKTICKED.findall(text))
    named = set(re.findall(r"^\s*make ([\w-]+)\b", code, flags=re.M))
    assert {"demo", "test"} <= named
    assert named <= targets, f"make targets the README names but the Makefile lacks: {named - targets}"


def command_help(command: str) -> str:
    module_name, _, function_name = COMMANDS[command][0].partition(":")
    main = getattr(importlib.import_module(module_name), function_name or "main")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit):
        main(["--help"])
    return output.getvalue()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_the_readme_gives_a_labkit_command_is_one_it_takes(command):
    flags = set()
    for readme in READMES:
        for line in readme.read_text().splitlines():
            for invocation in re.findall(rf"-m labkit {re.escape(command)}\b([^`#|]*)", line):
                flags |= set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", invocation))
    accepted = set(re.findall(r"(--[a-z][\w-]*)", command_help(command)))
    assert flags <= accepted, f"`python -m labkit {command}` does not take {sorted(flags - accepted)}"
