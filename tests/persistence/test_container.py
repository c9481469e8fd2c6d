"""The file container of checkpoints, spill and parameter files: damage is refused,
and nothing in a file is ever unpickled."""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import pytest

from streammeta.errors import ParameterFileError
from streammeta.persistence.container import FORMAT, read_file, write_file


def test_a_written_file_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "x.smck"
    size = write_file(path, {"format": FORMAT, "offset": 7, "names": ["a", "b"]})
    assert size == path.stat().st_size
    assert read_file(path) == {"format": FORMAT, "offset": 7, "names": ["a", "b"]}
    assert not list(tmp_path.glob("*.tmp"))  # renamed into place


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_files_are_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "x.smck"
    write_file(path, {"format": 1, "partitions": {}})
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[:-10], "garbage": b"x" * 100, "empty": b""}[damage])
    with pytest.raises(ParameterFileError):
        read_file(path)


class Evil:
    def __reduce__(self) -> tuple[object, ...]:
        return (print, ("pwned",))


def test_pickled_objects_are_never_unpickled(tmp_path: Path) -> None:
    data = pickle.dumps({"format": 1, "x": Evil()})
    path = tmp_path / "evil.smck"
    path.write_bytes(struct.pack("<8sQ32s", b"SMCKPT01", len(data),
                                 hashlib.sha256(data).digest()) + data)
    with pytest.raises(ParameterFileError):
        read_file(path)


def test_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.smck"
    write_file(path, {"format": FORMAT + 1})
    with pytest.raises(ParameterFileError, match="unsupported"):
        read_file(path)
