"""The analogue expert: what followed other entities' windows like this one's.

Memory-based meta-regression: a bounded store of every entity's recent windows of
``length`` values (a season, at least 8), each z-normalised by its own mean and
standard deviation, beside the H values that followed it in the same units. A young
entity's forecast is the mean of what followed its ``k`` nearest stored windows (in
Euclidean distance between z-normalised windows), put back into the entity's level
and scale. Before an entity has adapted anything, the entities seen tell it what
comes next after a shape like its own; the entity's own earlier windows are in the
store too, so a regular series finds its own last seasons.

Every observation whose window and its H followers are in the ring adds one entry
(a stored window ends at every phase of the season: entered every few values
instead, M4 hourly's first 48 forecasts per entity were far worse, 1.491 → 1.778
MASE at one in 4, in ``docs/memory.md``); the oldest entries go first. Entries of a
batch enter the store after it, as the population's record does, so no forecast
depends on a value later than its origin. Queries are made for young entities only
(``online.population.YOUNG_FOR``), so a steady stream of mature entities pays only
the entries' copy.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_LENGTH = 8  # values in a stored window at least (short or no seasons)
CHUNK = 256  # queries per distance matrix: (CHUNK, capacity) floats at a time
# Multiply-adds a round may spend on searches (queries × entries × length): past it,
# only the youngest entities of the round are searched (the others' analogue serves
# nothing this round). A whole fleet arriving at once stays affordable: 10,000 young
# entities against 50,000 entries would cost 12·10⁹ per round.
BUDGET = 1 << 28


def length_for(season: int, window: int) -> int:
    """Values in a stored window: a season, at least ``MIN_LENGTH``, at most L."""
    return min(max(season, MIN_LENGTH), window)


def span(history: Tensor, first: Tensor, length: int) -> Tensor:
    """Values at absolute indices first..first+length-1 (B, length) of ``history`` (B, 2R),
    the entities' rings unrolled (``Arena.history``; length ≤ R)."""
    if len(first) == 0:
        return history.new_zeros(0, length)
    # Every run of ``length`` consecutive values of the flattened rows as a strided
    # view (no copy), one picked per row: a row gather with no index per value,
    # several times faster than gathering (B, length) indices.
    flat = history.contiguous().reshape(-1)
    runs = flat.as_strided((flat.numel() - length + 1, length), (1, 1))
    ring_len = history.shape[1] // 2
    return runs.index_select(0, torch.arange(len(first)) * history.shape[1] + first % ring_len)


def _scaled(rows: Tensor, length: int) -> Tensor:
    """Windows with their followers (..., length + H), scaled by the window's mean and
    standard deviation."""
    mean, std = _normalise(rows[..., :length])
    return (rows - mean) / std


