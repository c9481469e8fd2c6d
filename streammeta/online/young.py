"""Young entities' intervals: at least what the entity's own naive errors say.

Before an entity has served errors of its own at a step h (and before the population
has any), its calibrated offsets are the population's, or the model's own quantiles, and the
model's spread ignores how far the entity's values move in h steps. So every level q
of a young warm entity's interval is at least as far from the served point as

    w_s · t_q(k) · ŝ(ℓ),    w_s = YOUNG / (YOUNG + t)

at each scored horizon s, interpolated between them as the offsets are (linear in √h).
ŝ(ℓ) is the root mean square of the entity's y_i − y_(i−ℓ) over the values its ring
holds (from the sums of squares the arena keeps as values join, ``Arena.lag_sums``),
ℓ = s (no season) or m·⌈s/m⌉ (the lag from which seasonal naive forecasts step s;
where no pair is ℓ apart yet, the longest lag ℓ' with one × √(ℓ/ℓ'), a random walk's)
— for a warm entity the smaller of ŝ(m·⌈s/m⌉) and ŝ(s), the errors of the
better of seasonal naive and naive (both are among the experts that serve it; the
seasonal lag alone made the intervals of trending monthly series too wide: M1 monthly
covered 0.856, pinball 0.763, against 0.840 and 0.759) — k the pairs it is from,
t_q(k) Student's q-quantile with k degrees of freedom
(a new error over the root mean square of k earlier ones, of zero mean), and t the
entity's resolved forecasts at s: the floor fades as the entity's own calibration takes
over, but not before the population's record holds errors at s (until then the
offsets are the model's own quantiles, which nothing has checked). Cold entities'
intervals (seasonal naive around the running standard deviation, flat in h) get the
floor with w = 1. It only widens what is served: the offsets kept for scoring, and so
the population's record and the entity's corrections, are as without it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

YOUNG = 100.0  # the floor's weight is YOUNG / (YOUNG + the entity's resolved forecasts)


def lags(horizons: tuple[int, ...], season: int) -> list[int]:
    """ℓ of each scored horizon s: s (no season) or m·⌈s/m⌉."""
    return [h if season <= 1 else season * math.ceil(h / season) for h in horizons]


def spread_lags(horizons: tuple[int, ...], season: int, ring_len: int) -> tuple[int, ...]:
    """The lags ℓ < R whose sums the arena keeps (:func:`pair_sums`): 1, each scored
    horizon's own and its seasonal one (:func:`lags`)."""
    return tuple(sorted(lag for lag in {1, *lags(horizons, season), *horizons}
                        if lag < ring_len))


def pair_sums(ring: Tensor, n: Tensor, at: tuple[int, ...]) -> Tensor:
    """(B, L) float64 Σ (y_i − y_(i−ℓ))² over the pairs the rings (B, R) hold whose
    older end is the entity's (n (B,) values seen), at each lag ℓ < R of ``at``: what
    :func:`moved` keeps up to date one value at a time."""
    R = ring.shape[1]
    x = torch.gather(ring, 1, ((n - 1)[:, None] - torch.arange(R - 1, -1, -1)) % R)
    mine = torch.arange(R)[None, :] >= (R - n.clamp(max=R))[:, None]  # (B, R)
    # The others are not the entity's, and may be anything; float64 before the
    # differences: two float32 values near ±3.4e38 differ by more than float32 holds.
    x = torch.where(mine, x, 0.0).to(torch.float64)
    out = torch.empty(len(n), len(at), dtype=torch.float64)
    for i, lag in enumerate(at):
        out[:, i] = (x[:, lag:] - x[:, :-lag]).square_().mul_(mine[:, :-lag]).sum(dim=1)
    return out


def moved(sums: Tensor, rows: Tensor, j: Tensor, y: Tensor, lags: tuple[int, ...]) -> Tensor:
    """The sums (B, L) of :func:`pair_sums` once y (B,) joins the rings ``rows`` (B, R,
    read before it) at absolute index j (B,): its pair with y_(j−ℓ) joins, and the
    value it overwrites (index j − R) takes its pair with y_(j−R+ℓ) away. Each pair
    leaves as the same float64 it joined as: the sums drift by rounding only."""
    R, at, f64 = rows.shape[1], torch.tensor(lags), torch.float64
    back = torch.gather(rows, 1, (j[:, None] - at[None, :]) % R).to(f64)  # (B, L) y_(j−ℓ)
    joins = (y.to(f64)[:, None] - back).square_().mul_(j[:, None] >= at[None, :])
    old = torch.gather(rows, 1, (j % R)[:, None]).to(f64)  # y_(j−R)
    partner = torch.gather(rows, 1, (j[:, None] - R + at[None, :]) % R).to(f64)
    leaves = (partner - old).square_().mul_((j >= R)[:, None])
    return (sums + joins).sub_(leaves).clamp_(min=0.0)


def naive_spread(sums: Tensor, n: Tensor, ring_len: int, kept: tuple[int, ...],
                 at: list[int]) -> tuple[Tensor, Tensor]:
    """(B, S) ŝ at each lag of ``at`` and (B, S) the pairs k it is from (0:
    no two values); ``sums`` (B, L) :func:`pair_sums` at the lags ``kept``, n (B,)
    values seen."""
    R = ring_len
    held = n.clamp(max=R)  # the entity's values: the ring's newest ``held``
    # The longest lag with a pair so far, per row: what a lag without one is scaled from.
    best = (torch.zeros(len(n)), torch.zeros(len(n), dtype=torch.long), torch.ones(len(n)))
    out: dict[int, tuple[Tensor, Tensor]] = {}
    for lag in sorted({1, *at}):
        if lag < R:
            pairs = (held - lag).clamp(min=0)
            s = (sums[:, kept.index(lag)] / pairs.clamp(min=1)).sqrt().to(torch.float32)
            has = pairs > 0
            best = (torch.where(has, s, best[0]), torch.where(has, pairs, best[1]),
                    torch.where(has, float(lag), best[2]))
        out[lag] = (best[0] * (lag / best[2]).sqrt(), best[1])
    return (torch.stack([out[lag][0] for lag in at], dim=1),
            torch.stack([out[lag][1] for lag in at], dim=1))


def student(z: Tensor, k: Tensor) -> Tensor:
    """(B, Q, S) Student's quantiles at the normal quantiles z (Q,) for k (B, S) degrees
    of freedom (Cornish–Fisher to k⁻³: at q = 0.9 within 0.3% of the exact quantile from
    k = 2 on, 4% under it at k = 1); z where k is 0."""
    z = z[None, :, None]
    d = k.to(z.dtype).clamp(min=1)[:, None, :]
    z3, z5, z7 = z**3, z**5, z**7
    t = (z + (z3 + z) / (4 * d) + (5 * z5 + 16 * z3 + 3 * z) / (96 * d**2)
         + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * d**3))
    return torch.where(k[:, None, :] > 0, t, z)


def widen(point: Tensor, quant: Tensor, least: Tensor, z: Tensor) -> Tensor:
    """quant (B, Q, H) with each level at least ``least`` (B, Q, H) from point (B, H):
    below the median no higher than point + least, above no lower."""
    out = quant.clone()
    for q, zq in enumerate(z.tolist()):  # a level at a time: 4x faster than torch.where
        if zq:
            pick = torch.minimum if zq < 0 else torch.maximum
            pick(out[:, q], point + least[:, q], out=out[:, q])
    return out
