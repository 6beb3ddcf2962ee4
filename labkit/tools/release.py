"""``python -m labkit release --out dist/student``: the student edition of the kit.

The TA keeps ONE source with solutions. What students implement sits between nbgrader-compatible
markers, in notebooks and in the labkit files students edit::

    def dice_score(...):
        ### BEGIN SOLUTION
        ... the reference implementation ...
        ### END SOLUTION

The release copies the kit, replaces every solution block with a TODO comment and
``raise NotImplementedError(...)`` naming what to implement, deletes ``### BEGIN/END HIDDEN TESTS``
blocks, strips notebook outputs, leaves out TA-only paths (``HIDDEN_PATHS``: tests, CI, this tool, its templates),
keeps ``checks/``, and drops the parts of Markdown (files and notebook cells) written for the TA::

    <!-- BEGIN TA ONLY -->
    ## Real data beside the clone (`make real`) ...
    <!-- END TA ONLY -->

The edition gets its own README (``student_readme.md``) and Makefile (``student_makefile.mk``: only
targets that work there). Then it checks the result, on every release, ``--verify`` included:

- ``scan_for_leaks``: a marker, a solution line or a hidden path left behind;
- ``scan_for_reimplementations``: a shipped function outside a TODO that computes what the TODO asks
  (its solution with other names: the same key statements); ``ACCEPTED_REIMPLEMENTATIONS`` lists the
  ones shipped on purpose, with the reason;
- ``scan_for_developer_paths``: text that names a place the edition has not (``DEVELOPER_PATHS``:
  ``../shared``, ``tests/``, ``.ci/``, ``params/``, the TA's ``make`` targets), so a student is never
  sent looking for it;
- ``check_makefile``: every target of the edition's Makefile refers only to files the edition has.

Any of them fails the build with a ``LeakError`` naming the file, the line and what is wrong.

Then it packs what students install (``--dist``, default the folder above ``--out``)::

    dist/labkit-0.1.0-py3-none-any.whl     the student labkit, for ``pip install`` (torch untouched)
    dist/labkit-course-0.1.0.zip           labkit/ source + notebooks/ + checks/ + README.md + pyproject.toml
    dist/LATEST                            "0.1.0": a notebook of an older release fetches this one

The Colab cell (``labkit/tools/colab.py``) fetches the zip from the folder the TA sets there and keeps
the student's ``labkit/`` on Drive, where the student edits it.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from labkit.paths import REPO_ROOT

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
BEGIN_TA_ONLY, END_TA_ONLY = "<!-- BEGIN TA ONLY -->", "<!-- END TA ONLY -->"
# The edition's README.md and Makefile are written from templates (student_readme, STUDENT_MAKEFILE).
SHIPPED = ("README.md", "environment.yml", "pyproject.toml", "constraints.txt", ".gitignore",
           "labkit", "checks", "notebooks", "data/README.md", "benchmarks")
HIDDEN_PATHS = ("tests", ".ci", "labkit/tools/release.py", "labkit/tools/student_readme.md",
                "labkit/tools/student_makefile.mk", "labkit/tools/record_selfcheck.py")
SKIPPED_NAMES = ("__pycache__", ".ipynb_checkpoints", "runs", "saved_models")
DEFINITION = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)")
# A marker left behind is a comment line naming one (prose that mentions a marker is fine).
LEFTOVER_MARKER = re.compile(r"^\s*#.*\b(BEGIN|END) (SOLUTION|HIDDEN TESTS)\b|^\s*<!-- (BEGIN|END) TA ONLY -->",
                             re.MULTILINE)
# Text a student must not be sent to: places of the TA's tree the edition has not. Each entry is
# (regex, what it is); the list is short on purpose, one entry per such place:
#   ../shared   the TA's data, models and course docs beside the clone (also written "shared" / "docs"
#               in Python, which prints as .../shared/docs);
#   tests/      the TA's test suite; .ci/ the CI scripts; params/ the TA's run parameters (not shipped);
#   make X      the TA's Makefile targets that the edition's Makefile has not (need tests/ or ../shared).
TA_ONLY_MAKE_TARGETS = ("test", "student-test", "journey-test", "real")
DEVELOPER_PATHS = (
    (r"\.\./shared\b|\bshared/(?:data|docs|models)\b|[\"']shared[\"']\s*/|/\s*[\"']shared[\"']",
     "the TA's data folder beside the clone; students have none"),
    (r"(?<![\w.-])tests/|[\"']tests[\"']\s*/|/\s*[\"']tests[\"']", "the TA's test suite, not shipped"),
    (r"(?<![\w.-])\.ci/", "the TA's CI scripts, not shipped"),
    (r"(?<![\w.-])params/", "the TA's run parameters, not shipped"),
    (r"\bmake (?:%s)\b(?!-)" % "|".join(map(re.escape, TA_ONLY_MAKE_TARGETS)),
     "a target of the TA's Makefile; the edition's Makefile has not"),
)
# Shipped, but not scanned for DEVELOPER_PATHS: benchmarks/ is the TA's measurement record (its scripts
# read the TA's data by design; the numbers the notebooks quote cite it), and the packaging files are
# read by pip and conda, their comments by maintainers.
DEVELOPER_PATHS_EXEMPT = ("benchmarks/", "pyproject.toml", "environment.yml", "constraints.txt")
# A Makefile word whose first part is one of these names a place of the TA's tree: it must exist in
# the edition (".." is outside it, always an error). Other words (.venv/bin/python, runs/demo) are
# what make creates, or plain text.
KIT_NAMES = frozenset({Path(entry).parts[0] for entry in SHIPPED + HIDDEN_PATHS} | {"Makefile", "params", ".."})


class LeakError(RuntimeError):
    """The student edition still contains something that must not ship."""


@dataclass(frozen=True)
class Solution:
    """One removed solution block: the TODO's file, its ``Class.method()`` and the block's code (dedented)."""
    where: str
    name: str
    source: str


@dataclass
class Release:
    """What a release did: the solution lines and blocks it removed (for the scans) and the stub count."""
    solution_lines: set = field(default_factory=set)
    public_lines: set = field(default_factory=set)  # kept lines: not secret even if a solution has them
    stubs: int = 0
    todos: list = field(default_factory=list)  # (file, "Class.method()") per stub, in file order
    solutions: list = field(default_factory=list)  # a Solution per stub, for scan_for_reimplementations

    def secret_lines(self) -> set:
        return self.solution_lines - self.public_lines


def _enclosing_name(lines: list[str], index: int, indent: int) -> str:
    """The qualified ``Class.method()`` a solution block sits in, for the TODO message."""
    names = []
    for line in reversed(lines[:index]):
        match = DEFINITION.match(line)
        if match and len(match[1]) < indent:
            names.append(match[3] + ("()" if match[2] == "def" and not names else ""))
            indent = len(match[1])
            if indent == 0:
                break
    return ".".join(reversed(names)) or "this block"


def strip_solutions(source: str, release: Release, *, where: str) -> str:
    """Replace solution blocks with a TODO stub and drop hidden-test blocks in one source text."""
    lines = source.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith((BEGIN_SOLUTION, BEGIN_HIDDEN)):
            end = END_SOLUTION if stripped.startswith(BEGIN_SOLUTION) else END_HIDDEN
            close = next((j for j in range(index + 1, len(lines)) if lines[j].strip().startswith(end)), None)
            if close is None:
                raise ValueError(f"{where}:{index + 1}: '{stripped}' has no matching '{end}'")
            block = lines[index + 1:close]
            if end == END_SOLUTION:
                release.solution_lines.update(b.strip() for b in block if len(b.strip()) >= 12)
                indent = len(line) - len(line.lstrip())
                name = _enclosing_name(lines, index, indent)
                pad = line[:indent]
                out += [f"{pad}# TODO: implement {name} (see the lab notebook for what it must do)",
                        f'{pad}raise NotImplementedError("TODO: implement {name}")']
                release.stubs += 1
                release.todos.append((where, name))
                release.solutions.append(Solution(where, name, textwrap.dedent("\n".join(block))))
            index = close + 1
            continue
        if stripped.startswith((END_SOLUTION, END_HIDDEN)):
            raise ValueError(f"{where}:{index + 1}: '{stripped}' without a matching BEGIN")
        out.append(line)
        release.public_lines.add(stripped)
        index += 1
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def strip_ta_only(markdown: str, *, where: str) -> str:
    """Drop the ``<!-- BEGIN TA ONLY -->`` ... ``<!-- END TA ONLY -->`` blocks of a Markdown text.

    Example::

        >>> strip_ta_only("Data.\\n<!-- BEGIN TA ONLY -->\\n`make real` reads ../shared\\n<!-- END TA ONLY -->\\n",
        ...               where="data/README.md")
        'Data.\\n'
    """
    lines = markdown.splitlines(keepends=True)
    out, inside = [], None
    for number, line in enumerate(lines, 1):
        if line.strip() == BEGIN_TA_ONLY:
            if inside:
                raise ValueError(f"{where}:{number}: '{BEGIN_TA_ONLY}' inside the block opened at line {inside}")
            inside = number
        elif line.strip() == END_TA_ONLY:
            if not inside:
                raise ValueError(f"{where}:{number}: '{END_TA_ONLY}' without a matching BEGIN")
            inside = None
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}:{inside}: '{BEGIN_TA_ONLY}' has no matching '{END_TA_ONLY}'")
    return "".join(out)


def release_notebook(path: Path, target: Path, release: Release) -> None:
    """Strip solutions in code cells, TA-only blocks in Markdown cells and every output; keep tags
    (the parameters cell)."""
    notebook = json.loads(path.read_text())
    for cell in notebook.get("cells", []):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code":
            cell["source"] = strip_solutions(source, release, where=str(path))
            cell["outputs"], cell["execution_count"] = [], None
        elif cell["cell_type"] == "markdown":
            cell["source"] = strip_ta_only(source, where=str(path))
    target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def _files(source_root: Path):
    for entry in SHIPPED:
        path = source_root / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for file in candidates:
            relative = file.relative_to(source_root)
            if file.is_dir() or any(part in SKIPPED_NAMES for part in relative.parts):
                continue
            if any(relative.as_posix() == hidden or relative.as_posix().startswith(hidden + "/")
                   for hidden in HIDDEN_PATHS):
                continue
            yield file, relative


def build_student_edition(source_root: Path, out: Path) -> Release:
    """Write the student edition of ``source_root`` to ``out`` (replaced), then check it: leaks,
    developer paths, the Makefile (each raises ``LeakError``)."""
    source, target = source_root.resolve(), out.resolve()
    if target == source or any(target == source / entry or source / entry in target.parents
                               for entry in SHIPPED):
        raise ValueError(f"--out {out} would overwrite the source kit; choose e.g. dist/student")
    if out.exists():
        shutil.rmtree(out)
    release = Release()
    for file, relative in _files(source_root):
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if file.suffix == ".ipynb":
            release_notebook(file, target, release)
        elif file.suffix == ".py":
            target.write_text(strip_solutions(file.read_text(), release, where=str(relative)))
        elif file.suffix == ".md":
            target.write_text(strip_ta_only(file.read_text(), where=str(relative)))
        else:
            shutil.copy2(file, target)
    (out / "README.md").write_text(student_readme(release, results=results_section(source_root / "README.md")))
    shutil.copyfile(STUDENT_MAKEFILE, out / "Makefile")
    scan_for_leaks(out, release.secret_lines())
    scan_for_reimplementations(out, release.solutions)
    check_makefile(out)
    scan_for_developer_paths(out)
    return release


STUDENT_README = Path(__file__).with_name("student_readme.md")
STUDENT_MAKEFILE = Path(__file__).with_name("student_makefile.mk")  # the edition's Makefile, as it is
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def results_section(readme: Path) -> str:
    """The TA's README results (``labkit readme-table`` writes them between its markers), for the edition.

    Example::

        >>> results_section(Path("no/such/README.md"))
        'No run of the notebooks was recorded in this release.'
    """
    text = readme.read_text() if readme.is_file() else ""
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < start:
        return "No run of the notebooks was recorded in this release."
    return text[start + len(RESULTS_START):end].strip()


def student_readme(release: Release, *, template: Path = STUDENT_README,
                   results: str = "No run of the notebooks was recorded in this release.") -> str:
    """The edition's README: the template with the TODO list (from the markers), the course's files
    and the TA's measured results (``results``, from ``results_section``).

    The TODO table comes from the stubs this release wrote, the submission names and goals from
    ``labkit.grading.tasks``, so neither can go stale. Example::

        >>> r = Release(todos=[("labkit/metrics.py", "dice_score()")])
        >>> "| `labkit/metrics.py` | `dice_score()` |" in student_readme(r)
        True
    """
    from labkit.grading.tasks import COURSE_TARGETS, TASKS
    from labkit.version import __version__

    labkit_todos = [(file, name) for file, name in release.todos if file.startswith("labkit/")]
    todo_table = "\n".join(["| file | function |", "|---|---|"]
                           + [f"| `{file}` | `{name}` |" for file, name in labkit_todos])
    submit_table = "\n".join(["| task | file names the check accepts | check |", "|---|---|---|"]
                             + [f"| {task} | {', '.join(f'`<id>_{suffix}`' for suffix in spec.artifact_suffixes)} "
                                f"| `checks/{spec.script}` |" for task, spec in TASKS.items()])
    goal_table = "\n".join(["| lab | goal |", "|---|---|"]
                           + [f"| {target.title} | {', '.join(goal.describe() for goal in target.goals)} |"
                              for target in COURSE_TARGETS])
    return template.read_text().format(version=__version__, todo_table=todo_table,
                                       submit_table=submit_table, goal_table=goal_table, results=results)


def scan_for_leaks(out: Path, solution_lines: set[str]) -> None:
    """Fail when a marker, a removed solution line, or a TA-only path is found in ``out``."""
    problems = [f"{hidden} is TA-only" for hidden in HIDDEN_PATHS if (out / hidden).exists()]
    for file in sorted(out.rglob("*")):
        if not file.is_file() or file.suffix not in (".py", ".ipynb", ".md", ".txt", ".yml", ".toml", ""):
            continue
        text = file.read_text(errors="replace")
        if file.suffix == ".ipynb":
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text).get("cells", []))
        lines = {line.strip() for line in text.splitlines()}
        for match in LEFTOVER_MARKER.finditer(text):
            marker = f"{match[1]} {match[2]}" if match[1] else match[0].strip()
            problems.append(f"{file.relative_to(out)}: marker '{marker}'")
        for leaked in sorted(lines & solution_lines)[:3]:
            problems.append(f"{file.relative_to(out)}: solution line '{leaked[:60]}'")
    if problems:
        raise LeakError("student edition leaks:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------- a TODO's answer written again
# The line scan finds a solution line left verbatim; it cannot see the same computation with other
# names (``intersection`` -> ``overlap``), the way a copy in another shipped module would give the
# answer away. So each solution block and each shipped function is reduced to its *key statements*:
# the expression a statement computes (an assignment's value, a return's value, an if's test, ...),
# as an AST dump with every name renamed in order of use (v0, v1, ...) and numbers as floats. Names of
# attributes and keywords stay (``.flatten(1)``, ``dim=1``: what is computed, not what it is called).
# Statements smaller than MIN_KEY_NODES expressions (``return self.conv(x)``) are in every forward
# and say nothing. A shipped function computes what a TODO asks when it has every key statement of the
# solution, or at least three and half of them.
MIN_KEY_NODES = 6
# Shipped functions that compute what a TODO asks, on purpose: (shipped file, function, TODO's file,
# TODO) -> why it ships. The scan fails on any other; the kit's tests check this list is what it finds.
ACCEPTED_REIMPLEMENTATIONS = {
    ("labkit/models/resnet20.py", "BasicBlock.forward()", "labkit/models/resnet34_unet.py", "BasicBlock.forward()"):
        "Labs 03/04 run the course's given ResNet-20 (chenyaofo's cifar10_resnet20, whose code the course hands "
        "out) before Lab 02's BasicBlock TODO is written; a ResNet-20 needs its block's forward",
}


def _normalised(node, names: dict, size: list[int]) -> str:
    """``node`` as text, like ``ast.dump``, with names renamed in order of first use and numbers as
    floats; ``size[0]`` counts its expressions (and keywords)."""
    if isinstance(node, (ast.expr, ast.keyword)):
        size[0] += 1
    if isinstance(node, ast.Name):
        return names.setdefault(node.id, f"v{len(names)}")
    if isinstance(node, ast.arg):
        return names.setdefault(node.arg, f"v{len(names)}")
    if isinstance(node, ast.Constant):
        return repr(float(node.value) if type(node.value) in (int, float) else node.value)
    if isinstance(node, ast.AST):
        fields = ",".join(_normalised(getattr(node, name, None), names, size) for name in node._fields)
        return f"{type(node).__name__}({fields})"
    if isinstance(node, list):
        return f"[{','.join(_normalised(item, names, size) for item in node)}]"
    return repr(node)


def _key(node: ast.AST) -> str | None:
    """The normalised text of ``node``, or None when it has fewer than ``MIN_KEY_NODES`` expressions."""
    size = [0]
    text = _normalised(node, {}, size)
    return text if size[0] >= MIN_KEY_NODES else None


def key_statements(body: list[ast.stmt]) -> set[str]:
    """The normalised key statements of a body: nested functions and classes are left out (their own
    units), docstrings too; compound statements give their header and their bodies' statements.

    Example (other names, the same key statement; ``return x`` is too small to be one)::

        >>> first = key_statements(ast.parse("overlap = (a * b).sum(dim=1)\\nreturn overlap").body)
        >>> first == key_statements(ast.parse("inter = (p * t).sum(dim=1)").body)
        True
        >>> len(first)
        1
    """
    keys = set()
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring
        if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.Return, ast.Expr)):
            parts = [statement.value] if statement.value is not None else []
        elif isinstance(statement, ast.AugAssign):
            parts = [ast.BinOp(ast.Name("v", ast.Load()), statement.op, statement.value)]
        elif isinstance(statement, (ast.If, ast.While)):
            parts = [statement.test]
        elif isinstance(statement, (ast.For, ast.AsyncFor)):
            parts = [ast.Tuple([statement.target, statement.iter], ast.Load())]
        elif isinstance(statement, (ast.With, ast.AsyncWith)):
            parts = [item.context_expr for item in statement.items]
        elif hasattr(statement, "body"):  # try, match: their bodies only
            parts = []
        else:  # raise, assert, del, ...
            parts = [statement]
        keys.update(key for key in map(_key, parts) if key)
        for nested in ("body", "orelse", "finalbody"):
            keys |= key_statements(getattr(statement, nested, []))
        for inner in getattr(statement, "handlers", []) + getattr(statement, "cases", []):
            keys |= key_statements(inner.body)
    return keys


def _parse(source: str) -> ast.Module | None:
    """The AST of a Python text or notebook cell (IPython ``%``/``!`` lines dropped); None if it is not Python."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _units(tree: ast.Module, where: str):
    """``(where, name, key statements)`` for the module's own statements and each function, nested ones too."""
    yield where, "(module level)", key_statements(tree.body)
    stack = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield where, f"{prefix}{child.name}()", key_statements(child.body)
                stack.append((child, f"{prefix}{child.name}."))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, f"{prefix}{child.name}."))
            elif isinstance(child, (ast.stmt, ast.ExceptHandler, ast.match_case)):
                stack.append((child, prefix))


