"""Replicas share the external memory through a compacted topic on a real broker."""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pytest
import torch
from support import STEP
from test_daemon_kafka import produce, wait_for

from streammeta.config import Config
from streammeta.io import kafka as kafka_edge
from streammeta.io.kafka_memory import KafkaMemoryLink
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.meta.memory import Entry, encode_entry, key_dim, store_for
from streammeta.online.engine import Engine
from streammeta.serve.daemon import Daemon, exchange_memory

pytestmark = pytest.mark.integration


@pytest.fixture
def shared(kafka_config: Config) -> Config:
    topic = f"mem-{uuid.uuid4().hex[:8]}"
    config = kafka_config.replace("memory", enabled=True, topic=topic, mature_after=6).replace(
        "model", window=24, hidden=16, context_dim=4).replace(
        "series", season=6, horizon=6).replace("meta", enabled=False)
    kafka_edge.ensure_topics(config.kafka, partitions=2, memory_topic=topic)
    return config


def link(config: Config) -> KafkaMemoryLink:
    return KafkaMemoryLink(config.kafka, config.memory.topic,
                                      key_dim(config.series.season), config.model.context_dim)


def receive_all(receiver: KafkaMemoryLink, want: int, invalid: int = 0) -> list[Entry]:
    """Entries until `want` arrived and `invalid` records were skipped: the topic has
    two partitions, so the records of two producers arrive in no fixed order."""
    got: list[Entry] = []
    deadline = time.monotonic() + 60
    while (len(got) < want or receiver.invalid < invalid) and time.monotonic() < deadline:
        got += receiver.receive()
        time.sleep(0.05)
    return got


def test_entries_published_by_one_replica_reach_another(shared: Config) -> None:
    kd, vd = key_dim(shared.series.season), shared.model.context_dim
    keys, values = torch.randn(3, kd), torch.randn(3, vd)
    sender, receiver = link(shared), link(shared)
    try:
        sender.publish([(f"e{i}", keys[i], values[i], 7) for i in range(3)])
        writer = shared.replace("memory", topic="")  # a writer to the memory topic itself
        produce(writer.replace("kafka", input_topic=shared.memory.topic),
                [(b"junk", b"not an entry"), (None, encode_entry(keys[0], values[0], 1))])
        sender.producer.flush()
        got = receive_all(receiver, 3, invalid=2)
        assert sorted(name for name, *_ in got) == ["e0", "e1", "e2"]
        for name, key, value, version in got:
            i = int(name[1:])
            torch.testing.assert_close(key, keys[i])
            torch.testing.assert_close(value, values[i])
            assert version == 7
        assert receiver.invalid == 2  # counted and skipped, no crash
    finally:
        sender.close()
        receiver.close()


def exchange(daemon: Daemon) -> None:
    """What the daemon's loop does with the memory link between batches."""
    assert daemon.memory_link is not None
    exchange_memory(daemon.engine, daemon.memory_link, daemon.metrics)


def test_a_replica_warm_starts_from_what_another_replica_learned(shared: Config) -> None:
    """Replica A adapts entity "a" to maturity; replica B, which never saw "a", holds
    its φ after one exchange with the topic and starts a similar entity from it."""
    memories = [store_for(shared), store_for(shared)]
    first, second = (Engine(shared, memory=memory) for memory in memories)
    a, b = memories
    assert a is not None and b is not None
    daemons = [Daemon(shared, MemorySource([]), MemorySink(), engine=engine,
                      memory_link=link(shared)) for engine in (first, second)]
    try:
        t = np.arange(shared.model.window + shared.memory.mature_after)  # mature
        values = 10 + np.sin(2 * math.pi * t / shared.series.season)
        first.process(["a"] * len(t), t.astype(np.int64) * STEP, values)
        assert "a" in a.row_of
        exchange(daemons[0])

        def exchanged() -> bool:
            exchange(daemons[1])
            return "a" in b.row_of

        wait_for(exchanged, timeout_s=60, what="replica B to receive entity a's entry")
        stored = first.arena.phi[first.arena.index["a"]]
        window = shared.model.window
        second.process(["b"] * window, np.arange(window, dtype=np.int64) * STEP,
                       100 + 5 * values[:window])
        torch.testing.assert_close(second.arena.phi[second.arena.index["b"]], stored)
    finally:
        for daemon in daemons:
            assert daemon.memory_link is not None
            daemon.memory_link.close()
