"""A student's journey on a simulated Colab (tests/colab_sim.py), notebook 01 in SMOKE mode, step by step:

(a) the student edition's notebook, opened from a link, sets the course up and stops at its first TODO,
    right after the hand-off that names the file on Drive;
(b) the student writes the TODOs into their copy on Drive;
(c) Runtime > Restart session: the first cell runs again, nothing is reinstalled, the paths are right,
    the self-checks pass and the notebook runs to the end (training, check, hand-in);
(d) the VM is recycled (``/content`` and everything pip installed are gone, Drive is kept): the first cell
    sets up again, the edits are still there and training resumes from the checkpoint on Drive;
(e) the hand-in zip on Drive is accepted by the TA's check.

Slow (a few minutes): marked ``student``, run by ``make student-test``. Each step's seconds are printed.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile

import pytest

from labkit.paths import REPO_ROOT
from labkit.tools.colab import write_colab_cell
from labkit.tools.release import build_student_edition, zip_course
from tests.colab_sim import bwrap_available, new_vm
from tests.helpers import requires

pytestmark = pytest.mark.student

NOTEBOOK = "01_unet_oxford_pet.ipynb"
DRIVE_COURSE = "/content/drive/MyDrive/labkit-course"
STUB = 'raise NotImplementedError("TODO: implement'
HIDDEN = ("torch_pruning",)  # Colab does not preinstall it: the first cell must pip-install it


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """The TA's release on a shared Drive folder, a wheel folder standing in for PyPI, and the Drive."""
    requires(bwrap_available(), "bubblewrap (bwrap) is needed to put a folder at /content: apt-get install -y bubblewrap")
    root = tmp_path_factory.mktemp("colab")
    edition = root / "student"
    build_student_edition(REPO_ROOT, edition)
    for notebook in (edition / "notebooks").glob("0*.ipynb"):  # the TA sets RELEASE, as the README says
        write_colab_cell(notebook, release="/content/drive/MyDrive/labkit-release")
    drive = root / "drive"
    (drive / "labkit-release").mkdir(parents=True)  # a folder the TA shares; each student adds it to their Drive
    zip_course(edition, drive / "labkit-release", version="0.1.0")
    wheels = root / "wheels"
    from importlib.metadata import version
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
                              f"torch-pruning=={version('torch-pruning')}"], capture_output=True, text=True)
    requires(fetched.returncode == 0, f"PyPI is needed once for the torch-pruning wheel: {fetched.stderr[-300:]}")
    return {"root": root, "drive": drive, "wheels": wheels, "seconds": {}}


def _timed(colab, step, function):
    started = time.perf_counter()
    result = function()
    colab["seconds"][step] = round(time.perf_counter() - started, 1)
    print(f"step {step}: {colab['seconds'][step]} s")
    return result


def _all_text(result) -> str:
    return "\n".join(cell["text"] for cell in result["cells"])


