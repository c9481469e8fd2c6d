"""Evicted entity state on disk: the resident cap without losing anything.

When the arena is full and new entities arrive, the engine evicts the entities
whose newest observation is oldest (least recently observed) and hands their rows
here. They are written as one file per eviction (``streammeta.persistence.container``:
atomic, checksummed, weights-only) under ``spill/<member>/`` in the checkpoint
store (a directory or object storage: ``streammeta.persistence.store``). An evicted
entity that appears again is read back before its observation is applied, so its
state continues exactly as if it had stayed resident.

Checkpoints record which file holds each evicted entity of a partition, so
restores and partition moves find them. A file is deleted once every entity in it
was read back *and* every checkpoint of this replica that could still name it has
been pruned. Files that named entities of a partition this replica gave away are
never deleted by it (the partition's new owner may still need them), nor are
files named by checkpoints restored after a restart (they may hold entities of
partitions not restored here): both are left for an operator to remove once no
checkpoint refers to them (docs/recovery.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from streammeta.online.arena import ROW_FIELDS, upgrade_rows
from streammeta.persistence.container import FORMAT, pack, unpack
from streammeta.persistence.store import FileStore, open_store

log = logging.getLogger(__name__)


class SpillStore:
    """The engine's eviction store (``streammeta.online.ports.EvictionStore``)."""

    def __init__(self, root: str | os.PathLike[str] | FileStore, member: str) -> None:
        # the checkpoint store; file names are relative to it
        self.files = open_store(os.fspath(root)) if isinstance(root, str | os.PathLike) else root
        self.own = f"spill/{member}"
        self.index: dict[str, tuple[str, int]] = {}  # entity → (file, partition)
        self._live: dict[str, int] = {}  # own file → entities still only there
        self._emptied: dict[str, float] = {}  # own file → when its last entity left (s)
        self._seq = 0

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, entity: object) -> bool:
        """Whether an evicted entity waits here."""
        return entity in self.index

    def put(self, rows: dict[str, Any]) -> None:
        """Persist evicted rows (``Arena.export``) durably before they leave memory."""
        names: list[str] = rows["names"]
        if not names:
            return
        self._seq += 1
        name = f"{self.own}/spill-{int(time.time() * 1000):013d}-{self._seq}.smck"
        self.files.write_atomic(name, pack({"format": FORMAT, "rows": rows}))
        partitions = rows["partition"].tolist()
        for entity, partition in zip(names, partitions, strict=True):
            self.index[entity] = (name, int(partition))
        self._live[name] = len(names)

    def take(self, names: list[str], upgrade: Callable[[dict[str, Any]], dict[str, Any]]
             | None = None) -> dict[str, Any]:
        """Read evicted entities back: their rows, in ``Arena.export`` form, each file's
        completed by ``upgrade`` (default ``upgrade_rows``; ``Arena.upgrade`` also maps
        rows kept at other scored horizons onto the arena's)."""
        by_file: dict[str, list[str]] = {}
        for entity in names:
            by_file.setdefault(self.index.pop(entity)[0], []).append(entity)
        parts: list[dict[str, Any]] = []
        for name, wanted in by_file.items():
            rows = (upgrade or upgrade_rows)(
                unpack(self.files.read(name), self.files.locate(name))["rows"])
            where = {entity: i for i, entity in enumerate(rows["names"])}
            pick = torch.tensor([where[entity] for entity in wanted])
            parts.append({"names": wanted,
                          **{field: rows[field][pick] for field in ROW_FIELDS}})
            if name in self._live:
                self._live[name] -= len(wanted)
                if self._live[name] == 0:
                    self._emptied[name] = time.time()
                    del self._live[name]
        return {"names": [n for part in parts for n in part["names"]],
                **{field: torch.cat([part[field] for part in parts]) for field in ROW_FIELDS}}

    # -- checkpoints and partition moves --------------------------------------------
    def of_partition(self, partition: int) -> dict[str, str]:
        """Evicted entities of a partition → their file (a checkpoint's ``spilled``)."""
        return {e: f for e, (f, p) in self.index.items() if p == partition}

    def adopt(self, partition: int, spilled: dict[str, str]) -> None:
        """Take over a partition's evicted entities from its checkpoint."""
        self.release([partition])
        for entity, name in spilled.items():
            self.index[entity] = (name, partition)

    def release(self, partitions: list[int]) -> None:
        """Forget a partition's evicted entities (another replica may own them now)."""
        gone = {e for e, (_, p) in self.index.items() if p in partitions}
        for entity in gone:
            name, _ = self.index.pop(entity)
            self._live.pop(name, None)  # untracked: never deleted by this replica

    def collect(self, oldest_checkpoint_s: float | None) -> int:
        """Delete own files that no entity and no kept checkpoint of this replica
        can need any more; → files deleted."""
        deleted = 0
        for name, emptied in list(self._emptied.items()):
            if oldest_checkpoint_s is not None and emptied < oldest_checkpoint_s:
                self.files.delete(name)
                del self._emptied[name]
                deleted += 1
        return deleted
