from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import STEP

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.online import cells, experts, hedge
from streammeta.online.engine import Engine
from streammeta.online.theta import signed, theta


def small(**experts_changes: object) -> Config:
    config = config_mod.load(None, env={}).replace("model", window=24, hidden=16).replace(
        "series", season=12, horizon=6).replace("meta", enabled=False)
    return config.replace("experts", **experts_changes) if experts_changes else config


def served_errors(engine: Engine, values: np.ndarray, h: int = 1) -> np.ndarray:
    """Run every entity (rows of ``values``) through the engine; → the absolute error
    (n, T) of each warm forecast at step h (NaN where none was made)."""
    n, T = values.shape
    names = [f"e{i}" for i in range(n)]
    errors = np.full((n, T), np.nan)
    for t in range(T):
        f = engine.process(names, np.full(n, t * STEP, dtype=np.int64), values[:, t]).forecasts
        if t + h < T:
            errors[:, t] = np.where(f.warm, np.abs(f.point[:, h - 1] - values[:, t + h]), np.nan)
    return errors


def random_walks(n: int, T: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 + np.cumsum(rng.normal(0, 1, (n, T)), axis=1)


def test_a_random_walk_is_served_about_as_well_as_persistence_whatever_the_model() -> None:
    """A model made useless (its output scrambled) cannot keep an entity worse than its
    best cheap expert: the weights move to persistence."""
    values = random_walks(20, 200, seed=1)
    engine = Engine(small())
    gen = torch.Generator().manual_seed(0)
    bad = {k: v.clone() for k, v in engine.serving()[0].items()}
    bad["lin_w"] = torch.randn(bad["lin_w"].shape, generator=gen)  # forecasts far off
    engine.swap(bad, 0)
    served = served_errors(engine, values)[:, 120:]
    persistence = np.abs(values[:, 121:] - values[:, 120:-1])
    alone = Engine(small(enabled=False))
    alone.swap(bad, 0)
    model_only = served_errors(alone, values)[:, 120:]
    assert np.nanmean(model_only) > 3 * np.nanmean(persistence)  # the model is bad ...
    assert np.nanmean(served) < 1.1 * np.nanmean(persistence)  # ... and not served for long


def test_weights_follow_the_best_expert_per_entity() -> None:
    """Seasonal series: the seasonal expert gains weight; random walks: persistence."""
    t = np.arange(150)
    seasonal = 50 + 10 * np.sin(2 * np.pi * t / 12)[None, :] + np.random.default_rng(2).normal(
        0, 0.1, (4, 150))
    values = np.concatenate([seasonal, random_walks(4, 150, seed=3)])
    engine = Engine(small())
    served_errors(engine, values)
    w = hedge.weights(engine.arena.experts[torch.arange(8)], small().experts.rate)
    at_season = w[:, 1]  # (8, E) the season's weights
    assert bool((at_season[:4, experts.SEASONAL] > at_season[:4, experts.NAIVE]).all())
    assert bool((at_season[4:, experts.NAIVE] > at_season[4:, experts.SEASONAL]).all())


def test_quantiles_stay_ordered_around_the_served_point() -> None:
    engine = Engine(small())
    values = random_walks(10, 120, seed=4)
    names = [f"e{i}" for i in range(10)]
    for t in range(120):
        f = engine.process(names, np.full(10, t * STEP, dtype=np.int64), values[:, t]).forecasts
        assert np.all(np.diff(f.quantiles, axis=1) >= 0)
        assert np.all(np.isfinite(f.point))


@pytest.mark.parametrize("horizons", [(1, 12, 48), (1, 6)])
def test_each_step_uses_the_smallest_scored_horizon_that_covers_it(
    horizons: tuple[int, ...],
) -> None:
    b = experts.buckets(horizons, horizons[-1]).tolist()
    for h, i in enumerate(b, start=1):
        assert horizons[i] >= h and (i == 0 or horizons[i - 1] < h)


def test_the_blend_is_the_weighted_sum_of_the_experts_whatever_weight_is_zero() -> None:
    """The served blend sums only the experts with a weight somewhere: it is exactly
    (bit for bit) the sum over all experts written out, in its order."""
    gen = torch.Generator().manual_seed(0)
    horizons, B, H = (1, 12, 24, 36, 48), 6, 48
    bucket = experts.buckets(horizons, H)
    model, seasonal, weekly = (torch.randn(B, H, generator=gen) for _ in range(3))
    last, slope, level = (torch.randn(B, generator=gen) for _ in range(3))
    kept = torch.randn(B, H, experts.KEPT, generator=gen)
    kept[:, :, 2] = float("nan")  # no analogue forecast
    h = torch.arange(1, H + 1, dtype=torch.float32)[None, :]
    for zero in ([], [experts.THETA, experts.TREND, experts.ANALOGUE, experts.DAMPED],
                 [experts.SEASONAL],
                 [experts.DRIFT, experts.LEVEL], [experts.MODEL, experts.WEEKLY]):
        w = torch.rand(B, len(horizons), experts.EXPERTS, generator=gen)
        w[:, :, zero] = 0.0
        w = w / w.sum(dim=2, keepdim=True)
        wh = w[:, bucket].permute(2, 0, 1)  # (E, B, H)
        written = (wh[experts.MODEL] * model + wh[experts.NAIVE] * last[:, None]
                   + (wh[experts.SEASONAL] + wh[experts.DRIFT]) * seasonal
                   + wh[experts.DRIFT] * slope[:, None] * h
                   + wh[experts.THETA] * kept[:, :, 0] + wh[experts.TREND] * kept[:, :, 1]
                   + wh[experts.DAMPED] * kept[:, :, 3]
                   + wh[experts.ANALOGUE] * kept[:, :, 2].nan_to_num()
                   + wh[experts.LEVEL] * (seasonal + level[:, None])
                   + wh[experts.WEEKLY] * weekly)
        served = experts.blend(w, bucket, model, last, seasonal, slope, kept, weekly, level)
        assert torch.equal(served, written)


def test_the_theta_experts_follow_a_seasonal_trend_and_ignore_noise_for_a_season() -> None:
    """Monthly-like values: a linear trend plus a season. TREND extrapolates the trend
    with the seasonal shape, well inside seasonal naive's error; on white noise the
    seasonality test finds no season (the indices stay 0)."""
    W, m, H = 60, 12, 18
    t = torch.arange(W + H, dtype=torch.float32)
    truth = 100 + 0.1 * t + 8 * torch.sin(2 * torch.pi * t / m)
    gen = torch.Generator().manual_seed(5)
    x = (truth[:W] + torch.randn(W, generator=gen) * 0.5)[None, :]
    n = torch.tensor([W])
    indices = experts.seasonal_indices(x, n, m)
    assert float(indices.abs().max()) > 5  # the season is found
    f = theta(x, n, H, indices)  # (1, H, 3)
    trend_error = (f[0, :, 1] - truth[W:]).abs().mean()
    seasonal_naive = (x[0, W - m:].repeat(2)[:H] - truth[W:]).abs().mean()
    assert float(trend_error) < 0.25 * float(seasonal_naive)
    noise = torch.randn(4, W, generator=gen)
    assert bool((experts.seasonal_indices(noise, torch.full((4,), W), m) == 0).all())


def test_three_seasons_of_a_seasonal_series_are_enough_for_the_theta_experts_season() -> None:
    """Three seasons of a smooth season (m = 12, 36 values): the seasonality test finds
    it, and THETA forecasts the next two seasons with it, well inside the error of the
    same forecast without it (the classical autocorrelation, summed over the 24 pairs
    and divided by 36, stayed under the test's limit: no season before four). White
    noise of the same length is taken for a season about as often as the test's
    nominal 10%."""
    m, W, H = 12, 36, 24
    t = torch.arange(W + H, dtype=torch.float32)
    truth = 50 + 6 * torch.sin(2 * torch.pi * t / m)
    gen = torch.Generator().manual_seed(7)
    x = (truth[:W] + torch.randn(W, generator=gen) * 0.3)[None, :]
    n = torch.tensor([W])
    indices = experts.seasonal_indices(x, n, m)
    assert float(indices.abs().max()) > 4  # the season is found
    with_season = (theta(x, n, H, indices)[0, :, 0] - truth[W:]).abs().mean()
    without = (theta(x, n, H)[0, :, 0] - truth[W:]).abs().mean()
    assert float(with_season) < 0.2 * float(without)
    noise = torch.randn(2000, W, generator=gen)
    flagged = (experts.seasonal_indices(noise, torch.full((2000,), W), m) != 0).any(dim=1)
    assert 0.03 < float(flagged.float().mean()) < 0.15


def test_the_theta_experts_read_only_the_entity_s_own_values() -> None:
    """An entity with fewer values than the ring holds: whatever the ring holds before
    its first value does not change its theta forecasts."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 40, generator=gen) + 10
    n = torch.tensor([25])
    other = x.clone()
    other[:, :15] = 1e6  # not the entity's: columns before its first value
    torch.testing.assert_close(theta(x, n, 6), theta(other, n, 6))
    torch.testing.assert_close(experts.seasonal_indices(x, n, 4),
                               experts.seasonal_indices(other, n, 4))


def test_a_young_entity_s_drift_is_measured_over_whole_seasons() -> None:
    """A flat seasonal series has no trend, whatever the phase its history ends on."""
    season = 24
    values = 50 + 10 * torch.sin(2 * torch.pi * torch.arange(200) / season)
    ring = values[None, :]  # (1, R)
    for last in (30, 47, 71, 95, 150):
        step = experts.slope(ring, torch.tensor([last]), span=168, season=season)
        assert abs(float(step)) < 1e-4, last
    growing = (values + 0.5 * torch.arange(200))[None, :]
    assert float(experts.slope(growing, torch.tensor([71]), 168, season)) == pytest.approx(
        0.5, abs=1e-4)


def test_a_jump_of_level_is_not_extrapolated_as_a_trend() -> None:
    """A series at 0 that jumps to 1,000 (a launch, a sensor back on line) has no trend:
    the drift expert's step is the median of three chunks', and only one holds the jump.
    A steady trend is still every chunk's, with or without a season."""
    for season, span in ((1, 16), (4, 24), (12, 72)):
        for jump in range(5, 15):  # the jump anywhere in the window
            values = torch.where(torch.arange(80) < 80 - jump, 0.0, 1000.0)[None, :]
            assert float(experts.slope(values, torch.tensor([79]), span, season)) == 0.0
        t = torch.arange(80, dtype=torch.float32)
        trend = (3.0 * t + 5 * torch.sin(2 * torch.pi * t / season))[None, :]
        assert float(experts.slope(trend, torch.tensor([79]), span, season)) == pytest.approx(
            3.0, abs=1e-4)


def test_a_short_trending_series_is_weighted_by_its_history_before_the_model_serves() -> None:
    """Yearly-like series (season 1) growing steadily: the cheap experts are scored from
    the first origins, so at the first warm forecast the trend experts already lead
    persistence, and the last value is not what is served."""
    config = config_mod.load(None, env={}).replace("series", season=1, horizon=6).replace(
        "meta", enabled=False).resolved()
    engine = Engine(config)
    warm_at = config.model.warm_after
    values = np.array([[100.0 + 8.0 * t for t in range(warm_at)]])
    served_errors(engine, values)
    record = engine.arena.experts[0]  # (S, E) before any warm forecast was resolved
    assert bool((record[:, experts.DRIFT] < record[:, experts.NAIVE]).all())
    assert float(record[-1, experts.NAIVE]) > 0  # scored while cold
    f = engine.process(["e0"], np.array([warm_at * STEP]),
                       np.array([100.0 + 8.0 * warm_at])).forecasts
    assert bool(f.warm[0]) and float(f.point[0, -1]) > 100.0 + 8.0 * warm_at + 20


def test_persistence_serves_young_entities_at_step_1_only() -> None:
    """At the half seasons persistence serves mature entities only; the allowed mask
    may differ per entity."""
    weighting = experts.Weighting(small().experts, (1, 6), 6, 12, 24)
    assert weighting._allowed[:, experts.NAIVE].tolist() == [True, True]
    assert weighting._allowed_young[:, experts.NAIVE].tolist() == [True, False]
    per_row = torch.stack([weighting._allowed_young, weighting._allowed])  # (2, S, E)
    w = hedge.weights(torch.zeros(2, 2, experts.EXPERTS), 1.0, allowed=per_row)
    assert float(w[0, 1, experts.NAIVE]) == 0.0 and float(w[1, 1, experts.NAIVE]) > 0.0
    assert float(w[0, 0, experts.NAIVE]) > 0.0
    torch.testing.assert_close(w.sum(dim=2), torch.ones(2, 2))


def scored_once(loss: str, ring: torch.Tensor, y: float, forecast: list[float],
                horizons: tuple[int, ...] = (1, 6, 12), season: int = 12) -> torch.Tensor:
    """One entity's losses (S, E) after one value y resolves its forecasts: the model's
    ``forecast`` (S,), seasonal naive's the ring's value a season before y."""
    H, S = horizons[-1], len(horizons)
    weighting = experts.Weighting(small().experts, horizons, H, season, 24, loss=loss)
    first, depth = cells.offsets(horizons), torch.tensor(horizons)  # one ring per horizon
    arena = SimpleNamespace(ring=ring[None].clone(), ring_len=len(ring), horizon=H,
                            experts=torch.zeros(1, S, experts.EXPERTS),
                            pending_experts=torch.zeros(1, sum(horizons), experts.KEPT),
                            season_indices=torch.zeros(1, season),
                            cells=lambda target: first + target % depth)
    j = torch.tensor([len(ring)])  # the new value's index: the ring holds 0..j-1
    naive = ring[j - season].expand(1, S)
    weighting.score(arena, torch.tensor([0]), j, torch.tensor([y]),  # type: ignore[arg-type]
                    torch.tensor([forecast]), naive, torch.ones(1, 1),
                    torch.ones(1, S, dtype=torch.bool), torch.ones(1, S, dtype=torch.bool))
    return arena.experts[0]


def test_the_weights_follow_squared_errors_when_the_loss_is_mse() -> None:
    """adaptation.loss = "mse": an expert's loss is the Huber-squared error, so steady
    small errors beat rare large ones that win on absolute errors."""
    ring = torch.zeros(36)  # seasonal naive and persistence forecast 0
    steady = {k: scored_once(k, ring, 2.0, [1.0, 1.0, 1.0]) for k in ("mae", "mse")}
    assert float(steady["mae"][0, experts.MODEL]) == pytest.approx(1.0)
    assert float(steady["mse"][0, experts.NAIVE]) == pytest.approx(4.0)  # 2² within Δ = 3
    far = scored_once("mse", ring, 20.0, [0.0, 0.0, 0.0])  # beyond the clip of 10
    assert float(far[0, experts.SEASONAL]) == pytest.approx(hedge.loss_clip("mse"))
    assert hedge.loss_clip("mse") == pytest.approx(2 * 3 * 10 - 9)  # Huber at the clip
    # Over 5 targets: A errs 1 each time, B 0 four times and 4 once.
    a, b = torch.ones(5), torch.tensor([0.0, 0.0, 0.0, 0.0, 4.0])
    for kind, best in (("mae", 1), ("mse", 0)):
        losses = torch.zeros(1, 1, 2)
        for t in range(5):
            step = hedge.expert_loss(torch.stack([a[t], b[t]])[None, None], kind)
            losses = hedge.update(losses, step, torch.ones(1, 1, dtype=torch.bool), 1.0,
                                    hedge.loss_clip(kind))
        assert int(hedge.weights(losses, 0.5)[0, 0].argmax()) == best


def test_persistence_is_judged_on_the_mean_of_the_steps_each_horizon_serves() -> None:
    """m = 12, H = 12: the horizon 6 serves steps 2..6, so persistence's loss there is
    its mean error over them, not its error at 6; the horizon 12 serves 7..12, and at
    12 its forecast is seasonal naive's, so its loss there is its mean over 7..11."""
    ring = torch.arange(36) / 10  # a trend: y[t] = t / 10
    losses = scored_once("mae", ring, 3.6, [3.6, 3.6, 3.6])
    assert float(losses[2, experts.SEASONAL]) == pytest.approx(1.2)  # 12 steps
    assert float(losses[2, experts.NAIVE]) == pytest.approx(0.9)  # mean of 7..11 steps
    assert float(losses[1, experts.NAIVE]) == pytest.approx(0.4)  # mean of 2..6 steps
    assert float(losses[1, experts.SEASONAL]) == pytest.approx(1.2)  # at 6 alone
    assert float(losses[0, experts.NAIVE]) == pytest.approx(0.1)


def test_the_experts_loss_is_the_adaptation_loss_unless_set() -> None:
    """experts.loss = "auto" follows adaptation.loss; "mae" or "mse" set it alone."""
    def loss_of(config: Config) -> str:
        weighting = Engine(config)._experts
        assert weighting is not None
        return weighting.loss

    assert loss_of(small()) == "mae"
    assert loss_of(small().replace("adaptation", loss="mse")) == "mse"
    assert loss_of(small(loss="mse")) == "mse"
    assert loss_of(small(loss="mae").replace("adaptation", loss="mse")) == "mae"


def fading_trends(n: int, length: int, seed: int) -> np.ndarray:
    """Non-seasonal series whose trend fades: a step of 2 to 4 either way, damped by
    0.9 to 0.95 a step, plus noise of 1 (a product's sales after launch)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    step = rng.uniform(2, 4, (n, 1)) * rng.choice([-1, 1], (n, 1))
    phi = rng.uniform(0.9, 0.95, (n, 1))
    return 200 + step * (1 - phi ** (t + 1)) / (1 - phi) + rng.normal(0, 1.0, (n, length))


def test_the_damped_expert_follows_a_fading_trend_where_the_theta_lines_overshoot() -> None:
    """Fading trends, 30 values seen, 8 ahead, 200 entities: the damped trend (DAMPED)
    is inside persistence's error, which lags, and the theta lines', which carry a
    straight line fitted to the whole history on (the whole line, TREND, by more than
    twice the damped trend's error)."""
    B, T, H = 200, 30, 8
    values = fading_trends(B, T + H, seed=1)
    x = torch.asinh(torch.tensor(values[:, :T], dtype=torch.float32))  # model units
    f = torch.sinh(theta(x, torch.full((B,), T), H)).numpy()  # (B, H, 3)
    truth = values[:, T:]
    lines, trend, damped = (float(np.abs(f[:, :, k] - truth).mean()) for k in range(3))
    persistence = float(np.abs(values[:, T - 1 : T] - truth).mean())
    assert damped < 0.95 * persistence
    assert damped < 0.95 * lines and 2 * damped < trend
    # The grid's choice reads only the entity's own values, as the theta lines do.
    other = x.clone()
    other[:, :10] = 1e3
    short = torch.full((B,), T - 10)
    torch.testing.assert_close(theta(x, short, H)[:, :, 2],
                               theta(other, short, H)[:, :, 2])


def test_the_theta_experts_smooth_a_series_that_crosses_zero_on_its_values() -> None:
    """Noise about 5 with a spread of 4, so that a tenth of the values are at or below
    0: in asinh units (about logarithms) the dips are a log scale's outliers, and the
    smoothing follows the newest value. On the values, the theta experts' level is
    within 5% of the true mean's error; rows that stay above 0 are not touched."""
    B, W, H = 200, 120, 14
    rng = np.random.default_rng(3)
    values = 5 + rng.normal(0, 4, (B, W + H))
    x = torch.asinh(torch.tensor(values[:, :W], dtype=torch.float32))  # model units
    n = torch.full((B,), W)
    truth = values[:, W:]
    f = torch.sinh(signed(x, n, H)).numpy()  # (B, H, 3)
    best = float(np.abs(5 - truth).mean())
    assert float(np.abs(f[:, :, 0] - truth).mean()) < 1.05 * best
    assert float(np.abs(values[:, W - 1 : W] - truth).mean()) > 1.3 * best  # persistence
    positive = x.abs() + 1.0
    assert torch.equal(signed(positive, n, H), theta(positive, n, H))


def test_without_a_season_the_prior_weighs_against_the_record_alike_at_every_horizon() -> None:
    """m = 1 pools each scored horizon's record with the one below; the population's
    prior is pooled alike, so a prior and a record that pull apart by the same amount
    balance at every scored horizon, not only at the first."""
    horizons = (1, 2, 4)
    allowed = experts.allowed(horizons, 1)
    record = torch.zeros(1, len(horizons), experts.EXPERTS)
    prior = torch.zeros(1, len(horizons), experts.EXPERTS)
    record[0, :, experts.DAMPED] = 2.0  # the entity's own record: theta ahead
    prior[0, :, experts.THETA] = 2.0  # the population's: the damped trend ahead
    w = hedge.follow(record, prior, 1, 0.5, allowed)
    torch.testing.assert_close(w[0, :, experts.DAMPED], w[0, :, experts.THETA])
    seasonal = hedge.follow(record, prior, 4, 0.5, experts.allowed(horizons, 4))
    torch.testing.assert_close(seasonal[0, :, experts.DAMPED], seasonal[0, :, experts.THETA])


def test_without_a_season_a_far_horizon_with_a_thin_record_follows_the_nearer_one() -> None:
    """m = 1: the weights of a scored horizon follow its own record plus the one below,
    so a far horizon that has resolved nothing yet is not served with even weights when
    the nearer horizon's record is clear; with a season each horizon keeps its own."""
    horizons = (1, 2, 4)
    record = torch.zeros(1, len(horizons), experts.EXPERTS)
    record[0, 1] = 4.0
    record[0, 1, experts.DAMPED] = 0.0  # the damped trend leads at step 2; step 4: nothing yet
    allowed = experts.allowed(horizons, 1)
    w = hedge.weights(hedge.pooled(record, 1), 0.5, allowed=allowed)
    assert int(w[0, 2].argmax()) == experts.DAMPED and float(w[0, 2, experts.DAMPED]) > 0.5
    even = hedge.weights(hedge.pooled(record, 4), 0.5, allowed=experts.allowed(horizons, 4))
    assert torch.allclose(even[0, 2][even[0, 2] > 0], even[0, 2].max())
    torch.testing.assert_close(hedge.pooled(record, 1)[:, 0], record[:, 0])
