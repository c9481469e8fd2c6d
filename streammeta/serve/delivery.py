"""The loop's output: forecasts and dead letters acknowledged before their
records' offsets are committed, retried while the broker is away, with the
liveness heartbeat kept meanwhile (waiting on a broker is not a stall).

One batch is in flight while the loop works on the next: :meth:`Delivery.submit`
first waits for the previous batch's acknowledgements and commits its offsets,
then sends the new one. The acknowledgement wait (linger, the broker's round trip
with ``acks=all``) thus overlaps the next poll, decode, engine step and encoding,
and a flush never waits on more than one batch, so the commit rule holds: an offset
is committed only after every forecast and dead letter of the records before it
was acknowledged. :meth:`Delivery.complete` drains the batch in flight; the loop
calls it when idle, before a checkpoint, on revocation and at shutdown.

A batch's forecasts are formatted and handed to the client on the delivery's own
thread, while the loop polls, decodes and runs the engine on the next batch: JSON
formatting and the client's per-message calls hold the GIL, but the engine's tensor
kernels and numpy release it, so the two overlap on a second core.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from streammeta.contracts import forecast_headers
from streammeta.errors import BrokerError
from streammeta.io.codec import DeadLetter
from streammeta.io.streams import Sink, Source
from streammeta.serve.health import LoopHealth
from streammeta.serve.metrics import Metrics

# The loop's own log: operators follow (and alert on) one logger for the loop.
log = logging.getLogger("streammeta.serve.daemon")

_RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclass
class Batch:
    """A batch's output, and what follows its acknowledgement."""

    encode: Callable[[], list[tuple[bytes, bytes]]]  # its forecasts' (key, value) messages
    dead: list[DeadLetter]
    version: int  # of the model that made the forecasts (their headers)
    offsets: dict[tuple[str, int], int]  # the next offsets of its records
    acknowledged: Callable[[], object]  # its records now count as applied (before commit)
    committed: Callable[[], object]  # count it


class Delivery:
    def __init__(self, source: Source, sink: Sink, metrics: Metrics, health: LoopHealth,
                 stop: threading.Event, timeout_s: float) -> None:
        self.source, self.sink = source, sink
        self.metrics, self.health = metrics, health
        self._stop = stop  # set: the daemon is stopping, give up after one retry
        self.timeout_s = timeout_s  # a flush's limit (kafka.shutdown_timeout_s)
        self._in_flight: Batch | None = None
        self._messages: list[tuple[bytes, bytes]] = []  # of the batch in flight
        self._sending: Future[BrokerError | None] | None = None  # encoding and sending it
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="streammeta-delivery")

    def submit(self, batch: Batch) -> None:
        """Complete the batch in flight, then encode and send this one on the delivery's
        thread (not waiting for it)."""
        self.complete()
        self._in_flight = batch
        self._sending = self._worker.submit(self._first_send, batch)

    def _first_send(self, batch: Batch) -> BrokerError | None:
        self._messages = batch.encode()
        try:
            self._send(batch)
        except BrokerError as exc:  # complete() retries it
            return exc
        return None

    def close(self) -> None:
        self._worker.shutdown(wait=False)

    @property
    def in_flight(self) -> bool:
        """A batch was sent and is not yet acknowledged and committed."""
        return self._in_flight is not None

    def complete(self) -> None:
        """Wait until the batch in flight is acknowledged (resending it while the
        broker fails, until stopped), then commit its offsets."""
        batch, self._in_flight = self._in_flight, None
        if batch is None:
            return
        sending, self._sending = self._sending, None
        failed = None if sending is None else sending.result()  # its exceptions raise here
        self._acknowledge(batch, failed)
        batch.acknowledged()
        self.commit(batch.offsets)
        batch.committed()

    def _send(self, batch: Batch) -> None:
        self.sink.send_forecasts(self._messages, forecast_headers(batch.version))
        self.sink.send_dead_letters(batch.dead)

    def _acknowledge(self, batch: Batch, failed: BrokerError | None) -> None:
        """Flush; on failure resend the whole batch until acknowledged or stopped.

        Resending may publish a forecast twice (same key, origin and version: consumers
        can drop duplicates); never committing unacknowledged output is what matters.
        """
        attempt = 0
        while True:
            try:
                if failed is not None:
                    raise failed
                self.sink.flush(self.timeout_s, self.alive_and_ready)
                return
            except BrokerError as exc:
                self.metrics.count_error("produce")
                self.health.set_ready(False)
                self.metrics.ready.set(0)
                if self._stop.is_set() and attempt >= 1:
                    raise
                delay = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)]
                log.warning("publishing failed (%s); retrying in %.1f s", exc, delay)
                attempt += 1
                self.wait(delay)
                try:
                    self._send(batch)
                    failed = None
                except BrokerError as again:
                    failed = again

    def alive_and_ready(self) -> bool:
        """The loop is alive; ready is the source's word (assigned, broker answering).
        Also called while a flush blocks, so a frozen broker shows within seconds."""
        ready = self.source.ready()
        self.health.beat()
        self.health.set_ready(ready)
        self.metrics.loop_heartbeat.set_to_current_time()
        self.metrics.ready.set(1 if ready else 0)
        return ready

    def wait(self, seconds: float) -> None:
        """Sleep while keeping the liveness heartbeat: waiting on a broker is not a stall."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.health.beat()
            self.metrics.loop_heartbeat.set_to_current_time()
            time.sleep(min(left, 0.25))

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        try:
            self.source.commit(offsets)
            self.metrics.commits.inc()
        except BrokerError as exc:
            # The forecasts are out; the records come again after a rebalance.
            self.metrics.count_error("commit")
            log.warning("offset commit failed: %s", exc)
