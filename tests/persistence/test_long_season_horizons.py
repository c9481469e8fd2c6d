"""State written at m = 48 before the scored horizons every 12 steps (1, 24, 48: one
ring of pending forecasts per horizon) restores onto today's (1, 12, 24, 36, 48), from
a checkpoint and from a spill file alike, and forecasting goes on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import STEP, checkpoint_payload, feed_seasonal, restore_checkpoint, small_config

from streammeta.config import Config
from streammeta.online import horizons
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import CheckpointStore
from streammeta.persistence.spill import SpillStore

NAMES = [f"e{i}" for i in range(4)]
OLD, NOW = (1, 24, 48), (1, 12, 24, 36, 48)


def config() -> Config:
    return small_config().replace("series", season=48, horizon=48).replace(
        "engine", max_entities=100)


def feed(engine: Engine, steps: range) -> None:
    feed_seasonal(engine, NAMES, steps, season=48)


def old_engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An engine with the scored horizons before every 12 steps (m = 48: 1, 24, 48)."""
    with monkeypatch.context() as patch:
        patch.setattr(horizons, "LONG_GAP", 10**6)
        engine = Engine(config())
    assert engine.arena.horizons == OLD
    return engine


def rings(engine: Engine, slots: torch.Tensor, horizon: int,
          field: str = "pending") -> torch.Tensor:
    """The ring of pending ``field`` cells of one scored horizon for ``slots``."""
    arena = engine.arena
    first = sum(arena.horizons[:arena.horizons.index(horizon)])
    return getattr(arena, field)[slots, first:first + horizon]


def test_a_checkpoint_written_with_1_24_48_restores_and_forecasts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = old_engine(monkeypatch)
    feed(original, range(150))
    payload = checkpoint_payload(tmp_path, original, 150)
    CheckpointStore(tmp_path, member="a").save(payload)
    copy = Engine(config())
    assert copy.arena.horizons == NOW and copy.arena.pending.shape[1] == sum(NOW)
    new, old = restore_checkpoint(tmp_path, original, copy, NAMES, 150)
    # 1, 24 and 48 keep their columns; 12 starts with 24's record and offsets (which
    # served steps 2..24), 36 with 48's, and neither has anything pending.
    for field in ("experts", "calibration"):
        got, was = getattr(copy.arena, field)[new], getattr(original.arena, field)[old]
        torch.testing.assert_close(got[:, [0, 2, 4]], was)
        torch.testing.assert_close(got[:, 1], was[:, 1])
        torch.testing.assert_close(got[:, 3], was[:, 2])
    for field in ("pending", "pending_experts", "pending_served"):
        for h in OLD:
            torch.testing.assert_close(rings(copy, new, h, field), rings(original, old, h, field),
                                       equal_nan=True)
        assert bool(rings(copy, new, 12, field).isnan().all())
        assert bool(rings(copy, new, 36, field).isnan().all())
    assert bool(torch.isfinite(rings(copy, new, 48)).any())
    # The population's records map the same way.
    assert copy.restore_experts(payload["experts"])
    record = copy.export_experts()
    assert record is not None and record["horizons"] == list(NOW)
    before = copy.arena.experts[new, 1].clone()
    feed(copy, range(150, 170))  # forecasting goes on, and horizon 12 is now scored
    assert not torch.equal(copy.arena.experts[new, 1], before)
    assert bool(torch.isfinite(rings(copy, new, 12)).any())


def test_a_spill_file_written_with_1_24_48_is_paged_back_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = old_engine(monkeypatch)
    feed(original, range(120))
    rows = original.arena.export(original.arena.slots_in([0, 1]))
    assert rows["horizons"].tolist() == list(OLD)
    spill = SpillStore(tmp_path, "a")
    spill.put(rows)
    capped = Engine(config(), spill=spill)
    result = capped.process(NAMES, np.full(len(NAMES), 120 * STEP, dtype=np.int64),
                            np.full(len(NAMES), 10.0), np.array([i % 2 for i in range(4)]))
    assert result.paged_in == len(NAMES) and not result.rejected
    new = torch.tensor([capped.arena.index[n] for n in NAMES])
    assert bool((capped.arena.count[new] == 121).all())
    feed(capped, range(121, 130))
