"""Rounds: a batch cut into whole-tensor steps, and the values each step admits.

Round r holds the r-th observation of every entity that has at least r+1 in the
batch, so each round touches each entity at most once and can be done with
whole-tensor gathers and scatters. A round first checks timestamps (late,
duplicate, misaligned observations are rejected), fills short gaps by linear
interpolation (a longer gap restarts the entity cold), and after scoring appends
the values to the entities' rings and running normalisers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streammeta.io.codec import Reason
from streammeta.io.frequency import Frequency, utc_text
from streammeta.online import experts, model, young
from streammeta.online.arena import FREE, NEXT_ORIGIN, NEXT_SERVED, Arena, resum
from streammeta.online.result import Result


def split(slots: np.ndarray) -> list[np.ndarray]:
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


def timed(slots: np.ndarray, ts: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """The rounds of :func:`split`, each with whether the errors of the rounds before it
    may enter the population's records (``online.population``, ``online.calibration``)
    first: where no value of the round is older than any value whose errors wait. Else
    they wait (at the latest, for the end of the batch), so no forecast depends on a
    value later than its origin, while a batch of aligned series (a replayed history in
    time order: each round one step of every entity) learns as a stream of one step per
    poll does. With one commit per batch, a short panel replayed in one batch reached its
    last origins with no population record at all: M4-shaped daily series (m = 1,
    H = 14) final-origin MASE 1.904 → 1.769, weekly ETT (m = 52, H = 13) 0.839 → 0.503
    (docs/evaluation.md, "The population's records within a batch")."""
    out, waiting = [], None  # the latest timestamp whose errors wait
    for rows in split(slots):
        out.append((rows, waiting is not None and waiting <= int(ts[rows].min())))
        top = int(ts[rows].max())
        waiting = top if waiting is None or out[-1][1] else max(waiting, top)
    return out


@dataclass
class Round:
    """The observations of one round that passed the timestamp checks."""

    rows: np.ndarray  # (B,) index into the batch
    slots: Tensor  # (B,)
    ts: Tensor  # (B,) int64, in the step's units (ms, or months: series.frequency)
    y: Tensor  # (B,) in model units
    gap: Tensor  # (B,) missing steps before each value (0: none)


def admit(arena: Arena, rows: np.ndarray, slots_np: np.ndarray, ts_np: np.ndarray,
          y_np: np.ndarray, frequency: Frequency, transform: str, result: Result) -> Round:
    """Reject observations whose timestamp is not a whole number of steps after
    their entity's last one, or whose value float32 cannot hold (beyond ±3.4e38: as
    inf it made every later forecast of the entity NaN); the rest, with the steps
    missing before each. ``ts`` in ``frequency``'s units: ms, or months for a calendar
    one (``streammeta.io.frequency``); a rejection's detail gives both times in ms
    and UTC, as the producer wrote them."""
    step = frequency.step
    slots = torch.from_numpy(slots_np)
    ts = torch.from_numpy(ts_np)
    raw = torch.from_numpy(y_np).to(torch.float32)
    count = arena.count[slots]
    delta = ts - arena.last_ts[slots]
    seen = count > 0
    huge = ~torch.isfinite(raw)
    bad = (seen & ((delta <= 0) | (delta % step != 0))) | huge
    if bool(bad.any()):
        for i in torch.nonzero(bad).flatten().tolist():
            if bool(huge[i]):
                result.rejected.append((int(rows[i]), Reason.NON_FINITE,
                                        f"value {float(y_np[i])!r} is beyond float32"))
                continue
            d = int(delta[i])
            reason = (Reason.DUPLICATE if d == 0 else Reason.LATE if d < 0
                      else Reason.MISALIGNED)
            result.rejected.append((int(rows[i]), reason,
                                    f"ts {_instant(frequency, int(ts[i]))} vs last "
                                    f"{_instant(frequency, int(ts[i]) - d)}"))
        keep = ~bad
        rows, raw = rows[keep.numpy()], raw[keep]
        slots, ts, delta, seen = slots[keep], ts[keep], delta[keep], seen[keep]
    y = model.to_model_units(raw, transform)
    gap = torch.where(seen, delta // step - 1, torch.zeros_like(delta))
    return Round(rows, slots, ts, y, gap)


def _instant(frequency: Frequency, units: int) -> str:
    """A time in ``frequency``'s units as epoch ms and UTC: ``1577836800000
    (2020-01-01T00:00:00Z)``. A calendar frequency's units are months since 1970-01,
    which shown bare ("ts 591 vs last 617") read as milliseconds."""
    ms = int(frequency.to_ms(np.array([units], dtype=np.int64))[0])
    return f"{ms} ({utc_text(ms)})"


def fill_gaps(arena: Arena, slots: Tensor, y: Tensor, gap: Tensor, max_gap_fill: int,
              step: int, result: Result) -> None:
    """Interpolate up to ``max_gap_fill`` missing steps; restart longer gaps cold."""
    too_long = gap > max_gap_fill
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
        arena.forget(si, idx)  # targets never observed
    arena.guard[s, NEXT_SERVED:NEXT_ORIGIN + 1] = float("nan")  # made for a filled step
    arena.count[s] += g
    resum(arena, s)
    arena.last_ts[s] += g * step
    result.gap_steps += int(g.sum())


def append(arena: Arena, slots: Tensor, ts: Tensor, y: Tensor, ew_span: int,
           rows: Tensor | None = None) -> None:
    """The values join the rings; the running mean and variance move. ``rows`` (B, R),
    the slots' rows of ``arena.ring`` read before, take the values too."""
    j = arena.count[slots]
    if arena.spread_lags:  # the young floor's sums (online.young), before y overwrites
        before = arena.ring.index_select(0, slots) if rows is None else rows
        arena.lag_sums[slots] = young.moved(arena.lag_sums[slots], before, j, y,
                                            arena.spread_lags)
    arena.ring[slots, j % arena.ring_len] = y
    if rows is not None:
        rows[torch.arange(len(slots)), j % arena.ring_len] = y
    arena.count[slots] = j + 1
    arena.last_ts[slots] = ts
    # Exponentially weighted mean/variance; plain averages while young.
    rate = torch.maximum(1.0 / (j + 1).to(torch.float32), torch.tensor(1.0 / ew_span))
    mean = arena.ew_mean[slots]
    diff = y - mean
    arena.ew_mean[slots] = mean + rate * diff
    arena.ew_var[slots] = (1 - rate) * (arena.ew_var[slots] + rate * diff.square())


def ring_length(window: int, horizon: int, season: int) -> int:
    # Room for a training example (L inputs + H targets), the seasonal-naive
    # reference of the longest horizon and, where they serve, the theta experts' history
    # and the weekly expert's week.
    theta = experts.THETA_HISTORY if season < experts.THETA_SEASONS_BELOW else 0
    week = experts.weekly_lag(season, window, horizon)
    return max(window + horizon, horizon + model.seasonal_back(horizon, season), theta,
               week) + 1
