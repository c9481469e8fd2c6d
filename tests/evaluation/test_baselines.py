from __future__ import annotations

import numpy as np
import pytest

from streammeta.evaluation import baselines as B
from streammeta.evaluation import scores as M
from streammeta.io import datasets

M4 = datasets.default_data_dir() / "m4-hourly"


def test_naive_and_seasonal_naive_by_hand() -> None:
    values = np.arange(10.0)
    origins = np.array([5])
    assert B.naive(values, origins, 3, 4).tolist() == [[5.0, 5.0, 5.0]]
    # m = 4, origin 5: targets 6..11 repeat the values 4 or 8 steps before them.
    assert B.seasonal_naive(values, origins, 6, 4).tolist() == [[2, 3, 4, 5, 2, 3]]
    assert B.seasonal_naive(values, np.array([1]), 2, 4).tolist() == [[1, 1]]  # < 1 season


def _acf_test_reference(y: np.ndarray, m: int) -> bool:
    """M4's R SeasonalityTest, written out directly."""
    n = len(y)
    if n < 3 * m:
        return False
    d = y - y.mean()
    acf = np.array([np.sum(d[: n - k] * d[k:]) for k in range(1, m + 1)]) / np.sum(d * d)
    limit = 1.645 / np.sqrt(n) * np.sqrt(1 + 2 * np.sum(acf[:-1] ** 2))
    return bool(abs(acf[-1]) > limit)


def test_seasonality_test_matches_the_direct_formula_for_every_prefix() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(120)
    y = 50 + 1.2 * np.sin(2 * np.pi * t / 6) + rng.normal(0, 1, len(t))  # weakly seasonal
    got = B.seasonality_test(y, 6)
    expected = [_acf_test_reference(y[: i + 1], 6) for i in range(len(y))]
    assert got.tolist() == expected
    assert 0 < sum(expected) < len(expected)  # both answers occur


def test_seasonal_indices_by_hand() -> None:
    # m = 2, values 1, 2, 1, 2, …: the 2×2 moving average is 1.5 everywhere, so the
    # ratios are 2/3 (phase 0) and 4/3 (phase 1), already with mean 1.
    y = np.tile([1.0, 2.0], 5)
    index = B.seasonal_indices(y, 2)
    assert np.isnan(index[:3]).all()  # phase 0's first centre (2) needs y_3: seen from t = 3
    assert np.allclose(index[3:], [[2 / 3, 4 / 3]] * 7)


def test_naive2_continues_a_multiplicative_season() -> None:
    pattern = np.array([0.5, 1.5, 1.2, 0.8])
    y = 10 * np.tile(pattern, 10)
    f = B.naive2(y, np.array([len(y) - 1]), 6, 4)
    assert f[0].tolist() == pytest.approx((10 * np.tile(pattern, 2)[:6]).tolist())
    noise = np.random.default_rng(0).uniform(9, 11, 40)  # not seasonal: the naive forecast
    assert B.naive2(noise, np.array([39]), 3, 4)[0].tolist() == [noise[39]] * 3


@pytest.mark.parametrize("name", list(B.BASELINES))
def test_every_baseline_is_leakage_free(name: str) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(150)
    y = 20 + 5 * np.sin(2 * np.pi * t / 12) + 0.05 * t + rng.normal(0, 0.5, len(t))
    origins = np.array([40, 80, 100])
    garbage = y.copy()
    garbage[101:] = rng.uniform(-1e3, 1e3, len(y) - 101)
    forecast = B.BASELINES[name]
    clean = forecast(y, origins, 24, 12)
    assert clean.shape == (3, 24) and np.isfinite(clean).all()
    assert forecast(garbage, origins, 24, 12).tolist() == clean.tolist()


@pytest.mark.skipif(not (M4 / "Hourly-test.csv").is_file(), reason="no ../shared/data")
def test_m4_hourly_seasonal_naive_and_naive2_reproduce_the_published_figures() -> None:
    train = datasets.load(M4, "m4")
    test = datasets.load_m4_test(M4 / "Hourly-test.csv")
    for name, (smape, mase) in {"seasonal-naive": (13.912, 1.193),
                                "naive2": (18.383, 2.395)}.items():
        s_all, m_all = [], []
        for s in train:
            origin = np.array([len(s) - 1])
            f = B.BASELINES[name](s.values, origin, 48, 24)
            e = M.score(f, test[s.entity][None, :48], M.seasonal_scale(s.values, 24)[origin],
                        np.ones(1))
            s_all.append(e.smape[0])
            m_all.append(e.mase[0])
        assert round(float(np.mean(s_all)), 3) == smape
        assert round(float(np.mean(m_all)), 3) == mase

