"""labkit.tools.handin: the zip a lab hands in, its names, its refusals, and the check run on its contents."""
import json
import textwrap
import zipfile

import pytest

from labkit.grading.batch import network_for
from labkit.io import save_state_dict
from labkit.paths import NOTEBOOKS_DIR, REPO_ROOT
from labkit.tools import cli
from labkit.tools.handin import HandinRefused, handin, resolve_lab, todo_stubs
from labkit.tools.release import Release, strip_solutions
from tests.helpers import CAT, constant_model

SAVE_UNET = 'model_path = save_state_dict(model, out_dir / "saved_models" / "unet.pth")'


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Anything written relative to the working directory lands in the test's folder."""
    monkeypatch.chdir(tmp_path)


def notebooks(tmp_path, name, *cells):
    """A notebooks/ folder holding one notebook: ("## heading" markdown | code) cells."""
    folder = tmp_path / "notebooks"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": "markdown" if text.startswith("#") else "code", "metadata": {}, "source": text}
        for text in cells]}))
    return folder


def run_folder(tmp_path, notebook, files: dict):
    """runs/<notebook>/ with ``files`` {relative path: bytes}."""
    folder = tmp_path / "runs" / notebook
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def fake_checks_dir(tmp_path, script, *, exit_code=0):
    """A checks/ folder whose ``script`` prints its argv as the verdict's message and exits ``exit_code``."""
    folder = tmp_path / "checks"
    folder.mkdir()
    (folder / script).write_text(textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{"passed": {exit_code == 0}, "message": "argv " + " ".join(sys.argv[1:]), "metrics": {{}}}}))
        sys.exit({exit_code})
    """))
    return folder


def stubbed_copy(tmp_path, module):
    """labkit/<module> as the student edition ships it (solution blocks -> TODO stubs), in a package folder."""
    package = tmp_path / "student" / "labkit"
    (package / module).parent.mkdir(parents=True, exist_ok=True)
    (package / module).write_text(strip_solutions((REPO_ROOT / "labkit" / module).read_text(), Release(), where=module))
    return package


# ----------------------------------------------------------------------------- the zip and the real check

def test_a_pruned_model_goes_in_under_the_course_name_and_the_check_passes_it(tmp_path, capsys, cat_only_data):
    saved = save_state_dict(constant_model(CAT, target_sparsity=0.9),
                            tmp_path / "runs" / "03_pruning_cifar10" / "r0123_pruning.pt")
    out = tmp_path / "zips" / "lab03.zip"
    code = cli.main(["handin", "3", "--runs", str(tmp_path / "runs"), "--out", str(out),
                     "--data", str(cat_only_data), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["r0123_pruning.pt"]
        assert archive.read("r0123_pruning.pt") == saved.read_bytes()
    assert "check_pruning.py on r0123_pruning.pt, as extracted from the zip: passed (exit code 0)" in printed
    assert "Congratulations! You've achieved the goals of this task." in printed


def test_a_model_below_the_goal_is_still_handed_in_with_its_verdict(tmp_path, capsys, cat_only_data):
    save_state_dict(constant_model(CAT + 1, target_sparsity=0.9), tmp_path / "runs" / "r0123_pruning.pt")
    out = handin("03", runs=tmp_path / "runs", out=tmp_path / "lab03.zip", data=cat_only_data, device="cpu",
                 notebooks_dir=tmp_path)
    printed = capsys.readouterr().out
    assert out == tmp_path / "lab03.zip" and out.is_file()
    assert "below the goal (still a valid hand-in) (exit code 1)" in printed
    assert "Your test accuracy is 0.00%, which is too low!" in printed


def test_a_file_the_check_refuses_is_refused_with_its_message_and_the_last_zip_kept(tmp_path, cat_only_data):
    run_folder(tmp_path, "03_pruning_cifar10", {"r0123_pruning.pt": b"not a state_dict"})
    out = tmp_path / "lab03.zip"
    out.write_bytes(b"the last good zip")
    with pytest.raises(HandinRefused) as refusal:
        handin("03", runs=tmp_path / "runs", out=out, data=cat_only_data, device="cpu", notebooks_dir=tmp_path)
    assert refusal.value.exit_code == 2
    assert "the course's check refuses r0123_pruning.pt (check_pruning.py, exit code 2)" in str(refusal.value)
    assert "Failed to load your model!" in str(refusal.value)
    assert out.read_bytes() == b"the last good zip"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lab03.zip", "runs"]  # no temporary, no .previous


# ----------------------------------------------------------------------------- missing files, student ids

def test_a_missing_file_is_named_with_the_notebook_cell_that_writes_it(tmp_path, capsys):
    folder = notebooks(tmp_path, "01_unet_oxford_pet", "## Save and check", SAVE_UNET)
    run_folder(tmp_path, "01_unet_oxford_pet", {})
    # through the CLI: exit code 2 and the message on stderr; the notebooks folder is the real one there
    assert cli.main(["handin", "01", "--student-id", "r0123", "--runs", str(tmp_path / "runs")]) == 2
    assert "missing r0123_unet.pth (or unet.pth)" in capsys.readouterr().err
    with pytest.raises(HandinRefused) as refusal:
        handin("01", student_id="r0123", runs=tmp_path / "runs", notebooks_dir=folder)
    assert refusal.value.exit_code == 2
    assert str(refusal.value) == (
        f"missing r0123_unet.pth (or unet.pth) in {tmp_path / 'runs' / '01_unet_oxford_pet'} or its saved_models/: "
        f"notebook 01_unet_oxford_pet.ipynb writes it, section 'Save and check': `{SAVE_UNET}`")


def test_a_file_saved_under_another_student_id_is_pointed_out(tmp_path):
    run_folder(tmp_path, "03_pruning_cifar10", {"123_pruning.pt": b"x"})
    with pytest.raises(HandinRefused, match=r"found .*/123_pruning.pt: saved under another STUDENT_ID"):
        handin("03", student_id="r0123", runs=tmp_path / "runs", notebooks_dir=tmp_path, check=False)


def test_the_student_id_comes_from_the_saved_file_name_and_names_the_zip(tmp_path):
    run_folder(tmp_path, "04_quantization_cifar10", {"r0123_quantization.pt": b"weights"})
    out = handin("04", runs=tmp_path / "runs", notebooks_dir=tmp_path, check=False)
    assert out == tmp_path / "runs" / "04_quantization_cifar10" / "r0123_lab04.zip"  # with the run (Drive on Colab)
    assert zipfile.ZipFile(out).namelist() == ["r0123_quantization.pt"]


def test_the_run_folder_is_the_notebook_s_out_dir_relative_to_its_folder(tmp_path):
    folder = notebooks(tmp_path, "03_pruning_cifar10", 'SEED = 0\nOUT_DIR = "runs/my_run"\nSTUDENT_ID = "123"')
    cells = json.loads((folder / "03_pruning_cifar10.ipynb").read_text())
    cells["cells"][0]["metadata"]["tags"] = ["parameters"]
    (folder / "03_pruning_cifar10.ipynb").write_text(json.dumps(cells))
    (folder / "runs" / "my_run").mkdir(parents=True)
    (folder / "runs" / "my_run" / "r0123_pruning.pt").write_bytes(b"weights")
    out = handin("03", notebooks_dir=folder, check=False)
    assert zipfile.ZipFile(out).read("r0123_pruning.pt") == b"weights"


def test_a_file_named_without_an_id_needs_one(tmp_path):
    run_folder(tmp_path, "01_unet_oxford_pet", {"saved_models/unet.pth": b"weights"})
    with pytest.raises(HandinRefused, match="give your student id"):
        handin("01", runs=tmp_path / "runs", notebooks_dir=tmp_path, check=False)


def test_a_student_id_that_is_not_a_plain_name_is_refused(tmp_path):
    run_folder(tmp_path, "01_unet_oxford_pet", {"saved_models/unet.pth": b"weights"})
    with pytest.raises(HandinRefused, match="cannot name a file"):
        handin("01", student_id="../r0123", runs=tmp_path / "runs", notebooks_dir=tmp_path, check=False)


# ----------------------------------------------------------------------------- TODO stubs

def test_a_todo_stub_of_the_lab_is_refused_naming_file_and_function(tmp_path):
    run_folder(tmp_path, "01_unet_oxford_pet", {"saved_models/unet.pth": b"weights"})
    folder = notebooks(tmp_path, "01_unet_oxford_pet", "## Dice\n`labkit/metrics.py`: `dice_score`", SAVE_UNET)
    with pytest.raises(HandinRefused) as refusal:
        handin("01", student_id="r0123", runs=tmp_path / "runs", notebooks_dir=folder, check=False,
               package_dir=stubbed_copy(tmp_path, "metrics.py"), out=tmp_path / "lab01.zip")
    assert refusal.value.exit_code == 2
    assert "Lab 01 still has TODO stubs:\n  labkit/metrics.py: dice_score()\n" in str(refusal.value)
    assert not (tmp_path / "lab01.zip").exists()


def test_a_todo_stub_of_another_lab_does_not_block_the_hand_in(tmp_path):
    run_folder(tmp_path, "03_pruning_cifar10", {"r0123_pruning.pt": b"weights"})
    folder = notebooks(tmp_path, "03_pruning_cifar10", "## Pruning\nwrite `prune_to(model, amount)`")
    out = handin("03", runs=tmp_path / "runs", notebooks_dir=folder, check=False, out=tmp_path / "lab03.zip",
                 package_dir=stubbed_copy(tmp_path, "metrics.py"))  # dice_score is Lab 01's
    assert zipfile.ZipFile(out).namelist() == ["r0123_pruning.pt"]


def test_a_stub_the_lab_s_own_todo_file_imports_is_the_lab_s_too(tmp_path):
    """ResNet34-UNet (Lab 02) builds Lab 01's DoubleConv; it does not use Up."""
    run_folder(tmp_path, "02_resnet34_unet", {"saved_models/resnet34_unet.pth": b"weights"})
    folder = notebooks(tmp_path, "02_resnet34_unet", "## Encoder\nwrite `BasicBlock.forward(x)`")
    stubbed_copy(tmp_path, "models/unet_parts.py")
    with pytest.raises(HandinRefused) as refusal:
        handin("02", student_id="r0123", runs=tmp_path / "runs", notebooks_dir=folder, check=False,
               package_dir=stubbed_copy(tmp_path, "models/resnet34_unet.py"))
    assert str(refusal.value).splitlines()[1:3] == ["  labkit/models/resnet34_unet.py: BasicBlock.forward()",
                                                    "  labkit/models/unet_parts.py: DoubleConv.__init__()"]
    assert "Up.forward" not in str(refusal.value) and "DecoderBlock" not in str(refusal.value)


