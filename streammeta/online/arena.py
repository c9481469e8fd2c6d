"""The state arena: one slot per entity, every field a tensor indexed by slot.

Per slot: a ring buffer of the last R values (absolute index i lives at
``ring[slot, i % R]``), the count of values seen, the last timestamp, a running
(exponentially weighted) mean and variance, the fast weights φ and the point
they are shrunk towards (φ₀ plus ``anchor``: the memory's initialisation), the state of
its error's drift detector, and the pending forecasts still waiting for their
targets (one ring per scored horizon, keyed by target index: ``online.cells``). Gathers
and scatters over these tensors replace any per-entity Python object, so the
cost per observation stays flat from a thousand entities to a million.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streammeta.online import cells, drift, young
from streammeta.online.analogues import span
from streammeta.online.experts import EXPERTS, KEPT, THETA_SEASONS_BELOW
from streammeta.online.horizons import legacy, remap

FREE = -1  # slot id given to entities that did not fit (capacity reached)
# Per-slot tensors that make up an entity's state (and a checkpoint row).
ROW_FIELDS = ("ring", "count", "last_ts", "ew_mean", "ew_var", "phi", "anchor", "pending",
              "partition", "drift", "phi_origin", "guard", "experts", "pending_experts",
              "season_indices", "calibration", "pending_served")
# Columns of ``Arena.guard``: each expert's summed one-step error (in the entity's
# standard deviations), each expert's forecast of the next value (model units; NaN:
# not made), and the value count at which the entity stops blending.
LOSS_SERVED, LOSS_ORIGIN, NEXT_SERVED, NEXT_ORIGIN, GUARD_UNTIL = range(5)
GUARD_NEW = (0.0, 0.0, float("nan"), float("nan"), 0.0)
# The fields with a column per scored horizon: (field, its axis in a row set, what a
# new horizon's column holds: None, the column that served its steps); the pending
# ones in the layout before the rings, (B, H, S, ...).
BY_HORIZON = (("pending", 2, float("nan")), ("experts", 1, None),
              ("pending_experts", 2, float("nan")), ("calibration", 1, None),
              ("pending_served", 2, float("nan")))
PENDING = ("pending", "pending_experts", "pending_served")  # kept in cells (online.cells)
# Rows saved before the theta experts: no seasonal adjustment until the entity's next
# refresh, at most a season away; before calibration: the population's, none pending.
MISSING = {"season_indices": 0.0, "calibration": 0.0, "pending_served": float("nan")}


class Arena:
    """All tensors are reserved for ``max_entities`` slots up front with
    ``torch.empty``: the kernel maps pages only when a slot is first written, so
    resident memory grows with the entities present (5.9 KB each with the defaults,
    10.1 KB before the rings: ``benchmarks/state_size.py``), never copies on growth,
    and never doubles at a resize. Removed entities' slots are reused."""

    def __init__(
        self,
        ring_len: int,  # R
        context_dim: int,  # C
        horizon: int,  # H
        scored_horizons: int,  # S
        max_entities: int, phi0: Tensor,
        experts: int = EXPERTS,  # E
        season: int = 1,  # m
        quantiles: int = 3,  # Q
        horizons: tuple[int, ...] = (),  # the S scored horizons (online.horizons)
    ) -> None:
        N = max_entities
        self.horizons = horizons
        # What rows written without a record of their scored horizons were kept at.
        self.legacy_horizons = legacy(horizon, season) if horizons else ()
        # The pending forecasts' ring per scored horizon: s cells for horizon s (H each
        # for an arena that was not told its horizons).
        self.depths = tuple(horizons) if horizons else (horizon,) * scored_horizons
        self._depth, self._first = torch.tensor(self.depths), cells.offsets(self.depths)
        P = sum(self.depths)
        self.ring_len = ring_len
        self.horizon = horizon
        self.max_entities = max_entities
        self.phi0 = phi0.detach().clone()
        self.origin_phi0 = self.phi0.clone()  # φ₀ of the θ the process started from
        self.index: dict[str, int] = {}
        self.names: list[str | None] = []  # by slot; None = free
        self._free: list[int] = []
        self.ring = torch.empty(N, ring_len)  # (N, R)
        self.count = torch.empty(N, dtype=torch.int64)  # (N,)
        self.last_ts = torch.empty(N, dtype=torch.int64)  # (N,)
        self.ew_mean = torch.empty(N)  # (N,)
        self.ew_var = torch.empty(N)  # (N,)
        self.phi = torch.empty(N, context_dim)  # (N, C)
        self.anchor = torch.empty(N, context_dim)  # (N, C) offset from φ₀ that φ shrinks to
        self.pending = torch.empty(N, P)  # (N, P) the model's forecasts, by cells()
        self.partition = torch.empty(N, dtype=torch.int32)  # (N,) input partition
        self.drift = torch.empty(N, 4, dtype=torch.float64)  # (N, 4) streammeta.online.drift state
        # The guard (meta.guard): φ adapted under the initial θ, and the two experts' record.
        self.phi_origin = torch.empty(N, context_dim)  # (N, C)
        self.guard = torch.empty(N, 5, dtype=torch.float64)  # (N, 5) columns: GUARD_NEW
        # Each expert's discounted summed error per scored horizon (online/experts.py).
        self.experts = torch.empty(N, scored_horizons, experts)  # (N, S, E)
        # The theta, analogue and damped (m < 24) experts' forecasts, as ``pending`` the model's.
        self.pending_experts = torch.empty(N, P, KEPT if season < THETA_SEASONS_BELOW else KEPT - 1)
        # The theta experts' seasonal indices by phase, refreshed once a season.
        self.season_indices = torch.empty(N, max(season, 1))  # (N, m)
        # The quantile levels' offsets from the population's (online/calibration.py), and
        # the served forecast, its spread and offsets at the scored horizons until their
        # targets arrive: (N, P, 2 + Q).
        self.calibration = torch.empty(N, scored_horizons, quantiles)  # (N, S, Q)
        self.pending_served = torch.empty(N, P, 2 + quantiles)
        # online.young's sums at these lags (N, L): not checkpointed; resum rebuilds them.
        self.spread_lags = young.spread_lags(horizons, season, ring_len)
        self.lag_sums = torch.empty(N, len(self.spread_lags), dtype=torch.float64)
        self.occupied = torch.zeros(N, dtype=torch.bool)  # (N,)

    def __len__(self) -> int:
        return len(self.index)

    def cells(self, target: Tensor) -> Tensor:
        """(B, S) cells of the pending fields that hold each scored horizon's forecast
        for absolute index ``target`` (B, 1), or (B, S) one target per horizon."""
        return self._first + target % self._depth

    def forget(self, slots: Tensor, target: Tensor) -> None:
        """No forecast for index ``target`` (B,) of each slot is kept (never observed)."""
        for field in PENDING:
            cells.clear(getattr(self, field), slots, self.cells(target[:, None]))

    def slots_for(self, entities: list[str], partitions: np.ndarray | None = None) -> np.ndarray:
        """Slot of each entity, allocating new ones; ``FREE`` where capacity is exhausted.
        ``partitions`` (aligned) tags each entity's state with the input partition of its
        newest record, so that the state follows that partition to another replica (also
        once the topic's partitions grew and its key moved to another one)."""
        index = self.index
        slots = list(map(index.get, entities, itertools.repeat(FREE)))  # get() from C
        if FREE in slots:
            new_slots: list[int] = []
            for i, entity in enumerate(entities):
                if slots[i] != FREE:
                    continue
                slot = index.get(entity)  # the same new entity twice in one batch
                if slot is None:
                    slot = self._allocate(entity)
                    if slot == FREE:
                        continue
                    new_slots.append(slot)
                slots[i] = slot
            if new_slots:
                fresh = torch.tensor(new_slots)
                self.reset(fresh)
                self.occupied[fresh] = True
                self.partition[fresh] = 0
        out = np.asarray(slots, dtype=np.int64)
        if partitions is not None:
            known = out != FREE
            self.partition[torch.from_numpy(out[known])] = torch.from_numpy(
                np.asarray(partitions, dtype=np.int32)[known])
        return out

    def _allocate(self, entity: str) -> int:
        if len(self.index) >= self.max_entities:
            return FREE
        if self._free:
            slot = self._free.pop()
            self.names[slot] = entity
        else:
            slot = len(self.names)
            self.names.append(entity)
        self.index[entity] = slot
        return slot

    def remove(self, slots: Tensor) -> None:
        """Forget entities; their slots are reused."""
        for slot in slots.tolist():
            name = self.names[slot]
            if name is not None:
                del self.index[name]
                self.names[slot] = None
                self._free.append(slot)
        self.occupied[slots] = False

    def slots_in(self, partitions: list[int]) -> Tensor:
        """Occupied slots whose entities belong to the given input partitions."""
        used = len(self.names)
        mask = self.occupied[:used] & torch.isin(
            self.partition[:used], torch.tensor(partitions, dtype=torch.int32))
        return torch.nonzero(mask).flatten()

    def export(self, slots: Tensor) -> dict[str, object]:
        """Copies of the rows of ``slots`` and their names (a checkpoint's content)."""
        rows: dict[str, object] = {  # index_select: a snapshot 30% faster than t[slots]
            "names": [self.names[s] for s in slots.tolist()],
            **{field: getattr(self, field).index_select(0, torch.as_tensor(slots))
               for field in ROW_FIELDS},
        }
        if self.horizons:
            rows["horizons"] = torch.tensor(self.horizons)
        return rows

    def upgrade(self, rows: dict[str, Any]) -> dict[str, Any]:
        """:func:`upgrade_rows` onto this arena's scored horizons, rings and experts."""
        kept = self.pending_experts.shape[-1]
        return upgrade_rows(rows, self.horizons, self.legacy_horizons, kept)

    def restore(self, rows: dict[str, object]) -> Tensor:
        """Load exported rows, replacing any resident state of the same entities."""
        names = rows["names"]
        assert isinstance(names, list)
        existing = [self.index[n] for n in names if n in self.index]
        if existing:
            self.remove(torch.tensor(existing))
        slots = torch.tensor([self._allocate(n) for n in names], dtype=torch.int64)
        if bool((slots == FREE).any()):
            raise ValueError("checkpoint holds more entities than engine.max_entities")
        ring = rows.get("ring")
        if isinstance(ring, Tensor) and ring.shape[1] != self.ring_len:  # another version's
            count = rows["count"]
            assert isinstance(count, Tensor)
            rows = {**rows, "ring": relay(ring, count, self.ring_len)}
        for field in ROW_FIELDS:
            getattr(self, field)[slots] = rows.get(field, MISSING.get(field))
        resum(self, slots)
        self.occupied[slots] = True
        return slots

    def reset(self, slots: Tensor) -> None:
        """Start entities cold: history forgotten, φ back to φ₀."""
        self.count[slots] = 0
        self.last_ts[slots] = 0
        self.ring[slots] = 0.0
        self.lag_sums[slots] = 0.0
        self.ew_mean[slots] = 0.0
        self.ew_var[slots] = 0.0
        self.pending[slots] = float("nan")
        self.phi[slots] = self.phi0
        self.anchor[slots] = 0.0
        self.drift[slots] = torch.tensor(drift.NEW, dtype=torch.float64)
        self.phi_origin[slots] = self.origin_phi0
        self.guard[slots] = torch.tensor(GUARD_NEW, dtype=torch.float64)
        self.experts[slots] = 0.0
        self.pending_experts[slots] = float("nan")
        self.season_indices[slots] = 0.0
        self.calibration[slots] = 0.0
        self.pending_served[slots] = float("nan")

    def history(self, slots: Tensor) -> Tensor:
        """The slots' rings, unrolled twice: (B, 2R), so any run of up to R
        consecutive absolute indices is a contiguous slice (see :func:`window`)."""
        rows = self.ring.index_select(0, slots)  # (B, R); faster than ring[slots]
        return torch.cat([rows, rows], dim=1)


