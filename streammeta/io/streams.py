"""The edges of the loop as small protocols, with in-memory implementations.

The daemon reads :class:`Record` batches from a :class:`Source` and writes
forecasts and dead letters to a :class:`Sink`. ``streammeta.io.kafka``
implements both for Kafka; the classes here serve ``evaluate``, tests and
benchmarks without a broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from streammeta.io.codec import DeadLetter, Record, Records

TopicPartition = tuple[str, int]
PartitionsCallback = Callable[[list[TopicPartition]], None]


class Source(Protocol):
    def poll(self, timeout_s: float) -> Sequence[Record]:
        """The next batch of records (possibly empty), in partition order; a client
        gives :class:`~streammeta.io.codec.Records` (columns, no object per record)."""
        ...

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Mark everything before ``offsets[tp]`` (the next offset to read) as done."""
        ...

    def ready(self) -> bool:
        """Connected and assigned: the daemon can serve."""
        ...

    def seek(self, offsets: dict[TopicPartition, int]) -> None:
        """Read these partitions from these offsets on (restoring a checkpoint)."""
        ...

    def set_rebalance_listener(
        self, on_assigned: PartitionsCallback, on_revoked: PartitionsCallback
    ) -> None:
        """Called from inside ``poll`` when partitions arrive or leave."""
        ...

    def close(self) -> None: ...


class Sink(Protocol):
    def send_forecasts(self, messages: list[tuple[bytes, bytes]],
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue (key, value) forecast messages, each with ``headers`` (one batch, one
        model version: ``streammeta.contracts.forecast_headers``)."""
        ...

    def send_dead_letters(self, letters: list[DeadLetter]) -> None: ...

    def flush(self, timeout_s: float, waiting: Callable[[], object] | None = None) -> None:
        """Block until everything queued is acknowledged; raise if anything failed.
        ``waiting``, if given, is called about once a second while it blocks."""
        ...

    def close(self) -> None: ...


class MemorySource:
    """Serves records from a list in batches, as one consumer owning every partition
    in it; supports seeking back (a restart from a checkpoint)."""

    def __init__(self, records: Iterable[Record], batch_size: int = 5000) -> None:
        self.records = list(records)
        self.batch_size = batch_size
        self.committed: dict[TopicPartition, int] = {}
        self._cursor = 0
        self._skip_below: dict[TopicPartition, int] = {}
        self._delivered: dict[TopicPartition, int] = {}
        self._on_assigned: PartitionsCallback | None = None
        self._assigned = False

    def poll(self, timeout_s: float) -> list[Record]:
        if not self._assigned:
            self._assigned = True
            if self._on_assigned is not None:
                self._on_assigned(sorted({(r.topic, r.partition) for r in self.records}))
        batch: list[Record] = []
        while self._cursor < len(self.records) and len(batch) < self.batch_size:
            record = self.records[self._cursor]
            self._cursor += 1
            tp = (record.topic, record.partition)
            if record.offset >= self._skip_below.get(tp, -1):
                batch.append(record)
                self._delivered[tp] = record.offset + 1
        return batch

    def earliest(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The first offset the list holds of each partition (older ones expired)."""
        first: dict[TopicPartition, int] = {}
        for r in self.records:
            tp = (r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        return {tp: first.get(tp, 0) for tp in partitions}

    def seek(self, offsets: dict[TopicPartition, int]) -> None:
        # Records are kept in arrival order: start over, skipping what lies before the
        # new positions and what other partitions already delivered.
        self._skip_below = {**self._delivered, **offsets}
        self._cursor = 0

    def set_rebalance_listener(
        self, on_assigned: PartitionsCallback, on_revoked: PartitionsCallback
    ) -> None:
        self._on_assigned = on_assigned

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def ready(self) -> bool:
        return True

    def exhausted(self) -> bool:
        return self._cursor >= len(self.records)

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps every message it is given; ``flush`` acknowledges them all."""

    def __init__(self) -> None:
        self.forecasts: list[tuple[bytes, bytes]] = []
        self.forecast_headers: list[list[tuple[str, bytes]]] = []  # aligned with forecasts
        self.dead_letters: list[DeadLetter] = []
        self.flushes = 0

    def send_forecasts(self, messages: list[tuple[bytes, bytes]],
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        self.forecasts.extend(messages)
        self.forecast_headers.extend([headers or []] * len(messages))

    def send_dead_letters(self, letters: list[DeadLetter]) -> None:
        self.dead_letters.extend(letters)

    def flush(self, timeout_s: float, waiting: Callable[[], object] | None = None) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """For each partition seen, the offset after the last record: what to commit."""
    columns = Records.of(records)
    topics = columns.topics
    if not topics:
        return {}
    if topics.count(topics[0]) != len(topics):  # several topics: rare, record by record
        out: dict[TopicPartition, int] = {}
        for tp, offset in zip(zip(topics, columns.partitions, strict=True), columns.offsets,
                              strict=True):
            if offset + 1 > out.get(tp, -1):
                out[tp] = offset + 1
        return out
    # One topic (a daemon's input): the largest offset per partition, by numpy.
    partitions = np.asarray(columns.partitions, dtype=np.int64)
    offsets = np.asarray(columns.offsets, dtype=np.int64)
    order = np.argsort(partitions, kind="stable")
    partitions, offsets = partitions[order], offsets[order]
    starts = np.flatnonzero(np.r_[True, partitions[1:] != partitions[:-1]])
    last = np.maximum.reduceat(offsets, starts) + 1
    return {(topics[0], p): o for p, o in zip(partitions[starts].tolist(), last.tolist(),
                                              strict=True)}
