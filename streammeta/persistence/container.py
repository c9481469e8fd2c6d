"""The file container of checkpoints, spill files and parameter files.

On disk::

    magic "SMCKPT01" | payload length (8 bytes, little endian) | SHA-256 (32 bytes) | payload

The payload is a ``torch.save`` of plain containers and tensors, loaded with
``weights_only=True``: loading never unpickles arbitrary objects. A file is
written to a temporary name, fsynced and renamed, then the directory is fsynced,
so a crash leaves either the old or the new file, never half of one; a damaged
file fails its checksum and is refused with
:class:`~streammeta.errors.ParameterFileError`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path
from typing import Any

import torch

from streammeta.errors import ParameterFileError

MAGIC = b"SMCKPT01"
FORMAT = 1
_HEADER = struct.Struct("<8sQ32s")

Payload = dict[str, Any]


def write_file(path: Path, payload: Payload) -> int:
    """Atomically write ``payload`` to ``path``; returns the bytes written."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(_HEADER.pack(MAGIC, len(data), hashlib.sha256(data).digest()))
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return _HEADER.size + len(data)


def read_file(path: Path) -> Payload:
    """Read and verify a container file; raise :class:`ParameterFileError` if it is damaged."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParameterFileError(f"{path}: cannot read ({exc})") from None
    if len(raw) < _HEADER.size:
        raise ParameterFileError(f"{path}: truncated header")
    magic, length, digest = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ParameterFileError(f"{path}: not a streammeta checkpoint")
    data = raw[_HEADER.size:]
    if len(data) != length:
        raise ParameterFileError(f"{path}: truncated ({len(data)} of {length} bytes)")
    if hashlib.sha256(data).digest() != digest:
        raise ParameterFileError(f"{path}: checksum mismatch")
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch raises several types for foreign content
        raise ParameterFileError(f"{path}: unreadable payload ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ParameterFileError(f"{path}: unsupported checkpoint format")
    return payload