def resum(arena: Arena, slots: Tensor) -> None:
    """Rebuild the slots' ``lag_sums`` from their rings, after writes other than
    ``rounds.append``'s (restored rows, interpolated gaps)."""
    arena.lag_sums[slots] = young.pair_sums(arena.ring[slots], arena.count[slots],
                                            arena.spread_lags)


def upgrade_rows(rows: dict[str, Any], horizons: tuple[int, ...] = (),
                 written: tuple[int, ...] = (), kept: int = KEPT) -> dict[str, Any]:
    """Exported rows written by an older version, completed in place: entities saved
    before ``anchor`` existed shrink towards φ₀ itself; before the guard, they serve
    the learned θ alone (their guard period is over); before the experts, they start
    with no record (even weights); an expert added since (the damped trend) starts at
    the mean of the others' record, so that it gains weight only by its own errors, and
    the experts' pending forecasts keep ``kept`` columns (the arena's: no damped trend
    where the theta experts do not serve).
    With ``horizons``, rows kept at other scored horizons (their "horizons", else
    ``written``) are mapped onto them (``online.horizons.remap``): a new horizon
    starts with the record and offsets of the one that served its steps, and nothing
    pending. Pending forecasts kept in (H, S) cells (before the rings) move into the
    rings of ``horizons`` (without: H cells each), where the arena keeps them; rows
    already in rings of other horizons keep the rings of the horizons in both
    (``online.cells.remap``: m = 48 rows written with 1, 24, 48 before the horizons
    every 12 steps)."""
    if "phi" in rows:
        if "anchor" not in rows:
            rows["anchor"] = torch.zeros_like(rows["phi"])
        if "phi_origin" not in rows:
            rows["phi_origin"] = rows["phi"].clone()
        if "guard" not in rows:
            rows["guard"] = torch.tensor(GUARD_NEW, dtype=torch.float64).repeat(
                len(rows["phi"]), 1)
        pending = rows["pending"]
        if "experts" not in rows:  # rows this old keep (B, H, S) pending cells
            rows["experts"] = torch.zeros(len(pending), pending.shape[2], 0)
        if "pending_experts" not in rows:
            rows["pending_experts"] = torch.zeros(*pending.shape, 0)
        record = rows["experts"]
        if record.shape[2] < EXPERTS:  # a newer expert starts at the others' mean record
            fill = (record.mean(dim=2, keepdim=True) if record.shape[2]
                    else record.new_zeros(*record.shape[:2], 1))
            rows["experts"] = torch.cat(
                [record, fill.expand(*record.shape[:2], EXPERTS - record.shape[2])], dim=2)
        pending_experts = rows["pending_experts"][..., :kept]
        rows["pending_experts"] = torch.cat([pending_experts, pending_experts.new_full(
            (*pending_experts.shape[:-1], kept - pending_experts.shape[-1]), float("nan"))], -1)
    before_rings = "pending" in rows and rows["pending"].dim() == 3  # (B, H, S) cells
    if horizons and before_rings:
        stored = rows.get("horizons")
        was = tuple(stored.tolist()) if isinstance(stored, Tensor) else tuple(written)
        if was != tuple(horizons) and rows["pending"].shape[2] == len(was):
            for field, axis, fill in BY_HORIZON:
                if field in rows:
                    rows[field] = remap(rows[field], axis, was, horizons, fill)
            rows["horizons"] = torch.tensor(horizons)
    if before_rings:  # into one ring per scored horizon (online.cells)
        H, S = rows["pending"].shape[1:]
        depths = tuple(horizons) if len(horizons) == S else (H,) * S
        for field in PENDING:
            if field in rows:
                rows[field] = cells.flatten(rows[field], rows["count"], depths)
    elif horizons and isinstance(rows.get("horizons"), Tensor):  # rings of other horizons
        was = tuple(rows["horizons"].tolist())
        # The same forecast horizon H (always the last scored one) under another rule
        # only: rows of another H belong to another model and are refused on shape.
        if (was != tuple(horizons) and was[-1] == horizons[-1]
                and rows["pending"].shape[1] == sum(was)):
            for field, axis, fill in BY_HORIZON:
                if field in PENDING and field in rows:
                    rows[field] = cells.remap(rows[field], was, horizons)
                elif field in rows:
                    rows[field] = remap(rows[field], axis, was, horizons, fill)
            rows["horizons"] = torch.tensor(horizons)
    return rows


