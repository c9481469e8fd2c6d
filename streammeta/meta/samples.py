"""Task samples: the ingesting replicas' task histories, sent to the one trainer.

Each ingesting replica keeps a task buffer fed by its engine (as the single
process does) and sends, at most ``meta.samples_per_s`` times a second, the whole
row of an entity that changed since it was last sent: its values (oldest first,
up to the buffer's length), how many it has written and the start of its φ. A new
entity's row still begins with its first value, so young tasks travel too. The
trainer loads each row into its own buffer (:class:`SampleIntake`), keyed by
replica and row, and samples training and held-out tasks from all of them.

Record: key ``<member>/<row>``; value: magic, values written, values held,
context size, then float32 start of φ (C) and values (held).
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from typing import Protocol

import torch
from torch import Tensor

from streammeta.errors import BrokerError
from streammeta.meta.tasks import TaskBuffer, export_rows, load_rows

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<4sqII")  # magic, values written, values held, context size
_MAGIC = b"SMT1"


class Writer(Protocol):
    def send(self, key: bytes, value: bytes) -> None: ...
    def flush(self, timeout_s: float = 60.0) -> None: ...
    def close(self) -> None: ...


def encode(count: int, anchor: Tensor, values: Tensor) -> bytes:
    a = anchor.detach().to(torch.float32).contiguous().numpy().tobytes()
    v = values.detach().to(torch.float32).contiguous().numpy().tobytes()
    return _HEADER.pack(_MAGIC, count, len(values), len(anchor)) + a + v


def decode(data: bytes, context_dim: int) -> tuple[int, Tensor, Tensor]:
    """→ (values written, start of φ (C,), values (held,)); ValueError if it is not a
    sample of this configuration."""
    if len(data) < _HEADER.size:
        raise ValueError("task sample: truncated header")
    magic, count, held, dim = _HEADER.unpack_from(data)
    if magic != _MAGIC or dim != context_dim or held > count:
        raise ValueError("task sample: not one of this configuration")
    if len(data) != _HEADER.size + 4 * (dim + held):
        raise ValueError("task sample: wrong length")
    body = torch.frombuffer(bytearray(data[_HEADER.size:]), dtype=torch.float32)
    if not bool(torch.isfinite(body).all()):
        raise ValueError("task sample: non-finite numbers")
    return count, body[:dim].clone(), body[dim:].clone()


class SampleSender:
    """Sends changed rows of this replica's buffer, at most ``per_s`` a second.

    The loop only queues samples (:meth:`__call__` never waits on the broker); a thread
    of its own hands them to the writer and waits for their acknowledgement, a batch
    at a time. At most ``max_queued`` samples wait for it: while the broker is away the
    rows that do not fit stay unsent (counted in ``deferred``, sent once there is room)
    and a batch the broker did not acknowledge within ``flush_timeout_s`` is dropped
    (counted in ``lost``: samples are a row's latest state, sent again when it
    changes). Nothing else piles up, however long the outage.
    """

    def __init__(self, buffer: TaskBuffer, writer: Writer, member: str, per_s: float,
                 min_values: int, seed: int = 0, max_queued: int = 0,
                 flush_timeout_s: float = 30.0) -> None:
        self.buffer, self.writer, self.member = buffer, writer, member
        self.per_s, self.min_values = per_s, min_values
        self.flush_timeout_s = flush_timeout_s
        self.sent_round = torch.full((buffer.capacity,), -1, dtype=torch.int64)
        self.generator = torch.Generator().manual_seed(seed)
        self._budget = 0.0
        self._last = time.monotonic()
        self.queued = 0    # handed to the sender's thread
        self.sent = 0      # acknowledged by the broker
        self.lost = 0      # handed to the writer, not acknowledged in time: dropped
        self.deferred = 0  # not queued: the queue was full
        # Two seconds of samples by default: enough to ride out a slow flush.
        self._queue: queue.Queue[tuple[bytes, bytes]] = queue.Queue(
            max_queued or max(16, int(2 * per_s)))
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="streammeta-task-samples",
                                        daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Samples queued, not yet handed to the writer."""
        return self._queue.qsize()

    def __call__(self) -> int:
        """Queue what the budget and the queue allow now; → rows queued."""
        now = time.monotonic()
        self._budget = min(self.per_s, self._budget + self.per_s * (now - self._last))
        self._last = now
        if self._budget < 1:
            return 0
        b = self.buffer
        with b.lock:
            changed = torch.nonzero((b.updated > self.sent_round)
                                    & (b.count >= self.min_values)).flatten()
            rounds = b.updated[changed].clone()
        if not len(changed):
            return 0
        room = self._queue.maxsize - self._queue.qsize()  # only this thread adds
        take = min(int(self._budget), len(changed), room)
        if take < min(int(self._budget), len(changed)):
            self.deferred += min(int(self._budget), len(changed)) - take
        if take <= 0:
            return 0
        pick = torch.randperm(len(changed), generator=self.generator)[:take]
        rows = changed[pick]
        counts, anchors, values = export_rows(b, rows)
        for i, row in enumerate(rows.tolist()):
            self._queue.put_nowait((f"{self.member}/{row}".encode(),
                                    encode(int(counts[i]), anchors[i], values[i])))
        self.sent_round[rows] = rounds[pick]
        self._budget -= take
        self.queued += take
        return take

    def _pump(self) -> None:
        """The sender's thread: the queued samples to the writer, a batch at a time."""
        while not self._closing.is_set():
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            if self._closing.is_set():
                return
            while len(batch) < self._queue.maxsize:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                for key, value in batch:
                    self.writer.send(key, value)
                self.writer.flush(self.flush_timeout_s)
                self.sent += len(batch)
            except BrokerError as exc:
                self.lost += len(batch)
                log.warning("%d task samples dropped: %s", len(batch), exc)
            except Exception:  # the thread must not die: the loop keeps queueing
                self.lost += len(batch)
                log.exception("%d task samples dropped", len(batch))

    def close(self) -> None:
        """Stop sending and close the writer: what it holds unacknowledged is dropped
        within its close's bound (``kafka.shutdown_timeout_s``, or what is left of the
        shutdown's), which also ends the thread's wait on it."""
        self._closing.set()
        self.writer.close()
        self._thread.join(1.0)


