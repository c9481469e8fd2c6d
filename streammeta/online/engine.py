"""The vectorised online loop: observations in, forecasts out, no Kafka.

A batch is processed in *rounds*: round r holds the r-th observation of every
entity that has at least r+1 in the batch, so each round touches each entity at
most once and can be done with whole-tensor gathers and scatters. Per round:
check timestamps (late, duplicate, misaligned, gap), score the pending
forecasts that the new values resolve, append the values, take the inner-loop
step(s) on the newest example whose targets have arrived, and forecast.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from streammeta.config import Config
from streammeta.io.codec import Reason
from streammeta.meta.memory import MemoryStore, key_dim, task_key
from streammeta.meta.tasks import TaskBuffer
from streammeta.online import experts, model
from streammeta.online.arena import (
    FREE,
    GUARD_NEW,
    GUARD_UNTIL,
    LOSS_ORIGIN,
    LOSS_SERVED,
    NEXT_ORIGIN,
    NEXT_SERVED,
    Arena,
    window,
)
from streammeta.online.drift import PageHinkley

if TYPE_CHECKING:
    from streammeta.persistence.spill import SpillStore  # spill ← checkpoint ← engine


@dataclass
class Forecasts:
    """One forecast per accepted observation, rows aligned."""

    obs_index: np.ndarray  # (B,) index into the processed observations
    slots: np.ndarray  # (B,)
    origin_ts: np.ndarray  # (B,) int64 ms
    point: np.ndarray  # (B, H) float32
    quantiles: np.ndarray  # (B, Q, H) float32
    warm: np.ndarray  # (B,) bool

    def __len__(self) -> int:
        return len(self.obs_index)


@dataclass
class Result:
    forecasts: Forecasts
    rejected: list[tuple[int, Reason, str]] = field(default_factory=list)
    scored: int = 0  # forecast values resolved and scored
    gap_steps: int = 0
    resets: int = 0
    drifts: int = 0  # entities whose error drifted: φ re-initialised
    evicted: int = 0  # entities moved to the spill store to make room
    paged_in: int = 0  # evicted entities read back
    recalled: list[float] = field(default_factory=list)  # similarity of each memory retrieval
    guarded: int = 0  # warm forecasts that the initial θ's forecast had a share in


def _keep_freed_memory() -> None:
    """Stop glibc from returning every large freed tensor to the kernel.

    Each round allocates tensors of a few MB; by default glibc serves those with
    mmap and unmaps them on free, so the next round page-faults them in again,
    which measured here as about half of the forward pass's time.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from malloc.h


def ring_length(window: int, horizon: int, season: int) -> int:
    # Room for a training example (L inputs + H targets) and the seasonal-naive
    # reference of the longest horizon.
    return max(window + horizon, horizon + model.seasonal_back(horizon, season)) + 1


def scored_horizons(horizon: int, season: int) -> tuple[int, ...]:
    return tuple(sorted({1, min(season, horizon), horizon}))


