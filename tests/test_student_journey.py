"""The whole student journey: the edition stops at each lab's first TODO, and once a student has done
the work (every TODO filled with the solution) all five notebooks run in SMOKE to the end, checks included.

Slow (about 6 minutes on 2 CPU cores): marked ``student``, run by ``make student-test``
(``pytest -m student``), not by ``make test``.
"""
from __future__ import annotations

import json
import shutil

import papermill
import pytest

from labkit.paths import NOTEBOOKS_DIR, REPO_ROOT
from labkit.tools.release import build_student_edition, verify_notebook

pytestmark = pytest.mark.student

# The first TODO each notebook reaches in SMOKE mode, as its stub names it.
FIRST_TODO = {
    "01_unet_oxford_pet": "DoubleConv.__init__()",
    "02_resnet34_unet": "dice_score()",  # Lab 01's TODOs that Lab 02 uses are checked first (issue 41)
    "03_pruning_cifar10": "prune_to()",
    "04_quantization_cifar10": "affine_qparams()",
    "05_efficient_unet_cityscapes": "DoubleConv.__init__()",
}
STUB = 'raise NotImplementedError("TODO: implement'


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("journey") / "student"
    release = build_student_edition(REPO_ROOT, out)
    assert release.stubs >= 11, release.todos
    return out


def _stubbed_files(root):
    return sorted(path.relative_to(root) for path in (root / "labkit").rglob("*.py") if STUB in path.read_text())


def test_each_notebook_stops_at_its_first_todo_right_after_the_cell_that_explains_it(edition, tmp_path):
    for name, todo in FIRST_TODO.items():
        notebook = tmp_path / f"{name}.ipynb"
        shutil.copy(edition / "notebooks" / f"{name}.ipynb", notebook)
        outcome = verify_notebook(notebook, student_root=edition)
        assert outcome.startswith("stops at cell") and f"TODO: implement {todo}" in outcome, (name, outcome)
        cells = json.loads(notebook.read_text())["cells"]
        stop = next(index for index, cell in enumerate(cells) if "raises-exception" in cell["metadata"].get("tags", []))
        explained = [cell for cell in cells[:stop] if cell["cell_type"] == "markdown"][-1]
        assert "labkit/" in "".join(explained["source"]), (name, "".join(explained["source"])[:200])


def test_a_student_who_filled_every_todo_runs_all_five_notebooks_to_the_end(edition, tmp_path, monkeypatch):
    stubbed = _stubbed_files(edition)
    assert stubbed, "the edition has no TODO stubs"
    for relative in stubbed:  # the student's work: the solution, function by function
        shutil.copy(REPO_ROOT / relative, edition / relative)
    assert _stubbed_files(edition) == []
    monkeypatch.setenv("PYTHONPATH", str(edition))  # the kernels import the student's labkit
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    for notebook in sorted((edition / "notebooks").glob("0*.ipynb")):
        executed = papermill.execute_notebook(str(notebook), str(tmp_path / notebook.name), kernel_name="python3",
                                              cwd=str(edition / "notebooks"), progress_bar=False)
        assert executed["metadata"]["papermill"]["exception"] is None, notebook.name
    assert sorted(path.name for path in (edition / "notebooks").glob("0*.ipynb")) == \
        sorted(path.name for path in NOTEBOOKS_DIR.glob("0*.ipynb"))
