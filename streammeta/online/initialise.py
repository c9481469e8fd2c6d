"""Where an entity's fast weights φ start, and what the task memory keeps of them.

An entity turning warm, or one whose error drifted, starts at φ₀ plus the
memory's initialisation for its newest L values (0 without a memory, or where
nothing similar is known) and is shrunk back towards that start from then on.
Once ``memory.mature_after`` values past its first window have adapted it, what
adaptation added (φ - φ₀) is stored, keyed by its first L values.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streammeta.online import model
from streammeta.online.arena import Arena, window
from streammeta.online.guard import Guard
from streammeta.online.ports import TaskMemory, TaskRecorder
from streammeta.online.result import Result


class Initialiser:
    def __init__(self, shape: model.ModelShape, warm_at: int, mature_at: int,
                 memory: TaskMemory | None) -> None:
        self.shape = shape
        self.warm_at = warm_at
        self.mature_at = mature_at  # φ is stored while the key's values are in the ring
        self.memory = memory

    def start(self, arena: Arena, guard: Guard, tasks: TaskRecorder | None, slots: Tensor,
              n: Tensor, history: Tensor, drifted: Tensor | None, result: Result) -> None:
        """φ of entities turning warm, and of drifted ones, from the memory's neighbours
        of their newest L values (φ₀ where the memory has nothing similar)."""
        L = self.shape.window
        start = n == self.warm_at
        if drifted is not None:
            start |= drifted
            result.drifts += int(drifted.sum())
        if not bool(start.any()):
            return
        s = slots[start]
        if self.memory is None:
            arena.anchor[s] = 0.0
        else:
            # Entries hold φ - φ₀ (what adaptation added), so they stay meaningful after
            # the outer loop moves φ₀; no neighbour: the offset is 0, φ₀ itself.
            found = self.memory.recall(_names(arena, s),
                                       window(history[start], n[start] - L, L, self.shape.season))
            arena.anchor[s] = found.phi
            result.recalled += found.similarity[found.found].tolist()
        # The entity starts at, and is shrunk back towards, the memory's initialisation.
        arena.phi[s] = arena.phi0 + arena.anchor[s]
        guard.start(arena, s, n[start])
        born = n[start] == self.warm_at  # not the drifted: young tasks replay the birth
        if tasks is not None and bool(born.any()):
            tasks.set_anchor(s[born], arena.anchor[s[born]])

    def remember(self, arena: Arena, slots: Tensor, n: Tensor, history: Tensor,
                 version: int) -> None:
        """Store φ - φ₀ of entities with ``memory.mature_after`` values past their first
        full window, keyed by their first L values."""
        assert self.memory is not None
        mature = n == self.mature_at
        if not bool(mature.any()):
            return
        s = slots[mature]
        first = window(history[mature], torch.zeros_like(s), self.shape.window)
        self.memory.remember(_names(arena, s), first, arena.phi[s] - arena.phi0, version)


def _names(arena: Arena, slots: Tensor) -> list[str]:
    return [str(arena.names[i]) for i in slots.tolist()]  # occupied slots: named
