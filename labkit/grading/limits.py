"""Limits before anything is materialised: inspect a torch.save file without loading it, cap memory.

A submitted ``.pt``/``.pth`` file is a zip archive (``torch.save`` since torch 1.6): a small pickle
``<prefix>/data.pkl`` that describes every tensor (dtype, shape, stride, which storage record), and
one stored (uncompressed) record ``<prefix>/data/<key>`` per storage. Everything a memory bomb needs
is a *declaration* in those two places, so it can be refused by reading declarations only:

1. the zip: starts with a local header (else: legacy pickle, "legacy pickle with a zip appended",
   not a torch file), ends with its directory (else: truncated), every record's local header agrees
   with the directory, lies inside the file, is stored uncompressed, and its CRC-32 matches (checked
   streaming, in 1 MiB chunks, before torch reads a byte);
2. ``data.pkl`` is read by a *symbolic* unpickler: every global it names must be on a short list of
   tensor-rebuilding functions and storage types, and those are replaced by stand-ins that only
   record what was declared. No function of the file ever runs; ``bytearray(2**31 - 1)`` or
   ``torch.Tensor(2**31 - 1)`` is a refused global, not an allocation;
3. each declared tensor: its dtype is allowed, its storage record has exactly the bytes the storage
   declares, and its shape fits in its storage (a stride-0 tensor that repeats 12 bytes as 500 M
   elements is refused); element counts and the total are bounded.

Only then :func:`safe_load_state_dict` runs ``torch.load(weights_only=True, map_location="cpu",
mmap=True)`` - by default first in a child process under a memory cap - and checks the tensors again
(dtype, storage size, NaN/Inf, complex included).

Every refusal is a :class:`FileRefused` (a ``SubmissionError``: exit 2) whose message tells the
student what is wrong and what to do, without exception class names. A problem of the grading
machine (cannot start the child, out of memory while loading a file that passed the checks) is an
:class:`EnvironmentProblem` (exit 3).

Example:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/m.pth"
    >>> torch.save(torch.nn.Linear(2, 1).state_dict(), path)
    >>> report = inspect_torch_file(path)
    >>> [(t.name, t.dtype, t.shape) for t in report.tensors]
    [('weight', 'float32', (1, 2)), ('bias', 'float32', (1,))]
    >>> sorted(safe_load_state_dict(path, isolate=False))
    ['bias', 'weight']
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit.grading.contract import EXIT_ENVIRONMENT, EXIT_INVALID  # the checks contract: one source
from labkit.io import SubmissionError

GiB, MiB = 2**30, 2**20
# torch 2.14 (+cu130) alone reserves ~3.1 GiB of address space at import (VmPeak measured 3,216,064 kB
# on the course CPU machine), so an address-space cap must leave room for that before any tensor.
DEFAULT_MEMORY_BYTES = 6 * GiB

FLOAT_DTYPES = ("float32", "float16", "bfloat16")
QUANTIZED_DTYPES = FLOAT_DTYPES + ("qint8", "quint8", "qint32")  # torch.ao eager / FX INT8 state dicts
COURSE_INT8_DTYPES = FLOAT_DTYPES + ("int8", "int32")           # the course's hand-quantized ResNet-20
# Integer bookkeeping every state dict may carry (BatchNorm's counter, quantized zero points).
INTEGER_KEY_SUFFIXES = ("num_batches_tracked", "zero_point")

_STORAGE_DTYPES = {  # storage class in data.pkl -> (dtype name, bytes per element)
    "FloatStorage": ("float32", 4), "HalfStorage": ("float16", 2), "BFloat16Storage": ("bfloat16", 2),
    "DoubleStorage": ("float64", 8), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1), "ComplexFloatStorage": ("complex64", 8),
    "ComplexDoubleStorage": ("complex128", 16), "QInt8Storage": ("qint8", 1),
    "QUInt8Storage": ("quint8", 1), "QInt32Storage": ("qint32", 4),
}
_DTYPE_GLOBALS = {"float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long",
                  "int32", "int", "int16", "int8", "uint8", "bool", "qint8", "quint8", "qint32",
                  "complex64", "complex128"}
_QSCHEMES = {"per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
             "per_channel_affine_float_qparams"}
_DTYPE_ADVICE = {
    "float64": "save float32 weights: model.float() before model.state_dict()",
    "int64": "integer weights are not a trained float model; save model.state_dict() of the float model",
    "int8": "int8 weights are for the hand-quantized task; this check grades float weights",
    "bool": "boolean tensors are not weights (a pruning mask?); call prune.remove and save the weights",
    "complex64": "complex tensors are not weights; save the real float32 model",
    "complex128": "complex tensors are not weights; save the real float32 model",
}


class FileRefused(SubmissionError):
    """The submitted file is refused (exit 2); the message is for the student."""
    exit_code = EXIT_INVALID


class EnvironmentProblem(RuntimeError):
    """The grading machine, not the student, has a problem (exit 3); the message is for the TA."""
    exit_code = EXIT_ENVIRONMENT


@dataclass
class Limits:
    """Bounds for one submitted file. Defaults fit every lab model (UNet-64 is ~124 MB, 31 M weights).

    ``allowed_dtypes``: dtype names a check grades (``FLOAT_DTYPES``, ``QUANTIZED_DTYPES``,
    ``COURSE_INT8_DTYPES``); int32/int64 tensors are also accepted under keys ending in
    ``integer_key_suffixes`` (BatchNorm's ``num_batches_tracked``, quantized ``zero_point``).
    """
    max_file_bytes: int = 512 * MiB
    max_pickle_bytes: int = 2 * MiB        # data.pkl of a 150-key INT8 ResNet-20 is ~20 KB
    max_records: int = 20_000
    max_tensor_elements: int = 2**28       # 1 GiB of float32 in one tensor
    max_total_tensor_bytes: int = 1 * GiB  # all tensors together, as the model will hold them
    max_key_chars: int = 300
    allowed_dtypes: tuple = FLOAT_DTYPES
    integer_key_suffixes: tuple = INTEGER_KEY_SUFFIXES


@dataclass
class TensorSpec:
    """What data.pkl declares about one tensor (nothing is read from its storage)."""
    name: str
    dtype: str
    shape: tuple
    stride: tuple
    offset: int
    storage_key: str
    storage_elements: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class ArchiveReport:
    """The result of :func:`inspect_torch_file`: the declared tensors and the zip's records."""
    path: str
    file_bytes: int
    records: dict = field(default_factory=dict)   # record name -> bytes
    tensors: list = field(default_factory=list)   # TensorSpec, in file order
    notes: list = field(default_factory=list)

    def summary(self) -> dict:
        return {"file_bytes": self.file_bytes, "records": len(self.records), "tensors": len(self.tensors),
                "declared_tensor_bytes": sum(t.numel * _element_size(t.dtype) for t in self.tensors)}


def _element_size(dtype: str) -> int:
    return next(size for name, size in _STORAGE_DTYPES.values() if name == dtype)


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n < GiB else f"{n / GiB:.1f} GiB"


# ----------------------------------------------------------------------------------------- the zip
_LOCAL, _CENTRAL, _EOCD = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
_RESAVE = "save it again with torch.save(model.state_dict(), path) and re-upload the file"


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
        raise FileRefused(f"{path.name}: holds a {type(state).__name__.strip('_')}, not a state_dict; save "
                          "torch.save(model.state_dict(), path)")
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
            raise FileRefused(f"{path.name}: the entry '{key}' is not a tensor; a state_dict maps parameter "
                              "names to tensors")
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


def check_declared_tensor(spec: TensorSpec, limits: Limits, *, record_bytes: int | None, file_name: str) -> None:
    """Refuse one declared tensor whose dtype, size or storage is wrong (see the module docstring)."""
    where = f"{file_name}: '{spec.name}'"
    # FX numbers its observers' qparams: "conv1_input_zero_point_0" counts as "zero_point"
    bare_name = spec.name.rstrip("0123456789").rstrip("_") if spec.name[-1:].isdigit() else spec.name
    integer_ok = spec.dtype in ("int64", "int32") and bare_name.endswith(limits.integer_key_suffixes)
    if spec.dtype not in limits.allowed_dtypes and not integer_ok:
        advice = _DTYPE_ADVICE.get(spec.dtype, "save the model's float32 state_dict")
        allowed = "/".join(limits.allowed_dtypes)
        raise FileRefused(f"{where} has dtype {spec.dtype}; this check grades {allowed} weights — {advice}")
    size = _element_size(spec.dtype)
    if record_bytes is not None and record_bytes != spec.storage_elements * size:
        raise FileRefused(f"{where} declares {spec.storage_elements} stored values ({spec.storage_elements * size} "
                          f"bytes) but its record holds {record_bytes} bytes; the file is corrupt or was "
                          f"edited — {_RESAVE}")
    if len(spec.shape) != len(spec.stride) or len(spec.shape) > 8 or min((*spec.shape, *spec.stride, spec.offset),
                                                                          default=0) < 0:
        raise FileRefused(f"{where} has an impossible shape {spec.shape[:8]} / stride {spec.stride[:8]}; "
                          f"{_RESAVE}")
    numel = spec.numel
    extent = 0 if numel == 0 else spec.offset + 1 + sum((n - 1) * s for n, s in zip(spec.shape, spec.stride))
    if extent > spec.storage_elements or numel > spec.storage_elements - min(spec.offset, spec.storage_elements):
        repeats = " (stride 0: one stored value repeated)" if 0 in spec.stride else ""
        raise FileRefused(f"{where} declares shape {spec.shape} ({numel:,} values) but stores only "
                          f"{spec.storage_elements:,} values{repeats}; a real state_dict stores every weight — "
                          f"save model.state_dict() (call .contiguous() on expanded tensors)")
    if numel > limits.max_tensor_elements:
        raise FileRefused(f"{where} declares {numel:,} elements (shape {spec.shape}), over the limit of "
                          f"{limits.max_tensor_elements:,}; no lab model has a tensor that large")


def inspect_torch_file(path, limits: Limits | None = None) -> ArchiveReport:
    """Check a torch.save file by its declarations only; returns what it declares or raises FileRefused.

    Reads the zip directory and headers, streams each record once for its CRC-32, and reads
    ``data.pkl`` (at most ``limits.max_pickle_bytes``) with a symbolic unpickler. Memory stays
    ~constant (a few MiB) whatever the file declares.
    """
    limits = limits or Limits()
    path = Path(path)
    if not path.exists():
        raise FileRefused(f"{path.name}: file not found; check the path (expected a file saved with "
                          "torch.save(model.state_dict(), path))")
    if path.is_dir() or not path.is_file():
        raise FileRefused(f"{path.name}: is a folder or a special file, not a file; pass the .pt/.pth file itself")
    size = path.stat().st_size
    if size == 0:
        raise FileRefused(f"{path.name}: the file is empty (0 bytes); the save was interrupted — {_RESAVE}")
    if size > limits.max_file_bytes:
        raise FileRefused(f"{path.name}: the file is {_mib(size)}, over the {_mib(limits.max_file_bytes)} limit; "
                          "save only model.state_dict(), not optimizer or history")
    records, prefix = _read_records(path, limits)
    report = ArchiveReport(str(path), size, {name: n for name, (_, n) in records.items()})
    pickle_name = f"{prefix}/data.pkl"
    if pickle_name not in records:
        raise FileRefused(f"{path.name}: a zip archive without data.pkl — not written by torch.save; {_RESAVE}")
    start, pickle_bytes = records[pickle_name]
    if pickle_bytes > limits.max_pickle_bytes:
        raise FileRefused(f"{path.name}: its description of the tensors (data.pkl) is {_mib(pickle_bytes)}, "
                          f"over the {_mib(limits.max_pickle_bytes)} limit; save only model.state_dict()")
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(pickle_bytes)
    try:
        state = _SymbolicUnpickler(io.BytesIO(data)).load()
    except _Refused as error:
        raise FileRefused(f"{path.name}: holds pickled Python objects, not just tensors ({error}); refused "
                          "for safety. Save model.state_dict(), not the model: "
                          "torch.save(model.state_dict(), path)") from None
    except Exception:  # noqa: BLE001 - any malformed pickle is the file's fault
        raise FileRefused(f"{path.name}: its description of the tensors (data.pkl) is damaged; {_RESAVE}") from None
    report.tensors = _walk_state(state, path, limits)
    total = 0
    for spec in report.tensors:
        record = f"{prefix}/data/{spec.storage_key}"
        if record not in records:
            raise FileRefused(f"{path.name}: '{spec.name}' points at a missing record; the file is truncated or "
                              f"corrupt — {_RESAVE}")
        check_declared_tensor(spec, limits, record_bytes=report.records[record], file_name=path.name)
        total += spec.numel * _element_size(spec.dtype)
    if total > limits.max_total_tensor_bytes:
        raise FileRefused(f"{path.name}: its tensors add up to {_mib(total)}, over the "
                          f"{_mib(limits.max_total_tensor_bytes)} limit; no lab model is that large")
    if any(name.startswith(f"{prefix}/data/") for name in records) and b"cuda" in data:
        report.notes.append("tensors were saved from CUDA; they are loaded onto the CPU")
    return report


# ---------------------------------------------------------------------------------------- memory
def parse_memory(text) -> int:
    """``"4G"``, ``"512M"``, ``"6GiB"`` or a number of bytes -> bytes.

    Example:
        >>> parse_memory("4G"), parse_memory("512M"), parse_memory(1024)
        (4294967296, 536870912, 1024)
    """
    if isinstance(text, int):
        return text
    value = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 2**10, "M": MiB, "G": GiB}.get(value[-1:], 1)
    try:
        return int(float(value.rstrip("KMG")) * scale)
    except ValueError:
        raise ValueError(f"memory must look like 4G, 512M or a number of bytes, got {text!r}") from None


