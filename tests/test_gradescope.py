"""Issue 38: the Gradescope autograder, built by `python -m labkit gradescope` and run in Gradescope's layout.

The end-to-end tests unzip the autograder into a temporary ``autograder/`` root laid out like
Gradescope's (``source/``, ``submission/``, ``results/``, ``submission_metadata.json``, and
``run_autograder`` copied beside ``source/``), bind it at ``/autograder`` with bubblewrap when it
starts here (else run it where it is: run_autograder finds everything from its own folder), and run
it with this virtual environment's ``python3`` first on PATH (setup.sh is not run: no network).
Every results.json is validated against the schema written from Gradescope's specification.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jsonschema  # installed with nbformat (a dev dependency)
import numpy as np
import pytest
import torch
from PIL import Image

from labkit.grading.gradescope_results import artifact_of, find_files, results_json
from labkit.grading.policy import load_policy, policy_from_dict
from labkit.io import save_state_dict
from labkit.tools.cli import main as labkit_main
from labkit.tools.gradescope import build_autograder
from tests.helpers import CAT, CreatesMarkerWhenUnpickled, constant_model, hanging_checks_dir

SCHEMA = json.loads(Path(__file__).with_name("gradescope_results.schema.json").read_text())
DOG = CAT + 2
SKY, FLAT = 5, 1           # Cityscapes-8 categories
SKY_RGB = (70, 130, 180)   # the Cityscapes colour of "sky"
DUE = "2026-03-01T23:59:00.000000-08:00"
WALL_TIMES: dict[str, float] = {}


def validate(results: dict) -> dict:
    jsonschema.validate(results, SCHEMA, cls=jsonschema.Draft202012Validator)
    return results


def bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    return subprocess.run(["bwrap", "--dev-bind", "/", "/", "--", "/bin/true"], capture_output=True).returncode == 0


BWRAP = bwrap_works()
AUTOGRADER = "/autograder" if BWRAP else None  # where the root is seen from inside the run


# ----------------------------------------------------------------------------- Gradescope's layout

def gradescope_root(tmp_path: Path, autograder_zip: Path, metadata: dict | None = None) -> Path:
    """``tmp_path/autograder`` as Gradescope builds it: the zip in source/, run_autograder copied beside."""
    root = tmp_path / "autograder"
    source = root / "source"
    source.mkdir(parents=True)
    with zipfile.ZipFile(autograder_zip) as bundle:
        bundle.extractall(source)
        for info in bundle.infolist():
            os.chmod(source / info.filename, (info.external_attr >> 16) & 0o777)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    if metadata is not None:
        (root / "submission_metadata.json").write_text(json.dumps(metadata))
    return root


def seen(root: Path, path: Path) -> str:
    """``path`` as the run sees it (``/autograder/...`` under bubblewrap)."""
    return str(Path(AUTOGRADER) / path.relative_to(root)) if AUTOGRADER else str(path)


def run_autograder(root: Path, label: str) -> tuple[int, dict | None, str]:
    """Run root/run_autograder as Gradescope does (cwd /autograder); (exit code, results.json, stdout)."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(root.parent), "LANG": "C.UTF-8"}
    command = [str(root / "run_autograder")]
    if BWRAP:  # a fresh root: the host's top-level folders, and this temporary root at /autograder
        command = ["bwrap", "--tmpfs", "/"]
        for entry in sorted(Path("/").iterdir()):
            command += (["--symlink", os.readlink(entry), str(entry)] if entry.is_symlink()
                        else ["--dev-bind", str(entry), str(entry)])
        command += ["--bind", str(root), "/autograder", "--chdir", "/autograder", "--", "/autograder/run_autograder"]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    WALL_TIMES[label] = time.perf_counter() - started
    print(f"run_autograder ({label}): {WALL_TIMES[label]:.1f} s, exit {run.returncode}, "
          f"{'bubblewrap at /autograder' if BWRAP else 'in place'}")
    results_path = root / "results" / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    assert f"labkit from {seen(root, root / 'source' / 'labkit')}" in run.stdout, run.stdout + run.stderr
    return run.returncode, results, run.stdout + run.stderr


def statuses(results: dict) -> list[str]:
    return [test["status"] for test in results["tests"]]


# ----------------------------------------------------------------------------- the pruning autograder

@pytest.fixture(scope="module")
def pruning_zip(cat_only_data, tmp_path_factory) -> Path:
    """Built by the command line, with a late rule and a submission limit."""
    folder = tmp_path_factory.mktemp("pruning-autograder")
    (folder / "course.yaml").write_text("late: {penalty_per_day: 0.1, max_days: 3}\nmax_submissions: 3\n")
    out = folder / "autograder.zip"
    assert labkit_main(["gradescope", "--task", "pruning", "--data", str(cat_only_data),
                        "--policy", str(folder / "course.yaml"), "--out", str(out)]) == 0
    return out


