"""A torch.save archive read by its declarations, without running it: the zip records and ``data.pkl``.

Used only by :mod:`labkit.torch_file` (the gate; its docstring lists every check), whose
:func:`~labkit.torch_file.inspect_torch_file` calls it in two steps; torch is never imported here:

1. :func:`_read_records` verifies the zip without inflating anything: a local header first, the
   directory last, every record's header agrees with the directory, lies inside the file, is
   stored uncompressed, and its CRC-32 matches (streamed in 1 MiB chunks);
2. :func:`_declared_tensors` reads ``data.pkl`` with a *symbolic* unpickler: every global it names
   must be on a short list of tensor-rebuilding functions and storage types, which are replaced by
   stand-ins that only record what was declared (a :class:`~labkit.torch_limits.TensorSpec` per
   tensor). No function of the file ever runs.

Each refusal is a ``FileRefused`` whose message tells the student what to do.

Example:
    >>> import pickle, tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "m.pth"
    >>> torch.save({"w": torch.zeros(2, 3)}, path)
    >>> records, prefix = _read_records(path, Limits())
    >>> start, size = records[f"{prefix}/data.pkl"]
    >>> [(t.name, t.dtype, t.shape) for t in _declared_tensors(path.read_bytes()[start:start + size], path, Limits())]
    [('w', 'float32', (2, 3))]
    >>> _declared_tensors(pickle.dumps(print), path, Limits())  # print is named, never called
    Traceback (most recent call last):
    ...
    labkit.torch_file.FileRefused: m.pth: holds pickled Python objects, not just tensors (it calls builtins.print); ...
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

from labkit.torch_limits import (_RESAVE, _STORAGE_DTYPES, FileRefused, Limits, MiB, TensorSpec, _mib,
                                 _not_a_state_dict, _not_a_tensor, _pickled_objects)

# ----------------------------------------------------------------------------------------- the zip
_LOCAL, _CENTRAL, _EOCD = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"


def _classify_non_zip(path: Path, head: bytes, has_directory: bool) -> FileRefused:
    if head[:1] == b"\x80" or head[:2] == b"\x1f\x8b" or head[:1] in (b"c", b"("):
        appended = " with a zip archive appended behind it" if has_directory else ""
        return FileRefused(f"{path.name}: a legacy (pre-1.6) torch.save file or a raw pickle{appended}; "
                           f"legacy files are refused — {_RESAVE} (torch >= 1.6 writes the zip format)")
    if head[:4] == _LOCAL:
        return FileRefused(f"{path.name}: the file is truncated (it stops before the end of its zip "
                           f"archive, {path.stat().st_size} bytes kept); the upload or save was cut off — "
                           f"{_RESAVE}")
    if has_directory:
        return FileRefused(f"{path.name}: other data before a zip archive; not a file written by "
                           f"torch.save — {_RESAVE}")
    return FileRefused(f"{path.name}: not a torch.save file (it is neither a zip archive nor a pickle); "
                       f"{_RESAVE}")


def _read_records(path: Path, limits: Limits) -> tuple[dict, str]:
    """Verify the zip and return ``({name: (data_offset, size)}, prefix)`` without inflating anything."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(4)
        has_directory = zipfile.is_zipfile(handle)   # reads the directory only
        if head != _LOCAL or not has_directory:
            raise _classify_non_zip(path, head, has_directory)
        try:
            archive = zipfile.ZipFile(handle)
            entries = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, struct.error) as error:
            raise FileRefused(f"{path.name}: the zip archive's directory is damaged ({error}); the file is "
                              f"truncated or corrupt — {_RESAVE}") from None
        if len(entries) > limits.max_records:
            raise FileRefused(f"{path.name}: the archive has {len(entries)} records, over the limit of "
                              f"{limits.max_records}; save only model.state_dict()")
        declared = sum(e.file_size for e in entries)
        if declared > limits.max_file_bytes:
            raise FileRefused(f"{path.name}: the archive declares {_mib(declared)} of contents, over the "
                              f"{_mib(limits.max_file_bytes)} limit; refused before unpacking anything")
        records, end_of_data, prefixes = {}, 0, set()
        directory_start = min((e.header_offset for e in entries), default=0)
        if directory_start != 0:
            raise _classify_non_zip(path, b"", True)
        for entry in sorted(entries, key=lambda e: e.header_offset):
            name = entry.filename
            where = f"{path.name}: record {name[:80]!r}"
            if name in records or name.startswith("/") or ".." in name.split("/") or "/" not in name:
                raise FileRefused(f"{where}: not a record name torch.save writes; {_RESAVE}")
            prefixes.add(name.split("/", 1)[0])
            if entry.flag_bits & 0x1:
                raise FileRefused(f"{where} is encrypted; {_RESAVE}")
            if entry.compress_type != zipfile.ZIP_STORED or entry.compress_size != entry.file_size:
                raise FileRefused(f"{where} is compressed; torch.save stores records uncompressed — do not "
                                  f"re-zip the file, {_RESAVE}")
            if entry.header_offset < end_of_data:
                raise FileRefused(f"{where} overlaps another record; the archive is corrupt — {_RESAVE}")
            handle.seek(entry.header_offset)
            local = handle.read(30)
            if len(local) < 30 or local[:4] != _LOCAL:
                raise FileRefused(f"{where}: its header is missing; the file is truncated or corrupt — {_RESAVE}")
            _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = struct.unpack("<4sHHHHHIIIHH", local)
            local_name = handle.read(name_len)
            if local_name.decode("utf-8", "replace") != name or method != zipfile.ZIP_STORED:
                raise FileRefused(f"{where}: its header disagrees with the archive's directory; the file is "
                                  f"corrupt or was edited — {_RESAVE}")
            lied = [what for what, value, expected in (("CRC", crc, entry.CRC), ("size", usize, entry.file_size),
                                                       ("size", csize, entry.compress_size))
                    if value not in (expected, 0, 0xFFFFFFFF) or (value == 0 and not flags & 0x8 and expected)]
            if lied:
                raise FileRefused(f"{where}: its header declares another {lied[0]} than the archive's "
                                  f"directory; the file is corrupt or was edited — {_RESAVE}")
            start = entry.header_offset + 30 + name_len + extra_len
            end = start + entry.file_size
            if end > size:
                raise FileRefused(f"{where} declares {entry.file_size} bytes but the file ends "
                                  f"{end - size} bytes too early: the file is truncated — {_RESAVE}")
            crc_read, handle_pos = 0, start
            handle.seek(start)
            while handle_pos < end:   # CRC-32 in 1 MiB chunks: constant memory, before torch reads it
                chunk = handle.read(min(MiB, end - handle_pos))
                if not chunk:
                    raise FileRefused(f"{where}: the file is truncated — {_RESAVE}")
                crc_read = zlib.crc32(chunk, crc_read)
                handle_pos += len(chunk)
            if crc_read != entry.CRC:
                raise FileRefused(f"{where}: its contents do not match their checksum (CRC-32); the file "
                                  f"is corrupt — {_RESAVE}")
            records[name] = (start, entry.file_size)
            end_of_data = end
        if len(prefixes) != 1:
            raise FileRefused(f"{path.name}: records under several top folders ({sorted(prefixes)[:3]}); not "
                              f"written by one torch.save — {_RESAVE}")
    return records, prefixes.pop()


