"""The experts' population record: where a new entity's expert weights start.

Two records of each expert's mean scaled error per resolved forecast, (S, E)
each: one of young entities' forecasts (made within ``YOUNG_FOR`` values of
turning warm) and one of all later ones. A young entity's weights start from the
young record: the entities seen forecast their first values differently from
their later ones (the model has not adapted φ to them yet; the analogue expert
serves them only), so the record of mature entities would hand a new one to the
forecaster that is best for entities it is not like. Where a record has nothing
yet at a horizon, the other one stands in; where neither has, even weights.

The record counts as ``events`` forecasts the entity has not made yet: their weight
falls by e every ``experts.prior_fade`` forecasts it resolves itself, so a mature
entity follows its own record. A constant prior held an expert that few entities
need (the weekly one: most M4 hourly series repeat daily) out of those that need it,
however long their own record. M4 hourly final-origin sMAPE / MASE (same pretrained
θ) with a fade of 0 (never) / 50 / 150 / 250 / 400: 9.544 / 0.750, 8.874 / 0.755,
8.874 / 0.755, 8.882 / 0.753, 8.919 / 0.750; fpp3 retail rolling MASE 1.336, 1.349,
1.344, 1.341, 1.339 (first 18: 1.153, 1.145, 1.149, 1.151, 1.152); M1 monthly 1.087,
1.092, 1.089, 1.088, 1.088: short series need the population's record longer.

The record holds the errors of the ages the weights serve: of forecasts from the
model's warm-up on, or where cold entities are served the blend (long seasons), from
then (``Weighting.score``). With the errors of every origin, M1 yearly's young record
held many of origins with 1–7 values, where persistence wins, and kept entities of
20–40 values away from the trend experts: final-origin MASE 3.568 against 3.378.
"""

from __future__ import annotations

import torch
from torch import Tensor

MATURE, YOUNG = 0, 1
# Forecasts after warm-up during which an entity counts as young (the cold-start
# slice of the rolling protocol is its first 48).
YOUNG_FOR = 48
CLIP = 10.0  # the experts' clip: errors beyond this many standard deviations count as this


def fill(errors: Tensor, clip: float) -> Tensor:
    """Errors (B, S, E) clipped at ``clip``, an expert with none (NaN) given the mean of
    those that have one."""
    clipped = errors.clamp(max=clip)
    return torch.where(torch.isnan(clipped), torch.nanmean(clipped, dim=2, keepdim=True),
                       clipped)