def shipped_units(out: Path):
    """Every function (and module, and notebook cell) of the edition's Python, as ``_units`` gives them."""
    for file in sorted(out.rglob("*")):
        relative = file.relative_to(out).as_posix()
        if file.suffix == ".py":
            tree = _parse(file.read_text(errors="replace"))
            yield from _units(tree, relative) if tree else ()
        elif file.suffix == ".ipynb":
            for index, cell in enumerate(json.loads(file.read_text()).get("cells", [])):
                source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                tree = _parse(source) if cell["cell_type"] == "code" else None
                yield from _units(tree, f"{relative} cell {index}") if tree else ()


def find_reimplementations(out: Path, solutions: list[Solution]) -> list[tuple[str, str, Solution, int, int]]:
    """``(file, function, solution, key statements found, key statements)`` for each shipped function
    that computes what a TODO asks (see the comment above ``MIN_KEY_NODES``)."""
    fingerprints = []
    for solution in solutions:
        tree = _parse(solution.source)
        keys = key_statements(tree.body) if tree else set()
        if keys:
            fingerprints.append((solution, keys))
    found = []
    for where, name, keys in shipped_units(out):
        for solution, solution_keys in fingerprints:
            hits = len(keys & solution_keys)
            if hits == len(solution_keys) or (hits >= 3 and 2 * hits >= len(solution_keys)):
                found.append((where, name, solution, hits, len(solution_keys)))
    return found


