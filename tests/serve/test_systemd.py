"""sd_notify messages received on a real NOTIFY_SOCKET created by the test."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streammeta import config as config_mod
from streammeta.io.codec import Record, encode_observation
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.serve import systemd
from streammeta.serve.daemon import Daemon

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX")


class Receiver:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str, env_value: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)
        self.env = {"NOTIFY_SOCKET": env_value}

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        messages = []
        try:
            while True:
                messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return messages
        finally:
            self.sock.settimeout(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    # sun_path holds 108 bytes: a short directory, not pytest's long tmp_path.
    with tempfile.TemporaryDirectory(prefix="sm-") as directory:
        path = str(Path(directory) / "notify.sock")
        rx = Receiver(path, path)
        yield rx
        rx.sock.close()


def test_ready_status_stopping_arrive_in_order(receiver: Receiver) -> None:
    assert systemd.ready(env=receiver.env)
    assert systemd.status("consuming 4 partitions", env=receiver.env)
    assert systemd.stopping(env=receiver.env)
    assert systemd.ready("serving", env=receiver.env)
    assert receiver.receive() == "READY=1"
    assert receiver.receive() == "STATUS=consuming 4 partitions"
    assert receiver.receive() == "STOPPING=1"
    assert receiver.receive() == "READY=1\nSTATUS=serving"


def test_status_stays_on_one_line(receiver: Receiver) -> None:
    assert systemd.status("a\nb", env=receiver.env)
    assert receiver.receive() == "STATUS=a b"


def test_extend_timeout_in_microseconds(receiver: Receiver) -> None:
    assert systemd.extend_timeout(1.5, env=receiver.env)
    assert receiver.receive() == "EXTEND_TIMEOUT_USEC=1500000"


def test_abstract_namespace_socket() -> None:
    name = f"streammeta-test-{uuid.uuid4().hex}"
    rx = Receiver("\0" + name, "@" + name)
    try:
        assert systemd.ready(env=rx.env)
        assert systemd.watchdog(env=rx.env)
        assert rx.receive() == "READY=1"
        assert rx.receive() == "WATCHDOG=1"
    finally:
        rx.sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    assert systemd.notify("READY=1", env={}) is False
    assert systemd.ready(env={}) is False
    assert systemd.watchdog(env={}) is False
    notifier = systemd.Notifier(env={})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.loop_iteration_ok() is False
    assert notifier.stopping() is False


def test_unusable_socket_reports_false_instead_of_raising(tmp_path: Path) -> None:
    assert systemd.ready(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False
    assert systemd.ready(env={"NOTIFY_SOCKET": "vsock:2:1234"}) is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval_s(env) == expected


def test_notifier_pings_the_watchdog_at_half_the_interval(receiver: Receiver) -> None:
    now = [100.0]
    env = {**receiver.env, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = systemd.Notifier(env=env, clock=lambda: now[0])
    assert notifier.ping_every_s == 5.0
    assert notifier.ready()
    sent = []
    for _ in range(25):  # 12.5 s of 0.5 s iterations
        sent.append(notifier.loop_iteration_ok())
        now[0] += 0.5
    assert notifier.stopping()
    # Pings at 0, 5 and 10 s: every 10th iteration.
    assert [i for i, ping in enumerate(sent) if ping] == [0, 10, 20]
    assert receiver.pending() == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1",
                                  "STOPPING=1"]


def test_notifier_without_watchdog_never_pings(receiver: Receiver) -> None:
    notifier = systemd.Notifier(env=receiver.env)
    assert notifier.enabled
    assert not any(notifier.loop_iteration_ok() for _ in range(3))
    assert notifier.ready()
    assert receiver.pending() == ["READY=1"]


def test_a_receiver_that_stops_reading_cannot_block_the_caller(receiver: Receiver) -> None:
    # The queue holds net.unix.max_dgram_qlen datagrams; then a send times out.
    delivered = 0
    started = time.monotonic()
    while systemd.watchdog(env=receiver.env):
        delivered += 1
        assert delivered < 100_000, "the notify socket never filled up"
        started = time.monotonic()
    assert delivered >= 1
    assert time.monotonic() - started < systemd.SEND_TIMEOUT_S + 2


def test_the_daemon_notifies_ready_watchdog_and_stopping(receiver: Receiver) -> None:
    config = config_mod.load(None, env={})
    config = config.replace("model", window=12, hidden=16).replace("series", season=4, horizon=6)
    records = []
    for t in range(40):
        for e in range(8):
            key, value = encode_observation(f"e{e}", t * 3_600_000, float(e + t % 4))
            records.append(Record("obs", 0, t * 8 + e, key, value))
    source = MemorySource(records, batch_size=16)
    env = {**receiver.env, "WATCHDOG_USEC": "20000"}  # ping at most every 10 ms
    daemon = Daemon(config, source, MemorySink(), notifier=systemd.Notifier(env=env))

    received: list[str] = []
    done = threading.Event()

    def drain() -> None:  # like systemd: read as the messages come
        receiver.sock.settimeout(0.05)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                received.append(receiver.receive())

    reader = threading.Thread(target=drain)
    reader.start()
    original_poll = source.poll
    idle_polls = 0

    def poll(timeout_s: float) -> list[Record]:
        nonlocal idle_polls
        if source.exhausted():
            idle_polls += 1
            time.sleep(0.02)  # a few idle iterations, as on a quiet topic
            if idle_polls > 3:
                daemon.stop()
        return original_poll(timeout_s)

    source.poll = poll  # type: ignore[method-assign]
    loop = threading.Thread(target=daemon.run)
    loop.start()
    loop.join(timeout=120)
    done.set()
    reader.join()
    assert not loop.is_alive()
    received += receiver.pending()

    assert received[0] == "READY=1"
    assert received.count("READY=1") == 1
    assert "WATCHDOG=1" in received
    assert received[-1] == "STOPPING=1"
    assert set(received) == {"READY=1", "WATCHDOG=1", "STOPPING=1"}


def test_the_service_reports_its_progress_as_the_status_line(receiver: Receiver) -> None:
    """deploy/systemd/README.md: ``systemctl status streammeta`` shows the daemon's STATUS=
    line. Before, the service never sent one (READY=1 alone)."""
    from streammeta.serve.service import Service

    config = config_mod.load(None, env={}).replace("model", window=12, hidden=16).replace(
        "series", season=4, horizon=6).replace("meta", enabled=False).replace(
        "metrics", enabled=False).replace("checkpoint", dir="")
    records = [Record("obs", 0, t * 8 + e, *encode_observation(f"e{e}", t * 3_600_000, 1.0 + e))
               for t in range(10) for e in range(8)]
    source = MemorySource(records, batch_size=16)
    service = Service(config, source=source, sink=MemorySink(),
                      notifier=systemd.Notifier(env=receiver.env))
    original_poll = source.poll

    def poll(timeout_s: float) -> list[Record]:
        if source.exhausted():
            service.stop()
        return original_poll(timeout_s)

    source.poll = poll  # type: ignore[method-assign]
    service.run()
    statuses = [m for m in receiver.pending() if m.startswith("STATUS=")]
    assert statuses, "no STATUS= line"
    assert statuses[-1] == "STATUS=80 observations (" + statuses[-1].split("(")[1]
    assert "8 entities, 0 dead letters, model v0" in statuses[-1]
