"""The guard: the served version against the initial θ, per entity (``meta.guard``).

While the outer loop serves another version than the one this process started
from, each entity's forecast blends two experts — the served θ with its φ, and
the initial θ with a φ adapted alongside (``Arena.phi_origin``) — with
exponential weights on their summed one-step errors, for ``meta.guard_for``
values after the entity turns warm; then the better expert alone. A version
that is worse for some entities cannot make their forecasts much worse.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streammeta.online import model
from streammeta.online.arena import (
    GUARD_NEW,
    GUARD_UNTIL,
    LOSS_ORIGIN,
    LOSS_SERVED,
    NEXT_ORIGIN,
    NEXT_SERVED,
    Arena,
)
from streammeta.online.result import Result
from streammeta.online.scoring import scale


class Guard:
    def __init__(self, enabled: bool, rate: float, guard_for: int, origin: model.Params,
                 origin_version: int) -> None:
        self.enabled = enabled
        self.rate = rate
        self.guard_for = guard_for
        # The second expert: the θ this process started from.
        self.origin, self.origin_version = origin, origin_version

    def active(self, version: int) -> bool:
        """Serving another version than the one this process started from (a checkpoint
        restored at start may hand back that same version: no guard then)."""
        return self.enabled and version != self.origin_version

    def start(self, arena: Arena, slots: Tensor, n: Tensor) -> None:
        """Entities (re)starting at ``n`` values: both experts even, for guard_for values."""
        arena.phi_origin[slots] = arena.origin_phi0
        guard = torch.tensor(GUARD_NEW, dtype=torch.float64).repeat(len(slots), 1)
        guard[:, GUARD_UNTIL] = n + self.guard_for
        arena.guard[slots] = guard

    def score(self, arena: Arena, slots: Tensor, y: Tensor) -> None:
        """Add each expert's error on this value (its forecast of the next value) to
        its sum, where both forecast it."""
        guard = arena.guard[slots]  # (B, 5)
        s = scale(arena, slots).to(torch.float64)[:, None]
        err = (y.to(torch.float64)[:, None] - guard[:, NEXT_SERVED:NEXT_ORIGIN + 1]).abs() / s
        known = ~torch.isnan(err).any(dim=1)
        guard[known, LOSS_SERVED:LOSS_ORIGIN + 1] += err[known]
        guard[:, NEXT_SERVED:NEXT_ORIGIN + 1] = float("nan")
        arena.guard[slots] = guard

    def weight(self, arena: Arena, slots: Tensor, n: Tensor) -> Tensor:
        """Weight (B,) of the served version's forecast; the rest is the initial θ's.

        Exponential weights on the summed errors while guarding; then all on the expert
        with the smaller sum. Weights within 1e-4 of 0 or 1 are rounded: past that, the
        other expert's forecast changes nothing worth computing.
        """
        guard = arena.guard[slots]
        lead = guard[:, LOSS_ORIGIN] - guard[:, LOSS_SERVED]  # > 0: the served is better
        weight = torch.sigmoid(self.rate * lead)
        weight = torch.where(n >= guard[:, GUARD_UNTIL], (lead >= 0).to(weight.dtype), weight)
        weight = torch.where(weight > 1 - 1e-4, 1.0, torch.where(weight < 1e-4, 0.0, weight))
        return weight.to(torch.float32)

    def blend(self, arena: Arena, slots: Tensor, weight: Tensor, x: Tensor, mean: Tensor,
              scale: Tensor, point: Tensor, spread: Tensor, result: Result) -> None:
        """Blend in place the initial θ's point and spread where its weight is not 0,
        and keep both experts' forecasts of the next value for :meth:`score`."""
        guard = arena.guard
        guard[slots, NEXT_SERVED] = point[:, 0].to(torch.float64)
        used = weight < 1.0
        if not bool(used.any()):
            return
        so = slots[used]
        p, s = model.point_and_spread(self.origin, x[used], arena.phi_origin[so])
        p = p * scale[used] + mean[used]
        guard[so, NEXT_ORIGIN] = p[:, 0].to(torch.float64)
        w = weight[used][:, None]
        point[used] = w * point[used] + (1.0 - w) * p
        spread[used] = w * spread[used] + (1.0 - w) * s * scale[used]
        result.guarded += int(used.sum())
