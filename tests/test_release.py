"""The student edition: solution blocks become TODO stubs, hidden tests vanish, leaks fail the build."""
import ast
import json
import subprocess
import sys
import textwrap

import nbformat
import pytest

from labkit.tools import release as release_tool
from labkit.tools.release import (ACCEPTED_REIMPLEMENTATIONS, STUDENT_MAKEFILE, TA_ONLY_MAKE_TARGETS, LeakError,
                                  Release, build_student_edition, check_makefile, find_reimplementations,
                                  key_statements, makefile_targets, scan_for_developer_paths, scan_for_leaks,
                                  scan_for_reimplementations, strip_solutions, strip_ta_only)
from labkit.paths import REPO_ROOT

SOURCE = textwrap.dedent('''
    def dice(prediction, target):
        """Per-image Dice."""
        ### BEGIN SOLUTION
        intersection = (prediction * target).sum()
        return 2 * intersection / (prediction.sum() + target.sum())
        ### END SOLUTION

    ### BEGIN HIDDEN TESTS
    assert dice_secret_check()
    ### END HIDDEN TESTS
''')


def test_solution_block_becomes_a_stub_naming_the_function():
    release = Release()
    student = strip_solutions(SOURCE, release, where="x.py")
    assert 'raise NotImplementedError("TODO: implement dice()")' in student
    assert "intersection" not in student and "dice_secret_check" not in student
    assert release.stubs == 1
    namespace = {}
    exec(student, namespace)
    with pytest.raises(NotImplementedError, match="dice"):
        namespace["dice"](1, 1)


def test_stub_names_the_class_and_method():
    source = "class DoubleConv:\n    def forward(self, x):\n        ### BEGIN SOLUTION\n        return x\n        ### END SOLUTION\n"
    assert "implement DoubleConv.forward()" in strip_solutions(source, Release(), where="x.py")


