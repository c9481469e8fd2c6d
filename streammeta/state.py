"""The state arena: one slot per entity, every field a tensor indexed by slot.

Per slot: a ring buffer of the last R values (absolute index i lives at
``ring[slot, i % R]``), the count of values seen, the last timestamp, a running
(exponentially weighted) mean and variance, the fast weights φ, and the pending
forecasts still waiting for their targets (keyed by target index mod H, one
column per scored horizon). Gathers and scatters over these tensors replace any
per-entity Python object, so the cost per observation stays flat from a
thousand entities to a million.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FREE = -1  # slot id given to entities that did not fit (capacity reached)


class Arena:
    """All tensors are reserved for ``max_entities`` slots up front with
    ``torch.empty``: the kernel maps pages only when a slot is first written, so
    resident memory grows with the entities present (about 1.2 KB each with the
    defaults), never copies on growth, and never doubles at a resize."""

    def __init__(
        self,
        ring_len: int,  # R
        context_dim: int,  # C
        horizon: int,  # H
        scored_horizons: int,  # S
        max_entities: int,
        phi0: Tensor,
    ) -> None:
        N = max_entities
        self.ring_len = ring_len
        self.horizon = horizon
        self.max_entities = max_entities
        self.phi0 = phi0.detach().clone()
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self.ring = torch.empty(N, ring_len)  # (N, R)
        self.count = torch.empty(N, dtype=torch.int64)  # (N,)
        self.last_ts = torch.empty(N, dtype=torch.int64)  # (N,)
        self.ew_mean = torch.empty(N)  # (N,)
        self.ew_var = torch.empty(N)  # (N,)
        self.phi = torch.empty(N, context_dim)  # (N, C)
        self.pending = torch.empty(N, horizon, scored_horizons)  # (N, H, S)

    def __len__(self) -> int:
        return len(self.names)

    def slots_for(self, entities: list[str]) -> np.ndarray:
        """Slot of each entity, allocating new ones; ``FREE`` where capacity is exhausted."""
        index = self.index
        slots = [index.get(e, FREE) for e in entities]
        if FREE in slots:
            first_new = len(self.names)
            for i, entity in enumerate(entities):
                if slots[i] == FREE:
                    slots[i] = self._allocate(entity)
            if len(self.names) > first_new:
                self.reset(torch.arange(first_new, len(self.names)))
        return np.asarray(slots, dtype=np.int64)

    def _allocate(self, entity: str) -> int:
        slot = self.index.get(entity)  # the same new entity twice in one batch
        if slot is not None:
            return slot
        if len(self.names) >= self.max_entities:
            return FREE
        slot = len(self.names)
        self.index[entity] = slot
        self.names.append(entity)
        return slot

    def reset(self, slots: Tensor, phi: Tensor | None = None) -> None:
        """Start entities cold: history forgotten, φ back to φ₀ (or the given rows)."""
        self.count[slots] = 0
        self.last_ts[slots] = 0
        self.ring[slots] = 0.0
        self.ew_mean[slots] = 0.0
        self.ew_var[slots] = 0.0
        self.pending[slots] = float("nan")
        self.phi[slots] = self.phi0 if phi is None else phi

    def history(self, slots: Tensor) -> Tensor:
        """The slots' rings, unrolled twice: (B, 2R), so any run of up to R
        consecutive absolute indices is a contiguous slice (see :func:`window`)."""
        rows = self.ring[slots]  # (B, R)
        return torch.cat([rows, rows], dim=1)

    def bytes_per_entity(self) -> int:
        tensors = (self.ring, self.count, self.last_ts, self.ew_mean, self.ew_var, self.phi,
                   self.pending)
        return sum(t.element_size() * t[0].nelement() for t in tensors)


def window(history: Tensor, first: Tensor, length: int) -> Tensor:
    """Values at absolute indices first..first+length-1 of each row of ``history``.

    ``history`` comes from :meth:`Arena.history`; ``first`` is (B,). Indices older
    than R values ago or not seen yet return whatever the ring holds; callers mask.
    """
    ring_len = history.shape[1] // 2
    views = history.unfold(1, length, 1)  # (B, 2R-length+1, length), no copy
    return views[torch.arange(len(first)), first % ring_len]
