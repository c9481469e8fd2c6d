"""Baseline forecasters of the evaluation, one entity at a time.

Every baseline takes an entity's streamed values and the origins (positions t,
increasing) to forecast from, and returns (len(origins), H) forecasts of
t+1..t+H made from ``values[:t+1]`` only — leakage-free by construction, which
the tests check by replacing later values with garbage.

* ``naive``: the last value.
* ``seasonal_naive``: the value one season (m) before each target.
* ``naive2`` (M4's benchmark): if the history passes the 90% autocorrelation
  test at lag m (and holds at least 3m values), divide by the seasonal indices of
  a classical multiplicative decomposition (R's ``decompose``: 2×m centred moving
  average, index = mean of value/trend per phase, normalised to mean 1), repeat
  the last adjusted value and multiply the indices back; else the naive forecast.
  Computed for every origin at once with prefix sums over the history.
* quantiles (``QUANTILES``) of ``naive`` and ``seasonal_naive`` only: Gaussian
  around the point, σ the root mean square of the method's own one-step (naive)
  or one-season (seasonal naive) residuals in the history, widened for lead h by
  √h (naive) or √(⌊(h−1)/m⌋ + 1) (seasonal naive), as in fpp3 §5.5. Naive2 and
  the river models have none.
* ``holt_winters``, ``snarimax``: river's online models, one per entity, learning
  each value as it arrives and forecasting H steps at every origin (settings in
  :func:`holt_winters_model` and :func:`snarimax_model`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np

from streammeta.online.model import seasonal_back

Baseline = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]


def naive(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    return np.repeat(values[origins][:, None], horizon, axis=1)


def seasonal_lags(horizon: int, season: int) -> np.ndarray:
    """How far back from the origin each target's seasonal-naive value lies: (H,)."""
    return np.array([seasonal_back(h, season) for h in range(1, horizon + 1)], dtype=np.int64)


def seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int,
                   season: int) -> np.ndarray:
    back = seasonal_lags(horizon, season)[None, :]  # (1, H)
    # With less than a season of history, the last value.
    back = np.where(origins[:, None] >= season - 1, back, 0)
    return values[origins[:, None] - back]


