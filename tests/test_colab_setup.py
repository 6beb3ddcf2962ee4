"""The Colab bootstrap (labkit/tools/colab_setup.py, the first cell from labkit/tools/colab.py).

Unit tests for the parts, then the first cell itself on a simulated Colab VM (tests/colab_sim.py):
run twice in one kernel, after a restart and on a recycled VM, it must end in the same state.
"""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import zipfile

import pytest

from labkit.paths import REPO_ROOT
from labkit.tools import colab_setup
from labkit.tools.colab import colab_cell
from labkit.tools.release import zip_course
from tests.colab_sim import bwrap_available, new_vm
from tests.helpers import requires


def _release(folder, files: dict[str, str]):
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def test_first_sync_copies_the_students_files_and_the_release_keeps_the_tas(tmp_path):
    release = _release(tmp_path / "v1", {"labkit/metrics.py": "stub\n", "notebooks/01.ipynb": "{}\n",
                                         "checks/check_x.py": "ta\n", "README.md": "ta\n"})
    report = colab_setup.sync_course(release, tmp_path / "drive", version="1")
    assert report["copied"] == ["labkit/metrics.py", "notebooks/01.ipynb"]
    assert not (tmp_path / "drive" / "checks").exists()  # the TA's checks are used from the release


def test_a_newer_release_never_overwrites_a_file_the_student_edited(tmp_path):
    drive = tmp_path / "drive"
    colab_setup.sync_course(_release(tmp_path / "v1", {"labkit/metrics.py": "stub\n", "labkit/io.py": "a\n"}),
                            drive, version="1")
    (drive / "labkit" / "metrics.py").write_text("my dice score\n")
    v2 = _release(tmp_path / "v2", {"labkit/metrics.py": "stub, fixed docstring\n", "labkit/io.py": "b\n",
                                    "labkit/new.py": "new\n"})
    report = colab_setup.sync_course(v2, drive, version="2")
    assert (drive / "labkit" / "metrics.py").read_text() == "my dice score\n"  # the edit, byte for byte
    assert (drive / "labkit" / "io.py").read_text() == "a\n"  # not edited, still not overwritten
    assert (drive / "releases" / "2" / "labkit" / "metrics.py").read_text() == "stub, fixed docstring\n"
    assert (drive / "releases" / "2" / "labkit" / "io.py").read_text() == "b\n"
    assert report == {"copied": ["labkit/new.py"], "kept": ["labkit/metrics.py"], "changed": ["labkit/io.py"],
                      "newer": ["labkit/io.py", "labkit/metrics.py"]}
    again = colab_setup.sync_course(v2, drive, version="2")
    assert again["copied"] == [] and (drive / "labkit" / "metrics.py").read_text() == "my dice score\n"


def test_an_edit_under_the_first_release_is_kept_and_nothing_is_placed_beside_it(tmp_path):
    drive, v1 = tmp_path / "drive", _release(tmp_path / "v1", {"labkit/metrics.py": "stub\n"})
    colab_setup.sync_course(v1, drive, version="1")
    (drive / "labkit" / "metrics.py").write_text("mine\n")
    assert colab_setup.sync_course(v1, drive, version="1")["kept"] == ["labkit/metrics.py"]
    assert not (drive / "releases").exists()


