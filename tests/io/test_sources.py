"""What every Source promises the daemon (``streammeta.io.streams.Source``), checked
on each implementation in the manner of river's estimator checks.

A source is built by a factory from the records it is to serve. Kafka clients
join by adding a factory that produces the records to a fresh topic and returns a
consumer of it (under ``-m integration``, with the embedded broker).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from support import good_records

from streammeta.io.codec import Record, Records
from streammeta.io.streams import MemorySource, Source, TopicPartition, next_offsets

SourceFactory = Callable[[list[Record]], Source]
FACTORIES: dict[str, SourceFactory] = {
    "memory": lambda records: MemorySource(records, batch_size=7),
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> SourceFactory:
    return FACTORIES[request.param]


class Listener:
    def __init__(self) -> None:
        self.assigned: list[list[TopicPartition]] = []
        self.revoked: list[list[TopicPartition]] = []

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        self.assigned.append(sorted(partitions))

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.revoked.append(sorted(partitions))


def drain(source: Source, limit: int = 1000) -> list[Record]:
    """Everything the source serves now (polls until an empty batch)."""
    out: list[Record] = []
    for _ in range(limit):
        batch = source.poll(0.5)
        if not batch:
            return out
        out += batch
    raise AssertionError("the source never ran dry")


def positions(records: list[Record]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


RECORDS = good_records(entities=4, steps=6, partitions=2)


def test_every_record_is_served_once_in_partition_order(make: SourceFactory) -> None:
    source = make(RECORDS)
    served = drain(source)
    assert sorted(positions(served)) == sorted(positions(RECORDS))
    for p in (0, 1):
        offsets = [r.offset for r in served if r.partition == p]
        assert offsets == sorted(offsets)
    assert source.ready()
    source.close()


def test_partitions_are_announced_before_their_first_record(make: SourceFactory) -> None:
    source = make(RECORDS)
    listener = Listener()
    source.set_rebalance_listener(listener.on_assigned, listener.on_revoked)
    first = source.poll(0.5)
    assert listener.assigned == [[("obs", 0), ("obs", 1)]]
    assert first and not listener.revoked
    drain(source)
    assert len(listener.assigned) == 1  # once, not at every poll
    source.close()


def test_seek_serves_again_from_the_given_offsets(make: SourceFactory) -> None:
    source = make(RECORDS)
    served = drain(source)
    source.seek({("obs", 0): 4})  # partition 0 from offset 4; partition 1 stays done
    again = drain(source)
    assert positions(again) == [(0, o) for o in range(4, 12)]
    assert len(served) == len(RECORDS)
    source.close()


def test_commits_are_kept_for_the_next_owner(make: SourceFactory) -> None:
    source = make(RECORDS)
    served = drain(source)
    offsets = next_offsets(served)
    assert offsets == {("obs", 0): 12, ("obs", 1): 12}
    source.commit(offsets)
    committed = getattr(source, "committed", None)
    if committed is not None:  # an in-memory source shows what it holds
        assert committed == offsets
    source.close()


def test_next_offsets_is_the_offset_after_each_partitions_last_record() -> None:
    """The column-wise path (one topic) and the record-by-record one (several) agree
    with the definition, whatever order the partitions and offsets come in."""
    rng = np.random.default_rng(3)
    for topics in (["obs"], ["obs", "other"]):
        records = [Record(str(rng.choice(topics)), int(rng.integers(0, 5)),
                          int(rng.integers(0, 1000)), None, b"")
                   for _ in range(500)]
        expected: dict[TopicPartition, int] = {}
        for r in records:
            tp = (r.topic, r.partition)
            expected[tp] = max(expected.get(tp, 0), r.offset + 1)
        assert next_offsets(records) == expected
        assert next_offsets(Records.of(records)) == expected
    assert next_offsets([]) == {}


def test_a_columnar_batch_reads_as_its_records() -> None:
    records = [Record("obs", i % 3, 10 + i, b"k%d" % i, None if i == 4 else b"v", 1000 + i)
               for i in range(9)]
    columns = Records.of(records)
    assert len(columns) == 9 and list(columns) == records and columns[-1] == records[-1]
    assert columns[2:7:2] == records[2:7:2] and Records.of(columns) is columns
    assert columns.partitions == [r.partition for r in records]
    with pytest.raises(IndexError):
        columns[9]
