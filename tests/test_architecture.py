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
    ("labkit.train", "labkit.compare", "compare builds on the training loop, not the other way"),
    # labkit.prune: gradual and channels both build on distill (and gradual on magnitude), never on each other
    ("labkit.prune.distill", "labkit.prune.gradual", "distill is what both recipes share: it imports neither"),
    ("labkit.prune.distill", "labkit.prune.channels", "distill is what both recipes share: it imports neither"),
    ("labkit.prune.gradual", "labkit.prune.channels", "the recipes share labkit.prune.distill, not each other"),
    ("labkit.prune.channels", "labkit.prune.gradual", "the recipes share labkit.prune.distill, not each other"),
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


def import_graph(sources: dict[Path, str]) -> dict[str, set[str]]:
    """``{labkit module: the labkit modules it imports}`` for the labkit files of ``sources``.

    Module- and function-level imports both count. An imported name is its longest prefix that is a
    module of labkit/ (on disk or in ``sources``): ``from labkit.quant.affine import quantize`` is
    ``labkit.quant.affine``, ``from labkit.selfcheck import segmentation`` is ``labkit.selfcheck`` (the
    package), ``import labkit.selfcheck.segmentation`` is ``labkit.selfcheck.segmentation``.

    Example:
        >>> graph = import_graph({REPO_ROOT / "labkit/metrics.py": "def f():\\n    from labkit.losses import x"})
        >>> graph
        {'labkit.metrics': {'labkit.losses'}}
    """
    files = {path: text for path, text in sources.items() if path.is_relative_to(REPO_ROOT / "labkit")}
    modules = {module_name(path) for path in [*(REPO_ROOT / "labkit").rglob("*.py"), *files]}

    def module_of(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for path, text in files.items():
        importer = module_name(path)
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        imported = {module_of(name) for name in labkit_imports(text, package=package)}
        graph[importer] = imported - {importer, ""}
    return graph


def import_circles(sources: dict[Path, str]) -> list[list[str]]:
    """Each circle of imports: ``[a, b, ..., a]``, a loop through every module of one strongly
    connected component of :func:`import_graph` (modules that import each other, directly or not).

    Example:
        >>> import_circles({REPO_ROOT / "labkit/metrics.py": "from labkit.losses import x",
        ...                 REPO_ROOT / "labkit/losses.py": "def f():\\n    import labkit.metrics"})
        [['labkit.losses', 'labkit.metrics', 'labkit.losses']]
    """
    graph = import_graph(sources)
    order, low, stack, components = {}, {}, [], []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            component = set()
            while not component or module not in component:
                component.add(stack.pop())
            if len(component) > 1:
                components.append(component)

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return sorted(_loop_through(graph, component) for component in components)


def _loop_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A closed walk of imports from the component's first module through all its modules and back."""

    def steps(source: str, goal: str) -> list[str]:
        """The fewest imports from ``source`` to ``goal`` inside the component (``goal`` included)."""
        paths = {target: [target] for target in sorted(graph[source] & component)}
        frontier = list(paths)
        while goal not in paths:
            next_frontier = []
            for module in frontier:
                for target in sorted(graph[module] & component):
                    if target not in paths:
                        paths[target] = paths[module] + [target]
                        next_frontier.append(target)
            frontier = next_frontier
        return paths[goal]

    walk = [min(component)]
    for goal in sorted(component):
        if goal not in walk:
            walk += steps(walk[-1], goal)
    return walk + steps(walk[-1], walk[0])


def test_every_import_points_down_the_layers():
    assert wrong_imports(project_sources()) == []


@pytest.mark.parametrize("importer, source, expected", [
    ("labkit/profile.py", "from labkit.grading.tasks import fom", "core may not import grading"),
    ("labkit/evaluate.py", "from labkit.tools import record", "core may not import tools"),
    ("labkit/grading/tasks.py", "import labkit.tools.runner", "grading may not import tools"),
    ("labkit/models/resnet20.py", "def f():\n    from labkit.data.cifar10 import CIFAR10",
     "models load no dataset"),
    ("labkit/models/unet.py", "from labkit.train import fit", "models hold no training loop"),
    ("labkit/models/resnet20.py", "from labkit.prune.magnitude import prune_to", "models hold no training loop"),
    ("labkit/train.py", "from labkit.compare import train_and_measure", "compare builds on the training loop"),
    ("labkit/prune/channels.py", "from labkit.prune.gradual import train_step", "not each other"),
    ("checks/check_pruning.py", "from labkit.tools.record import record", "never tools"),
])
def test_an_import_pointing_the_wrong_way_is_named(importer, source, expected):
    path = REPO_ROOT / importer
    [problem] = wrong_imports({path: source})  # the file, as if someone added that import
    assert expected in problem
    assert problem.startswith(module_name(path) if importer.startswith("labkit") else "checks.")


def test_core_to_core_and_upward_imports_are_allowed():
    allowed = {"labkit/compare.py": "from labkit.train import fit",
               "labkit/prune/channels.py": "from labkit.prune.distill import train_step",
               "labkit/prune/gradual.py": "from labkit.prune.distill import train_step\n"
                                          "from labkit.prune.magnitude import prune_to",
               "labkit/grading/batch.py": "from labkit.grading.tasks import TASKS\nfrom labkit.paths import CHECKS_DIR",
               "labkit/tools/readme_table.py": "from labkit.grading.tasks import COURSE_TARGETS",
               "labkit/models/resnet20.py": "from labkit.download import download_url\nfrom labkit.io import load_into"}
    assert wrong_imports({REPO_ROOT / importer: source for importer, source in allowed.items()}) == []


# Circles still there, each as the set of its modules, until the change that removes it lands.
def test_no_module_imports_itself_through_a_circle():
    """Imports form no circle: every module sits above the modules it imports, so each reads alone."""
    circles = import_circles(project_sources())
    assert circles == [], "import circles (break each: move what both need into a module beneath them):\n" + \
        "\n".join(" -> ".join(circle) for circle in circles)


@pytest.mark.parametrize("first, first_source, second, second_source", [
    ("labkit/metrics.py", "from labkit.losses import SegmentationLoss",
     "labkit/losses.py", "from labkit.metrics import dice_score"),
    ("labkit/quant/affine.py", "def qparams():\n    from labkit.quant.calibration import make_observer",
     "labkit/quant/calibration.py", "import labkit.quant.affine as affine"),
    ("labkit/data/cityscapes.py", "def make_fixture(root):\n    from labkit.data.cityscapes_fixture import make_fixture",
     "labkit/data/cityscapes_fixture.py", "from labkit.data.cityscapes import LAYOUTS"),
    ("labkit/selfcheck/__init__.py", "from labkit.selfcheck.labs import LABS",
     "labkit/selfcheck/labs.py", "from labkit.selfcheck import segmentation"),
])
def test_a_circle_of_imports_is_named(first, first_source, second, second_source):
    sources = {REPO_ROOT / first: first_source, REPO_ROOT / second: second_source}  # as if both were added
    modules = sorted(module_name(path) for path in sources)
    assert import_circles(sources) == [[modules[0], modules[1], modules[0]]]
