"""The file container of checkpoints, spill files and parameter files.

On disk::

    magic "SMCKPT01" | payload length (8 bytes, little endian) | SHA-256 (32 bytes) | payload

The payload is a ``torch.save`` of plain containers and tensors, loaded with
``weights_only=True``: loading never unpickles arbitrary objects. A store
(``streammeta.persistence.store``: a directory or object storage) publishes each
file atomically, so a crash leaves either the old or the new file, never half of
one; a damaged file fails its checksum and is refused with
:class:`~streammeta.errors.ParameterFileError`.
"""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path
from typing import Any

import torch

from streammeta.errors import ParameterFileError
from streammeta.persistence.store import LocalStore

MAGIC = b"SMCKPT01"
FORMAT = 1
_HEADER = struct.Struct("<8sQ32s")

Payload = dict[str, Any]


def pack(payload: Payload) -> bytes:
    """The container bytes of ``payload``: header (magic, length, SHA-256), payload.

    Built in one buffer, the header filled in last: a checkpoint of a million
    entities is 3 GB, and joining a header to the payload would copy all of it."""
    buffer = io.BytesIO()
    buffer.write(bytes(_HEADER.size))
    torch.save(payload, buffer)
    with buffer.getbuffer() as view, view[_HEADER.size:] as data:
        _HEADER.pack_into(view, 0, MAGIC, len(data), hashlib.sha256(data).digest())
    return buffer.getvalue()  # the buffer's own bytes, not a copy, once no view is held


def unpack(raw: bytes, where: str) -> Payload:
    """Verify and load container bytes; raise :class:`ParameterFileError` if damaged."""
    if len(raw) < _HEADER.size:
        raise ParameterFileError(f"{where}: truncated header")
    magic, length, digest = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ParameterFileError(f"{where}: not a streammeta checkpoint")
    with memoryview(raw)[_HEADER.size:] as data:
        if len(data) != length:
            raise ParameterFileError(f"{where}: truncated ({len(data)} of {length} bytes)")
        if hashlib.sha256(data).digest() != digest:
            raise ParameterFileError(f"{where}: checksum mismatch")
    stream = io.BytesIO(raw)  # shares ``raw`` (bytes) instead of copying it
    stream.seek(_HEADER.size)
    try:
        payload = torch.load(stream, weights_only=True)
    except Exception as exc:  # torch raises several types for foreign content
        raise ParameterFileError(f"{where}: unreadable payload ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ParameterFileError(f"{where}: unsupported checkpoint format")
    return payload


def write_file(path: Path, payload: Payload) -> int:
    """Atomically write ``payload`` to the local file ``path``; returns the bytes written."""
    data = pack(payload)
    LocalStore(path.parent).write_atomic(path.name, data)
    return len(data)


def read_file(path: Path) -> Payload:
    """Read and verify a local container file; raise :class:`ParameterFileError` if damaged."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParameterFileError(f"{path}: cannot read ({exc})") from None
    return unpack(raw, str(path))
