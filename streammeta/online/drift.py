"""Per-entity drift of the forecast error: river's Page-Hinkley test, vectorised.

river's ``drift.PageHinkley`` is one Python object per stream; at hundreds of
thousands of observations a second over a million entities that is too slow, so
this is the same recurrence over a tensor of entities. ``tests/test_drift.py``
feeds the same streams to both and checks that they flag drift at the same
steps. Mode "up": only a rise of the error is drift (a falling error is good news).
State per entity: the count and running mean of its errors, the faded cumulative
deviation and its minimum — 4 doubles.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEW = (0.0, 0.0, 0.0, float("inf"))  # a detector's state before its first value


class PageHinkley:
    """The test's settings; the state lives in a (N, 4) float64 table, one row per
    entity slot (count, mean, cumulative deviation, its minimum) — the arena's
    ``drift`` field, so it is checkpointed and moves with the entity."""

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001) -> None:
        self.min_instances, self.delta = min_instances, delta
        self.threshold, self.alpha = threshold, alpha

    def update(self, table: Tensor, slots: Tensor, x: Tensor) -> Tensor:
        """One new value per slot (slots unique) → (B,) bool, drift detected; the
        detectors that fired start afresh with their next value."""
        state = table[slots]  # (B, 4)
        n = state[:, 0] + 1
        mean = state[:, 1] + (x.to(torch.float64) - state[:, 1]) / n
        cum = self.alpha * state[:, 2] + (x - mean) - self.delta
        low = torch.minimum(state[:, 3], cum)
        drift = (n >= self.min_instances) & (cum - low > self.threshold)
        new = torch.stack([n, mean, cum, low], dim=1)
        new[drift] = torch.tensor(NEW, dtype=torch.float64)
        table[slots] = new
        return drift
