"""Which entities are resident, and a partition's state moving in and out.

With a spill store (``engine.evict``), a batch whose new entities do not fit
evicts the least recently observed ones to disk and reads the batch's evicted
ones back first, so their state continues as if it had stayed. A partition's
state — its resident rows and which spill file holds each of its evicted
entities — is exported for checkpoints, restored when the partition is assigned
and dropped when it leaves.
"""

from __future__ import annotations

from typing import Any

import torch

from streammeta.errors import ParameterFileError
from streammeta.online.arena import ROW_FIELDS, Arena, relay
from streammeta.online.ports import EvictionStore
from streammeta.online.result import Result


class Residency:
    def __init__(self, arena: Arena, spill: EvictionStore | None, transform: str) -> None:
        self.arena = arena
        self.spill = spill
        self.transform = transform  # the units the rows' values are in

    def make_room(self, entities: list[str], result: Result) -> None:
        """Evict the least recently observed entities if the batch's new ones do not
        fit, and read back the batch's evicted ones."""
        if self.spill is None:
            return
        arena, index = self.arena, self.arena.index
        new = [e for e in dict.fromkeys(entities) if e not in index]
        if not new:
            return
        short = len(new) - (arena.max_entities - len(arena))
        if short > 0:  # evict in blocks of ≥ 1% of the cap: fewer, larger files
            batch = {index[e] for e in entities if e in index}
            used = len(arena.names)
            candidates = arena.occupied[:used].clone()
            candidates[list(batch)] = False
            slots = torch.nonzero(candidates).flatten()
            oldest = torch.argsort(arena.last_ts[slots], stable=True)
            victims = slots[oldest[:short + arena.max_entities // 100]]
            self.spill.put(arena.export(victims))
            arena.remove(victims)
            result.evicted += len(victims)
        back = [e for e in new if e in self.spill]
        if back:
            arena.restore(self.spill.take(back, arena.upgrade))
            result.paged_in += len(back)

    def export(self, partition: int) -> dict[str, Any]:
        """A copy of the partition's state: its rows and, with a spill store, which
        file holds each of its evicted entities."""
        state: dict[str, Any] = {"transform": self.transform,
                                 "rows": self.arena.export(self.arena.slots_in([partition]))}
        if self.spill is not None:
            state["spilled"] = self.spill.of_partition(partition)
        return state

    def restore(self, partition: int, state: dict[str, Any]) -> int:
        """Load a partition's exported state; → entities restored. ParameterFileError
        (without the file's name) if it was written with other settings."""
        if state.get("transform", "none") != self.transform:
            raise ParameterFileError(
                f"partition {partition}'s state holds values with series.transform = "
                f"{state.get('transform', 'none')!r}, this configuration needs "
                f"{self.transform!r}")
        if self.spill is not None:  # first: adopting forgets what the partition spilled
            self.spill.adopt(partition, state.get("spilled", {}))
        if "rows" in state:
            rows = self.arena.upgrade(state["rows"])
            ring = rows.get("ring")
            if isinstance(ring, torch.Tensor) and ring.shape[1] != self.arena.ring_len:
                # a version that kept more or fewer values (experts.THETA_HISTORY)
                rows["ring"] = relay(ring, rows["count"], self.arena.ring_len)
            self._check_shapes(rows)
            self.arena.restore(self._fit(partition, rows))
        return len(state.get("rows", {}).get("names", []))

    def _fit(self, partition: int, rows: dict[str, Any]) -> dict[str, Any]:
        """Make room for a partition's rows under ``engine.max_entities``, as a batch of
        new entities does: the least recently observed resident entities go to the
        spill store, then, if the partition alone holds more, its own oldest rows.
        Without a spill store, ParameterFileError naming the key. (Before, a survivor
        restoring a dead replica's partitions past the cap stopped with a ValueError,
        and again at every restart.)"""
        arena, names = self.arena, rows["names"]
        short = sum(n not in arena.index for n in names) - (arena.max_entities - len(arena))
        if short <= 0:
            return rows
        if self.spill is None:
            raise ParameterFileError(
                f"partition {partition}'s state holds {len(names)} entities, {len(arena)} "
                f"are resident, engine.max_entities is {arena.max_entities}: raise it, or "
                "spill the least recently observed (engine.evict = true, checkpoints on)")
        candidates = arena.occupied[:len(arena.names)].clone()
        candidates[[arena.index[n] for n in names if n in arena.index]] = False
        slots = torch.nonzero(candidates).flatten()
        victims = slots[torch.argsort(arena.last_ts[slots], stable=True)[:short]]
        if len(victims):
            self.spill.put(arena.export(victims))
            arena.remove(victims)
        if short > len(victims):  # the partition alone exceeds the cap
            order = torch.argsort(rows["last_ts"], stable=True)
            self.spill.put(_select(rows, order[:short - len(victims)]))
            rows = _select(rows, order[short - len(victims):])
        return rows

    def drop(self, partitions: list[int], spilled: bool) -> None:
        """Forget the partitions' resident rows, and with ``spilled`` which files hold
        their evicted entities."""
        self.arena.remove(self.arena.slots_in(partitions))
        if spilled and self.spill is not None:
            self.spill.release(partitions)

    def _check_shapes(self, rows: dict[str, Any]) -> None:
        for field in ROW_FIELDS:
            if field not in rows:  # older rows: Arena.restore fills it in
                continue
            want = tuple(getattr(self.arena, field).shape[1:])
            got = tuple(rows[field].shape[1:])
            if want != got:
                raise ParameterFileError(
                    f"state field {field!r} has shape {got}, this configuration needs "
                    f"{want}; the checkpoint was written with other series/model settings")


def _select(rows: dict[str, Any], order: torch.Tensor) -> dict[str, Any]:
    """The rows at ``order`` of exported rows (other entries, e.g. horizons, as they are)."""
    picked = dict(rows, names=[rows["names"][i] for i in order.tolist()])
    for field in ROW_FIELDS:
        if field in rows:
            picked[field] = rows[field].index_select(0, order)
    return picked