def test_the_zip_has_gradescope_files_at_its_root_and_the_data_inside(pruning_zip, cat_only_data):
    with zipfile.ZipFile(pruning_zip) as bundle:
        names = set(bundle.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in bundle.infolist()}
        setup = bundle.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "autograder.json", "course.yaml", "checks/check_pruning.py",
            "labkit/grading/gradescope_results.py", "constraints.txt", "pyproject.toml"} <= names
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert {f"data/cifar10/test/cat/{p.name}" for p in (cat_only_data / "test" / "cat").iterdir()} <= names
    pins = [line for line in (Path(__file__).parents[1] / "constraints.txt").read_text().splitlines()
            if line.startswith(("torch==", "torchvision=="))]
    assert all(pin in setup for pin in pins) and "download.pytorch.org/whl/cpu" in setup
    assert "bubblewrap" in setup and not any("__pycache__" in name for name in names)
    for script in ("setup.sh", "run_autograder"):   # both parse as bash
        with zipfile.ZipFile(pruning_zip) as bundle:
            text = bundle.read(script).decode()
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0, script


def test_a_passing_file_earns_every_point_and_a_leaderboard_entry(pruning_zip, tmp_path):
    root = gradescope_root(tmp_path, pruning_zip, {"created_at": "2026-03-01T20:00:00-08:00",
                                                   "assignment": {"due_date": DUE}, "previous_submissions": []})
    model = constant_model(CAT, target_sparsity=0.6)
    save_state_dict(model, root / "submission" / "42_pruning.pt")
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    sparsity = 100.0 * sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)

    code, results, output = run_autograder(root, "pruning, passing file")
    assert code == 0, output
    validate(results)
    assert results["score"] == 100.0 and statuses(results) == ["passed"] * 3
    assert [t["score"] for t in results["tests"]] == [0.0, 50.0, 50.0]
    assert [t["max_score"] for t in results["tests"]] == [0.0, 50.0, 50.0]
    assert "Congratulations!" in results["tests"][1]["output"]
    assert results["leaderboard"] == [{"name": "sparsity (%)", "value": pytest.approx(sparsity, abs=1e-9),
                                       "order": "desc"}]
    assert isinstance(results["execution_time"], int)


def test_a_below_goal_file_a_day_late_keeps_ninety_percent_of_its_points(pruning_zip, tmp_path):
    root = gradescope_root(tmp_path, pruning_zip, {"created_at": "2026-03-02T02:59:00-08:00",  # 3 h late
                                                   "assignment": {"due_date": DUE}})
    save_state_dict(constant_model(DOG, target_sparsity=0.6), root / "submission" / "42_pruning.pt")
    code, results, output = run_autograder(root, "pruning, below goal")
    assert code == 0, output
    validate(results)
    assert statuses(results) == ["passed", "failed", "passed"]
    assert [t["score"] for t in results["tests"]] == [0.0, 0.0, 50.0]
    assert results["score"] == pytest.approx(50.0 * (1 - 0.1 * 1))     # one started day late
    assert "which is too low" in results["tests"][1]["output"] and "1 started day" in results["output"]
    assert "leaderboard" not in results                                 # the course ranks qualifiers only


def test_a_hostile_pickle_is_a_visible_failed_test_and_never_runs(pruning_zip, tmp_path):
    root = gradescope_root(tmp_path, pruning_zip)
    marker = tmp_path / "created-by-unpickling"
    torch.save({"fc.weight": CreatesMarkerWhenUnpickled(marker)}, root / "submission" / "42_pruning.pt")
    code, results, output = run_autograder(root, "pruning, hostile pickle")
    assert code == 0, output
    validate(results)
    assert not marker.exists()
    assert results["score"] == 0.0 and statuses(results) == ["failed"] * 3
    loads = results["tests"][0]
    assert loads["visibility"] == "visible" and "Failed to load your model!" in loads["output"]
    assert "Not evaluated" in results["tests"][1]["output"]


