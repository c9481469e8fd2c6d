from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import STEP, related_family

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.io.codec import Reason
from streammeta.online import rounds
from streammeta.online.engine import Engine


@pytest.fixture
def cfg() -> Config:
    config = config_mod.load(None, env={})
    # Raw units and unshrunk φ: these tests follow values and steps exactly.
    return config.replace("model", window=12, hidden=16, context_dim=4).replace(
        "series", season=4, horizon=6, max_gap_fill=3, transform="none").replace(
        "adaptation", shrink=0.0)


def feed(engine: Engine, entity: str, values: list[float], start: int = 0):
    ts = np.arange(start, start + len(values), dtype=np.int64) * STEP
    return engine.process([entity] * len(values), ts, np.asarray(values, dtype=np.float64))


def test_rounds_put_each_entitys_observations_in_arrival_order() -> None:
    slots = np.array([5, 3, 5, 5, 3, 7])
    parts = rounds.split(slots)
    assert [r.tolist() for r in parts] == [[0, 1, 5], [2, 4], [3]]


def test_records_settle_between_rounds_only_where_no_older_value_follows() -> None:
    aligned = rounds.timed(np.array([5, 3, 5, 3]), np.array([0, 0, 1, 1]))
    assert [settled for _, settled in aligned] == [False, True]
    staggered = rounds.timed(np.array([5, 3, 5, 3, 5]), np.array([0, 7, 1, 8, 9]))
    assert [settled for _, settled in staggered] == [False, False, True]


def test_one_batch_equals_one_observation_at_a_time(cfg: Config) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(10, 2, size=(3, 40))
    entities = ["a", "b", "c"]
    batched, single = Engine(cfg), Engine(cfg)
    # Batched: all of each entity's values in one batch, entities interleaved.
    ents = [e for t in range(40) for e in entities]
    ts = np.repeat(np.arange(40, dtype=np.int64) * STEP, 3)
    vals = values.T.reshape(-1)
    result = batched.process(ents, ts, vals)
    for t in range(40):
        single.process(entities, ts[3 * t: 3 * t + 3], vals[3 * t: 3 * t + 3])
    assert len(result.forecasts) == 120 and not result.rejected
    torch.testing.assert_close(batched.arena.ring[:3], single.arena.ring[:3])
    torch.testing.assert_close(batched.arena.phi[:3], single.arena.phi[:3])
    # Forecasts come per round; each entity's origins are in time order.
    f = result.forecasts
    for slot in range(3):
        origins = f.origin_ts[f.slots == slot]
        assert (np.diff(origins) == STEP).all() and len(origins) == 40
    # The population's records learn within the batch as they do from one step per
    # batch: the same forecasts, weights and quantiles (a replayed history forecasts as
    # the live stream would have).
    np.testing.assert_allclose(result.forecasts.point, single_points(cfg, entities, ts, vals),
                               rtol=1e-5, atol=1e-5)


def single_points(cfg: Config, entities: list[str], ts: np.ndarray,
                  vals: np.ndarray) -> np.ndarray:
    engine, k = Engine(cfg), len(entities)
    return np.concatenate([engine.process(entities, ts[i: i + k], vals[i: i + k]).forecasts.point
                           for i in range(0, len(ts), k)])


