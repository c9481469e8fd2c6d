from __future__ import annotations

import numpy as np
import pytest

from streammeta.evaluation import scores as M


def test_smape_by_hand() -> None:
    y = np.array([[100.0, 200.0]])
    f = np.array([[110.0, 180.0]])
    # 200·10/210 = 9.5238…, 200·20/380 = 10.5263…
    expected = (200 * 10 / 210 + 200 * 20 / 380) / 2
    errors = M.score(f, y, np.array([1.0]), np.array([1.0]))
    assert errors.smape[0] == pytest.approx(expected)
    assert M.smape_terms(np.array([0.0, 0.0]), np.array([0.0, 1.0])).tolist() == [0.0, 200.0]


def test_a_missing_forecast_is_left_out_of_smape_not_scored_perfect() -> None:
    """A method without forecasts (every observation rejected) showed sMAPE 0.000,
    bold, ranked first; its MASE was NaN."""
    y = np.array([[100.0, 200.0], [100.0, 100.0]])
    f = np.array([[np.nan, np.nan], [110.0, 90.0]])
    errors = M.score(f, y, np.array([10.0, 10.0]), np.array([1.0, 1.0]))
    assert np.isnan(errors.smape[0]) and np.isnan(errors.mase[0])
    assert errors.smape[1] == pytest.approx((200 * 10 / 210 + 200 * 10 / 190) / 2)
    assert np.isnan(M.smape_terms(np.array([1.0]), np.array([np.inf]))[0])


def test_seasonal_scale_uses_the_history_up_to_each_origin() -> None:
    values = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    # m = 2: |3−1| = 2, |5−2| = 3, |4−3| = 1, |6−5| = 1, averaged up to each t.
    scale = M.seasonal_scale(values, 2)
    assert np.isnan(scale[:2]).all()
    assert scale[2:].tolist() == pytest.approx([2.0, 2.5, 2.0, 1.75])


def test_a_scale_tiny_against_the_series_size_is_flat_and_tiny_series_are_not() -> None:
    """A series periodic but for float rounding had a seasonal scale of ~1e-21, which
    MASE divided by (1e11 and more); at most 1e-6 of the history's mean |y| it is 0,
    flat, like a constant series. A series that is merely small keeps its scale: MASE
    does not depend on the units."""
    t = np.arange(24 * 8)
    periodic = 1e-6 * np.sin(2 * np.pi * t / 24)
    assert 0 < np.abs(periodic[24:] - periodic[:-24]).max() < 1e-18  # noise, not 0
    assert (M.seasonal_scale(periodic, 24)[24:] == 0).all()
    level = 1e9 + np.sin(2 * np.pi * t / 24) * 1e-4  # changes of 1e-13 of its size
    assert (M.seasonal_scale(level + np.arange(len(t)) * 1e-7, 24)[24:] == 0).all()
    noisy = np.sin(2 * np.pi * t / 24) + np.random.default_rng(0).normal(0, 0.1, len(t))
    for units in (1.0, 1e-20, 1e20):
        assert M.seasonal_scale(noisy * units, 24)[24:] / units == pytest.approx(
            M.seasonal_scale(noisy, 24)[24:])


def test_history_std_is_the_population_std_of_each_prefix() -> None:
    values = np.array([1e6 + 1, 1e6 + 3, 1e6 + 5])
    assert M.history_std(values).tolist() == pytest.approx([0.0, 1.0, np.sqrt(8 / 3)])


def test_mase_mse_mae_by_hand() -> None:
    truth = np.array([[10.0, 12.0], [0.0, 0.0]])
    point = np.array([[11.0, 9.0], [1.0, -1.0]])
    errors = M.score(point, truth, scale=np.array([2.0, 0.0]), std=np.array([0.5, 1.0]))
    assert errors.mase[0] == pytest.approx((1 + 3) / 2 / 2)
    assert np.isnan(errors.mase[1])  # a zero scale is undefined, not infinite
    assert errors.mse[0] == pytest.approx(((1 / 0.5) ** 2 + (3 / 0.5) ** 2) / 2)
    assert errors.mae[0] == pytest.approx((2 + 6) / 2)
    assert errors.mse[1] == pytest.approx(1.0) and errors.mae[1] == pytest.approx(1.0)
    assert errors.mase_by_h.tolist() == pytest.approx([0.5, 1.5])  # the NaN row skipped


def test_aggregates_weigh_every_entity_the_same() -> None:
    values = np.array([1.0, 3.0, 10.0, np.nan])
    entity = np.array([0, 0, 1, 1])
    assert M.entity_mean(values, entity) == pytest.approx((2.0 + 10.0) / 2)


def test_owa_by_hand() -> None:
    assert M.owa(10.0, 1.0, 20.0, 2.0) == pytest.approx(0.5)
    assert M.owa(18.383, 2.395, 18.383, 2.395) == pytest.approx(1.0)


def test_overflowing_forecasts_score_inf_without_warnings() -> None:
    errors = M.score(np.array([[1e300]]), np.array([[0.0]]), np.array([1.0]), np.array([1e-300]))
    assert np.isinf(errors.mse[0])
