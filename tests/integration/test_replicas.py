"""Replicas in one consumer group on a real broker: partitions and their state move.

Two ``streammeta run`` processes share a 4-partition input topic and one checkpoint
directory. One is SIGKILLed mid-stream; the survivor takes its partitions over,
restores their newest checkpoints and replays from their offsets. Proves: every
observation has a forecast (0 lost), and every entity's final state equals an
uninterrupted run of the same stream (0 applied twice, 0 skipped). Prints the
takeover time: from the kill to the survivor's first commit on a partition it took.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from streamcheck import (
    PARTITIONS,
    STEP,
    assert_every_observation_forecast,
    assert_state_equals_an_uninterrupted_run,
    random_walks,
)
from test_daemon_kafka import committed_total, produce, start_daemon, wait_for

from streammeta.config import Config
from streammeta.io.codec import encode_observation
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import CheckpointStore

pytestmark = pytest.mark.integration
ENTITIES = 500
STEPS = 60
_ASSIGNED = re.compile(r"^(\S+ \S+) INFO streammeta.serve.daemon: "
                       r"assigned partitions \[([\d, ]*)\]; state restored in ([\d.]+) s", re.M)


class PacedProducer(threading.Thread):
    """Writes the stream one step (every entity once) at a time, pausing between
    steps, so replicas are killed and rebalanced while records keep arriving."""

    def __init__(self, config: Config, values: np.ndarray, pause_s: float) -> None:
        super().__init__(daemon=True)
        self.config, self.values, self.pause_s = config, values, pause_s
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.config.kafka.bootstrap_servers,
                                     acks="all", linger_ms=5)
            try:
                for t in range(len(self.values)):
                    for e in range(ENTITIES):
                        key, value = encode_observation(f"e{e}", t * STEP,
                                                        float(self.values[t, e]))
                        producer.send(self.config.kafka.input_topic, key=key, value=value)
                    producer.flush()
                    time.sleep(self.pause_s)
            finally:
                producer.close()
        except BaseException as exc:  # surfaced by the test
            self.error = exc


class Committed:
    """Per-partition committed offsets of the group, through one open consumer."""

    def __init__(self, config: Config) -> None:
        self.topic = config.kafka.input_topic
        self.consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers,
                                      group_id=config.kafka.group_id, enable_auto_commit=False)

    def __call__(self) -> dict[int, int]:
        return {p: self.consumer.committed(TopicPartition(self.topic, p)) or 0
                for p in range(PARTITIONS)}

    def close(self) -> None:
        self.consumer.close()


def assignments(log: Path) -> list[tuple[set[int], float, float]]:
    """Every assignment a replica logged, in order: (partitions, restore seconds,
    epoch seconds when it was logged)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [({int(p) for p in m.group(2).split(",") if p.strip()}, float(m.group(3)),
             datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
            for m in _ASSIGNED.finditer(text)]


_CHANGED = re.compile(r"streammeta.serve.daemon: (assigned|revoked) partitions \[([\d, ]*)\]")


def owned(log: Path) -> set[int]:
    """The partitions a replica owns by its log: eager rebalances revoke and assign
    every partition, cooperative ones (librdkafka) only those that move."""
    text = log.read_text(errors="replace") if log.exists() else ""
    partitions: set[int] = set()
    for m in _CHANGED.finditer(text):
        changed = {int(p) for p in m.group(2).split(",") if p.strip()}
        partitions = partitions | changed if m.group(1) == "assigned" else partitions - changed
    return partitions


def newest_of(store: CheckpointStore, member: str) -> dict | None:
    for _, payload in store.newest():
        if payload["member"] == member:
            return payload
    return None


def replica(config: Config, name: str) -> Config:
    """A replica's configuration: its own checkpoint member name and, on a real Kafka,
    static membership. The embedded Tansu broker never completes the rebalance that
    follows a dead *static* member's session expiry (the survivor waited > 100 s in
    4 of 8 runs, whatever the rebalance timeout), so there replicas join dynamically."""
    config = config.replace("checkpoint", member=name)
    if os.environ.get("STREAMMETA_TEST_BROKER", "embedded") != "embedded":
        config = config.replace("kafka", group_instance_id=name)
    return config


@dataclass
class Pair:
    """Replicas A and B (``a.log``, ``b.log``) sharing every partition, the stream's
    paced producer (not started), the group's committed offsets and the checkpoints."""

    config: Config
    a: subprocess.Popen[bytes]
    b: subprocess.Popen[bytes]
    a_log: Path
    b_log: Path
    producer: PacedProducer
    committed: Committed
    store: CheckpointStore

    def close(self) -> None:
        self.committed.close()
        for process in (self.a, self.b):
            process.kill()
            process.wait(30)


def start_pair(kafka_config: Config, tmp_path: Path, values: np.ndarray,
               pause_s: float) -> Pair:
    """Checkpoints every 3 batches of 500, no outer loop (its timing would make
    versions differ from an uninterrupted run); returns once both replicas serve."""
    config = kafka_config.replace("checkpoint", every_records=1500, every_s=3600).replace(
        "meta", enabled=False).replace("kafka", max_poll_records=500)
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    pair = Pair(config, start_daemon(replica(config, "replica-a"), tmp_path / "a.toml"),
                start_daemon(replica(config, "replica-b"), tmp_path / "b.toml"),
                a_log, b_log, PacedProducer(config, values, pause_s), Committed(config),
                CheckpointStore(config.checkpoint.dir, member="probe",
                                options=config.checkpoint.options()))
    try:
        wait_for(lambda: owned(a_log) and owned(b_log) and not owned(a_log) & owned(b_log)
                 and owned(a_log) | owned(b_log) == set(range(PARTITIONS)),
                 timeout_s=90, what="both replicas owning partitions")
    except BaseException:
        pair.close()
        raise
    return pair


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=timeout_s) == 0


