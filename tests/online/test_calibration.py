from __future__ import annotations

import numpy as np
import pytest
import torch
from support import STEP

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.online import calibration
from streammeta.online.arena import ROW_FIELDS
from streammeta.online.engine import Engine


def small(**changes: object) -> Config:
    config = config_mod.load(None, env={}).replace("model", window=24, hidden=16).replace(
        "series", season=12, horizon=6).replace("meta", enabled=False)
    return config.replace("calibration", **changes) if changes else config


def noisy_seasons(n: int, T: int, seed: int, noise: float) -> np.ndarray:
    """Seasonal series whose noise is far wider than the untrained model's spread."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    return (100 + 10 * np.sin(2 * np.pi * t / 12)[None, :]
            + rng.normal(0, noise, (n, T)) * rng.uniform(0.5, 2.0, (n, 1)))


def run(engine: Engine, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """→ point (n, T, H), quantiles (n, T, Q, H) of each forecast (NaN when cold), and
    whether its target at step h is inside the outer levels (n, T, H)."""
    n, T = values.shape
    H = engine.shape.horizon
    names = [f"e{i}" for i in range(n)]
    point = np.full((n, T, H), np.nan)
    quant = np.full((n, T, len(engine.shape.quantiles), H), np.nan)
    for t in range(T):
        f = engine.process(names, np.full(n, t * STEP, dtype=np.int64), values[:, t]).forecasts
        warm = f.warm
        point[warm, t], quant[warm, t] = f.point[warm], f.quantiles[warm]
    inside = np.full((n, T, H), np.nan)
    for h in range(1, H + 1):
        y = values[:, h:, None]
        q = quant[:, : T - h, :, h - 1]
        ok = ~np.isnan(q[:, :, 0])
        inside[:, : T - h, h - 1] = np.where(ok, (q[:, :, 0] <= y[:, :, 0])
                                             & (y[:, :, 0] <= q[:, :, -1]), np.nan)
    return point, quant, inside


def test_the_interval_covers_what_it_says_where_the_models_spread_does_not() -> None:
    values = noisy_seasons(16, 400, seed=1, noise=6.0)
    _, _, raw = run(Engine(small(enabled=False)), values)
    _, _, calibrated = run(Engine(small()), values)
    late = slice(200, None)  # the record has settled
    before = np.nanmean(raw[:, late])
    after = np.nanmean(calibrated[:, late])
    assert abs(before - 0.8) > 0.1  # the model's own interval is off
    assert abs(after - 0.8) < 0.05
    for h in (1, 6):  # scored horizons, each
        assert abs(np.nanmean(calibrated[:, late, h - 1]) - 0.8) < 0.06


def test_calibration_moves_neither_the_point_nor_the_median_and_keeps_levels_ordered() -> None:
    values = noisy_seasons(6, 160, seed=2, noise=4.0)
    config = small().replace("series", quantiles=[0.05, 0.1, 0.5, 0.9, 0.95])
    point_off, _, _ = run(Engine(config.replace("calibration", enabled=False)), values)
    point, quant, _ = run(Engine(config), values)
    warm = ~np.isnan(point)
    assert np.array_equal(point[warm], point_off[warm])
    np.testing.assert_allclose(quant[:, :, 2][warm], point[warm], rtol=1e-6)
    assert bool((np.diff(quant, axis=2)[~np.isnan(quant[:, :, 1:])] >= 0).all())


def test_the_interpolation_weights_each_step_between_its_scored_horizons() -> None:
    w = calibration.interpolation((1, 12, 18), 18)
    assert torch.allclose(w.sum(dim=1), torch.ones(18))
    for i, h in enumerate((1, 12, 18)):
        assert w[h - 1, i] == 1.0
    assert 0 < w[1, 1] < w[5, 1] < w[10, 1] < 1  # rising towards the next one
    assert w[12, 2] > 0 and w[12, 0] == 0  # 13 lies between 12 and 18


def test_the_populations_quantiles_follow_the_errors_it_records() -> None:
    levels = torch.tensor([0.1, 0.5, 0.9])
    record = calibration.Record(2, levels, torch.distributions.Normal(0.0, 1.0).icdf(levels))
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(20_000, 2, generator=gen) * torch.tensor([0.5, 2.0])
    record.update(r, torch.ones(20_000, 2, dtype=torch.bool))
    record.commit()
    expected = torch.tensor([[-0.641, 0.0, 0.641], [-2.563, 0.0, 2.563]])
    assert torch.allclose(record.offsets, expected, atol=0.08)
    assert torch.allclose(record.spread, torch.tensor([0.5, 2.0]), atol=0.05)


def test_the_calibration_state_survives_a_checkpoint() -> None:
    """The population's record and the entities' offsets travel; a restored engine
    serves exactly what the original serves next."""
    values = noisy_seasons(4, 120, seed=3, noise=5.0)
    names = [f"e{i}" for i in range(4)]
    a, b = Engine(small()), Engine(small())
    for t in range(100):
        a.process(names, np.full(4, t * STEP, dtype=np.int64), values[:, t])
    record = a.export_experts()
    assert record is not None and "calibration" in record
    assert b.restore_experts(record)
    b.restore_partition(0, a.export_partition(0))
    for t in range(100, 120):
        fa = a.process(names, np.full(4, t * STEP, dtype=np.int64), values[:, t]).forecasts
        fb = b.process(names, np.full(4, t * STEP, dtype=np.int64), values[:, t]).forecasts
        np.testing.assert_array_equal(fa.quantiles, fb.quantiles)


def test_rows_saved_before_calibration_start_from_the_population() -> None:
    values = noisy_seasons(2, 60, seed=4, noise=2.0)
    names = ["e0", "e1"]
    engine = Engine(small())
    for t in range(60):
        engine.process(names, np.full(2, t * STEP, dtype=np.int64), values[:, t])
    state = engine.export_partition(0)
    for field in ("calibration", "pending_served"):
        del state["rows"][field]
    assert {"calibration", "pending_served"} <= set(ROW_FIELDS)
    fresh = Engine(small())
    assert fresh.restore_partition(0, state) == 2
    slots = torch.tensor([fresh.arena.index[n] for n in names])
    assert not fresh.arena.calibration[slots].any()
    assert torch.isnan(fresh.arena.pending_served[slots]).all()
    f = fresh.process(names, np.full(2, 60 * STEP, dtype=np.int64), values[:, -1] + 1).forecasts
    assert np.isfinite(f.quantiles).all()


def test_each_entity_is_calibrated_to_its_own_errors_not_the_populations() -> None:
    """Entities whose noise is 0.5–2 times another's: the population's interval alone
    covers the quiet ones too often and the noisy ones too rarely; each entity's own
    correction brings both towards 80%."""
    values = noisy_seasons(16, 400, seed=5, noise=6.0)
    rng = np.random.default_rng(5)
    rng.normal(size=(16, 400))  # noisy_seasons' draws, then its per-entity scales
    scales = rng.uniform(0.5, 2.0, 16)
    _, _, inside = run(Engine(small()), values)
    late = np.nanmean(inside[:, 250:], axis=(1, 2))  # (n,) each entity's coverage
    quiet, noisy = late[scales < 0.9], late[scales > 1.6]
    assert abs(quiet.mean() - 0.8) < 0.07 and abs(noisy.mean() - 0.8) < 0.07
    assert abs(np.nanmean(inside[:, 250:]) - 0.8) < 0.05


def test_the_first_resolved_forecasts_move_an_entitys_offsets_most() -> None:
    """The entity's step is Robbins–Monro's for a quantile, 1/(density × (t + PRIOR)),
    until it reaches calibration.rate: one miss moves a young entity's offsets further
    than a mature one's."""
    config = small()
    engine = Engine(config)
    cal = engine._calibration
    assert cal is not None
    arena = engine.arena
    S, Q = arena.calibration.shape[1:]
    steps = []
    for j in (cal.warm_at + 1, 10_000):
        arena.calibration.zero_()
        arena.pending_served.fill_(float("nan"))
        slots = torch.tensor([0])
        kept = torch.zeros(1, S, 2 + Q)
        kept[:, :, 1] = 1.0  # σ
        kept[:, :, 2:] = cal.record.offsets[None]
        arena.pending_served[slots[:, None], arena.cells(torch.tensor([[j]]))] = kept
        cal.score(arena, slots, torch.tensor([j]), torch.tensor([100.0]))  # far above
        steps.append(arena.calibration[0, 0, -1].item())
    young, mature = steps
    assert young > mature > 0
    floor = config.calibration.rate * cal.record.spread[0].item() * 0.9
    assert mature == pytest.approx(floor, rel=1e-4)


