"""What the engine is handed from outside ``online/``, as small protocols.

The online loop sits upstream of everything that learns from it or stores it:
the task memory and the task buffer (``streammeta.meta``), the spill store
(``streammeta.persistence``). It names here only what it calls on them, so that
nothing in ``online/`` imports those packages; whoever builds the engine
(``streammeta.assemble``, ``streammeta.meta.outer.attach``) passes them in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

Entry = tuple[str, Tensor, Tensor, int]  # entity id, key, φ - φ₀, model version
Rows = dict[str, Any]  # exported arena rows (``Arena.export``)


@dataclass
class Retrieval:
    phi: Tensor  # (B, C) the blend; the default where nothing was found
    found: Tensor  # (B,) bool
    similarity: Tensor  # (B,) mean similarity of the neighbours used (NaN if none)


class TaskMemory(Protocol):
    """Which φ - φ₀ worked for which kind of series (``streammeta.meta.memory``)."""

    def recall(self, names: list[str], windows: Tensor) -> Retrieval:
        """Entities turning warm with their newest values ``windows`` (B, L) → where
        their φ starts, less φ₀ (0 where nothing similar is known)."""
        ...

    def remember(self, names: list[str], windows: Tensor, offsets: Tensor,
                 version: int) -> None:
        """Store what adaptation added (``offsets`` (B, C)), keyed by each entity's
        first values ``windows`` (B, L)."""
        ...

    def share(self) -> None:
        """Keep new entries in an outbox for the other replicas from now on."""
        ...

    def take_outbox(self) -> list[Entry]: ...
    def receive(self, entries: list[Entry]) -> None: ...
    def export(self) -> dict[str, object]: ...
    def restore(self, state: dict[str, object]) -> None: ...
    def __len__(self) -> int: ...


class TaskRecorder(Protocol):
    """Keeps recent histories for the outer loop (``streammeta.meta.tasks.TaskBuffer``)."""

    def observe(self, slots: Tensor, values: Tensor, fresh: Tensor) -> None: ...
    def set_anchor(self, slots: Tensor, offsets: Tensor) -> None: ...


class EvictionStore(Protocol):
    """Where evicted entities wait on disk (``streammeta.persistence.spill.SpillStore``)."""

    def __contains__(self, entity: object) -> bool: ...
    def put(self, rows: Rows) -> None: ...
    def take(self, names: list[str],
             upgrade: Callable[[Rows], Rows] | None = None) -> Rows: ...
    def of_partition(self, partition: int) -> dict[str, str]: ...
    def adopt(self, partition: int, spilled: dict[str, str]) -> None: ...
    def release(self, partitions: list[int]) -> None: ...
    def collect(self, oldest_checkpoint_s: float | None) -> int: ...