def test_requirements_are_pinned_to_the_installed_torch_distribution_not_torch_version(tmp_path, monkeypatch):
    """pip knows torch as 2.14.1; torch.__version__ says 2.14.1+cu130, which pip cannot satisfy."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["torch>=2.2", "numpy>=1.0", "surely-not-installed-xyz>=1"]\n')
    calls = []
    monkeypatch.setattr(colab_setup.subprocess, "run", lambda argv, **kw: calls.append(argv))
    installed = colab_setup.install_requirements(pyproject, constraints_file=tmp_path / "keep.txt")
    assert installed == ["surely-not-installed-xyz>=1"]  # torch and numpy are there: not reinstalled
    pins = (tmp_path / "keep.txt").read_text().splitlines()
    assert pins[0] == f"torch=={importlib.metadata.version('torch')}"  # pip's name for it, whatever torch says
    assert calls[0][-3:] == ["-c", str(tmp_path / "keep.txt"), "surely-not-installed-xyz>=1"]
    calls.clear()
    pyproject.write_text('[project]\ndependencies = ["torch>=2.2", "numpy>=1.0"]\n')
    assert colab_setup.install_requirements(pyproject, constraints_file=tmp_path / "keep.txt") == [] and calls == []


def test_the_working_folder_links_drive_runs_and_refuses_to_hide_a_real_folder(tmp_path):
    course, release, work = tmp_path / "drive", tmp_path / "release", tmp_path / "content" / "labkit-course"
    (release / "checks").mkdir(parents=True)
    notebooks = colab_setup.build_workdir(work, course=course, release=release)
    assert (notebooks / "runs").resolve() == (course / "runs").resolve() and (work / "data").is_dir()
    assert colab_setup.build_workdir(work, course=course, release=release) == notebooks  # twice: same
    (notebooks / "runs").unlink()
    (notebooks / "runs").mkdir()  # checkpoints written here would be lost with the VM
    with pytest.raises(FileExistsError, match="real folder"):
        colab_setup.build_workdir(work, course=course, release=release)


def test_the_checks_are_a_copy_so_they_import_the_students_labkit_not_the_releases(tmp_path):
    """A check puts the folder above its resolved path first on sys.path: above a link into the release
    is the release's labkit with the TODO stubs (seen in the journey: 'still has TODO: implement ...')."""
    release, work = tmp_path / "release", tmp_path / "content" / "labkit-course"
    (release / "checks").mkdir(parents=True)
    (release / "checks" / "check_x.py").write_text("v2\n")
    (work / "checks").mkdir(parents=True)
    (work / "checks" / "check_x.py").write_text("v1\n")  # an older release's copy: replaced
    colab_setup.build_workdir(work, course=tmp_path / "drive", release=release)
    assert not (work / "checks").is_symlink() and (work / "checks" / "check_x.py").read_text() == "v2\n"
    assert (work / "checks" / "check_x.py").resolve().parents[1] == work.resolve()


def test_the_summary_names_the_cpu_runtime_and_how_to_get_a_gpu(tmp_path):
    report = {"cwd": "/content/labkit-course/notebooks", "installed": [], "copied": [], "kept": ["labkit/metrics.py"],
              "changed": [], "newer": [], "runtime": "CPU only"}
    text = colab_setup.summary(report, course=tmp_path, version="0.1.0")
    assert "requirements: already installed" in text and "kept your edits in 1 files" in text
    assert "runtime: CPU only" in text and "CPU recipes" in text and "T4 GPU" in text


# ----------------------------------------------------------------------------- the cell, on a simulated VM
STATE = '''
import json, os, sys
import labkit
print("STATE " + json.dumps({"cwd": os.getcwd(), "labkit": labkit.__file__, "path0": sys.path[0],
      "env": [os.environ.get(k) for k in ("LABKIT_ROOT", "LABKIT_ARCHIVES", "NO_ALBUMENTATIONS_UPDATE")],
      "runs": os.path.realpath("runs"), "checks": os.path.isdir("../checks")}))
'''


def _states(output: str) -> list[dict]:
    return [json.loads(line[len("STATE "):]) for line in output.splitlines() if line.startswith("STATE ")]


@pytest.fixture(scope="module")
def course_zip(tmp_path_factory):
    dist = tmp_path_factory.mktemp("release")
    return zip_course(REPO_ROOT, dist, version="0.1.0")


