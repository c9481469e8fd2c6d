"""Per-entity expert weighting: the model against cheap experts, by realised errors.

For every entity and every scored horizon (1, the season, H: the arena's S
columns), an exponentially weighted average forecaster (Hedge) over E experts:

* ``MODEL`` — the meta-learned model as the engine serves it (while the guard
  runs, already blended with the initial θ);
* ``NAIVE`` — persistence, the last value;
* ``SEASONAL`` — seasonal naive, the value one season before each target;
* ``DRIFT`` — seasonal naive plus h times the average step over the last window
  (with a season of 1, a random walk with drift: what trending series need).

A step h is served with the weights of the smallest scored horizon ≥ h. At a scored
horizon that is a multiple of the season m > 1, persistence's forecast is seasonal
naive's, so its record there says nothing of what it would serve at the steps in
between: persistence does not serve those horizons (:func:`allowed`).

When a forecast's target arrives, each expert's absolute error on it, in the
entity's running standard deviations and clipped to ``CLIP``, is added to the
expert's loss for that horizon, after the older losses are discounted by
``discount``. The served point forecast of step h is Σ_e w_e f_e(h) with
w = softmax(−rate · loss) of the scored horizon that covers h (steps 2..m use the
season's weights, m+1..H the horizon's). The quantiles keep the model's spread
around the served point, so they never cross.

Regret bound. The absolute error is convex in the forecast, so the loss of the
weighted forecast is at most the weighted loss of the experts (Jensen). With
losses scaled to [0, 1] (divided by ``CLIP``), no discount and a rate η per unit
of scaled loss, Hedge guarantees after T resolved targets of one entity and horizon
Σ_t ℓ(served_t) ≤ min_e Σ_t ℓ_e,t + ln(E)/η + η·T/8 (Cesa-Bianchi & Lugosi,
*Prediction, Learning, and Games*, Thm. 2.2): the served forecast's average excess
over its best expert is at most ln(E)/(ηT) + η/8, in units of ``CLIP`` standard
deviations. With a discount γ < 1 the same bound holds over any stretch of about
1/(1−γ) targets, so the weights follow an entity whose best expert changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from streammeta.config import ExpertsConfig
    from streammeta.online.arena import Arena

MODEL, NAIVE, SEASONAL, DRIFT = range(4)
EXPERTS = 4
CLIP = 10.0  # errors beyond this many standard deviations count as this many


def update(losses: Tensor, errors: Tensor, valid: Tensor, discount: float) -> Tensor:
    """losses (B, S, E) and new errors (B, S, E) where ``valid`` (B, S) → losses."""
    step = errors.clamp(max=CLIP)
    known = valid & ~torch.isnan(step).any(dim=2)  # (B, S)
    return torch.where(known[:, :, None], losses * discount + step, losses)


def weights(losses: Tensor, rate: float, prior: Tensor | None = None,
            allowed: Tensor | None = None) -> Tensor:
    """(B, S, E) losses → (B, S, E) weights, each row summing to 1. ``prior`` (S, E):
    losses every entity starts with (the population's record, see :class:`Population`);
    ``allowed`` (S, E): which experts may serve each scored horizon (see :func:`allowed`)."""
    if prior is not None:
        losses = losses + prior[None]
    logits = -rate * losses
    if allowed is not None:
        logits = logits.masked_fill(~allowed[None], float("-inf"))
    return torch.softmax(logits, dim=2)


def allowed(horizons: tuple[int, ...], season: int) -> Tensor:
    """(S, E): persistence does not serve a scored horizon that is a multiple of the
    season (> 1): judged there, its forecast is seasonal naive's."""
    ok = torch.ones(len(horizons), EXPERTS, dtype=torch.bool)
    if season > 1:
        ok[[i for i, h in enumerate(horizons) if h > 1 and h % season == 0], NAIVE] = False
    return ok


class Population:
    """The experts' mean scaled error per resolved forecast over all entities, (S, E),
    discounted: a new entity's weights start from what works for the entities seen,
    as if it had ``events`` resolved forecasts of that record.

    Errors of a batch are collected by :meth:`update` and enter the record at
    :meth:`commit`, after the batch: within a batch one entity may be a step ahead of
    another, and no forecast may depend on a value later than its origin."""

    def __init__(self, horizons: int, events: float, smoothing: float = 0.001) -> None:
        self.mean = torch.zeros(horizons, EXPERTS)
        self.seen = 0.0
        self.events, self.smoothing = events, smoothing
        self._sum = torch.zeros(horizons, EXPERTS)
        self._count = torch.zeros(horizons)

    def update(self, errors: Tensor, valid: Tensor) -> None:
        """errors (B, S, E), valid (B, S)."""
        known = valid & ~torch.isnan(errors).any(dim=2)
        self._sum += torch.where(known[:, :, None], errors.clamp(max=CLIP), 0.0).sum(dim=0)
        self._count += known.sum(dim=0)

    def commit(self) -> None:
        """The batch's errors enter the record."""
        count = self._count
        if not bool(count.any()):
            return
        batch = self._sum / count.clamp(min=1)[:, None]  # (S, E) the batch's mean
        keep = (1.0 - self.smoothing) ** count  # (S,)
        keep = keep[:, None]
        merged = batch if self.seen == 0 else self.mean * keep + batch * (1 - keep)
        self.mean = torch.where((count > 0)[:, None], merged, self.mean)
        self.seen += float(count.sum())
        self._sum.zero_()
        self._count.zero_()

    def prior(self) -> Tensor:
        """(S, E) the losses a new entity starts with."""
        return (self.mean - self.mean.min(dim=1, keepdim=True).values) * self.events


def blend(w: Tensor, bucket: Tensor, model: Tensor, last: Tensor, seasonal: Tensor,
          slope: Tensor) -> Tensor:
    """Served point forecasts (B, H).

    w (B, S, E) weights; bucket (H,) the scored horizon whose weights step h uses;
    model (B, H) and seasonal (B, H) forecasts, last (B,) the newest value, slope (B,)
    the drift expert's average step."""
    wh = w[:, bucket, :]  # (B, H, E)
    h = torch.arange(1, model.shape[1] + 1, dtype=model.dtype)[None, :]  # (1, H)
    return (wh[:, :, MODEL] * model + wh[:, :, NAIVE] * last[:, None]
            + (wh[:, :, SEASONAL] + wh[:, :, DRIFT]) * seasonal
            + wh[:, :, DRIFT] * slope[:, None] * h)


def slope(ring: Tensor, last_index: Tensor, span: int) -> Tensor:
    """The drift expert's average step (B,) at absolute index ``last_index`` (B,) over the
    last ``span`` steps (fewer when the entity has fewer); ``ring`` (B, R) the entities'
    rows of ``Arena.ring``."""
    R = ring.shape[1]
    k = torch.clamp(torch.minimum(last_index, torch.tensor(span)), min=1)
    now = torch.gather(ring, 1, (last_index % R)[:, None])[:, 0]
    then = torch.gather(ring, 1, ((last_index - k) % R)[:, None])[:, 0]
    return torch.where(last_index > 0, (now - then) / k, torch.zeros_like(now))


def buckets(horizons: tuple[int, ...], horizon: int) -> Tensor:
    """(H,) index of the smallest scored horizon ≥ each step 1..H."""
    return torch.tensor([next(i for i, s in enumerate(horizons) if s >= h)
                         for h in range(1, horizon + 1)])


class Weighting:
    """The engine's expert stage: each expert's error on every resolved forecast
    (:meth:`score`, from ``streammeta.online.scoring``), the served blend
    (:meth:`serve`, from ``streammeta.online.forecast``) and the population's record
    after each batch (:meth:`commit`)."""

    def __init__(self, config: ExpertsConfig, horizons: tuple[int, ...], horizon: int,
                 season: int, window: int) -> None:
        self.rate, self.discount = config.rate, config.discount
        self.window = window  # the drift expert's span
        self._h = torch.tensor(horizons)  # (S,)
        self._bucket = buckets(horizons, horizon)  # (H,)
        self._allowed = allowed(horizons, season)  # (S, E)
        self.population = Population(len(horizons), config.prior_events)

    def score(self, arena: Arena, slots: Tensor, j: Tensor, y: Tensor, forecast: Tensor,
              naive: Tensor, scale: Tensor, valid: Tensor) -> None:
        """The new values y (B,) at absolute index j (B,) resolve the model's
        ``forecast`` and seasonal naive's ``naive`` (B, S) where ``valid`` (B, S);
        ``scale`` (B, 1) the entities' standard deviations. Call before the values
        are appended to the rings."""
        origin = j[:, None] - self._h[None, :]  # (B, S) index of each forecast's origin
        last = arena.ring[slots[:, None], origin % arena.ring_len]
        ring = arena.ring[slots]  # (B, R) before this value is appended
        drift = naive + self._h[None, :] * torch.stack(
            [slope(ring, origin[:, i], self.window) for i in range(len(self._h))], dim=1)
        each = torch.stack([forecast, last, naive, drift], dim=2)  # (B, S, E)
        err = (y[:, None, None] - each).abs() / scale[:, :, None]  # (B, S, E)
        arena.experts[slots] = update(arena.experts[slots], err, valid, self.discount)
        self.population.update(err, valid)

    def serve(self, arena: Arena, slots: Tensor, n: Tensor, history: Tensor, warm: Tensor,
              point: Tensor, quant: Tensor, seasonal: Tensor) -> tuple[Tensor, Tensor]:
        """Warm rows' point forecasts (B, H) → the entity's weighting of the model,
        persistence, seasonal naive (``seasonal`` (B, H)) and drift; quantiles keep the
        model's spread around it. n (B,) values seen, history (B, 2R)."""
        R = arena.ring_len
        last = torch.gather(history, 1, ((n - 1) % R)[:, None])[:, 0]  # (B,)
        w = weights(arena.experts[slots], self.rate, self.population.prior(), self._allowed)
        step = slope(history[:, :R], n - 1, self.window)
        served = blend(w, self._bucket, point, last, seasonal, step)
        served = torch.where(warm[:, None], served, point)
        return served, quant + (served - point)[:, None, :]

    def commit(self) -> None:
        """A batch is done: its errors enter the population's record."""
        self.population.commit()