def test_the_stub_scan_finds_what_release_writes_and_nothing_in_the_solved_source(tmp_path):
    assert todo_stubs(stubbed_copy(tmp_path, "prune/magnitude.py")) == [("labkit/prune/magnitude.py", "prune_to()"),
                                                                        ("labkit/prune/magnitude.py", "iterative_prune()")]
    assert todo_stubs(REPO_ROOT / "labkit") == []  # release.py's own stub template is no stub


def test_a_stub_copied_into_a_network_py_is_refused(tmp_path):
    stub = '    raise NotImplementedError("TODO: implement ECA.forward()")\n'
    run_folder(tmp_path, "05_efficient_unet_cityscapes", {
        "model_task1.pth": b"1", "network/network.py": b"def load_model(path): ...\n",
        "model_task2.pth": b"2", "network2/network.py": ("def forward(x):\n" + stub).encode()})
    with pytest.raises(HandinRefused, match=r"network2/network\.py: ECA\.forward\(\)"):
        handin("05", student_id="r0123", runs=tmp_path / "runs", notebooks_dir=tmp_path, check=False)


# ----------------------------------------------------------------------------- Lab 05, machine problems, old zips

def test_lab_05_zip_holds_both_networks_beside_their_weights_and_checks_them_there(tmp_path, capsys):
    runs = run_folder(tmp_path, "05_efficient_unet_cityscapes", {
        "model_task1.pth": b"1", "network/network.py": b"# task 1\n",
        "model_task2.pth": b"2", "network2/network.py": b"# task 2\n"})
    out = handin("05", student_id="r0123", runs=runs, notebooks_dir=tmp_path, out=tmp_path / "lab05.zip",
                 checks_dir=fake_checks_dir(tmp_path, "check_efficient.py"), data="d", image_size=(64, 128))
    archive = zipfile.ZipFile(out)
    assert sorted(archive.namelist()) == ["network/network.py", "network2/network.py",
                                          "r0123_model_task1.pth", "r0123_model_task2.pth"]
    assert archive.read("network2/network.py") == b"# task 2\n"
    archive.extractall(tmp_path / "extracted")  # where the TA's batch grader finds each network
    assert network_for(tmp_path / "extracted" / "r0123_model_task2.pth", "efficient") == \
        tmp_path / "extracted" / "network2" / "network.py"
    printed = capsys.readouterr().out
    task2 = next(line for line in printed.splitlines() if "r0123_model_task2.pth --json" in line)
    assert "--task 2" in task2 and "/network2/network.py" in task2 and "--image-size 64 128" in task2
    assert "handin-" in task2 and str(runs) not in task2  # the check read the zip's copy, not the run folder


