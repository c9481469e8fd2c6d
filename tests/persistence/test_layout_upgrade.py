"""A checkpoint written by the version that kept pending forecasts as (H, S) cells (commit
eb5cd9b: ``data/layout-eb5cd9b``, made by ``data/make_layout_checkpoint.py``) restores
into one ring per scored horizon and serves what that version served after it (to
within the experts' and calibration's changes since)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from support import before_rings, small_config

from streammeta.config import CheckpointConfig
from streammeta.online.arena import upgrade_rows
from streammeta.online.engine import Engine
from streammeta.online.experts import KEPT
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

DATA = Path(__file__).parent / "data"
RARELY = CheckpointConfig(every_s=3600, every_records=10**9)


def maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_layout_checkpoint",
                                                  DATA / "make_layout_checkpoint.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_checkpoint_of_the_cells_layout_restores_and_serves_the_same(tmp_path: Path) -> None:
    shutil.copytree(DATA / "layout-eb5cd9b", tmp_path / "store")
    store = CheckpointStore(tmp_path / "store", member="main")  # its line: φ kept
    [(_, payload)] = list(store.newest())
    assert payload["partitions"][0]["rows"]["pending"].dim() == 3  # (B, H, S) cells
    engine = Engine(small_config().replace("engine", max_entities=100))
    restorer = Checkpointer(store, engine, RARELY)
    assert restorer.restore_model() is not None
    make = maker()
    assert restorer.restore_partitions([0, 1]) == {0: make.SAVED_AT, 1: make.SAVED_AT}
    assert engine.arena.pending.dim() == 2 and engine.arena.pending.shape[1] == sum(
        engine.arena.horizons)
    # Every forecast still pending is where the old cells had it.
    for p in (0, 1):
        rows = payload["partitions"][p]["rows"]
        slots = torch.tensor([engine.arena.index[n] for n in rows["names"]])
        for field in ("pending", "pending_experts", "pending_served"):
            got = before_rings(getattr(engine.arena, field)[slots], engine.arena.count[slots],
                               engine.arena.depths, engine.arena.horizon)
            if field == "pending_experts":  # an expert added since: nothing pending
                assert bool(got[..., rows[field].shape[-1]:].isnan().all())
                got = got[..., : rows[field].shape[-1]]
            kept = ~got.isnan()
            assert bool(kept.any())
            torch.testing.assert_close(got[kept], rows[field][kept])
    # What that version served after the checkpoint, gaps included.
    for served in json.loads((DATA / "layout-eb5cd9b" / "served.json").read_text()):
        names, ts, values, parts = make.batch(served["t"])
        f = engine.process(names, ts, values, parts).forecasts
        assert [names[i] for i in f.obs_index.tolist()] == served["names"]
        # Since that version, persistence also serves the season horizons and the
        # calibration's first steps are larger (stop 24): the pending cells are checked
        # exactly above; what is served from them agrees to within those changes. And
        # young entities' intervals are at least their naive errors' (stop 28): the
        # levels as far from the point or further. Since stop 40
        # the population's record restored from that version weighs by the forecasts
        # behind it, not as the whole past, and an entity's weights drift from what that
        # version served (up to 3.6% on one point of 36; the median point 0.4% at most).
        old_point = np.asarray(served["point"])
        moved = np.abs(f.point - old_point) / np.abs(old_point)
        assert float(np.median(moved)) < 1e-2 and float(moved.max()) < 5e-2
        q, old = f.quantiles, np.asarray(served["quantiles"])
        levels = np.asarray(engine.shape.quantiles)
        tol = 1e-2 + 5e-2 * np.abs(old)
        assert bool((q[:, levels < 0.5] <= old[:, levels < 0.5] + tol[:, levels < 0.5]).all())
        assert bool((q[:, levels > 0.5] >= old[:, levels > 0.5] - tol[:, levels > 0.5]).all())
        assert bool((np.diff(f.quantiles, axis=1) >= -1e-5).all())  # still coherent


def test_cells_move_to_the_ring_of_their_target() -> None:
    # H = 4, horizons 1 and 3; 5 values seen: targets 5 (h = 1) and 5, 6, 7 (h = 3)
    # pending, at cells 5 % 4 = 1, 6 % 4 = 2, 7 % 4 = 3 of their column.
    old = torch.full((1, 4, 2), float("nan"))
    old[0, 1, 0] = 10.0
    old[0, [1, 2, 3], 1] = torch.tensor([11.0, 12.0, 13.0])
    old[0, 0, 1] = 99.0  # target 4, already resolved: not kept
    rows = upgrade_rows({"names": ["x"], "count": torch.tensor([5]), "phi": torch.ones(1, 2),
                         "pending": old}, horizons=(1, 3), written=(1, 3))
    # Ring of horizon 1: cell 5 % 1 = 0; of horizon 3: targets 6, 7, 5 at cells 0, 1, 2.
    assert rows["pending"].tolist() == [[10.0, 12.0, 13.0, 11.0]]
    assert rows["pending_experts"].shape == (1, 4, KEPT)