def scan_for_reimplementations(out: Path, solutions: list[Solution]) -> None:
    """Fail when a shipped function outside a TODO computes what a TODO asks (its solution, renamed).

    ``ACCEPTED_REIMPLEMENTATIONS`` lists the ones shipped on purpose, each with its reason. Example::

        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> _ = (out / "helpers.py").write_text("def tidy(a, b):\\n    overlap = (a * b).sum(dim=1)\\n    return overlap\\n")
        >>> try:
        ...     scan_for_reimplementations(out, [Solution("m.py", "dice()", "inter = (p * t).sum(dim=1)")])
        ... except LeakError as error:
        ...     print(error)
        student edition computes a TODO's answer outside the TODO:
          helpers.py: tidy() computes what m.py's TODO dice() asks (1 of its 1 key statements)
    """
    problems = [f"{where}: {name} computes what {solution.where}'s TODO {solution.name} asks "
                f"({hits} of its {total} key statements)"
                for where, name, solution, hits, total in find_reimplementations(out, solutions)
                if (where, name, solution.where, solution.name) not in ACCEPTED_REIMPLEMENTATIONS]
    if problems:
        raise LeakError("student edition computes a TODO's answer outside the TODO:\n  " + "\n  ".join(problems))


def _student_texts(out: Path):
    """``(where, text)`` for what a student reads in ``out``: each text file, each notebook cell."""
    for file in sorted(out.rglob("*")):
        relative = file.relative_to(out).as_posix()
        if (not file.is_file() or relative.startswith(DEVELOPER_PATHS_EXEMPT)
                or file.suffix not in (".py", ".ipynb", ".md", ".txt", ".yml", ".yaml", ".toml", ".mk", "")):
            continue
        text = file.read_text(errors="replace")
        if file.suffix != ".ipynb":
            yield relative, text
            continue
        for index, cell in enumerate(json.loads(text).get("cells", [])):
            source = cell["source"]
            yield f"{relative} cell {index}", "".join(source) if isinstance(source, list) else source


