"""The theta experts' forecasts (``online.experts``: THETA, TREND and DAMPED).

The theta method (Assimakopoulos & Nikolopoulos, 2000) on an entity's recent
values: classical seasonal adjustment where an autocorrelation test finds a
season, simple exponential smoothing with its rate chosen per entity by in-sample
one-step error from ``ALPHAS``, plus a share of the linear trend (``TREND_SHARES``).
On the same seasonally adjusted values, the damped trend (Gardner & McKenzie, 1985;
ETS(A,Ad,N), what AutoETS mostly picks on non-seasonal data): level, trend and
damping chosen per entity from the grid ``ALPHAS`` × ``BETAS`` × ``PHIS`` by
in-sample one-step error.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Smoothing rates the theta experts choose from, and the share of the linear trend
# each adds (THETA, TREND).
ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TREND_SHARES = (0.5, 1.0)
# The damped trend's grid: trend rates (as a share of the level's rate; 0: no trend,
# simple exponential smoothing, as the trend starts at 0) and damping factors.
# Final-origin MASE of the expert alone (asinh units, offline, with a start slope from
# the first values, since replaced by 0) on weekly ETT (m = 1, H = 13) / M4-shaped daily
# (1, 14) / M1 yearly (1, 6), with damping 0.8, 0.88, 0.94, 0.98: 1.046 / 1.661 / 3.490;
# with 0.98 alone 1.192 / 2.055 / 3.264 (the theta expert 1.534 / 2.133 / 3.803, AutoETS
# on weekly ETT 1.044). In the engine, alone: 1.018 / 1.648. 11 × 5 × 4 = 220 runs.
BETAS = (0.0, 0.02, 0.05, 0.1, 0.2)
PHIS = (0.8, 0.88, 0.94, 0.98)
SEASONALITY_Z = 1.645  # the seasonality test's two-sided 90% limit (the classical theta method's)
# Simple exponential smoothing reads the whole ring (``experts.THETA_HISTORY``: 144 values
# and more): at its slowest rate (0.05) a level of the last few weeks of a daily series.
# The damped trend reads the last DAMPED_SPAN values: its grid of 220 runs costs 20 times
# the smoothing's 11 per value. Final-origin MASE with both on the last 60 values / the
# smoothing on the ring (kept) / both on the ring: ETT daily means (m = 7) 0.686 / 0.677
# / 0.669, vic_elec daily 1.499 / 1.469 / 1.454, M1 monthly 1.073 / 1.070 / 1.070,
# quarterly 1.640 / 1.639 / 1.638, aus_retail quarters 1.225 / 1.225 / 1.230. The engine
# alone at m = 7 (5,000 entities of 160 values): both on the ring halved its throughput.
DAMPED_SPAN = 60


def theta(x: Tensor, n: Tensor, horizon: int, indices: Tensor | None = None) -> Tensor:
    """The THETA, TREND and DAMPED forecasts (B, H, 3) in model units.

    x (B, W): each entity's last W values in model units, oldest first; n (B,) the
    values it has seen (x's last column is absolute index n-1; columns before
    index 0 are not the entity's and are masked); indices (B, m): the entities'
    seasonal indices by phase (absolute index mod m; see :func:`seasonal_indices`)."""
    B, W = x.shape
    if B == 0:
        return x.new_zeros(0, horizon, len(TREND_SHARES) + 1)
    col = torch.arange(W)
    start = W - n.clamp(max=W)  # (B,) first column that is the entity's
    mask = col[None, :] >= start[:, None]  # (B, W)
    count = mask.sum(dim=1)  # (B,)
    x = torch.where(mask, x, 0.0)
    if indices is not None:
        x = x - _by_phase(indices, (n - W) % indices.shape[1], W)
    z = x  # model units: with asinh about logarithms, so season and trend are multiplicative
    alphas = torch.tensor(ALPHAS, dtype=x.dtype)  # (G,)
    first = start.clamp(max=W - 1)  # (B,)
    level = torch.gather(z, 1, first[:, None]).expand(B, len(ALPHAS))
    sse = torch.zeros(B, len(ALPHAS), dtype=x.dtype)
    active = (col[None, :] > first[:, None]).to(x.dtype)  # (B, W)
    a, ab, phi = _grid(x.dtype)  # (D,) the damped trend's rates and damping
    dfirst = torch.maximum(first, torch.tensor(W - DAMPED_SPAN))  # (B,)
    dactive = (col[None, :] > dfirst[:, None]).to(x.dtype)  # (B, W)
    dl = torch.gather(z, 1, dfirst[:, None]).expand(B, len(a))  # (B, D) level and trend
    db = torch.zeros(B, len(a), dtype=x.dtype)  # a trend of 0 to start: learnt, not guessed
    dsse = torch.zeros(B, len(a), dtype=x.dtype)
    damped_from = int(dfirst.min()) + 1
    for j in range(int(first.min()) + 1, W):  # one-step errors of every rate at once
        on = active[:, j : j + 1]
        error = (z[:, j : j + 1] - level) * on  # (B, G)
        sse = sse.addcmul(error, error)
        level = level.addcmul(error, alphas)
        if j < damped_from:
            continue
        # Before an entity's first value its error is 0 and its trend 0: nothing moves.
        db = db.mul(phi)  # (B, D) the damped trend of this step
        ahead = dl + db
        derr = (z[:, j : j + 1] - ahead).mul_(dactive[:, j : j + 1])
        dsse.addcmul_(derr, derr)
        dl = ahead.addcmul_(derr, a)
        db.addcmul_(derr, ab)
    best = sse.argmin(dim=1, keepdim=True)  # (B, 1)
    alpha = alphas[best]  # (B, 1)
    level = torch.gather(level, 1, best)  # (B, 1)
    t = col.to(x.dtype)[None, :]
    used = mask.to(x.dtype)
    c = count.clamp(min=1).to(x.dtype)[:, None]
    t_mean = (t * used).sum(dim=1, keepdim=True) / c
    z_mean = (z * used).sum(dim=1, keepdim=True) / c
    spread = ((t - t_mean).square() * used).sum(dim=1, keepdim=True)
    slope = ((t - t_mean) * (z - z_mean) * used).sum(dim=1, keepdim=True) / spread.clamp(min=1e-12)
    h = torch.arange(1, horizon + 1, dtype=x.dtype)[None, :]  # (1, H)
    # The theta line's trend term (Hyndman & Billah, 2003): the drift from the smoothed level.
    steps = h - 1 + 1 / alpha - (1 - alpha) ** c / alpha  # (B, H)
    pick = dsse.argmin(dim=1, keepdim=True)  # (B, 1)
    damping = torch.cumsum(phi[pick] ** h, dim=1)  # (B, H): φ + φ² + … + φ^h
    damped = torch.gather(dl, 1, pick) + damping * torch.gather(db, 1, pick)
    out = torch.stack([*(level + share * slope * steps for share in TREND_SHARES), damped],
                      dim=2)
    if indices is not None:  # the targets' phases follow the newest value's
        out = out + _by_phase(indices, n % indices.shape[1], horizon)[:, :, None]
    return out


def signed(x: Tensor, n: Tensor, horizon: int, indices: Tensor | None = None,
           season: int = 1, asinh: bool = True) -> Tensor:
    """:func:`theta` on values in asinh units (``asinh``; else :func:`theta` as it is),
    but on the observed values (with their own seasonal indices, where ``indices`` are
    given) for the rows that reach zero.

    asinh units are about logarithms, where a trend and a season are multiplicative:
    right for a positive series, but a series at or below zero has no logarithm, and in
    asinh units its dips towards 0 and below are the outliers of a log scale (ETTh1's
    HUFL as daily means, values −4 to 15: smoothing rate 1.0 in asinh units, 0.2 on the
    values)."""
    W = x.shape[1]
    mine = torch.arange(W)[None, :] >= (W - n.clamp(max=W))[:, None]
    rows = torch.nonzero((torch.where(mine, x, 1.0) <= 0).any(dim=1))[:, 0]
    if not asinh or not len(rows):
        return theta(x, n, horizon, indices)
    x = x.clone()
    x[rows] = torch.sinh(x[rows])
    if indices is not None:
        indices = indices.clone()
        indices[rows] = seasonal_indices(x[rows], n[rows], season)
    out = theta(x, n, horizon, indices)
    out[rows] = torch.asinh(out[rows])
    return out


def _grid(dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """The damped trend's grid (D,) each: level rate α, trend rate α·β, damping φ."""
    grid = torch.cartesian_prod(torch.tensor(ALPHAS, dtype=dtype),
                                torch.tensor(BETAS, dtype=dtype), torch.tensor(PHIS, dtype=dtype))
    return grid[:, 0], grid[:, 0] * grid[:, 1], grid[:, 2]


def _by_phase(indices: Tensor, first: Tensor, length: int) -> Tensor:
    """(B, length): each row's indices of the phases first, first+1, … (mod m)."""
    season = indices.shape[1]
    cycles = indices.repeat(1, (length + season - 1) // season + 1)  # (B, ≥ m + length)
    return torch.gather(cycles, 1, first[:, None] + torch.arange(length)[None, :])


def seasonal_indices(x: Tensor, n: Tensor, season: int) -> Tensor:
    """Additive seasonal indices (B, m) by phase (absolute index mod m), by classical
    decomposition (centred moving average) of x (B, W) as :func:`theta` takes it;
    zero for entities with fewer than two seasons or no significant autocorrelation at
    the season's lag (Bartlett's limit). The engine refreshes them once a season.

    The lag-k autocorrelation is the mean product of the c − k pairs k apart over the
    variance of the entity's c values (:func:`autocorrelation`), not their sum over c
    times the variance, the classical estimator, which shrinks it by (c − k)/c: at
    three seasons by a third, so that not even a periodic series passed the test
    (r_m ≤ 2/3 against a limit of about 0.8 for a smooth shape at m = 12), and the
    theta experts forecast a seasonal entity without its season until four seasons
    (M4 hourly summed to 2 h, m = 12: 7% of the series found seasonal at three
    seasons, 89% at four; with the pairs' mean 89% at three). On white noise the test
    now flags 7–12% of the entities from two seasons to twelve, about its nominal
    two-sided 10%; the classical estimator flagged about 1% at three seasons and 6–7%
    at twelve (docs/evaluation.md, "The theta experts' seasonality test on three
    seasons")."""
    B, W = x.shape
    if season <= 1 or 2 * season > W or B == 0:
        return x.new_zeros(B, max(season, 1))
    col = torch.arange(W)
    count = n.clamp(max=W)
    mask = col[None, :] >= (W - count)[:, None]
    x = torch.where(mask, x, 0.0)
    phase = (n[:, None] - W + col[None, :]) % season
    used = mask.to(x.dtype)
    c = count.clamp(min=1).to(x.dtype)
    r = (x - (x * used).sum(dim=1, keepdim=True) / c[:, None]) * used
    acf = autocorrelation(r, c, season)  # (B, m)
    limit = SEASONALITY_Z * torch.sqrt((1 + 2 * acf[:, :-1].square().sum(dim=1)) / c)
    seasonal = (count >= 2 * season) & (acf[:, -1].abs() > limit)
    # The centred moving average (2×m for an even m) from running sums.
    sums = torch.cat([x.new_zeros(B, 1), x.cumsum(dim=1)], dim=1)  # (B, W+1)
    plain = (sums[:, season:] - sums[:, :-season]) / season  # (B, W-m+1) mean of j..j+m-1
    if season % 2 == 0:
        trend, centre = (plain[:, 1:] + plain[:, :-1]) / 2, season // 2  # j..j+m, centred at j+m/2
    else:
        trend, centre = plain, season // 2
    first = torch.arange(trend.shape[1])[None, :]
    ok = (first >= (W - count)[:, None]).to(x.dtype)  # every term the entity's
    deviation = (x[:, centre : centre + trend.shape[1]] - trend) * ok
    where = phase[:, centre : centre + trend.shape[1]]
    total = torch.zeros(B, season, dtype=x.dtype).scatter_add_(1, where, deviation)
    seen = torch.zeros(B, season, dtype=x.dtype).scatter_add_(1, where, ok)
    indices = total / seen.clamp(min=1)
    indices = indices - indices.mean(dim=1, keepdim=True)
    return torch.where(seasonal[:, None], indices, torch.zeros_like(indices))


def autocorrelation(r: Tensor, count: Tensor, lags: int) -> Tensor:
    """(B, lags) the autocorrelation at lags 1..``lags`` of the deviations r (B, W) from
    each row's mean, zero outside its ``count`` (B,) newest values: the mean product of
    the pairs k apart over the mean square (:func:`seasonal_indices` says why not the
    sum over the count)."""
    energy = r.square().sum(dim=1).clamp(min=1e-12)
    return torch.stack([(r[:, k:] * r[:, :-k]).sum(dim=1) / energy
                        * (count / (count - k).clamp(min=1)) for k in range(1, lags + 1)],
                       dim=1)
