"""SIGTERM and SIGINT for ``run``, ``train``, ``replay`` and ``demo``: they ask the loop to
stop (it then flushes, commits, checkpoints and exits 0), and while ``run`` or ``train``
still starts (waiting for the broker or the topics) they abandon the start.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

log = logging.getLogger("streammeta")


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT only ask the loop to stop; it then flushes, commits and exits."""

    def handler(signum: int, frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class StartAbandoned(BaseException):  # a stop, as KeyboardInterrupt is
    """SIGTERM/SIGINT while ``run`` or ``train`` starts (waiting for the broker)."""


class Stopper:
    """Stop handlers installed before the start: a signal while it waits (for the
    broker, the topics) abandons it, closing what was opened (``StartAbandoned``
    where it waits); once :attr:`stop` is set, a signal asks the loop to stop. Before
    this, a SIGTERM then ended the process by the default action (143, unlogged)."""

    def __init__(self) -> None:
        self.stop: Callable[[], None] | None = None
        self._abandoned = False
        install_stop_handlers(self._signalled)

    def _signalled(self) -> None:
        if self.stop is not None:
            self.stop()
        elif not self._abandoned:  # once: a second signal does not break the closing
            self._abandoned = True
            raise StartAbandoned
