"""The daemon against a real broker: observations in, forecasts and dead letters out."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import jsonschema
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from support import STEP

from streammeta import config as config_mod
from streammeta import contracts
from streammeta.config import Config
from streammeta.io.codec import encode_observation
from streammeta.serve.service import Service

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def produce(config: Config, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all")
    for key, value in messages:
        producer.send(config.kafka.input_topic, key=key, value=value)
    producer.flush()
    producer.close()


def observations(entities: int, steps: range) -> list[tuple[bytes | None, bytes]]:
    return [encode_observation(f"e{e}", t * STEP, 10.0 + e + (t % 24))
            for t in steps for e in range(entities)]


def _from_the_beginning(config: Config, topic: str) -> tuple[KafkaConsumer, list]:
    """A consumer outside any group, at the start of every partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers,
                             enable_auto_commit=False, receive_message_max_bytes=256 << 20)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer, partitions


def read_topic(config: Config, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    """Every record of ``topic`` once at least ``expected`` are there."""
    consumer, _ = _from_the_beginning(config, topic)
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    for batch in consumer.poll(timeout_ms=500).values():  # anything beyond expected
        records.extend(batch)
    consumer.close()
    return records


def read_to_end(config: Config, topic: str, timeout_s: float = 60.0) -> list:
    """Every record of ``topic``, which nothing writes to any more: read until each
    partition's high watermark (known once a fetch answered; the embedded broker's
    end offsets are wrong, ../shared/KAFKA.md), not for a fixed while."""
    consumer, partitions = _from_the_beginning(config, topic)
    records: list = []
    pending = set(partitions)
    deadline = time.monotonic() + timeout_s
    try:
        while pending:
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None and consumer.position(tp) >= high:
                    pending.discard(tp)
    finally:
        consumer.close()
    return records


BAD: list[tuple[bytes | None, bytes | None, str]] = [
    (b"t", None, "missing_field"),  # a tombstone: dead-lettered with its null value
    (None, b"not json", "not_json"),
    (None, b"[1, 2, 3]", "not_object"),
    (b"x", b'{"entity": "x", "ts": 0}', "missing_field"),
    (b"x", b'{"entity": "x", "ts": 0, "value": "7"}', "wrong_type"),
    (b"x", b'{"entity": "x", "ts": 0, "value": NaN}', "non_finite"),
    (b"x", b'{"entity": "x", "ts": 0, "value": 1, "pad": "' + b"p" * 5000 + b'"}', "oversize"),
    (None, b'{"entity": "", "ts": 0, "value": 1}', "entity_empty"),
    (None, b'{"entity": "' + b"y" * 300 + b'", "ts": 0, "value": 1}', "entity_too_long"),
    (b"other", b'{"entity": "x", "ts": 0, "value": 1}', "key_mismatch"),
    (b"x", b'{"entity": "x", "ts": "noon", "value": 1}', "bad_timestamp"),
    (b"e0", b'{"entity": "e0", "ts": 216000005, "value": 1}', "misaligned_timestamp"),
]


def test_observations_in_forecasts_and_dead_letters_out(each_client: Config) -> None:
    kafka_config = each_client
    service = Service(kafka_config)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        good = observations(entities=20, steps=range(60))
        bad = [(k, v) for k, v, _ in BAD] * 200  # 2,400 hostile records among 1,200 good
        late = [encode_observation("e1", 3 * STEP, 1.0), encode_observation("e2", 59 * STEP, 1.0)]
        produce(kafka_config, good)
        produce(kafka_config, bad + late)
        total = len(good) + len(bad) + len(late)
        daemon = service.daemon
        wait_for(lambda: daemon.observations + daemon.dead_letters >= total, what="processing")

        forecasts = read_topic(kafka_config, kafka_config.kafka.forecast_topic, len(good))
        assert len(forecasts) == len(good)
        origins: dict[str, set[int]] = {}
        for record in forecasts:
            body = orjson.loads(record.value)
            assert record.key == body["entity"].encode()
            assert body["ts"] == [body["origin"] + h * STEP for h in range(1, 49)]
            assert len(body["point"]) == 48 and set(body["quantiles"]) == {"0.1", "0.5", "0.9"}
            origins.setdefault(body["entity"], set()).add(body["origin"])
        assert origins == {f"e{e}": {t * STEP for t in range(60)} for e in range(20)}

        letters = read_topic(kafka_config, kafka_config.kafka.dead_letter_topic,
                             len(bad) + len(late))
        assert len(letters) == len(bad) + len(late)
        limit = kafka_config.series.max_record_bytes  # an oversize value comes back cut to it
        expected = {v if v is None else v[:limit]: reason for _, v, reason in BAD}
        expected[late[0][1]], expected[late[1][1]] = "late", "duplicate"
        for record in letters:
            headers = dict(record.headers)
            assert headers["streammeta.reason"].decode() == expected[record.value]
            assert headers["streammeta.source.topic"].decode() == kafka_config.kafka.input_topic
            assert int(headers["streammeta.source.offset"]) >= 0
        tombstones = [r for r in letters if r.key == b"t"]
        assert len(tombstones) == 200 and all(r.value is None for r in tombstones)  # not b""

        assert service.server is not None
        with urllib.request.urlopen(service.server.url + "/metrics") as response:
            text = response.read().decode()
        assert f"streammeta_forecasts_published_total {float(len(good))}" in text
        assert f"streammeta_records_consumed_total {float(total)}" in text
        assert 'streammeta_dead_letters_total{reason="not_json"} 200.0' in text
        assert 'streammeta_dead_letters_total{reason="missing_field"} 400.0' in text
        assert 'streammeta_dead_letters_total{reason="late"} 1.0' in text
        with urllib.request.urlopen(service.server.url + "/readyz") as response:
            assert response.status == 200
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_dead_letters_carry_the_original_headers(each_client: Config) -> None:
    """A dead letter carried the original key and value but none of the record's
    headers (a trace id, the producer's own): they come back, first, then the
    contract's; an original header of a contract name is left out, and headers beyond
    series.max_record_bytes are counted in streammeta.headers.truncated."""
    config = each_client
    service = Service(config)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all")
        topic = config.kafka.input_topic
        producer.send(topic, value=b"not json", headers=[
            ("trace-id", b"t-1"), ("streammeta.reason", b"spoofed"), ("empty", b"")])
        producer.send(topic, value=b"too big", headers=[("big", b"b" * 5000), ("after", b"x")])
        for key, value in observations(entities=1, steps=range(3)):
            producer.send(topic, key=key, value=value)
        key, late = encode_observation("e0", 0, 1.0)  # the engine's dead letter
        producer.send(topic, key=key, value=late, headers=[("trace-id", b"t-2")])
        producer.flush()
        producer.close()
        wait_for(lambda: service.daemon.dead_letters >= 3, what="dead letters")
        letters = {r.value: r.headers for r in read_topic(
            config, config.kafka.dead_letter_topic, 3)}
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert set(letters) == {b"not json", b"too big", late}
    names = [name for name, _ in letters[b"not json"]]
    assert letters[b"not json"][:2] == [("trace-id", b"t-1"), ("empty", b"")]
    assert names[2:] == list(contracts.DEAD_LETTER_HEADERS)  # each once: the contract's
    assert dict(letters[b"not json"])["streammeta.reason"] == b"not_json"
    assert letters[late][0] == ("trace-id", b"t-2")
    assert dict(letters[late])["streammeta.reason"] == b"late"
    big = dict(letters[b"too big"])
    assert "big" not in big and "after" not in big  # 5,009 bytes, over 4,096
    assert big["streammeta.headers.truncated"] == b"5009"
    check = jsonschema.Draft202012Validator(contracts.load_schema("dead-letter-headers"))
    for headers in letters.values():
        check.validate(contracts.header_map(headers))


def committed_total(config: Config) -> int:
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers,
                             group_id=config.kafka.group_id, enable_auto_commit=False)
    topic = config.kafka.input_topic
    total = sum(consumer.committed(TopicPartition(topic, p)) or 0
                for p in consumer.partitions_for_topic(topic))
    consumer.close()
    return total


