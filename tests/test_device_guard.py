"""Issue 36: a broken GPU stops a batch as the TA's problem (exit 3, said once), never as invalid submissions."""
from labkit.grading import grade_class
from labkit.grading.batch import grade_folder, not_graded
from labkit.io import save_state_dict
from tests.cuda_faults import NO_KERNEL_IMAGE, broken_cuda_environment
from tests.helpers import CAT, constant_model


def hand_ins(folder, students=("a", "b", "c")):
    folder.mkdir()
    good = constant_model(CAT, target_sparsity=0.6).state_dict()
    for student in students:
        save_state_dict(good, folder / f"{student}_pruning.pt")
    return folder


def test_a_broken_gpu_is_found_before_any_check_and_said_once(tmp_path, monkeypatch, capsys, cat_only_data):
    for name, value in broken_cuda_environment(NO_KERNEL_IMAGE).items():
        monkeypatch.setenv(name, value)
    code = grade_class.main([str(hand_ins(tmp_path / "in")), "--task", "pruning", "--device", "cuda",
                             "--data", str(cat_only_data), "--out", str(tmp_path / "grades.csv")])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("cannot be used (not the students' fault)") == 1 and "no kernel image" in err
    assert not (tmp_path / "grades.csv").exists()  # nothing graded, nobody marked invalid


def test_the_first_device_fault_in_a_check_stops_the_scheduling(tmp_path, monkeypatch, cat_only_data):
    for name, value in broken_cuda_environment(NO_KERNEL_IMAGE).items():
        monkeypatch.setenv(name, value)  # the checks meet it; the grader itself never probed (a GPU failing later)
    rows = grade_folder(hand_ins(tmp_path / "in"), "pruning", jobs=1, timeout=120, progress=False,
                        check_arguments=["--data", str(cat_only_data), "--device", "cuda"])
    assert len(rows) == 3
    graded = [row for row in rows if row["status"] == "ok"]
    assert len(graded) == 1 and graded[0]["exit_code"] == 3 and graded[0]["device_fault"]["kind"] == "architecture"
    stopped = [row for row in rows if row["status"] == "not graded"]
    assert len(stopped) == 2 and all("not the students' fault" in row["message"] for row in stopped)
    assert all(not_graded(row) for row in rows)
    assert not any("invalid" in row["message"].lower() for row in rows)
