"""Per-student feedback files: only the student's own data, safe file names, a TA's files left alone."""
from __future__ import annotations

import pytest

from labkit.grading.feedback import MARKER, write_feedback
from labkit.grading.gradebook import student_scores
from labkit.grading.policy import policy_from_dict

DUE = "2026-03-01T23:59:00+00:00"
POLICY = policy_from_dict({"late": {"penalty_per_day": 0.1}})
STUDENTS = {  # id: (accuracy, sparsity, exit code, submitted)
    "alpha7": (91.5, 61.0, 0, "2026-03-02T10:00:00+00:00"),
    "bravo8": (72.25, 55.0, 1, "2026-03-01T10:00:00+00:00"),
    "charlie9": (None, None, 3, "2026-03-01T11:00:00+00:00"),
}


def rows():
    out = []
    for student, (accuracy, sparsity, exit_code, submitted) in STUDENTS.items():
        metrics = {} if accuracy is None else {"accuracy": accuracy, "sparsity": sparsity}
        out.append({"id": student, "file": f"/subs/{student}_pruning.pt", "status": "ok", "exit_code": exit_code,
                    "passed": exit_code == 0, "metrics": metrics, "seconds": 1.5, "artifact": "pruning",
                    "message": f"message-for-{student}: hint-for-{student}", "timestamp": submitted,
                    "timestamp_source": "file mtime"})
    return out


def write_all(folder, roster=None):
    scores = student_scores(rows(), "pruning", POLICY, deadline=DUE,
                            roster=roster or {student: f"Name of {student}" for student in STUDENTS} | {"delta0": "Dee"})
    return scores, write_feedback(scores, rows(), "pruning", folder, policy=POLICY)


def test_each_file_holds_only_its_own_students_data(tmp_path):
    _, paths = write_all(tmp_path)
    texts = {path.stem: path.read_text() for path in paths}
    assert sorted(texts) == ["alpha7", "bravo8", "charlie9", "delta0"]
    everyone = [*STUDENTS, "delta0"]
    for student, text in texts.items():
        for other in everyone:
            if other != student:
                assert other not in text, f"{student}'s feedback mentions {other}"
                assert f"Name of {other}" not in text and "Dee" not in text
        assert f"{student}_pruning.pt" in text or student == "delta0"


def test_feedback_shows_verdict_metrics_hint_goal_points_and_late_penalty(tmp_path):
    _, paths = write_all(tmp_path)
    text = (tmp_path / "alpha7.md").read_text()
    assert text.splitlines()[0] == MARKER
    assert "**Score: 90 of 100 points**" in text
    assert "verdict: passed (exit code 0)" in text and "accuracy 91.5" in text and "sparsity 61" in text
    assert "hint-for-alpha7" in text
    assert "| pruning.pt: test accuracy ≥ 90 % | 50 / 50 | passed |" in text
    assert "1 started day(s) late" in text and "Late penalty: -10 points (of 100 earned)" in text
    bravo = (tmp_path / "bravo8.md").read_text()
    assert "**Score: 50 of 100 points**" in bravo and "| 0 / 50 | failed | accuracy: 72.25 %" in bravo


def test_not_graded_and_missing_students_are_told_so(tmp_path):
    write_all(tmp_path)
    not_graded = (tmp_path / "charlie9.md").read_text()
    assert "Score: not yet given" in not_graded and "| – / 50 | not graded yet |" in not_graded
    assert "| 0 / 50 |" not in not_graded  # no zero shown for a file that got no verdict
    missing = (tmp_path / "delta0.md").read_text()
    assert "**Score: 0 of 100 points**" in missing and "No file of yours was received" in missing


@pytest.mark.parametrize("student", ["../evil", "a/b", "a\\b", "..", "."])
def test_an_id_that_could_leave_the_folder_is_refused_before_writing(tmp_path, student):
    scores = student_scores([], "pruning", POLICY, roster=["ok1", student])
    with pytest.raises(ValueError, match="cannot name a feedback file"):
        write_feedback(scores, [], "pruning", tmp_path / "out", policy=POLICY)
    assert list((tmp_path / "out").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_ids_that_would_share_a_file_are_refused(tmp_path):
    scores = student_scores([], "pruning", POLICY, roster=["a b", "a_b"])
    with pytest.raises(ValueError, match="share the feedback file a_b.md"):
        write_feedback(scores, [], "pruning", tmp_path, policy=POLICY)


def test_labkit_files_are_replaced_and_other_files_are_left_alone(tmp_path):
    write_all(tmp_path)
    (tmp_path / "notes.txt").write_text("TA notes")
    (tmp_path / "alpha7.md").write_text(MARKER + "\nold feedback\n")
    write_all(tmp_path)
    assert "old feedback" not in (tmp_path / "alpha7.md").read_text()
    (tmp_path / "bravo8.md").write_text("a TA's own notes on bravo8\n")
    before = (tmp_path / "alpha7.md").read_text()
    with pytest.raises(FileExistsError, match="bravo8.md"):
        write_all(tmp_path)
    assert (tmp_path / "bravo8.md").read_text() == "a TA's own notes on bravo8\n"
    assert (tmp_path / "alpha7.md").read_text() == before  # refused before writing anything
    assert (tmp_path / "notes.txt").read_text() == "TA notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha7.md", "bravo8.md", "charlie9.md", "delta0.md",
                                                          "notes.txt"]


def test_a_link_in_the_folder_is_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text(MARKER + "\nnot yours\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "alpha7.md").symlink_to(outside)
    with pytest.raises(FileExistsError):
        write_all(tmp_path / "out")
    assert outside.read_text() == MARKER + "\nnot yours\n"
