"""The sd_notify protocol: tell systemd (``Type=notify``) that the daemon is ready,
alive or stopping, with the standard library only.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace)
and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``. Every function
here is a no-op returning ``False`` when the daemon was not started that way, so
the daemon calls them unconditionally. A failed send is logged, never raised:
losing the notify socket must not take the daemon down (systemd's watchdog will).

    >>> ready(env={})
    False
    >>> watchdog_interval_s(env={"WATCHDOG_USEC": "30000000"})
    30.0
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# A service manager that stops reading fills the socket's queue (10 datagrams by
# default on Linux); the loop then waits at most this long per message.
SEND_TIMEOUT_S = 0.5


def _address(env: Mapping[str, str]) -> str | None:
    value = env.get("NOTIFY_SOCKET", "")
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace (Linux)
    if value.startswith("/"):
        return value
    if value:
        log.warning("NOTIFY_SOCKET=%r is not an AF_UNIX address; not notifying systemd", value)
    return None


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one datagram of ``KEY=VALUE`` lines; ``True`` when it was delivered."""
    address = _address(os.environ if env is None else env)
    if address is None or not hasattr(socket, "AF_UNIX"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %r failed: %s", message.split("\n", 1)[0], exc)
        return False
    return True


def ready(status_text: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """The daemon is assigned and serving: systemd considers the start complete."""
    message = "READY=1" if status_text is None else f"READY=1\nSTATUS={status_text}"
    return notify(message, env)


def stopping(env: Mapping[str, str] | None = None) -> bool:
    """The daemon began its shutdown (flush, final checkpoint, commit)."""
    return notify("STOPPING=1", env)


def watchdog(env: Mapping[str, str] | None = None) -> bool:
    """Keep-alive for ``WatchdogSec=``; send only after a healthy loop iteration."""
    return notify("WATCHDOG=1", env)


def status(text: str, env: Mapping[str, str] | None = None) -> bool:
    """One line shown by ``systemctl status``."""
    return notify("STATUS=" + text.replace("\n", " "), env)


def extend_timeout(seconds: float, env: Mapping[str, str] | None = None) -> bool:
    """Ask for more time for the current start or stop (a slow restore or final checkpoint)."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}", env)


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd expects pings within, or ``None`` when it is off.

    ``WATCHDOG_PID``, when set, must be this process (the variable was meant for a
    parent otherwise). Ping at half the interval, as sd_watchdog_enabled(3) advises.
    """
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Notifier:
    """What the daemon holds: the notifications plus the watchdog's rate limit.

    The loop calls :meth:`loop_iteration_ok` after every healthy iteration; a ping
    goes out at most once per half watchdog interval, so a stalled loop stops the
    pings and systemd restarts the service.
    """

    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.env = dict(os.environ if env is None else env)
        self.clock = clock
        interval = watchdog_interval_s(self.env)
        self.ping_every_s = None if interval is None else interval / 2
        self._last_ping: float | None = None

    @property
    def enabled(self) -> bool:
        return _address(self.env) is not None

    def ready(self, status_text: str | None = None) -> bool:
        return ready(status_text, self.env)

    def stopping(self) -> bool:
        return stopping(self.env)

    def status(self, text: str) -> bool:
        return status(text, self.env)

    def extend_timeout(self, seconds: float) -> bool:
        return extend_timeout(seconds, self.env)

    def loop_iteration_ok(self) -> bool:
        """Ping the watchdog if half its interval has passed; ``True`` when a ping was sent."""
        if self.ping_every_s is None:
            return False
        now = self.clock()
        if self._last_ping is not None and now - self._last_ping < self.ping_every_s:
            return False
        self._last_ping = now
        return watchdog(self.env)