class Population:
    """The experts' mean scaled error per resolved forecast, young and mature entities
    apart, (2, S, E), discounted: a new entity's weights start from what works for the
    entities seen at its age, as if it had ``events`` resolved forecasts of that record.

    Errors are collected by :meth:`update` and enter the record at :meth:`commit`,
    which the engine calls between the rounds of a batch where no later round holds a
    value older than those errors' (``Engine.process``), else after the batch: within a
    batch one entity may be a step ahead of another, and no forecast may depend on a
    value later than its origin."""

    def __init__(self, horizons: int, experts: int, events: float,
                 smoothing: float = 0.001, clip: float = CLIP) -> None:
        self.mean = torch.zeros(2, horizons, experts)
        self.count = torch.zeros(2, horizons)  # resolved forecasts in each record
        self.events, self.smoothing = events, smoothing
        self.clip = clip  # in the losses' units (``hedge.loss_clip``)
        self._sum = torch.zeros(2, horizons, experts)
        self._count = torch.zeros(2, horizons)

    @property
    def seen(self) -> float:
        return float(self.count.sum())

    def update(self, errors: Tensor, valid: Tensor, young: Tensor,
               filled: Tensor | None = None) -> None:
        """errors (B, S, E), valid (B, S), young (B, S): made by a young entity. An
        expert with no forecast (NaN) counts as the mean of those that have one;
        ``filled``: ``filled(errors, self.clip)`` where the caller has it."""
        known = valid & ~torch.isnan(errors[:, :, 0])  # the model's: every row has one
        clipped = filled if filled is not None else fill(errors, self.clip)
        for g, rows in ((MATURE, known & ~young), (YOUNG, known & young)):
            if bool(rows.any()):  # a group with no rows adds nothing
                self._sum[g] += torch.where(rows[:, :, None], clipped, 0.0).sum(dim=0)
                self._count[g] += rows.sum(dim=0)

    def commit(self) -> None:
        """The errors collected since the last commit enter the record."""
        count = self._count  # (2, S)
        if not bool(count.any()):
            return
        batch = self._sum / count.clamp(min=1)[:, :, None]  # (2, S, E) the batch's mean
        keep = ((1.0 - self.smoothing) ** count)[:, :, None]
        # The record's own weight: 1 - (1 - smoothing)^count, as a forecast's weight falls
        # by the smoothing per later forecast. Taken as 1, the first commit's few errors
        # outweighed the next thousand, so the record depended on the polls' sizes: 60 M1
        # monthly series, rolling, one observation per poll, MASE 1.345 against 1.255 in
        # batches of 5000 (now 1.249 and 1.245).
        held = (1.0 - (1.0 - self.smoothing) ** self.count)[:, :, None] * keep
        merged = (self.mean * held + batch * (1 - keep)) / (held + (1 - keep)).clamp(min=1e-30)
        self.mean = torch.where((count > 0)[:, :, None], merged, self.mean)
        self.count += count
        self._sum.zero_()
        self._count.zero_()

    def export(self) -> dict[str, object]:
        """The committed record (a checkpoint's content)."""
        return {"mean": self.mean.clone(), "count": self.count.clone(), "seen": self.seen}

    def restore(self, state: dict[str, object]) -> bool:
        """Take a record :meth:`export` wrote; False (record unchanged) if it was kept
        for other scored horizons or experts. A record from before the young and mature
        entities were kept apart (S, E) stands for both; one from before an expert
        existed gives it the mean of the others."""
        mean, count = state.get("mean"), state.get("count")
        if not isinstance(mean, Tensor) or mean.shape[-2] != self.mean.shape[1]:
            return False
        if mean.dim() == 2:
            mean = mean[None].repeat(2, 1, 1)
        missing = self.mean.shape[2] - mean.shape[2]
        if missing < 0 or mean.shape[0] != 2:
            return False
        if missing:
            mean = torch.cat([mean, mean.mean(dim=2, keepdim=True).repeat(1, 1, missing)], 2)
        if not isinstance(count, Tensor) or count.shape != self.count.shape:
            seen = float(state.get("seen", 0.0))  # type: ignore[arg-type]
            # the forecasts behind it, spread evenly: its weight (commit) is theirs
            count = torch.full_like(self.count, max(1.0, seen / self.count.numel())
                                    if seen > 0 else 0.0)
        self.mean, self.count = mean.clone(), count.clone()
        return True

    def prior(self, young: Tensor, resolved: Tensor | None = None,
              fade: float = 0.0) -> Tensor:
        """(B, S, E) the losses entities start with; young (B,): entities still young.
        ``resolved`` (B, S): forecasts the entities have resolved at each horizon, every
        ``fade`` of which (0: none) take the record's weight down by a factor e: it
        stands for the forecasts an entity has not made yet."""
        both = self.mean.clone()  # (2, S, E)
        for g in (MATURE, YOUNG):  # a record empty at a horizon: the other's, or even
            empty = self.count[g] == 0
            other = self.count[1 - g] > 0
            both[g] = torch.where((empty & other)[:, None], self.mean[1 - g], both[g])
        both = (both - both.min(dim=2, keepdim=True).values) * self.events
        out = both[young.long()]  # (B, S, E)
        if resolved is None or fade <= 0:
            return out
        return out * torch.exp(-resolved.clamp(min=0).to(out.dtype) / fade)[:, :, None]
