"""Scoring: the forecasts that new values resolve, against seasonal naive.

Each warm forecast is remembered at a few horizons (``online.horizons``: 1, the
half seasons and seasons, H) until its target arrives; then its absolute error,
in the entity's running standard deviations, feeds the engine's online error, the
seasonal-naive reference's on the same values, the drift detector (one-step
errors) and, with ``experts.enabled``, each expert's record
(``streammeta.online.experts``; the cheap experts' also from cold origins); with
``calibration.enabled`` the served forecasts' errors move the quantile offsets
(``streammeta.online.calibration``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from streammeta.online import cells, model
from streammeta.online.arena import Arena
from streammeta.online.calibration import Calibration
from streammeta.online.drift import PageHinkley
from streammeta.online.experts import Weighting
from streammeta.online.horizons import legacy, remap
from streammeta.online.horizons import scored as scored_horizons
from streammeta.online.result import Result


def scale(arena: Arena, slots: Tensor) -> Tensor:
    """Each entity's running standard deviation (B,), floored (``model.scale_floor``)."""
    mean = arena.ew_mean[slots]
    return torch.maximum(arena.ew_var[slots].sqrt(), model.scale_floor(mean))


class Scorer:
    def __init__(self, horizon: int, season: int, error_smoothing: float,
                 drift: PageHinkley | None, experts: Weighting | None = None,
                 calibration: Calibration | None = None) -> None:
        self.horizons = scored_horizons(horizon, season)
        self._legacy = legacy(horizon, season)  # records written without their horizons
        self.naive_lag = torch.tensor(
            [h + model.seasonal_back(h, season) for h in self.horizons])  # (S,)
        self.error_smoothing = error_smoothing
        self.drift = drift
        self.experts = experts
        self.calibration = calibration
        self.online_error = {"streammeta": math.nan, "seasonal_naive": math.nan}

    def score(self, arena: Arena, slots: Tensor, y: Tensor, result: Result,
              ring: Tensor | None = None) -> Tensor | None:
        """Score the warm forecasts whose target is this value, and seasonal naive on
        them; → which entities' error drifted (None: nothing was checked). ``ring``
        (B, R): the slots' rows of ``arena.ring`` (None: read here)."""
        j = arena.count[slots]  # absolute index the new value will take
        if self.calibration is not None:
            self.calibration.score(arena, slots, j, y)
        cell = arena.cells(j[:, None])  # (B, S)
        forecast = cells.take(arena.pending, slots, cell)  # (B, S)
        cells.clear(arena.pending, slots, cell)
        reference = j[:, None] >= self.naive_lag[None, :]  # seasonal naive's value seen
        valid = ~torch.isnan(forecast) & reference
        if not bool((valid if self.experts is None else reference).any()):
            return None
        if ring is None:
            ring = arena.ring.index_select(0, slots)  # (B, R)
        naive = torch.gather(ring, 1, (j[:, None] - self.naive_lag[None, :]) % arena.ring_len)
        s = scale(arena, slots)[:, None]
        if self.experts is not None:
            self.experts.score(arena, slots, j, y, forecast, naive, s, valid, reference, ring)
        if not bool(valid.any()):
            return None
        errors = (y[:, None] - forecast).abs() / s  # (B, S)
        drifted = None
        if self.drift is not None:
            drifted = self._detect_drift(arena, slots, errors[:, 0], valid[:, 0])
        model_err = errors[valid]
        naive_err = ((y[:, None] - naive).abs() / s)[valid]
        scored = int(valid.sum())
        result.scored += scored
        keep = (1.0 - self.error_smoothing) ** scored
        for name, err in (("streammeta", model_err), ("seasonal_naive", naive_err)):
            mean = float(err.mean())
            old = self.online_error[name]
            self.online_error[name] = mean if math.isnan(old) else old * keep + mean * (1 - keep)
        return drifted

    def commit(self) -> None:
        """The errors collected since the last commit enter the population's records."""
        if self.experts is not None:
            self.experts.commit()
        if self.calibration is not None:
            self.calibration.commit()

    def export_records(self) -> dict[str, object] | None:
        """The experts' record and analogues' store, with calibration's record under
        "calibration"."""
        record: dict[str, object] = {"horizons": list(self.horizons)}
        if self.experts is not None:
            record.update(self.experts.export())
        if self.calibration is not None:
            record["calibration"] = self.calibration.record.export()
        return record if len(record) > 1 else None

    def restore_records(self, state: dict[str, object]) -> bool:
        """Take records :meth:`export_records` wrote, mapped onto this scorer's scored
        horizons if they were kept at others (a new horizon starts with the record of
        the one that served its steps); False if a part does not fit."""
        state = self._onto_horizons(state)
        ok = self.experts is None or self.experts.restore(state)
        if self.calibration is not None and "calibration" in state:
            ok = self.calibration.record.restore(state["calibration"]) and ok
        return ok

    def _onto_horizons(self, state: dict[str, object]) -> dict[str, object]:
        stored = state.get("horizons")
        was = tuple(stored) if isinstance(stored, list | tuple) else self._legacy
        if was == self.horizons:
            return state
        state = dict(state)
        for key, last in (("mean", 2), ("count", 1)):  # the experts' population record:
            t = state.get(key)  # mean (2, S, E) or, older, (S, E); count (2, S)
            if isinstance(t, Tensor) and t.dim() > last - 1:
                axis = t.dim() - last
                if t.shape[axis] == len(was):
                    state[key] = remap(t, axis, was, self.horizons, None)
        calibration = state.get("calibration")
        if isinstance(calibration, dict) and isinstance(calibration.get("hist"), Tensor) \
                and calibration["hist"].shape[0] == len(was):
            state["calibration"] = {**calibration,
                                    "hist": remap(calibration["hist"], 0, was, self.horizons, None)}
        return state

    def _detect_drift(self, arena: Arena, slots: Tensor, error: Tensor,
                      valid: Tensor) -> Tensor:
        """Feed each entity's one-step error to its Page-Hinkley detector."""
        assert self.drift is not None
        drifted = torch.zeros(len(slots), dtype=torch.bool)
        if bool(valid.any()):
            drifted[valid] = self.drift.update(arena.drift, slots[valid], error[valid])
        return drifted