# ---------------------------------------------------------------------------------------- data.pkl
_DTYPE_GLOBALS = {"float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long",
                  "int32", "int", "int16", "int8", "uint8", "bool", "qint8", "quint8", "qint32",
                  "complex64", "complex128"}
_QSCHEMES = {"per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
             "per_channel_affine_float_qparams"}


class _Storage:
    def __init__(self, dtype: str, key: str, elements: int):
        self.dtype, self.key, self.elements = dtype, key, elements


class _Global:
    """A name from data.pkl that stands for a constant (a dtype, a qscheme)."""
    def __init__(self, text: str):
        self.text = text


class _Refused(Exception):
    pass


def _rebuild_tensor(storage, offset, shape, stride, *rest, quantizer=None):
    if not isinstance(storage, _Storage) or not all(isinstance(v, int) for v in (offset, *shape, *stride)):
        raise _Refused("a tensor record that torch.save does not write")
    return TensorSpec("", storage.dtype, tuple(shape), tuple(stride), offset, storage.key, storage.elements)


def _rebuild_qtensor(storage, offset, shape, stride, quantizer_params, *rest):
    return _rebuild_tensor(storage, offset, shape, stride)


def _rebuild_parameter(data, *rest):
    return data


def _codecs_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding != "latin1" or len(text) > MiB:
        raise _Refused("a bytes record that torch.save does not write")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_qtensor"): _rebuild_qtensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _codecs_encode,
}