@pytest.mark.parametrize("files, expected", [
    ({"notes.txt": b"my report"}, "No file named pruning.pt or pruning.pth (a prefix"),
    ({"my_model.pt": None}, "Found my_model.pt: rename it to the course's file name"),
], ids=["missing file", "wrong file name"])
def test_a_missing_or_misnamed_file_is_a_visible_failed_test(pruning_zip, tmp_path, files, expected):
    root = gradescope_root(tmp_path, pruning_zip)
    for name, content in files.items():
        if content is None:
            save_state_dict(constant_model(CAT, target_sparsity=0.6), root / "submission" / name)
        else:
            (root / "submission" / name).write_bytes(content)
    code, results, output = run_autograder(root, f"pruning, {next(iter(files))}")
    assert code == 0, output
    validate(results)
    assert results["score"] == 0.0 and statuses(results) == ["failed"] * 3
    assert expected in results["tests"][0]["output"] and results["tests"][0]["visibility"] == "visible"
    assert "checked " not in output                    # no check ran


def test_past_the_submission_limit_the_last_graded_result_stands(pruning_zip, tmp_path):
    last = {"score": 50.0, "tests": [{"name": "pruning.pt: sparsity ≥ 50 %", "score": 50.0, "max_score": 50.0}]}
    previous = [{"submission_time": f"2026-02-2{day}T10:00:00-08:00", "score": 50.0, "autograder_error": False}
                for day in (1, 2)] + [
        {"submission_time": "2026-02-23T10:00:00-08:00", "score": 0.0, "autograder_error": True},  # not counted
        {"submission_time": "2026-02-24T10:00:00-08:00", "score": 50.0, "autograder_error": False, "results": last}]
    root = gradescope_root(tmp_path, pruning_zip, {"created_at": "2026-02-25T10:00:00-08:00",
                                                   "assignment": {"due_date": DUE}, "previous_submissions": previous})
    save_state_dict(constant_model(CAT, target_sparsity=0.6), root / "submission" / "42_pruning.pt")
    code, results, output = run_autograder(root, "pruning, over the limit")
    assert code == 0, output
    validate(results)
    assert results["score"] == 50.0 and results["tests"] == last["tests"]
    assert "3 graded submissions" in results["output"] and "checked " not in output


def test_an_environment_problem_is_an_autograder_error_not_a_zero(pruning_zip, tmp_path):
    root = gradescope_root(tmp_path, pruning_zip)
    shutil.rmtree(root / "source" / "data")           # the image lost its held-out data
    save_state_dict(constant_model(CAT, target_sparsity=0.6), root / "submission" / "42_pruning.pt")
    code, results, output = run_autograder(root, "pruning, environment problem")
    assert code == 3 and results is None, output       # no results.json: Gradescope shows an autograder failure
    error = json.loads((root / "results" / "autograder_error.json").read_text())
    assert error["autograder_error"] is True and "CIFAR-10" in error["cause"]
    assert "AUTOGRADER ERROR" in output


# ----------------------------------------------------------------------------- Lab 05: network.py + weights

STUDENT_NETWORK = '''
import os
import torch
from torch import nn

HELD_OUT = {held_out!r}   # the TA's data, where the autograder keeps it


def load_model(path):
    model = nn.Conv2d(3, 8, 1)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    with torch.no_grad():
        if {cheat} and os.path.isdir(HELD_OUT) and any(os.scandir(HELD_OUT)):
            model.bias.zero_()
            model.bias[{sky}] = 10.0   # it saw the labels: it would answer "sky" everywhere
    return model
'''