def test_a_batch_never_lets_a_forecast_learn_from_a_later_value(cfg: Config) -> None:
    """Entity b runs 20 steps ahead of a in one batch (time order, as a replay of
    series that start apart): a's forecasts may not depend on b's values later than
    their origin, through the population's records."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 2, size=40), rng.normal(10, 2, size=40)
    names = ["a"] * 40 + ["b"] * 40
    ts = np.concatenate([np.arange(40), np.arange(20, 60)]).astype(np.int64) * STEP
    order = np.argsort(ts, kind="stable")

    def a_points(b_values: np.ndarray) -> np.ndarray:
        vals = np.concatenate([a, b_values])[order]
        result = Engine(cfg).process([names[i] for i in order], ts[order], vals)
        f = result.forecasts
        return f.point[f.slots == 0]

    changed = b.copy()
    changed[20:] += 50.0  # b's values at times 40..59: after every origin of a
    np.testing.assert_array_equal(a_points(b), a_points(changed))


def test_late_duplicate_and_misaligned_are_rejected_without_touching_state(cfg: Config) -> None:
    engine = Engine(cfg)
    feed(engine, "a", [1.0, 2.0, 3.0])
    before = engine.arena.ring.clone()
    ts = np.array([2 * STEP, 1 * STEP, 2 * STEP + 5, 3 * STEP], dtype=np.int64)
    result = engine.process(["a"] * 4, ts, np.array([9.0, 9.0, 9.0, 4.0]))
    assert [(i, r) for i, r, _ in result.rejected] == [
        (0, Reason.DUPLICATE), (1, Reason.LATE), (2, Reason.MISALIGNED)]
    assert result.forecasts.obs_index.tolist() == [3]
    assert int(engine.arena.count[0]) == 4
    assert torch.equal(engine.arena.ring[0, :3], before[0, :3])


def test_a_value_beyond_float32_is_rejected_not_the_entitys_end(cfg: Config) -> None:
    """1e39 is a finite double but inf in the engine's float32: admitted, it made every
    later forecast of its entity NaN. It is rejected as non_finite; the entity goes on."""
    for transform in ("none", "asinh"):
        engine = Engine(cfg.replace("series", transform=transform))
        feed(engine, "a", [float(v) for v in range(1, 31)])
        result = feed(engine, "a", [-1e39, 31.0, 32.0], start=30)
        assert [(i, r) for i, r, _ in result.rejected] == [(0, Reason.NON_FINITE)]
        after = feed(engine, "a", [float(v) for v in range(33, 60)], start=32)
        assert bool(torch.isfinite(torch.as_tensor(after.forecasts.point)).all())


def test_duplicate_inside_one_batch_is_caught(cfg: Config) -> None:
    engine = Engine(cfg)
    ts = np.array([0, STEP, STEP], dtype=np.int64)
    result = engine.process(["a", "a", "a"], ts, np.array([1.0, 2.0, 3.0]))
    assert [r for _, r, _ in result.rejected] == [Reason.DUPLICATE]
    assert len(result.forecasts) == 2


def test_short_gap_is_interpolated_long_gap_restarts_cold(cfg: Config) -> None:
    engine = Engine(cfg)
    feed(engine, "a", [0.0, 1.0])
    result = engine.process(["a"], np.array([4 * STEP]), np.array([4.0]))  # steps 2, 3 missing
    assert result.gap_steps == 2 and result.resets == 0
    assert engine.arena.ring[0, :5].tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])
    assert int(engine.arena.count[0]) == 5
    result = engine.process(["a"], np.array([9 * STEP]), np.array([7.0]))  # 4 missing > 3
    assert result.resets == 1 and result.gap_steps == 0
    assert int(engine.arena.count[0]) == 1
    assert not result.forecasts.warm[0]


def test_the_young_floors_lag_sums_follow_the_rings_through_gaps_and_restarts(
        cfg: Config) -> None:
    """The arena keeps each entity's sums of squared lagged differences (the young
    floor's spread, ``online.young``) as values join; interpolated gaps, cold restarts
    and restored rows rebuild them: they are always what the rings hold."""
    from streammeta.online import young

    engine = Engine(cfg)
    rng = np.random.default_rng(3)
    steps = np.arange(200)
    keep = {"a": steps, "b": steps[(steps < 60) | (steps > 62)],  # 3 missing: filled
            "c": steps[(steps < 90) | (steps > 120)]}  # 30 missing: starts again
    for t in steps.tolist():
        names = [e for e, at in keep.items() if t in set(at.tolist())]
        engine.process(names, np.full(len(names), t * STEP, dtype=np.int64),
                       rng.normal(100, 5, len(names)))
    arena = engine.arena
    slots = torch.arange(3)
    exact = young.pair_sums(arena.ring[slots], arena.count[slots], arena.spread_lags)
    assert len(arena.spread_lags) > 1
    assert torch.allclose(arena.lag_sums[slots], exact, rtol=1e-9, atol=0)
    other = Engine(cfg)
    other.restore_partition(0, engine.export_partition(0))
    assert torch.allclose(other.arena.lag_sums[slots], exact, rtol=1e-9, atol=0)


def test_cold_forecasts_are_naive_then_seasonal_naive_then_warm(cfg: Config) -> None:
    engine = Engine(cfg)
    r = feed(engine, "a", [1.0, 2.0])
    assert not r.forecasts.warm.any()
    assert (r.forecasts.point[-1] == 2.0).all()  # last value before a season is seen
    r = feed(engine, "a", [3.0, 4.0, 5.0, 6.0], start=2)  # season 4: ... 3 4 5 6
    assert r.forecasts.point[-1].tolist() == [3.0, 4.0, 5.0, 6.0, 3.0, 4.0]
    r = feed(engine, "a", list(range(7, 13)), start=6)  # 12 values = window
    assert r.forecasts.warm.tolist() == [False] * 5 + [True]


def test_quantiles_are_ordered_and_forecasts_finite(cfg: Config) -> None:
    engine = Engine(cfg)
    rng = np.random.default_rng(2)
    r = feed(engine, "a", list(rng.normal(5, 1, 60)))
    q = r.forecasts.quantiles
    assert np.isfinite(q).all() and np.isfinite(r.forecasts.point).all()
    assert (np.diff(q, axis=1) >= 0).all()


def test_capacity_is_enforced(cfg: Config) -> None:
    engine = Engine(cfg.replace("engine", max_entities=2))
    result = engine.process(["a", "b", "c", "a"], np.array([0, 0, 0, STEP]),
                            np.array([1.0, 1.0, 1.0, 1.0]))
    assert [(i, r) for i, r, _ in result.rejected] == [(2, Reason.CAPACITY)]
    assert len(engine.arena) == 2 and len(result.forecasts) == 3


def test_scoring_compares_model_and_seasonal_naive_on_the_same_targets(cfg: Config) -> None:
    engine = Engine(cfg.replace("adaptation", enabled=False))
    pattern = [1.0, 5.0, 2.0, 8.0]
    result = feed(engine, "a", pattern * 20)
    assert result.scored > 0
    # An untrained model starts as seasonal naive: on a pure seasonal pattern both are exact.
    assert engine.online_error["seasonal_naive"] == pytest.approx(0.0, abs=1e-6)
    assert engine.online_error["streammeta"] < 0.05


def run_family(config: Config, values: np.ndarray) -> float:
    engine = Engine(config)
    entities = [f"e{i}" for i in range(values.shape[0])]
    for t in range(values.shape[1]):
        engine.process(entities, np.full(len(entities), t * STEP, dtype=np.int64), values[:, t])
    return engine.online_error["streammeta"]


def test_online_adaptation_lowers_error_on_related_series() -> None:
    config = config_mod.load(None, env={}).replace("model", window=48)
    values = related_family(200, 300, seed=0)
    frozen = run_family(config.replace("adaptation", enabled=False), values)
    assert run_family(config.replace("adaptation", shrink=0.0), values) < 0.8 * frozen
    assert run_family(config, values) < frozen  # shrink (default 0.1) bounds how far φ goes


def test_squared_error_adaptation_survives_a_stuck_sensor() -> None:
    """adaptation.loss = "mse" after a flat stretch: the window's scale is then near 0,
    so the first values after it are errors of thousands of window standard
    deviations. Pure squared errors stepped φ so far that forecasts reached 85 times
    the data's largest value (137.6 against 1.62); beyond model.HUBER_DELTA the loss is
    linear."""
    rng = np.random.default_rng(0)
    values = 1.0 + 0.5 * np.sin(2 * math.pi * np.arange(600) / 24) + rng.normal(0, 0.05, (4, 600))
    values[:, 200:300] = 0.3  # stuck for 100 values, then back
    config = config_mod.load(None, env={}).replace(
        "series", transform="none", horizon=24).replace(
        "model", window=72, hidden=64, warm_after=0).replace("adaptation", loss="mse")
    engine = Engine(config)
    entities = [f"e{i}" for i in range(4)]
    worst = 0.0
    for t in range(values.shape[1]):
        point = engine.process(entities, np.full(4, t * STEP, dtype=np.int64),
                               values[:, t]).forecasts.point
        worst = max(worst, float(np.abs(np.asarray(point)).max(initial=0.0)))
    assert np.isfinite(worst) and worst < 1.5 * np.abs(values).max()


def test_asinh_transform_forecasts_in_the_entities_own_units(cfg: Config) -> None:
    """The model sees asinh(values); forecasts are published back in raw units, so
    the cold seasonal-naive forecast is the raw value a season ago."""
    asinh = Engine(cfg.replace("series", transform="asinh"))
    values = [500.0 + 400.0 * math.sin(2 * math.pi * t / 4) for t in range(30)]
    f = feed(asinh, "a", values).forecasts
    ring = asinh.arena.ring[0]  # circular: value t at t mod its length
    newest = range(max(0, 30 - len(ring)), 30)  # the ring may hold more than 30
    torch.testing.assert_close(ring[[t % len(ring) for t in newest]],
                               torch.asinh(torch.tensor([values[t] for t in newest])))
    cold = int(np.nonzero(~f.warm)[0][-1])  # the last cold forecast: seasonal naive
    season = values[cold - 3: cold + 1]
    np.testing.assert_allclose(f.point[cold, :4], season, rtol=1e-4)
    assert np.isfinite(f.point).all() and (f.point[f.warm] > 0).all()
    assert (np.diff(f.quantiles, axis=1) >= 0).all()


def test_shrink_keeps_fast_weights_near_their_initialisation(cfg: Config) -> None:
    rng = np.random.default_rng(3)
    values = list(10 + rng.normal(0, 3, 200))
    drift = {}
    for shrink in (0.0, 0.2):
        engine = Engine(cfg.replace("adaptation", shrink=shrink))
        feed(engine, "a", values)
        drift[shrink] = float((engine.arena.phi[0] - engine.arena.phi0).norm())
    assert 0 < drift[0.2] < drift[0.0] / 2


def test_warm_after_completes_a_young_window_with_its_first_season(cfg: Config) -> None:
    """window 12, season 4, warm after 8: the 8th value's forecast comes from the
    model, whose window is the first season followed by the 8 values."""
    from streammeta.online import model

    engine = Engine(cfg.replace("model", warm_after=8).replace("experts", enabled=False))
    values = [10.0, 30.0, 20.0, 15.0, 11.0, 32.0, 19.0, 16.0]
    f = feed(engine, "a", values).forecasts
    assert f.warm.tolist() == [False] * 7 + [True]
    completed = torch.tensor(values[:4] + values, dtype=torch.float32)[None, :]
    x, mean, scale = model.normalise(completed)
    point, _ = model.point_and_spread(engine.serving()[0], x, engine.arena.phi0[None, :])
    np.testing.assert_allclose(f.point[-1], (point * scale + mean)[0].numpy(), rtol=1e-5)


def test_warm_after_is_at_least_a_season_and_at_most_the_window(cfg: Config) -> None:
    """window 12, season 4."""
    assert Engine(cfg.replace("model", warm_after=2)).warm_at == 4
    assert Engine(cfg.replace("model", warm_after=72)).warm_at == 12
    assert Engine(cfg.replace("model", warm_after=0)).warm_at == 12


def test_a_rejections_detail_shows_times_as_written_not_calendar_units(cfg: Config) -> None:
    """A calendar frequency's engine units are months since 1970-01: a late monthly
    value's dead letter read "ts 591 vs last 617", as if milliseconds. It shows both
    times in epoch ms and UTC, as the producer wrote them."""
    frequency = cfg.replace("series", freq="ME").series.frequency
    engine = Engine(cfg.replace("series", freq="ME"))
    months = np.arange(600, 618, dtype=np.int64)  # 2020-01 .. 2021-06
    engine.process(["a"] * len(months), months, np.arange(len(months), dtype=np.float64))
    result = engine.process(["a", "a"], np.array([591, 617], dtype=np.int64),
                            np.array([1.0, 2.0]))
    late, duplicate = (detail for _, _, detail in result.rejected)
    last = int(frequency.to_ms(np.array([617]))[0])
    assert late == (f"ts {int(frequency.to_ms(np.array([591]))[0])} (2019-04-30T00:00:00Z) "
                    f"vs last {last} (2021-06-30T00:00:00Z)")
    assert duplicate == f"ts {last} (2021-06-30T00:00:00Z) vs last {last} (2021-06-30T00:00:00Z)"
    hourly = Engine(cfg).process(["b", "b"], np.array([STEP, 0], dtype=np.int64),
                                 np.array([1.0, 2.0]))
    assert hourly.rejected[0][2] == (f"ts 0 (1970-01-01T00:00:00Z) vs last {STEP} "
                                     f"(1970-01-01T01:00:00Z)")