class _SymbolicUnpickler(pickle.Unpickler):
    """Unpickles data.pkl with stand-ins: records declarations, runs nothing from the file."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and (name in _STORAGE_DTYPES or name in _DTYPE_GLOBALS or name in _QSCHEMES):
            return _Global(name)
        raise _Refused(f"it calls {module}.{name}"[:120])

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _Global) or pid[1].text not in _STORAGE_DTYPES
                or not isinstance(pid[2], str) or not isinstance(pid[4], int) or pid[4] < 0):
            raise _Refused("a storage record that torch.save does not write")
        return _Storage(_STORAGE_DTYPES[pid[1].text][0], pid[2], pid[4])


def _walk_state(state, path: Path, limits: Limits) -> list[TensorSpec]:
    """The declared tensors of a flat state_dict, or a refusal saying what the file holds instead."""
    if isinstance(state, (TensorSpec, _Storage)) or not isinstance(state, dict):
        raise _not_a_state_dict(path.name, type(state).__name__.strip('_'))
    if {"model", "optimizer"} & set(state) or "state_dict" in state:
        inner = "model" if "model" in state else "state_dict"
        raise FileRefused(f"{path.name}: looks like a training checkpoint (keys "
                          f"{[str(k)[:30] for k in list(state)[:6]]}); save only the weights: "
                          f"torch.save(checkpoint['{inner}'], path)")
    tensors = []

    def allowed_extra(value, depth=0):
        if value is None or isinstance(value, (int, float, _Global, TensorSpec)):
            return True
        return depth < 3 and isinstance(value, (tuple, list)) and all(allowed_extra(v, depth + 1) for v in value)

    for key, value in state.items():
        if not isinstance(key, str):
            raise FileRefused(f"{path.name}: a key that is not a name ({type(key).__name__}); a state_dict maps "
                              "parameter names to tensors")
        if len(key) > limits.max_key_chars:
            raise FileRefused(f"{path.name}: a key of {len(key)} characters ('{key[:40]}...'), over the "
                              f"limit of {limits.max_key_chars}; save model.state_dict()")
        if not allowed_extra(value):
            raise _not_a_tensor(path.name, key)
        found = [value] if isinstance(value, TensorSpec) else [v for v in _flatten(value) if isinstance(v, TensorSpec)]
        for index, spec in enumerate(found):
            spec.name = key if len(found) == 1 else f"{key}[{index}]"
            tensors.append(spec)
    return tensors


def _flatten(value):
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def _declared_tensors(data: bytes, path: Path, limits: Limits) -> list[TensorSpec]:
    """The tensors ``data.pkl`` (``data``) declares, read symbolically; a refusal for anything else."""
    try:
        state = _SymbolicUnpickler(io.BytesIO(data)).load()
    except _Refused as error:
        raise _pickled_objects(path.name, str(error)) from None
    except Exception:  # noqa: BLE001 - any malformed pickle is the file's fault
        raise FileRefused(f"{path.name}: its description of the tensors (data.pkl) is damaged; {_RESAVE}") from None
    return _walk_state(state, path, limits)
