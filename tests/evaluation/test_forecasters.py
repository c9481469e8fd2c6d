"""What every forecaster of the evaluation promises, checked on each in the manner
of river's estimator checks: the engine and every baseline of
``streammeta.evaluation.baselines``. A forecaster here takes one entity's values and
the origins t to forecast from, and returns t+1..t+H at each (and quantiles, where
it makes them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from support import STEP, small_config

from streammeta.evaluation import baselines
from streammeta.online.engine import Engine

H, M = 6, 4  # horizon, season
Forecast = tuple[np.ndarray, np.ndarray | None]  # point (n, H), quantiles (n, Q, H)
Forecaster = Callable[[np.ndarray, np.ndarray], Forecast]


def engine(values: np.ndarray, origins: np.ndarray) -> Forecast:
    """The engine streamed the entity's values one batch per step."""
    e = Engine(small_config().replace("series", horizon=H, season=M))
    points, quantiles = {}, {}
    for t, value in enumerate(values):
        f = e.process(["x"], np.array([t * STEP]), np.array([value])).forecasts
        points[t], quantiles[t] = f.point[0], f.quantiles[0]
    return (np.stack([points[t] for t in origins]),
            np.stack([quantiles[t] for t in origins]))


def baseline(name: str) -> Forecaster:
    def forecast(values: np.ndarray, origins: np.ndarray) -> Forecast:
        return baselines.BASELINES[name](values, origins, H, M), None
    return forecast


FORECASTERS: dict[str, Forecaster] = {
    "engine": engine, **{name: baseline(name) for name in baselines.BASELINES}}


@pytest.fixture(params=sorted(FORECASTERS))
def forecaster(request: pytest.FixtureRequest) -> Forecaster:
    return FORECASTERS[request.param]


def series(seed: int = 0, length: int = 90) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return 20 + 0.05 * t + 3 * np.sin(2 * np.pi * t / M) + rng.normal(0, 0.5, length)


ORIGINS = np.array([10, 30, 50, 70])


def test_no_leakage_later_values_change_no_earlier_forecast(forecaster: Forecaster) -> None:
    values = series()
    changed = values.copy()
    changed[51:] = 1e3 * np.random.default_rng(1).normal(size=len(values) - 51)
    before, _ = forecaster(values, ORIGINS)
    after, _ = forecaster(changed, ORIGINS)
    np.testing.assert_array_equal(after[:3], before[:3])  # origins 10, 30, 50
    assert not np.array_equal(after[3], before[3])  # the check can see a change


def test_output_is_finite_and_shaped(forecaster: Forecaster) -> None:
    point, quantiles = forecaster(series(2), ORIGINS)
    assert point.shape == (len(ORIGINS), H) and np.isfinite(point).all()
    if quantiles is not None:
        assert quantiles.shape[0] == len(ORIGINS) and quantiles.shape[2] == H
        assert np.isfinite(quantiles).all()


def test_quantiles_are_ordered_where_they_exist(forecaster: Forecaster) -> None:
    _, quantiles = forecaster(series(3), ORIGINS)
    if quantiles is None:
        pytest.skip("a point forecaster")
    assert (np.diff(quantiles, axis=1) >= 0).all()


def test_the_same_input_gives_the_same_forecasts(forecaster: Forecaster) -> None:
    first, q1 = forecaster(series(4), ORIGINS)
    again, q2 = forecaster(series(4), ORIGINS)
    np.testing.assert_array_equal(first, again)
    if q1 is not None:
        assert q2 is not None
        np.testing.assert_array_equal(q1, q2)
