"""SIGTERM while ``streammeta run`` starts: logged, what was opened closed, exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A local port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("command", "client"), [("run", "confluent"), ("run", "kafka-python"),
                                                 ("train", "confluent")])
def test_sigterm_while_waiting_for_the_broker_at_start_exits_cleanly(
        tmp_path: Path, command: str, client: str) -> None:
    """The start waits for the broker (up to kafka.request_timeout_ms) before the loop
    and its stop handlers: a SIGTERM there ended the process by the default action,
    exit 143 (-15 here), nothing logged. A pod deleted while its broker is unreachable
    is that case."""
    port = closed_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAMMETA_KAFKA_CLIENT": client,
           "STREAMMETA_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
           "STREAMMETA_KAFKA_REQUEST_TIMEOUT_MS": "120000",  # the start waits this long
           "STREAMMETA_METRICS_ENABLED": "false", "STREAMMETA_LOG_LEVEL": "INFO",
           "STREAMMETA_CHECKPOINT_DIR": str(tmp_path / "checkpoints")}
    log = tmp_path / "run.log"
    with open(log, "wb") as out, subprocess.Popen(
            [sys.executable, "-m", "streammeta", command], cwd=tmp_path, env=env,
            stdout=out, stderr=subprocess.STDOUT) as daemon:
        try:
            # run logs the client's refused connections; train waits without a word.
            deadline = time.monotonic() + (60 if command == "run" else 5)
            while f"127.0.0.1:{port}" not in log.read_text(errors="replace"):
                assert daemon.poll() is None, log.read_text(errors="replace")
                if time.monotonic() > deadline:
                    assert command == "train", "the start never tried the broker"
                    break
                time.sleep(0.1)
            time.sleep(1.0)  # inside the wait
            assert daemon.poll() is None
            sent = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=30)
            took = time.monotonic() - sent
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    said = log.read_text(errors="replace")
    assert code == 0, said
    assert "received SIGTERM, stopping" in said and "stopped while starting" in said
    assert took < 15, said
