"""What a torch file may declare, and how it is refused: the vocabulary of :mod:`labkit.torch_file`.

The floor beneath the gate: :mod:`labkit.torch_archive` (reading the zip and ``data.pkl``) and
:mod:`labkit.torch_file` (inspecting and loading) both build on it, and it imports no labkit module.
It holds the dtype sets a check grades, :class:`Limits` (the bounds one file is checked against),
:class:`TensorSpec` (what ``data.pkl`` declares about one tensor), the refusal
(:class:`SubmissionError`, :class:`FileRefused`) and the messages shared by the declarations and the
loaded tensors (one message per cause). Import them from :mod:`labkit.torch_file`, their public home:
the exceptions carry its name, in tracebacks and pickles alike.

Example:
    >>> Limits().max_file_bytes == 512 * MiB, _mib(Limits().max_total_tensor_bytes)
    (True, '1.0 GiB')
    >>> raise _not_a_state_dict("m.pth", "list")
    Traceback (most recent call last):
    ...
    labkit.torch_file.FileRefused: m.pth: holds a list, not a state_dict; save torch.save(model.state_dict(), path)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

GiB, MiB = 2**30, 2**20

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
ALL_DTYPES = tuple(name for name, _ in _STORAGE_DTYPES.values())  # io's default: a student's own file, any dtype


def _element_size(dtype: str) -> int:
    return next(size for name, size in _STORAGE_DTYPES.values() if name == dtype)


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n < GiB else f"{n / GiB:.1f} GiB"


# Defined here, below the modules that raise them; labkit.torch_file is where they are imported from.
class SubmissionError(ValueError):
    """The file cannot be a valid submission (a check exits with code 2); the message is for the student."""
    __module__ = "labkit.torch_file"


class FileRefused(SubmissionError):
    """The file is refused by ``inspect_torch_file`` or ``load_inspected``; the message is for the student."""
    __module__ = "labkit.torch_file"


@dataclass
class Limits:
    """Bounds for one file. Defaults fit every lab model (UNet-64 is ~124 MB, 31 M weights).

    ``allowed_dtypes``: dtype names a check grades (``FLOAT_DTYPES``, ``QUANTIZED_DTYPES``,
    ``COURSE_INT8_DTYPES``; ``ALL_DTYPES`` for a student's own load); int32/int64 tensors are also accepted under keys ending in
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


_RESAVE = "save it again with torch.save(model.state_dict(), path) and re-upload the file"


# One message per cause, whether the declarations or the loaded tensors show it.
def _not_a_state_dict(file_name: str, what: str) -> FileRefused:
    return FileRefused(f"{file_name}: holds a {what}, not a state_dict; save torch.save(model.state_dict(), path)")


def _not_a_tensor(file_name: str, key) -> FileRefused:
    return FileRefused(f"{file_name}: the entry '{str(key)[:60]}' is not a tensor; a state_dict maps parameter "
                       "names to tensors")


def _pickled_objects(file_name: str, why: str) -> FileRefused:
    return FileRefused(f"{file_name}: holds pickled Python objects, not just tensors ({why}); refused for safety. "
                       "Save model.state_dict(), not the model: torch.save(model.state_dict(), path)")

