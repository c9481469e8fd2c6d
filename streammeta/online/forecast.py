"""Forecasting: t+1..t+H from every accepted observation.

Warm entities (at least ``warm_at`` values) are forecast by the model from their
newest L values, standardised by those values, with quantiles from the model's spread;
a younger window is completed with its first season. Cold entities get seasonal naive
once a season is seen, else the last value (a season longer than half the warm-up:
the experts' blend from one season on, ``streammeta.online.longseason``), with
quantiles from the running standard deviation, widened (with calibration) to the
Student interval of the entity's own naive h-step errors (``streammeta.online.young``).
Warm forecasts are remembered at the scored horizons until their targets arrive
(``streammeta.online.scoring``); with ``experts.enabled`` the model is scored alone but
warm rows are served its blend with the cheap experts (``streammeta.online.experts``);
with ``calibration.enabled`` the warm rows' quantiles are set around what is served
from its own realised errors
(``streammeta.online.calibration``). Last, warm rows' forecasts are held within the
range of the entity's newest L values widened by that range on each side, and at 0 or
above where those values are (:func:`plausible`); cold rows within the range of every
value they have.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from streammeta.config import ModelConfig
from streammeta.online import model, young
from streammeta.online.arena import Arena, window
from streammeta.online.calibration import Calibration
from streammeta.online.cells import put as put_cells
from streammeta.online.experts import Weighting
from streammeta.online.guard import Guard
from streammeta.online.result import Forecasts, Result
from streammeta.online.scoring import scale


def warm_at(config: ModelConfig, season: int) -> int:
    """Values an entity needs before the model forecasts it: ``model.warm_after``, at
    least a whole first season (a young window is completed with it), at most L
    (``config`` resolved: see ``Config.resolved``)."""
    return min(max(config.warm_after, season), config.window)


def plausible(lo: Tensor, hi: Tensor, warm: Tensor, point: Tensor, quant: Tensor) -> None:
    """In place: ``warm`` rows' forecasts held within the range [lo, hi] (B,) of the
    entity's recent values widened by that range on each side, and at 0 or above
    where those values are. The model works in asinh units (about logarithms), where an offset of a
    few units is a factor of hundreds: a short erratic series' calibrated quantiles
    otherwise reach 10⁴ times its level. Monotone, so quantiles stay coherent."""
    span = torch.maximum(hi - lo, 0.1 * torch.maximum(hi.abs(), lo.abs()))
    floor = torch.where(lo >= 0, (lo - span).clamp(min=0.0), lo - span)
    inf = torch.full_like(lo, float("inf"))
    floor, ceil = torch.where(warm, floor, -inf), torch.where(warm, hi + span, inf)
    point.copy_(torch.minimum(torch.maximum(point, floor[:, None]), ceil[:, None]))
    if quant.numel():
        quant.copy_(torch.minimum(torch.maximum(quant, floor[:, None, None]),
                                  ceil[:, None, None]))


class Forecaster:
    def __init__(self, shape: model.ModelShape, warm_at: int,
                 horizons: tuple[int, ...], experts: Weighting | None = None,
                 calibration: Calibration | None = None) -> None:
        self.shape = shape
        self.warm_at = warm_at
        self.z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(shape.quantiles))  # (Q,)
        self._h = torch.tensor(horizons)  # (S,) the scored horizons
        self._naive_back = torch.tensor(
            [model.seasonal_back(h, shape.season) for h in range(1, shape.horizon + 1)])  # (H,)
        self.experts = experts
        self.calibration = calibration

    def forecast(self, params: model.Params, guard: Guard, arena: Arena, rows: np.ndarray,
                 slots: Tensor, ts: Tensor, n: Tensor, history: Tensor,
                 weight: Tensor | None, result: Result) -> Forecasts:
        """n (B,) values seen (the newest at n-1), history (B, 2R) → one forecast per row.
        ``weight``: the served version's share under the guard (None: it serves alone)."""
        H = self.shape.horizon
        warm = n >= self.warm_at
        all_warm = bool(warm.all())
        recent: Tensor | None = None  # the warm rows' newest L values (model units)
        if all_warm:  # the steady state: no scatter into a preallocated batch
            point, spread, recent = self._model(params, guard, arena, slots, n, history,
                                                weight, result)
        else:
            point, spread = self._mixed(params, guard, arena, slots, n, history, warm, weight,
                                        result)
        if all_warm and self.calibration is not None:
            # Calibration sets every row's quantiles: the model's are never served, so
            # none are made (no levels: the experts' shift of them costs nothing).
            quant = point.new_empty(len(point), 0, H)
        else:
            quant = point[:, None, :] + spread[:, None, :] * self.z[None, :, None]
        # Remember warm forecasts at the scored horizons until their targets arrive.
        cells = arena.cells(n[:, None] - 1 + self._h[None, :])  # (B, S) the targets' cells
        at_h = point[:, self._h - 1]  # (B, S)
        at_h = torch.where(warm[:, None], at_h, torch.full_like(at_h, float("nan")))
        put_cells(arena.pending, slots, cells, at_h)
        if self.experts is not None:  # the model is scored alone; the blend is served
            R = arena.ring_len
            ring = window(history, n - R, R) if self.experts.serves_theta else None
            point, quant = self.experts.serve(arena, slots, ts, n, history, ring, cells, warm,
                                              point, quant, self._seasonal(history, n, R))
        if self.calibration is not None:
            quant = self._calibrated(arena, slots, cells, warm, point, spread, quant, n)
        point, quant = (model.from_model_units(point, self.shape.transform),
                        model.from_model_units(quant, self.shape.transform))
        if recent is None:
            recent = window(history, n - self.shape.window, self.shape.window,
                            self.shape.season)
        lo, hi = recent.amin(dim=1), recent.amax(dim=1)
        if not all_warm:  # cold rows: the range of every value they have
            R = arena.ring_len
            seen = torch.arange(R)[None, :] >= (R - n)[:, None]
            ring = window(history, n - R, R)
            lo = torch.where(warm, lo, torch.where(seen, ring, float("inf")).amin(dim=1))
            hi = torch.where(warm, hi, torch.where(seen, ring, -float("inf")).amax(dim=1))
        # The units' map is monotone: the range converted, not every value. amin and
        # amax: aminmax over rows took 7 times as long.
        lo, hi = (model.from_model_units(v, self.shape.transform) for v in (lo, hi))
        plausible(lo, hi, torch.ones_like(warm), point, quant)
        return Forecasts(
            obs_index=rows, slots=slots.numpy(), origin_ts=ts.numpy().copy(),
            point=point.numpy(), quantiles=quant.numpy(), warm=warm.numpy())

    def _model(self, params: model.Params, guard: Guard, arena: Arena, slots: Tensor,
               n: Tensor, history: Tensor, weight: Tensor | None,
               result: Result) -> tuple[Tensor, Tensor, Tensor]:
        """→ point (B, H) and spread (B, H) in the entities' own units, and the newest
        L values (B, L) they are forecast from."""
        L = self.shape.window
        recent = window(history, n - L, L, self.shape.season)
        x, mean, scale = model.normalise(recent)
        point, spread = model.point_and_spread(params, x, arena.phi.index_select(0, slots))
        point = point * scale + mean
        spread = spread * scale
        if weight is not None:
            guard.blend(arena, slots, weight, x, mean, scale, point, spread, result)
        return point, spread, recent

    def _mixed(self, params: model.Params, guard: Guard, arena: Arena, slots: Tensor,
               n: Tensor, history: Tensor, warm: Tensor, weight: Tensor | None,
               result: Result) -> tuple[Tensor, Tensor]:
        """Warm rows from the model; cold rows seasonal naive once a season is seen,
        else the last value, with the running standard deviation as spread."""
        H = self.shape.horizon
        point = torch.empty(len(slots), H)
        spread = torch.empty(len(slots), H)
        if bool(warm.any()):
            point[warm], spread[warm], _ = self._model(
                params, guard, arena, slots[warm], n[warm], history[warm],
                None if weight is None else weight[warm], result)
        cold = ~warm
        naive = self._seasonal(history[cold], n[cold], arena.ring_len)
        point[cold] = naive
        spread[cold] = arena.ew_var[slots[cold]].sqrt()[:, None]
        return point, spread

    def _calibrated(self, arena: Arena, slots: Tensor, cells: Tensor, warm: Tensor,
                    point: Tensor, spread: Tensor, quant: Tensor, n: Tensor) -> Tensor:
        """Warm rows' quantiles from calibration (model units); cold rows keep theirs."""
        assert self.calibration is not None
        floor = scale(arena, slots)
        least = self.calibration.young(arena, slots, n, warm)
        if bool(warm.all()):
            return self.calibration.serve(arena, slots, cells, point, spread, floor, least)
        if least is not None:  # cold rows: seasonal naive's, at least the young floor
            quant = young.widen(point, quant, least, self.z)
        if bool(warm.any()):
            quant[warm] = self.calibration.serve(arena, slots[warm], cells[warm], point[warm],
                                                 spread[warm], floor[warm],
                                                 None if least is None else least[warm])
        return quant

    def _seasonal(self, history: Tensor, n: Tensor, ring_len: int) -> Tensor:
        """Seasonal naive (B, H) from n (B,) values seen once a season is seen, else the
        last value; history (B, 2R)."""
        back = torch.where(n[:, None] >= self.shape.season, self._naive_back[None, :], 0)
        if int(self._naive_back.max()) <= ring_len:
            # history holds the ring twice: (n-1) % R + R - back is in [0, 2R) and reads
            # ring[(n-1-back) % R] with one remainder per row, not per value.
            return torch.gather(history, 1, ((n - 1) % ring_len + ring_len)[:, None] - back)
        return torch.gather(history, 1, (n[:, None] - 1 - back) % ring_len)