class Engine:
    """Holds θ, the arena and the inner loop; ``process`` is the whole online step."""

    def __init__(self, config: Config, params: model.Params | None = None, version: int = 0):
        config = config.resolved()
        s, m, a = config.series, config.model, config.adaptation
        _keep_freed_memory()
        if m.threads:
            torch.set_num_threads(m.threads)
        self.config = config
        self.shape = model.ModelShape(
            window=m.window, horizon=s.horizon, season=s.season, context_dim=m.context_dim,
            hidden=m.hidden, quantiles=s.quantiles, transform=s.transform)
        if params is None and m.init:
            from streammeta.persistence import params as params_io  # a cycle, see the façade

            params, version = params_io.load(m.init, self.shape)
        self.params = params if params is not None else model.init_params(
            self.shape, seed=m.seed, inner_lr=a.inner_lr)
        self.version = version
        # The guard's second expert: the θ this process started from (meta.guard).
        self.origin, self.origin_version = self.params, version
        self.guard = config.meta.enabled and config.meta.guard
        self.guard_rate, self.guard_for = config.meta.guard_rate, config.meta.guard_for
        self.step = s.frequency.step  # in the units process() is given: ms, or months
        self.max_gap_fill = s.max_gap_fill
        self.adapt_enabled = a.enabled
        self.inner_steps = a.inner_steps
        self.shrink = a.shrink
        self.point_loss = a.loss
        self.quantile_levels = torch.tensor(s.quantiles)
        self.z = torch.distributions.Normal(0.0, 1.0).icdf(self.quantile_levels)  # (Q,)
        self.horizons = scored_horizons(s.horizon, s.season)
        self._h = torch.tensor(self.horizons)  # (S,)
        self._naive_lag = torch.tensor(
            [h + model.seasonal_back(h, s.season) for h in self.horizons])  # (S,)
        self._naive_back = torch.tensor(
            [model.seasonal_back(h, s.season) for h in range(1, s.horizon + 1)])  # (H,)
        self.arena = Arena(
            ring_len=ring_length(m.window, s.horizon, s.season), context_dim=m.context_dim,
            horizon=s.horizon, scored_horizons=len(self.horizons),
            max_entities=config.engine.max_entities, phi0=self.params["phi0"],
            experts=experts.EXPERTS, season=s.season)
        self.experts = config.experts if config.experts.enabled else None
        self._bucket = experts.buckets(self.horizons, s.horizon)  # (H,)
        self._allowed = experts.allowed(self.horizons, s.season)  # (S, E)
        self.population = experts.Population(len(self.horizons), config.experts.prior_events)
        self.ew_span = 4 * max(m.window, s.season)  # running normaliser memory (values)
        self.error_smoothing = config.engine.error_smoothing
        self.online_error = {"streammeta": math.nan, "seasonal_naive": math.nan}
        # Recent histories for the outer loop (streammeta.meta.outer.attach sets it).
        self.task_buffer: TaskBuffer | None = None
        mem, drift = config.memory, config.drift
        self.memory = MemoryStore(
            mem.capacity, key_dim(s.season), m.context_dim, mem.k, mem.temperature,
            mem.min_similarity) if mem.enabled else None
        # φ is stored when the key's values (the first L) are still in the ring.
        self.mature_at = min(m.window + mem.mature_after, self.arena.ring_len)
        # Values before the model forecasts: a young window needs a whole first season.
        self.warm_at = min(max(m.warm_after, s.season), m.window)
        self.drift = PageHinkley(drift.min_instances, drift.delta, drift.threshold,
                                 drift.alpha) if drift.enabled else None
        self._drifted: Tensor | None = None  # set by _score, handled once history is read
        # Where evicted entities go when the arena is full (the service sets it when
        # checkpoints are on); None: new entities beyond the cap are dead-lettered.
        self.spill: SpillStore | None = None

    # -- parameters ---------------------------------------------------------------
    def swap(self, params: model.Params, version: int) -> None:
        """Serve new parameters from the next round on (between batches)."""
        self.params = params
        self.version = version
        self.arena.phi0 = params["phi0"].detach().clone()

    # -- the online step ----------------------------------------------------------
    @torch.no_grad()
    def process(self, entities: list[str], ts: np.ndarray, values: np.ndarray,
                partitions: np.ndarray | None = None) -> Result:
        """Apply a batch of observations (arrival order) and forecast from each.

        ``partitions`` (the input partition of each observation) tags new entities'
        state so that it can move with its partition.
        """
        n = len(entities)
        result = Result(forecasts=_empty_forecasts(self.shape))
        if n and self.spill is not None:
            self._make_room(entities, result)
        slots = (self.arena.slots_for(entities, partitions) if n
                 else np.zeros(0, dtype=np.int64))
        full = np.nonzero(slots == FREE)[0]
        for i in full.tolist():
            result.rejected.append((i, Reason.CAPACITY, "engine.max_entities reached"))
        parts: list[Forecasts] = []
        for rows in _rounds(slots):
            parts.append(self._round(rows, slots[rows], ts[rows], values[rows], result))
        if parts:
            result.forecasts = _concat(parts)
        if self.experts is not None:
            self.population.commit()
        return result

    def _make_room(self, entities: list[str], result: Result) -> None:
        """Evict the least recently observed entities if the batch's new ones do not
        fit, and read back the batch's evicted ones."""
        assert self.spill is not None
        arena, index = self.arena, self.arena.index
        new = [e for e in dict.fromkeys(entities) if e not in index]
        if not new:
            return
        short = len(new) - (arena.max_entities - len(arena))
        if short > 0:  # evict in blocks of ≥ 1% of the cap: fewer, larger files
            batch = {index[e] for e in entities if e in index}
            used = len(arena.names)
            candidates = arena.occupied[:used].clone()
            candidates[list(batch)] = False
            slots = torch.nonzero(candidates).flatten()
            oldest = torch.argsort(arena.last_ts[slots], stable=True)
            victims = slots[oldest[:short + arena.max_entities // 100]]
            self.spill.put(arena.export(victims))
            arena.remove(victims)
            result.evicted += len(victims)
        back = [e for e in new if e in self.spill.index]
        if back:
            arena.restore(self.spill.take(back))
            result.paged_in += len(back)

    def _round(self, rows: np.ndarray, slots_np: np.ndarray, ts_np: np.ndarray,
               y_np: np.ndarray, result: Result) -> Forecasts:
        arena = self.arena
        slots = torch.from_numpy(slots_np)
        ts = torch.from_numpy(ts_np)
        count = arena.count[slots]
        delta = ts - arena.last_ts[slots]
        seen = count > 0
        bad = seen & ((delta <= 0) | (delta % self.step != 0))
        if bool(bad.any()):
            for i in torch.nonzero(bad).flatten().tolist():
                d = int(delta[i])
                reason = (Reason.DUPLICATE if d == 0 else Reason.LATE if d < 0
                          else Reason.MISALIGNED)
                result.rejected.append((int(rows[i]), reason,
                                        f"ts {int(ts[i])} vs last {int(ts[i]) - d}"))
            keep = ~bad
            rows, slots_np, ts_np, y_np = (rows[keep.numpy()], slots_np[keep.numpy()],
                                           ts_np[keep.numpy()], y_np[keep.numpy()])
            slots, ts, delta, seen = slots[keep], ts[keep], delta[keep], seen[keep]
        y = model.to_model_units(torch.from_numpy(y_np).to(torch.float32), self.shape.transform)
        gap = torch.where(seen, delta // self.step - 1, torch.zeros_like(delta))
        if bool((gap > 0).any()):
            self._fill_gaps(slots, y, gap, result)
        self._score(slots, y, result)
        if self._guarding():
            self._score_guard(slots, y)
        self._append(slots, ts, y)
        if self.task_buffer is not None:
            self.task_buffer.observe(slots, y, fresh=self.arena.count[slots] == 1)
        history = self.arena.history(slots)  # (B, 2R) one gather for the whole round
        count = self.arena.count[slots]
        self._initialise(slots, count, history, result)
        # The served version's weight per row while the guard runs (None: it serves alone).
        weight = self._served_weight(slots, count) if self._guarding() else None
        if self.adapt_enabled:
            self._adapt(slots, count, history, weight)
        if self.memory is not None:
            self._remember(slots, count, history)
        return self._forecast(rows, slots, ts, count, history, weight, result)

    def _initialise(self, slots: Tensor, n: Tensor, history: Tensor, result: Result) -> None:
        """φ of entities turning warm, and of drifted ones, from the memory's neighbours
        of their newest L values (φ₀ where the memory has nothing similar)."""
        L = self.shape.window
        start = n == self.warm_at
        if self._drifted is not None:
            start |= self._drifted
            result.drifts += int(self._drifted.sum())
            self._drifted = None
        if not bool(start.any()):
            return
        s = slots[start]
        if self.memory is None:
            self.arena.anchor[s] = 0.0
        else:
            keys = task_key(window(history[start], n[start] - L, L, self.shape.season),
                            self.shape.season)
            # Entries hold φ - φ₀ (what adaptation added), so they stay meaningful after
            # the outer loop moves φ₀; no neighbour: the offset is 0, φ₀ itself.
            found = self.memory.retrieve(keys, torch.zeros_like(self.arena.phi0))
            self.arena.anchor[s] = found.phi
            result.recalled += found.similarity[found.found].tolist()
        # The entity starts at, and is shrunk back towards, the memory's initialisation.
        self.arena.phi[s] = self.arena.phi0 + self.arena.anchor[s]
        # ... and the guard starts over: both experts even, for guard_for values.
        self.arena.phi_origin[s] = self.arena.origin_phi0
        guard = torch.tensor(GUARD_NEW, dtype=torch.float64).repeat(len(s), 1)
        guard[:, GUARD_UNTIL] = n[start] + self.guard_for
        self.arena.guard[s] = guard
        born = n[start] == self.warm_at  # not the drifted: young tasks replay the birth
        if self.task_buffer is not None and bool(born.any()):
            self.task_buffer.set_anchor(s[born], self.arena.anchor[s[born]])

    def _remember(self, slots: Tensor, n: Tensor, history: Tensor) -> None:
        """Store φ - φ₀ of entities with ``memory.mature_after`` values past their first
        full window, keyed by their first L values."""
        assert self.memory is not None
        mature = n == self.mature_at
        if not bool(mature.any()):
            return
        s = slots[mature]
        keys = task_key(window(history[mature], torch.zeros_like(s), self.shape.window),
                        self.shape.season)
        names = [str(self.arena.names[i]) for i in s.tolist()]  # occupied slots: named
        self.memory.insert(names, keys, self.arena.phi[s] - self.arena.phi0, self.version)

    def _fill_gaps(self, slots: Tensor, y: Tensor, gap: Tensor, result: Result) -> None:
        arena = self.arena
        too_long = gap > self.max_gap_fill
        if bool(too_long.any()):
            arena.reset(slots[too_long])
            result.resets += int(too_long.sum())
            gap = torch.where(too_long, torch.zeros_like(gap), gap)
        fill = gap > 0
        if not bool(fill.any()):
            return
        s, g, target = slots[fill], gap[fill], y[fill]
        start = arena.count[s]  # (F,) absolute index of the first missing step
        last = arena.ring[s, (start - 1) % arena.ring_len]
        for i in range(int(g.max())):  # loop over gap length, not entities
            live = g > i
            si = s[live]
            idx = start[live] + i
            w = (i + 1) / (g[live] + 1).to(torch.float32)
            arena.ring[si, idx % arena.ring_len] = last[live] + (target[live] - last[live]) * w
            arena.pending[si, idx % arena.horizon] = float("nan")  # targets never observed
        arena.guard[s, NEXT_SERVED:NEXT_ORIGIN + 1] = float("nan")  # made for a filled step
        arena.count[s] += g
        arena.last_ts[s] += g * self.step
        result.gap_steps += int(g.sum())

    def _score(self, slots: Tensor, y: Tensor, result: Result) -> None:
        """Score the warm forecasts whose target is this value, and seasonal naive on them."""
        arena = self.arena
        j = arena.count[slots]  # absolute index the new value will take
        cell = j % arena.horizon
        forecast = arena.pending[slots, cell]  # (B, S)
        arena.pending[slots, cell] = float("nan")
        theta = arena.pending_experts[slots, cell]  # (B, S, 2)
        arena.pending_experts[slots, cell] = float("nan")
        valid = ~torch.isnan(forecast) & (j[:, None] >= self._naive_lag[None, :])
        if not bool(valid.any()):
            return
        naive = arena.ring[slots[:, None], (j[:, None] - self._naive_lag[None, :]) % arena.ring_len]
        scale = self._scale(slots)[:, None]
        errors = (y[:, None] - forecast).abs() / scale  # (B, S)
        if self.drift is not None:
            self._detect_drift(slots, errors[:, 0], valid[:, 0])
        if self.experts is not None:
            origin = j[:, None] - self._h[None, :]  # (B, S) index of each forecast's origin
            last = arena.ring[slots[:, None], origin % arena.ring_len]
            ring = arena.ring[slots]  # (B, R) before this value is appended
            drift = naive + self._h[None, :] * torch.stack(
                [experts.slope(ring, origin[:, i], self.shape.window)
                 for i in range(len(self.horizons))], dim=1)
            each = torch.cat([torch.stack([forecast, last, naive, drift], dim=2), theta],
                             dim=2)  # (B, S, E)
            err = (y[:, None, None] - each).abs() / scale[:, :, None]  # (B, S, E)
            arena.experts[slots] = experts.update(arena.experts[slots], err, valid,
                                                  self.experts.discount)
            self.population.update(err, valid)
        model_err = errors[valid]
        naive_err = ((y[:, None] - naive).abs() / scale)[valid]
        scored = int(valid.sum())
        result.scored += scored
        keep = (1.0 - self.error_smoothing) ** scored
        for name, err in (("streammeta", model_err), ("seasonal_naive", naive_err)):
            mean = float(err.mean())
            old = self.online_error[name]
            self.online_error[name] = mean if math.isnan(old) else old * keep + mean * (1 - keep)

    # -- the guard: the served version against the initial θ, per entity ------------
    def _guarding(self) -> bool:
        """Serving another version than the one this process started from (a checkpoint
        restored at start may hand back that same version: no guard then)."""
        return self.guard and self.version != self.origin_version

    def _score_guard(self, slots: Tensor, y: Tensor) -> None:
        """Add each expert's error on this value (its forecast of the next value) to
        its sum, where both forecast it."""
        guard = self.arena.guard[slots]  # (B, 5)
        scale = self._scale(slots).to(torch.float64)[:, None]
        err = (y.to(torch.float64)[:, None] - guard[:, NEXT_SERVED:NEXT_ORIGIN + 1]).abs() / scale
        known = ~torch.isnan(err).any(dim=1)
        guard[known, LOSS_SERVED:LOSS_ORIGIN + 1] += err[known]
        guard[:, NEXT_SERVED:NEXT_ORIGIN + 1] = float("nan")
        self.arena.guard[slots] = guard

    def _served_weight(self, slots: Tensor, n: Tensor) -> Tensor:
        """Weight (B,) of the served version's forecast; the rest is the initial θ's.

        Exponential weights on the summed errors while guarding; then all on the expert
        with the smaller sum. Weights within 1e-4 of 0 or 1 are rounded: past that, the
        other expert's forecast changes nothing worth computing.
        """
        guard = self.arena.guard[slots]
        lead = guard[:, LOSS_ORIGIN] - guard[:, LOSS_SERVED]  # > 0: the served is better
        weight = torch.sigmoid(self.guard_rate * lead)
        weight = torch.where(n >= guard[:, GUARD_UNTIL], (lead >= 0).to(weight.dtype), weight)
        weight = torch.where(weight > 1 - 1e-4, 1.0, torch.where(weight < 1e-4, 0.0, weight))
        return weight.to(torch.float32)

    def _detect_drift(self, slots: Tensor, error: Tensor, valid: Tensor) -> None:
        """Feed each entity's one-step error to its Page-Hinkley detector."""
        assert self.drift is not None
        drifted = torch.zeros(len(slots), dtype=torch.bool)
        if bool(valid.any()):
            drifted[valid] = self.drift.update(self.arena.drift, slots[valid], error[valid])
        self._drifted = drifted

    def _scale(self, slots: Tensor) -> Tensor:
        mean = self.arena.ew_mean[slots]
        return torch.maximum(self.arena.ew_var[slots].sqrt(), model.scale_floor(mean))

    def _append(self, slots: Tensor, ts: Tensor, y: Tensor) -> None:
        arena = self.arena
        j = arena.count[slots]
        arena.ring[slots, j % arena.ring_len] = y
        arena.count[slots] = j + 1
        arena.last_ts[slots] = ts
        # Exponentially weighted mean/variance; plain averages while young.
        rate = torch.maximum(1.0 / (j + 1).to(torch.float32), torch.tensor(1.0 / self.ew_span))
        mean = arena.ew_mean[slots]
        diff = y - mean
        arena.ew_mean[slots] = mean + rate * diff
        arena.ew_var[slots] = (1 - rate) * (arena.ew_var[slots] + rate * diff.square())

    def _adapt(self, slots: Tensor, n: Tensor, history: Tensor,
               weight: Tensor | None) -> None:
        """Inner loop on each entity's newest example with at least one arrived target."""
        arena, L, H = self.arena, self.shape.window, self.shape.horizon
        ready = n > self.warm_at
        if not bool(ready.any()):
            return
        all_ready = bool(ready.all())
        s, n = (slots, n) if all_ready else (slots[ready], n[ready])
        if weight is not None and not all_ready:
            weight = weight[ready]
        k = torch.clamp(n - self.warm_at, max=H)  # targets available for the newest example
        first = n - k - L  # absolute index of its first input (< 0: young, see window)
        seq = window(history if all_ready else history[ready], first, L + H,
                     self.shape.season)  # (B, L+H)
        x, mean, scale = model.normalise(seq[:, :L])
        target = (seq[:, L:] - mean) / scale  # (B, H)
        mask = (torch.arange(H)[None, :] < k[:, None]).to(torch.float32)  # (B, H)
        with torch.enable_grad():
            phi = model.adapt(self.params, arena.phi[s], x, target, mask, self.point_loss,
                              self.inner_steps)
        phi = model.shrink(phi, arena.phi0 + arena.anchor[s], self.shrink)
        arena.phi[s] = phi
        if not self.guard:
            return
        if weight is None:  # serving the initial θ: both experts are one
            arena.phi_origin[s] = phi
            return
        used = weight < 1.0  # rows whose initial-θ forecast counts
        if not bool(used.any()):
            return
        so = s[used]
        with torch.enable_grad():
            phi = model.adapt(self.origin, arena.phi_origin[so], x[used], target[used],
                              mask[used], self.point_loss, self.inner_steps)
        phi = model.shrink(phi, arena.origin_phi0, self.shrink)
        arena.phi_origin[so] = phi

    def _forecast(self, rows: np.ndarray, slots: Tensor, ts: Tensor, n: Tensor,
                  history: Tensor, weight: Tensor | None, result: Result) -> Forecasts:
        """n (B,) values seen (the newest at n-1), history (B, 2R) → one forecast per row."""
        arena, H = self.arena, self.shape.horizon
        warm = n >= self.warm_at
        if bool(warm.all()):  # the steady state: no scatter into a preallocated batch
            point, quant = self._model_forecast(slots, n, history, weight, result)
        else:
            point, quant = self._forecast_mixed(slots, n, history, warm, weight, result)
        # Remember warm forecasts at the scored horizons until their targets arrive.
        cells = (n[:, None] - 1 + self._h[None, :]) % H  # (B, S) target index mod H
        at_h = point[:, self._h - 1]  # (B, S)
        at_h = torch.where(warm[:, None], at_h, torch.full_like(at_h, float("nan")))
        arena.pending[slots[:, None], cells, torch.arange(len(self.horizons))[None, :]] = at_h
        if self.experts is not None:  # the model is scored alone; the blend is served
            point, quant = self._serve_experts(slots, n, history, warm, cells, point, quant)
        point, quant = (model.from_model_units(point, self.shape.transform),
                        model.from_model_units(quant, self.shape.transform))
        return Forecasts(
            obs_index=rows, slots=slots.numpy(), origin_ts=ts.numpy().copy(),
            point=point.numpy(), quantiles=quant.numpy(), warm=warm.numpy())

    def _serve_experts(self, slots: Tensor, n: Tensor, history: Tensor, warm: Tensor,
                       cells: Tensor, point: Tensor, quant: Tensor) -> tuple[Tensor, Tensor]:
        """Warm rows' point forecasts (B, H) → the entity's weighting of the model and
        the cheap experts; quantiles keep the model's spread around it. The theta
        experts' forecasts at the scored horizons wait in ``cells`` (B, S) for scoring."""
        assert self.experts is not None
        R = self.arena.ring_len
        x, m = window(history, n - R, R), self.shape.season
        if m >= experts.THETA_SEASONS_BELOW:  # not served (experts.allowed): not computed
            theta = torch.zeros(len(n), self.shape.horizon, 2)
        else:
            indices = None
            if m > 1:  # the seasonal indices, refreshed once a season
                due = n % m == 0
                if bool(due.any()):
                    self.arena.season_indices[slots[due]] = experts.seasonal_indices(
                        x[due], n[due], m)
                indices = self.arena.season_indices[slots]
            theta = experts.theta(x, n, self.shape.horizon, indices)  # (B, H, 2)
        scored = torch.arange(len(self.horizons))[None, :]
        self.arena.pending_experts[slots[:, None], cells, scored] = theta[:, self._h - 1]
        last = torch.gather(history, 1, ((n - 1) % R)[:, None])[:, 0]  # (B,)
        back = torch.where(n[:, None] >= self.shape.season, self._naive_back[None, :], 0)
        seasonal = torch.gather(history, 1, (n[:, None] - 1 - back) % R)  # (B, H)
        w = experts.weights(self.arena.experts[slots], self.experts.rate,
                            self.population.prior(), self._allowed)
        slope = experts.slope(history[:, :R], n - 1, self.shape.window)
        served = experts.blend(w, self._bucket, point, last, seasonal, slope, theta)
        served = torch.where(warm[:, None], served, point)
        return served, quant + (served - point)[:, None, :]

    def _model_forecast(self, slots: Tensor, n: Tensor, history: Tensor,
                        weight: Tensor | None, result: Result) -> tuple[Tensor, Tensor]:
        """→ point (B, H) and quantiles (B, Q, H) in the entities' own units."""
        L = self.shape.window
        x, mean, scale = model.normalise(window(history, n - L, L, self.shape.season))
        point, spread = model.point_and_spread(self.params, x, self.arena.phi[slots])
        point = point * scale + mean
        spread = spread * scale
        if weight is not None:
            self._blend_origin(slots, weight, x, mean, scale, point, spread, result)
        return point, point[:, None, :] + spread[:, None, :] * self.z[None, :, None]

    def _blend_origin(self, slots: Tensor, weight: Tensor, x: Tensor, mean: Tensor,
                      scale: Tensor, point: Tensor, spread: Tensor, result: Result) -> None:
        """Blend in place the initial θ's point and spread where its weight is not 0,
        and keep both experts' forecasts of the next value for ``_score_guard``."""
        guard = self.arena.guard
        guard[slots, NEXT_SERVED] = point[:, 0].to(torch.float64)
        used = weight < 1.0
        if not bool(used.any()):
            return
        so = slots[used]
        p, s = model.point_and_spread(self.origin, x[used], self.arena.phi_origin[so])
        p = p * scale[used] + mean[used]
        guard[so, NEXT_ORIGIN] = p[:, 0].to(torch.float64)
        w = weight[used][:, None]
        point[used] = w * point[used] + (1.0 - w) * p
        spread[used] = w * spread[used] + (1.0 - w) * s * scale[used]
        result.guarded += int(used.sum())

    def _forecast_mixed(self, slots: Tensor, n: Tensor, history: Tensor, warm: Tensor,
                        weight: Tensor | None, result: Result) -> tuple[Tensor, Tensor]:
        """Warm rows from the model; cold rows seasonal naive once a season is seen,
        else the last value, with quantiles from the running standard deviation."""
        arena, shape = self.arena, self.shape
        H, m = shape.horizon, shape.season
        point = torch.empty(len(slots), H)
        quant = torch.empty(len(slots), len(shape.quantiles), H)
        if bool(warm.any()):
            point[warm], quant[warm] = self._model_forecast(
                slots[warm], n[warm], history[warm],
                None if weight is None else weight[warm], result)
        cold = ~warm
        nc = n[cold]
        back = torch.where(nc[:, None] >= m, self._naive_back[None, :], 0)  # (C, H)
        naive = torch.gather(history[cold], 1, (nc[:, None] - 1 - back) % arena.ring_len)
        spread_c = arena.ew_var[slots[cold]].sqrt()[:, None, None] * self.z[None, :, None]
        point[cold] = naive
        quant[cold] = naive[:, None, :] + spread_c
        return point, quant


def _rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Split row indices into rounds: the r-th occurrence of each slot goes to round r."""
    live = np.nonzero(slots != FREE)[0]
    if len(live) == 0:
        return []
    s = slots[live]
    order = np.argsort(s, kind="stable")
    sorted_slots = s[order]
    starts = np.ones(len(s), dtype=bool)
    starts[1:] = sorted_slots[1:] != sorted_slots[:-1]
    positions = np.arange(len(s))
    rank_sorted = positions - np.maximum.accumulate(np.where(starts, positions, 0))
    rank = np.empty(len(s), dtype=np.int64)
    rank[order] = rank_sorted
    if rank.max() == 0:
        return [live]
    by_round = np.argsort(rank, kind="stable")  # keeps arrival order inside a round
    bounds = np.cumsum(np.bincount(rank))
    return [live[part] for part in np.split(by_round, bounds[:-1])]


def _empty_forecasts(shape: model.ModelShape) -> Forecasts:
    H, Q = shape.horizon, len(shape.quantiles)
    return Forecasts(
        obs_index=np.zeros(0, dtype=np.int64), slots=np.zeros(0, dtype=np.int64),
        origin_ts=np.zeros(0, dtype=np.int64), point=np.zeros((0, H), dtype=np.float32),
        quantiles=np.zeros((0, Q, H), dtype=np.float32), warm=np.zeros(0, dtype=bool))


def _concat(parts: list[Forecasts]) -> Forecasts:
    if len(parts) == 1:
        return parts[0]
    return Forecasts(
        obs_index=np.concatenate([p.obs_index for p in parts]),
        slots=np.concatenate([p.slots for p in parts]),
        origin_ts=np.concatenate([p.origin_ts for p in parts]),
        point=np.concatenate([p.point for p in parts]),
        quantiles=np.concatenate([p.quantiles for p in parts]),
        warm=np.concatenate([p.warm for p in parts]))
