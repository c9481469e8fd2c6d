"""The edge's error policy: count every error, log each cause once, stop the daemon
on a persistent one that does not clear, and end blocking calls by a deadline."""

from __future__ import annotations

import logging

import pytest

from streammeta.errors import BrokerError
from streammeta.io import faults as faults_mod
from streammeta.io.faults import Deadline, Faults, OncePerCause


def test_a_persistent_fault_is_logged_once_counted_always_and_fatal_after_the_bound(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    monkeypatch.setattr(faults_mod.time, "monotonic", lambda: now[0])
    counted: list[str] = []
    faults = Faults(fatal_after_s=30.0, on_error=counted.append)
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            faults.error("poll", "UnsupportedCodecError: lz4", persistent=True,
                         where="obs/0 offset 7")
            faults.check()
            now[0] += 1.0
    assert counted == ["poll"] * 10
    assert len(caplog.records) == 1 and "obs/0 offset 7" in caplog.text
    assert not faults.healthy()
    now[0] = 130.0
    faults.error("poll", "UnsupportedCodecError: lz4", persistent=True)
    with pytest.raises(BrokerError, match=r"obs/0 offset 7 for 30 s without clearing"):
        faults.check()


def test_a_fault_that_stops_recurring_clears_and_transient_ones_never_stop_the_daemon(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(faults_mod.time, "monotonic", lambda: now[0])
    faults = Faults(fatal_after_s=10.0)
    faults.error("poll", "corrupt batch", persistent=True)
    now[0] = faults_mod.CLEAR_AFTER_S + 1
    faults.ok()
    assert faults.healthy()
    now[0] = 1000.0
    faults.check()  # cleared: nothing to raise
    for _ in range(100):  # a broker away for a long time: not ready, never fatal
        faults.error("poll", "KafkaConnectionError: refused", persistent=False)
        now[0] += 1.0
        faults.check()
    assert not faults.healthy()
    now[0] += faults_mod.CLEAR_AFTER_S
    faults.ok()
    assert faults.healthy()


def test_the_deadline_cuts_waits_only_once_started(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(faults_mod.time, "monotonic", lambda: now[0])
    deadline = Deadline(5.0)
    assert deadline.left(20.0) == 20.0
    deadline.start()
    now[0] = 3.0
    assert deadline.left(20.0) == 2.0 and deadline.left(1.0) == 1.0
    now[0] = 9.0
    assert deadline.left(20.0) == 0.0


def test_client_chatter_is_forwarded_once_per_message_until_reset() -> None:
    target = logging.getLogger("test.target")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    target.addHandler(Keep())
    target.propagate = False
    handler = OncePerCause(target)
    library = logging.getLogger("test.library.conn")
    library.addHandler(handler)
    library.propagate = False
    for attempt in range(50):
        library.error("Connect attempt to %s returned error %s", "node-1", attempt)
    assert len(seen) == 1 and "repeats not logged" in seen[0]
    handler.reset()
    library.error("Connect attempt to %s returned error %s", "node-1", 99)
    assert len(seen) == 2
