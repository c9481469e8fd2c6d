"""Hostile input against a running daemon on a real broker: 50,000 records of
arbitrary bytes, broken and adversarial JSON, tombstones, oversize values, late and
duplicate observations, mixed with valid ones. The daemon must not crash or hang,
and every record must be accounted for: a forecast or a dead letter, never both,
never neither."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer
from support import STEP
from test_daemon_kafka import committed_total, read_to_end, start_daemon, wait_for

from streammeta.config import Config

pytestmark = pytest.mark.integration
RECORDS = int(os.environ.get("STREAMMETA_FUZZ_RECORDS", "50000"))  # each kind thousands of times
POOL = 300  # entities that also receive valid observations


class Hostile:
    """A seeded stream of records; remembers the valid observations it wrote."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.steps = [0] * POOL
        self.valid: set[tuple[bytes, int]] = set()
        self.kinds = [self.valid_observation] * 3 + [
            self.random_bytes, self.mutated_json, self.adversarial_json, self.stale]

    def record(self) -> tuple[bytes | None, bytes | None]:
        return self.rng.choice(self.kinds)()

    def valid_observation(self) -> tuple[bytes | None, bytes | None]:
        e = self.rng.randrange(POOL)
        self.steps[e] += 1
        entity, ts = f"v{e}", self.steps[e] * STEP
        self.valid.add((entity.encode(), ts))
        return entity.encode(), orjson.dumps({"entity": entity, "ts": ts,
                                              "value": self.rng.gauss(10, 3)})

    def random_bytes(self) -> tuple[bytes | None, bytes | None]:
        key = None if self.rng.random() < 0.5 else self.rng.randbytes(self.rng.randrange(40))
        return key, self.rng.randbytes(self.rng.randrange(300))

    def mutated_json(self) -> tuple[bytes | None, bytes | None]:
        entity = f"h{self.rng.randrange(1000)}"
        raw = bytearray(orjson.dumps({"entity": entity, "ts": self.rng.randrange(1000) * STEP,
                                      "value": self.rng.random()}))
        for _ in range(self.rng.randrange(1, 4)):
            position = self.rng.randrange(len(raw))
            action = self.rng.randrange(3)
            if action == 0:
                raw[position] = self.rng.randrange(256)
            elif action == 1:
                del raw[position:]
                if not raw:
                    break
            else:
                raw.insert(position, self.rng.randrange(256))
        return entity.encode(), bytes(raw)

    def adversarial_json(self) -> tuple[bytes | None, bytes | None]:
        entity = f"h{self.rng.randrange(1000)}"
        choices: list[bytes | None] = [
            b"[" * 5000 + b"]" * 5000,  # deeper than any parser's limit
            b'{"entity": "%s", "ts": 0, "value": 1e999}' % entity.encode(),
            b'{"entity": "%s", "ts": 0, "value": -Infinity}' % entity.encode(),
            b'{"entity": "%s", "ts": 0, "value": 123456789012345678901234567890}'
            % entity.encode(),
            b'{"entity": "%s", "ts": 1e300, "value": 1}' % entity.encode(),
            b'{"entity": "%s", "ts": -9223372036854775809, "value": 1}' % entity.encode(),
            b'{"entity": "%s", "ts": "2026-13-45T99:00:00", "value": 1}' % entity.encode(),
            b'{"entity": "%s", "ts": 0, "value": true}' % entity.encode(),
            b'{"entity": "%s", "ts": 0, "value": [1, 2]}' % entity.encode(),
            b'{"entity": "\\ud800", "ts": 0, "value": 1}',
            b'{"entity": "a\\u0000b", "ts": 0, "value": 1}',
            b'{"entity": 7, "ts": 0, "value": 1}',
            b'{"entity": null, "ts": 0, "value": 1}',
            b'{"entity": "%s", "entity": "other", "ts": 0, "value": 1}' % entity.encode(),
            json.dumps({"entity": entity, "ts": 0, "value": 1,
                        "pad": "x" * self.rng.randrange(4000, 20000)}).encode(),
            b"\xef\xbb\xbf" + b'{"entity": "%s", "ts": 0, "value": 1}' % entity.encode(),
            b"{}", b"null", b"", None,  # None: a tombstone
        ]
        return entity.encode(), self.rng.choice(choices)

    def stale(self) -> tuple[bytes | None, bytes | None]:
        """An observation a pool entity already had (duplicate) or is past (late)."""
        e = self.rng.randrange(POOL)
        if self.steps[e] == 0:
            return self.random_bytes()
        entity = f"v{e}"
        ts = self.rng.randrange(1, self.steps[e] + 1) * STEP
        return entity.encode(), orjson.dumps({"entity": entity, "ts": ts, "value": 1.0})


def test_a_running_daemon_accounts_for_every_hostile_record(kafka_config: Config,
                                                           tmp_path: Path) -> None:
    config = kafka_config.replace("meta", enabled=False)
    hostile = Hostile(seed=2026)
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all",
                             linger_ms=5, max_request_size=1 << 20)
    try:
        for _ in range(RECORDS):
            key, value = hostile.record()
            producer.send(config.kafka.input_topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()
    daemon = start_daemon(config, tmp_path / "config.toml")
    try:
        wait_for(lambda: committed_total(config) >= RECORDS, timeout_s=300,
                 what="every hostile record committed")
        assert daemon.poll() is None, "the daemon exited"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        daemon.kill()
        daemon.wait(30)

    forecasts = read_to_end(config, config.kafka.forecast_topic)
    letters = read_to_end(config, config.kafka.dead_letter_topic)
    forecast_ids = {(r.key, orjson.loads(r.value)["origin"]) for r in forecasts}
    sources = set()
    reasons: dict[str, int] = {}
    for letter in letters:
        headers = {k: v for k, v in letter.headers}
        sources.add((int(headers["streammeta.source.partition"]),
                     int(headers["streammeta.source.offset"])))
        reason = headers["streammeta.reason"].decode()
        reasons[reason] = reasons.get(reason, 0) + 1
    assert len(forecast_ids) == len(forecasts)  # no observation forecast twice
    assert len(sources) == len(letters)  # no record dead-lettered twice
    assert len(forecasts) + len(letters) == RECORDS  # each record exactly once
    assert hostile.valid <= forecast_ids  # every valid observation was served
    print(f"\n{RECORDS} records: {len(forecasts)} forecasts ({len(hostile.valid)} from the "
          f"valid pool), {len(letters)} dead letters by reason {dict(sorted(reasons.items()))}")