def scan_for_developer_paths(out: Path) -> None:
    """Fail when a shipped text names a place of the TA's tree the edition has not (``DEVELOPER_PATHS``).

    A student who reads ``../shared/docs`` in a message, or ``make real`` in a notebook, goes looking for
    something they cannot have. ``DEVELOPER_PATHS_EXEMPT`` is not scanned. Example::

        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> _ = (out / "a.py").write_text('print("see ../shared/docs")\\n')
        >>> try:
        ...     scan_for_developer_paths(out)
        ... except LeakError as error:
        ...     print(error)
        student edition names places it does not have:
          a.py:1: '../shared' (the TA's data folder beside the clone; students have none)
    """
    problems = []
    for where, text in _student_texts(out):
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, meaning in DEVELOPER_PATHS:
                problems += [f"{where}:{number}: '{match[0]}' ({meaning})" for match in re.finditer(pattern, line)]
    if problems:
        raise LeakError("student edition names places it does not have:\n  " + "\n  ".join(problems))


def makefile_targets(makefile: Path) -> dict[str, list[str]]:
    """Each target of a Makefile with the words of its prerequisites and recipe, ``$(VARIABLES)`` expanded.

    Variables are the file's own ``NAME := value`` (``=``, ``?=``, ``export``); ``$(CURDIR)`` is ``.``;
    ``$(shell ...)`` and shell variables (``$$x``) stay unexpanded. Example::

        >>> import tempfile
        >>> makefile = Path(tempfile.mkdtemp()) / "Makefile"
        >>> _ = makefile.write_text("DATA := ../shared\\n.PHONY: real\\nreal: setup\\n\\tls $(DATA)/x\\n")
        >>> makefile_targets(makefile)
        {'real': ['setup', 'ls', '../shared/x']}
    """
    text = re.sub(r"\\\n\s*", " ", makefile.read_text())  # continuation lines joined
    variables, targets, current = {"CURDIR": "."}, {}, []
    for line in text.splitlines():
        if line.startswith("\t"):
            for target in current:
                targets[target].append(line.strip().lstrip("@-+"))  # make's prefixes: silent, ignore errors
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = re.match(r"^(?:export\s+)?([A-Za-z_]\w*)\s*(?::=|\?=|\+=|=)\s*(.*)$", line)
        rule = re.match(r"^([^:=#]+?)\s*:(?!=)\s*(.*)$", line)
        if assignment:
            variables[assignment[1]] = assignment[2].strip()
        elif rule:
            current = [] if rule[1].strip().startswith(".") else rule[1].split()
            for target in current:
                targets.setdefault(target, []).append(rule[2])

    def expand(words: str) -> str:
        for _ in range(10):  # variables that name variables, a few levels deep
            words = re.sub(r"\$[({](\w+)[)}]", lambda m: variables.get(m[1], m[0]), words)
        return words

    return {expand(target): [word for line in lines for word in re.split(r"[\s;|&<>(){}'\"=,]+", expand(line))
                             if word]
            for target, lines in targets.items()}


