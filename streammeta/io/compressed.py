"""Compressed CSVs, read as pandas reads them: ``data.csv.gz``, ``.bz2``, ``.xz``,
``.zst``, or a ``.zip`` of the one file, known by their magic bytes (not the name).

Before, only gzip was read, and each of the others was refused as "not UTF-8 text
(byte 10)", which sent the user looking for an encoding problem.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
from collections.abc import Callable
from pathlib import Path

from streammeta.errors import DataError


class _Refused(Exception):
    """A readable archive that holds no one CSV."""


def _unzip(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = [i.filename for i in archive.infolist()
                 if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        if len(files) != 1:
            raise _Refused(f"a zip archive of {len(files)} files "
                           f"({', '.join(map(repr, files[:5]))}), where one CSV was expected")
        return archive.read(files[0])


def _unzstd(data: bytes) -> bytes:
    import zstandard  # kafka-python's zstd codec: installed with streammeta

    parts, rest = [], data
    while rest:  # frame by frame (pzstd writes several), each one whole
        frame = zstandard.ZstdDecompressor().decompressobj()
        parts.append(frame.decompress(rest))
        if not frame.eof:
            raise EOFError("the data ends inside a frame")
        rest = frame.unused_data
    return b"".join(parts)


_CODECS: tuple[tuple[bytes, str, Callable[[bytes], bytes]], ...] = (
    (b"\x1f\x8b", "gzip", gzip.decompress), (b"BZh", "bzip2", bz2.decompress),
    (b"\xfd7zXZ\x00", "xz", lzma.decompress), (b"PK\x03\x04", "zip", _unzip),
    (b"\x28\xb5\x2f\xfd", "zstd", _unzstd))


def decompressed(path: Path, data: bytes) -> bytes:
    """``data`` (the bytes of the file at ``path``) decompressed where its magic bytes
    name a codec, else as it is; :class:`DataError` for a damaged file."""
    for magic, name, decompress in _CODECS:
        if data.startswith(magic):
            try:
                return decompress(data)
            except _Refused as exc:
                raise DataError(f"{path}: {exc}") from None
            except Exception as exc:  # each library's own error for damaged input
                raise DataError(f"{path}: not a readable {name} file ({exc})") from None
    return data