def start_daemon(config: Config, path: Path) -> subprocess.Popen[bytes]:
    path.write_text(config_mod.to_toml(config, mask_secrets=False))
    with open(path.with_suffix(".log"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streammeta", "run", "--config", str(path)],
            stdout=log, stderr=subprocess.STDOUT)


def test_sigterm_commits_and_a_restart_continues_from_committed_offsets(
    each_client: Config, tmp_path: Path
) -> None:
    kafka_config = each_client
    if kafka_config.kafka.client != config_mod.load(None, env={}).kafka.client:
        # The default client stops with its outer loop running (it must still exit in
        # time); the other client's commits and restart do not depend on it, and the
        # outer loop's start and stop cost it seconds.
        kafka_config = kafka_config.replace("meta", enabled=False)
    first = observations(entities=20, steps=range(50))
    produce(kafka_config, first)
    topic = kafka_config.kafka.forecast_topic
    daemon = start_daemon(kafka_config, tmp_path / "config.toml")
    try:
        wait_for(lambda: len(read_topic(kafka_config, topic, len(first), 1)) >= len(first),
                 what="first forecasts")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=kafka_config.kafka.shutdown_timeout_s + 10) == 0
    finally:
        daemon.kill()
    assert committed_total(kafka_config) == len(first)

    second = observations(entities=20, steps=range(50, 90))
    produce(kafka_config, second)
    daemon = start_daemon(kafka_config, tmp_path / "config.toml")
    try:
        total = len(first) + len(second)
        wait_for(lambda: len(read_topic(kafka_config, topic, total, 1)) >= total,
                 what="all forecasts")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=kafka_config.kafka.shutdown_timeout_s + 10) == 0
    finally:
        daemon.kill()
    forecasts = read_topic(kafka_config, topic, total)
    keys = {(r.key, orjson.loads(r.value)["origin"]) for r in forecasts}
    assert len(forecasts) == total == len(keys)  # nothing replayed, nothing missing
    assert committed_total(kafka_config) == total
    # The restart restored the checkpoint: e0 has 90 values (warm from 72), not 40.
    last = [orjson.loads(r.value) for r in forecasts if r.key == b"e0"]
    assert max(last, key=lambda b: b["origin"])["warm"] is True