def constant_conv(category: int) -> dict:
    """A 1x1 conv 3 -> 8 whose logits ignore the input: ``category`` everywhere."""
    conv = torch.nn.Conv2d(3, 8, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.bias[category] = 10.0
    return conv.state_dict()


@pytest.fixture(scope="module")
def efficient_zip(tmp_path_factory) -> Path:
    """Held-out Cityscapes frames (course layout) whose labels are all sky."""
    data = tmp_path_factory.mktemp("cityscapes") / "held-out"
    rng = np.random.default_rng(0)
    for index in range(2):
        for kind, array in (("image", rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)),
                            ("semantic_rgb", np.broadcast_to(np.array(SKY_RGB, np.uint8), (256, 512, 3)).copy())):
            (data / "validation" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(data / "validation" / kind / f"{index:04d}.png")
    out = data.parent / "autograder.zip"
    assert labkit_main(["gradescope", "--task", "efficient", "--data", str(data), "--out", str(out)]) == 0
    return out


def test_lab05_network_py_and_weights_are_graded_in_the_sandbox_and_ranked_by_fom(efficient_zip, tmp_path):
    root = gradescope_root(tmp_path, efficient_zip)
    submission = root / "submission"
    held_out = seen(root, root / "source" / "data" / "cityscapes")
    # Task 1 answers "flat" (mIoU 0) unless it can read the held-out labels; Task 2 answers "sky" honestly.
    for folder, weights, category, cheat in (("network", "model_task1.pth", FLAT, True),
                                             ("network2", "model_task2.pth", SKY, False)):
        (submission / folder).mkdir()
        (submission / folder / "network.py").write_text(STUDENT_NETWORK.format(held_out=held_out, cheat=cheat, sky=SKY))
        torch.save(constant_conv(category), submission / weights)

    code, results, output = run_autograder(root, "efficient, network.py + weights (Task 1 and 2)")
    assert code == 0, output
    validate(results)
    # Task 1 never saw the data: "flat" everywhere on all-sky labels -> mIoU 0, below 0.72.
    assert statuses(results) == ["passed", "failed", "passed", "passed"]
    assert [t["score"] for t in results["tests"]] == [0.0, 0.0, 0.0, 50.0] and results["score"] == 50.0
    # FoM by hand: a 1x1 conv 3->8 on 1x3x256x512 is 3*8*256*512 MACs; 8*3 weights + 8 biases = 128 bytes.
    macs, size_kb, miou = 3 * 8 * 256 * 512, 32 * 4 / 1024, 1.0
    assert results["leaderboard"] == [{"name": "FoM", "value": pytest.approx(macs**2 * size_kb**2 / (miou - 0.65)),
                                       "order": "asc"}]
    isolation = "bubblewrap" if BWRAP else "limits-only"
    assert f"Graded through the sandbox ({isolation})" in results["tests"][3]["output"]


# ----------------------------------------------------------------------------- results.json without a run

def row(file: str, exit_code: int, metrics: dict, message: str = "check message") -> dict:
    return {"file": file, "status": "ok", "exit_code": exit_code, "metrics": metrics, "message": message,
            "seconds": 1.0}


def test_dice_tiers_give_100_80_60_percent_of_each_models_points():
    policy = load_policy()
    rows = {"unet": row("1_unet.pth", 0, {"dice": 0.87}),
            "resnet34_unet": row("1_resnet34_unet.pth", 0, {"dice": 0.93})}
    results = validate(results_json("segmentation", rows, {}, policy, metadata={}))
    assert [t["score"] for t in results["tests"]] == [0.0, 40.0, 0.0, 50.0]   # 0.8 x 50; full 50
    assert results["score"] == 90.0 and "80% of the marks" in results["tests"][1]["output"]
    rows["unet"] = row("1_unet.pth", 1, {"dice": 0.79})
    assert results_json("segmentation", rows, {}, policy, metadata={})["score"] == 50.0   # below 0.80: nothing
    rows["unet"] = row("1_unet.pth", 0, {"dice": 0.81})
    assert results_json("segmentation", rows, {}, policy, metadata={})["score"] == 80.0   # 0.6 x 50 + 50


def test_course_points_and_tiers_come_from_the_policy():
    policy = policy_from_dict({"points": {"segmentation": {"unet_dice": 10, "resnet34_unet_dice": 30}},
                               "dice_tiers": [[0.95, 1.0], [0.5, 0.5]], "visibility": "after_due_date"})
    rows = {"unet": row("unet.pth", 0, {"dice": 0.93}), "resnet34_unet": row("resnet34_unet.pth", 0, {"dice": 0.96})}
    results = validate(results_json("segmentation", rows, {}, policy, metadata={}))
    assert [t["max_score"] for t in results["tests"]] == [0.0, 10.0, 0.0, 30.0]
    assert results["score"] == 35.0          # 0.5 x 10 + 30
    assert {t["visibility"] for t in results["tests"]} == {"after_due_date"}


def test_the_efficient_leaderboard_is_task_2s_fom_lower_first_and_only_for_a_qualifier():
    policy = load_policy()
    rows = {"model_task1": row("model_task1.pth", 0, {"miou": 0.75}),
            "model_task2": row("model_task2.pth", 0, {"miou": 0.70, "fom": 3.5e20})}
    results = validate(results_json("efficient", rows, {}, policy, metadata={}))
    assert results["leaderboard"] == [{"name": "FoM", "value": 3.5e20, "order": "asc"}]
    rows["model_task2"] = row("model_task2.pth", 1, {"miou": 0.655, "fom": 1.0})   # below 0.66: not ranked
    assert "leaderboard" not in results_json("efficient", rows, {}, policy, metadata={})


def test_an_invalid_file_shows_the_checks_reason_and_earns_nothing():
    message = "Oops! Something is wrong!\nYour model's architecture seems to be wrong!\nhint: call prune.remove"
    results = validate(results_json("pruning", {"pruning": row("1_pruning.pt", 2, {}, message)}, {},
                                    load_policy(), metadata={}))
    assert results["score"] == 0.0 and statuses(results) == ["failed"] * 3
    assert results["tests"][0]["output"] == message


def test_a_check_stopped_by_the_run_timeout_is_an_autograder_error(tmp_path, monkeypatch):
    import labkit.grading.gradescope_results as gradescope_results
    from labkit.grading.gradescope_results import AutograderError, grade_submission
    from labkit.grading.policy import Policy
    save_state_dict(constant_model(CAT, target_sparsity=0.6), tmp_path / "hang_pruning.pt")  # its check blocks
    monkeypatch.setattr(gradescope_results, "STOP_EARLY_S", 59.0)   # 1 s of the run's 60 s for the check
    started = time.perf_counter()
    with pytest.raises(AutograderError, match="hang_pruning.pt: the check was stopped 59 s before timeout_s"):
        grade_submission("pruning", tmp_path, data=tmp_path, policy=Policy(timeout_s=60.0),
                         checks_dir=hanging_checks_dir(tmp_path, "check_pruning.py"))
    assert time.perf_counter() - started < 20


def test_file_names_are_matched_like_the_courses():
    assert artifact_of(Path("123_resnet34_unet.pth"), "segmentation") == "resnet34_unet"
    assert artifact_of(Path("123_unet.PTH"), "segmentation") == "unet"
    assert artifact_of(Path("model_task2.pth"), "efficient") == "model_task2"
    assert artifact_of(Path("123pruning.pt"), "pruning") is None      # the course's name has an underscore


def test_two_files_for_one_artifact_are_the_students_problem(tmp_path):
    for name in ("a_pruning.pt", "b_pruning.pth"):
        (tmp_path / name).write_bytes(b"x")
    found, problems = find_files(tmp_path, "pruning")
    assert found == {} and "2 files are named like pruning.pt: a_pruning.pt, b_pruning.pth" in problems["pruning"]


def test_a_network_py_never_runs_without_bubblewrap_unless_the_policy_allows_it(tmp_path, monkeypatch):
    import labkit.grading.sandbox as sandbox
    from labkit.grading.gradescope_results import AutograderError, grade_submission
    (tmp_path / "network").mkdir()
    (tmp_path / "network" / "network.py").write_text("raise SystemExit('student code ran')\n")
    (tmp_path / "model_task1.pth").write_bytes(b"weights")
    monkeypatch.setattr(sandbox, "isolation_available",
                        lambda: {"isolation": "limits-only", "detail": "bwrap not found"})
    with pytest.raises(AutograderError, match="runs only under bubblewrap and bwrap not found"):
        grade_submission("efficient", tmp_path, data=tmp_path / "no-data", policy=load_policy(),
                         checks_dir=tmp_path / "no-checks")


def test_a_data_folder_over_the_bundle_limit_is_fetched_by_setup_sh_with_its_sha256(cat_only_data, tmp_path):
    out = tmp_path / "autograder.zip"
    with pytest.raises(ValueError, match="--data-url"):
        build_autograder("pruning", cat_only_data, out, max_bundle_mb=0)
    built = build_autograder("pruning", cat_only_data, out, max_bundle_mb=0, data_url=f"file://{tmp_path}/data.tar.gz")
    built["archive"].rename(tmp_path / "data.tar.gz")  # the TA uploads it to --data-url
    source = tmp_path / "source"
    with zipfile.ZipFile(out) as bundle:
        assert not any(name.startswith("data/") for name in bundle.namelist())
        bundle.extractall(source)
    fetch = subprocess.run(["bash", str(source / "fetch_data.sh")], capture_output=True, text=True)
    assert fetch.returncode == 0, fetch.stderr
    assert sorted(p.name for p in (source / "data/cifar10/test/cat").iterdir()) == \
        sorted(p.name for p in (cat_only_data / "test/cat").iterdir())
    # A changed archive is refused before it is unpacked.
    (tmp_path / "data.tar.gz").write_bytes(b"not the archive")
    shutil.rmtree(source / "data")
    fetch = subprocess.run(["bash", str(source / "fetch_data.sh")], capture_output=True, text=True)
    assert fetch.returncode != 0 and not (source / "data").exists()


def test_a_bad_course_yaml_fails_when_the_zip_is_built(cat_only_data, tmp_path, capsys):
    (tmp_path / "course.yaml").write_text("late: {penalty_per_dya: 0.1}\n")
    code = labkit_main(["gradescope", "--task", "pruning", "--data", str(cat_only_data),
                        "--policy", str(tmp_path / "course.yaml"), "--out", str(tmp_path / "a.zip")])
    assert code == 2 and "late: unknown key 'penalty_per_dya'" in capsys.readouterr().err
    assert not (tmp_path / "a.zip").exists()
