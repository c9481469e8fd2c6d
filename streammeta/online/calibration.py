"""Calibrated quantiles: the served forecast's own realised errors set its quantiles.

The served point forecast is a weighting of experts (``streammeta.online.experts``);
the model's quantiles describe the model's errors, not the blend's, and the model's
spread is learned on other series than the entity's. So, per entity, scored horizon
s (``online.horizons``: 1, every half season and season, H) and quantile level q,
an offset u in units of the model's spread σ (floored at ``FLOOR`` running standard
deviations) is tracked online, and warm rows are served, at step h,

    ŷ_q(h) = ŷ(h) + u_q(h) · σ(h),

u_q(h) interpolated between the scored horizons around h, linearly in √h (errors grow
about as √h; step 1 uses s = 1's). The model's spread gives the shape over h, the
offsets its level and asymmetry. The median is the served point itself (calibration
never moves it: levels below 0.5 serve min(u, 0), above max(u, 0)), and a running
maximum over the levels keeps them coherent; both only widen the interval between
the lowest and highest level.

The offset is the population's quantile plus the entity's own correction,
u = P_q,s + d_q,s. P is the q-quantile of a histogram, per level, of all entities'
normalised errors r = (y − ŷ)/σ less their corrections, r − d (``Record``), discounted
per resolved forecast: a young entity starts from what holds for the entities seen,
and as entities come and go P keeps the level each correction is from (with a record
of r alone, entities leaving move P, and the corrections of those staying, learnt
against the old P, then count twice); before any record, P = Φ⁻¹(q), the model's own
quantiles. The served forecast, σ and the offsets u served are kept at the scored
horizons until the target arrives (``Arena.pending_served``); then

    d ← d + η_t · (q − 1{r < u})        (online quantile tracking)

with η_t = max(1 / (φ(Φ⁻¹(q)) · (t + ``PRIOR``)), ``calibration.rate``) × the
population's spread of r at s (so the step is in the errors' own units), t the
entity's resolved forecasts at s: Robbins–Monro's step for a quantile (1 / the
density at it), so that d starts as the entity's own quantile shrunk towards the
population's, as if P were ``PRIOR`` of its forecasts, until the step reaches the
constant ``calibration.rate`` that follows drift. A level exceeded too often rises,
otherwise it falls. Each target is judged against the offsets served for it, not
the current ones: errors of neighbouring targets are correlated, and current
offsets have moved with them.

Guarantee (Angelopoulos, Candès & Tibshirani, *Conformal PID control for time series
prediction*, NeurIPS 2023, Prop. 1: the quantile form of adaptive conformal inference,
Gibbs & Candès, NeurIPS 2021; for steps that decrease, Angelopoulos, Barber & Bates,
*Online conformal prediction with decaying step sizes*, ICML 2024). r is clipped to
[−B, B] (B = ``CLIP``) and |P| ≤ B; a target resolves h steps after its origin, so u
overshoots [−B, B] by at most (h + 1)η_1 and |d| ≤ D = 2B + (h + 1)η_1. Summing the
updates by parts (η_t does not increase), after T resolved forecasts of one entity at
one scored horizon, the population's spread held fixed, whatever the data (no
exchangeability, any drift):

    | (1/T) Σ_t 1{r_t < u_t} − q | ≤ 2D / (η_T T),   η_T ≥ rate × spread,

so each level's realised frequency converges to its nominal one and the 0.1–0.9
interval covers at least 80% in the long run, for every entity. The bound is slow
(1/(ηT) with a small η): in the short run the population's quantiles and the
entity's early, larger steps carry the calibration. Steps between scored horizons
are interpolated and carry no bound.

Young entities' served levels are also at least their own naive errors' Student
interval from the point (``online.young``; :meth:`Calibration.young` makes it); the
offsets kept for scoring are the calibrated ones, so the record and the corrections
learn as without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from streammeta.online import young
from streammeta.online.cells import clear as clear_cells
from streammeta.online.cells import put as put_cells
from streammeta.online.cells import take as take_cells
from streammeta.online.population import CLIP

if TYPE_CHECKING:
    from streammeta.config import CalibrationConfig

BINS = 400  # the population's histogram of r over [-CLIP, CLIP]: 0.05 spreads a bin
SMOOTHING = 0.001  # the population's record forgets this share per resolved forecast
FLOOR = 0.1  # σ at least this many running standard deviations (a collapsed spread)
PRIOR = 100.0  # the population's offsets weigh as this many of an entity's own forecasts


def interpolation(horizons: tuple[int, ...], horizon: int) -> Tensor:
    """(H, S): step h's weights on the scored horizons, linear in √h between the two
    around h (before the first: the first)."""
    out = torch.zeros(horizon, len(horizons))
    for h in range(1, horizon + 1):
        hi = next(i for i, s in enumerate(horizons) if s >= h)
        if hi == 0 or horizons[hi] == h:
            out[h - 1, hi] = 1.0
            continue
        lo = hi - 1
        share = (math.sqrt(h) - math.sqrt(horizons[lo])) / (
            math.sqrt(horizons[hi]) - math.sqrt(horizons[lo]))
        out[h - 1, lo], out[h - 1, hi] = 1.0 - share, share
    return out


class Record:
    """The population's normalised errors per scored horizon and level, less each
    entity's correction (r − d), as discounted histograms (S, Q, BINS), and each level's
    quantile of its own (S, Q). Errors enter at :meth:`commit`, when ``Engine.process``
    says (no forecast depends on a later value)."""

    def __init__(self, horizons: int, levels: Tensor, nominal: Tensor) -> None:
        self.levels, self.nominal = levels, nominal  # (Q,), (Q,) Φ⁻¹(levels)
        Q = len(levels)
        self.hist = torch.zeros(horizons, Q, BINS, dtype=torch.float64)
        self.seen = 0.0
        self._batch = torch.zeros(horizons * Q * BINS, dtype=torch.float64)
        self.offsets = nominal[None, :].repeat(horizons, 1)  # (S, Q)
        self.spread = torch.ones(horizons)  # (S,) σ-units of r, the entities' step unit
        self._edges = torch.linspace(-CLIP, CLIP, BINS + 1, dtype=torch.float64)

    def update(self, r: Tensor, valid: Tensor) -> None:
        """r (B, S, Q), or (B, S) for every level, clipped errors where ``valid`` (B, S)."""
        S, Q = self.hist.shape[:2]
        r = r[:, :, None].expand(-1, -1, Q) if r.dim() == 2 else r
        b = ((r + CLIP) * (BINS / (2 * CLIP))).long().clamp(0, BINS - 1)
        index = (b + torch.arange(S * Q).view(1, S, Q) * BINS)[valid]
        self._batch += torch.bincount(index.flatten(), minlength=S * Q * BINS).to(torch.float64)

    def commit(self) -> None:
        batch = self._batch.view_as(self.hist)
        count = batch.sum(dim=2)  # (S, Q)
        if not bool(count.any()):
            return
        keep = ((1.0 - SMOOTHING) ** count)[:, :, None]
        # The histogram's mass is its weight, 1 - (1 - SMOOTHING)^events: a batch weighs
        # by its count against it. Renormalised to 1 at each commit, it counted the first
        # commit's few errors as the whole past (one forecast per poll: the record was
        # its first forecasts' for about a thousand more).
        self.hist = self.hist * keep + batch / count.clamp(min=1)[:, :, None] * (1 - keep)
        self.seen += float(count[:, 0].sum())
        self._batch.zero_()
        self._settle()

    def _settle(self) -> None:
        """The levels' quantiles, and the spread of r they imply: the half-width of the
        widest interval over its normal width (1 before any record)."""
        self.offsets = self._quantiles()
        z = self.nominal
        if len(z) > 1 and float(z[-1] - z[0]) > 0:
            width = (self.offsets[:, -1] - self.offsets[:, 0]) / float(z[-1] - z[0])
            self.spread = width.clamp(min=1e-3)

    def _quantiles(self) -> Tensor:
        """(S, Q) each level's quantile of its histogram, linear within a bin."""
        total = self.hist.sum(dim=2, keepdim=True)  # (S, Q, 1)
        cdf = self.hist.cumsum(dim=2) / total.clamp(min=1e-300)  # at right edges
        target = self.levels.to(torch.float64).view(1, -1, 1).expand_as(total).contiguous()
        k = torch.searchsorted(cdf, target).clamp(max=BINS - 1)  # (S, Q, 1) first bin ≥ q
        below = torch.where(k > 0, torch.gather(cdf, 2, (k - 1).clamp(min=0)), 0.0)
        inside = torch.gather(self.hist, 2, k) / total.clamp(min=1e-300)
        share = ((target - below) / inside.clamp(min=1e-300)).clamp(0, 1)
        out = (self._edges[k] + share * (2 * CLIP / BINS)).squeeze(2).to(torch.float32)
        return torch.where(total.squeeze(2) > 0, out, self.nominal[None, :])

    def export(self) -> dict[str, object]:
        return {"hist": self.hist.clone(), "seen": self.seen}

    def restore(self, state: object) -> bool:
        """A record :meth:`export` wrote (one written with one histogram per horizon
        for every level stands for each level's); False (unchanged) if it does not fit."""
        if not isinstance(state, dict):
            return False
        hist = state.get("hist")
        if isinstance(hist, Tensor) and hist.shape == (self.hist.shape[0], BINS):
            hist = hist[:, None, :].expand_as(self.hist)
        if not isinstance(hist, Tensor) or hist.shape != self.hist.shape:
            return False
        self.hist, self.seen = hist.clone().to(torch.float64), float(state.get("seen", 0.0))
        if self.seen:
            self._settle()
        return True


