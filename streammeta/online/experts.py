"""Per-entity expert weighting: the model against cheap experts, by realised errors.

For every entity and every scored horizon (``online.horizons``: 1, every half
season and season up to H, and H; the arena's S columns), an exponentially
weighted average forecaster (Hedge) over E experts:

* ``MODEL`` — the meta-learned model as the engine serves it (while the guard
  runs, already blended with the initial θ);
* ``NAIVE`` — persistence, the last value;
* ``SEASONAL`` — seasonal naive, the value one season before each target;
* ``DRIFT`` — seasonal naive plus h times the average step over the last window
  (with a season of 1, a random walk with drift: what trending series need), the
  median of three chunks' where the window holds them (``online.trend.slope``: a
  jump of level is not a trend);
* ``THETA`` — the theta method (Assimakopoulos & Nikolopoulos, 2000) on the ring's
  values: classical seasonal adjustment where an autocorrelation test finds a
  season, simple exponential smoothing with its rate chosen per entity by in-sample
  one-step error from ``ALPHAS``, plus half the linear trend; ``TREND`` — the same
  with the whole trend (what steadily growing yearly and quarterly series need);
* ``DAMPED`` — the damped trend, ETS(A,Ad,N), on the same values (``online.theta``):
  what a fading trend needs (M4-shaped daily, m = 1, final-origin MASE 2.156 → 1.904);
* ``ANALOGUE`` — what followed the stored windows of all entities most like the
  entity's newest values (``online.analogues``), for young entities only: for the
  others it has no forecast, serves nothing and its error counts as the mean of the
  others' (neither credit nor blame).
  The forecasts of the theta, analogue and damped experts are kept until their targets arrive
  (``Arena.pending_experts``);
* ``WEEKLY`` — seasonal naive a week back (``WEEK`` seasons, the value 7m steps
  before each target), for sub-daily seasons (m ≥ 24) whose week is at most
  ``WEEKLY_LAG_MAX`` steps and twice the window (the ring keeps the week,
  ``rounds.ring_length``): traffic-like series whose weekends differ from their weekdays;
* ``LEVEL`` — seasonal naive moved by the change of level over the last season (the
  newest half season's mean against the same half season a season earlier, clipped:
  ``online.level``), for young entities and seasons of ``level.SEASONS_FROM`` (12)
  steps or more: what a young entity whose newest season sits at another level than
  the one before needs.

A step h is served with the weights of the smallest scored horizon ≥ h. Persistence
is judged at each scored horizon on every step that the horizon's weights serve
(:func:`persistence_steps`; m = 24, H = 48: 12 on 2..12, 36 on 25..36), its loss the
mean of its losses on them: its error grows with the step, and judged at the horizon
alone it would be blamed for the far end of what it serves (its forecasts of those
steps are the ring's values, so this keeps no state). At a multiple of the season
m > 1 its forecast is seasonal naive's, so only the steps before the horizon count
there (24 on 13..23, 48 on 37..47); where there are none (m = 2) it does not serve
the horizon (:func:`allowed`).

When a forecast's target arrives, each expert's loss on it (from the entity's first
origin with two seasons seen; before the model serves, the ``MODEL`` slot holds the
forecast served in its place, seasonal naive) is added to the expert's loss for that
horizon, after the older losses are discounted by ``discount``. The loss
(:func:`expert_loss`) is the absolute error in the entity's running standard
deviations, clipped to ``CLIP``; with ``adaptation.loss = "mse"`` the inner loop's
Huber-squared loss of that error (squared up to ``model.HUBER_DELTA``, linear beyond),
so that a user who asked for squared errors has weights that follow them (absolute
errors let an expert with rare large misses win). The served point forecast of step h
is Σ_e w_e f_e(h) with w = softmax(−rate · loss) of the scored horizon that covers h
(with m = 24, H = 48: steps 2..12 use 12's weights, 13..24 the season's, 25..36
36's, 37..48 H's). The quantiles are shifted with it here;
``streammeta.online.calibration`` then sets the warm rows' from the served errors.

The learning rule and its regret bound are in ``streammeta.online.hedge``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from streammeta.online import longseason
from streammeta.online.analogues import Analogues, length_for, span
from streammeta.online.cells import clear as clear_cells
from streammeta.online.cells import put as put_cells
from streammeta.online.cells import take as take_cells
from streammeta.online.hedge import expert_loss, follow, loss_clip, update
from streammeta.online.horizons import persistence_judged, persistence_steps
from streammeta.online.level import serves as level_serves
from streammeta.online.level import shift as level_shift
from streammeta.online.population import YOUNG_FOR, Population, fill
from streammeta.online.theta import seasonal_indices, signed
from streammeta.online.trend import slope

if TYPE_CHECKING:
    from streammeta.config import ExpertsConfig

MODEL, NAIVE, SEASONAL, DRIFT, THETA, TREND, ANALOGUE, WEEKLY, LEVEL, DAMPED = range(10)
EXPERTS = 10
KEPT = 4  # the experts whose forecasts wait for their targets: THETA, TREND, ANALOGUE, DAMPED
THETA_COLUMNS = slice(THETA, TREND + 1)
# The theta experts serve seasons shorter than this only. With a daily season of
# hourly values (M4 hourly, m = 24) their seasonal adjustment is unstable: the level
# jumps with the phase of the origin (night values are small and noisy), and the
# population's record, on scaled errors of similar size, does not keep them out: M4
# hourly final-origin MASE 1.010 without them, 1.110 with them. The theta method was
# made for yearly to monthly data (the M3 competition).
THETA_SEASONS_BELOW = 24
# The analogue expert serves seasons of this many steps or more only: a window of a
# shorter season (at least 8 values) holds too little shape to find its like. M1
# quarterly (m = 4) final-origin MASE 1.710 with it, 1.685 without (windows of 12 or
# 16 values: 1.721, 1.702); M1 yearly 3.836 against 3.838.
ANALOGUE_SEASONS_FROM = 12
# Where they serve, the ring holds at least this many values: the theta line's slope
# and the seasonal indices are fitted on it (M1 final-origin MASE with 60 / 100 / 150:
# yearly 3.817 / 3.817 / 3.817, quarterly 1.662 / 1.662 / 1.662, monthly 1.117 / 1.107 /
# 1.105; with the window's ring, 23 / 25 / 55 values: 3.838 / 1.686 / 1.124).
THETA_HISTORY = 144
# The weekly expert's lag in seasons, for seasons of this many steps or more (a day of
# hourly values or finer; config.tree's window holds a week there). At M4 hourly's
# final origin, sMAPE is carried by low-valued series whose week starts again after a
# weekend: the day before says nothing of it (docs/evaluation.md, "What carries sMAPE").
WEEK, WEEKLY_SEASONS_FROM = 7, 24
# The longest week it serves, in steps: 15-minute values (m = 96). Each entity's ring
# keeps the week, so a finer season would cost more memory per entity than the rest
# of its state (m = 288: 2,016 values).
WEEKLY_LAG_MAX = 7 * 96


def weekly_lag(season: int, window: int, horizon: int) -> int:
    """The weekly expert's lag in steps; 0 where it does not serve (a season under
    ``WEEKLY_SEASONS_FROM``, a week shorter than H, longer than ``WEEKLY_LAG_MAX`` or
    than twice the window). It served only where the window held the week: not fpp3
    vic_elec (m = 48, window 168: half a week), where the week is most of what a day
    back misses (rolling MASE 0.994 → 0.799). A window under half a week is a short
    look back asked for: ETTh2 (``benchmarks/ett.toml``, 72 values) MSE at H = 48
    2.802 without the week, 2.971 with it (persistence 2.852)."""
    lag = WEEK * season
    return lag if (season >= WEEKLY_SEASONS_FROM
                   and horizon <= lag <= min(2 * window, WEEKLY_LAG_MAX)) else 0


def allowed(horizons: tuple[int, ...], season: int, weekly: bool = False,
            level: bool = False) -> Tensor:
    """(S, E): persistence does not serve a scored horizon that is a multiple of the
    season (> 1) with no other step of its own to be judged on (see
    :func:`persistence_steps`); the theta experts serve seasons below
    ``THETA_SEASONS_BELOW`` only, the analogue expert seasons from
    ``ANALOGUE_SEASONS_FROM`` on, the weekly expert where ``weekly``, the level expert
    where ``level``."""
    ok = torch.ones(len(horizons), EXPERTS, dtype=torch.bool)
    ok[:, WEEKLY] = weekly
    ok[:, LEVEL] = level
    if season < ANALOGUE_SEASONS_FROM:
        ok[:, ANALOGUE] = False
    if season >= THETA_SEASONS_BELOW:
        ok[:, [THETA, TREND, DAMPED]] = False
    for i, steps in persistence_steps(horizons, season).items():
        if not steps:
            ok[i, NAIVE] = False
    return ok


def blend(w: Tensor, bucket: Tensor, model: Tensor, last: Tensor, seasonal: Tensor,
          slope: Tensor, kept: Tensor, weekly: Tensor | None = None,
          level: Tensor | None = None) -> Tensor:
    """Served point forecasts (B, H).

    w (B, S, E) weights; bucket (H,) the scored horizon whose weights step h uses;
    model (B, H) and seasonal (B, H) forecasts, last (B,) the newest value, slope (B,)
    the drift expert's average step, kept (B, H, KEPT) the THETA, TREND, ANALOGUE and
    DAMPED forecasts (NaN: none, where its weight is 0), weekly (B, H) the WEEKLY expert's
    (None: it does not serve, its weight is 0), level (B,) the LEVEL expert's shift of
    seasonal naive (None: it does not serve)."""
    # Only the experts with a weight somewhere take part: a term of weight 0 everywhere
    # adds 0 to the sum (mature entities of m = 24: 5 of the 9).
    if not len(w):
        return model.clone()
    on = (w != 0).flatten(0, 1).any(dim=0).tolist()  # NaN weights take part, as before
    on[WEEKLY], on[LEVEL] = on[WEEKLY] and weekly is not None, on[LEVEL] and level is not None
    used = [e for e in range(w.shape[2]) if on[e]]
    # (E', B, H): each expert's weights contiguous, so the products below stream
    # (indexing (B, S, E) by the middle dimension was half of this function's time).
    # bucket is non-decreasing: each scored horizon's weights repeated over its steps.
    wt = w.permute(2, 0, 1)[used]  # (E', B, S)
    if bool((bucket[1:] >= bucket[:-1]).all()):
        counts = torch.bincount(bucket, minlength=w.shape[1]).tolist()
        wh = torch.cat([wt[:, :, s : s + 1].expand(-1, -1, c)
                        for s, c in enumerate(counts) if c], dim=2)  # (E', B, H)
    else:
        wh = wt.index_select(2, bucket)
    at = {e: i for i, e in enumerate(used)}
    h = torch.arange(1, model.shape[1] + 1, dtype=model.dtype)[None, :]  # (1, H)
    both = [wh[at[e]] for e in (SEASONAL, DRIFT) if on[e]]  # seasonal naive's weights
    near = (lambda: both[0] + both[1]) if len(both) == 2 else (lambda: both[0])
    terms = ((MODEL, lambda: wh[at[MODEL]] * model),
             (NAIVE, lambda: wh[at[NAIVE]] * last[:, None]),
             (SEASONAL if on[SEASONAL] else DRIFT, lambda: near() * seasonal),
             (DRIFT, lambda: wh[at[DRIFT]] * slope[:, None] * h),
             (THETA, lambda: wh[at[THETA]] * kept[:, :, 0]),
             (TREND, lambda: wh[at[TREND]] * kept[:, :, 1]),
             (DAMPED, lambda: wh[at[DAMPED]] * kept[:, :, 3]),
             (ANALOGUE, lambda: wh[at[ANALOGUE]] * kept[:, :, 2].nan_to_num()),
             (LEVEL, lambda: wh[at[LEVEL]] * (seasonal + level[:, None])),  # type: ignore[index]
             (WEEKLY, lambda: wh[at[WEEKLY]] * weekly))  # type: ignore[operator]
    out = None
    for e, term in terms:  # summed in this order, in place: the same sums as written out
        if on[e]:
            out = term() if out is None else out.add_(term())
    assert out is not None
    return out


def buckets(horizons: tuple[int, ...], horizon: int) -> Tensor:
    """(H,) index of the smallest scored horizon ≥ each step 1..H."""
    return torch.tensor([next(i for i, s in enumerate(horizons) if s >= h)
                         for h in range(1, horizon + 1)])


class Arena(Protocol):
    """The entity state the expert stage reads and writes (``online.arena.Arena``,
    which itself sizes its ``experts`` field by :data:`EXPERTS`)."""

    ring: Tensor  # (N, R)
    ring_len: int
    horizon: int
    experts: Tensor  # (N, S, E)
    pending_experts: Tensor  # (N, P, KEPT) by cells (online.cells)
    season_indices: Tensor  # (N, m)

    def cells(self, target: Tensor) -> Tensor: ...


class Weighting:
    """The engine's expert stage: each expert's error on every resolved forecast
    (:meth:`score`, from ``streammeta.online.scoring``), the served blend
    (:meth:`serve`, from ``streammeta.online.forecast``) and the population's record
    (:meth:`commit`, when ``Engine.process`` says)."""

    def __init__(self, config: ExpertsConfig, horizons: tuple[int, ...], horizon: int,
                 season: int, window: int, warm_at: int = 0, loss: str = "mae",
                 transform: str = "asinh") -> None:
        self.rate, self.discount = config.rate, config.discount
        self.fade = config.prior_fade  # the population's record (population.prior)
        self.loss = loss if config.loss == "auto" else config.loss  # expert_loss's
        self._clip = loss_clip(self.loss)
        self.young_until = warm_at + YOUNG_FOR  # values seen: younger entities are young
        self.window = window  # the drift expert's span
        self.season, self.horizon, self.asinh = season, horizon, transform == "asinh"
        self.serves_theta = season < THETA_SEASONS_BELOW
        self.theta_until = longseason.theta_until(season, self.serves_theta)  # values seen
        self._h = torch.tensor(horizons)  # (S,)
        self._bucket = buckets(horizons, horizon)  # (H,)
        self.lag = weekly_lag(season, window, horizon)  # the weekly expert's; 0: none
        self.level = level_serves(season, window)  # the level expert serves
        self._allowed = allowed(horizons, season, self.lag > 0, self.level)  # (S, E)
        # Young entities: persistence serves step 1 and horizons below half a season only
        # (see :meth:`serve`, online.longseason); the level expert serves them alone: for
        # mature entities, whose record is long, it cost M4 hourly's final origin sMAPE
        # 8.887 -> 8.932 and ETTh2 MSE at H = 48 2.802 -> 2.858 (persistence 2.852;
        # docs/evaluation.md, "The first forecasts of a new entity").
        self._allowed_young = self._allowed.clone()
        self._allowed_young[(self._h > 1) & (self._h >= season // 2), NAIVE] = False
        self._allowed[:, LEVEL] = False
        self.population = Population(len(horizons), EXPERTS, config.prior_events,
                                     clip=self._clip)
        self._p_rows, self._p_steps, self._p_mean = persistence_judged(horizons, season)
        self.analogues = Analogues(length_for(season, window), horizon,
                                   config.analogue_capacity) if (
            config.analogues and season >= ANALOGUE_SEASONS_FROM) else None
        # Values seen from which a cold entity's experts are scored, and it is served them.
        self._cold_from = longseason.cold_from(season, warm_at)
        self._serve_from = longseason.serve_from(season, warm_at)
        self._record_from = min(warm_at, self._serve_from)  # the ages the weights serve

    def score(self, arena: Arena, slots: Tensor, j: Tensor, y: Tensor, forecast: Tensor,
              naive: Tensor, scale: Tensor, valid: Tensor, reference: Tensor,
              ring: Tensor | None = None) -> None:
        """The new values y (B,) at absolute index j (B,) resolve the model's
        ``forecast`` (B, S; NaN where the entity was cold at the origin) and seasonal
        naive's ``naive`` (B, S) where ``reference`` (B, S) (its value was seen); the
        model's where ``valid``; ``scale`` (B, 1) the entities' standard deviations.
        Call before the values are appended to the rings; ``ring`` (B, R): the slots'
        rows of ``arena.ring`` (None: read here).

        The cheap experts are scored from the first origin with two seasons seen (the
        first with a season 1), also before the model serves: a short series (a yearly
        one of 20 values, warm after 8) would otherwise reach its last origin with a
        handful of resolved forecasts and near-even weights. Until the model serves,
        the ``MODEL`` slot is scored as the forecast served in its place, seasonal
        naive, in the entity's record and the population's. M1 final-origin MASE
        (yearly, quarterly, monthly) 3.817 / 1.662 / 1.105 scored from the first warm
        origin, 3.548 / 1.662 / 1.105 from two seasons, 3.548 / 1.610 / 1.120 from one;
        fpp3 retail (rolling, m = 12) cold-start slice 1.180 from the first warm
        origin, 1.238 from one season (before two seasons the theta experts cannot
        adjust for the season, and their early record holds them back)."""
        R = arena.ring_len
        origin = j[:, None] - self._h[None, :]  # (B, S) index of each forecast's origin
        ring = arena.ring.index_select(0, slots) if ring is None else ring  # (B, R), before y
        last = torch.gather(ring, 1, origin % R)
        drift = naive + self._h[None, :] * slope(ring, origin, self.window, self.season)
        cell = arena.cells(j[:, None])
        kept = take_cells(arena.pending_experts, slots, cell)  # (B, S, KEPT) made at each origin
        clear_cells(arena.pending_experts, slots, cell)
        if not self.serves_theta:  # theta's where it served (longseason.only_below), the
            # analogue's; no damped trend: NaN, the others' mean stands in
            kept = torch.nn.functional.pad(torch.cat(
                [longseason.only_below(kept[:, :, :2], origin + 1, self.theta_until),
                 kept[:, :, 2:3]], dim=2), (0, 1), value=float("nan"))
        cold = torch.isnan(forecast) & reference & (origin + 1 >= self._cold_from)
        model = torch.where(cold, naive, forecast)
        weekly = naive  # where it does not serve: a copy of seasonal naive's record
        if self.lag:  # the value a week before the target; none before a week is seen
            weekly = torch.gather(ring, 1, ((j - self.lag) % R)[:, None]).expand_as(naive)
            weekly = torch.where((j >= self.lag)[:, None], weekly, float("nan"))
        level = naive + level_shift(ring, origin, self.season) if self.level else naive
        theta, trend, analogue, damped = kept.unbind(2)
        each = torch.stack([model, last, naive, drift, theta, trend, analogue, weekly, level,
                            damped], dim=2)
        err = expert_loss(each.sub_(y[:, None, None]).abs_().div_(scale[:, :, None]),
                          self.loss)  # (B, S, E)
        if len(self._p_rows):  # persistence: judged on the steps each horizon serves
            back = torch.gather(ring, 1, (j[:, None] - self._p_steps[None, :]) % R)  # (B, P)
            own = expert_loss((y[:, None] - back).abs() / scale, self.loss) @ self._p_mean.T
            err[:, self._p_rows, NAIVE] = own
        filled = fill(err, self._clip)  # one clip and fill for the record and the population's
        arena.experts.index_copy_(0, slots, update(arena.experts.index_select(0, slots), err,
                                                   valid | cold, self.discount, self._clip, filled))
        self.population.update(err, (valid | cold) & (origin + 1 >= self._record_from),
                               origin + 1 < self.young_until, filled)

    def serve(self, arena: Arena, slots: Tensor, ts: Tensor, n: Tensor, history: Tensor,
              recent: Tensor | None,
              cells: Tensor, warm: Tensor, point: Tensor, quant: Tensor,
              seasonal: Tensor) -> tuple[Tensor, Tensor]:
        """Warm rows' point forecasts (B, H) → the entity's weighting of the model,
        persistence, seasonal naive (``seasonal`` (B, H)), drift and theta; quantiles
        shifted with it (calibration, when on, replaces the warm rows'). n (B,) values
        seen, history (B, 2R), recent (B, R) the ring's values oldest first (None unless
        ``serves_theta``); the theta experts' forecasts at the scored horizons wait in
        ``cells`` (B, S) for their targets."""
        R = arena.ring_len
        last = torch.gather(history, 1, ((n - 1) % R)[:, None])[:, 0]  # (B,)
        young = n < self.young_until
        # Persistence serves young entities at step 1 (and below half a season) only:
        # at the half seasons it is judged on its own, but a young entity's record and
        # the young population's are too thin to keep it out where the season rules (M4
        # hourly rolling, first 48: MASE 1.391 with 1, m, H; 1.583 with the half
        # seasons; 1.396 with persistence barred there).
        # The forecasts resolved at each horizon (scored from origin cold_from - 1 on).
        resolved = n[:, None] - self._h[None, :] - self._cold_from + 1  # (B, S)
        prior = self.population.prior(young, resolved, self.fade)
        allow = (torch.where(young[:, None, None], self._allowed_young, self._allowed)
                 if bool(young.any()) else self._allowed)  # no young: no (B, S, E) mask
        w = follow(arena.experts.index_select(0, slots), prior, self.season, self.rate,
                   longseason.allow_theta(allow, n, self.theta_until, THETA_COLUMNS))
        step = slope(history[:, :R], n - 1, self.window, self.season)
        th = self._theta(arena, slots, n, recent, history)  # (B, H, 3) THETA, TREND, DAMPED
        kept = torch.cat([th[:, :, :2], self._analogue(slots, ts, n, history)[:, :, None],
                          th[:, :, 2:]], dim=2)  # (B, H, KEPT)
        put_cells(arena.pending_experts, slots, cells, kept[:, self._h - 1])
        none = torch.isnan(kept[:, 0, 2])  # (B,) no analogue forecast: it serves nothing
        if bool(none.any()):
            w[:, :, ANALOGUE] = torch.where(none[:, None], 0.0, w[:, :, ANALOGUE])
            w = w / w.sum(dim=2, keepdim=True)
        weekly = None
        if self.lag:  # the values a week before the targets, once a week is seen
            steps = torch.arange(1, self.horizon + 1)
            weekly = torch.gather(history, 1, ((n - 1) % R + R - self.lag)[:, None] + steps)
            short = n < self.lag
            if bool(short.any()):
                w[:, :, WEEKLY] = torch.where(short[:, None], 0.0, w[:, :, WEEKLY])
                w = w / w.sum(dim=2, keepdim=True)
        # The level expert serves young entities only: a batch with none skips it.
        shift = (level_shift(history[:, :R], n - 1, self.season)
                 if self.level and bool(young.any()) else None)
        served = blend(w, self._bucket, point, last, seasonal, step, kept, weekly, shift)
        served = torch.where((warm | (n >= self._serve_from))[:, None], served, point)
        return served, quant + (served - point)[:, None, :]

    def _theta(self, arena: Arena, slots: Tensor, n: Tensor, recent: Tensor | None,
               history: Tensor) -> Tensor:
        """THETA, TREND and DAMPED (B, H, 3) (``theta.signed``); where they do not serve the
        season (m ≥ 24), THETA and TREND (B, H, 2) of the rows short of two seasons only."""
        m = self.season
        if recent is None:  # a long season: the rows short of two seasons only
            return longseason.unadjusted(history, n, self.theta_until, arena.ring_len,
                                         self.horizon, self.asinh)
        indices = None
        if m > 1:  # the seasonal indices, refreshed once a season
            due = n % m == 0
            if bool(due.any()):
                arena.season_indices[slots[due]] = seasonal_indices(recent[due], n[due], m)
            indices = arena.season_indices[slots]
        return signed(recent, n, self.horizon, indices, m, self.asinh)

    def _analogue(self, slots: Tensor, ts: Tensor, n: Tensor, history: Tensor) -> Tensor:
        """The ANALOGUE forecasts (B, H) of young entities, NaN for the others; the
        windows that now have all their followers are staged for the store."""
        out = torch.full((len(n), self.horizon), float("nan"))
        store = self.analogues
        if store is None:
            return out
        L, H = store.length, self.horizon
        full = n >= L + H
        if len(n) and bool(full.all()):  # the steady state: no copy of the rows
            store.add(span(history, n - L - H, L + H), ts)
        elif bool(full.any()):
            store.add(span(history[full], n[full] - L - H, L + H), ts[full])
        young = torch.nonzero((n < self.young_until) & (n >= L))[:, 0]
        if len(store) and len(young):
            young = young[n[young].argsort(stable=True)[: store.affordable(len(young))]]
            out[young] = store.forecast(span(history[young], n[young] - L, L), ts[young])
        return out

    def commit(self) -> None:
        """The errors collected since the last commit enter the population's record."""
        self.population.commit()

    def export(self) -> dict[str, object]:
        """The population's record and the analogues' store (a checkpoint's content)."""
        record = self.population.export()
        if self.analogues is not None:
            record["analogues"] = self.analogues.export()
        return record

    def restore(self, state: dict[str, object]) -> bool:
        """Take what :meth:`export` wrote; False if the population's record does not fit
        (a store that does not fit is left empty, to fill again)."""
        stored = state.get("analogues")
        if self.analogues is not None and isinstance(stored, dict):
            self.analogues.restore(stored)
        return self.population.restore(state)
