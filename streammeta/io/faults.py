"""What the Kafka edge does with errors: retry, report once, or stop the daemon.

* :class:`Faults` — every client error is counted in
  ``streammeta_kafka_errors_total{operation}`` and logged once per distinct cause.
  A *transient* one (a broker that is away, a timeout) only makes ``/readyz`` fail
  while it lasts: the client retries with backoff. A *persistent* one (an unknown
  codec, a corrupt batch, an authorisation error, a missing topic) will not go away
  by retrying: unless it clears within ``kafka.fatal_after_s``, :meth:`Faults.check`
  raises :class:`~streammeta.errors.BrokerError` from ``poll``, which stops the
  daemon with that message and a non-zero exit.
* :class:`Deadline` — the time by which a stopping daemon must be gone: every
  blocking call of the edge after :meth:`Deadline.start` waits at most until then.
* :class:`OncePerCause` — a client library's retry chatter (kafka-python logs every
  reconnect attempt) forwarded to our log once per message template until the edge
  is healthy again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from streammeta.errors import BrokerError

log = logging.getLogger("streammeta.io.kafka")

ErrorCounter = Callable[[str], None]
# A fault that has not recurred for this long has cleared (errors of a stuck
# partition recur on every fetch, a few times a second).
CLEAR_AFTER_S = 5.0


def assignor_mismatch(group: str, client: str, assignor: str, cause: str) -> str:
    """The cause of a join refused as INCONSISTENT_GROUP_PROTOCOL, explained: the other
    members of the group chose partition assignors this member does not have (a
    rolling change of ``kafka.client`` or ``kafka.assignor``). Bare, the client's
    error named no setting: one client retried it for ever, the other stopped."""
    return (f"the members of group {group!r} use a partition assignor this member has not "
            f"(kafka.client {client!r}, kafka.assignor {assignor!r}; 'auto' is "
            "cooperative-sticky with confluent, sticky with kafka-python): the replicas of a "
            "group need the same kafka.client and kafka.assignor, or kafka.assignor 'range' "
            f"or 'roundrobin' on every one ({cause})")


@dataclass
class _Fault:
    operation: str
    cause: str
    where: str
    first: float
    last: float


class Faults:
    """Counts, logs once per cause, tracks how long a persistent fault has lasted."""

    def __init__(self, fatal_after_s: float, on_error: ErrorCounter | None = None,
                 quiet: OncePerCause | None = None) -> None:
        self.fatal_after_s = fatal_after_s
        self.on_error = on_error or (lambda operation: None)
        self.quiet = quiet
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._persistent: _Fault | None = None
        self._transient_until = 0.0

    def error(self, operation: str, cause: str, persistent: bool, where: str = "") -> None:
        """Record one occurrence of an error (``where``: topic/partition/offset if known)."""
        now = time.monotonic()
        self.on_error(operation)
        with self._lock:
            if not persistent:
                self._transient_until = now + CLEAR_AFTER_S
            elif self._persistent is None or self._persistent.cause != cause:
                self._persistent = _Fault(operation, cause, where, now, now)
            else:
                self._persistent.last = now
                self._persistent.where = where or self._persistent.where
            first_time = cause not in self._logged
            self._logged.add(cause)
        if first_time:
            at = f" at {where}" if where else ""
            if persistent:
                log.error("%s failed%s: %s; this does not clear by retrying: the daemon "
                          "stops in %.0f s unless it clears", operation, at, cause,
                          self.fatal_after_s)
            else:
                log.warning("%s failed%s: %s (retrying; logged once per cause)",
                            operation, at, cause)

    def ok(self) -> None:
        """An operation succeeded: faults that have not recurred lately are over."""
        now = time.monotonic()
        with self._lock:
            fault = self._persistent
            if fault is not None and now - fault.last >= CLEAR_AFTER_S:
                log.info("%s recovered from: %s", fault.operation, fault.cause)
                self._persistent = None
                self._logged.discard(fault.cause)
            if now >= self._transient_until and self._transient_until:
                self._transient_until = 0.0
                self._logged.clear()
                if self.quiet is not None:
                    self.quiet.reset()

    def healthy(self) -> bool:
        with self._lock:
            return self._persistent is None and time.monotonic() >= self._transient_until

    def persistent_cause(self) -> str:
        """The cause of the persistent fault under way, or empty."""
        with self._lock:
            return self._persistent.cause if self._persistent is not None else ""

    def check(self) -> None:
        """Raise once a persistent fault has lasted ``fatal_after_s``."""
        with self._lock:
            fault = self._persistent
        if fault is not None and time.monotonic() - fault.first >= self.fatal_after_s:
            at = f" at {fault.where}" if fault.where else ""
            raise BrokerError(
                f"{fault.operation} failed{at} for {self.fatal_after_s:.0f} s without "
                f"clearing: {fault.cause}")


class Deadline:
    """Until :meth:`start`, no deadline; after it, blocking calls end by ``at``."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._at: float | None = None

    def start(self) -> None:
        if self._at is None:
            self._at = time.monotonic() + self.budget_s

    @property
    def started(self) -> bool:
        return self._at is not None

    def left(self, wanted_s: float) -> float:
        """``wanted_s``, cut to what is left before the deadline (never negative)."""
        if self._at is None:
            return wanted_s
        return max(0.0, min(wanted_s, self._at - time.monotonic()))


class OncePerCause(logging.Handler):
    """Forwards a client library's records to our logger, each message template once
    until :meth:`reset` (the edge is healthy again)."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__(logging.WARNING)
        self.target = target
        self._seen: set[tuple[str, object]] = set()
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.msg)
        with self._lock2:
            if key in self._seen:
                return
            self._seen.add(key)
        self.target.log(min(record.levelno, logging.WARNING), "%s: %s (repeats not logged)",
                        record.name, record.getMessage())

    def reset(self) -> None:
        with self._lock2:
            self._seen.clear()

    @classmethod
    def install(cls, library: str) -> OncePerCause:
        """Route ``library``'s log records (WARNING and up) through one shared handler."""
        lib = logging.getLogger(library)
        for handler in lib.handlers:
            if isinstance(handler, cls):
                return handler
        handler = cls(log)
        lib.addHandler(handler)
        lib.propagate = False
        if lib.level == logging.NOTSET or lib.level < logging.WARNING:
            lib.setLevel(logging.WARNING)
        return handler
