"""Every codec both ways, with each client: observations compressed by an
independent producer (confluent-kafka's own, not the daemon's edge) are all read, and
forecasts compressed with the same codec are all readable by librdkafka."""

from __future__ import annotations

import threading

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from test_daemon_kafka import observations, wait_for

from streammeta.config import Config
from streammeta.serve.service import Service

pytestmark = pytest.mark.integration
CODECS = ("gzip", "snappy", "lz4", "zstd")


def produce_compressed(config: Config, codec: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "compression.type": codec, "linger.ms": 20, "acks": "all"})
    for key, value in messages:
        producer.produce(config.kafka.input_topic, value, key)
    assert producer.flush(30) == 0


def read_with_librdkafka(config: Config, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": "reader", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[tuple[bytes, bytes]] = []
    at_end: set[int] = set()
    try:
        wait_for(lambda: _drain(consumer, out, at_end) and len(at_end) == len(partitions)
                 and len(out) >= expected, timeout_s=60, what=f"{expected} {topic} records")
    finally:
        consumer.close()
    return out


def _drain(consumer: Consumer, out: list[tuple[bytes, bytes]], at_end: set[int]) -> bool:
    for message in consumer.consume(1000, timeout=0.2):
        error = message.error()
        if error is not None:
            assert error.code() == error._PARTITION_EOF, error  # a decode error fails here
            at_end.add(message.partition())
        else:
            out.append((message.key(), message.value()))
    return True


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_observations_in_compressed_forecasts_out(each_client: Config,
                                                             codec: str) -> None:
    config = each_client.replace("kafka", compression_type=codec).replace(
        "meta", enabled=False).replace("checkpoint", dir="")
    good = observations(entities=10, steps=range(30))
    produce_compressed(config, codec, [(k, v) for k, v in good if k is not None])
    service = Service(config)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        wait_for(lambda: service.daemon.observations >= len(good), what=f"{codec} input")
        forecasts = read_with_librdkafka(config, config.kafka.forecast_topic, len(good))
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert service.daemon.dead_letters == 0
    origins = {(key, orjson.loads(value)["origin"]) for key, value in forecasts}
    assert len(forecasts) == len(origins) == len(good)


def test_an_oversize_record_that_arrived_compressed_does_not_stall_its_partition(
        kafka_config: Config) -> None:
    """2 MB of padding is a few KB of zstd, so the broker takes it; its dead letter
    carried it back whole and uncompressed, which the producer refuses
    (MSG_SIZE_TOO_LARGE): the batch was re-sent for ever and nothing after the record
    was forecast or committed; so with a key that long. The dead letter now carries
    the first series.max_record_bytes of each and its size."""
    config = kafka_config.replace("meta", enabled=False).replace("checkpoint", dir="")
    big = b'{"entity": "e0", "ts": 0, "value": 1, "pad": "' + b"p" * 2_000_000 + b'"}'
    good = observations(entities=1, steps=range(1, 20))  # e0, on big's partition
    producer = Producer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "compression.type": "zstd", "message.max.bytes": 4_000_000})
    long_key = b"k" * 2_000_000  # a key_mismatch, as large
    for key, value in [(b"e0", big), (long_key, good[0][1]), *good]:
        producer.produce(config.kafka.input_topic, value, key, partition=0)  # one partition
    assert producer.flush(30) == 0
    service = Service(config)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        wait_for(lambda: service.daemon.observations >= len(good), timeout_s=30,
                 what="the records after the oversize one")
        letters = read_with_librdkafka(config, config.kafka.dead_letter_topic, 2)
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    limit = config.series.max_record_bytes
    assert sorted(letters) == [(b"e0", big[:limit]), (long_key[:limit], good[0][1])]
