"""The grading machine's limits: the memory cap every check sets on itself, and what a check grades.

- :func:`apply_memory_cap` / :func:`parse_memory`: the ``--memory`` address-space cap
  (``DEFAULT_MEMORY_BYTES``) that ``contract.run_check`` applies first, that the batch grader and
  the sandbox (``sandbox.SandboxConfig``) size their children with;
- the dtype sets a check grades (``FLOAT_DTYPES``, ``QUANTIZED_DTYPES`` for torch.ao INT8,
  ``COURSE_INT8_DTYPES`` for the hand-quantized ResNet-20) and :class:`FileRefused` (exit 2),
  re-exported from :mod:`labkit.torch_file`: the core module that inspects every file a check grades
  (by its declarations, once) and loads it with ``torch.load(weights_only=True)``. The check's path
  is ``contract.read_submission``; the similarity report loads through
  :mod:`labkit.grading.isolated_load` (a memory-capped child first);
- :class:`EnvironmentProblem` (exit 3), re-exported from :mod:`labkit.grading.exits`.

Example:
    >>> parse_memory("6G") == DEFAULT_MEMORY_BYTES
    True
"""
from __future__ import annotations

import resource

from labkit.grading.exits import EnvironmentProblem
from labkit.torch_file import COURSE_INT8_DTYPES, FLOAT_DTYPES, QUANTIZED_DTYPES, FileRefused, GiB, MiB

__all__ = ["DEFAULT_MEMORY_BYTES", "GiB", "MiB", "parse_memory", "apply_memory_cap", "FLOAT_DTYPES",
           "QUANTIZED_DTYPES", "COURSE_INT8_DTYPES", "FileRefused", "EnvironmentProblem"]

# torch 2.14 (+cu130) alone reserves ~3.1 GiB of address space at import (VmPeak measured 3,216,064 kB
# on the course CPU machine), so an address-space cap must leave room for that before any tensor.
DEFAULT_MEMORY_BYTES = 6 * GiB


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