def test_unbalanced_markers_are_an_error():
    with pytest.raises(ValueError, match="no matching"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n", Release(), where="x.py")


def make_kit(root):
    (root / "labkit").mkdir(parents=True)
    (root / "labkit" / "metrics.py").write_text(SOURCE)
    (root / "checks").mkdir()
    (root / "checks" / "check_x.py").write_text("print('check')\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_secret.py").write_text("def test(): pass\n")
    (root / "notebooks").mkdir()
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\nanswer = 42 * secret_factor\n### END SOLUTION")
    cell.outputs = [nbformat.v4.new_output("stream", text="42\n")]
    notebook.cells = [cell]
    nbformat.write(notebook, root / "notebooks" / "01.ipynb")
    # What the edition's Makefile names (its check fails on a file the edition lacks).
    for name in ("pyproject.toml", "constraints.txt", "checks/check_segmentation.py"):
        (root / name).write_text("# stand-in\n")
    nbformat.write(nbformat.v4.new_notebook(), root / "notebooks" / "01_unet_oxford_pet.ipynb")
    (root / "Makefile").write_text((REPO_ROOT / "Makefile").read_text())  # the TA's, with test/real


def test_student_edition_keeps_checks_and_drops_tests_outputs_and_solutions(tmp_path):
    make_kit(tmp_path / "kit")
    release = build_student_edition(tmp_path / "kit", tmp_path / "student")
    student = tmp_path / "student"
    assert (student / "checks" / "check_x.py").exists() and not (student / "tests").exists()
    cell = json.loads((student / "notebooks" / "01.ipynb").read_text())["cells"][0]
    assert cell["outputs"] == [] and "secret_factor" not in "".join(cell["source"])
    assert release.stubs == 2


def test_release_refuses_to_write_over_the_source(tmp_path):
    make_kit(tmp_path / "kit")
    for out in (tmp_path / "kit", tmp_path / "kit" / "labkit" / "student"):
        with pytest.raises(ValueError, match="overwrite"):
            build_student_edition(tmp_path / "kit", out)
    assert (tmp_path / "kit" / "labkit" / "metrics.py").exists()


def test_leak_scan_catches_a_planted_solution_line(tmp_path):
    make_kit(tmp_path / "kit")
    release = build_student_edition(tmp_path / "kit", tmp_path / "student")
    planted = tmp_path / "student" / "labkit" / "helpers.py"
    planted.write_text("return 2 * intersection / (prediction.sum() + target.sum())\n")
    with pytest.raises(LeakError, match="solution line"):
        scan_for_leaks(tmp_path / "student", release.secret_lines())
    planted.write_text("x = 1\n    ### BEGIN SOLUTION\n")
    with pytest.raises(LeakError, match="marker 'BEGIN SOLUTION'"):
        scan_for_leaks(tmp_path / "student", release.secret_lines())
    planted.write_text('"""Solutions sit between `### BEGIN SOLUTION` markers in the TA source."""\n')
    scan_for_leaks(tmp_path / "student", release.secret_lines())  # prose about markers is fine


def test_release_of_this_repository_is_clean(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "labkit.tools.release", "--source", str(REPO_ROOT),
                                "--out", str(tmp_path / "student")], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert not (tmp_path / "student" / "tests").exists()
    assert (tmp_path / "student" / "checks" / "check_segmentation.py").exists()
    assert (tmp_path / "student" / "Makefile").read_text() == STUDENT_MAKEFILE.read_text()


def test_student_notebooks_stop_at_their_first_todo_and_nbval_expects_it(tmp_path):
    """The whole kit: every student notebook runs in SMOKE mode up to its first TODO, stops with
    NotImplementedError there, and that cell is marked for nbval (later cells are skipped)."""
    import os
    student = tmp_path / "student"
    completed = subprocess.run([sys.executable, "-m", "labkit.tools.release", "--source", str(REPO_ROOT),
                                "--out", str(student), "--verify"], capture_output=True, text=True,
                               timeout=1500)
    assert completed.returncode == 0, completed.stderr[-2000:]
    outcomes = [line for line in completed.stdout.splitlines() if line.endswith(".ipynb") is False
                and ".ipynb:" in line]
    assert len(outcomes) == 5
    for line in outcomes:
        assert "stops at cell" in line and "NotImplementedError: TODO: implement" in line, line
    first = json.loads((student / "notebooks" / "01_unet_oxford_pet.ipynb").read_text())
    tags = [cell["metadata"].get("tags", []) for cell in first["cells"] if cell["cell_type"] == "code"]
    assert sum("raises-exception" in t for t in tags) == 1
    nbval = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
                            str(student / "notebooks" / "01_unet_oxford_pet.ipynb")],
                           capture_output=True, text=True, timeout=600, cwd=student,
                           env=dict(os.environ, PYTHONPATH=str(student), LABKIT_SMOKE="1"))
    assert nbval.returncode == 0, nbval.stdout[-2000:]


def test_student_readme_lists_each_todo_from_the_markers_and_the_course_file_names(tmp_path):
    make_kit(tmp_path / "kit")
    (tmp_path / "kit" / "README.md").write_text("# TA README: python -m labkit release --verify\n")
    build_student_edition(tmp_path / "kit", tmp_path / "student")
    readme = (tmp_path / "student" / "README.md").read_text()
    assert "| `labkit/metrics.py` | `dice()` |" in readme  # generated from the stub, not hand-listed
    assert "No run of the notebooks was recorded" in readme  # this TA README has no results markers
    assert "`<id>_unet.pth`" in readme and "`checks/check_pruning.py`" in readme  # from labkit.grading.tasks
    assert "labkit release" not in readme and "BEGIN SOLUTION" not in readme  # no TA tooling


def test_student_readme_carries_the_tas_results_table(tmp_path):
    """FULL mode without a GPU points students at "the README's Results table": the edition has it."""
    make_kit(tmp_path / "kit")
    (tmp_path / "kit" / "README.md").write_text("# TA\n<!-- results:start -->\n| 01 | 8.4 min |\n<!-- results:end -->\n")
    build_student_edition(tmp_path / "kit", tmp_path / "student")
    readme = (tmp_path / "student" / "README.md").read_text()
    assert "## Results of the TA's runs" in readme and "| 01 | 8.4 min |" in readme


