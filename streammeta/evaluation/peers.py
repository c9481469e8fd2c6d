"""Peers of the evaluation: statsforecast's AutoETS, AutoARIMA and AutoTheta.

What a user would run instead of streammeta. Each peer is fitted on an entity's
history up to an origin (the last ``fit_window`` values of it, see
:class:`PeerPlan`) and forecasts t+1..t+H with prediction intervals; the
quantile at level q is the bound of the (|2q − 1|·100)% interval (level 80 →
0.1 and 0.9), the point the 0.5 quantile. All histories of a run go through one
batched ``StatsForecast(models=[...], freq=1, n_jobs=1)`` call with integer
``ds``.

A history too short for statsforecast (fewer than :data:`MIN_VALUES` values), or
one on which a model raises or returns a non-finite value, gets the seasonal
naive forecast with its quantiles (:func:`baselines.seasonal_naive_quantiles`)
instead: counted per peer in :attr:`PeerForecasts.fallbacks` and reported.

AutoARIMA's default search on a season above 12 (hourly, m = 24) took 67–97 s
per M4 hourly series on the 2-core development machine: there it searches
p, q ≤ 2 and P, Q ≤ 1 with the approximate likelihood (3–4 s a series), and
says so in a note. statsforecast is an optional dependency (the ``eval``
extra): without it the peers are skipped with a note.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from streammeta.errors import DataError
from streammeta.evaluation import baselines
from streammeta.evaluation.protocols import Task

PEERS = {"auto-ets": "AutoETS", "auto-arima": "AutoARIMA", "auto-theta": "AutoTheta"}
MIN_VALUES = 3  # statsforecast's models need a few values; fewer: seasonal naive
SMALL_ARIMA_ABOVE = 12  # seasons above this get AutoARIMA's reduced search


def available() -> bool:
    return importlib.util.find_spec("statsforecast") is not None


def arima_note(season: int) -> str | None:
    if season > SMALL_ARIMA_ABOVE:
        return (f"auto-arima: season {season} > {SMALL_ARIMA_ABOVE}, so the reduced search "
                "p,q <= 2, P,Q <= 1 with the approximate likelihood (the default search "
                "took 67-97 s per M4 hourly series)")
    return None


def _model(name: str, season: int) -> Any:
    from statsforecast import models

    if name == "auto-arima" and season > SMALL_ARIMA_ABOVE:
        return models.AutoARIMA(season_length=season, max_p=2, max_q=2, max_P=1, max_Q=1,
                                approximation=True, alias=PEERS[name])
    return getattr(models, PEERS[name])(season_length=season, alias=PEERS[name])


def interval_levels(levels: np.ndarray) -> list[int]:
    """The prediction-interval levels (%) whose bounds are the quantile ``levels``."""
    out = sorted({round(abs(2 * float(q) - 1) * 100) for q in levels if q != 0.5})
    return [lv for lv in out if lv > 0]


def _batched(frame: Any, model: Any, horizon: int, intervals: list[int]) -> Any:
    """One StatsForecast call over every history; if it raises (one history breaks
    the model), one call per history, leaving out those that raise."""
    import pandas as pd
    from statsforecast import StatsForecast

    def run(df: Any) -> Any:
        with warnings.catch_warnings():  # convergence chatter of the optimisers
            warnings.simplefilter("ignore")
            sf = StatsForecast(models=[model], freq=1, n_jobs=1)
            return sf.forecast(df=df, h=horizon, level=intervals or None)

    try:
        return run(frame)
    except Exception:  # statsforecast raises assorted errors on degenerate series
        parts = []
        for _, df in frame.groupby("unique_id", sort=False):
            try:
                parts.append(run(df))
            except Exception:
                continue  # seasonal naive for it (counted as a fallback)
        return pd.concat(parts) if parts else None


@dataclass
class PeerForecasts:
    point: np.ndarray  # (N, H)
    quantiles: np.ndarray  # (N, Q, H)
    fallbacks: int  # histories forecast by seasonal naive instead
    seconds: float


def forecast(names: list[str], histories: list[np.ndarray], horizon: int, season: int,
             levels: np.ndarray) -> dict[str, PeerForecasts]:
    """Every peer in ``names`` fitted on every history → its forecasts from the end of
    each history (rows in the order of ``histories``)."""
    import time

    if not available():
        raise DataError("the peers need statsforecast: pip install 'streammeta[eval]'")
    import pandas as pd

    N, H = len(histories), horizon
    lengths = np.array([len(h) for h in histories])
    fits = np.flatnonzero(lengths >= MIN_VALUES)
    frame = pd.DataFrame({
        "unique_id": np.repeat(fits, lengths[fits]),
        "ds": np.concatenate([np.arange(n) for n in lengths[fits]] or [np.zeros(0, int)]),
        "y": np.concatenate([histories[i] for i in fits] or [np.zeros(0)]),
    })
    out = {}
    intervals = interval_levels(levels)
    for name in names:
        started = time.perf_counter()
        point = np.full((N, H), np.nan)
        quant = np.full((N, len(levels), H), np.nan)
        if len(fits):
            alias = PEERS[name]
            result = _batched(frame, _model(name, season), H, intervals)
        if len(fits) and result is not None:
            result = result.sort_values(["unique_id", "ds"])
            ids = result["unique_id"].to_numpy().reshape(-1, H)[:, 0]
            point[ids] = result[alias].to_numpy().reshape(-1, H)
            for j, q in enumerate(levels):
                if q == 0.5:
                    column = alias
                else:
                    side = "lo" if q < 0.5 else "hi"
                    column = f"{alias}-{side}-{round(abs(2 * float(q) - 1) * 100)}"
                quant[ids, j] = result[column].to_numpy().reshape(-1, H)
        bad = ~(np.isfinite(point).all(axis=1) & np.isfinite(quant).all(axis=(1, 2)))
        for i in np.flatnonzero(bad):  # too short, or the model failed on it
            y, at = histories[i], np.array([len(histories[i]) - 1])
            point[i] = baselines.seasonal_naive(y, at, H, season)[0]
            quant[i] = baselines.seasonal_naive_quantiles(y, at, H, season, levels)[0]
        out[name] = PeerForecasts(point, quant, int(bad.sum()), time.perf_counter() - started)
    return out


@dataclass(frozen=True)
class PeerPlan:
    """Where the peers forecast: on ``final-origin`` every origin; on ``rolling`` and
    ``ett`` (an origin per observation: a refit at each is out of reach) every
    ``cadence`` steps from each entity's first scored origin, the cadence a whole
    number of seasons giving about ``origins`` refits per entity. ``series`` > 0
    keeps that many entities, evenly spaced; ``fit_window`` > 0 fits on the last
    that many values of the history only."""

    origins: int = 4
    series: int = 0
    fit_window: int = 0

    def rows(self, task: Task) -> tuple[np.ndarray, int]:
        """→ (indices of the origins where the peers forecast, cadence in steps; 0 for
        every origin)."""
        keep = np.ones(len(task.ent), dtype=bool)
        S = len(task.stream)
        if 0 < self.series < S:
            picked = np.unique(np.linspace(0, S - 1, self.series).round().astype(np.int64))
            keep &= np.isin(task.ent, picked)
        if task.protocol == "final-origin":
            return np.flatnonzero(keep), 0
        bounds = np.searchsorted(task.ent, np.arange(S + 1))
        has = bounds[1:] > bounds[:-1]
        first = np.zeros(S, dtype=np.int64)
        first[has] = task.pos[bounds[:-1][has]]
        spans = (bounds[1:] - bounds[:-1])[has]
        span = float(np.median(spans)) if len(spans) else 1.0
        m = max(1, task.season)
        cadence = m * max(1, int(np.ceil(span / (max(1, self.origins) * m))))
        keep &= (task.pos - first[task.ent]) % cadence == 0
        return np.flatnonzero(keep), cadence

    def histories(self, task: Task, rows: np.ndarray) -> list[np.ndarray]:
        out = []
        for k, t in zip(task.ent[rows].tolist(), task.pos[rows].tolist(), strict=True):
            lo = max(0, t + 1 - self.fit_window) if self.fit_window > 0 else 0
            out.append(task.stream[k].values[lo:t + 1])
        return out
