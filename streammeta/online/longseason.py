"""Long seasons on short histories: the expert stage's rules for an entity that has
not seen two of its seasons where two seasons are more than the model's warm-up.

Weekly values with m = 52 (config.tree resolves the model's warm-up to 72 values for
any m ≥ 24) are the case: a series of two years has fewer than two seasons. By the
rules made for shorter seasons its cheap experts would be scored from two seasons
(104 values: never, for a series of 100), the theta experts would be off (they serve
m < ``experts.THETA_SEASONS_BELOW``: measured on hourly values with a daily season,
whose seasonal adjustment was unstable), persistence would serve its first 48 warm
forecasts at step 1 only, and before the model is warm it would be served seasonal
naive alone: a forecast of one past value per step, whatever its record says. Hence:

* :func:`cold_from`, :func:`serve_from`: the cheap experts are scored from one
  season on where two seasons are more than the model's warm-up (seasonal naive has a
  forecast from one season on), and a cold entity is served their blend from then on;
* :func:`unadjusted`: the theta experts serve a long season's entity until it has
  seen two seasons, not adjusted for the season (before two seasons they cannot be):
  simple exponential smoothing plus trend, what a series too short to show its season
  needs. From two seasons on they do not serve (as before): an adjustment on hourly
  values' daily season is what ``THETA_SEASONS_BELOW`` keeps out;
* persistence serves a young entity at scored horizons below half a season
  (``experts.Weighting``): there the season does not rule yet (m = 52, H = 13: the
  quarter ahead).

Each rule depends on the values seen against the season, and none changes a season
whose two seasons fit the model's warm-up with horizons of a half season or more
(m = 24 with H = 48, m = 12 with H = 18, m = 4, m = 7 with H = 14: the theta experts
are then allowed for entities short of two seasons only, which are cold and neither
served the blend nor scored); m = 48 (fpp3 vic_elec, warm after 72) is scored, and
served the blend while cold, from one season on. Figures: docs/evaluation.md, "Long seasons
on short histories".
"""

from __future__ import annotations

import torch
from torch import Tensor

from streammeta.online.analogues import span
from streammeta.online.theta import signed

NEVER = 2**62  # values seen: a rule that never applies


def cold_from(season: int, warm_at: int) -> int:
    """Values an origin needs before the cheap experts are scored while the entity is
    cold: two seasons (the theta experts adjust for the season from then on), one where
    two are more than the model's warm-up ``warm_at`` (0: unknown, two); 1 with no
    season."""
    if season <= 1:
        return 1
    return season if 0 < warm_at < 2 * season else 2 * season


def serve_from(season: int, warm_at: int) -> int:
    """Values from which a cold entity is served the experts' blend: one season where
    the experts are scored from one season on (:func:`cold_from`) before the model is
    warm, else never (``NEVER``: a cold entity is served seasonal naive, or the last
    value before a season; m = 24 warm after 72 keeps that, scored from 48)."""
    first = cold_from(season, warm_at)
    return first if 1 < first == season < warm_at else NEVER


def theta_until(season: int, serves: bool) -> int:
    """Values seen below which the theta experts serve: no limit (0) where they serve
    the season, two seasons where they do not."""
    return 0 if serves else 2 * season


def allow_theta(allow: Tensor, n: Tensor, until: int, columns: slice) -> Tensor:
    """The allowed mask (S, E) or (B, S, E) with the theta experts (``columns``)
    allowed for the rows whose values seen n (B,) are below ``until`` (0: unchanged)."""
    short = n < until
    if not until or not bool(short.any()):
        return allow
    out = allow.expand(len(n), -1, -1).clone()
    out[:, :, columns] |= short[:, None, None]
    return out


def unadjusted(history: Tensor, n: Tensor, until: int, ring_len: int, horizon: int,
               asinh: bool = True) -> Tensor:
    """The THETA and TREND forecasts (B, H, 2) of the rows whose values seen n (B,) are
    below ``until``, from their rings (``history`` (B, 2R)) with no seasonal indices
    (on the values where a row reaches zero: ``theta.signed``); zeros for the others
    (they do not serve them)."""
    out = torch.zeros(len(n), horizon, 2)
    rows = torch.nonzero(n < until)[:, 0]
    if len(rows):
        x = span(history[rows], n[rows] - ring_len, ring_len)
        out[rows] = signed(x, n[rows], horizon, asinh=asinh)[:, :, :2]  # no damped trend there
    return out


def only_below(kept: Tensor, seen: Tensor, until: int) -> Tensor:
    """The kept THETA and TREND forecasts (B, S, 2) where the origin's values seen
    ``seen`` (B, S) were below ``until``, NaN elsewhere (zeros, not forecasts: in the
    record the others' mean stands in)."""
    return torch.where((seen < until)[:, :, None], kept, float("nan"))