def test_survivor_takes_over_a_killed_replicas_partitions_with_their_state(
    kafka_config: Config, tmp_path: Path
) -> None:
    values = random_walks(STEPS, ENTITIES, seed=5)
    total = STEPS * ENTITIES
    pair = start_pair(kafka_config, tmp_path, values, pause_s=0.15)
    config, a, b, a_log, b_log = pair.config, pair.a, pair.b, pair.a_log, pair.b_log
    committed, producer, store = pair.committed, pair.producer, pair.store
    try:
        producer.start()
        b_parts = owned(b_log)

        def b_checkpointed() -> bool:
            newest = newest_of(store, "replica-b")
            return newest is not None and set(newest["partitions"]) == b_parts
        wait_for(lambda: committed_total(config) >= total // 3 and b_checkpointed(),
                 timeout_s=120, what="a third of the stream committed, B checkpointed")
        assert owned(b_log) == b_parts, "a rebalance happened before the kill"
        b.send_signal(signal.SIGKILL)
        killed_at, killed_wall = time.monotonic(), time.time()
        b.wait(30)
        at_kill = committed()
        checkpoint = newest_of(store, "replica-b")
        assert checkpoint is not None
        replay = sum(at_kill[p] - checkpoint["partitions"][p]["offset"] for p in b_parts)

        wait_for(lambda: any(committed()[p] != at_kill[p] for p in b_parts), timeout_s=120,
                 what="the survivor's first commit on a partition it took over")
        takeover_s = time.monotonic() - killed_at
        wait_for(lambda: committed_total(config) >= total, timeout_s=180,
                 what="every record committed")
        producer.join(60)
        assert producer.error is None
        assert owned(a_log) == set(range(PARTITIONS))
        _, restore_s, assigned_wall = assignments(a_log)[-1]
        stop(a)
    finally:
        pair.close()

    duplicates = assert_every_observation_forecast(config, values)
    assert_state_equals_an_uninterrupted_run(config, values)
    print(f"\nreplica B (partitions {sorted(b_parts)}) killed with {replay} records after its "
          f"newest checkpoint; session timeout {config.kafka.session_timeout_ms} ms; takeover "
          f"(kill → survivor's first commit on B's partitions) {takeover_s:.1f} s: "
          f"group rebalanced and state restored after {assigned_wall - killed_wall:.1f} s, "
          f"restoring took {restore_s:.3f} s; duplicate forecasts {duplicates}")


def test_a_partition_whose_state_cannot_be_restored_is_not_served(
    kafka_config: Config, tmp_path: Path
) -> None:
    """kafka-python logs and swallows exceptions of rebalance callbacks: a failed
    restore must still stop the replica, not let it serve the partition without its
    state (which would apply records to cold entities and commit them)."""
    config = kafka_config.replace("meta", enabled=False)
    other = Engine(config.replace("series", horizon=config.series.horizon + 1))
    other.process(["e0"], np.array([0]), np.array([1.0]), np.array([0]))
    store = CheckpointStore(config.checkpoint.dir, member="older",
                            options=config.checkpoint.options())
    store.save({"partitions": {p: {"offset": 0, **other.export_partition(p)}
                               for p in range(PARTITIONS)}})
    produce(config, [encode_observation(f"e{e}", 0, 1.0) for e in range(100)])
    daemon = start_daemon(config, tmp_path / "config.toml")
    try:
        assert daemon.wait(timeout=90) == 2
    finally:
        daemon.kill()
        daemon.wait(30)
    assert "this configuration needs" in (tmp_path / "config.log").read_text()
    assert committed_total(config) == 0
