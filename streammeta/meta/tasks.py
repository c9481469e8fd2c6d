"""The replay buffer of tasks: recent histories of a bounded set of entities.

The outer loop samples tasks from here. Each row holds the last ``length`` values
of one entity (a ring, like the arena's, but longer: a task needs support windows
*and* later query windows). Rows are assigned to entities as they appear; when the
buffer is full, a new entity takes the least recently updated row of an entity that
went quiet (no value for ``QUIET`` times its own spacing of values, in observations),
and none while every row's entity still sends: with more entities than rows arriving
in turn, as a live stream brings them, taking the oldest row handed every row on
before its entity's next value, no row held two values and the outer loop had no
task (48,000 monthly series: 0 outer-loop runs). A slot reused by a new entity starts
its row afresh.
Each row also holds the offset from φ₀ its entity started from when it turned warm
(the memory's initialisation; 0 without memory), which young tasks replay.
Memory: ``capacity × (length + context_dim)`` floats.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

# A row's entity counts as gone after this many of its spacings of values (in
# observations) without one: arrival order in a stream jitters.
QUIET = 3


class TaskBuffer:
    def __init__(self, capacity: int, length: int, max_slots: int,
                 context_dim: int = 1) -> None:
        self.capacity = capacity
        self.length = length
        self.values = torch.zeros(capacity, length)  # (N, T) ring per row
        self.count = torch.zeros(capacity, dtype=torch.int64)  # values written per row
        self.anchor = torch.zeros(capacity, context_dim)  # (N, C) start of φ, less φ₀
        self.updated = torch.full((capacity,), -1, dtype=torch.int64)  # round of last write
        self.slot_of_row = torch.full((capacity,), -1, dtype=torch.int64)
        self.row_of_slot = torch.full((max_slots,), -1, dtype=torch.int64)
        self.rounds = 0
        self.observed = 0  # observations written, for the outer loop's trigger
        # In observations: at each row's last write; between its last two (0: unknown).
        self.last = torch.zeros(capacity, dtype=torch.int64)
        self.gap = torch.zeros(capacity, dtype=torch.int64)
        self.asked = torch.full((max_slots,), -1, dtype=torch.int64)  # observed at a refusal
        self.cycle = 0  # observed between a refused entity's two values (0: not known)
        self.lock = threading.Lock()

    def entities(self) -> int:
        """Rows that hold an entity now."""
        return int((self.slot_of_row >= 0).sum())

    def observe(self, slots: Tensor, values: Tensor, fresh: Tensor) -> None:
        """One round's new values of entities ``slots`` (B,); ``fresh`` marks entities
        whose history starts now (new, or restarted cold)."""
        with self.lock:
            self.rounds += 1
            self.observed += len(slots)
            rows = self.row_of_slot[slots]
            need = (rows < 0) | fresh
            if bool(need.any()):
                rows = rows.clone()
                rows[need] = self._claim(slots[need], rows[need])
            live = rows >= 0
            rows, v = rows[live], values[live]
            self._touch(rows)
            self.values[rows, self.count[rows] % self.length] = v
            self.count[rows] += 1
            self.updated[rows] = self.rounds

    def _touch(self, rows: Tensor) -> None:
        """Rows ``rows`` get a value now: their spacing of values, where they had one."""
        seen = rows[self.count[rows] > 0]
        self.gap[seen] = self.observed - self.last[seen]
        self.last[rows] = self.observed

    def _free(self, rows: Tensor) -> Tensor:
        """Which of ``rows`` a new entity may take: never used, or their entity quiet for
        ``QUIET`` times its spacing of values (a row with one value: the typical spacing,
        of the rows or of refused entities asking again; none known: it stays)."""
        known = self.gap[self.gap > 0]
        typical = max(int(known.median()) if len(known) else 0, self.cycle)
        spacing = torch.where(self.gap[rows] > 0, self.gap[rows], typical)
        quiet = (spacing > 0) & (self.observed - self.last[rows] > QUIET * spacing)
        return (self.slot_of_row[rows] < 0) | quiet

    def _claim(self, slots: Tensor, current: Tensor) -> Tensor:
        """Rows for entities starting a history: their own row if they have one, else the
        least recently updated rows that are free (:meth:`_free`), else none."""
        keep = current >= 0
        out = current.clone()
        want = int((~keep).sum())
        if want:
            order = torch.argsort(self.updated)  # never-used rows (-1) first
            order = order[self._free(order)]
            taken = order[:want]
            lost = self.slot_of_row[taken]
            self.row_of_slot[lost[lost >= 0]] = -1
            new_rows = torch.full((want,), -1, dtype=torch.int64)
            new_rows[: len(taken)] = taken
            out[~keep] = new_rows
            got = new_rows >= 0
            self.slot_of_row[new_rows[got]] = slots[~keep][got]
            self.row_of_slot[slots[~keep][got]] = new_rows[got]
            refused = slots[~keep][~got]
            again = refused[self.asked[refused] >= 0]
            if len(again):  # how long an entity takes to come back: the typical spacing
                self.cycle = int((self.observed - self.asked[again]).median())
            self.asked[refused] = self.observed
        self.count[out[out >= 0]] = 0
        self.anchor[out[out >= 0]] = 0.0
        self.gap[out[out >= 0]] = 0
        return out

    def set_anchor(self, slots: Tensor, offsets: Tensor) -> None:
        """Entities ``slots`` turned warm starting from φ₀ + ``offsets`` (B, C)."""
        with self.lock:
            rows = self.row_of_slot[slots]
            live = rows >= 0
            self.anchor[rows[live]] = offsets[live].to(self.anchor.dtype)

    def anchors(self, rows: Tensor) -> Tensor:
        """Where the entities of ``rows`` started from, less φ₀: (n, C), a copy."""
        with self.lock:
            return self.anchor[rows].clone()

    def full_rows(self, span: int) -> Tensor:
        """Rows holding at least ``span`` values."""
        return torch.nonzero(torch.clamp(self.count, max=self.length) >= span).flatten()

    def born_rows(self, span: int) -> Tensor:
        """Rows holding at least ``span`` values and still their entity's first: new
        entities, whose oldest value is their birth."""
        return torch.nonzero((self.count >= span) & (self.count <= self.length)).flatten()

    def histories(self, rows: Tensor, span: int, generator: torch.Generator | None = None,
                  skip_newest: int = 0, oldest: bool = False) -> Tensor:
        """``span`` consecutive values of each row, oldest first: (n, span), a copy.

        With a generator, each row's stretch starts at a random point of what the row
        holds (more varied tasks than always the newest values); without, it ends with
        the newest value. ``skip_newest`` keeps the newest values out of the stretch;
        ``oldest``: the stretch starts at the oldest value the row holds (the entity's
        first while the ring has not wrapped).
        """
        with self.lock:
            held = torch.clamp(self.count[rows], max=self.length)  # values still in the ring
            spare = held - span - skip_newest  # (n,) how far back a stretch may start
            if oldest:
                back = spare
            elif generator is None:
                back = torch.zeros_like(spare)
            else:
                back = (torch.rand(len(rows), generator=generator) * (spare + 1)).long()
            first = self.count[rows] - skip_newest - span - back  # each stretch's start
            cols = (first[:, None] + torch.arange(span)[None, :]) % self.length
            return torch.gather(self.values[rows], 1, cols)


def held_out(ids: Tensor, share: float) -> Tensor:
    """Which of these integer ids (entity rows, series numbers) are held out: a fixed
    hash, so an id stays on its side from run to run. → bool, like ``ids``."""
    return (ids * 2654435761 % 1000) < int(share * 1000)


def export_rows(buffer: TaskBuffer, rows: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """What rows ``rows`` hold, for another process's buffer (``meta/samples.py``):
    values written (n,), starting points (n, C) and each row's values, oldest first."""
    with buffer.lock:
        counts = buffer.count[rows].clone()
        held = torch.clamp(counts, max=buffer.length)
        out = []
        for row, count, n in zip(rows.tolist(), counts.tolist(), held.tolist(), strict=True):
            cols = (count - n + torch.arange(n)) % buffer.length
            out.append(buffer.values[row, cols].clone())
        return counts, buffer.anchor[rows].clone(), out