class SampleIntake:
    """The trainer's side: rows from every replica into one task buffer."""

    def __init__(self, buffer: TaskBuffer, max_slots: int, context_dim: int) -> None:
        self.buffer, self.max_slots, self.context_dim = buffer, max_slots, context_dim
        self.slot_of: dict[bytes, int] = {}
        self.key_of: dict[int, bytes] = {}
        self._next = 0
        self.invalid = 0
        self.loaded = 0

    def _slot(self, key: bytes) -> int:
        """The buffer slot of a replica's row; slots are handed out in turn, and the
        key that held a slot the longest gives it up (its row is the oldest)."""
        slot = self.slot_of.get(key)
        if slot is None:
            slot = self._next % self.max_slots
            self._next += 1
            old = self.key_of.pop(slot, None)
            if old is not None:
                del self.slot_of[old]
            self.slot_of[key], self.key_of[slot] = slot, key
        return slot

    def take(self, records: list[tuple[bytes | None, bytes | None]]) -> int:
        """Load these sample records; → rows loaded."""
        latest: dict[bytes, tuple[int, Tensor, Tensor]] = {}
        for key, value in records:
            try:
                if key is None:
                    raise ValueError("task sample without a key")
                latest[key] = decode(value or b"", self.context_dim)
            except ValueError as exc:
                self.invalid += 1
                log.debug("ignoring a task sample: %s", exc)
        if not latest:
            return 0
        slots = torch.tensor([self._slot(k) for k in latest], dtype=torch.int64)
        counts = torch.tensor([c for c, _, _ in latest.values()], dtype=torch.int64)
        anchors = torch.stack([a for _, a, _ in latest.values()])
        load_rows(self.buffer, slots, counts, anchors, [v for _, _, v in latest.values()])
        self.loaded += len(latest)
        return len(latest)