def test_each_level_has_its_own_record_of_what_the_entities_corrections_leave() -> None:
    """The record is of r − d, per level (each level's entities' corrections differ):
    each level's population quantile is that of its own errors."""
    levels = torch.tensor([0.1, 0.5, 0.9])
    nominal = torch.distributions.Normal(0.0, 1.0).icdf(levels)
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(20_000, 1, generator=gen) * 2.0  # (B, S)
    d = torch.tensor([-1.0, 0.0, 1.0])  # the entities' corrections, per level
    record = calibration.Record(1, levels, nominal)
    record.update(r[:, :, None] - d, torch.ones(20_000, 1, dtype=torch.bool))
    record.commit()
    for i, q in enumerate(levels.tolist()):
        expected = torch.quantile(r[:, 0] - d[i], q).item()
        assert record.offsets[0, i].item() == pytest.approx(expected, abs=0.05)


def test_a_record_kept_with_one_histogram_for_every_level_restores() -> None:
    levels = torch.tensor([0.1, 0.5, 0.9])
    nominal = torch.distributions.Normal(0.0, 1.0).icdf(levels)
    old = torch.zeros(2, calibration.BINS, dtype=torch.float64)
    old[:, calibration.BINS // 2 - 20: calibration.BINS // 2 + 20] = 1.0  # r in [-1, 1)
    record = calibration.Record(2, levels, nominal)
    assert record.restore({"hist": old, "seen": 100.0})
    assert torch.allclose(record.offsets, torch.tensor([[-0.8, 0.0, 0.8]] * 2), atol=0.01)
    assert not record.restore({"hist": torch.zeros(3, calibration.BINS), "seen": 1.0})


def one_batch(engine: Engine, values: np.ndarray) -> np.ndarray:
    """All values (n, T) in one batch, in time order, as an evaluation streams a short
    data set (the population's record enters after it) → whether the target at step h
    is inside the outer levels (n, T, H) of the forecast from each origin (NaN: none)."""
    n, T = values.shape
    H = engine.shape.horizon
    names = np.array([f"e{i}" for i in range(n)])[:, None].repeat(T, axis=1).T.ravel()
    ts = np.arange(T, dtype=np.int64)[:, None].repeat(n, axis=1).ravel() * STEP
    f = engine.process(list(names), ts, values.T.ravel()).forecasts
    t, e = np.divmod(f.obs_index, n)
    inside = np.full((n, T, H), np.nan)
    for h in range(1, H + 1):
        ok = t + h < T
        y = values[e[ok], t[ok] + h]
        q = f.quantiles[ok, :, h - 1]
        inside[e[ok], t[ok], h - 1] = (q[:, 0] <= y) & (y <= q[:, -1])
    return inside


def test_young_entities_intervals_cover_what_they_say_before_any_record() -> None:
    """Random walks streamed in one batch: no entity, and not the population, has
    resolved enough forecasts to calibrate on. The young floor (``online.young``) is
    the Student interval of each entity's own h-step differences, so young and cold
    entities' 0.1–0.9 intervals cover about 80% at every step, not the model's
    (untrained) spread's share, which does not grow with h."""
    config = config_mod.load(None, env={}).replace("model", hidden=16).replace(
        "series", season=1, horizon=6).replace("meta", enabled=False)
    rng = np.random.default_rng(3)
    n, T = 300, 40
    scale = rng.uniform(0.5, 3.0, (n, 1))  # each entity's own step size
    values = 200 + np.cumsum(rng.normal(0.0, 1.0, (n, T)) * scale, axis=1)
    inside = one_batch(Engine(config), values)[:, 1:]  # from two values on (one: no width)
    assert abs(np.nanmean(inside) - 0.8) < 0.05
    for h in (1, 3, 6):
        assert abs(np.nanmean(inside[:, :, h - 1]) - 0.8) < 0.08
    warm_at = config.resolved().model.warm_after
    cold, warm = inside[:, : warm_at - 1], inside[:, warm_at - 1:]
    assert abs(np.nanmean(cold) - 0.8) < 0.05
    assert abs(np.nanmean(warm) - 0.8) < 0.06


def test_a_season_longer_than_the_warm_up_is_calibrated_on_forecasts_made_with_it() -> None:
    """m = 96 with a warm-up of 24 (as m = 288 of 5-minute values with 72): the forecasts
    made before a season is seen miss by the season's swing, and corrections learnt from
    them kept the 0.1-0.9 interval many times wider than the errors for thousands of
    forecasts (27 wide for errors of about 1 at m = 288)."""
    m, T = 96, 96 * 8
    rng = np.random.default_rng(3)
    t = np.arange(T)
    values = 50 + 10 * np.sin(2 * np.pi * t[None, :] / m + rng.uniform(0, 6, (8, 1))) \
        + rng.normal(0, 1, (8, T))
    H = 24
    point, quant, _ = run(Engine(small().replace("series", season=m, horizon=H)), values)
    late = slice(T - 2 * m, T - H)
    width = np.nanmean(quant[:, late, -1, -1] - quant[:, late, 0, -1])
    error = np.nanmean(np.abs(point[:, late, -1] - values[:, T - 2 * m + H:]))
    # Here 3.7 against errors of 2.3 (a normal's 0.1-0.9 range is 2.1 mean absolute
    # errors); learnt from the first forecasts too: 7.4.
    assert width < 2 * error


def test_young_intervals_are_not_widened_past_the_naive_errors_by_an_idle_season() -> None:
    """A season on data that has none (random walks, m = 12): the young floor of warm
    entities was the spread of 12-step differences at every horizon up to 12, √12 times
    a step's, and their intervals covered 0.98 at step 1. It is the smaller of the
    seasonal lag's and the horizon's own spread: the better of seasonal naive's and
    naive's errors. Cold entities, served seasonal naive, keep its lag."""
    config = config_mod.load(None, env={}).replace("model", hidden=16).replace(
        "series", season=12, horizon=6).replace("meta", enabled=False)
    rng = np.random.default_rng(3)
    n, T = 300, 40
    values = 200 + np.cumsum(rng.normal(0.0, 1.0, (n, T)) * rng.uniform(0.5, 3.0, (n, 1)),
                             axis=1)
    inside = one_batch(Engine(config), values)
    warm = inside[:, config.resolved().model.warm_after - 1:]
    assert abs(np.nanmean(warm) - 0.8) < 0.05
    assert abs(np.nanmean(warm[:, :, 0]) - 0.8) < 0.07
    cold = inside[:, 1: config.resolved().model.warm_after - 1]
    assert abs(np.nanmean(cold) - 0.8) < 0.08


def test_the_young_floors_spread_is_each_entitys_own_lagged_differences() -> None:
    """``young.naive_spread`` from the sums the arena keeps as values join (and rebuilds
    on restore) against a direct computation: the root mean square of y_i − y_(i−ℓ)
    over the values each entity's ring holds, and the pairs it is from."""
    from streammeta.online import rounds, young
    from streammeta.online.arena import Arena

    R, rng = 30, np.random.default_rng(4)
    lags = [1, 3, 12, 29]

    def arena() -> Arena:
        return Arena(ring_len=R, context_dim=2, horizon=29, scored_horizons=4,
                     max_entities=8, phi0=torch.zeros(2), horizons=tuple(lags))

    counts = [0, 1, 2, 5, 29, 30, 31, 75]
    a = arena()
    slots = torch.from_numpy(a.slots_for([f"e{i}" for i in range(len(counts))]))
    values = {row: rng.normal(10, 3, count) * 10.0**row for row, count in enumerate(counts)}
    for step in range(max(counts)):  # one value at a time, as the engine's rounds add them
        rows = [row for row, count in enumerate(counts) if count > step]
        rounds.append(a, slots[rows], torch.zeros(len(rows), dtype=torch.int64), torch.tensor(
            [values[row][step] for row in rows], dtype=torch.float32), ew_span=10)
    restored = arena()
    restored.restore(a.export(slots))
    n = torch.tensor(counts)
    assert torch.allclose(restored.lag_sums[slots], a.lag_sums[slots], rtol=1e-9, atol=0)
    for kept in (a, restored):
        spread, pairs = young.naive_spread(kept.lag_sums[slots], n, R, kept.spread_lags, lags)
        for row in range(len(counts)):
            held = np.float32(values[row][-R:])
            for j, lag in enumerate(lags):
                if len(held) > lag:
                    diff = np.float64(held[lag:] - held[:-lag])
                    assert pairs[row, j] == len(diff)
                    assert spread[row, j] == pytest.approx(np.sqrt(np.mean(diff**2)), rel=1e-5)


def test_the_young_floors_sums_hold_values_near_the_float32_limit() -> None:
    """Values a float32 holds (±3e38) whose differences it does not: the sums stay
    finite as values join and leave, and equal the ones rebuilt from the ring."""
    from streammeta.online import rounds, young
    from streammeta.online.arena import Arena

    a = Arena(ring_len=6, context_dim=2, horizon=2, scored_horizons=2, max_entities=1,
              phi0=torch.zeros(2), horizons=(1, 2))
    slots = torch.from_numpy(a.slots_for(["e"]))
    for i in range(20):
        rounds.append(a, slots, torch.zeros(1, dtype=torch.int64),
                      torch.tensor([3e38 if i % 3 else -3e38]), ew_span=10)
    assert bool(torch.isfinite(a.lag_sums[slots]).all())
    exact = young.pair_sums(a.ring[slots], a.count[slots], a.spread_lags)
    assert torch.allclose(a.lag_sums[slots], exact, rtol=1e-9, atol=0)


def test_the_record_does_not_depend_on_how_its_errors_were_split_into_commits() -> None:
    """The daemon commits once per poll, one forecast at a time at a low rate: the
    first commit's histogram was renormalised to stand for the whole past, and its few
    errors set the offsets for about a thousand more forecasts."""
    levels = torch.tensor([0.1, 0.5, 0.9])
    nominal = torch.distributions.Normal(0.0, 1.0).icdf(levels)
    r = torch.randn(200, 1, generator=torch.Generator().manual_seed(2)) * 2.0  # (B, S)
    r[:5] += 6.0  # the first few forecasts missed far above
    at_once, one_by_one = (calibration.Record(1, levels, nominal) for _ in range(2))
    at_once.update(r, torch.ones(200, 1, dtype=torch.bool))
    at_once.commit()
    for k in range(200):
        one_by_one.update(r[k:k + 1], torch.ones(1, 1, dtype=torch.bool))
        one_by_one.commit()
    assert torch.allclose(one_by_one.offsets, at_once.offsets, atol=0.2)