def relay(ring: Tensor, count: Tensor, length: int) -> Tensor:
    """Rings (B, R) written with another length (a version that kept more or fewer
    values) → (B, length): the newest values each entity has, at the same absolute
    indices (``ring[i % R]``); older slots, never seen, hold 0."""
    B, R = ring.shape
    out = ring.new_zeros(B, length + 1)  # the last column takes what was never seen
    index = count[:, None] - 1 - torch.arange(min(R, length))[None, :]  # (B, k) newest first
    values = torch.gather(ring, 1, index % R)
    out.scatter_(1, torch.where(index >= 0, index % length, length), values)
    return out[:, :length]


def window(history: Tensor, first: Tensor, length: int, season: int = 0) -> Tensor:
    """Values at absolute indices first..first+length-1 of each row of ``history``.

    ``history`` comes from :meth:`Arena.history`; ``first`` is (B,). Indices older
    than R values ago or not seen yet return whatever the ring holds; callers mask.
    With ``season``, a negative index (before the entity's first value) reads the
    value of the same phase in its first season instead.
    """
    out = span(history, first, length)
    if not season:
        return out
    young = torch.nonzero(first < 0)[:, 0]
    if len(young) == 0:
        return out
    every = len(young) == len(first)  # no row copies when all are young
    f = first if every else first[young]
    # Only the first P columns of any row hold indices before its first value.
    P = min(length, -int(f.min()))
    # Index i = f + j < 0 reads history[(i % m) % R], and i % m = (f % m + j) % m.
    phase = _phases(season, P, history.shape[1] // 2)[f % season]  # (b, P)
    before = torch.arange(P)[None, :] < -f[:, None]
    rows = history if every else history[young]
    if every:
        out[:, :P] = torch.where(before, torch.gather(rows, 1, phase), out[:, :P])
    else:
        out[young, :P] = torch.where(before, torch.gather(rows, 1, phase), out[young, :P])
    return out


@functools.lru_cache(maxsize=16)
def _phases(season: int, length: int, ring_len: int) -> Tensor:
    """(m, length): row o holds ((o + j) % m) % R for j < length, the ring positions of
    a young window's phases when its first index is o modulo the season m."""
    return ((torch.arange(season)[:, None] + torch.arange(length)[None, :]) % season) % ring_len
