"""The batch grader lists every candidate (a row each, skipped ones with the reason), finds Lab 05's
network.py, escapes CSV cells against formula injection and counts outcomes."""
import csv

from labkit.grading.batch import (TASKS, csv_cell, find_candidates, grade_one, network_for, not_graded,
                                  summary, write_results)


def test_every_candidate_is_listed_whatever_its_case_or_kind(tmp_path):
    (tmp_path / "1_pruning.PT").write_bytes(b"x")
    (tmp_path / "2_pruning.pth.tar").write_bytes(b"x")
    (tmp_path / "3_pruning.pt").mkdir()
    (tmp_path / "4_pruning.pt").symlink_to(tmp_path / "1_pruning.PT")
    (tmp_path / "notes.txt").write_text("not a candidate")
    names = [path.name for path in find_candidates(tmp_path, TASKS["pruning"])]
    assert names == ["1_pruning.PT", "2_pruning.pth.tar", "3_pruning.pt", "4_pruning.pt"]


def test_folders_and_links_get_a_skipped_row_with_the_reason(tmp_path):
    (tmp_path / "3_pruning.pt").mkdir()
    (tmp_path / "target.bin").write_bytes(b"x")
    (tmp_path / "4_pruning.pt").symlink_to(tmp_path / "target.bin")
    folder_row = grade_one(tmp_path / "3_pruning.pt", "pruning", check_arguments=[], timeout=5)
    link_row = grade_one(tmp_path / "4_pruning.pt", "pruning", check_arguments=[], timeout=5)
    assert folder_row["status"] == "skipped" and "a folder" in folder_row["message"]
    assert link_row["status"] == "skipped" and "symbolic link" in link_row["message"]
    assert folder_row["id"] == "3" and not_graded(folder_row)


def test_lab05_network_py_is_found_beside_the_weights(tmp_path):
    (tmp_path / "network").mkdir()
    (tmp_path / "network" / "network.py").write_text("def load_model(path): ...\n")
    (tmp_path / "network2").mkdir()
    (tmp_path / "network2" / "network.py").write_text("def load_model(path): ...\n")
    assert network_for(tmp_path / "model_task1.pth", "efficient") == tmp_path / "network" / "network.py"
    assert network_for(tmp_path / "model_task2.pth", "efficient") == tmp_path / "network2" / "network.py"
    assert network_for(tmp_path / "1_pruning.pt", "pruning") is None


def test_csv_cells_cannot_start_a_formula_and_are_capped(tmp_path):
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert csv_cell(start + "cmd|' /C calc'!A0").startswith("'" + start)
    assert csv_cell(-1.5) == -1.5 and csv_cell("fine") == "fine"
    assert csv_cell("x" * 10_000) == "x" * 1999 + "…"   # 2,000 characters, the last one says it was cut
    assert csv_cell("x" * 2000) == "x" * 2000              # a cell of exactly the cap is kept whole
    row = {"id": "=1+1", "file": "@evil.pt", "status": "ok", "exit_code": 2, "passed": False,
           "metrics": {}, "message": "-" * 5000, "seconds": 1.0}
    write_results([row], tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv", newline="") as handle:
        written = next(csv.DictReader(handle))
    assert written["id"] == "'=1+1" and written["file"] == "'@evil.pt"
    assert written["message"] == "'" + "-" * 1998 + "…"


def test_summary_counts_each_outcome():
    rows = [{"status": "ok", "exit_code": 0}, {"status": "ok", "exit_code": 0},
            {"status": "ok", "exit_code": 2}, {"status": "ok", "exit_code": 3},
            {"status": "skipped", "exit_code": None}, {"status": "timeout", "exit_code": 124}]
    text = summary(rows)
    assert text.startswith("graded 6 candidates:")
    for part in ("2 passed", "1 invalid submission", "1 environment problem", "1 skipped", "1 timeout"):
        assert part in text
    assert [not_graded(row) for row in rows] == [False, False, False, True, True, True]
