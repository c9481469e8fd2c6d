from __future__ import annotations

import numpy as np
from support import STEP

from streammeta import config as config_mod
from streammeta.online import experts
from streammeta.online.engine import Engine


def test_the_weekly_expert_serves_sub_daily_seasons_whose_window_holds_a_week() -> None:
    assert experts.weekly_lag(24, 168, 48) == 168  # hourly: a week back
    assert experts.weekly_lag(12, 36, 18) == 0  # monthly: no week
    assert experts.weekly_lag(48, 168, 48) == 0  # half-hourly: the window holds 3.5 days
    assert not experts.allowed((1, 12, 24), 12)[:, experts.WEEKLY].any()


def test_a_series_that_repeats_weekly_but_not_daily_is_served_its_week_ago_values() -> None:
    """Each day of the week its own daily shape (weekend-like days included): seasonal
    naive a day back always errs, the weekly expert never; the served forecast follows
    it, at every step of the horizon."""
    config = config_mod.load(None, env={}).replace("model", hidden=16).replace(
        "series", season=24, horizon=24).replace("meta", enabled=False)
    engine = Engine(config)
    T, n = 24 * 7 * 5, 3
    t = np.arange(T)
    day = (t // 24) % 7
    values = np.stack([60 + 10 * k + 40 * np.sin(2 * np.pi * t / 24 + day)
                       + 20 * (day >= 5) for k in range(n)])
    names = [f"e{k}" for k in range(n)]
    served, daily = [], []
    for i in range(T - 24):
        f = engine.process(names, np.full(n, i * STEP, dtype=np.int64), values[:, i]).forecasts
        if i >= T - 24 * 8:  # the last week of origins
            truth = values[:, i + 1 : i + 25]
            served.append(np.abs(f.point - truth).mean())
            daily.append(np.abs(values[:, i - 23 : i + 1] - truth).mean())
    assert np.mean(served) < 0.2 * np.mean(daily)
