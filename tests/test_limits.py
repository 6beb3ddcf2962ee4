"""Limits before materialising: crafted torch files are refused by their declarations, in seconds,
under the cap, each with its plain-language message (see tests/hostile/README.md)."""
from __future__ import annotations

import time

import pytest
import torch

from labkit.grading.isolated_load import load_in_child, safe_load_state_dict
from labkit.grading.limits import parse_memory
from labkit.torch_file import (COURSE_INT8_DTYPES, QUANTIZED_DTYPES, FileRefused, Limits, check_loaded_state_dict,
                               inspect_torch_file)
from labkit.models.unet import UNet
from tests.hostile import bad_files

CAP = 4 * 2**30


@pytest.fixture(scope="module")
def model():
    return UNet(base_channels=8, depth=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("bad")
    state = model.state_dict()
    good = folder / "good.pth"
    torch.save(state, good)
    with torch.device("meta"):
        unet64 = UNet(base_channels=64).state_dict()
    return {"good": good, "state": state, "folder": folder, "unet64": unet64}


def refused(path, limits=None) -> str:
    started = time.monotonic()
    with pytest.raises(FileRefused) as info:
        inspect_torch_file(path, limits)
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert "Error" not in message and "Traceback" not in message   # no exception class names for students
    return message


def test_a_good_state_dict_passes_and_loads(files):
    report = inspect_torch_file(files["good"])
    assert len(report.tensors) == len(files["state"])
    loaded = safe_load_state_dict(files["good"], isolate=False)
    assert all(torch.equal(loaded[k], v) for k, v in files["state"].items())


def test_tensor_call_bomb_is_a_refused_global(files):
    assert "calls torch.Tensor" in refused(bad_files.tensor_call_bomb(files["folder"]))


def test_bytearray_bomb_is_a_refused_global(files):
    assert "bytearray" in refused(bad_files.bytearray_bomb(files["folder"]))


def test_bare_pickle_bomb_is_refused_as_legacy(files):
    assert "legacy" in refused(bad_files.tensor_call_bomb_raw(files["folder"]))


def test_stride0_extra_key_is_refused(files):
    message = refused(bad_files.stride0_extra_key(files["folder"], files["state"]))
    assert "'extra'" in message and "stride 0" in message


def test_stride0_unet64_of_a_few_kilobytes_is_refused(files):
    path = bad_files.stride0_model(files["folder"], files["unet64"])
    assert path.stat().st_size < 64_000
    assert "stores only 1 values (stride 0" in refused(path)


def test_lying_data_pkl_header_is_refused_before_inflating(files):
    assert "declares 2.6 GiB" in refused(bad_files.lying_pickle_header(files["folder"], files["good"]))


def test_lying_header_within_the_size_limit_is_truncated_or_mismatched(files):
    path = bad_files.lying_pickle_header(files["folder"], files["good"], declared=300 * 2**20)
    message = refused(path)
    assert "truncated" in message or "disagrees" in message


def test_truncated_upload_says_truncated(files):
    assert "truncated" in refused(bad_files.truncated(files["folder"], files["good"]))


def test_legacy_file_is_refused(files):
    assert "legacy" in refused(bad_files.legacy(files["folder"], files["state"]))


def test_legacy_pickle_with_a_zip_appended_is_refused(files):
    message = refused(bad_files.legacy_with_zip_appended(files["folder"], files["state"], files["good"]))
    assert "legacy" in message and "zip archive appended" in message


def test_recompressed_archive_is_refused(files):
    assert "compressed" in refused(bad_files.recompressed(files["folder"], files["good"]))


def test_corrupt_record_fails_its_crc_before_loading(files):
    data = bytearray(files["good"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = files["folder"] / "flipped.pth"
    path.write_bytes(bytes(data))
    assert "checksum" in refused(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, torch.complex64, torch.float64])
def test_non_float_weights_are_refused_naming_the_dtype(files, dtype):
    message = refused(bad_files.with_dtype(files["folder"], files["state"], dtype))
    assert f"has dtype {str(dtype).removeprefix('torch.')}" in message


def test_batchnorm_counter_and_int8_schema_dtypes_pass_where_allowed(files):
    torch.save({"bn.num_batches_tracked": torch.tensor(3), "w": torch.zeros(2, dtype=torch.int8)},
               files["folder"] / "int8.pth")
    inspect_torch_file(files["folder"] / "int8.pth", Limits(allowed_dtypes=COURSE_INT8_DTYPES))
    assert "has dtype int8" in refused(files["folder"] / "int8.pth")


def test_torch_ao_int8_state_dict_passes_with_quantized_dtypes(files):
    import torch.ao.nn.quantized as nnq
    path = files["folder"] / "ao_int8.pth"
    torch.save(torch.nn.Sequential(nnq.Conv2d(3, 4, 3), nnq.Linear(4, 2)).state_dict(), path)
    assert inspect_torch_file(path, Limits(allowed_dtypes=QUANTIZED_DTYPES)).tensors
    assert len(safe_load_state_dict(path, Limits(allowed_dtypes=QUANTIZED_DTYPES), isolate=False)) == 8


def test_nan_weights_are_refused_after_loading(files):
    path = bad_files.with_dtype(files["folder"], files["state"], torch.float32, nan=True)
    with pytest.raises(FileRefused, match="NaN or Inf"):
        safe_load_state_dict(path, isolate=False)


def test_complex_nan_is_caught_where_complex_is_allowed():
    with pytest.raises(FileRefused, match="NaN or Inf"):
        check_loaded_state_dict({"w": torch.tensor([complex(float("nan"), 1.0)])},
                                Limits(allowed_dtypes=("complex64",)))


def test_five_megabyte_key_and_checkpoint_and_whole_model_are_refused(files, model):
    assert "data.pkl" in refused(bad_files.long_key(files["folder"], files["state"]))
    assert "training checkpoint" in refused(bad_files.checkpoint(files["folder"], files["state"]))
    assert "pickled Python objects" in refused(bad_files.whole_model(files["folder"], model))


def test_long_key_within_the_pickle_limit_is_refused_by_length(files):
    path = bad_files.long_key(files["folder"], files["state"], chars=10_000)
    assert "a key of 10000 characters" in refused(path)


def test_loader_child_stays_under_the_cap_and_reports_its_peak(files):
    outcome = load_in_child(files["good"], memory_bytes=CAP, timeout_s=120)
    assert outcome["exit_code"] == 0, outcome
    assert 0 < outcome["peak_rss_kb"] < CAP // 1024


def test_loader_child_refuses_nan_with_exit_2(files):
    path = bad_files.with_dtype(files["folder"], files["state"], torch.float32, nan=True)
    outcome = load_in_child(path, memory_bytes=CAP, timeout_s=120)
    assert outcome["exit_code"] == 2 and "NaN or Inf" in outcome["message"]


def test_parse_memory():
    assert parse_memory("4G") == 4 * 2**30 and parse_memory("512MiB") == 512 * 2**20
    with pytest.raises(ValueError, match="4G, 512M"):
        parse_memory("lots")


def test_a_checked_file_is_inspected_once_and_loaded_once(files, model, monkeypatch):
    """read_submission / load_submission: one inspection (torch_file), one torch.load, no second check.

    ``zip`` counts every zipfile.ZipFile opened, so a separate archive check elsewhere (io's old one) counts too.
    """
    import zipfile

    import labkit.torch_file as torch_file
    from labkit.grading.contract import load_submission, read_submission
    calls = {"inspect": 0, "zip": 0, "load": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(torch_file, "_read_records", counted("inspect", torch_file._read_records))  # every inspection
    monkeypatch.setattr(zipfile.ZipFile, "__init__", counted("zip", zipfile.ZipFile.__init__))
    monkeypatch.setattr(torch, "load", counted("load", torch.load))
    assert sorted(read_submission(files["good"])) == sorted(files["state"])
    assert calls == {"inspect": 1, "zip": 1, "load": 1}
    load_submission(files["good"], UNet(base_channels=8, depth=3), wrong_architecture="wrong")
    assert calls == {"inspect": 2, "zip": 2, "load": 2}
