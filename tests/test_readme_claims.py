"""What the READMEs name must exist: repository files, labkit modules and attributes, make targets,
every ``--flag`` shown beside a labkit command, a ``benchmarks/`` or ``checks/`` script, notebook
parameters, and the counts they quote from the tests. A rename that forgets the docs fails here.

The scripts' flags are read from their ``add_argument`` calls (``ast``), the notebooks' parameters from
their ``parameters`` cells: nothing is run but the labkit commands' ``--help``.
"""
from __future__ import annotations

import ast
import collections
import contextlib
import importlib
import io
import json
import re
from pathlib import Path

import pytest

from labkit.paths import REPO_ROOT
from labkit.tools.cli import COMMANDS

READMES = [REPO_ROOT / "README.md", REPO_ROOT / "benchmarks" / "README.md", REPO_ROOT / "data" / "README.md"]
STUDENT_README = REPO_ROOT / "labkit" / "tools" / "student_readme.md"  # a template: its paths are the student's
TRACKED_FOLDERS = ("benchmarks", "checks", "labkit", "notebooks", "params", "tests")  # runs/, data/<set>/: outputs
BACKTICKED = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
SCRIPT_FOLDERS = ("benchmarks", "checks")
CONTRACT = REPO_ROOT / "labkit" / "grading" / "contract.py"  # the checks' common flags (common_parser)
PLACEHOLDERS = {"NAME", "VALUE"}  # `-p NAME VALUE` in the README's own explanation


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


# ----------------------------------------------------------------------------- code in the READMEs

def code_lines(readme: Path) -> list[tuple[int, bool, list[str]]]:
    """``(line number, in a bash block, segments)`` per line of ``readme``.

    A bash block's line (its ``\\`` continuations joined) is split at `` # `` into the command and its
    comment, each a segment; a prose line's segments are its backticked spans.
    """
    lines, block, result = readme.read_text().splitlines(), None, []
    index = 0
    while index < len(lines):
        line, number = lines[index], index + 1
        if line.startswith("```"):
            block = None if block is not None else line[3:].strip()
        elif block == "bash":
            while line.endswith("\\") and index + 1 < len(lines):
                index += 1
                line = line[:-1] + " " + lines[index].strip()
            result.append((number, True, [part for part in re.split(r"\s#\s?", line) if part.strip()]))
        elif block is None:
            result.append((number, False, BACKTICKED.findall(line)))
        index += 1
    return result


def script_path(name: str, folder: str | None = None) -> Path | None:
    """``benchmarks/NAME`` or ``checks/NAME`` (``folder`` when the text names it), if that file exists."""
    for candidate in ([folder] if folder else SCRIPT_FOLDERS):
        path = REPO_ROOT / candidate / name
        if path.is_file():
            return path
    return None


def command_in(segment: str) -> tuple[str | None, str]:
    """``(owner, the text after it)``: the command a segment runs, ``"other"`` for one whose flags are
    not checked here (make, pytest, papermill, ...), ``None`` when it names none.

    Owners: ``"labkit COMMAND"``, or a script's path relative to the repository.
    """
    text = segment.strip().lstrip("=").strip()
    if match := re.search(r"(?:\b(benchmarks|checks)/)?\b(\w+\.py)\b", text):
        if path := script_path(match.group(2), match.group(1)):
            return path.relative_to(REPO_ROOT).as_posix(), text[match.end():]
    if match := re.search(r"(?:-m labkit|\blabkit)\s+([a-z][\w-]*)", text):
        if match.group(1) in COMMANDS:
            return f"labkit {match.group(1)}", text[match.end():]
    first = text.split(" ", 1)[0]
    if first in COMMANDS and " " in text:  # `grade --help`: a labkit command by its name alone
        return f"labkit {first}", text[len(first):]
    if re.match(r"(?:\S*/)?(?:make|pytest|papermill|pip|bash|git|conda|jupyter|unzip|export|bwrap|sh)\b", text) \
            or re.search(r"\bpython3?\s+-m\s+(?!labkit\b)", text):
        return "other", ""
    return None, text


