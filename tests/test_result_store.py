"""Issue 37, deliverable 5: which kept rows a re-run may reuse, and what makes it grade again."""
import pytest

from labkit.grading.grade_class import intake_folder
from labkit.download import sha256sum
from labkit.grading.result_store import ResultStore, grading_key, setup_fingerprint


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "7_pruning.pt").write_bytes(b"weights")
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "check_pruning.py").write_text("print('v1')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(b"12345")
    return tmp_path


def key(folder, **changes):
    arguments = dict(check_arguments=["--device", "cpu"], checks_dir=folder / "checks", data=folder / "data")
    setup = setup_fingerprint("pruning", **{**arguments, **changes})
    return grading_key(sha256sum(folder / "7_pruning.pt"), setup)


def test_the_key_changes_with_the_file_the_check_the_data_and_the_arguments(setup):
    before = key(setup)
    assert key(setup) == before
    assert key(setup, check_arguments=["--device", "cuda"]) != before
    (setup / "data" / "b.png").write_bytes(b"1")
    assert key(setup) != before
    after_data = key(setup)
    (setup / "checks" / "check_pruning.py").write_text("print('v2')\n")  # a fixed check, same size
    assert key(setup) != after_data
    after_check = key(setup)
    (setup / "7_pruning.pt").write_bytes(b"weightz")
    assert key(setup) != after_check


@pytest.mark.parametrize("row, reused", [({"status": "ok", "exit_code": 0}, True), ({"status": "ok", "exit_code": 2}, True),
                                         ({"status": "ok", "exit_code": 3}, False),   # the grading machine's problem
                                         ({"status": "timeout", "exit_code": 124}, False),
                                         ({"status": "crashed", "exit_code": 1}, False)])
def test_only_a_verdict_on_the_file_is_reused(tmp_path, row, reused):
    store = ResultStore(tmp_path / "store.jsonl")
    store.put("k", row)
    assert (ResultStore(tmp_path / "store.jsonl").get("k") is not None) == reused


def test_a_line_cut_short_by_a_killed_run_is_skipped(tmp_path):
    store = ResultStore(tmp_path / "store.jsonl")
    store.put("a", {"status": "ok", "exit_code": 0})
    with open(tmp_path / "store.jsonl", "a") as handle:
        handle.write('{"key": "b", "row": {"stat')
    reopened = ResultStore(tmp_path / "store.jsonl")
    assert reopened.get("a") is not None and reopened.get("b") is None


def test_the_intake_folder_never_replaces_a_folder_labkit_did_not_make(tmp_path):
    (tmp_path / "grades.files").mkdir()
    (tmp_path / "grades.files" / "notes.txt").write_text("the TA's")
    with pytest.raises(ValueError, match="not made by labkit grade"):
        intake_folder(tmp_path / "grades.csv")
    assert (tmp_path / "grades.files" / "notes.txt").read_text() == "the TA's"
    (tmp_path / "grades.files" / "notes.txt").unlink()
    (tmp_path / "grades.files").rmdir()
    first = intake_folder(tmp_path / "grades.csv")
    first.mkdir()
    (first / "old.pt").write_bytes(b"")
    assert not (intake_folder(tmp_path / "grades.csv") / "old.pt").exists()  # its own folder: renewed
