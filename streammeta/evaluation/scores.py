"""Accuracy metrics of the evaluation: per forecast, then aggregated.

A *forecast* here is one row of H values made at an origin (an entity's
observation at position t) for t+1..t+H. Per forecast:

* sMAPE = 200/H · Σ_h |y−ŷ| / (|y|+|ŷ|), a term with |y|+|ŷ| = 0 counting 0 (M4);
* MASE = mean_h |y−ŷ| / scale, scale = mean |y_i − y_{i−m}| over the entity's
  history up to the origin (for M4 final origin: its whole training part); a history
  whose scale is 0, or at most ``FLAT_SHARE`` (1e-6) of its mean |y|, is flat: MASE
  (and the scaled pinball) leave the origin out, the other metrics score it;
* MSE, MAE = mean_h of (y−ŷ)² and |y−ŷ| in standardised units: divided by
  ``std`` (1 where the values are already standardised, as in the ETT protocol).

Aggregation over a slice: the mean over entities of each entity's mean over its
forecasts (every entity weighs the same, as in M4; with equal counts per entity,
as in the ETT protocol, it equals the plain mean). OWA = ½ (sMAPE / sMAPE_Naive2 +
MASE / MASE_Naive2) of the aggregated figures on the same slice (M4's definition).

Probabilistic, per forecast with quantiles ŷ_q at levels q (the engine's
``series.quantiles``, 0.1 / 0.5 / 0.9 by default):

* pinball = mean over q and h of 2·ρ_q(y − ŷ_q) / scale, ρ_q(u) = max(q·u, (q−1)·u),
  scaled like MASE (at q = 0.5 the term is MASE's): a scaled quantile loss, the
  usual discrete approximation of scaled CRPS;
* coverage = share of the H targets inside [ŷ_{q_min}, ŷ_{q_max}] (the 0.1–0.9
  interval by default: nominal 80%).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METRICS = ("smape", "mase", "owa", "mse", "mae", "pinball", "coverage")


@dataclass
class ForecastErrors:
    """Per-forecast errors (N,) and per-horizon means (H,) of one method."""

    smape: np.ndarray
    mase: np.ndarray
    mse: np.ndarray
    mae: np.ndarray
    smape_by_h: np.ndarray  # (H,) mean over forecasts, for plots
    mase_by_h: np.ndarray
    mse_by_h: np.ndarray
    # (N,) NaN where the method has no quantiles (or not at that origin)
    pinball: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coverage: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if len(self.pinball) != len(self.smape):
            self.pinball = np.full(len(self.smape), np.nan)
        if len(self.coverage) != len(self.smape):
            self.coverage = np.full(len(self.smape), np.nan)


def smape_terms(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """200 |y−ŷ| / (|y|+|ŷ|) elementwise; 0 where both are 0; NaN where either is not
    finite (no forecast is not a perfect one: it is left out of the means, as MASE's
    term is)."""
    with np.errstate(invalid="ignore", over="ignore"):
        denom = np.abs(y) + np.abs(f)
        safe = np.where(denom > 0, denom, 1.0)
        terms = np.where(denom > 0, 200.0 * np.abs(y - f) / safe, 0.0)
    return np.where(np.isfinite(y) & np.isfinite(f), terms, np.nan)


# A seasonal scale at most this share of the history's mean |y| is flat (0: MASE and
# the scaled pinball leave the origin out). The engine computes in float32 (about 1e-7
# of a value's size): errors below a few of its steps measure rounding, not forecasts,
# and a series periodic but for float noise (1e-6·sin: scale ~1e-21) gave MASE 1e11.
FLAT_SHARE = 1e-6


def seasonal_scale(values: np.ndarray, m: int) -> np.ndarray:
    """Scale of MASE for an origin at every position t: mean |y_i − y_{i−m}| over
    i = m..t, from the history up to t only → (T,); NaN where t < m; 0 (flat) where
    it is at most ``FLAT_SHARE`` of the mean |y_i| over i = 0..t."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(values), np.nan)
    if len(values) <= m:
        return out
    diffs = np.abs(values[m:] - values[:-m])  # diffs[j] belongs to position j+m
    scale = np.cumsum(diffs) / np.arange(1, len(diffs) + 1)
    size = (np.cumsum(np.abs(values)) / np.arange(1, len(values) + 1))[m:]
    out[m:] = np.where(scale > FLAT_SHARE * size, scale, 0.0)
    return out


