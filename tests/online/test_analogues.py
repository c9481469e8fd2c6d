from __future__ import annotations

import math

import numpy as np
import torch
from support import STEP

from streammeta import config as config_mod
from streammeta.online import experts, hedge
from streammeta.online.analogues import Analogues, length_for
from streammeta.online.engine import Engine


def test_a_window_like_a_stored_one_is_followed_by_what_followed_it_in_its_own_scale() -> None:
    """The store keeps shapes, not levels: a window shaped like a stored one, at another
    level and scale, gets the stored followers put back into its own level and scale."""
    store = Analogues(length=4, horizon=2, capacity=16, k=1)
    shapes = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0],  # alternating
                           [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])  # rising
    store.add(shapes, torch.tensor([0, 0]))
    query = torch.tensor([[10.0, 30.0, 50.0, 70.0], [5.0, 7.0, 5.0, 7.0]])
    got = store.forecast(query, torch.tensor([1, 1]))
    assert torch.allclose(got, torch.tensor([[90.0, 110.0], [5.0, 7.0]]), atol=1e-3)


def test_no_entry_newer_than_the_origin_is_used_and_the_oldest_go_first() -> None:
    store = Analogues(length=4, horizon=1, capacity=2, k=1)
    store.add(torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]), torch.tensor([100]))
    query = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert bool(store.forecast(query, torch.tensor([99])).isnan().all())  # newer: nothing
    assert float(store.forecast(query, torch.tensor([100]))[0, 0]) == 4.0
    store.add(torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0, -1.0]]),
              torch.tensor([101, 102]))
    assert len(store) == 2  # the rising window went
    assert float(store.forecast(query, torch.tensor([200]))[0, 0]) != 4.0
    again = Analogues(length=4, horizon=1, capacity=2, k=1)
    assert again.restore(store.export())
    assert torch.equal(again.forecast(query, torch.tensor([200])),
                       store.forecast(query, torch.tensor([200])))
    assert not Analogues(length=5, horizon=1, capacity=2).restore(store.export())


def test_the_window_is_a_season_at_least_eight_values_at_most_the_model_s() -> None:
    assert length_for(24, 168) == 24 and length_for(1, 16) == 8 and length_for(336, 168) == 168


def test_young_entities_of_a_known_shape_are_served_by_the_analogues() -> None:
    """Older entities of one family (a cycle of 20 steps, which the season of 12 does not
    describe) have filled the store; new ones of the same family, at other levels and
    phases, get weight on the analogue expert and forecast better than with it off."""
    config = config_mod.load(None, env={}).replace("model", hidden=16).replace(
        "series", season=12, horizon=6).replace("meta", enabled=False)
    rng = np.random.default_rng(0)

    def family(n: int, T: int) -> np.ndarray:
        t = np.arange(T)[None, :] + rng.integers(0, 20, (n, 1))
        shape = np.sin(2 * math.pi * t / 20) + 0.6 * np.sin(2 * math.pi * t / 5)
        level = rng.uniform(20, 80, (n, 1))
        return level + level / 10 * shape + rng.normal(0, 0.05, (n, T))

    old, new = family(20, 120), family(20, 60)
    errors = {}
    for on in (True, False):
        engine = Engine(config.replace("experts", analogues=on))
        names = [f"old{i}" for i in range(20)]
        for t in range(120):
            engine.process(names, np.full(20, t * STEP, dtype=np.int64), old[:, t])
        young = [f"new{i}" for i in range(20)]
        err = []
        for t in range(60):
            f = engine.process(young, np.full(20, (120 + t) * STEP, dtype=np.int64),
                               new[:, t]).forecasts
            if f.warm.all() and t + 6 < 60:
                err.append(np.abs(f.point - new[:, t + 1: t + 7]).mean())
        errors[on] = float(np.mean(err))
        if on:
            slots = torch.tensor([engine.arena.index[n] for n in young])
            w = hedge.weights(engine.arena.experts[slots], 1.0)
            assert float(w[:, 0, experts.ANALOGUE].mean()) > 1 / experts.EXPERTS
    assert errors[True] < 0.7 * errors[False], errors


def test_short_seasons_are_not_served_by_analogues() -> None:
    """A window of a quarterly season holds too little shape (M1 quarterly was worse)."""
    assert not experts.allowed((1, 4, 8), 4)[:, experts.ANALOGUE].any()
    assert experts.allowed((1, 12, 18), 12)[:, experts.ANALOGUE].all()
    config = config_mod.load(None, env={}).replace("series", season=4, horizon=8)
    assert Engine(config).export_experts().get("analogues") is None  # type: ignore[union-attr]


def test_the_store_travels_with_the_experts_record() -> None:
    """A restarted engine searches the windows its predecessor stored."""
    config = config_mod.load(None, env={}).replace("model", hidden=16).replace(
        "series", season=12, horizon=6).replace("meta", enabled=False)
    engine = Engine(config)
    values = 50 + 10 * np.sin(2 * math.pi * np.arange(40) / 12)
    for t in range(40):
        engine.process(["a", "b"], np.full(2, t * STEP, dtype=np.int64), values[[t, t]])
    record = engine.export_experts()
    assert record is not None
    stored = record["analogues"]
    assert isinstance(stored, dict) and len(stored["keys"]) == 2 * (40 - 12 - 6 + 1)
    again = Engine(config)
    assert again.restore_experts(record)
    assert torch.equal(again.export_experts()["analogues"]["keys"],  # type: ignore[index]
                       stored["keys"])


def test_entries_read_late_are_those_normalised_at_once() -> None:
    """Entries are normalised when first read (a search or an export): a store read
    after every add and one read only at the end, past its capacity and around its
    ring, hold the same entries and give the same forecasts."""
    rng = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 6, generator=rng) * 3 + 10 for n in (3, 5, 9, 2)]
    eager, late = (Analogues(length=4, horizon=2, capacity=8, k=2) for _ in range(2))
    query, ts = torch.randn(4, 4, generator=rng), torch.full((4,), 10)
    for i, rows in enumerate(batches):
        eager.add(rows, torch.full((len(rows),), i))
        eager.forecast(query, ts)
        late.add(rows, torch.full((len(rows),), i))
    assert torch.equal(late.forecast(query, ts), eager.forecast(query, ts))
    for key, value in eager.export().items():
        assert torch.equal(late.export()[key], value)  # type: ignore[arg-type]