def load_rows(buffer: TaskBuffer, slots: Tensor, counts: Tensor, anchors: Tensor,
              histories: list[Tensor]) -> None:
    """Replace the rows of entities ``slots`` with what another buffer held
    (:func:`export_rows`); new entities claim rows as :meth:`TaskBuffer.observe` does."""
    with buffer.lock:
        buffer.rounds += 1
        rows = buffer.row_of_slot[slots]
        before = torch.where(rows >= 0, buffer.count[rows.clamp(min=0)], 0)
        need = rows < 0
        if bool(need.any()):
            rows = rows.clone()
            rows[need] = buffer._claim(slots[need], rows[need])
        buffer._touch(rows[rows >= 0])
        for i, row in enumerate(rows.tolist()):
            if row < 0:
                continue
            values = histories[i][-buffer.length:]
            count = int(counts[i])
            cols = (count - len(values) + torch.arange(len(values))) % buffer.length
            buffer.values[row, cols] = values.to(buffer.values.dtype)
            buffer.count[row] = count
            buffer.anchor[row] = anchors[i].to(buffer.anchor.dtype)
            buffer.updated[row] = buffer.rounds
            # New values for the outer loop's trigger: the growth of a known row.
            grown = count - int(before[i])
            buffer.observed += min(grown, len(values)) if grown >= 0 else len(values)
