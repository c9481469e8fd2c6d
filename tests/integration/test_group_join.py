"""Rebalances, with each client: two busy members share every partition.

It also decided the kafka-python version (pinned to 2.3.x in pyproject.toml).

kafka-python 3.0.x discards a JoinGroup/SyncGroup response that completes while
the application is outside ``poll()`` (``BaseCoordinator.join_group_async`` starts
a new join when the previous task is done), so a member that works between polls,
as the daemon does, can loop on JoinGroup for minutes (KAFKA.md). Here two
members of one group each spend 300 ms of work between polls, while records keep
arriving; both must own partitions, together all of them, within a bound.
Measured: 2.3.3 joins in about 4 s; 3.0.12 had not joined after 90 s (docs/kafka.md).

Each assignment also reads what fencing and the retention check need from the
group and the log: the generation (known, and rising) and the earliest
offset of each assigned partition.
"""

from __future__ import annotations

import threading
import time

import pytest

from streammeta.config import Config
from streammeta.io.codec import encode_observation
from streammeta.io.edge import make_source, make_writer
from streammeta.io.streams import TopicPartition

pytestmark = pytest.mark.integration


def test_two_busy_members_both_join_and_share_every_partition(each_client: Config) -> None:
    kafka_config = each_client
    writer = make_writer(kafka_config.kafka)
    for i in range(2000):
        writer.send(*encode_observation(f"e{i % 50}", i * 1000, 1.0))
    writer.flush()
    stop = threading.Event()
    members = [make_source(kafka_config.kafka) for _ in range(2)]
    owned: list[set[int]] = [set(), set()]
    seen: list[list[tuple[int, dict[TopicPartition, int]]]] = [[], []]  # generation, earliest

    def work(i: int) -> None:
        member = members[i]

        def assigned(tps: list[tuple[str, int]]) -> None:
            owned[i] |= {p for _, p in tps}  # cooperative: these partitions are added
            seen[i].append((member.generation(), member.earliest(tps)))  # type: ignore[attr-defined]

        def revoked(tps: list[tuple[str, int]]) -> None:
            owned[i] -= {p for _, p in tps}  # cooperative: only these partitions leave

        member.set_rebalance_listener(assigned, revoked)
        while not stop.is_set():
            member.poll(0.1)
            time.sleep(0.3)  # work between polls, where 3.0.x loses join responses
        member.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if owned[0] and owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}:
                break
            time.sleep(0.1)
        assert owned[0] and owned[1], f"a member never got partitions: {owned}"
        assert owned[0] | owned[1] == {0, 1, 2, 3} and not owned[0] & owned[1]
        for member in seen:  # known, and rising with each assignment
            assert [g for g, _ in member] == sorted({g for g, _ in member if g >= 0}), seen
            for _, earliest in member:  # nothing deleted: every partition starts at 0
                assert set(earliest.values()) == {0}, seen
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        writer.close()
