from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import STEP

from streammeta import config as config_mod
from streammeta.online import cells, experts, rounds
from streammeta.online.engine import Engine


def test_the_weekly_expert_serves_sub_daily_seasons_whose_window_holds_half_a_week() -> None:
    assert experts.weekly_lag(24, 168, 48) == 168  # hourly: a week back
    assert experts.weekly_lag(12, 36, 18) == 0  # monthly: no week
    # Half-hourly: the default window (168) holds 3.5 days; the ring keeps the week.
    assert experts.weekly_lag(48, 168, 48) == 336
    assert rounds.ring_length(168, 48, 48) > 336
    assert rounds.ring_length(168, 48, 24) == 168 + 48 + 1  # hourly: as before
    assert experts.weekly_lag(24, 72, 48) == 0  # a window under half a week (ETTh2's)
    assert rounds.ring_length(72, 48, 24) == 72 + 48 + 1
    assert experts.weekly_lag(288, 168, 48) == 0  # 5-minute values: a week too long to keep
    assert not experts.allowed((1, 12, 24), 12)[:, experts.WEEKLY].any()


@pytest.mark.parametrize("season", [24, 48])
def test_a_series_that_repeats_weekly_but_not_daily_is_served_its_week_ago_values(
        season: int) -> None:
    """Each day of the week its own daily shape (weekend-like days included): seasonal
    naive a day back always errs, the weekly expert never; the served forecast follows
    it, at every step of the horizon. Half-hourly too (m = 48), whose default window
    (168 values) holds less than a week."""
    m = season
    config = config_mod.load(None, env={}).replace("model", hidden=16).replace(
        "series", season=m, horizon=24).replace("meta", enabled=False)
    engine = Engine(config)
    T, n = m * 7 * 5, 3
    t = np.arange(T)
    day = (t // m) % 7
    values = np.stack([60 + 10 * k + 40 * np.sin(2 * np.pi * t / m + day)
                       + 20 * (day >= 5) for k in range(n)])
    names = [f"e{k}" for k in range(n)]
    served, daily = [], []
    for i in range(T - 24):
        f = engine.process(names, np.full(n, i * STEP, dtype=np.int64), values[:, i]).forecasts
        if i >= T - m * 8:  # the last week of origins
            truth = values[:, i + 1 : i + 25]
            served.append(np.abs(f.point - truth).mean())
            daily.append(np.abs(values[:, i - m + 1 : i - m + 25] - truth).mean())
    assert np.mean(served) < 0.2 * np.mean(daily)


def test_before_its_week_is_seen_the_weekly_expert_is_charged_the_serving_experts_mean() -> None:
    """Hourly (m = 24): the theta experts do not serve and hold zeros, not forecasts; an
    entity that has not seen a week yet charges the weekly expert the mean error of the
    experts that forecast (here 0.5 each), not one inflated by those zeros, which held
    it back for weeks after its first forecast (M4 hourly rolling MASE 1.002 -> 0.988)."""
    horizons, H, season = (1, 12, 24), 24, 24
    weighting = experts.Weighting(small_experts(), horizons, H, season, 168)
    first, depth = cells.offsets(horizons), torch.tensor(horizons)
    ring = torch.full((72,), 5.0)  # three days: no week yet
    pending = torch.full((1, sum(horizons), experts.KEPT), float("nan"))
    pending[:, :, :2] = 0.0  # what the engine keeps for the theta experts at m = 24
    arena = SimpleNamespace(ring=ring[None].clone(), ring_len=len(ring), horizon=H,
                            experts=torch.zeros(1, 3, experts.EXPERTS), pending_experts=pending,
                            season_indices=torch.zeros(1, season),
                            cells=lambda target: first + target % depth)
    S = len(horizons)
    weighting.score(arena, torch.tensor([0]), torch.tensor([72]),  # type: ignore[arg-type]
                    torch.tensor([5.5]), torch.full((1, S), 5.0), torch.full((1, S), 5.0),
                    torch.ones(1, 1), torch.ones(1, S, dtype=torch.bool),
                    torch.ones(1, S, dtype=torch.bool))
    losses = arena.experts[0]  # (S, E)
    torch.testing.assert_close(losses[:, experts.WEEKLY], torch.full((S,), 0.5))
    torch.testing.assert_close(losses[:, experts.SEASONAL], torch.full((S,), 0.5))


def small_experts() -> config_mod.ExpertsConfig:
    return config_mod.load(None, env={}).experts
