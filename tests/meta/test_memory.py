"""The external memory: keys, retrieval, eviction, persistence, and its use by the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import STEP

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.meta.memory import (
    MemoryStore,
    decode_entry,
    encode_entry,
    key_dim,
    store_for,
    task_key,
)
from streammeta.online.arena import GUARD_UNTIL
from streammeta.online.engine import Engine

M = 4  # season in these tests


def unit(*values: float) -> torch.Tensor:
    v = torch.tensor(values, dtype=torch.float32)
    return v / v.norm()


def store(capacity: int = 8, k: int = 2, min_similarity: float = 0.5) -> MemoryStore:
    return MemoryStore(capacity, key_dim=3, value_dim=2, k=k, temperature=0.1,
                       min_similarity=min_similarity)


def test_key_ignores_level_scale_and_phase_but_not_shape() -> None:
    t = torch.arange(96, dtype=torch.float32)
    daily = torch.sin(2 * math.pi * t / 24)
    keys = task_key(torch.stack([
        daily, 100 + 7 * daily, torch.sin(2 * math.pi * (t + 5) / 24),
        torch.sin(2 * math.pi * t / 6),  # another seasonal shape
    ]), season=24)
    assert keys.shape == (4, key_dim(24))
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(4))
    assert float(keys[0] @ keys[1]) > 0.999  # level and scale
    assert float(keys[0] @ keys[2]) > 0.99  # phase
    assert float(keys[0] @ keys[3]) < 0.7


def test_retrieval_blends_the_nearest_entries_by_similarity() -> None:
    memory = store()
    memory.insert(["a", "b", "c"], torch.stack([unit(1, 0, 0), unit(1, 0.2, 0), unit(0, 0, 1)]),
                  torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]))
    found = memory.retrieve(unit(1, 0.05, 0)[None], phi0=torch.zeros(2))
    sims = torch.stack([unit(1, 0, 0), unit(1, 0.2, 0)]) @ unit(1, 0.05, 0)
    weights = torch.softmax(sims / 0.1, dim=0)
    assert bool(found.found[0])
    torch.testing.assert_close(found.phi[0], weights[0] * torch.tensor([1.0, 0.0])
                               + weights[1] * torch.tensor([0.0, 1.0]))
    assert float(found.similarity[0]) == pytest.approx(float(sims.mean()))
    assert memory.retrievals == 1


def test_nothing_similar_enough_keeps_phi0() -> None:
    memory = store(min_similarity=0.9)
    memory.insert(["a"], unit(1, 0, 0)[None], torch.tensor([[5.0, 5.0]]))
    found = memory.retrieve(unit(0, 1, 0)[None], phi0=torch.tensor([0.5, -0.5]))
    assert not bool(found.found[0])
    torch.testing.assert_close(found.phi[0], torch.tensor([0.5, -0.5]))
    assert memory.retrieve(torch.zeros(0, 3), torch.zeros(2)).phi.shape == (0, 2)


def test_full_memory_evicts_the_least_recently_used_and_one_entry_per_entity() -> None:
    memory = store(capacity=3, k=1)
    keys = torch.eye(3)
    memory.insert(["a", "b", "c"], keys, torch.arange(6.0).reshape(3, 2))
    memory.retrieve(keys[:1], torch.zeros(2))  # "a" is used: "b" is now the oldest
    memory.insert(["d"], unit(1, 1, 0)[None], torch.ones(1, 2))
    assert set(memory.row_of) == {"a", "c", "d"} and memory.evicted == 1
    memory.insert(["c"], unit(0, 0, 1)[None], torch.full((1, 2), 7.0))  # replaces c
    assert len(memory) == 3
    torch.testing.assert_close(memory.retrieve(keys[2:], torch.zeros(2)).phi[0],
                               torch.full((2,), 7.0))


def test_export_restore_round_trip_and_shape_check() -> None:
    memory = store()
    memory.insert(["a", "b"], torch.stack([unit(1, 0, 0), unit(0, 1, 0)]),
                  torch.tensor([[1.0, 2.0], [3.0, 4.0]]), version=5)
    again = store()
    again.restore(memory.export())
    assert set(again.row_of) == {"a", "b"}
    torch.testing.assert_close(again.retrieve(unit(0, 1, 0)[None], torch.zeros(2)).phi[0],
                               torch.tensor([3.0, 4.0]))
    other = MemoryStore(4, key_dim=5, value_dim=2)
    with pytest.raises(ValueError, match="do not fit"):
        other.restore(memory.export())
    small = store(capacity=1)
    small.restore(memory.export())  # keeps the most recently used
    assert len(small) == 1


def test_entry_record_round_trip_and_refusals() -> None:
    key, value = unit(1, 2, 3), torch.tensor([0.5, -1.5])
    data = encode_entry(key, value, version=9)
    k, v, version = decode_entry(data, 3, 2)
    torch.testing.assert_close(k, key)
    torch.testing.assert_close(v, value)
    assert version == 9
    for bad, why in ((data[:5], "truncated"), (b"XXXX" + data[4:], "magic"),
                     (data + b"\0", "length")):
        with pytest.raises(ValueError, match=why):
            decode_entry(bad, 3, 2)
    with pytest.raises(ValueError, match="sizes"):
        decode_entry(data, 4, 2)
    with pytest.raises(ValueError, match="non-finite"):
        decode_entry(encode_entry(key, torch.tensor([math.nan, 0.0]), 1), 3, 2)


# -- in the engine ------------------------------------------------------------------------
@pytest.fixture
def cfg() -> Config:
    config = config_mod.load(None, env={})
    return config.replace("model", window=12, hidden=16, context_dim=4).replace(
        "series", season=M, horizon=6, max_gap_fill=3).replace(
        "memory", enabled=True, mature_after=6, k=1, min_similarity=0.9).replace(
        "drift", enabled=False)


def series(level: float, scale: float, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return level + scale * (np.sin(2 * math.pi * t / M) + 0.05 * rng.normal(size=length))


def feed(engine: Engine, entity: str, values: np.ndarray) -> None:
    ts = np.arange(len(values), dtype=np.int64) * STEP
    engine.process([entity] * len(values), ts, values)


def with_memory(cfg: Config) -> tuple[Engine, MemoryStore]:
    memory = store_for(cfg)
    assert memory is not None
    return Engine(cfg, memory=memory), memory


def mature_at(cfg: Config) -> int:
    """Values after which an entity's φ is stored (the ring holds its first window)."""
    return cfg.model.window + cfg.memory.mature_after