def _normalise(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and a floored standard deviation (..., 1) of windows x (..., L)."""
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, unbiased=False, keepdim=True)
    return mean, torch.maximum(std, 1e-3 * (1.0 + mean.abs()))


class Analogues:
    """The store: ``keys`` (C, length) and ``follow`` (C, H), a ring of ``capacity``
    entries, and the k-nearest-neighbour forecast over it.

    Entries are z-normalised when they are first read (a search or an export), not when
    they are added: a stream of mature entities adds an entry per observation and
    searches nothing, and most entries leave the ring unread (the normalisation, row by
    row, gives the same values whenever it is done). Until then ``keys`` and ``follow``
    hold the entry's values as added."""

    def __init__(self, length: int, horizon: int, capacity: int, k: int = 5) -> None:
        self.length, self.horizon, self.capacity, self.k = length, horizon, capacity, k
        self.keys = torch.zeros(capacity, length)  # (C, L) z-normalised windows
        self.follow = torch.zeros(capacity, horizon)  # (C, H) in the same units
        self._norms = torch.zeros(capacity)  # (C,) squared norms of the keys
        self.stamp = torch.zeros(capacity, dtype=torch.int64)  # (C,) its newest value's time
        self.size = 0  # entries held
        self._next = 0  # where the next entry goes
        self._raw = 0  # the newest entries, not normalised yet (see the class)

    def __len__(self) -> int:
        return self.size

    def add(self, windows: Tensor, ts: Tensor) -> None:
        """Windows with their followers (B, length + H), oldest value first, whose
        newest values came at ``ts`` (B,); beyond capacity the oldest entries go."""
        rows, ts = windows[-self.capacity:], ts[-self.capacity:]
        at = (self._next + torch.arange(len(rows))) % self.capacity
        self.stamp[at] = ts
        self.keys[at] = rows[:, : self.length]
        self.follow[at] = rows[:, self.length:]
        self._next = (self._next + len(rows)) % self.capacity
        self.size = min(self.size + len(rows), self.capacity)
        self._raw = min(self._raw + len(rows), self.capacity)

    def _settle(self) -> None:
        """The entries added since the last read, z-normalised (see the class)."""
        if not self._raw:
            return
        at = (self._next - self._raw + torch.arange(self._raw)) % self.capacity
        rows = _scaled(torch.cat([self.keys[at], self.follow[at]], dim=1), self.length)
        self.keys[at] = rows[:, : self.length]
        self.follow[at] = rows[:, self.length:]
        self._norms[at] = self.keys[at].square().sum(dim=1)
        self._raw = 0

    def affordable(self, queries: int) -> int:
        """How many of ``queries`` a round can search within ``BUDGET``."""
        return min(queries, max(1, BUDGET // max(1, self.size * self.length)))

    def forecast(self, recent: Tensor, ts: Tensor) -> Tensor:
        """recent (B, length) the entities' newest values, at ``ts`` (B,) → (B, H)
        forecasts in the same units from the entries no newer than ``ts`` (NaN: none)."""
        self._settle()
        mean, std = _normalise(recent)
        z = (recent - mean) / std
        keys, norms, stamp = self.keys[: self.size], self._norms[: self.size], \
            self.stamp[: self.size]
        k = min(self.k, self.size)
        out = []
        for lo in range(0, len(z), CHUNK):
            q = z[lo: lo + CHUNK]  # (b, L)
            # ‖q − key‖² up to the query's own norm, which ranks nothing.
            distance = norms[None, :] - 2.0 * (q @ keys.T)  # (b, C)
            distance = distance.masked_fill(stamp[None, :] > ts[lo: lo + CHUNK, None],
                                            float("inf"))
            near = distance.topk(k, dim=1, largest=False)
            found = torch.isfinite(near.values)[:, :, None]  # (b, k, 1)
            count = found.sum(dim=1)  # (b, 1)
            total = (self.follow[near.indices] * found).sum(dim=1)  # (b, H)
            out.append(total / count.where(count > 0, float("nan")))
        return torch.cat(out) * std + mean

    def export(self) -> dict[str, object]:
        """The entries, oldest first (a checkpoint's content)."""
        self._settle()
        order = (self._next - self.size + torch.arange(self.size)) % self.capacity
        return {"keys": self.keys[order].clone(), "follow": self.follow[order].clone(),
                "stamp": self.stamp[order].clone()}

    def restore(self, state: dict[str, object]) -> bool:
        """Take entries :meth:`export` wrote; False (store unchanged) if they were kept
        for another window length or horizon."""
        keys, follow, stamp = state.get("keys"), state.get("follow"), state.get("stamp")
        if (not isinstance(keys, Tensor) or not isinstance(follow, Tensor)
                or not isinstance(stamp, Tensor) or keys.shape[1:] != (self.length,)
                or follow.shape[1:] != (self.horizon,)):
            return False
        keys, follow, stamp = keys[-self.capacity:], follow[-self.capacity:], \
            stamp[-self.capacity:]
        self.size = len(keys)
        self.keys[: self.size], self.follow[: self.size] = keys, follow
        self.stamp[: self.size] = stamp
        self._norms[: self.size] = keys.square().sum(dim=1)
        self._next = self.size % self.capacity
        self._raw = 0
        return True
