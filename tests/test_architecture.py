"""Imports point one way: core <- grading <- tools; models load no dataset and no training loop.

Every ``import labkit...`` in labkit/ and checks/ is read with ``ast`` (module level and inside
functions alike: a lazy import is still a dependency). The layers:

- **core**: every ``labkit`` module outside ``labkit.grading`` and ``labkit.tools``;
- **grading**: ``labkit.grading.*`` (may use core);
- **tools**: ``labkit.tools.*`` and ``labkit/__main__.py`` (may use both);
- ``checks/`` are course-facing scripts on top of core and grading, never tools.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from labkit.paths import CHECKS_DIR, REPO_ROOT

LAYERS = {"core": 0, "grading": 1, "tools": 2}
# (importer prefix, imported prefix, why it is forbidden)
FORBIDDEN = [
    ("labkit.models", "labkit.data", "models load no dataset (download helpers live in labkit.download)"),
    ("labkit.models", "labkit.train", "models hold no training loop (recipes live in labkit.train)"),
    ("labkit.models", "labkit.compare", "models hold no training loop"),
    ("labkit.models", "labkit.prune", "models hold no training loop"),
]


def layer_of(module: str) -> str:
    if module == "labkit.__main__":  # `python -m labkit` is the command line's entry point
        return "tools"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("grading", "tools") else "core"


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def labkit_imports(source: str, *, package: str = "") -> set[str]:
    """Every ``labkit...`` module an ``import``/``from ... import`` names (relative ones resolved).

    Example:
        >>> sorted(labkit_imports("from labkit import prune\\nfrom labkit.io import load_into\\nimport labkit.train"))
        ['labkit.io', 'labkit.prune', 'labkit.train']
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "labkit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from ..y import z
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "labkit":
                continue
            # `from labkit import data` names the module data; `from labkit.tools.record import record` one module
            found |= {f"labkit.{alias.name}" for alias in node.names} if base == "labkit" else {base}
    return found


def wrong_imports(sources: dict[Path, str]) -> list[str]:
    """``"importer -> imported: reason"`` for each import that points the wrong way.

    ``sources`` maps a file of labkit/ or checks/ to its text (so a test can try an edited copy).
    """
    problems = []
    for path, text in sources.items():
        importer = module_name(path) if path.is_relative_to(REPO_ROOT / "labkit") else f"checks.{path.stem}"
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for imported in sorted(labkit_imports(text, package=package)):
            if importer.startswith("checks."):
                if layer_of(imported) == "tools":
                    problems.append(f"{importer} -> {imported}: a check uses core and grading, never tools")
                continue
            if LAYERS[layer_of(imported)] > LAYERS[layer_of(importer)]:
                problems.append(f"{importer} -> {imported}: {layer_of(importer)} may not import "
                                f"{layer_of(imported)} (core <- grading <- tools)")
            for source, target, reason in FORBIDDEN:
                if importer.startswith(source) and (imported == target or imported.startswith(target + ".")):
                    problems.append(f"{importer} -> {imported}: {reason}")
    return problems


def project_sources() -> dict[Path, str]:
    files = sorted((REPO_ROOT / "labkit").rglob("*.py")) + sorted(CHECKS_DIR.glob("*.py"))
    return {path: path.read_text() for path in files}


def test_every_import_points_down_the_layers():
    assert wrong_imports(project_sources()) == []


@pytest.mark.parametrize("importer, source, expected", [
    ("labkit/profile.py", "from labkit.grading.tasks import fom", "core may not import grading"),
    ("labkit/evaluate.py", "from labkit.tools import record", "core may not import tools"),
    ("labkit/grading/tasks.py", "import labkit.tools.runner", "grading may not import tools"),
    ("labkit/models/resnet20.py", "def f():\n    from labkit.data.cifar10 import CIFAR10",
     "models load no dataset"),
    ("labkit/models/unet.py", "from labkit.train import fit", "models hold no training loop"),
    ("checks/check_pruning.py", "from labkit.tools.record import record", "never tools"),
])
def test_an_import_pointing_the_wrong_way_is_named(importer, source, expected):
    path = REPO_ROOT / importer
    [problem] = wrong_imports({path: source})  # the file, as if someone added that import
    assert expected in problem
    assert problem.startswith(module_name(path) if importer.startswith("labkit") else "checks.")


def test_core_to_core_and_upward_imports_are_allowed():
    allowed = {"labkit/compare.py": "from labkit.train import fit",
               "labkit/grading/batch.py": "from labkit.grading.tasks import TASKS\nfrom labkit.paths import CHECKS_DIR",
               "labkit/tools/readme_table.py": "from labkit.grading.tasks import COURSE_TARGETS",
               "labkit/models/resnet20.py": "from labkit.download import download_url\nfrom labkit.io import load_into"}
    assert wrong_imports({REPO_ROOT / importer: source for importer, source in allowed.items()}) == []