def test_a_similar_new_entity_starts_from_the_stored_phi(cfg: Config) -> None:
    engine, memory = with_memory(cfg)
    feed(engine, "a", series(10, 1, mature_at(cfg), seed=1))
    assert list(memory.row_of) == ["a"]
    stored = engine.arena.phi[engine.arena.index["a"]].clone()
    assert not torch.equal(stored, engine.arena.phi0)  # adapted before it was stored
    feed(engine, "b", series(500, 30, cfg.model.window, seed=2))  # same shape, other units
    torch.testing.assert_close(engine.arena.phi[engine.arena.index["b"]], stored)

    bare = Engine(cfg.replace("memory", enabled=False))
    feed(bare, "a", series(10, 1, mature_at(cfg), seed=1))
    feed(bare, "b", series(500, 30, cfg.model.window, seed=2))
    torch.testing.assert_close(bare.arena.phi[bare.arena.index["b"]], bare.arena.phi0)


def test_drift_reinitialises_the_entity(cfg: Config) -> None:
    engine = Engine(cfg.replace("drift", enabled=True, threshold=5.0, min_instances=10,
                                delta=0.05).replace("memory", enabled=False))
    calm = series(10, 1, 120, seed=3)
    slot_values = np.concatenate([calm, 10 + 8 * np.random.default_rng(4).normal(size=60)])
    ts = np.arange(len(slot_values), dtype=np.int64) * STEP
    before = engine.process(["a"] * 120, ts[:120], slot_values[:120])
    after = engine.process(["a"] * 60, ts[120:], slot_values[120:])
    assert before.drifts == 0
    assert after.drifts >= 1
    # The guard (meta.guard) starts over with φ: guard_for values from the drift on.
    until = float(engine.arena.guard[engine.arena.index["a"], GUARD_UNTIL])
    assert 120 + cfg.meta.guard_for < until <= 180 + cfg.meta.guard_for


def test_memory_survives_a_restart_through_the_checkpoint(cfg: Config, tmp_path) -> None:
    from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

    engine, memory = with_memory(cfg)
    for i in range(3):
        feed(engine, f"e{i}", series(10 + i, 1 + i, mature_at(cfg), seed=i))
    assert engine.memory_entries == 3
    Checkpointer(CheckpointStore(tmp_path, "a"), engine, cfg.checkpoint).save()
    again, restored = with_memory(cfg)
    Checkpointer(CheckpointStore(tmp_path, "b"), again, cfg.checkpoint).restore_model()
    assert set(restored.row_of) == {"e0", "e1", "e2"}
    probe = task_key(torch.from_numpy(series(0, 1, cfg.model.window, seed=9)).float()[None], M)
    torch.testing.assert_close(restored.retrieve(probe, again.arena.phi0).phi,
                               memory.retrieve(probe, engine.arena.phi0).phi)
