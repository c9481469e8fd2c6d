"""Per-entity expert weighting: the model against cheap experts, by realised errors.

For every entity and every scored horizon (1, the season, H: the arena's S
columns), an exponentially weighted average forecaster (Hedge) over E experts:

* ``MODEL`` — the meta-learned model as the engine serves it (while the guard
  runs, already blended with the initial θ);
* ``NAIVE`` — persistence, the last value;
* ``SEASONAL`` — seasonal naive, the value one season before each target.

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

import torch
from torch import Tensor

MODEL, NAIVE, SEASONAL = range(3)
EXPERTS = 3
CLIP = 10.0  # errors beyond this many standard deviations count as this many


def update(losses: Tensor, errors: Tensor, valid: Tensor, discount: float) -> Tensor:
    """losses (B, S, E) and new errors (B, S, E) where ``valid`` (B, S) → losses."""
    step = errors.clamp(max=CLIP)
    known = valid & ~torch.isnan(step).any(dim=2)  # (B, S)
    return torch.where(known[:, :, None], losses * discount + step, losses)


def weights(losses: Tensor, rate: float) -> Tensor:
    """(B, S, E) losses → (B, S, E) weights, each row summing to 1."""
    return torch.softmax(-rate * losses, dim=2)


def blend(w: Tensor, bucket: Tensor, model: Tensor, last: Tensor, seasonal: Tensor) -> Tensor:
    """Served point forecasts (B, H).

    w (B, S, E) weights; bucket (H,) the scored horizon whose weights step h uses;
    model (B, H) and seasonal (B, H) forecasts, last (B,) the newest value."""
    wh = w[:, bucket, :]  # (B, H, E)
    return (wh[:, :, MODEL] * model + wh[:, :, NAIVE] * last[:, None]
            + wh[:, :, SEASONAL] * seasonal)


def buckets(horizons: tuple[int, ...], horizon: int) -> Tensor:
    """(H,) index of the smallest scored horizon ≥ each step 1..H."""
    return torch.tensor([next(i for i, s in enumerate(horizons) if s >= h)
                         for h in range(1, horizon + 1)])
