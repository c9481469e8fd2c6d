"""The resident cap: evicted entities go to disk and come back exactly as they left."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support import STEP

from streammeta import assemble
from streammeta.config import CheckpointConfig, Config
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore
from streammeta.persistence.spill import SpillStore

EVERY_MINUTE = CheckpointConfig(every_s=60.0, every_records=1000)


@pytest.fixture
def cfg(small: Config) -> Config:
    return small.replace("model", context_dim=4).replace("memory", enabled=True, mature_after=4)


def stream(entities: int, steps: int, seed: int = 0) -> list[tuple[list[str], np.ndarray,
                                                                  np.ndarray, np.ndarray]]:
    """Batches in time order; entity i is active in steps where (t + i) % 3 != 0, so
    entities go quiet and come back."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(5, 50, entities)
    batches = []
    for t in range(steps):
        live = [i for i in range(entities) if (t // 10 + i) % 3 != 0]
        names = [f"e{i}" for i in live]
        values = level[live] + np.sin(t / 2) + rng.normal(0, 0.3, len(live))
        batches.append((names, np.full(len(live), t * STEP, dtype=np.int64), values,
                        np.array([i % 2 for i in live], dtype=np.int32)))
    return batches


def run(engine: Engine, batches: list) -> tuple[int, int]:
    evicted = paged = 0
    for names, ts, values, parts in batches:
        result = engine.process(names, ts, values, parts)
        assert not result.rejected
        evicted, paged = evicted + result.evicted, paged + result.paged_in
    return evicted, paged


def assert_same_state(engine: Engine, spill: SpillStore, reference: Engine) -> None:
    """Every entity's state, resident or on disk, equals the uncapped engine's."""
    assert set(engine.arena.index) | set(spill.index) == set(reference.arena.index)
    on_disk = list(spill.index)
    rows = spill.take(on_disk) if on_disk else None
    for name, slot in reference.arena.index.items():
        if name in engine.arena.index:
            mine = engine.arena.export(torch.tensor([engine.arena.index[name]]))
        else:
            assert rows is not None
            i = rows["names"].index(name)
            mine = {field: rows[field][i:i + 1] for field in ("count", "ring", "phi", "pending")}
        assert int(mine["count"][0]) == int(reference.arena.count[slot])
        torch.testing.assert_close(mine["ring"][0], reference.arena.ring[slot])
        torch.testing.assert_close(mine["phi"][0], reference.arena.phi[slot],
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mine["pending"][0], reference.arena.pending[slot],
                                   equal_nan=True, rtol=1e-4, atol=1e-4)


def test_evicted_entities_continue_exactly_as_if_resident(cfg: Config, tmp_path: Path) -> None:
    batches = stream(entities=30, steps=80)
    reference = assemble.engine(cfg)
    run(reference, batches)
    spill = SpillStore(tmp_path, "a")
    capped = assemble.engine(cfg.replace("engine", max_entities=22), spill)
    evicted, paged = run(capped, batches)
    assert len(capped.arena) <= 22
    assert evicted > 0 and paged > 0  # entities left and came back
    assert list((tmp_path / "spill" / "a").glob("spill-*.smck"))
    assert_same_state(capped, spill, reference)


def test_the_least_recently_observed_go_first(cfg: Config, tmp_path: Path) -> None:
    spill = SpillStore(tmp_path, "a")
    engine = assemble.engine(cfg.replace("engine", max_entities=3), spill)
    for t, name in enumerate(["old", "mid", "new"]):
        engine.process([name], np.array([t * STEP]), np.array([1.0]))
    result = engine.process(["newest"], np.array([5 * STEP]), np.array([1.0]))
    assert result.evicted == 1 and set(spill.index) == {"old"}
    assert set(engine.arena.index) == {"mid", "new", "newest"}


def test_without_a_spill_store_the_cap_dead_letters(cfg: Config) -> None:
    engine = assemble.engine(cfg.replace("engine", max_entities=1))
    engine.process(["a"], np.array([0]), np.array([1.0]))
    result = engine.process(["b"], np.array([0]), np.array([1.0]))
    assert [reason.value for _, reason, _ in result.rejected] == ["capacity"]


def test_a_checkpoint_carries_evicted_entities_to_a_new_owner(cfg: Config,
                                                              tmp_path: Path) -> None:
    batches = stream(entities=30, steps=80)
    reference = assemble.engine(cfg)
    run(reference, batches)
    capped = cfg.replace("engine", max_entities=22)
    spill_a = SpillStore(tmp_path, "a")
    first = assemble.engine(capped, spill_a)
    run(first, batches[:50])
    saver = Checkpointer(CheckpointStore(tmp_path, "a"), first, EVERY_MINUTE)
    saver.advance({0: 111, 1: 222}, 0)
    saver.save()
    assert len(spill_a)
    spill_b = SpillStore(tmp_path, "b")  # another replica takes both partitions over
    second = assemble.engine(capped, spill_b)
    loader = Checkpointer(CheckpointStore(tmp_path, "b"), second, EVERY_MINUTE)
    assert loader.restore_partitions([0, 1]) == {0: 111, 1: 222}
    assert set(spill_b.index) == set(spill_a.index)
    run(second, batches[50:])
    assert_same_state(second, spill_b, reference)


def test_partitions_restored_past_the_cap_spill_their_oldest(cfg: Config,
                                                            tmp_path: Path) -> None:
    """A survivor takes a dead replica's partitions over: together they hold more
    entities than its engine.max_entities (or the cap was lowered before a restart).
    The least recently observed go to the spill store, resident ones first, then the
    partition's own, and every entity continues exactly. Before, the restore stopped
    the replica with a ValueError (exit 1, and again at every restart); without a
    spill store it is refused naming the key (exit 2)."""
    from streammeta.errors import ParameterFileError

    batches = stream(entities=30, steps=60)
    reference = assemble.engine(cfg)
    run(reference, batches)
    first = assemble.engine(cfg)  # uncapped: holds all 30
    run(first, batches[:40])
    saver = Checkpointer(CheckpointStore(tmp_path, "a"), first, EVERY_MINUTE)
    saver.advance({0: 111, 1: 222}, 0)
    saver.save()
    spill = SpillStore(tmp_path, "b")
    survivor = assemble.engine(cfg.replace("engine", max_entities=22), spill)
    loader = Checkpointer(CheckpointStore(tmp_path, "b"), survivor, EVERY_MINUTE)
    assert loader.restore_partitions([1]) == {1: 222}  # 15 entities
    assert loader.restore_partitions([0]) == {0: 111}  # and 15 more: 8 must go
    assert len(survivor.arena) == 22 and len(spill) == 8
    run(survivor, batches[40:])
    assert_same_state(survivor, spill, reference)
    small = SpillStore(tmp_path, "d")  # one partition alone over the cap: its oldest go
    alone = assemble.engine(cfg.replace("engine", max_entities=12), small)
    Checkpointer(CheckpointStore(tmp_path, "d"), alone, EVERY_MINUTE).restore_partitions([0])
    assert len(alone.arena) == 12 and len(small.of_partition(0)) == 3
    on_disk = small.take(list(small.index))
    assert max(on_disk["last_ts"].tolist()) <= min(
        int(alone.arena.last_ts[s]) for s in alone.arena.index.values())
    uncapped = assemble.engine(cfg.replace("engine", max_entities=12))  # no spill store
    with pytest.raises(ParameterFileError, match=r"partition 0's state holds 15 entities, "
                       r"0 are resident, engine.max_entities is 12"):
        Checkpointer(CheckpointStore(tmp_path, "c"), uncapped,
                     EVERY_MINUTE).restore_partitions([0])


def test_spill_files_are_deleted_only_when_nothing_can_need_them(cfg: Config,
                                                                 tmp_path: Path) -> None:
    engine = assemble.engine(cfg.replace("engine", max_entities=2), SpillStore(tmp_path, "a"))
    store = CheckpointStore(tmp_path, "a", keep=2)
    saver = Checkpointer(store, engine, EVERY_MINUTE)
    for t, name in enumerate(["x", "y", "z"]):  # z evicts x
        engine.process([name], np.array([t * STEP]), np.array([1.0]), np.array([0]))
    saver.advance({0: 3}, 3)
    saver.save()  # names x's file
    files = list((tmp_path / "spill" / "a").glob("*.smck"))
    assert len(files) == 1
    engine.process(["x"], np.array([9 * STEP]), np.array([2.0]), np.array([0]))  # x back
    saver.save()  # the older kept checkpoint names x's file: it must stay
    assert files[0].exists()
    time.sleep(0.01)
    saver.save()  # now both kept checkpoints are newer than x's return
    assert not files[0].exists()
    # A partition given away keeps its files: the new owner may need them.
    engine.process(["w"], np.array([10 * STEP]), np.array([1.0]), np.array([0]))
    kept = set((tmp_path / "spill" / "a").glob("*.smck"))
    assert kept
    saver.release([0])
    saver.save()
    time.sleep(0.01)
    saver.save()
    assert kept <= set((tmp_path / "spill" / "a").glob("*.smck"))


def test_a_batch_of_more_entities_than_the_cap_is_processed_in_parts(cfg: Config,
                                                                     tmp_path: Path) -> None:
    """A poll holding more distinct entities than engine.max_entities, some of them
    evicted: one engine step could not page them all back in (ValueError: the replica
    stopped, and again after each restart, on the same records). The daemon steps it in
    parts that fit; every entity's state equals an uncapped engine's."""
    from streammeta.serve.daemon import process_in_parts

    batches = stream(entities=30, steps=60)
    reference = assemble.engine(cfg)
    run(reference, batches)
    spill = SpillStore(tmp_path, "a")
    capped = assemble.engine(cfg.replace("engine", max_entities=12), spill)
    forecasts = 0
    for start in range(0, 60, 3):  # three steps a poll: ~60 records of ~30 entities
        names = [name for b in batches[start:start + 3] for name in b[0]]
        ts, values, parts = (np.concatenate([b[k] for b in batches[start:start + 3]])
                             for k in (1, 2, 3))
        result = process_in_parts(capped, names, ts, values, parts)
        assert not result.rejected
        assert sorted(result.forecasts.obs_index.tolist()) == list(range(len(names)))
        forecasts += len(result.forecasts)
    assert forecasts == sum(len(b[0]) for b in batches)
    assert_same_state(capped, spill, reference)
