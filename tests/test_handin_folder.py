"""Issue 41, item 2: a Lab 05 run folder handed in whole is graded by its hand-in files only.

A run folder holds the hand-in (model_task1.pth + network/network.py, model_task2.pth + network2/) and
also checkpoints/*/best.pt and last.pt and the SMOKE fixture's images. Both batch routes (the folder
mode and ``python -m labkit grade``) give rows only for the hand-in files; checkpoints are listed as
skipped and never give a student id; two candidates for one artifact are one explicit row.
"""
import csv
import json
import os

from labkit.grading.batch import not_graded, plan_folder
from labkit.grading.handin_files import checkpoint_reason
from labkit.grading.grade_class import main as grade_main
from labkit.grading.intake import open_submissions, select_latest

CHECKPOINTS = [f"checkpoints/{run}/{name}" for run in ("task1", "task2_fp32", "task2_qat") for name in ("best.pt",
                                                                                                        "last.pt")]
FAKE_CHECK = """import json, sys
path = sys.argv[sys.argv.index("--path") + 1]
print(json.dumps({"task": "efficient", "passed": False, "message": "graded " + path, "exit_code": 1,
                  "metrics": {"miou": 0.5}}))
sys.exit(1)
"""


def write_run(folder):
    """What notebook 05 leaves in its run folder (contents do not matter here: nothing is checked for real)."""
    for name in ("model_task1.pth", "model_task2.pth", *CHECKPOINTS):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"weights")
    for name in ("network/network.py", "network2/network.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("def load_model(path): ...\n")
    for index in range(4):
        image = folder / "data" / "cityscapes-fixture" / "training" / "image" / f"{index:04d}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"png")


def test_checkpoints_are_never_hand_ins():
    assert checkpoint_reason("123/checkpoints/task1/model_task1.pth")  # even when named like one
    assert checkpoint_reason("123/last.pt") and checkpoint_reason("BEST.PT")
    assert checkpoint_reason("123/model_task1.pth") is None and checkpoint_reason("123/pruning_best.pt") is None


def test_the_folder_mode_grades_only_the_handin_files(tmp_path):
    for student in ("123", "456"):
        write_run(tmp_path / student)
    (tmp_path / "best.pt").write_bytes(b"a stray checkpoint at the top")
    (tmp_path / "123" / "my_model.pt").write_bytes(b"named like no artifact")
    (tmp_path / "789" / "copy").mkdir(parents=True)   # two candidates for one artifact
    (tmp_path / "789" / "model_task1.pth").write_bytes(b"a")
    (tmp_path / "789" / "copy" / "model_task1.pth").write_bytes(b"b")

    graded, skipped = plan_folder(tmp_path, "efficient")
    assert [(path.relative_to(tmp_path).as_posix(), student) for path, student in graded] == [
        ("123/model_task1.pth", "123"), ("123/model_task2.pth", "123"),
        ("456/model_task1.pth", "456"), ("456/model_task2.pth", "456")]
    checkpoints = [row for row in skipped if row.get("checkpoint")]
    assert len(checkpoints) == 2 * len(CHECKPOINTS) + 1
    assert {row["id"] for row in checkpoints} == {"123", "456", "(unknown)"}   # never "best" or "last"
    assert all(row["status"] == "skipped" and "training checkpoint" in row["message"] and not not_graded(row)
               for row in checkpoints)
    [misnamed] = [row for row in skipped if row["file"].endswith("my_model.pt")]
    assert misnamed["id"] == "123" and "not named like model_task1.pth or model_task2.pth" in misnamed["message"]
    [twice] = [row for row in skipped if not row.get("checkpoint") and row is not misnamed]
    assert twice["id"] == "789" and "2 files for model_task1 of student 789" in twice["message"]
    assert "789/model_task1.pth" in twice["message"] and "789/copy/model_task1.pth" in twice["message"]
    assert not_graded(twice)


def test_labkit_grade_lists_checkpoints_as_skipped_and_grades_the_rest(tmp_path, capsys):
    source = tmp_path / "download"
    for student in ("123", "456"):
        write_run(source / student)
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "check_efficient.py").write_text(FAKE_CHECK)
    out = tmp_path / "grades.csv"
    code = grade_main([str(source), "--task", "efficient", "--out", str(out), "--checks-dir", str(checks)])
    printed = capsys.readouterr()
    rows = json.loads(out.with_suffix(".json").read_text())
    graded = [row for row in rows if row["status"] == "ok"]
    assert sorted((row["id"], row["artifact"]) for row in graded) == [
        ("123", "model_task1"), ("123", "model_task2"), ("456", "model_task1"), ("456", "model_task2")]
    checkpoints = [row for row in rows if row.get("checkpoint")]
    assert len(checkpoints) == 2 * len(CHECKPOINTS)
    assert all(row["status"] == "skipped" and row["id"] == "(unknown)" for row in checkpoints)
    assert not any(row["id"] in ("best", "last") for row in rows)
    assert not any("network" in row["file"] for row in rows)        # network.py goes with its weights
    data_rows = [row for row in rows if "/data/" in row["origin"] or row["file"].endswith("data")]
    assert len(data_rows) == 2 and all("4 files in" in row["message"] for row in data_rows)  # one per student
    assert len(rows) == 4 + 2 * len(CHECKPOINTS) + 2
    assert f"skipped {2 * len(CHECKPOINTS)} training checkpoints" in printed.out
    with open(out, newline="") as handle:
        listed = [row for row in csv.DictReader(handle) if row["status"] == "skipped"]
    assert sum("training checkpoint" in row["message"] for row in listed) == 2 * len(CHECKPOINTS)
    assert code == 1 and "123/data" in printed.err   # the data folders are for the TA to look at; checkpoints not
    assert "best.pt" not in printed.err


def test_two_files_for_one_artifact_at_the_same_time_are_not_a_guess(tmp_path):
    source = tmp_path / "download"
    (source / "123").mkdir(parents=True)
    for path in (source / "123_model_task1.pth", source / "123" / "model_task1.pth"):
        path.write_bytes(b"w")
        os.utime(path, (1_700_000_000, 1_700_000_000))   # the same time: neither is the later one
    found = select_latest(open_submissions(source, tmp_path / "work", "efficient"))
    assert [(s.student_id, s.artifact) for s in found] == [("123", "model_task1")] * 2
    for submission in found:
        assert submission.superseded_by is None and "2 files for model_task1 of student 123" in submission.problem
        assert "download/123_model_task1.pth" in submission.problem and "download/123/model_task1.pth" in submission.problem
