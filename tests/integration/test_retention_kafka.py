"""Retention on a real broker: records a checkpoint has not seen are deleted while
the daemon is down.

The daemon works through 10 steps and stops (a checkpoint at their end); 30 more
steps arrive; the broker then deletes every partition's records below the start
of step 25, as retention does (DeleteRecords moves the log start offset exactly
as a retention pass does, without waiting for one). On restart the restored
offsets are below the earliest retained ones: each partition is counted in
``streammeta_checkpoint_expired_total``, logged with both offsets, and continues
from the earliest retained record with its state kept (``checkpoint.expired =
"keep"``: the entities see a 15-step gap) or dropped (``"cold"``).

On Apache Kafka (``STREAMMETA_TEST_BROKER=container`` or ``host:port``) the records
are deleted for real. The embedded Tansu broker (0.6) closes the connection on
DeleteRecords and ignores retention, so no partition's earliest offset ever passes
a checkpoint's there; on it the test stands in for retention by answering the
daemon's earliest-offset query with the offsets retention would have left (the
records below stay on the broker, unread: the daemon seeks past them). What runs
for real on Tansu is then the restore, the seek inside the rebalance callback, the
count, the log and the state; the read of the earliest offsets itself is checked
in ``tests/integration/test_group_join.py``.
"""

from __future__ import annotations

import logging
import os
import threading

import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka import TopicPartition as CTP
from confluent_kafka.admin import AdminClient
from streamcheck import PARTITIONS
from support import STEP
from test_daemon_kafka import committed_total, observations, produce, read_topic, wait_for

from streammeta.config import Config
from streammeta.io.confluent_group import GroupFacts
from streammeta.io.streams import TopicPartition
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import CheckpointStore
from streammeta.serve.service import Service

pytestmark = pytest.mark.integration
ENTITIES = 40
SEEN, DELETED, RETAINED = range(10), range(10, 25), range(25, 40)


def delete_records(config: Config, below: dict[int, int]) -> str:
    """Delete each input partition's records below an offset; → why not, or ''."""
    admin = AdminClient({"bootstrap.servers": config.kafka.bootstrap_servers})
    topic = config.kafka.input_topic
    try:
        futures = admin.delete_records([CTP(topic, p, o) for p, o in below.items()],
                                       request_timeout=10)
        for future in futures.values():
            future.result(15)
    except KafkaException as exc:
        return str(exc.args[0])
    return ""


