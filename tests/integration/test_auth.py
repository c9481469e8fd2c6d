"""A broker that refuses authentication: the embedded Tansu started with
``--authentication`` (SASL SCRAM required) and no users, so it refuses every
client's credentials, as a real cluster refuses a wrong password. Both clients
must end with a clear message and a non-zero exit, never ready meanwhile, and
SIGTERM must end them within the bound."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLIENTS
from test_daemon_kafka import wait_for
from test_faults import embedded_only, run_daemon
from test_outage import http_status

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.io.broker import EmbeddedBroker, free_port

pytestmark = [pytest.mark.integration, embedded_only]


@pytest.fixture(scope="module")
def refusing() -> Iterator[str]:
    with EmbeddedBroker(authentication=True) as broker:
        yield broker.bootstrap


def sasl_config(bootstrap: str, client: str, port: int) -> Config:
    return config_mod.load(None, env={}).replace(
        "kafka", client=client, bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="streammeta", sasl_password="not-the-password",
        session_timeout_ms=6000, heartbeat_interval_ms=1000, fatal_after_s=10.0,
        shutdown_timeout_s=5.0).replace("metrics", port=port).replace("checkpoint", dir="")


@pytest.mark.parametrize("client", CLIENTS)
def test_refused_credentials_stop_the_daemon_with_a_clear_message(
        refusing: str, client: str, tmp_path: Path) -> None:
    port = free_port()
    daemon = run_daemon(sasl_config(refusing, client, port), tmp_path / "config.toml")
    statuses: list[int] = []
    try:
        def exited_after_probing() -> bool:
            if daemon.poll() is not None:
                return True
            with contextlib.suppress(OSError):  # not listening (yet): not ready either
                statuses.append(http_status(f"http://127.0.0.1:{port}/readyz"))
            return False

        started = time.monotonic()
        wait_for(exited_after_probing, timeout_s=90, what="the daemon to stop by itself")
        took = time.monotonic() - started
        out = daemon.communicate(timeout=10)[0].decode()
    finally:
        daemon.kill()
    assert daemon.returncode == 2, out
    assert 200 not in statuses, statuses  # never ready
    error = [line for line in out.splitlines() if line.startswith("streammeta: error:")]
    assert len(error) == 1 and "authentication" in error[0].lower(), out
    assert "SCRAM" in error[0], out
    assert "Traceback" not in out and "Exception ignored" not in out, out
    print(f"\n{client}: exited 2 after {took:.1f} s: {error[0]}")


@pytest.mark.parametrize("client", CLIENTS)
def test_sigterm_while_credentials_are_refused_exits_within_the_bound(
        refusing: str, client: str, tmp_path: Path) -> None:
    config = sasl_config(refusing, client, free_port()).replace("kafka", fatal_after_s=60.0)
    daemon = run_daemon(config, tmp_path / "config.toml")
    try:
        time.sleep(4)  # starting, connecting, refused (whichever it has reached)
        signalled = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        out = daemon.communicate(timeout=30)[0].decode()
        took = time.monotonic() - signalled
    finally:
        daemon.kill()
    assert daemon.returncode != 0 or "stopped after" in out, out
    assert took <= config.kafka.shutdown_timeout_s + 5, (took, out)
    assert "Traceback" not in out and "Exception ignored" not in out, out
