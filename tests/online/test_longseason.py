from __future__ import annotations

import numpy as np
from support import STEP

from streammeta import config as config_mod
from streammeta.online import experts, longseason
from streammeta.online.engine import Engine


def weekly_panel(n: int, T: int, seed: int) -> np.ndarray:
    """Short weekly-like series with no yearly season: random walks of two years."""
    rng = np.random.default_rng(seed)
    return 100 + np.cumsum(rng.normal(0, 1, (n, T)), axis=1)


def served(engine: Engine, values: np.ndarray, H: int) -> np.ndarray:
    """(n, T, H) the point forecasts served at each origin."""
    n, T = values.shape
    names = [f"e{i}" for i in range(n)]
    out = np.full((n, T, H), np.nan)
    for t in range(T):
        f = engine.process(names, np.full(n, t * STEP, dtype=np.int64), values[:, t]).forecasts
        out[:, t] = f.point
    return out


def test_short_series_of_a_long_season_are_served_no_worse_than_persistence() -> None:
    """m = 52, H = 13, random walks of 90 values (fewer than two seasons; the model warm
    after 72): once the experts' records reach the horizon (one season and H values
    seen) and at the last origin, the served forecasts are no worse than the last
    value's. Before, the cheap experts were scored from two seasons only, persistence
    served young entities at step 1 only, the theta experts not at all, and a cold
    entity was served seasonal naive: 1.6 times persistence's error at the last origin.
    (Between one season and one season plus H, with no record at the horizon yet, even
    weights serve: about 1.5 times persistence's error, seasonal naive's 2.)"""
    m, H, T = 52, 13, 90
    config = config_mod.load(None, env={}).replace("series", season=m, horizon=H).replace(
        "meta", enabled=False)
    values = weekly_panel(30, T + H, seed=3)
    point = served(Engine(config), values[:, :T], H)
    origins = np.arange(m + H - 1, T)  # from one season and H values seen to the last
    target = np.stack([values[:, o + 1 : o + 1 + H] for o in origins], axis=1)  # (n, O, H)
    mine = np.abs(point[:, origins] - target)
    naive = np.abs(values[:, origins, None] - target)
    assert mine.mean() <= 1.03 * naive.mean()
    assert mine[:, -1].mean() <= 1.03 * naive[:, -1].mean()  # the final origin


def test_the_rules_change_only_seasons_whose_two_seasons_exceed_the_warm_up() -> None:
    """Scored from two seasons where they fit the model's warm-up (m = 24 warm after 72,
    m = 12 after 24), from one where they do not (m = 52, m = 48 warm after 72), and
    only there is a cold entity served the experts' blend, from one season on; the
    theta experts serve a long season's entity until two seasons, a short season's
    always; persistence serves young entities below half a season only."""
    assert longseason.cold_from(24, 72) == 48 and longseason.cold_from(12, 24) == 24
    assert longseason.cold_from(52, 72) == 52 and longseason.cold_from(48, 72) == 48
    assert longseason.cold_from(1, 8) == 1 and longseason.cold_from(52, 0) == 104
    assert longseason.serve_from(52, 72) == 52 and longseason.serve_from(48, 72) == 48
    never = longseason.NEVER  # a cold entity is served seasonal naive as before
    assert longseason.serve_from(24, 72) == longseason.serve_from(12, 24) == never
    assert longseason.serve_from(4, 16) == longseason.serve_from(1, 8) == never
    assert longseason.theta_until(52, serves=False) == 104
    assert longseason.theta_until(12, serves=True) == 0
    cfg = config_mod.load(None, env={}).experts
    for season, horizons, young in ((52, (1, 12, 13), [True, True, True]),
                                    (24, (1, 12, 24), [True, False, False]),
                                    (12, (1, 6, 12), [True, False, False])):
        w = experts.Weighting(cfg, horizons, horizons[-1], season, 168, warm_at=72)
        assert w._allowed_young[:, experts.NAIVE].tolist() == young
