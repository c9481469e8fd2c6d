"""The broker frozen mid-stream (SIGSTOP on the embedded broker, for 30 s): the
daemon stays up and alive, ``/readyz`` reports not ready, the error metrics rise,
and once the broker answers again it resumes by itself with nothing lost and
nothing applied twice."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import config_for
from streamcheck import (
    assert_every_observation_forecast,
    assert_state_equals_an_uninterrupted_run,
    encode_steps,
    random_walks,
)
from test_daemon_kafka import committed_total, produce, start_daemon, wait_for

from streammeta.errors import BrokerError
from streammeta.io.broker import EmbeddedBroker, free_port
from streammeta.io.codec import Record
from streammeta.io.kafka import KafkaSource

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("STREAMMETA_TEST_BROKER", "embedded") != "embedded",
                       reason="freezes the embedded broker's process"),
]
FREEZE_S = float(os.environ.get("STREAMMETA_FREEZE_S", "30"))
ENTITIES = 200
STEPS = 90
_ERRORS = re.compile(r'^streammeta_kafka_errors_total\{operation="(\w+)"\} (\S+)$', re.M)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def kafka_errors(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {op: float(n) for op, n in _ERRORS.findall(text)}


def observations_done(base: str) -> float:
    """Observations whose forecasts were acknowledged and offsets committed."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^streammeta_observations_processed_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_frozen_broker_is_survived_and_nothing_is_lost(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        port = free_port()
        config = config_for(broker.bootstrap, f"{tmp_path}/checkpoints").replace(
            "meta", enabled=False,  # outer-loop timing would make versions differ
        ).replace("metrics", port=port).replace("kafka", max_poll_records=500)
        base = f"http://127.0.0.1:{port}"
        values = random_walks(STEPS, ENTITIES, seed=3)
        produce(config, encode_steps(values, range(30)))
        daemon = start_daemon(config, tmp_path / "config.toml")
        try:
            wait_for(lambda: committed_total(config) >= 30 * ENTITIES, timeout_s=120,
                     what="the first third committed")
            assert http_status(f"{base}/readyz") == 200
            before = kafka_errors(base)
            produce(config, encode_steps(values, range(30, 60)))  # in flight at the freeze
            broker.freeze()
            frozen_at = time.monotonic()
            try:
                wait_for(lambda: http_status(f"{base}/readyz") == 503, timeout_s=FREEZE_S,
                         what="/readyz reporting not ready while the broker is frozen")
                not_ready_after = time.monotonic() - frozen_at
                time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
                assert daemon.poll() is None, "the daemon exited while the broker was frozen"
                assert http_status(f"{base}/healthz") == 200  # waiting on Kafka is not a stall
                during = kafka_errors(base)
                done = observations_done(base)
            finally:
                broker.thaw()
            thawed_at = time.monotonic()
            wait_for(lambda: http_status(f"{base}/readyz") == 200, timeout_s=120,
                     what="ready again after the thaw")
            ready_after = time.monotonic() - thawed_at
            produce(config, encode_steps(values, range(60, STEPS)))
            wait_for(lambda: committed_total(config) >= STEPS * ENTITIES, timeout_s=180,
                     what="every record committed")
            caught_up = time.monotonic() - thawed_at
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        finally:
            daemon.kill()
            daemon.wait(30)
        rising = {op: during[op] - before.get(op, 0.0) for op in during
                  if during[op] > before.get(op, 0.0)}
        if done < 60 * ENTITIES:  # output waited on the frozen broker: its failure is counted
            assert rising, f"no Kafka error counted during the freeze: {during}"
        duplicates = assert_every_observation_forecast(config, values)
        assert_state_equals_an_uninterrupted_run(config, values)
    print(f"\nbroker frozen {FREEZE_S:.0f} s: not ready after {not_ready_after:.1f} s; errors "
          f"counted {rising}; ready again {ready_after:.1f} s after the thaw; every record "
          f"committed {caught_up:.1f} s after it; duplicate forecasts {duplicates}")


def test_a_commit_to_a_frozen_broker_fails_instead_of_blocking(tmp_path: Path) -> None:
    """kafka-python retries a synchronous commit until it succeeds; to a frozen broker
    that is forever, and the loop would stop beating /healthz. The source gives up
    after a session timeout and says so (the daemon counts it and commits later)."""
    with EmbeddedBroker() as broker:
        config = config_for(broker.bootstrap, f"{tmp_path}/checkpoints")
        produce(config, encode_steps(random_walks(1, 20, seed=5), range(1)))
        source = KafkaSource(config.kafka)
        try:
            records: list[Record] = []
            wait_for(lambda: bool(records.extend(source.poll(0.5)) or len(records) >= 20),
                     timeout_s=60, what="the records polled")
            offsets = {(r.topic, r.partition): r.offset + 1 for r in records}
            source.commit(offsets)  # the broker answers: committed
            outcome: list[BaseException | None] = []

            def commit() -> None:
                try:
                    source.commit(offsets)
                    outcome.append(None)
                except BrokerError as exc:
                    outcome.append(exc)

            broker.freeze()
            try:
                committer = threading.Thread(target=commit, daemon=True)
                committer.start()
                committer.join(timeout=120)  # a bound on hanging, far above the 6 s timeout
                assert not committer.is_alive(), "the commit still blocks on the frozen broker"
            finally:
                broker.thaw()
            assert len(outcome) == 1 and isinstance(outcome[0], BrokerError), outcome
        finally:
            source.close()
