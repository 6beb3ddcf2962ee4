"""The student edition: solution blocks become TODO stubs, hidden tests vanish, leaks fail the build."""
import json
import subprocess
import sys
import textwrap

import nbformat
import pytest

from labkit.tools.release import LeakError, Release, build_student_edition, scan_for_leaks, strip_solutions
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
    assert "`<id>_unet.pth`" in readme and "`checks/check_pruning.py`" in readme  # from labkit.grading.tasks
    assert "labkit release" not in readme and "BEGIN SOLUTION" not in readme  # no TA tooling