def apply_memory_cap(max_bytes: int = DEFAULT_MEMORY_BYTES) -> int:
    """Cap this process's address space (RLIMIT_AS) at ``max_bytes``; returns the cap in force.

    Call it first thing in a check's main (or per batch job): an allocation past the cap fails
    with MemoryError / "not enough memory" instead of taking the machine down. The cap is lowered,
    never raised above an existing hard limit. Counts address space, not RSS: torch reserves
    ~3.1 GiB at import, so caps below ~3.5 GiB stop torch itself.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


# ----------------------------------------------------------------------------------- safe loading
def check_loaded_state_dict(state, limits: Limits, *, file_name: str = "file") -> dict:
    """Check tensors torch.load returned: dtype, storage vs shape, element counts, NaN/Inf (complex too)."""
    import torch
    from labkit.io import _is_allowed_value
    if not isinstance(state, dict):
        raise FileRefused(f"{file_name}: holds a {type(state).__name__}, not a state_dict; save "
                          "torch.save(model.state_dict(), path)")
    clean = {}
    for key, value in state.items():
        if not isinstance(key, str) or not _is_allowed_value(value):
            raise FileRefused(f"{file_name}: the entry '{str(key)[:60]}' is not a tensor; a state_dict maps "
                              "parameter names to tensors")
        for index, tensor in enumerate(t for t in _flatten(value) if isinstance(t, torch.Tensor)):
            name = key if isinstance(value, torch.Tensor) else f"{key}[{index}]"
            dtype = str(tensor.dtype).removeprefix("torch.")
            storage = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
            spec = TensorSpec(name, dtype, tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset(),
                              "", storage)
            if dtype not in dict(_STORAGE_DTYPES.values()):
                raise FileRefused(f"{file_name}: '{name}' has dtype {dtype}; save the model's float32 state_dict")
            check_declared_tensor(spec, limits, record_bytes=None, file_name=file_name)
            values = tensor.dequantize() if tensor.is_quantized else tensor
            if (values.is_floating_point() or values.is_complex()) and not torch.isfinite(values).all():
                raise FileRefused(f"{file_name}: '{name}' contains NaN or Inf values; training diverged — "
                                  "retrain (lower learning rate) and save a finite model")
        clean[key] = value
    return clean


def _load_in_this_process(path: Path, limits: Limits) -> dict:
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except MemoryError:
        raise EnvironmentProblem(f"out of memory loading {path.name}, a file that passed every size check; "
                                 "raise --memory") from None
    except pickle.UnpicklingError:
        raise FileRefused(f"{path.name}: holds pickled Python objects, not just tensors; refused for safety. "
                          "Save model.state_dict(): torch.save(model.state_dict(), path)") from None
    except Exception:  # noqa: BLE001 - the zip passed its checks, so what is left is the file's content
        raise FileRefused(f"{path.name}: torch cannot read the file; it is corrupt — {_RESAVE}") from None
    return check_loaded_state_dict(state, limits, file_name=path.name)


def safe_load_state_dict(path, limits: Limits | None = None, *, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                         isolate: bool = True, timeout_s: float = 120.0, notes: list | None = None) -> dict:
    """Inspect, then load a state_dict: ``{name: tensor}`` on the CPU, or FileRefused / EnvironmentProblem.

    With ``isolate`` (default) torch.load first runs in a child process under an address-space cap of
    ``memory_bytes`` and a ``timeout_s`` wall clock; only when the child loaded and checked it does
    this process load it (``mmap=True``: pages are read, not copied) and check it again.

    Example:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/bad.pth"
        >>> torch.save({"w": torch.zeros(3, dtype=torch.int64)}, path)
        >>> safe_load_state_dict(path, isolate=False)
        Traceback (most recent call last):
        ...
        labkit.grading.limits.FileRefused: bad.pth: 'w' has dtype int64; this check grades ...
    """
    limits = limits or Limits()
    path = Path(path)
    report = inspect_torch_file(path, limits)
    if notes is not None:
        notes.extend(report.notes)
    if isolate:
        outcome = load_in_child(path, limits, memory_bytes=memory_bytes, timeout_s=timeout_s)
        if outcome["exit_code"] == EXIT_INVALID:
            raise FileRefused(outcome["message"])
        if outcome["exit_code"] != 0:
            raise EnvironmentProblem(outcome["message"])
    return _load_in_this_process(path, limits)


def load_in_child(path, limits: Limits | None = None, *, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                  timeout_s: float = 120.0) -> dict:
    """``torch.load`` + checks of ``path`` in a child under the memory cap; returns its outcome.

    ``{"exit_code": 0 | 2 | 3, "message": str, "peak_rss_kb": int, "seconds": float}``. The file is
    not inspected here (call :func:`inspect_torch_file` first); this measures what torch.load does.
    """
    import time
    limits = limits or Limits()
    command = [sys.executable, "-s", "-m", "labkit.grading.limits", str(path), json.dumps(asdict(limits))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                 start_new_session=True, preexec_fn=lambda: apply_memory_cap(memory_bytes))
    except OSError as error:
        raise EnvironmentProblem(f"cannot start the loader process ({error})") from None
    output, peak, timed_out = read_and_reap(child, timeout_s=timeout_s, max_output=MiB)
    if timed_out:
        return {"exit_code": EXIT_ENVIRONMENT, "message": f"loading {path} took over {timeout_s:.0f} s",
                "peak_rss_kb": peak, "seconds": time.monotonic() - start}
    seconds = time.monotonic() - start
    try:
        outcome = json.loads(output.decode().strip().splitlines()[-1])
        outcome["exit_code"] = int(outcome["exit_code"])
    except (ValueError, IndexError, KeyError):
        memory_hint = " (it ran out of memory: raise --memory)" if child.returncode != 0 else ""
        outcome = {"exit_code": EXIT_ENVIRONMENT,
                   "message": f"the loader process for {Path(path).name} ended with code {child.returncode} "
                              f"without an answer{memory_hint}"}
    outcome.update(peak_rss_kb=peak, seconds=seconds)
    return outcome


def read_and_reap(child: subprocess.Popen, *, timeout_s: float, max_output: int = MiB,
                  stream=None) -> tuple[bytes, int, bool]:
    """Read ``child``'s stdout (or ``stream``) to its end, keeping at most ``max_output`` bytes, then reap it.

    After ``timeout_s`` seconds the child's whole process group is killed (SIGKILL). Returns
    ``(output, peak_rss_kb, timed_out)``; the peak is the child's own ``ru_maxrss`` (and of the
    descendants it waited for), from ``os.wait4``.
    """
    import threading
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        try:
            os.killpg(child.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    stream = stream if stream is not None else child.stdout
    chunks, kept = [], 0
    try:
        while chunk := stream.read1(65536) if hasattr(stream, "read1") else os.read(stream.fileno(), 65536):
            if kept < max_output:
                chunks.append(chunk[:max_output - kept])
                kept += len(chunks[-1])
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    try:
        os.killpg(child.pid, 9)   # anything the child left behind in its group
    except (ProcessLookupError, PermissionError):
        pass
    return b"".join(chunks), usage.ru_maxrss, timed_out.is_set()


def _child_main(argv: list[str]) -> int:
    path, limits = Path(argv[0]), Limits(**json.loads(argv[1]))
    limits.allowed_dtypes, limits.integer_key_suffixes = tuple(limits.allowed_dtypes), tuple(limits.integer_key_suffixes)
    try:
        state = _load_in_this_process(path, limits)
        answer = {"exit_code": 0, "message": f"{len(state)} entries loaded and checked"}
    except (FileRefused, EnvironmentProblem) as error:
        answer = {"exit_code": error.exit_code, "message": str(error)}
    except MemoryError:
        answer = {"exit_code": EXIT_ENVIRONMENT, "message": f"out of memory loading {path.name}; raise --memory"}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
