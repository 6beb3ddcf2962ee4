"""Every lab notebook follows the contract in design.md (the pre-stop hook checks the same)."""
import json

import pytest

from labkit.tools.colab import COLAB_CELL
from labkit.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_all_five_labs_are_there():
    assert [path.name[:2] for path in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs_with_the_python3_kernel(path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in notebook["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_is_the_colab_installer_then_one_parameters_cell(path):
    code_cells = [c for c in cells(path) if c["cell_type"] == "code"]
    assert source(code_cells[0]) == COLAB_CELL.rstrip("\n")
    tagged = [c for c in code_cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code_cells[1]
    parameters = source(tagged[0])
    for name in ("SMOKE", "DATA_ROOT", "EPOCHS", "DEVICE", "SEED", "OUT_DIR"):
        assert f"{name} =" in parameters, f"{path.name}: parameters cell lacks {name}"
    assert 'os.environ.get("LABKIT_SMOKE") == "1"' in parameters


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_stay_short_and_call_labkit(path):
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    assert any("labkit" in text for text in code)
    assert max(len(text.splitlines()) for text in code[1:]) <= 45


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_opens_the_notebook_on_a_gpu_runtime(path):
    metadata = json.loads(path.read_text())["metadata"]
    assert metadata.get("accelerator") == "GPU" and metadata.get("colab", {}).get("gpuType") == "T4"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_your_turn_cell_names_where_the_file_is_on_colab(path):
    import re

    from labkit.tools.colab_setup import DRIVE_FOLDER

    turns = [source(c) for c in cells(path) if c["cell_type"] == "markdown" and source(c).startswith("### Your turn")]
    assert turns, path.name
    for text in turns:
        for file in set(re.findall(r"`(labkit/[\w/]+\.py)`", text)):
            assert f"`{DRIVE_FOLDER}/{file}`" in text, (path.name, text.splitlines()[0], file)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_has_its_own_id(path):
    """nbformat 4.5 wants an id on every cell (a missing one is a warning today, an error later)."""
    ids = [cell.get("id") for cell in cells(path)]
    assert None not in ids and len(set(ids)) == len(ids)


TRAINING_STARTS = {"01": "result = fit(", "02": "= train_and_measure(", "03": "rounds = iterative_prune(",
                   "04": "= quantize_resnet20(", "05": "task1 = train("}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_labs_selfcheck_runs_before_its_training_and_a_ta_can_skip_it(path):
    lab = path.name[:2]
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    assert "SELFCHECK = True" in code[1]
    check = next(i for i, text in enumerate(code) if f'selfcheck.require_lab("{lab}", enabled=SELFCHECK)' in text)
    training = next(i for i, text in enumerate(code) if TRAINING_STARTS[lab] in text)
    assert check < training, f"{path.name}: the self-check (cell {check}) must run before training (cell {training})"