def test_a_check_that_cannot_run_on_this_machine_exits_3_and_blames_no_file(tmp_path):
    run_folder(tmp_path, "04_quantization_cifar10", {"r0123_quantization.pt": b"weights"})
    with pytest.raises(HandinRefused) as refusal:
        handin("04", runs=tmp_path / "runs", notebooks_dir=tmp_path, out=tmp_path / "lab04.zip",
               checks_dir=fake_checks_dir(tmp_path, "check_quantization.py", exit_code=3))
    assert refusal.value.exit_code == 3
    assert "a problem of this machine or its dataset, not of your files" in str(refusal.value)
    assert not (tmp_path / "lab04.zip").exists()


def test_an_existing_zip_is_kept_as_previous(tmp_path):
    run_folder(tmp_path, "03_pruning_cifar10", {"r0123_pruning.pt": b"weights"})
    out = tmp_path / "r0123_lab03.zip"
    out.write_bytes(b"handed in yesterday")
    handin("03", runs=tmp_path / "runs", out=out, notebooks_dir=tmp_path, check=False)
    assert (tmp_path / "r0123_lab03.previous.zip").read_bytes() == b"handed in yesterday"
    assert zipfile.ZipFile(out).read("r0123_pruning.pt") == b"weights"


# ----------------------------------------------------------------------------- the real notebooks