def check_makefile(out: Path) -> None:
    """Fail unless every target of ``out``'s Makefile refers only to files the edition has.

    A word whose first part is a name of the TA's tree (``KIT_NAMES``: ``notebooks``, ``checks``,
    ``tests``, ``params``..., and ``..``, outside the kit) must exist in ``out``; a target that needs
    ``tests`` or ``../shared/data`` would fail for every student who runs it.
    """
    makefile = out / "Makefile"
    if not makefile.is_file():
        raise LeakError(f"student edition has no Makefile (the release writes {STUDENT_MAKEFILE.name} there)")
    problems = []
    for target, words in makefile_targets(makefile).items():
        for word in dict.fromkeys(words):
            path = word.removeprefix("./")
            first = Path(path).parts[:1]
            if path.startswith("-") or "$" in path or not first or first[0] not in KIT_NAMES:
                continue
            if path.startswith("../"):
                problems.append(f"target '{target}' needs '{word}', outside the edition")
            elif not (any(out.glob(path)) if any(c in path for c in "*?[") else (out / path).exists()):
                problems.append(f"target '{target}' needs '{word}', which the edition does not ship")
    if problems:
        raise LeakError("student edition's Makefile: " + "; ".join(problems))


def verify_notebook(path: Path, *, student_root: Path, timeout: int = 600) -> str:
    """Run a student notebook in SMOKE mode until its first TODO and mark that cell for nbval.

    The cell that raises ``NotImplementedError`` gets the nbval tag ``raises-exception`` and every
    later code cell ``nbval-skip``; any other error fails the release. Outputs are not kept.
    """
    import os

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(path.parent)}})
    # The kernel must import the student labkit, not the solution installed in the environment.
    env = dict(os.environ, LABKIT_SMOKE="1", NO_ALBUMENTATIONS_UPDATE="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(student_root), os.environ.get("PYTHONPATH")])))
    outcome = "ran to the end (no TODO reached)"
    with client.setup_kernel(env=env):
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                if error.ename != "NotImplementedError":
                    raise ValueError(f"{path.name}, cell {index}: {error.ename}: {error.evalue} "
                                     "(expected to stop only at a TODO)") from None
                cell.metadata.setdefault("tags", []).append("raises-exception")
                for later in notebook.cells[index + 1:]:
                    if later.cell_type == "code":
                        later.metadata.setdefault("tags", []).append("nbval-skip")
                outcome = f"stops at cell {index} with NotImplementedError: {error.evalue}"
                break
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)
    return outcome