def residual_quantiles(values: np.ndarray, origins: np.ndarray, horizon: int, lag: int,
                       levels: np.ndarray) -> np.ndarray:
    """Gaussian quantiles (N, Q, H) around the lag-``lag`` naive forecast (``lag`` = 1:
    naive, m: seasonal naive), σ from the history's lag-``lag`` residuals up to
    each origin; where there is no such residual yet, the lag-1 residuals' σ
    widened by √h. NaN with no residual at all (a single value)."""
    y = np.asarray(values, dtype=np.float64)
    h = np.arange(1, horizon + 1)

    def sigma(k: int) -> np.ndarray:  # (N,) RMS of y_i − y_{i−k}, i ≤ origin
        sq = np.zeros(len(y))
        if len(y) > k:
            sq[k:] = np.square(y[k:] - y[:-k])
        count = np.arange(len(y)) - k + 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, np.sqrt(np.cumsum(sq) / np.maximum(count, 1)),
                            np.nan)[origins]

    point = naive(y, origins, horizon, lag) if lag == 1 else seasonal_naive(y, origins,
                                                                            horizon, lag)
    own = sigma(lag)[:, None] * np.sqrt((h - 1) // lag + 1)[None, :]  # (N, H)
    spread = np.where(np.isfinite(own), own, sigma(1)[:, None] * np.sqrt(h)[None, :])
    z = np.array([NormalDist().inv_cdf(float(q)) for q in levels])  # (Q,)
    return point[:, None, :] + z[None, :, None] * spread[:, None, :]


def naive_quantiles(values: np.ndarray, origins: np.ndarray, horizon: int, season: int,
                    levels: np.ndarray) -> np.ndarray:
    return residual_quantiles(values, origins, horizon, 1, levels)


def seasonal_naive_quantiles(values: np.ndarray, origins: np.ndarray, horizon: int,
                             season: int, levels: np.ndarray) -> np.ndarray:
    return residual_quantiles(values, origins, horizon, max(1, season), levels)


def seasonality_test(values: np.ndarray, season: int) -> np.ndarray:
    """M4's test for every prefix: is y_0..y_t seasonal at lag m? → (T,) bool.

    |acf_m| > 1.645 · sqrt((1 + 2 Σ_{k<m} acf_k²) / n), n = t+1 ≥ 3m, with R's acf
    (deviations from the prefix mean, divided by the prefix's sum of squares).
    """
    T, m = len(values), season
    out = np.zeros(T, dtype=bool)
    if m < 2 or 3 * m > T:
        return out
    x = np.asarray(values, dtype=np.float64) - values[0]  # shift: the acf is shift-invariant
    n = np.arange(1, T + 1, dtype=np.float64)  # prefix lengths
    s1 = np.concatenate([[0.0], np.cumsum(x)])  # s1[j] = Σ_{i<j} x_i
    mean = s1[1:] / n
    denom = np.cumsum(x * x) - n * mean * mean  # (T,) Σ (x_i − x̄)²
    with np.errstate(divide="ignore", invalid="ignore"):
        acf = np.zeros((m, T))
        for k in range(1, m + 1):  # loop over lags, vectorised over prefixes
            prod = np.zeros(T)
            prod[k:] = x[k:] * x[:-k]  # belongs to the prefix that contains x_{i+k}
            lagged = np.cumsum(prod)  # Σ_{i+k<n} x_i x_{i+k}
            nk = n - k
            head = s1[np.maximum(n - k, 0).astype(np.int64)]  # Σ_{i<n-k} x_i
            tail = s1[1:] - s1[min(k, T)]  # Σ_{k≤i<n} x_i
            num = lagged - mean * (head + tail) + nk * mean * mean
            acf[k - 1] = np.where((nk > 0) & (denom > 0), num / denom, 0.0)
        limit = 1.645 / np.sqrt(n) * np.sqrt(1.0 + 2.0 * np.square(acf[:-1]).sum(axis=0))
    out = (np.abs(acf[-1]) > limit) & (n >= 3 * m)
    return out


def seasonal_indices(values: np.ndarray, season: int) -> np.ndarray:
    """Classical multiplicative seasonal indices from y_0..y_t, for every t → (T, m).

    Row t holds the index of each phase (position mod m) estimated from the
    history up to t (NaN until every phase has a ratio). The centred moving
    average at i needs y up to i + ⌊m/2⌋, so only ratios with i + ⌊m/2⌋ ≤ t count.
    """
    T, m = len(values), season
    half = m // 2
    y = np.asarray(values, dtype=np.float64)
    out = np.full((T, m), np.nan)
    if m + 2 * half > T:
        return out
    c = np.concatenate([[0.0], np.cumsum(y)])
    centres = np.arange(half, T - half)  # positions with a full moving-average window
    if m % 2 == 0:  # 2×m MA: weights ½, 1, …, 1, ½ over i−m/2 .. i+m/2
        trend = (c[centres + half] - c[centres - half + 1]
                 + 0.5 * (y[centres - half] + y[centres + half])) / m
    else:
        trend = (c[centres + half + 1] - c[centres - half]) / m
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(trend > 0, y[centres] / trend, np.nan)
    onehot = np.zeros((len(centres), m))
    onehot[np.arange(len(centres)), centres % m] = 1.0
    ok = ~np.isnan(ratio)
    sums = np.cumsum(np.where(ok, ratio, 0.0)[:, None] * onehot, axis=0)  # (C, m)
    counts = np.cumsum(ok[:, None] * onehot, axis=0)
    # Origin t sees the ratios of centres half..t−half: cumulative row t − 2·half.
    rows = np.arange(T) - 2 * half
    valid = rows >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        figure = sums[rows[valid]] / counts[rows[valid]]  # (V, m)
        figure = figure / figure.mean(axis=1, keepdims=True)
    out[valid] = figure
    return out


def naive2(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    y = np.asarray(values, dtype=np.float64)
    point = naive(y, origins, horizon, season)
    if season < 2 or len(origins) == 0:
        return point
    seasonal = seasonality_test(y, season)[origins]  # (N,)
    positive = np.minimum.accumulate(y)[origins] > 0  # multiplicative needs positive values
    index = seasonal_indices(y, season)[origins]  # (N, m)
    use = seasonal & positive & np.isfinite(index).all(axis=1) & (index > 0).all(axis=1)
    if not bool(use.any()):
        return point
    o, idx = origins[use], index[use]
    rows = np.arange(len(o))[:, None]
    adjusted = y[o] / idx[np.arange(len(o)), o % season]  # (U,) last value, deseasonalised
    phase = (o[:, None] + np.arange(1, horizon + 1)[None, :]) % season  # (U, H)
    point[use] = adjusted[:, None] * idx[rows, phase]
    return point


# -- river's online models ----------------------------------------------------------
def holt_winters_model(season: int, multiplicative: bool = True) -> Any:
    """Holt-Winters with fixed smoothing (river has no online fitting of them): level
    0.1, trend 0.01, season 0.6 — the lowest MASE of a grid (level 0.1/0.3/0.5, trend
    0/0.01, season 0.1/0.3/0.6, additive/multiplicative) on the bundled M4 subset.
    Multiplicative needs positive values: :func:`holt_winters` uses additive for an
    entity with a value <= 0 before its first origin (standardised data such as ETT)."""
    from river import time_series

    return time_series.HoltWinters(alpha=0.1, beta=0.01, gamma=0.6, seasonality=season,
                                   multiplicative=multiplicative)


def snarimax_model(season: int) -> Any:
    """SNARIMAX(p=3, d=0, q=1)(sp=1, sd=1, sq=1)_m: seasonally differenced, river's
    linear model by SGD on standardised lag features, the target standardised online,
    gradients clipped at 1, learning rate 0.001, L2 0.01. Faster SGD diverged on some
    M4 series and made explosive multi-step forecasts on ETT (recursive AR); these
    settings keep most forecasts sane, not all. Each update
    costs O(p + q + sp + sq), a forecast O(H)."""
    from river import linear_model, optim, preprocessing, time_series

    regressor: Any = preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.SGD(0.001), intercept_lr=0.01, clip_gradient=1.0, l2=0.01)
    return time_series.SNARIMAX(
        p=3, d=0, q=1, m=season, sp=1, sd=1, sq=1,
        regressor=preprocessing.TargetStandardScaler(regressor=regressor))


def river_forecasts(make: Callable[[int], Any], values: np.ndarray, origins: np.ndarray,
                    horizon: int, season: int) -> np.ndarray:
    """One river model for this entity: learn each value in turn, forecast at the origins.

    A model that cannot forecast yet (still initialising) or returns a non-finite
    value gives the seasonal-naive forecast for that origin, like the engine's cold
    rows, so every method is scored on the same origins.
    """
    model: Any = make(season)
    out = seasonal_naive(np.asarray(values, dtype=np.float64), origins, horizon, season)
    targets = set(origins.tolist())
    row = 0
    stop = int(origins[-1]) + 1 if len(origins) else 0
    for t, y in enumerate(values[:stop].tolist()):
        if model is not None:
            try:
                model.learn_one(y)
            except (ZeroDivisionError, OverflowError, ValueError):
                model = None  # e.g. multiplicative on a zero: seasonal naive from here on
        if t in targets:
            f = np.full(horizon, np.nan)
            # A model still initialising raises: seasonal naive for this origin.
            with contextlib.suppress(IndexError, ZeroDivisionError, TypeError, ValueError,
                                     OverflowError):
                if model is not None:
                    f = np.asarray(model.forecast(horizon=horizon), dtype=np.float64)
            if f.shape == (horizon,) and bool(np.isfinite(f).all()):
                out[row] = f
            row += 1
    return out


def holt_winters(values: np.ndarray, origins: np.ndarray, horizon: int,
                 season: int) -> np.ndarray:
    # Decided from the history before the first forecast: no peeking at later values.
    first = int(origins[0]) + 1 if len(origins) else len(values)
    positive = bool((np.asarray(values[:first]) > 0).all())
    return river_forecasts(lambda m: holt_winters_model(m, positive), values, origins,
                           horizon, season)


def snarimax(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    return river_forecasts(snarimax_model, values, origins, horizon, season)


BASELINES: dict[str, Baseline] = {
    "naive": naive,
    "seasonal-naive": seasonal_naive,
    "naive2": naive2,
    "holt-winters": holt_winters,
    "snarimax": snarimax,
}
QUANTILES: dict[str, Callable[[np.ndarray, np.ndarray, int, int, np.ndarray], np.ndarray]] = {
    "naive": naive_quantiles,
    "seasonal-naive": seasonal_naive_quantiles,
}