def test_edition_makefile_has_only_targets_that_work_there(tmp_path):
    """The kit's Makefile has test/real (they need tests/ and ../shared); the edition gets its own."""
    make_kit(tmp_path / "kit")
    (tmp_path / "kit" / "labkit" / "tools").mkdir()
    (tmp_path / "kit" / "labkit" / "tools" / STUDENT_MAKEFILE.name).write_text(STUDENT_MAKEFILE.read_text())
    assert {"test", "real"} <= set(makefile_targets(tmp_path / "kit" / "Makefile"))
    build_student_edition(tmp_path / "kit", tmp_path / "student")
    makefile = tmp_path / "student" / "Makefile"
    assert makefile.read_text() == STUDENT_MAKEFILE.read_text()
    targets = set(makefile_targets(makefile))
    assert {"setup", "demo", "smoke", "selfcheck", "doctor", "clean"} <= targets
    assert not targets & set(TA_ONLY_MAKE_TARGETS)
    assert "labkit selfcheck all" in makefile.read_text()
    assert not (tmp_path / "student" / "labkit" / "tools" / STUDENT_MAKEFILE.name).exists()  # TA tooling


def test_ta_only_make_targets_are_the_kit_makefiles_targets_the_edition_lacks():
    """The scan's list of TA targets cannot go stale: a new TA target must be added to it (or shipped)."""
    kit, edition = makefile_targets(REPO_ROOT / "Makefile"), makefile_targets(STUDENT_MAKEFILE)
    assert set(TA_ONLY_MAKE_TARGETS) == set(kit) - set(edition)


def test_makefile_check_names_each_target_that_needs_a_file_the_edition_lacks(tmp_path):
    make_kit(tmp_path / "kit")
    build_student_edition(tmp_path / "kit", tmp_path / "student")
    (tmp_path / "student" / "Makefile").write_text((REPO_ROOT / "Makefile").read_text())  # the TA's
    with pytest.raises(LeakError) as caught:
        check_makefile(tmp_path / "student")
    message = str(caught.value)
    assert "target 'test' needs 'tests', which the edition does not ship" in message
    assert "target 'student-test' needs 'tests'" in message and "target 'journey-test' needs 'tests'" in message
    assert "target 'real' needs '../shared/data', outside the edition" in message
    assert "params/real-cpu.yaml" in message
    assert "'demo'" not in message and "'smoke'" not in message  # their files are there
    (tmp_path / "student" / "checks" / "check_segmentation.py").unlink()
    (tmp_path / "student" / "Makefile").write_text(STUDENT_MAKEFILE.read_text())
    with pytest.raises(LeakError, match="target 'demo' needs 'checks/check_segmentation.py'"):
        check_makefile(tmp_path / "student")


def test_developer_path_scan_names_file_line_and_what_the_place_is(tmp_path):
    make_kit(tmp_path / "kit")
    build_student_edition(tmp_path / "kit", tmp_path / "student")
    student = tmp_path / "student"
    planted = nbformat.v4.new_notebook()
    planted.cells = [nbformat.v4.new_markdown_cell("Fine: make the zeros permanent; the tests agree.\n"
                                                   "`make real` starts from a ResNet-20."),
                     nbformat.v4.new_code_cell('schema = REPO_ROOT.parent / "shared" / "docs" / "keys.json"\n'
                                               'print(f"course schema not found at {schema}")')]
    nbformat.write(planted, student / "notebooks" / "04.ipynb")
    (student / "labkit" / "hint.py").write_text('HINT = "see tests/test_metrics.py or params/real-cpu.yaml"\n')
    (student / "benchmarks").mkdir()
    (student / "benchmarks" / "bench.py").write_text('DATA = "../shared/data"  # the TA\'s measurements\n')
    with pytest.raises(LeakError) as caught:
        scan_for_developer_paths(student)
    problems = str(caught.value).splitlines()[1:]
    assert [line.split(": '")[0].strip() for line in problems] == [
        "labkit/hint.py:1", "labkit/hint.py:1", "notebooks/04.ipynb cell 0:2", "notebooks/04.ipynb cell 1:1"]
    assert "'make real' (a target of the TA's Makefile" in str(caught.value)
    assert "'tests/' (the TA's test suite, not shipped)" in str(caught.value)
    assert "'/ \"shared\"' (the TA's data folder beside the clone; students have none)" in str(caught.value)
    (student / "labkit" / "hint.py").unlink()
    (student / "notebooks" / "04.ipynb").unlink()
    scan_for_developer_paths(student)  # benchmarks/ is the TA's record: exempt


