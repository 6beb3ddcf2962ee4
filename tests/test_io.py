import zipfile

import pytest
import torch
from torch.nn.utils import prune

from labkit.io import SubmissionError, load_into, load_state_dict_file, save_state_dict
from tests.helpers import CreatesMarkerWhenUnpickled


@pytest.fixture
def linear_file(tmp_path):
    return save_state_dict(torch.nn.Linear(3, 2), tmp_path / "linear.pth")


def test_round_trip_gives_cpu_tensors_that_load_strictly(linear_file):
    state = load_state_dict_file(linear_file)
    assert all(value.device.type == "cpu" for value in state.values())
    load_into(torch.nn.Linear(3, 2), state)


def test_missing_empty_and_non_zip_files_get_specific_messages(tmp_path):
    with pytest.raises(SubmissionError, match="not found"):
        load_state_dict_file(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(SubmissionError, match="empty"):
        load_state_dict_file(tmp_path / "empty.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(SubmissionError, match="not a torch.save file"):
        load_state_dict_file(tmp_path / "text.pth")


def test_truncated_file_is_reported_as_truncated(linear_file, tmp_path):
    data = linear_file.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SubmissionError, match="truncated|corrupt|torch.save"):
        load_state_dict_file(truncated)


def test_hostile_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weight": CreatesMarkerWhenUnpickled(marker)}, tmp_path / "evil.pth")
    with pytest.raises(SubmissionError, match="pickled Python objects"):
        load_state_dict_file(tmp_path / "evil.pth")
    assert not marker.exists()


def test_whole_pickled_model_asks_for_a_state_dict(tmp_path):
    torch.save(torch.nn.Linear(3, 2), tmp_path / "model.pth")
    with pytest.raises(SubmissionError, match=r"model.state_dict\(\)"):
        load_state_dict_file(tmp_path / "model.pth")


def test_training_checkpoint_points_at_the_weights_inside(tmp_path):
    torch.save({"model": torch.nn.Linear(3, 2).state_dict(), "optimizer": {}}, tmp_path / "ckpt.pth")
    with pytest.raises(SubmissionError, match=r"checkpoint\['model'\]"):
        load_state_dict_file(tmp_path / "ckpt.pth")


def test_oversized_archive_is_refused_before_loading(linear_file):
    with pytest.raises(SubmissionError, match="limit"):
        load_state_dict_file(linear_file, max_bytes=100)


def test_zip_bomb_that_unpacks_beyond_the_limit_is_refused(tmp_path):
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * (8 * 2**20))  # 8 MiB of zeros, tiny on disk
    assert bomb.stat().st_size < 100_000
    with pytest.raises(SubmissionError, match="declares 8.0 MiB of contents, over the 1.0 MiB limit"):
        load_state_dict_file(bomb, max_bytes=2**20)


def test_nan_weights_are_refused(tmp_path):
    state = torch.nn.Linear(3, 2).state_dict()
    state["weight"][0, 0] = float("nan")
    with pytest.raises(SubmissionError, match="NaN"):
        load_state_dict_file(save_state_dict(state, tmp_path / "nan.pth"))


def test_half_precision_is_converted_with_a_note_or_refused(tmp_path):
    path = save_state_dict(torch.nn.Linear(3, 2).half().state_dict(), tmp_path / "half.pth")
    notes = []
    state = load_state_dict_file(path, notes=notes)
    assert state["weight"].dtype == torch.float32 and "converted to float32" in notes[0]
    with pytest.raises(SubmissionError, match="float32"):
        load_state_dict_file(path, allow_half=False)


def test_pruning_reparametrisation_keys_ask_for_prune_remove():
    model = torch.nn.Linear(3, 2)
    prune.l1_unstructured(model, "weight", amount=0.5)
    with pytest.raises(SubmissionError, match="prune.remove"):
        load_into(torch.nn.Linear(3, 2), model.state_dict())


def test_missing_unexpected_and_wrong_shapes_are_listed():
    with pytest.raises(SubmissionError, match="missing keys.*bias.*unexpected keys.*extra"):
        load_into(torch.nn.Linear(3, 2), {"weight": torch.zeros(2, 3), "extra": torch.zeros(1)})
    with pytest.raises(SubmissionError, match=r"weight: got \(4, 3\), expected \(2, 3\)"):
        load_into(torch.nn.Linear(3, 2), torch.nn.Linear(3, 4).state_dict())


def test_a_notebook_load_and_a_check_say_the_same_for_each_cause(tmp_path):
    """One gatekeeper (labkit.torch_file): a student's own load and the check refuse with one message."""
    from labkit.grading.contract import read_submission
    from labkit.torch_file import ALL_DTYPES
    nan = torch.nn.Linear(3, 2).state_dict()
    nan["weight"][0, 0] = float("nan")
    files = {"ckpt.pth": {"model": torch.nn.Linear(3, 2).state_dict(), "optimizer": {}},
             "model.pth": torch.nn.Linear(3, 2), "nan.pth": nan, "list.pth": [torch.zeros(1)]}
    for name, content in files.items():
        torch.save(content, tmp_path / name)
    (tmp_path / "text.pth").write_text("hello")
    for name in [*files, "text.pth", "missing.pth"]:
        with pytest.raises(SubmissionError) as notebook:
            load_state_dict_file(tmp_path / name)
        with pytest.raises(SubmissionError) as check:
            read_submission(tmp_path / name, allowed_dtypes=ALL_DTYPES)
        assert str(notebook.value) == str(check.value) and str(notebook.value).startswith(f"{name}: ")