def history_std(values: np.ndarray) -> np.ndarray:
    """Population standard deviation of y_0..y_t for every t → (T,)."""
    values = np.asarray(values, dtype=np.float64)
    x = values - values[0]  # shifted: sums of squares without cancellation of a big level
    n = np.arange(1, len(x) + 1)
    mean = np.cumsum(x) / n
    var = np.cumsum(x * x) / n - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def score(point: np.ndarray, truth: np.ndarray, scale: np.ndarray, std: np.ndarray,
          quantiles: np.ndarray | None = None,
          levels: np.ndarray | None = None) -> ForecastErrors:
    """point, truth (N, H); scale, std (N,); optional quantiles (N, Q, H) at
    ``levels`` (Q,) → per-forecast errors.

    A forecast with a non-finite value, or a non-positive scale or std, gets NaN
    for the metrics that need it (excluded from the aggregates).
    """
    point = point.astype(np.float64)
    # A diverging method may overflow: its errors become inf, never a warning.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        err = truth - point  # (N, H)
        absolute = np.abs(err)
        terms = smape_terms(truth, point)  # (N, H)
        scale = np.where(scale > 0, scale, np.nan)[:, None]  # (N, 1)
        std = np.where(std > 0, std, np.nan)[:, None]
        scaled = absolute / scale  # (N, H)
        standard = err / std
        squared = np.square(standard)
        pinball = coverage = np.zeros(0)
        if quantiles is not None and levels is not None:
            pinball, coverage = quantile_scores(quantiles, levels, truth, scale[:, 0])
        return ForecastErrors(
            smape=terms.mean(axis=1), mase=scaled.mean(axis=1), mse=squared.mean(axis=1),
            mae=np.abs(standard).mean(axis=1), smape_by_h=_nanmean0(terms),
            mase_by_h=_nanmean0(scaled), mse_by_h=_nanmean0(squared), pinball=pinball,
            coverage=coverage)


def quantile_scores(quantiles: np.ndarray, levels: np.ndarray, truth: np.ndarray,
                    scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """quantiles (N, Q, H) at ``levels`` (Q,), truth (N, H), scale (N,) → per forecast
    (scaled pinball (N,), coverage of [lowest, highest level] (N,)); NaN where a
    quantile is not finite (pinball also where the scale is not positive)."""
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)[None, :, None]  # (1, Q, 1)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        u = truth[:, None, :] - q  # (N, Q, H)
        loss = 2.0 * np.maximum(levels * u, (levels - 1.0) * u)
        safe = np.where(scale > 0, scale, np.nan)
        pinball = loss.mean(axis=(1, 2)) / safe
        inside = (truth >= q[:, 0, :]) & (truth <= q[:, -1, :])  # (N, H)
        coverage = inside.mean(axis=1)
    finite = np.isfinite(q).all(axis=(1, 2))
    return np.where(finite, pinball, np.nan), np.where(finite, coverage, np.nan)


def _nanmean0(x: np.ndarray) -> np.ndarray:
    if len(x) == 0 or bool(np.isnan(x).all()):
        return np.full(x.shape[1], np.nan)
    ok = ~np.isnan(x)
    return np.where(ok, x, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)


def entity_mean(values: np.ndarray, entity: np.ndarray) -> float:
    """Mean over entities of each entity's mean of ``values`` (NaNs skipped)."""
    ok = ~np.isnan(values)
    if not bool(ok.any()):
        return float("nan")
    ent = entity[ok]
    sums = np.bincount(ent, weights=values[ok])
    counts = np.bincount(ent)
    has = counts > 0
    return float(np.mean(sums[has] / counts[has]))


def owa(smape: float, mase: float, smape_naive2: float, mase_naive2: float) -> float:
    """Overall weighted average relative to Naive2 (M4); NaN where Naive2's sMAPE or
    MASE is zero or undefined (constant series: Naive2 is exact, MASE has no scale)."""
    if not (smape_naive2 > 0 and mase_naive2 > 0):  # also False for NaN
        return float("nan")
    return 0.5 * (smape / smape_naive2 + mase / mase_naive2)


def aggregate(errors: ForecastErrors, mask: np.ndarray, entity: np.ndarray,
              metrics: tuple[str, ...]) -> dict[str, float]:
    """Aggregated metrics (those in ``metrics`` except OWA) over forecasts ``mask``."""
    out: dict[str, float] = {}
    for name in metrics:
        if name != "owa":
            out[name] = entity_mean(getattr(errors, name)[mask], entity[mask])
    return out