def test_release_verify_fails_on_a_developer_path_or_a_makefile_target_that_cannot_work(tmp_path, monkeypatch,
                                                                                         capsys):
    """``release --verify`` runs both checks (before any notebook runs: this test executes none)."""
    make_kit(tmp_path / "kit")
    message = nbformat.v4.new_notebook()
    message.cells = [nbformat.v4.new_code_cell('print("course schema not found at ../shared/docs")')]
    nbformat.write(message, tmp_path / "kit" / "notebooks" / "04.ipynb")
    argv = ["--source", str(tmp_path / "kit"), "--out", str(tmp_path / "student"), "--no-wheel", "--verify"]
    assert release_tool.main(argv) == 1
    assert "notebooks/04.ipynb cell 0:1: '../shared'" in capsys.readouterr().err
    (tmp_path / "kit" / "notebooks" / "04.ipynb").unlink()
    monkeypatch.setattr(release_tool, "STUDENT_MAKEFILE", REPO_ROOT / "Makefile")  # the TA's, as before
    assert release_tool.main(argv) == 1
    assert "target 'test' needs 'tests'" in capsys.readouterr().err


def test_ta_only_markdown_is_dropped_from_files_and_notebook_cells(tmp_path):
    make_kit(tmp_path / "kit")
    (tmp_path / "kit" / "data").mkdir()
    ta_only = "<!-- BEGIN TA ONLY -->\n`make real` reads `../shared/data`.\n<!-- END TA ONLY -->\n"
    (tmp_path / "kit" / "data" / "README.md").write_text("# Data\n" + ta_only + "Fixtures.\n")
    notebook = nbformat.read(tmp_path / "kit" / "notebooks" / "01.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell("Results.\n" + ta_only))
    nbformat.write(notebook, tmp_path / "kit" / "notebooks" / "01.ipynb")
    build_student_edition(tmp_path / "kit", tmp_path / "student")
    assert (tmp_path / "student" / "data" / "README.md").read_text() == "# Data\nFixtures.\n"
    cells = json.loads((tmp_path / "student" / "notebooks" / "01.ipynb").read_text())["cells"]
    assert "".join(cells[-1]["source"]) == "Results.\n"
    with pytest.raises(ValueError, match="no matching '<!-- END TA ONLY -->'"):
        strip_ta_only("<!-- BEGIN TA ONLY -->\nx\n", where="data/README.md")


def test_notebook_04_compares_with_the_course_schema_only_in_the_tas_kit(tmp_path):
    """Lab 04 printed "course schema not found at .../shared/docs" to students: the comparison with
    the TA's schema file is a hidden-test block, gone from the edition; the TA's notebook keeps it."""
    name = "04_quantization_cifar10.ipynb"
    make_kit(tmp_path / "kit")
    (tmp_path / "kit" / "notebooks" / name).write_text((REPO_ROOT / "notebooks" / name).read_text())
    build_student_edition(tmp_path / "kit", tmp_path / "student")
    ta = (REPO_ROOT / "notebooks" / name).read_text()
    student = "\n".join("".join(cell["source"]) for cell in
                        json.loads((tmp_path / "student" / "notebooks" / name).read_text())["cells"])
    assert "course schema not found at" in ta and "course-int8-resnet20-keys.json" in ta
    assert "schema" not in student and "shared" not in student
    assert "same keys, order, dtypes and shapes as QuantizedResNet20()" in student


# ----------------------------------------------------------------------------- a TODO's answer written again
DICE_TODO = textwrap.dedent('''
    import torch


    def dice_score(prediction, target, *, reduction="mean", empty_score=1.0):
        """Per-image Dice of binary masks."""
        ### BEGIN SOLUTION
        pred = (prediction != 0).flatten(1).float()
        true = (target != 0).flatten(1).float()
        intersection = (pred * true).sum(dim=1)
        total = pred.sum(dim=1) + true.sum(dim=1)
        safe_total = total.clamp(min=1.0)
        scores = torch.where(total > 0, 2.0 * intersection / safe_total,
                             torch.full_like(total, empty_score))
        ### END SOLUTION
        return scores.mean() if reduction == "mean" else scores
''')
# The same computation with every name changed, in a module no TODO touches (a "helper" a TA wrote).
RENAMED_DICE = textwrap.dedent('''
    import torch as th


    def overlap_quality(a, b, fallback=1.0):
        """Agreement of two masks."""
        left = (a != 0).flatten(1).float()
        right = (b != 0).flatten(1).float()
        common = (left * right).sum(dim=1)
        size = left.sum(dim=1) + right.sum(dim=1)
        positive = size.clamp(min=1)
        return th.where(size > 0, 2 * common / positive,
                        th.full_like(size, fallback))
''')
# ... and rearranged too: the clamp moved into the last statement (3 of the 4 key statements remain).
REARRANGED_DICE = RENAMED_DICE.replace("    positive = size.clamp(min=1)\n", "").replace(
    "2 * common / positive", "2 * common / size.clamp(min=1)")


def make_dice_kit(root, helper: str):
    make_kit(root)
    (root / "labkit" / "metrics.py").write_text(DICE_TODO)
    (root / "labkit" / "viz.py").write_text(helper)


@pytest.mark.parametrize("helper, found", [(RENAMED_DICE, 4), (REARRANGED_DICE, 3)], ids=["renamed", "rearranged"])
def test_reimplementation_scan_names_a_renamed_copy_of_a_todo_in_another_module(tmp_path, helper, found):
    make_dice_kit(tmp_path / "kit", helper)
    with pytest.raises(LeakError) as caught:
        build_student_edition(tmp_path / "kit", tmp_path / "student")
    assert str(caught.value).splitlines() == [
        "student edition computes a TODO's answer outside the TODO:",
        "  labkit/viz.py: overlap_quality() computes what labkit/metrics.py's TODO dice_score() asks "
        f"({found} of its 4 key statements)"]


def test_the_line_scan_alone_misses_the_renamed_copy(tmp_path):
    """Why the release runs scan_for_reimplementations: no solution line survives the renaming."""
    make_dice_kit(tmp_path / "kit", "")
    release = build_student_edition(tmp_path / "kit", tmp_path / "student")
    (tmp_path / "student" / "labkit" / "viz.py").write_text(RENAMED_DICE)
    scan_for_leaks(tmp_path / "student", release.secret_lines())              # blind to it
    with pytest.raises(LeakError, match="overlap_quality"):
        scan_for_reimplementations(tmp_path / "student", release.solutions)


def test_reimplementation_scan_keeps_functions_that_share_a_statement_or_two(tmp_path):
    """Flattening masks, or summing a product, is in many functions: a few common statements are no answer."""
    helper = textwrap.dedent('''
        def foreground_fraction(a):
            left = (a != 0).flatten(1).float()
            return left.mean(dim=1)


        def overlap_count(a, b):
            left = (a != 0).flatten(1).float()
            return (left * (b != 0).flatten(1).float()).sum(dim=1)
    ''')
    make_dice_kit(tmp_path / "kit", helper)
    release = build_student_edition(tmp_path / "kit", tmp_path / "student")    # no LeakError
    assert release.stubs == 2  # dice_score() and the notebook's cell
    assert find_reimplementations(tmp_path / "student", release.solutions) == []


def test_key_statements_ignore_names_docstrings_and_statements_too_small_to_say_anything():
    first = key_statements(ast.parse('"""Doc."""\nscore = 2.0 * hits / total.clamp(min=1)\nreturn self.conv(x)\n').body)
    second = key_statements(ast.parse("out = 2 * tp / denom.clamp(min=1)").body)
    assert first == second and len(first) == 1


@pytest.fixture(scope="module")
def real_edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    return out, build_student_edition(REPO_ROOT, out)  # runs every scan: no LeakError


def test_the_real_edition_passes_the_reimplementation_scan_and_every_todo_is_fingerprinted(real_edition):
    out, release = real_edition
    scan_for_reimplementations(out, release.solutions)
    python_todos = [s for s in release.solutions if s.where.endswith(".py")]
    assert len(python_todos) >= 10
    for solution in python_todos:   # each TODO has a statement the scan can recognise
        assert key_statements(ast.parse(solution.source).body), f"{solution.where} {solution.name}"


def test_accepted_reimplementations_are_exactly_what_the_real_edition_ships(real_edition):
    """The list cannot go stale or hide a new copy: an entry no longer found, or a new one, fails here."""
    out, release = real_edition
    found = {(where, name, solution.where, solution.name)
             for where, name, solution, _, _ in find_reimplementations(out, release.solutions)}
    assert found == set(ACCEPTED_REIMPLEMENTATIONS)
