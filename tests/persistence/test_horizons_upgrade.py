"""State written with the scored horizons of an older version (1, the season, H) restores
onto today's (with the half seasons), from a checkpoint and from a spill file alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import (
    STEP,
    before_rings,
    checkpoint_payload,
    feed_seasonal,
    restore_checkpoint,
    rows_before_rings,
    small_config,
)

from streammeta.online import engine as engine_mod
from streammeta.online import horizons, scoring
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import CheckpointStore
from streammeta.persistence.spill import SpillStore

NAMES = [f"e{i}" for i in range(6)]


def feed(engine: Engine, steps: range) -> None:
    feed_seasonal(engine, NAMES, steps, season=4)


def old_engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An engine scoring at the older set, whose rows and records carry no record of it
    (exported rows: :func:`old_rows`)."""
    with monkeypatch.context() as patch:
        patch.setattr(engine_mod, "scored_horizons", horizons.legacy)
        patch.setattr(scoring, "scored_horizons", horizons.legacy)
        engine = Engine(small_config().replace("engine", max_entities=100))
    engine.arena.horizons = ()  # as exported before the horizons were recorded
    return engine


def old_rows(rows: dict[str, object]) -> dict[str, object]:
    """Rows of :func:`old_engine` as that version kept them: pending (H, S) cells."""
    return rows_before_rings(rows, horizons.legacy(6, 4), 6)


def pending(engine: Engine, slots: torch.Tensor, field: str = "pending") -> torch.Tensor:
    """A pending field of ``slots`` as (B, H, S, ...) cells by target index mod H."""
    arena = engine.arena
    return before_rings(getattr(arena, field)[slots], arena.count[slots], arena.depths, 6)


def test_legacy_and_new_sets_differ_for_the_small_engine() -> None:
    assert horizons.legacy(6, 4) == (1, 4, 6)
    assert horizons.scored(6, 4) == (1, 2, 4, 6)


def test_a_checkpoint_with_the_older_scored_horizons_restores_and_forecasts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = old_engine(monkeypatch)
    feed(original, range(60))
    payload = checkpoint_payload(tmp_path, original, 60)
    payload["experts"].pop("horizons")
    for state in payload["partitions"].values():
        state["rows"] = old_rows(state["rows"])
    assert all("horizons" not in s["rows"] for s in payload["partitions"].values())
    CheckpointStore(tmp_path, member="old").save(payload)

    copy = Engine(small_config().replace("engine", max_entities=100))
    assert copy.arena.experts.shape[1] == 4
    new, old = restore_checkpoint(tmp_path, original, copy, NAMES, 60)
    # 1, 4 and 6 keep their columns; 2 starts with 4's record and offsets (which served
    # steps 2..4) and nothing pending.
    for field in ("experts", "calibration"):
        got, was = getattr(copy.arena, field)[new], getattr(original.arena, field)[old]
        torch.testing.assert_close(got[:, [0, 2, 3]], was)
        torch.testing.assert_close(got[:, 1], was[:, 1])
    torch.testing.assert_close(pending(copy, new)[:, :, [0, 2, 3]],
                               pending(original, old), equal_nan=True)
    assert bool(pending(copy, new)[:, :, 1].isnan().all())
    assert bool(pending(copy, new, "pending_served")[:, :, 1].isnan().all())
    # The population's records map the same way (a record that did not fit would
    # make restore_experts False and start again).
    assert copy.restore_experts(payload["experts"])
    record = copy.export_experts()
    assert record is not None and record["horizons"] == [1, 2, 4, 6]
    torch.testing.assert_close(record["mean"][:, 1], payload["experts"]["mean"][:, 1])
    torch.testing.assert_close(record["calibration"]["hist"][[0, 2, 3]],
                               payload["experts"]["calibration"]["hist"])
    before = copy.arena.experts[new, 1].clone()
    feed(copy, range(60, 70))  # forecasting goes on, and horizon 2 is now scored
    assert not torch.equal(copy.arena.experts[new, 1], before)
    assert bool(torch.isfinite(pending(copy, new)[:, :, 0]).any())


def test_a_spill_file_with_the_older_scored_horizons_is_paged_back_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = old_engine(monkeypatch)
    feed(original, range(40))
    rows = original.arena.export(original.arena.slots_in([0, 1]))
    assert "horizons" not in rows
    rows = old_rows(rows)
    spill = SpillStore(tmp_path, "a")
    spill.put(rows)
    capped = Engine(small_config().replace("engine", max_entities=100), spill=spill)
    result = capped.process(NAMES, np.full(len(NAMES), 40 * STEP, dtype=np.int64),
                            np.full(len(NAMES), 10.0), np.array([i % 2 for i in range(6)]))
    assert result.paged_in == len(NAMES) and not result.rejected
    new = torch.tensor([capped.arena.index[n] for n in NAMES])
    assert capped.arena.experts.shape[1] == 4
    assert bool((capped.arena.count[new] == 41).all())
    feed(capped, range(41, 50))
