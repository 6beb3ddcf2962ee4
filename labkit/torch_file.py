"""A torch.save file judged before it is loaded: the one gatekeeper every state_dict file passes.

Core of labkit (no ``labkit.grading`` import): :func:`labkit.io.load_state_dict_file` (students'
notebooks, ``resnet20.load_pretrained``), the checks (``labkit.grading.contract.read_submission``) and the
similarity report (``labkit.grading.isolated_load``) all inspect a file here exactly once with
:func:`inspect_torch_file`, then load it with :func:`load_inspected`, which runs
``torch.load(weights_only=True, map_location="cpu")`` without inspecting it again.

A ``.pt``/``.pth`` file is a zip archive (``torch.save`` since torch 1.6): a small pickle
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

After ``torch.load`` the tensors are checked once more by what only loading shows (NaN/Inf, complex
and quantized included; dtype and storage against the declarations). Every refusal is a
:class:`FileRefused` (a :class:`SubmissionError`: a check exits 2) whose message tells the student
what is wrong and what to do, without exception class names; each cause has one message.

Steps 1 and 2 (the zip and ``data.pkl``) are read in :mod:`labkit.torch_archive`; the vocabulary
(the dtype sets, :class:`Limits`, :class:`TensorSpec`, the exceptions, the shared messages) is
defined in :mod:`labkit.torch_limits`. This module holds step 3 and the loading, and is where every
one of those names is imported from.

Example:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/m.pth"
    >>> torch.save(torch.nn.Linear(2, 1).state_dict(), path)
    >>> report = inspect_torch_file(path)
    >>> [(t.name, t.dtype, t.shape) for t in report.tensors]
    [('weight', 'float32', (1, 2)), ('bias', 'float32', (1,))]
    >>> sorted(load_inspected(report))
    ['bias', 'weight']
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from labkit.torch_archive import _declared_tensors, _flatten, _read_records
from labkit.torch_limits import (_RESAVE, _STORAGE_DTYPES, ALL_DTYPES, COURSE_INT8_DTYPES, FLOAT_DTYPES,
                                 INTEGER_KEY_SUFFIXES, QUANTIZED_DTYPES, FileRefused, GiB, Limits, MiB,
                                 SubmissionError, TensorSpec, _element_size, _mib, _not_a_state_dict, _not_a_tensor,
                                 _pickled_objects)

__all__ = ["GiB", "MiB", "FLOAT_DTYPES", "QUANTIZED_DTYPES", "COURSE_INT8_DTYPES", "ALL_DTYPES",
           "INTEGER_KEY_SUFFIXES", "SubmissionError", "FileRefused", "Limits", "TensorSpec", "ArchiveReport",
           "inspect_torch_file", "load_inspected", "check_loaded_state_dict", "check_declared_tensor"]

_DTYPE_ADVICE = {
    "float64": "save float32 weights: model.float() before model.state_dict()",
    "float16": "save float32 weights: model.float() before model.state_dict()",   # io's allow_half=False
    "bfloat16": "save float32 weights: model.float() before model.state_dict()",
    "int64": "integer weights are not a trained float model; save model.state_dict() of the float model",
    "int8": "int8 weights are for the hand-quantized task; this check grades float weights",
    "bool": "boolean tensors are not weights (a pruning mask?); call prune.remove and save the weights",
    "complex64": "complex tensors are not weights; save the real float32 model",
    "complex128": "complex tensors are not weights; save the real float32 model",
}


@dataclass
class ArchiveReport:
    """The result of :func:`inspect_torch_file`: the declared tensors and the zip's records."""
    path: str
    file_bytes: int
    records: dict = field(default_factory=dict)   # record name -> bytes
    tensors: list = field(default_factory=list)   # TensorSpec, in file order
    notes: list = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)  # what the file was inspected against; load_inspected checks the same

    def summary(self) -> dict:
        return {"file_bytes": self.file_bytes, "records": len(self.records), "tensors": len(self.tensors),
                "declared_tensor_bytes": sum(t.numel * _element_size(t.dtype) for t in self.tensors)}



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
    report = ArchiveReport(str(path), size, {name: n for name, (_, n) in records.items()}, limits=limits)
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
    report.tensors = _declared_tensors(data, path, limits)
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
        report.notes.append("tensors were saved from CUDA; they are loaded onto the CPU (save {k: v.cpu() ...} so "
                            "the course's check, which has no map_location, also reads it on a CPU machine)")
    return report


# ------------------------------------------------------------------------------- after inspection
def load_inspected(report: ArchiveReport, *, mmap: bool = False) -> dict:
    """The state_dict of a file :func:`inspect_torch_file` passed: ``{name: tensor}`` on the CPU.

    ``torch.load(weights_only=True, map_location="cpu")`` (``mmap``: pages are read, not copied),
    then :func:`check_loaded_state_dict` against ``report.limits``. The file is not inspected again.
    A ``MemoryError`` propagates: running out of memory is the machine's limit, not the file's fault.

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/nan.pth"
        >>> torch.save({"w": torch.tensor([float("nan")])}, path)
        >>> load_inspected(inspect_torch_file(path))
        Traceback (most recent call last):
        ...
        labkit.torch_file.FileRefused: nan.pth: 'w' contains NaN or Inf values; training diverged — ...
    """
    name = Path(report.path).name
    try:
        state = torch.load(report.path, map_location="cpu", weights_only=True, mmap=mmap)
    except MemoryError:
        raise
    except pickle.UnpicklingError:   # the declarations passed, so torch's own loader sees more than they said
        raise _pickled_objects(name, "torch's weights-only loader refused them") from None
    except Exception:  # noqa: BLE001 - the zip passed its checks, so what is left is the file's content
        raise FileRefused(f"{name}: torch cannot read the file; it is corrupt — {_RESAVE}") from None
    return check_loaded_state_dict(state, report.limits, file_name=name)


def _is_allowed_value(value) -> bool:
    """Tensors, plus the extras torch.ao INT8 state dicts contain (packed-param tuples, dtypes,
    and ``None`` for the bias of a bias-free quantized conv)."""
    if value is None or isinstance(value, (torch.Tensor, torch.dtype, int, float)):
        return True
    if isinstance(value, (tuple, list)):
        return all(v is None or _is_allowed_value(v) for v in value)
    return False


def check_loaded_state_dict(state, limits: Limits, *, file_name: str = "file") -> dict:
    """Check tensors torch.load returned: dtype, storage vs shape, element counts, NaN/Inf (complex too)."""
    if not isinstance(state, dict):
        raise _not_a_state_dict(file_name, type(state).__name__)
    clean = {}
    for key, value in state.items():
        if not isinstance(key, str) or not _is_allowed_value(value):
            raise _not_a_tensor(file_name, key)
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
