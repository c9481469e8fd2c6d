"""No silent stall, and a bounded, quiet shutdown: an error retrying cannot clear
fails /readyz, then stops the daemon with a clear message and a non-zero exit;
SIGTERM ends the process within kafka.shutdown_timeout_s in every state."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import config_for
from test_codecs import produce_compressed
from test_daemon_kafka import observations, produce, wait_for
from test_outage import http_status

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.errors import BrokerError
from streammeta.io.broker import EmbeddedBroker, free_port
from streammeta.io.edge import ensure_topics
from streammeta.serve.service import Service

pytestmark = pytest.mark.integration
embedded_only = pytest.mark.skipif(
    os.environ.get("STREAMMETA_TEST_BROKER", "embedded") != "embedded",
    reason="freezes the embedded broker's process")

# The daemon as `streammeta run`, in a process that cannot import the lz4 library.
WITHOUT_LZ4 = ("import sys; sys.modules['lz4'] = sys.modules['lz4.frame'] = None; "
               "from streammeta.cli import main; sys.exit(main(sys.argv[1:]))")


def run_daemon(config: Config, path: Path, code: str | None = None) -> subprocess.Popen[bytes]:
    path.write_text(config_mod.to_toml(config, mask_secrets=False))
    argv = ["-c", code] if code else ["-m", "streammeta"]
    return subprocess.Popen([sys.executable, *argv, "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_input_in_a_codec_this_process_cannot_read_stops_the_daemon(
        kafka_config: Config, tmp_path: Path) -> None:
    port = free_port()
    # kafka-python: librdkafka has every codec built in, there is none to take away.
    config = kafka_config.replace("kafka", client="kafka-python", fatal_after_s=8.0,
                                  enable_idempotence="auto").replace("metrics", port=port)
    produce_compressed(config, "lz4", observations(entities=5, steps=range(4)))
    daemon = run_daemon(config, tmp_path / "config.toml", WITHOUT_LZ4)
    try:
        readyz = f"http://127.0.0.1:{port}/readyz"
        statuses: list[int] = []

        def exited_after_probing() -> bool:
            if daemon.poll() is not None:
                return True
            with contextlib.suppress(OSError):  # not listening yet
                statuses.append(http_status(readyz))
            return False

        wait_for(exited_after_probing, timeout_s=60, what="the daemon to stop by itself")
        out = daemon.communicate(timeout=10)[0].decode()
    finally:
        daemon.kill()
    assert daemon.returncode == 2, out
    assert statuses and set(statuses) == {503}, statuses  # never ready meanwhile
    assert "streammeta: error: poll failed at" in out and "lz4" in out, out
    assert out.count("Libraries for lz4 compression codec not found") == 2, out  # once + exit
    assert "Traceback" not in out and "Exception ignored" not in out, out


def test_a_missing_input_topic_fails_readiness_then_stops_the_daemon(
        kafka_config: Config) -> None:
    config = kafka_config.replace("kafka", input_topic="deleted-or-never-created",
                                  fatal_after_s=6.0)
    service = Service(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BrokerError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    ready: list[bool] = []
    while thread.is_alive() and time.monotonic() - started < 60:
        ready.append(service.health.ready()[0])
        time.sleep(0.2)
    thread.join(1)
    service.stop()
    assert not thread.is_alive()
    assert not any(ready)
    assert len(errors) == 1 and "'deleted-or-never-created' does not exist" in str(errors[0])


@embedded_only
def test_sigterm_with_the_broker_frozen_exits_within_the_bound(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        port = free_port()
        config = config_for(broker.bootstrap, f"{tmp_path}/checkpoints").replace(
            "kafka", shutdown_timeout_s=5.0).replace("metrics", port=port)
        produce(config, observations(entities=50, steps=range(20)))
        daemon = run_daemon(config, tmp_path / "config.toml")
        try:
            def ready() -> bool:  # joined and serving
                with contextlib.suppress(OSError):  # not listening yet
                    return http_status(f"http://127.0.0.1:{port}/readyz") == 200
                return False
            wait_for(ready, timeout_s=60, what="the daemon serving")
            produce(config, observations(entities=50, steps=range(20, 40)))  # in flight
            broker.freeze()
            try:
                time.sleep(2)
                signalled = time.monotonic()
                daemon.send_signal(signal.SIGTERM)
                out = daemon.communicate(timeout=30)[0].decode()
                took = time.monotonic() - signalled
            finally:
                broker.thaw()
        finally:
            daemon.kill()
    assert took <= config.kafka.shutdown_timeout_s + 5, (took, out)
    assert "Traceback" not in out and "Exception ignored" not in out, out
    print(f"\nSIGTERM with the broker frozen: exited {daemon.returncode} after {took:.1f} s")


@embedded_only
def test_the_idempotent_producer_recovers_from_a_broker_restart(tmp_path: Path) -> None:
    """Tansu forgets producer ids when it restarts: librdkafka's idempotent producer then
    waits on its sequence forever, without an error. The sink replaces it after a
    flush that timed out, and the re-sent batch is acknowledged."""
    port = free_port()
    broker = EmbeddedBroker(port=port).start()
    try:
        config = config_for(broker.bootstrap, f"{tmp_path}/checkpoints", "confluent").replace(
            "kafka", shutdown_timeout_s=5.0).replace("meta", enabled=False).replace(
            "checkpoint", dir="")  # the restarted broker's offsets start again from 0
        service = Service(config)
        thread = threading.Thread(target=service.run)
        thread.start()
        try:
            produce(config, observations(entities=5, steps=range(10)))
            wait_for(lambda: service.daemon.forecasts >= 50, what="forecasts before")
            broker.stop()
            broker = EmbeddedBroker(port=port).start()  # empty: topics created again
            ensure_topics(config.kafka, partitions=4)
            produce(config, observations(entities=5, steps=range(10, 20)))
            wait_for(lambda: service.daemon.forecasts >= 100, timeout_s=90,
                     what="forecasts after the restart")
        finally:
            service.stop()
            thread.join(30)
        assert not thread.is_alive()
    finally:
        broker.stop()
