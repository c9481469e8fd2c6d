"""The edges of the loop as small protocols, with in-memory implementations.

The daemon reads :class:`Record` batches from a :class:`Source` and writes
forecasts and dead letters to a :class:`Sink`. ``streammeta.kafka_edge``
implements both for Kafka; the classes here serve ``evaluate``, tests and
benchmarks without a broker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Protocol

from streammeta.codec import DeadLetter, Record

TopicPartition = tuple[str, int]


class Source(Protocol):
    def poll(self, timeout_s: float) -> list[Record]:
        """The next batch of records (possibly empty), in partition order."""
        ...

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Mark everything before ``offsets[tp]`` (the next offset to read) as done."""
        ...

    def ready(self) -> bool:
        """Connected and assigned: the daemon can serve."""
        ...

    def close(self) -> None: ...


class Sink(Protocol):
    def send_forecasts(self, messages: list[tuple[bytes, bytes]]) -> None:
        """Queue (key, value) forecast messages."""
        ...

    def send_dead_letters(self, letters: list[DeadLetter]) -> None: ...

    def flush(self, timeout_s: float) -> None:
        """Block until everything queued is acknowledged; raise if anything failed."""
        ...

    def close(self) -> None: ...


class MemorySource:
    """Serves records from a list in batches; remembers what was committed."""

    def __init__(self, records: Iterable[Record], batch_size: int = 5000) -> None:
        self._pending: deque[Record] = deque(records)
        self.batch_size = batch_size
        self.committed: dict[TopicPartition, int] = {}

    def poll(self, timeout_s: float) -> list[Record]:
        take = min(self.batch_size, len(self._pending))
        return [self._pending.popleft() for _ in range(take)]

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def ready(self) -> bool:
        return True

    def exhausted(self) -> bool:
        return not self._pending

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps every message it is given; ``flush`` acknowledges them all."""

    def __init__(self) -> None:
        self.forecasts: list[tuple[bytes, bytes]] = []
        self.dead_letters: list[DeadLetter] = []
        self.flushes = 0

    def send_forecasts(self, messages: list[tuple[bytes, bytes]]) -> None:
        self.forecasts.extend(messages)

    def send_dead_letters(self, letters: list[DeadLetter]) -> None:
        self.dead_letters.extend(letters)

    def flush(self, timeout_s: float) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """For each partition seen, the offset after the last record: what to commit."""
    out: dict[TopicPartition, int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        if record.offset + 1 > out.get(tp, -1):
            out[tp] = record.offset + 1
    return out