@pytest.mark.parametrize("lab", ["01", "02", "03", "04", "05"])
def test_each_lab_notebook_has_a_cell_that_writes_what_the_hand_in_needs(lab, tmp_path):
    """The refusal for a missing file quotes the notebook's own save line (and Lab 05's write_network)."""
    notebook = resolve_lab(lab)[1]
    files = {"model_task1.pth": b"1"} if lab == "05" else {}  # Lab 05: then network/network.py is missing
    run_folder(tmp_path, notebook, files)
    with pytest.raises(HandinRefused) as refusal:
        handin(lab, student_id="r0123", runs=tmp_path / "runs", notebooks_dir=NOTEBOOKS_DIR, check=False)
    assert f"notebook {notebook}.ipynb writes it, section '" in str(refusal.value)
    expected = {"01": '"unet.pth"', "02": '"resnet34_unet.pth"', "03": '_pruning.pt"', "04": '_quantization.pt"',
                "05": 'write_network(out_dir / "network"'}[lab]
    assert expected in str(refusal.value)


@pytest.mark.parametrize("name", ["3", "03", "lab03", "Lab 03", "03_pruning_cifar10", "pruning"])
def test_a_lab_can_be_named_by_number_notebook_or_task(name):
    assert resolve_lab(name) == ("03", "03_pruning_cifar10")
    with pytest.raises(ValueError, match="give 01..05"):
        resolve_lab("segmentation")  # Labs 01 and 02 share it
