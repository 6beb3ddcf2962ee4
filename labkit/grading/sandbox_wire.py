"""The sandbox's wire protocol: one framing for both sides of :mod:`labkit.grading.sandbox`'s pipes.

A frame is a 4-byte big-endian header length, a JSON header (at most ``MAX_HEADER_BYTES``) that
carries ``nbytes``, then ``nbytes`` raw bytes (float32, C order, of shape ``header["shape"]``). No
pickle anywhere. The trusted parent (``sandbox.SandboxedModel``) and the untrusted child
(``sandbox_child``, started as ``python -m labkit.grading.sandbox_child`` inside bubblewrap with
labkit's folder bound read-only) import this module: standard library only, so the child loads it
before any student code runs and keeps its functions after it hides labkit's modules.

:func:`receive` reads exactly one frame (never a byte of the next) and raises ``EOFError`` when the
other side closed the pipe, ``TimeoutError`` when ``timeout_s`` passed first, ``ValueError`` for a
malformed frame (header too long, not JSON, a payload size out of bounds).

Example:
    >>> import os
    >>> read_fd, write_fd = os.pipe()
    >>> send(write_fd, {"op": "logits", "shape": [1, 2, 1, 1]}, b"\\x00" * 8)
    >>> receive(read_fd, max_payload=8, timeout_s=5)
    ({'op': 'logits', 'shape': [1, 2, 1, 1], 'nbytes': 8}, b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00')
    >>> os.write(write_fd, (2**20).to_bytes(4, "big")) and None   # a header of 1 MiB announced
    >>> receive(read_fd)
    Traceback (most recent call last):
    ...
    ValueError: a header of 1048576 bytes, over the 65536-byte limit
    >>> os.close(write_fd)
    >>> receive(read_fd)
    Traceback (most recent call last):
    ...
    EOFError: the other side closed the pipe
"""
from __future__ import annotations

import json
import os
import select
import struct
import time

MAX_HEADER_BYTES = 65536        # a header is a few fields; the error frame's text is cut to fit
DETAIL_CHARS = 16000            # the error frame's full text for the parent to explain (torch's key lists included)
MAX_PAYLOAD_BYTES = 1 << 31     # the most a request may carry; the parent bounds each answer to what it expects
_LENGTH = struct.Struct(">I")


def send(fd: int, header: dict, payload: bytes = b"") -> None:
    """Write one frame: ``header`` (``nbytes`` added) and ``payload``; ValueError if the header is too long."""
    data = json.dumps({**header, "nbytes": len(payload)}).encode()
    if len(data) > MAX_HEADER_BYTES:
        raise ValueError(f"a header of {len(data)} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    view = memoryview(_LENGTH.pack(len(data)) + data + payload)
    while view:
        view = view[os.write(fd, view):]


def receive(fd: int, *, max_payload: int = MAX_PAYLOAD_BYTES, timeout_s: float | None = None) -> tuple[dict, bytes]:
    """Read one frame: ``(header, payload)``; see the module docstring for what it raises."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    (length,) = _LENGTH.unpack(_read_exact(fd, _LENGTH.size, deadline))
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"a header of {length} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    header = json.loads(_read_exact(fd, length, deadline))   # not JSON, not UTF-8: a ValueError too
    nbytes = header.get("nbytes") if isinstance(header, dict) else None
    if not isinstance(nbytes, int) or not 0 <= nbytes <= max_payload:
        raise ValueError(f"a payload of {nbytes!r} bytes, expected at most {max_payload}")
    return header, _read_exact(fd, nbytes, deadline)


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