def test_the_first_cell_ends_in_the_same_state_twice_after_a_restart_and_on_a_new_vm(tmp_path, course_zip):
    requires(bwrap_available(), "bubblewrap (bwrap) is needed to put a folder at /content: apt-get install -y bubblewrap")
    drive = tmp_path / "drive"
    (drive / "labkit-release").mkdir(parents=True)
    (drive / "labkit-release" / course_zip.name).write_bytes(course_zip.read_bytes())
    cell = colab_cell(release="/content/drive/MyDrive/labkit-release", version="0.1.0")
    twice_then_state = cell + STATE + cell + STATE
    vm = new_vm(tmp_path / "vm", drive=drive)
    first = vm.run(["-c", twice_then_state])  # a new VM: the cell runs twice in one kernel
    restarted = vm.run(["-c", cell + STATE])  # Runtime > Restart session: same VM, new process
    recycled = new_vm(tmp_path / "vm", drive=drive).run(["-c", cell + STATE])  # a new VM, the same Drive
    steps = {"first run": first, "restart": restarted, "new VM": recycled}
    states = {f"{step} #{n + 1}": state for step, ran in steps.items() for n, state in enumerate(_states(ran.stdout))}
    assert len(states) == 4, "\n".join(ran.stdout[-1500:] + ran.stderr[-1500:] for ran in steps.values())
    expected = {"cwd": "/content/labkit-course/notebooks", "path0": "/content/drive/MyDrive/labkit-course",
                "labkit": "/content/drive/MyDrive/labkit-course/labkit/__init__.py",
                "env": ["/content/labkit-course", "/content/drive/MyDrive/labkit-course/data-archives", "1"],
                "runs": str(drive / "labkit-course" / "runs"), "checks": True}
    for step, state in states.items():
        assert state == expected, (step, {key: value for key, value in state.items() if value != expected[key]})
    assert "Drive already mounted" in first.stdout and "copied" in first.stdout
    assert "copied" not in restarted.stdout + recycled.stdout  # Drive already holds the student's copy
    assert "requirements: already installed" in restarted.stdout
    new_process = vm.run(["-c", "import labkit; print(labkit.__file__)"])  # a terminal: the .pth entry
    assert new_process.stdout.strip() == "/content/drive/MyDrive/labkit-course/labkit/__init__.py", new_process.stderr


def test_outside_colab_the_first_cell_does_nothing(tmp_path):
    ran = subprocess.run([sys.executable, "-c", colab_cell() + "\nimport os; print(ON_COLAB, os.getcwd())"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert ran.stdout.split() == ["False", str(tmp_path)], ran.stderr


def test_a_notebook_of_an_older_release_takes_the_newest_and_keeps_the_students_edit(tmp_path, course_zip):
    """The student's notebooks on Drive keep their VERSION; the release folder's LATEST brings 0.2.0."""
    requires(bwrap_available(), "bubblewrap (bwrap) is needed to put a folder at /content: apt-get install -y bubblewrap")
    drive, shared = tmp_path / "drive", tmp_path / "drive" / "labkit-release"
    shared.mkdir(parents=True)
    (shared / course_zip.name).write_bytes(course_zip.read_bytes())
    old_cell = colab_cell(release="/content/drive/MyDrive/labkit-release", version="0.1.0")
    vm = new_vm(tmp_path / "vm", drive=drive)
    assert vm.run(["-c", old_cell]).returncode == 0
    metrics = drive / "labkit-course" / "labkit" / "metrics.py"
    metrics.write_text(metrics.read_text() + "# my edit\n")
    with zipfile.ZipFile(course_zip) as old, zipfile.ZipFile(shared / "labkit-course-0.2.0.zip", "w") as new:
        for item in old.infolist():
            data = old.read(item)
            new.writestr(item, data + b"# fixed by the TA\n" if item.filename in ("labkit/metrics.py", "checks/check_pruning.py")
                         else data)
    (shared / "LATEST").write_text("0.2.0\n")
    ran = vm.run(["-c", old_cell + STATE])
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert metrics.read_text().endswith("# my edit\n")  # never overwritten
    beside = drive / "labkit-course" / "releases" / "0.2.0" / "labkit" / "metrics.py"
    assert beside.read_text().endswith("# fixed by the TA\n") and "labkit/metrics.py" in ran.stdout
    assert (tmp_path / "vm" / "content" / "labkit-course" / "checks" / "check_pruning.py").read_text().endswith(
        "# fixed by the TA\n")  # the TA's checks: always the newest
