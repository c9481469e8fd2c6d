"""An entity's records on one partition, whoever writes them.

The key decides an observation's partition, and so which replica holds the entity's
state (README, contracts) - but only while every producer hashes keys alike.
``streammeta replay`` with the default client (librdkafka) hashed them with CRC32,
where the Java client, kafka-python (the README's producer) and Kafka Streams use
murmur2: a history replayed with streammeta and continued by the README's producer
put each entity on two partitions, and a daemon catching up with that backlog took
records of one partition after newer ones of the other and dead-lettered them as
``late`` (550 of 2,000 in one run). Forecasts, keyed alike, were not co-partitioned
with their observations either.
"""

from __future__ import annotations

import threading

import orjson
import pytest
from test_codecs import read_with_librdkafka
from test_daemon_kafka import observations, produce, wait_for

from streammeta.config import Config
from streammeta.io.edge import make_writer
from streammeta.serve.service import Service

pytestmark = pytest.mark.integration
ENTITIES = 20


def partitions_of(config: Config, topic: str, expected: int) -> dict[bytes, set[int]]:
    """Key → the partitions its records of ``topic`` are on."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": "partitions", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    found: dict[bytes, set[int]] = {}
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    at_end: set[int] = set()
    seen = [0]

    def drain() -> bool:
        for message in consumer.consume(1000, timeout=0.2):
            if message.error() is not None:
                at_end.add(message.partition())
                continue
            found.setdefault(message.key(), set()).add(message.partition())
            seen[0] += 1
        return len(at_end) == len(partitions) and seen[0] >= expected

    try:
        wait_for(drain, timeout_s=60, what=f"{expected} {topic} records")
    finally:
        consumer.close()
    return found


def test_a_replayed_history_and_the_readmes_producer_keep_an_entity_on_one_partition(
        each_client: Config) -> None:
    config = each_client.replace("meta", enabled=False).replace("checkpoint", dir="").replace(
        "kafka", max_poll_records=50)  # small batches: a backlog's partitions interleave
    history = observations(entities=ENTITIES, steps=range(30))
    writer = make_writer(config.kafka)  # what `streammeta replay` writes with
    for key, value in history:
        assert key is not None
        writer.send(key, value)
    writer.flush()
    writer.close()
    live = observations(entities=ENTITIES, steps=range(30, 60))
    produce(config, live)  # kafka-python, the Java client's partitioner
    total = len(history) + len(live)
    placed = partitions_of(config, config.kafka.input_topic, total)
    split = {key: parts for key, parts in placed.items() if len(parts) > 1}
    assert not split, f"entities on two input partitions: {split}"

    service = Service(config)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        wait_for(lambda: service.daemon.observations + service.daemon.dead_letters >= total,
                 what="the backlog")
        forecasts = read_with_librdkafka(config, config.kafka.forecast_topic, total)
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert service.daemon.dead_letters == 0
    assert len({(k, orjson.loads(v)["origin"]) for k, v in forecasts}) == total
    # A forecast goes to its observations' partition (topics of as many partitions):
    # co-partitioned, as a Kafka Streams join of the two topics needs.
    out = partitions_of(config, config.kafka.forecast_topic, total)
    assert out == placed
