from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from streammeta import config as config_mod
from streammeta.checkpoint import CheckpointStore, read_file, write_file
from streammeta.engine import Engine
from streammeta.errors import ParameterFileError

STEP = 3_600_000


def small_engine() -> Engine:
    config = config_mod.load(None, env={}).replace("model", window=12, hidden=16).replace(
        "series", season=4, horizon=6).replace("engine", max_entities=100)
    return Engine(config)


def feed(engine: Engine, steps: range, entities: int = 6) -> None:
    names = [f"e{i}" for i in range(entities)]
    parts = np.array([i % 2 for i in range(entities)])
    rng = np.random.default_rng(steps.start)
    for t in steps:
        engine.process(names, np.full(entities, t * STEP, dtype=np.int64),
                       rng.normal(10, 1, entities), parts)


def test_roundtrip_keeps_tensors_names_and_offsets(tmp_path: Path) -> None:
    engine = small_engine()
    feed(engine, range(30))
    store = CheckpointStore(tmp_path, member="a")
    slots = engine.arena.slots_in([1])
    store.save({"partitions": {1: {"offset": 42, "rows": engine.arena.export(slots)}}})
    found = store.latest_for(1)
    assert found is not None and store.latest_for(0) is None
    rows = found[1]["partitions"][1]["rows"]
    assert rows["names"] == ["e1", "e3", "e5"] and found[1]["partitions"][1]["offset"] == 42
    restored = small_engine()
    new_slots = restored.arena.restore(rows)
    for field in ("ring", "count", "phi", "pending", "last_ts"):
        torch.testing.assert_close(getattr(restored.arena, field)[new_slots],
                                   getattr(engine.arena, field)[slots], equal_nan=True)


def test_restored_state_continues_exactly_like_the_original(tmp_path: Path) -> None:
    original = small_engine()
    feed(original, range(20))
    store = CheckpointStore(tmp_path, member="a")
    store.save({"partitions": {p: {"offset": 0, "rows": original.arena.export(
        original.arena.slots_in([p]))} for p in (0, 1)}})
    copy = small_engine()
    for p in (0, 1):
        found = store.latest_for(p)
        assert found is not None
        copy.arena.restore(found[1]["partitions"][p]["rows"])
    feed(original, range(20, 40))
    feed(copy, range(20, 40))
    for name in (f"e{i}" for i in range(6)):
        a, b = original.arena.index[name], copy.arena.index[name]
        torch.testing.assert_close(original.arena.ring[a], copy.arena.ring[b])
        torch.testing.assert_close(original.arena.phi[a], copy.arena.phi[b])


def test_damaged_newest_file_falls_back_to_the_previous_good_one(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, member="a", keep=5)
    first = store.save({"partitions": {0: {"offset": 1}}})
    second = store.save({"partitions": {0: {"offset": 2}}})
    assert second.name > first.name
    data = bytearray(second.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the payload
    second.write_bytes(bytes(data))
    found = store.latest_for(0)
    assert found is not None and found[1]["partitions"][0]["offset"] == 1
    assert store.corrupt_seen == 1


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
    import hashlib
    import struct

    data = pickle.dumps({"format": 1, "x": Evil()})
    path = tmp_path / "evil.smck"
    path.write_bytes(struct.pack("<8sQ32s", b"SMCKPT01", len(data),
                                 hashlib.sha256(data).digest()) + data)
    with pytest.raises(ParameterFileError):
        read_file(path)


def test_each_member_keeps_its_last_n_files(tmp_path: Path) -> None:
    a = CheckpointStore(tmp_path, member="a", keep=2)
    b = CheckpointStore(tmp_path, member="b", keep=2)
    for _ in range(4):
        a.save({"partitions": {}})
        b.save({"partitions": {}})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 4
    assert sum("-a.smck" in n for n in names) == 2 and sum("-b.smck" in n for n in names) == 2


def test_removed_slots_are_reused(tmp_path: Path) -> None:
    engine = small_engine()
    feed(engine, range(3))
    engine.arena.remove(engine.arena.slots_in([0]))
    assert sorted(engine.arena.index) == ["e1", "e3", "e5"]
    engine.process(["new"], np.array([0]), np.array([1.0]))
    assert engine.arena.index["new"] in (0, 2, 4)
    assert len(engine.arena) == 4