def test_the_students_journey_on_colab(colab, tmp_path):
    drive, course = colab["drive"], colab["drive"] / "labkit-course"
    vm = new_vm(colab["root"] / "vm", drive=drive, hide=HIDDEN, wheels=colab["wheels"])
    smoke = {"LABKIT_SMOKE": "1", "OMP_NUM_THREADS": "2"}

    # (a) opened from a link (not yet on Drive): set up, then stop at the first TODO after its hand-off
    opened = tmp_path / "opened" / NOTEBOOK
    opened.parent.mkdir()
    with zipfile.ZipFile(drive / "labkit-release" / "labkit-course-0.1.0.zip") as bundle:
        opened.write_bytes(bundle.read(f"notebooks/{NOTEBOOK}"))
    a = _timed(colab, "a", lambda: vm.run_notebook(opened, tmp_path / "a.json", inject={"probe": True}, **smoke))
    first_cell = a["cells"][0]["text"]
    assert "Mounted at /content/drive" in first_cell and "installed: torch-pruning" in first_cell, first_cell
    assert a["probe"]["cwd"] == "/content/labkit-course/notebooks", a["probe"]
    assert a["probe"]["labkit"] == f"{DRIVE_COURSE}/labkit/__init__.py"
    assert a["error"]["ename"] == "NotImplementedError", a["error"]
    assert "TODO: implement DoubleConv.__init__()" in a["error"]["evalue"]
    assert f"{DRIVE_COURSE}/labkit/models/unet_parts.py" in a["error"]["text"]  # raised from the Drive copy
    assert f"MyDrive/labkit-course/labkit/models/unet_parts.py" in a["markdown_before_error"]
    stubbed = sorted(path for path in (course / "labkit").rglob("*.py") if STUB in path.read_text())
    assert course / "labkit" / "models" / "unet_parts.py" in stubbed
    assert (course / "notebooks" / NOTEBOOK).is_file()

    # (b) the student writes every TODO into the copy on Drive (the solution, file by file)
    for path in stubbed:
        shutil.copy(REPO_ROOT / path.relative_to(course), path)
    edited = {path: path.read_text() for path in stubbed}

    # (c) Runtime > Restart session, the notebook now opened from Drive: runs to the end, hand-in included
    reopened = course / "notebooks" / NOTEBOOK
    c = _timed(colab, "c", lambda: vm.run_notebook(reopened, tmp_path / "c.json", inject={"probe": True}, **smoke))
    assert c["error"] is None, c["error"]
    assert "requirements: already installed" in c["cells"][0]["text"] and "copied" not in c["cells"][0]["text"]
    assert "Drive already mounted" in c["cells"][0]["text"]
    assert f"kept your edits in {len(stubbed)} files" in c["cells"][0]["text"]
    assert c["probe"]["cwd"] == "/content/labkit-course/notebooks"
    assert "PASS" in _all_text(c)  # the self-checks, on the student's code
    checkpoint = course / "runs" / "01_unet_oxford_pet" / "checkpoints" / "SMOKE" / "last.pt"
    assert checkpoint.is_file(), sorted(str(p) for p in (course / "runs").rglob("*"))[:20]

    # (d) the VM is recycled: a new one, the same Drive
    vm = new_vm(colab["root"] / "vm", drive=drive, hide=HIDDEN, wheels=colab["wheels"])
    d = _timed(colab, "d", lambda: vm.run_notebook(reopened, tmp_path / "d.json", inject={
        "probe": True, "after_parameters": "RESUME = True  # the student's FULL-mode default, here in SMOKE"}, **smoke))
    assert d["error"] is None, d["error"]
    assert "Mounted at /content/drive" in d["cells"][0]["text"] and "installed: torch-pruning" in d["cells"][0]["text"]
    assert {path: path.read_text() for path in stubbed} == edited  # the edits survived the recycle
    assert "labkit-course/runs/01_unet_oxford_pet/checkpoints/SMOKE/last.pt after epoch" in _all_text(d)  # resumed

    # (e) the hand-in on Drive, checked by the TA's own check script (this checkout's, not the student's)
    handins = sorted(course.rglob("*_lab01*.zip"))
    assert handins, sorted(str(p.relative_to(course)) for p in course.rglob("*.zip"))
    unpacked = tmp_path / "handin"
    with zipfile.ZipFile(handins[-1]) as bundle:
        bundle.extractall(unpacked)
    weights = sorted(unpacked.glob("*_unet.pth"))
    data = next((course / "runs" / "01_unet_oxford_pet").rglob("oxford-iiit-pet-fixture"))
    e = _timed(colab, "e", lambda: subprocess.run(
        [sys.executable, str(REPO_ROOT / "checks" / "check_segmentation.py"), "--model", "unet", "--path",
         str(weights[0]), "--data", str(data), "--image-size", "64"], capture_output=True, text=True))
    assert e.returncode == 0, e.stdout + e.stderr
    print("seconds per step:", colab["seconds"])
