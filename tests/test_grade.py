"""python -m labkit.grading.batch: one row per submission with the right exit code, whatever the file does."""
import json

import torch

from labkit.grading.batch import EXIT_TIMEOUT, TASKS, grade_folder, student_id, write_results
from labkit.grading.grade_class import main
from labkit.io import save_state_dict
from labkit.models.resnet20 import resnet20
from tests.helpers import CreatesMarkerWhenUnpickled, hanging_checks_dir


def test_student_ids_come_from_the_course_file_names(tmp_path):
    assert student_id(tmp_path / "123_pruning.pt", TASKS["pruning"]) == "123"
    assert student_id(tmp_path / "a_b_model_task2.pth", TASKS["efficient"]) == "a_b"
    assert student_id(tmp_path / "s42" / "unet.pth", TASKS["segmentation"]) == "s42"
    assert student_id(tmp_path / "s42" / "resnet34_unet.pth", TASKS["segmentation"]) == "s42"


def test_a_folder_of_good_bad_hostile_and_hanging_files_gets_one_row_each(trained_unet, tmp_path):
    folder = tmp_path / "submissions"
    for student in ("good", "random", "wrongarch", "evil", "truncated", "huge", "hang"):
        (folder / student).mkdir(parents=True)
    (folder / "good" / "unet.pth").write_bytes(trained_unet["path"].read_bytes())
    torch.manual_seed(0)
    from labkit.models.unet import UNet
    save_state_dict(UNet(base_channels=4, depth=2), folder / "random" / "unet.pth")
    save_state_dict(resnet20(), folder / "wrongarch" / "unet.pth")
    marker = tmp_path / "marker"
    torch.save({"w": CreatesMarkerWhenUnpickled(marker)}, folder / "evil" / "unet.pth")
    data = trained_unet["path"].read_bytes()
    (folder / "truncated" / "unet.pth").write_bytes(data[: len(data) // 3])
    with open(folder / "huge" / "unet.pth", "wb") as handle:
        handle.truncate(600 * 2**20)  # sparse: 600 MiB by its size, nothing on disk
    (folder / "hang" / "unet.pth").write_bytes(data)

    # A check takes a few seconds here; 20 s bounds the hang without waiting a minute for it.
    rows = grade_folder(folder, "segmentation", jobs=3, timeout=20,
                        check_arguments=["--data", str(trained_unet["data"]), "--image-size", "64",
                                         "--device", "cpu"],
                        checks_dir=hanging_checks_dir(tmp_path), progress=False)
    codes = {row["id"]: row["exit_code"] for row in rows}
    assert [row["id"] for row in rows] == sorted(codes)
    assert codes == {"evil": 2, "good": 0, "hang": EXIT_TIMEOUT, "huge": 2, "random": 1,
                     "truncated": 2, "wrongarch": 2}
    assert not marker.exists()
    by_id = {row["id"]: row for row in rows}
    assert by_id["good"]["metrics"]["dice"] > 0.8 and by_id["good"]["passed"]
    assert "limit" in by_id["huge"]["message"] and by_id["hang"]["status"] == "timeout"

    json_path = write_results(rows, tmp_path / "grades.csv")
    assert len(json.loads(json_path.read_text())) == 7
    header = (tmp_path / "grades.csv").read_text().splitlines()[0]
    assert header.startswith("id,file,status,exit_code,passed") and "metric_dice" in header


def test_cli_refuses_a_missing_folder(tmp_path, capsys):
    assert main([str(tmp_path / "none"), "--task", "pruning"]) == 2
    assert "neither a folder nor a .zip" in capsys.readouterr().err