def build_wheel(edition: Path, dist: Path) -> Path:
    """Build the wheel of the student edition into ``dist`` (offline: no build isolation, no deps).

    Example: ``build_wheel(Path("dist/student"), Path("dist"))`` -> ``dist/labkit-0.1.0-py3-none-any.whl``.
    """
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.glob("labkit-*.whl"):
        old.unlink()
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", "-q", "-w", str(dist), str(edition)],
                            capture_output=True, text=True)
    wheels = sorted(dist.glob("labkit-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ValueError(f"building the wheel of {edition} failed:\n{result.stdout}{result.stderr}")
    for leftover in edition.glob("*.egg-info"):  # setuptools writes this into the edition; not shipped
        shutil.rmtree(leftover)
    shutil.rmtree(edition / "build", ignore_errors=True)
    return wheels[0]


def zip_course(edition: Path, dist: Path, *, version: str) -> Path:
    """Zip what a student works with: ``labkit/`` (the source with the TODOs), ``notebooks/``,
    ``checks/``, ``README.md``, ``data/README.md`` and ``pyproject.toml``, at the zip's top level.

    On Colab the first cell unpacks it and copies ``labkit/`` and ``notebooks/`` to the student's Drive
    (``labkit/tools/colab_setup.py``); on a laptop, ``unzip labkit-course-0.1.0.zip -d labkit-course``
    then ``pip install -e labkit-course``. Example:
    ``zip_course(Path("dist/student"), Path("dist"), version="0.1.0")`` -> ``dist/labkit-course-0.1.0.zip``.
    """
    archive = dist / f"labkit-course-{version}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for entry in ("README.md", "pyproject.toml", "labkit", "notebooks", "checks", "data/README.md"):
            path = edition / entry
            for file in [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []:
                if file.is_file() and not set(file.relative_to(edition).parts) & set(SKIPPED_NAMES):
                    bundle.write(file, file.relative_to(edition))
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit release", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build the student edition of the kit: each ### BEGIN/END SOLUTION block becomes a TODO\n"
                    "stub, TA-only files and text are left out; then the edition is scanned (solution lines\n"
                    "and markers, re-implementations of a TODO, developer paths, the Makefile) and packed.",
        epilog="examples:\n"
               "  python -m labkit release --out /tmp/edition/student --no-wheel   # the edition folder only\n"
               "  python -m labkit release --out dist/student                     # + wheel, course zip, LATEST in dist/\n"
               "  python -m labkit release --out dist/student --verify            # + run each notebook to its TODO\n"
               "A leak fails the build (exit 1) naming the file, the line or function, and what leaks.")
    parser.add_argument("--out", type=Path, default=Path("dist/student"),
                        help="the edition's folder, replaced if it exists (default: dist/student)")
    parser.add_argument("--source", type=Path, default=REPO_ROOT,
                        help="the TA's kit with the solutions (default: this checkout)")
    parser.add_argument("--dist", type=Path, default=None,
                        help="where the wheel and the notebooks .zip go (default: the folder above --out)")
    parser.add_argument("--no-wheel", action="store_true", help="only write the edition folder")
    parser.add_argument("--verify", action="store_true",
                        help="also run each student notebook (SMOKE) to its first TODO and mark it for nbval "
                             "(the leak, re-implementation, developer-path and Makefile checks run on every "
                             "release)")
    args = parser.parse_args(argv)
    try:
        release = build_student_edition(args.source, args.out)
        print(f"student edition in {args.out}: {release.stubs} solution blocks replaced by TODO stubs; "
              "leak scan, re-implementation scan, developer-path scan and Makefile check clean")
        if args.verify:
            for notebook in sorted((args.out / "notebooks").glob("*.ipynb")):
                print(f"{notebook.name}: {verify_notebook(notebook, student_root=args.out.resolve())}")
        if not args.no_wheel:
            from labkit.version import __version__

            dist = args.dist or args.out.parent
            print(f"wheel: {build_wheel(args.out, dist)}")
            print(f"course zip: {zip_course(args.out, dist, version=__version__)}")
            (dist / "LATEST").write_text(__version__ + "\n")  # the Colab cell takes the newest release
    except (LeakError, ValueError) as error:
        print(f"release failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