class Arena(Protocol):
    """The entity state calibration reads and writes (``online.arena.Arena``)."""

    horizon: int
    calibration: Tensor  # (N, S, Q) the entities' corrections d
    pending_served: Tensor  # (N, P, 2 + Q) served forecast, σ and offsets u (online.cells)
    ring_len: int
    lag_sums: Tensor  # (N, L) online.young.pair_sums at ``spread_lags``
    spread_lags: tuple[int, ...]

    def cells(self, target: Tensor) -> Tensor: ...


class Calibration:
    """The engine's calibration stage: :meth:`score` when values arrive (before they
    join the rings), :meth:`serve` for the warm rows' quantiles, :meth:`commit` when
    ``Engine.process`` says."""

    def __init__(self, config: CalibrationConfig, horizons: tuple[int, ...], horizon: int,
                 levels: tuple[float, ...], warm_at: int = 1, season: int = 1) -> None:
        self.rate = config.rate
        self.warm_at = warm_at
        self.horizon = horizon
        self.levels = torch.tensor(levels)  # (Q,)
        normal = torch.distributions.Normal(0.0, 1.0)
        nominal = normal.icdf(self.levels)
        # Robbins-Monro's gain for a quantile: 1 / the density at it (normal, σ units).
        self._gain = 1.0 / normal.log_prob(nominal).exp()  # (Q,)
        self.record = Record(len(horizons), self.levels, nominal)
        self._nominal = nominal  # (Q,)
        self._h = torch.tensor(horizons)  # (S,)
        # The young floor's naive lags: each scored horizon's seasonal one, then its own.
        self._lags = young.lags(horizons, season) + list(horizons)  # (2S,)
        # Corrections learn from forecasts made with a season seen (see :meth:`score`):
        # from values seen ``start`` on.
        self._start = max(warm_at, season)
        # (S, H) the interpolation over the scored horizons, stored transposed: a
        # transposed view made the (B, Q, S) @ (S, H) product 2-3 times slower.
        self._weights = interpolation(horizons, horizon).T.contiguous()
        # Bounds of the served offsets: ≤ 0 below the median, ≥ 0 above, 0 at it.
        inf = torch.tensor(float("inf"))
        self._low = torch.where(self.levels > 0.5, 0.0, torch.where(self.levels < 0.5, -inf, 0.0))
        self._high = torch.where(self.levels < 0.5, 0.0, torch.where(self.levels > 0.5, inf, 0.0))

    def score(self, arena: Arena, slots: Tensor, j: Tensor, y: Tensor) -> None:
        """The new values y (B,) at absolute index j (B,), model units, resolve the
        served forecasts kept for them."""
        cell = arena.cells(j[:, None])
        kept = take_cells(arena.pending_served, slots, cell)  # (B, S, 2 + Q)
        valid = ~torch.isnan(kept[:, :, 0])  # (B, S)
        if not bool(valid.any()):
            return
        clear_cells(arena.pending_served, slots, cell)
        # A season longer than the warm-up (m = 288 of 5-minute values, warm at 72): the
        # forecasts made before a season is seen have no seasonal naive to lean on, and
        # their errors (r at the clip) set corrections that the constant step then took
        # thousands of forecasts to undo (0.1-0.9 intervals 27 wide where the errors are
        # about 1). They are not learnt from; the young floor covers them. Seasons within
        # the warm-up are unchanged: every warm origin has seen one.
        valid &= (j[:, None] - self._h[None, :]) >= self._start - 1
        r = ((y[:, None] - kept[:, :, 0]) / kept[:, :, 1]).nan_to_num(0.0).clamp(-CLIP, CLIP)
        d = arena.calibration.index_select(0, slots)  # (B, S, Q)
        # Judged against the offsets served at the origin, not today's: errors of
        # neighbouring targets are correlated, and today's have already moved with them.
        below = (r[:, :, None] < kept[:, :, 2:]).to(d.dtype)
        # The entity's resolved forecasts at each scored horizon, this one included.
        t = (j[:, None] - self._h[None, :] - self._start + 2).clamp(min=1).to(d.dtype)
        eta = torch.clamp(self._gain[None, None, :] / (t[:, :, None] + PRIOR), min=self.rate)
        step = (eta * self.record.spread[None, :, None]
                * (self.levels[None, None, :] - below) * valid[:, :, None])
        arena.calibration.index_copy_(0, slots, d + step)
        # The population's record is of what the entities' corrections leave: as
        # entities come and go it keeps the level an entity's own correction is from.
        self.record.update((r[:, :, None] - d).clamp(-CLIP, CLIP), valid)

    def young(self, arena: Arena, slots: Tensor, n: Tensor, warm: Tensor) -> Tensor | None:
        """(B, Q, H) each level's least offset from the served point (``online.young``),
        in model units, signed as its normal quantile; cold rows (not ``warm``) the whole
        floor. None where no row's weight is above 0.02."""
        t = (n[:, None] - self._h[None, :] - self.warm_at + 1).clamp(min=0).to(torch.float32)
        w = young.YOUNG / (young.YOUNG + t)  # (B, S)
        # Before the population's record holds errors at s, the entity's correction is
        # shrunk towards the model's own quantiles, which nothing has checked: no fading.
        unchecked = self.record.hist[:, 0].sum(dim=1) == 0  # (S,)
        w = torch.where(unchecked[None, :] | ~warm[:, None], 1.0, w)
        if not bool((w > 0.02).any()):
            return None
        S = len(self._h)
        s, k = young.naive_spread(arena.lag_sums.index_select(0, slots), n, arena.ring_len,
                                  arena.spread_lags, self._lags)  # (B, 2S)
        # Warm rows (the experts' blend serves, persistence in it): the better naive's.
        # Cold rows are served seasonal naive, and keep its lag.
        better = (s[:, S:] < s[:, :S]) & (k[:, S:] > 0) & warm[:, None]
        s, k = torch.where(better, s[:, S:], s[:, :S]), torch.where(better, k[:, S:], k[:, :S])
        least = young.student(self._nominal, k) * (w * s)[:, None, :]  # (B, Q, S)
        return torch.matmul(least, self._weights)  # (B, Q, H)

    def serve(self, arena: Arena, slots: Tensor, cells: Tensor, point: Tensor,
              spread: Tensor, floor: Tensor, least: Tensor | None = None) -> Tensor:
        """Warm rows' quantiles (B, Q, H) around the served ``point`` (B, H), from the
        model's ``spread`` (B, H), floored at ``FLOOR`` × ``floor`` (B,) (the running
        standard deviations); the served forecast and σ are kept at the scored
        horizons, in ``cells`` (B, S), until their targets arrive. ``least`` (B, Q, H),
        from :meth:`young`: each level at least that far from the point, served only."""
        sigma = torch.maximum(spread, FLOOR * floor[:, None])  # (B, H)
        u = self.record.offsets[None] + arena.calibration.index_select(0, slots)  # (B, S, Q)
        at = self._h - 1
        put_cells(arena.pending_served, slots, cells,
                  torch.cat([point[:, at, None], sigma[:, at, None], u], dim=2))
        # The median is the served point; no level crosses it.
        u = torch.minimum(torch.maximum(u, self._low), self._high)
        uh = torch.matmul(u.transpose(1, 2), self._weights)  # (B, Q, H)
        out = uh.mul_(sigma[:, None, :]).add_(point[:, None, :])  # point + uh σ, in place
        if least is not None:  # young entities: at least their naive errors' interval
            out = young.widen(point, out, least, self._nominal)
        # A running maximum over the levels, one level at a time: torch.cummax over
        # the middle dimension is ~20× slower for a handful of levels.
        for q in range(1, out.shape[1]):
            torch.maximum(out[:, q - 1], out[:, q], out=out[:, q])
        return out

    def commit(self) -> None:
        """The errors collected since the last commit enter the population's record."""
        self.record.commit()
