"""The batch gradebook: per-student scores from the batch rows, the late rule, extensions, the course CSV.

Expected values are computed by hand from the course's default points (GRADED_GOALS: pruning 50 + 50,
each U-Net's Dice 50 with tiers 100 / 80 / 60 %) and the policies written in each test.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from labkit.grading.gradebook import (COLUMNS, join_gradebooks, main, read_extensions, student_scores,
                                      write_course, write_gradebook)
from labkit.grading.gradescope_results import results_json
from labkit.grading.policy import Policy, policy_from_dict

DUE = "2026-03-01T23:59:00+00:00"
ONE_DAY_LATE = "2026-03-02T10:00:00+00:00"
ON_TIME = "2026-03-01T20:00:00+00:00"
LATE_10 = policy_from_dict({"late": {"penalty_per_day": 0.1}})


def row(student="42", artifact="pruning", *, exit_code=0, status="ok", metrics=None, timestamp=None,
        message="Congratulations!"):
    suffix = {"pruning": "pruning.pt"}.get(artifact, f"{artifact}.pth")
    return {"id": student, "file": f"/subs/{student}/{student}_{suffix}", "status": status, "exit_code": exit_code,
            "passed": exit_code == 0, "metrics": {"accuracy": 91.0, "sparsity": 60.0} if metrics is None else metrics,
            "message": message, "seconds": 2.0, "artifact": artifact, "timestamp": timestamp,
            "timestamp_source": "file mtime"}


def only(records, student):
    [record] = [r for r in records if r["student_id"] == student]
    return record


def test_pruning_full_marks_one_day_late_keeps_90_points():
    [record] = student_scores([row(timestamp=ONE_DAY_LATE)], "pruning", LATE_10, deadline=DUE)
    assert (record["raw_score"], record["days_late"], record["late_penalty"], record["score"]) == (100.0, 1, 10.0, 90.0)
    assert record["status"] == "graded" and record["max_score"] == 100.0
    assert "90%" in record["late_note"]


def test_on_time_file_has_no_penalty():
    [record] = student_scores([row(timestamp=ON_TIME)], "pruning", LATE_10, deadline=DUE)
    assert (record["days_late"], record["late_penalty"], record["score"]) == (0, 0.0, 100.0)


def test_no_deadline_means_nobody_is_late():
    [record] = student_scores([row(timestamp=ONE_DAY_LATE)], "pruning", LATE_10)
    assert (record["days_late"], record["score"]) == (0, 100.0)


def test_extension_moves_the_deadline_so_a_late_file_is_on_time():
    rows = [row("1", timestamp=ONE_DAY_LATE), row("2", timestamp=ONE_DAY_LATE)]
    records = student_scores(rows, "pruning", LATE_10, deadline=DUE,
                             extensions={"1": "2026-03-03T23:59:00+00:00"})
    assert (only(records, "1")["days_late"], only(records, "1")["score"]) == (0, 100.0)
    assert (only(records, "2")["days_late"], only(records, "2")["score"]) == (1, 90.0)  # no extension: late
    assert "extension" in only(records, "1")["late_note"]


def test_dice_087_earns_the_80_percent_tier_of_50_points():
    rows = [row(artifact="unet", metrics={"dice": 0.87}), row(artifact="resnet34_unet", metrics={"dice": 0.95})]
    [record] = student_scores(rows, "segmentation", Policy())
    assert [g["score"] for g in record["goals"] if g["max_score"]] == [40.0, 50.0]
    assert (record["raw_score"], record["score"], record["max_score"]) == (90.0, 90.0, 100.0)


def test_missing_artifact_scores_zero_for_its_goals():
    [record] = student_scores([row(artifact="unet", metrics={"dice": 0.87})], "segmentation", Policy())
    assert (record["score"], record["status"]) == (40.0, "graded")
    assert [g["output"] for g in record["goals"] if g["artifact"] == "resnet34_unet"][0].startswith("No file")


def test_rostered_student_with_nothing_is_missing_with_score_zero():
    records = student_scores([row("42")], "pruning", Policy(), roster={"42": "Ada", "7": "Bo"})
    assert [r["student_id"] for r in records] == ["42", "7"]
    assert (only(records, "7")["status"], only(records, "7")["score"], only(records, "7")["name"]) == ("missing", 0.0, "Bo")


@pytest.mark.parametrize("changes", [{"exit_code": 3}, {"status": "timeout", "exit_code": 124},
                                     {"status": "crashed", "exit_code": 1}, {"status": "skipped", "exit_code": None}])
def test_row_without_verdict_is_not_graded_with_an_empty_score(changes, tmp_path):
    no_verdict = {**row("42"), **changes, "message": "dataset not found"}
    [record] = student_scores([no_verdict], "pruning", LATE_10, roster=["42"])
    assert (record["status"], record["score"], record["raw_score"], record["late_penalty"]) == ("not graded", None, None, None)
    assert "TA must look" in record["note"] and "42_pruning.pt" in record["note"]
    write_gradebook([record], tmp_path / "lab.csv")
    [written] = csv.DictReader(open(tmp_path / "lab.csv"))
    assert (written["score"], written["raw_score"], written["status"]) == ("", "", "not graded")


def test_invalid_file_exit_2_is_a_verdict_worth_zero():
    [record] = student_scores([row(exit_code=2, metrics={})], "pruning", Policy())
    assert (record["status"], record["score"]) == ("graded", 0.0)


def test_id_not_on_the_roster_is_flagged_but_scored():
    records = student_scores([row("42"), row("99")], "pruning", Policy(), roster=["42"])
    stranger = only(records, "99")
    assert (stranger["status"], stranger["on_roster"], stranger["score"]) == ("not on roster", False, 100.0)
    assert "Not on the roster" in stranger["note"]


def test_two_files_for_one_artifact_are_not_graded():
    [record] = student_scores([row(), row()], "pruning", Policy())
    assert (record["status"], record["score"]) == ("not graded", None)


def test_course_yaml_points_override_changes_points_and_maximum():
    policy = policy_from_dict({"points": {"pruning": {"accuracy": 70, "sparsity": 30}}})
    [record] = student_scores([row(metrics={"accuracy": 91.0, "sparsity": 40.0})], "pruning", policy)
    assert (record["score"], record["max_score"]) == (70.0, 100.0)
    policy = policy_from_dict({"points": {"pruning": {"accuracy": 80}}})
    [record] = student_scores([row()], "pruning", policy)
    assert (record["score"], record["max_score"]) == (130.0, 130.0)


def test_no_submission_time_applies_no_late_rule_and_says_so():
    [record] = student_scores([row(timestamp=None)], "pruning", LATE_10, deadline=DUE)
    assert (record["days_late"], record["score"]) == (0, 100.0)
    assert "No submission time" in record["note"]


@pytest.mark.parametrize("task, rows, policy, submitted", [
    ("pruning", [row(timestamp=ONE_DAY_LATE)], LATE_10, ONE_DAY_LATE),
    ("pruning", [row(metrics={"accuracy": 89.0, "sparsity": 70.0}, exit_code=1, timestamp="2026-03-04T01:00:00+00:00")],
     policy_from_dict({"late": {"penalty_per_day": 0.15, "max_days": 3}}), "2026-03-04T01:00:00+00:00"),
    ("segmentation", [row(artifact="unet", metrics={"dice": 0.81}, timestamp=ON_TIME)],
     policy_from_dict({"dice_tiers": [[0.9, 1.0], [0.8, 0.55]], "points": {"segmentation": {"unet_dice": 33}}}), ON_TIME),
    ("pruning", [row(exit_code=2, metrics={}, timestamp=ON_TIME)], LATE_10, ON_TIME),
])
def test_score_equals_the_gradescope_autograder_score(task, rows, policy, submitted):
    [record] = student_scores(rows, task, policy, deadline=DUE)
    gradescope = results_json(task, {r["artifact"]: r for r in rows}, {}, policy,
                              metadata={"created_at": submitted, "assignment": {"due_date": DUE}})
    assert record["score"] == gradescope["score"]
    assert record["max_score"] == sum(test["max_score"] for test in gradescope["tests"])


def test_read_extensions_names_the_file_and_line_of_a_bad_time(tmp_path):
    path = tmp_path / "extensions.csv"
    path.write_text("student_id,deadline\n42,2026-03-05T23:59:00-08:00\n7,2026-03-05 23:59\n")
    with pytest.raises(ValueError, match=r"extensions\.csv, line 3.*7"):
        read_extensions(path)
    path.write_text("student_id,deadline\n42,2026-03-05T23:59:00-08:00\n")
    assert read_extensions(path) == {"42": "2026-03-05T23:59:00-08:00"}


def test_bad_deadline_is_refused_before_scoring():
    with pytest.raises(ValueError, match="deadline"):
        student_scores([row()], "pruning", LATE_10, deadline="March 1")


def test_write_gradebook_has_the_exact_columns_and_defuses_formulas(tmp_path):
    records = student_scores([row("=cmd", timestamp=ONE_DAY_LATE)], "pruning", LATE_10, deadline=DUE)
    write_gradebook(records, tmp_path / "lab.csv")
    with open(tmp_path / "lab.csv") as handle:
        header, values = list(csv.reader(handle))
    assert tuple(header) == COLUMNS == ("student_id", "name", "raw_score", "late_penalty", "score", "max_score",
                                        "status", "days_late", "timestamp_source", "note")
    assert values[:8] == ["'=cmd", "", "100.0", "10.0", "90.0", "100.0", "graded", "1"]


def lab_csv(tmp_path: Path, name: str, records: list[dict]) -> Path:
    return write_gradebook(records, tmp_path / f"{name}.csv")


def two_labs(tmp_path):
    lab3 = lab_csv(tmp_path, "lab03", student_scores([row("1"), row("2", exit_code=3)], "pruning", Policy(),
                                                     roster={"1": "Ada", "2": "Bo", "3": "Cy"}))
    lab4 = lab_csv(tmp_path, "lab04", student_scores([row("1", "quantization", metrics={"accuracy": 92.0}),
                                                      row("3", "quantization", metrics={"accuracy": 80.0}, exit_code=1)],
                                                     "quantization", Policy(), roster={"1": "Ada", "2": "Bo", "3": "Cy"}))
    return lab3, lab4


def test_join_gradebooks_one_column_per_lab_and_a_total(tmp_path):
    records = join_gradebooks(two_labs(tmp_path), names=["Lab 03", "Lab 04"])
    by_id = {r["student_id"]: r for r in records}
    assert by_id["1"]["scores"] == {"Lab 03": 100.0, "Lab 04": 100.0} and by_id["1"]["total"] == 200.0
    assert by_id["2"]["scores"] == {"Lab 03": None, "Lab 04": None}  # not graded, then missing: both empty
    assert by_id["2"]["open"] == "Lab 03: not graded; Lab 04: missing"
    assert (by_id["3"]["scores"], by_id["3"]["total"]) == ({"Lab 03": None, "Lab 04": 0.0}, 0.0)


def test_join_refuses_a_name_count_mismatch(tmp_path):
    with pytest.raises(ValueError, match="one distinct name per gradebook"):
        join_gradebooks(two_labs(tmp_path), names=["Lab 03"])


def test_canvas_format_has_canvas_student_columns_and_points_possible(tmp_path):
    records = join_gradebooks(two_labs(tmp_path), names=["Lab 03 (101)", "Lab 04 (102)"])
    write_course(records, tmp_path / "canvas.csv", format="canvas")
    lines = list(csv.reader(open(tmp_path / "canvas.csv")))
    assert lines[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 03 (101)", "Lab 04 (102)"]
    assert lines[1] == ["Points Possible", "", "", "", "", "100.0", "100.0"]
    assert lines[2] == ["Ada", "", "1", "", "", "100.0", "100.0"]
    assert lines[3] == ["Bo", "", "2", "", "", "", ""]  # an empty cell changes nothing in Canvas


def test_cli_writes_plain_course_csv_and_exits_1_when_a_lab_was_not_graded(tmp_path, capsys):
    lab3, lab4 = two_labs(tmp_path)
    assert main([str(lab3), str(lab4), "--out", str(tmp_path / "course.csv")]) == 1
    assert "2: lab03: not graded" in capsys.readouterr().err
    header, first = list(csv.reader(open(tmp_path / "course.csv")))[:2]
    assert header == ["student_id", "name", "lab03", "lab04", "total", "max_total", "open"]
    assert first == ["1", "Ada", "100.0", "100.0", "200.0", "200.0", ""]
    assert main([str(lab4), "--out", str(tmp_path / "only4.csv")]) == 0  # missing is not the TA's problem