def flag_claims(readme: Path, name: str | None = None) -> list[tuple[str, int, str, str]]:
    """``(readme, line, owner, --flag)``: every flag the README gives a command, read as a reader would.

    A flag belongs to the command it follows in the same span or bash line; a span that is only flags
    (`` `--variants` ``) belongs to the last command named before it on that line, else, in
    benchmarks/README.md, to the script its section is about (``## `bench_x.py` — ...``).
    """
    name, claims, section = name or readme.relative_to(REPO_ROOT).as_posix(), [], None
    headings = {number: line for number, line in enumerate(readme.read_text().splitlines(), 1)
                if line.startswith("## ")}
    for number, in_bash, segments in code_lines(readme):
        for heading_line in [n for n in headings if n <= number][-1:]:
            match = re.match(r"## `(\w+\.py)`", headings[heading_line])
            section = script_path(match.group(1)).relative_to(REPO_ROOT).as_posix() \
                if match and script_path(match.group(1)) else None
        current = None
        for segment in segments:
            owner, rest = command_in(segment)
            if owner is not None:
                current = owner
            elif in_bash or segment.lstrip().startswith("--"):
                owner = current or section
            if owner and owner != "other":
                claims.extend((name, number, owner, flag) for flag in FLAG.findall(rest))
    return claims


