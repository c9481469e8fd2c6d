"""The level expert: seasonal naive moved to the entity's newest level.

Its forecast of step h is the value one season before the target plus the change of
level over the last season: the mean of the newest half season of values minus the
mean of the same half season one season earlier (m = 24: the last 12 values against
12 to 23 values a day earlier), clipped to ``CLIP`` model units. In the default asinh
units (about logarithms) that is seasonal naive scaled by the ratio of the two levels,
at most by a factor e^0.22 ≈ 1.25 either way; with ``series.transform = "none"`` it is
an additive shift of at most 0.22 of the data's units (standardised data: ETT).

Why: a young entity's record is a few seasons long, and its newest season often sits
at another level than the one before (a hot day after a mild one, a weekday after a
holiday, a series that grows): seasonal naive carries the old level into the whole
horizon, persistence the right level but a flat shape. On each entity's first 48
rolling forecasts (MASE, numpy on the data alone, the same origins and scales as
``streammeta evaluate``): M4 hourly seasonal naive 1.542 → 1.414 (unclipped 1.452),
fpp3 vic_elec 1.039 → 0.700 (persistence 0.871, river's Holt-Winters 0.728: its
seasonal factors are scaled by a level smoothed over the newest values, the same
idea), fpp3 aus_retail 1.684 → 1.272. A whole season's means instead of half a
season's: 1.416 / 0.908 / 1.306 (the newer half season is the better gauge of the
level now).

The shift needs ``season + span`` values (before that it is 0: seasonal naive), and
is judged at every scored horizon from the ring at each forecast's origin, so it
keeps no state of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

CLIP = 0.22  # the largest shift, in model units (asinh: a factor of about 1.25)
# The expert serves seasons of this many steps or more: the mean of half a shorter
# season (2 values at m = 4) gauges noise more than level. M1 quarterly final-origin
# MASE 1.632 without it, 1.639 with it (monthly 1.086 → 1.072).
SEASONS_FROM = 12


def span_for(season: int) -> int:
    """The values whose mean gauges the level: half a season, at least one."""
    return max(1, season // 2)


def serves(season: int, window: int) -> bool:
    """Whether the expert serves: a season of ``SEASONS_FROM`` steps or more whose shift
    the ring holds at every scored origin (season + span ≤ the model's window; the ring
    holds window + H)."""
    return season >= SEASONS_FROM and season + span_for(season) <= window


def shift(ring: Tensor, last: Tensor, season: int) -> Tensor:
    """The level's change at absolute indices ``last`` (B,) or (B, S) of each row of
    ``ring`` (B, R): mean of the span ending at ``last`` minus the mean of the span a
    season earlier, clipped to ±``CLIP``; 0 where fewer than ``season + span`` values
    had been seen."""
    k = span_for(season)
    at = last[:, None] if last.dim() == 1 else last  # (B, S)
    if at.shape[1] == 1:  # one origin per row (serving): read the 2k values
        back = torch.arange(k)
        idx = torch.cat([at - back, at - season - back], dim=1) % ring.shape[1]
        now, then = torch.gather(ring, 1, idx).reshape(len(at), 2, k).mean(dim=2).unbind(1)
        change = (now - then)[:, None]
    else:  # several (scoring): four reads of the ring's prefix sums per origin
        # Less the row's first value (it cancels in the difference): smaller float32 sums;
        # written into one buffer and summed in place (a padded copy took 1.7 times as long).
        prefix = ring.new_empty(ring.shape[0], ring.shape[1] + 1)
        prefix[:, 0] = 0.0
        torch.sub(ring, ring[:, :1], out=prefix[:, 1:]).cumsum_(dim=1)
        change = (_sums(prefix, at, k) - _sums(prefix, at - season, k)) / k
    out = change.clamp(-CLIP, CLIP)
    out = torch.where(at >= season + k - 1, out, torch.zeros_like(out))
    return out.reshape(last.shape)


def _sums(prefix: Tensor, end: Tensor, k: int) -> Tensor:
    """(B, S) sums of the k values ending at absolute indices ``end`` (B, S) of each
    ring row whose prefix sums are ``prefix`` (B, R + 1); a span that wraps past the
    ring's end adds the row's total. Reading 2k values per origin instead cost twice as
    much at m = 24, S = 5 (4.1 against 1.9 µs per row)."""
    R = prefix.shape[1] - 1
    hi, lo = end % R + 1, (end - k + 1) % R
    got = torch.gather(prefix, 1, torch.cat([hi, lo], dim=1))
    S = end.shape[1]
    return got[:, :S] - got[:, S:] + (lo >= hi).to(prefix.dtype) * prefix[:, R:]
