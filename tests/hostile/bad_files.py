"""Builders of crafted torch files (memory bombs, lying headers, wrong dtypes) for tests/test_limits.py.

Each function writes one file into ``folder`` and returns its path; README.md beside this file lists
what each must get. They are written at test time, so no hostile bytes live in the repository.
"""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import torch

INT32_MAX = 2**31 - 1


def _zip_with_pickle(path: Path, pickle_bytes: bytes) -> Path:
    """A torch-like zip archive whose data.pkl is ``pickle_bytes`` (stored, as torch writes)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return path


def tensor_call_bomb(folder: Path) -> Path:
    """~50-byte pickle calling torch.Tensor(2**31 - 1) (8 GiB of float32), inside a torch zip."""
    payload = b"\x80\x02ctorch\nTensor\nJ" + struct.pack("<i", INT32_MAX) + b"\x85R."
    return _zip_with_pickle(Path(folder) / "tensor_call.pth", payload)


def tensor_call_bomb_raw(folder: Path) -> Path:
    """The same pickle as a bare (legacy-format) file."""
    path = Path(folder) / "tensor_call_raw.pth"
    path.write_bytes(b"\x80\x02ctorch\nTensor\nJ" + struct.pack("<i", INT32_MAX) + b"\x85R.")
    return path


def bytearray_bomb(folder: Path) -> Path:
    """A pickle calling bytearray(2**31 - 1) (2 GiB), inside a torch zip."""
    payload = b"\x80\x02c__builtin__\nbytearray\nJ" + struct.pack("<i", INT32_MAX) + b"\x85R."
    return _zip_with_pickle(Path(folder) / "bytearray.pth", payload)


def stride0_extra_key(folder: Path, state: dict) -> Path:
    """A good state_dict plus one extra key: 4 stored bytes declared as 2**31 - 1 floats (stride 0)."""
    path = Path(folder) / "stride0_extra.pth"
    torch.save({**state, "extra": torch.zeros(1).expand(INT32_MAX)}, path)
    return path


def stride0_model(folder: Path, state: dict) -> Path:
    """Every tensor of ``state`` replaced by one stored zero repeated to its shape (a kilobyte file)."""
    path = Path(folder) / "stride0_model.pth"
    torch.save({k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in state.items()}, path)
    return path


def lying_pickle_header(folder: Path, good: Path, declared: int = 2_800_000_000) -> Path:
    """A good file whose data.pkl size, in the directory and its local header, says ``declared`` bytes."""
    data = bytearray(Path(good).read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data.pkl"))
    # local header: sizes at +18 (compressed), +22 (uncompressed); central record: at +20, +24.
    struct.pack_into("<II", data, info.header_offset + 18, declared, declared)
    central = bytes(data).find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46:central + 46 + name_len]) == info.filename.encode():
            struct.pack_into("<II", data, central + 20, declared, declared)
            break
        central = bytes(data).find(b"PK\x01\x02", central + 4)
    path = Path(folder) / "lying_header.pth"
    path.write_bytes(bytes(data))
    return path


def truncated(folder: Path, good: Path) -> Path:
    path = Path(folder) / "truncated.pth"
    path.write_bytes(Path(good).read_bytes()[: Path(good).stat().st_size // 2])
    return path


def legacy(folder: Path, state: dict) -> Path:
    path = Path(folder) / "legacy.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def legacy_with_zip_appended(folder: Path, state: dict, good: Path) -> Path:
    path = Path(folder) / "legacy_plus_zip.pth"
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    path.write_bytes(buffer.getvalue() + Path(good).read_bytes())
    return path


def recompressed(folder: Path, good: Path) -> Path:
    """A good file re-zipped with deflate (not what torch.save writes)."""
    path = Path(folder) / "deflated.pth"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    return path


def with_dtype(folder: Path, state: dict, dtype: torch.dtype, *, nan: bool = False) -> Path:
    name = str(dtype).removeprefix("torch.")
    path = Path(folder) / f"{name}{'_nan' if nan else ''}.pth"
    converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    if nan:
        first = next(k for k, v in converted.items() if v.is_floating_point() or v.is_complex())
        converted[first] = converted[first].clone()
        converted[first].view(-1)[0] = complex(float("nan"), 0) if dtype.is_complex else float("nan")
    torch.save(converted, path)
    return path


def long_key(folder: Path, state: dict, chars: int = 5 * 2**20) -> Path:
    path = Path(folder) / "long_key.pth"
    torch.save({**state, "k" * chars: torch.zeros(1)}, path)
    return path


def whole_model(folder: Path, model: torch.nn.Module) -> Path:
    path = Path(folder) / "whole_model.pth"
    torch.save(model, path)
    return path


def checkpoint(folder: Path, state: dict) -> Path:
    path = Path(folder) / "checkpoint.pth"
    torch.save({"model": state, "optimizer": {}, "epoch": 3}, path)
    return path