def argparse_flags(path: Path, seen: set[Path] | None = None) -> set[str]:
    """The ``--flags`` the ``add_argument`` calls of ``path`` define (``BooleanOptionalAction``: also
    ``--no-X``), with those of the ``benchmarks/`` modules it imports and, for a check,
    ``labkit.grading.contract``'s common ones."""
    seen = seen if seen is not None else set()
    seen.add(path)
    flags = {"--help"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            names = [arg.value for arg in node.args if isinstance(arg, ast.Constant)
                     and isinstance(arg.value, str) and arg.value.startswith("--")]
            flags.update(names)
            if any(kw.arg == "action" and "BooleanOptionalAction" in ast.unparse(kw.value) for kw in node.keywords):
                flags.update(f"--no-{flag[2:]}" for flag in names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
            for module in filter(None, modules):
                sibling = CONTRACT if module == "labkit.grading.contract" else path.parent / f"{module}.py"
                if sibling.is_file() and sibling not in seen:
                    flags |= argparse_flags(sibling, seen)
    return flags


def command_help(command: str) -> str:
    module_name, _, function_name = COMMANDS[command][0].partition(":")
    main = getattr(importlib.import_module(module_name), function_name or "main")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit):
        main(["--help"])
    return output.getvalue()


ALL_FLAG_CLAIMS = [claim for readme in READMES + [STUDENT_README] for claim in flag_claims(readme)]


def test_the_flag_claims_cover_every_kind_of_command():
    owners = {owner for _, _, owner, _ in ALL_FLAG_CLAIMS}
    assert {"benchmarks/bench_cpu_recipe.py", "benchmarks/gpu_check.py", "checks/check_efficient.py",
            "labkit grade", "labkit run"} <= owners, sorted(owners)


@pytest.mark.parametrize("script", sorted({owner for _, _, owner, _ in ALL_FLAG_CLAIMS if owner.endswith(".py")}))
def test_every_flag_the_readmes_give_a_script_is_in_its_argparse(script):
    accepted = argparse_flags(REPO_ROOT / script)
    wrong = sorted({(readme, line, flag) for readme, line, owner, flag in ALL_FLAG_CLAIMS
                    if owner == script and flag not in accepted})
    assert not wrong, f"`{script}` defines no such flag: " + ", ".join(f"{flag} ({readme}:{line})"
                                                                     for readme, line, flag in wrong)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_the_readme_gives_a_labkit_command_is_one_it_takes(command):
    named = {(readme, line, flag) for readme, line, owner, flag in ALL_FLAG_CLAIMS if owner == f"labkit {command}"}
    accepted = set(FLAG.findall(command_help(command)))
    wrong = sorted(claim for claim in named if claim[2] not in accepted)
    assert not wrong, f"`python -m labkit {command}` does not take " + ", ".join(
        f"{flag} ({readme}:{line})" for readme, line, flag in wrong)


def test_every_make_target_a_readme_runs_exists():
    targets = set(re.findall(r"^([\w-]+):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))
    named = {(readme.relative_to(REPO_ROOT).as_posix(), match) for readme in READMES
             for _, _, segments in code_lines(readme) for segment in segments
             for match in re.findall(r"^\s*make ([\w-]+)\b", segment)}
    assert {"demo", "test"} <= {target for _, target in named}
    missing = sorted((readme, target) for readme, target in named if target not in targets)
    assert not missing, f"make targets a README names but the Makefile lacks: {missing}"


# ----------------------------------------------------------------------------- notebook parameters

def notebook_parameters() -> dict[str, set[str]]:
    """Each notebook's name -> the names its ``parameters`` cell assigns."""
    parameters = {}
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        cells = [cell for cell in json.loads(path.read_text())["cells"]
                 if "parameters" in cell.get("metadata", {}).get("tags", [])]
        assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
        tree = ast.parse("".join(cells[0]["source"]))
        parameters[path.stem] = {target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                                 for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                                 if isinstance(target, ast.Name)}
    return parameters


PARAMETERS = notebook_parameters()


def notebooks_named(text: str) -> list[str]:
    """The notebooks a command runs: ``XX_name.ipynb`` paths, else ``labkit run``'s numbers, else all."""
    named = [stem for stem in PARAMETERS if f"{stem}.ipynb" in text]
    if not named and (match := re.search(r"labkit run((?:\s+\d\d\b)+)", text)):
        named = [stem for stem in PARAMETERS if stem[:2] in match.group(1).split()]
    return named or list(PARAMETERS)


def readme_parameter_claims(readme: Path, name: str) -> list[tuple[str, str, str]]:
    """``(where, notebook, NAME)`` for the ``-p NAME VALUE`` of the README's commands, its "Common
    parameters: ...;" sentence (every notebook has them) and its params-file examples (yaml blocks)."""
    claims, text = [], readme.read_text()
    for number, _, segments in code_lines(readme):
        line = " ".join(segments)
        for parameter in re.findall(r"(?<![\w-])-p\s+([A-Z][A-Z0-9_]*)\b", line):
            if parameter not in PLACEHOLDERS:
                claims += [(f"{name}:{number}", stem, parameter) for stem in notebooks_named(line)]
    for sentence in re.findall(r"Common parameters:([^;]*);", text):
        claims += [(f"{name}: Common parameters", stem, parameter) for stem in PARAMETERS
                   for parameter in re.findall(r"`([A-Z][A-Z0-9_]*)`", sentence)]
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        claims += yaml_claims(block, name)
    return claims


def parameter_claims() -> list[tuple[str, str, str]]:
    """Every notebook parameter the READMEs and params/*.yaml name."""
    claims = [claim for readme in READMES for claim in readme_parameter_claims(readme, readme.relative_to(
        REPO_ROOT).as_posix())]
    for params in sorted((REPO_ROOT / "params").glob("*.yaml")):
        claims += yaml_claims(params.read_text(), params.relative_to(REPO_ROOT).as_posix())
    return claims


def yaml_claims(text: str, where: str) -> list[tuple[str, str, str]]:
    """A params file's ``NAME: value`` keys per notebook section (``global``: every notebook)."""
    claims, stems = [], None
    for line in text.splitlines():
        if match := re.match(r"([\w-]+):", line):
            key = match.group(1)
            stems = list(PARAMETERS) if key == "global" else [stem for stem in PARAMETERS if key in (stem, stem[:2])]
        elif stems and (match := re.match(r"\s+([A-Z][A-Z0-9_]*):", line)):
            claims += [(where, stem, match.group(1)) for stem in stems]
    return claims


def test_every_notebook_parameter_the_readmes_name_is_in_that_notebooks_parameters_cell():
    claims = parameter_claims()
    assert len(PARAMETERS) == 5 and len({parameter for _, _, parameter in claims}) >= 8, claims
    missing = sorted({(where, stem, parameter) for where, stem, parameter in claims
                      if parameter not in PARAMETERS[stem]})
    assert not missing, "parameters their notebooks lack: " + ", ".join(
        f"{parameter} in {stem} ({where})" for where, stem, parameter in missing)


# ----------------------------------------------------------------------------- numbers quoted from code

def test_the_readmes_count_of_selfcheck_mistakes_is_the_corpus():
    """README: "`tests/test_selfcheck_mistakes.py` applies N plausible mistakes (a-b for each of the K TODOs)"."""
    tree = ast.parse((REPO_ROOT / "tests" / "test_selfcheck_mistakes.py").read_text())
    corpus = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                  and getattr(node.targets[0], "id", None) == "MISTAKES")
    per_todo = collections.Counter(mistake[1] for mistake in corpus)
    text = " ".join((REPO_ROOT / "README.md").read_text().split())
    stated = re.search(r"applies (\d+) plausible mistakes \((\d+)-(\d+) for each of the (\d+) TODOs\)", text)
    assert stated, "README.md no longer says how many mistakes tests/test_selfcheck_mistakes.py applies"
    assert tuple(map(int, stated.groups())) == (len(corpus), min(per_todo.values()), max(per_todo.values()),
                                               len(per_todo))


def test_the_readers_above_find_a_planted_drift(tmp_path):
    """On a planted README: a flag no script has, and a parameter no notebook has, are both found."""
    planted = tmp_path / "README.md"
    planted.write_text("## `bench_cpu_recipe.py` — x\n\nRun `python benchmarks/bench_cpu_recipe.py --no-such-flag`"
                       " and `--variants`; then `labkit grade --help` with `--sandbox-gpu`.\n\n```bash\n"
                       "python -m labkit run 01 --mode smoke -p NO_SUCH_PARAMETER 1  # = make smoke\n```\n")
    claims = {(owner, flag) for _, _, owner, flag in flag_claims(planted, "planted")}
    assert claims == {("benchmarks/bench_cpu_recipe.py", "--no-such-flag"),
                      ("benchmarks/bench_cpu_recipe.py", "--variants"), ("labkit grade", "--help"),
                      ("labkit grade", "--sandbox-gpu"), ("labkit run", "--mode")}
    script_flags = argparse_flags(REPO_ROOT / "benchmarks" / "bench_cpu_recipe.py")
    assert "--no-such-flag" not in script_flags and {"--variants", "--no-bf16", "--no-channels-last"} <= script_flags
    assert {"--path", "--memory", "--task"} <= argparse_flags(REPO_ROOT / "checks" / "check_efficient.py")
    assert readme_parameter_claims(planted, "planted") == [("planted:6", "01_unet_oxford_pet", "NO_SUCH_PARAMETER")]


def test_the_torch_pins_the_readme_quotes_are_constraints_txt():
    """README: "`constraints.txt` (torch X, torchvision Y)" and "pins ... (torch X, torchvision Y)"."""
    pins = dict(re.findall(r"^(torch|torchvision)==(\S+)$", (REPO_ROOT / "constraints.txt").read_text(), flags=re.M))
    text = " ".join((REPO_ROOT / "README.md").read_text().split())
    quoted = re.findall(r"`constraints\.txt`[^()]{0,60}\(torch (\S+), torchvision ([^)\s]+)\)", text)
    assert len(quoted) >= 2, "README.md no longer quotes constraints.txt's torch pins"
    assert set(quoted) == {(pins["torch"], pins["torchvision"])}, (quoted, pins)