class Retention:
    """Deletes each input partition's records below an offset: on the broker where it
    can (DeleteRecords), else by giving the daemon's consumer those earliest offsets."""

    def __init__(self, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
        self.config = config
        self.refused = delete_records(config, {0: 0})  # deletes nothing: supported?
        self.given: dict[int, int] = {}
        if self.refused:
            embedded = os.environ.get("STREAMMETA_TEST_BROKER", "embedded") == "embedded"
            assert embedded, f"the broker does not delete records: {self.refused}"

            def earliest(_source: object, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
                return {tp: self.given.get(tp[1], 0) for tp in tps}
            monkeypatch.setattr(GroupFacts, "earliest", earliest)

    def delete_below(self, offsets: dict[int, int]) -> None:
        if self.refused:
            self.given.update(offsets)
        else:
            assert delete_records(self.config, offsets) == ""


def run_until_committed(config: Config, total: int) -> Service:
    service = Service(config)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        wait_for(lambda: committed_total(config) >= total, timeout_s=120,
                 what=f"{total} records committed")
    finally:
        service.stop()
        thread.join(60)
    assert not thread.is_alive()
    return service


@pytest.mark.parametrize("expired", ["keep", "cold"])
def test_a_checkpoint_below_the_log_start_continues_from_the_earliest_retained_record(
    kafka_config: Config, expired: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = kafka_config.replace("checkpoint", expired=expired).replace("meta", enabled=False)
    assert config.kafka.client == "confluent"  # the stand-in answers for this client
    produce(config, observations(ENTITIES, SEEN))
    retention = Retention(config, monkeypatch)
    run_until_committed(config, ENTITIES * len(SEEN))
    store = CheckpointStore(config.checkpoint.dir, member="probe",
                            options=config.checkpoint.options())
    checkpointed: dict[int, int] = {}
    for p in range(PARTITIONS):
        found = store.latest_for(p)
        assert found is not None, f"no checkpoint of partition {p}"
        checkpointed[p] = found[1]["partitions"][p]["offset"]
    # Each step puts one record of each of a partition's entities in that partition.
    per_step = {p: o // len(SEEN) for p, o in checkpointed.items() if o}
    assert sum(per_step.values()) == ENTITIES
    produce(config, observations(ENTITIES, range(SEEN.stop, RETAINED.stop)))
    earliest = {p: n * RETAINED.start for p, n in per_step.items()}
    retention.delete_below(earliest)

    with caplog.at_level(logging.WARNING, logger="streammeta.serve.daemon"):
        service = run_until_committed(config, ENTITIES * RETAINED.stop)
    expired_total = service.metrics.registry.get_sample_value(
        "streammeta_checkpoint_expired_total")
    assert expired_total == len(per_step)
    for p, first in earliest.items():
        assert (f"partition {p}: checkpoint offset {checkpointed[p]} is below the earliest "
                f"retained offset {first}") in caplog.text

    # Every retained observation has its forecast once; the deleted ones none.
    forecasts = read_topic(config, config.kafka.forecast_topic,
                           ENTITIES * (len(SEEN) + len(RETAINED)))
    origins = sorted((r.key.decode(), orjson.loads(r.value)["origin"]) for r in forecasts)
    assert origins == sorted((f"e{e}", t * STEP) for e in range(ENTITIES)
                             for t in (*SEEN, *RETAINED))
    # Kept state holds the seen steps, the gap (interpolated: under series.max_gap_fill)
    # and the retained steps; dropped state only the retained ones.
    restored = Engine(config)
    for p in per_step:
        found = store.latest_for(p)
        assert found is not None
        restored.restore_partition(p, found[1]["partitions"][p])
    counts = {int(restored.arena.count[slot]) for slot in restored.arena.index.values()}
    assert len(restored.arena) == ENTITIES
    assert counts == ({RETAINED.stop} if expired == "keep" else {len(RETAINED)})
    print("\nrecords deleted by the broker" if not retention.refused else
          f"\nthe broker does not delete records ({retention.refused}): retention stood in "
          "for by the earliest offsets given to the consumer")


def test_a_checkpoint_beyond_the_partitions_end_continues_from_its_earliest_record(
    each_client: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """The input topic deleted and recreated (its offsets begin again at 0) under a
    checkpoint that read each partition up to offset 1000. Kafka answers a fetch there
    with OFFSET_OUT_OF_RANGE and the client resets; the embedded broker answers empty
    fetches, and the daemon waited at 1000, never reading the records below it (before:
    not one forecast). Now each partition moves to its earliest record, logged and
    counted once, and every observation is forecast."""
    config = each_client.replace("meta", enabled=False)
    empty = Engine(config)
    CheckpointStore(config.checkpoint.dir, member="before",
                    options=config.checkpoint.options()).save(
        {"partitions": {p: {"offset": 1000, **empty.export_partition(p)}
                        for p in range(PARTITIONS)}})
    sent = observations(ENTITIES, range(5))
    produce(config, sent)
    service = Service(config)
    thread = threading.Thread(target=service.run)
    with caplog.at_level(logging.WARNING, logger="streammeta.serve.daemon"):
        thread.start()
        try:
            wait_for(lambda: len(read_topic(config, config.kafka.forecast_topic, len(sent),
                                            1)) >= len(sent), timeout_s=40, what="forecasts")
        finally:
            service.stop()
            thread.join(60)
    forecasts = read_topic(config, config.kafka.forecast_topic, len(sent))
    assert sorted((r.key, orjson.loads(r.value)["origin"]) for r in forecasts) == sorted(
        (f"e{e}".encode(), t * STEP) for e in range(ENTITIES) for t in range(5))
    assert caplog.text.count("checkpoint offset 1000 is beyond the partition's end") \
        == PARTITIONS
    assert service.metrics.registry.get_sample_value(
        "streammeta_checkpoint_expired_total") == PARTITIONS
