"""The worker loop: poll → decode → engine → publish → flush → commit.

Offsets are committed only after every forecast and dead letter that their
records caused was acknowledged by the sink. Signal handlers only call
:meth:`Daemon.stop`; the loop then finishes the batch in hand, flushes, commits
and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from streammeta.config import Config
from streammeta.contracts import forecast_headers
from streammeta.errors import BrokerError
from streammeta.io.codec import DeadLetter, Decoder, ForecastEncoder, Observations, Reason, Record
from streammeta.io.streams import Sink, Source, TopicPartition, next_offsets
from streammeta.meta.memory import MemoryLink
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, Written
from streammeta.serve.health import LoopHealth
from streammeta.serve.metrics import Metrics

log = logging.getLogger(__name__)

_RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
_LATENCY_SAMPLES = 64  # records per batch whose latency is observed


class Notifier(Protocol):
    """What the loop tells a service manager (see ``streammeta.serve.systemd``)."""

    def ready(self) -> object: ...
    def loop_iteration_ok(self) -> object: ...
    def stopping(self) -> object: ...


@dataclass
class Progress:
    """A snapshot for progress lines."""

    seconds: float
    observations: int
    forecasts: int
    dead_letters: int
    events_per_s: float
    entities: int
    model_version: int
    error_model: float
    error_naive: float


class Daemon:
    def __init__(
        self,
        config: Config,
        source: Source,
        sink: Sink,
        metrics: Metrics | None = None,
        engine: Engine | None = None,
        health: LoopHealth | None = None,
        notifier: Notifier | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_every_s: float = 10.0,
        checkpointer: Checkpointer | None = None,
        memory_link: MemoryLink | None = None,
    ) -> None:
        self.config = config
        self.source, self.sink = source, sink
        self.metrics = metrics if metrics is not None else Metrics()
        self.engine = engine if engine is not None else Engine(config)
        self.health = health if health is not None else LoopHealth(config.metrics.stall_after_s)
        self.notifier = notifier
        self.checkpointer = checkpointer
        self.memory_link = memory_link
        if memory_link is not None and self.engine.memory is not None:
            self.engine.memory.outbox = []
        self.on_progress = on_progress or _log_progress
        self.progress_every_s = progress_every_s
        self.decoder = Decoder(config.series.max_record_bytes, config.series.max_entity_id_length)
        self.frequency = config.series.frequency
        self.encoder = ForecastEncoder(self.frequency, config.series.quantiles)
        self._stop = threading.Event()
        self._offered: tuple[model.Params, int] | None = None
        self._offer_lock = threading.Lock()
        self._announced_ready = False
        self.observations = self.forecasts = self.dead_letters = 0
        self.metrics.model_version.set(self.engine.version)

    # -- control, callable from any thread ----------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def offer_params(self, params: model.Params, version: int) -> None:
        """Hand over promoted parameters; the loop swaps them in between batches."""
        with self._offer_lock:
            self._offered = (params, version)

    # -- the loop -----------------------------------------------------------------
    def run(self) -> None:
        poll_s = self.config.kafka.poll_timeout_ms / 1000
        started = last_report = time.monotonic()
        reported_obs = 0
        if self.checkpointer is not None:
            self.checkpointer.restore_model()
            self.metrics.model_version.set(self.engine.version)
        self.source.set_rebalance_listener(self._on_assigned, self._on_revoked)
        try:
            while not self._stop.is_set():
                self._swap_if_offered()
                records = self.source.poll(poll_s)
                if records:
                    self._process(records)
                if self.memory_link is not None:
                    self._exchange_memory(self.memory_link)
                if self.checkpointer is not None:
                    self._checkpoint_in_background(self.checkpointer)
                self._beat()
                now = time.monotonic()
                if now - last_report >= self.progress_every_s:
                    rate = (self.observations - reported_obs) / (now - last_report)
                    self.on_progress(self.progress(now - started, rate))
                    last_report, reported_obs = now, self.observations
        finally:
            self._shutdown()

    def progress(self, seconds: float, rate: float) -> Progress:
        return Progress(
            seconds=seconds, observations=self.observations, forecasts=self.forecasts,
            dead_letters=self.dead_letters, events_per_s=rate, entities=len(self.engine.arena),
            model_version=self.engine.version,
            error_model=self.engine.online_error["streammeta"],
            error_naive=self.engine.online_error["seasonal_naive"])

    def _beat(self) -> None:
        ready = self._alive_and_ready()
        for partition, lag in _lag(self.source).items():
            self.metrics.consumer_lag.labels(partition=str(partition)).set(lag)
        if self.notifier is not None:
            if ready and not self._announced_ready:
                self.notifier.ready()
                self._announced_ready = True
            self.notifier.loop_iteration_ok()

    def _swap_if_offered(self) -> None:
        with self._offer_lock:
            offered, self._offered = self._offered, None
        if offered is not None:
            self.engine.swap(*offered)
            self.metrics.model_version.set(offered[1])
            log.info("serving model version %d", offered[1])

    def _on_calendar(self, records: list[Record], obs: Observations,
                     dead: list[DeadLetter]) -> Observations:
        """Dead-letter observations whose ts is not on a calendar frequency's dates."""
        _, on = self.frequency.to_units(np.asarray(obs.ts, dtype=np.int64))
        if bool(on.all()):
            return obs
        for i in np.nonzero(~on)[0].tolist():
            dead.append(DeadLetter(records[obs.index[i]], Reason.MISALIGNED,
                                   f"ts {obs.ts[i]} is not a date of series.freq "
                                   f"{self.frequency.name!r}"))
        return obs.subset(on)

    def _process(self, records: list[Record]) -> None:
        started = time.perf_counter()
        m = self.metrics
        m.records_consumed.inc(len(records))
        obs, dead = self.decoder.decode(records)
        if self.frequency.calendar:
            obs = self._on_calendar(records, obs, dead)
        ts, values = obs.arrays()
        ts, _ = self.frequency.to_units(ts)
        partitions = np.fromiter((records[i].partition for i in obs.index), dtype=np.int32,
                                 count=len(obs))
        result = self.engine.process(obs.entities, ts, values, partitions)
        for i, reason, detail in result.rejected:
            dead.append(DeadLetter(records[obs.index[i]], reason, detail))
        f = result.forecasts
        entities = [obs.entities[i] for i in f.obs_index.tolist()]
        payloads = self.encoder.encode(
            entities, f.origin_ts, f.point, f.quantiles, f.warm, self.engine.version,
            produced_at=int(time.time() * 1000))
        messages = [(e.encode(), p) for e, p in zip(entities, payloads, strict=True)]
        self._deliver(messages, dead)
        offsets = next_offsets(records)
        if self.checkpointer is not None:
            self.checkpointer.advance({p: o for (_, p), o in offsets.items()}, len(records))
        self._commit(offsets)
        # Counted once acknowledged and committed.
        self.observations += len(f)
        self.forecasts += len(messages)
        self.dead_letters += len(dead)
        m.observations.inc(len(f))
        m.forecasts.inc(len(messages))
        for letter in dead:
            m.dead_letters.labels(reason=letter.reason.value).inc()
        m.scored.inc(result.scored)
        m.gap_steps.inc(result.gap_steps)
        m.entity_resets.inc(result.resets)
        m.drift_reinitialised.inc(result.drifts)
        m.guarded.inc(result.guarded)
        m.evicted.inc(result.evicted)
        m.paged_in.inc(result.paged_in)
        m.memory_retrievals.inc(len(result.recalled))
        for similarity in result.recalled:
            m.memory_similarity.observe(similarity)
        if self.engine.memory is not None:
            m.memory_entries.set(len(self.engine.memory))
        m.entities.set(len(self.engine.arena))
        for name, value in self.engine.online_error.items():
            if value == value:  # not NaN
                m.online_error.labels(model=name).set(value)
        m.batch_duration.observe(time.perf_counter() - started)
        _observe_latency(m, records)

    def _exchange_memory(self, link: MemoryLink) -> None:
        """Publish this replica's new memory entries; take in the other replicas'."""
        memory = self.engine.memory
        if memory is None:
            return
        if memory.outbox:
            link.publish(memory.outbox)
            memory.outbox = []
        incoming = link.receive()
        if incoming:
            names, keys, values, versions = zip(*incoming, strict=True)
            memory.insert(list(names), torch.stack(keys), torch.stack(values),
                          torch.tensor(versions), share=False)
            self.metrics.memory_entries.set(len(memory))

    def _deliver(self, messages: list[tuple[bytes, bytes]], dead: list[DeadLetter]) -> None:
        """Send and flush; on failure resend the whole batch until acknowledged or stopped.

        Resending may publish a forecast twice (same key, origin and version: consumers
        can drop duplicates); never committing unacknowledged output is what matters.
        """
        attempt = 0
        while True:
            try:
                self.sink.send_forecasts(messages, forecast_headers(self.engine.version))
                self.sink.send_dead_letters(dead)
                self.sink.flush(self.config.kafka.shutdown_timeout_s, self._alive_and_ready)
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
                self._wait(delay)

    def _alive_and_ready(self) -> bool:
        """The loop is alive; ready is the source's word (assigned, broker answering).
        Also called while a flush blocks, so a frozen broker shows within seconds."""
        ready = self.source.ready()
        self.health.beat()
        self.health.set_ready(ready)
        self.metrics.loop_heartbeat.set_to_current_time()
        self.metrics.ready.set(1 if ready else 0)
        return ready

    def _wait(self, seconds: float) -> None:
        """Sleep while keeping the liveness heartbeat: waiting on a broker is not a stall."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.health.beat()
            self.metrics.loop_heartbeat.set_to_current_time()
            time.sleep(min(left, 0.25))

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        try:
            self.source.commit(offsets)
            self.metrics.commits.inc()
        except BrokerError as exc:
            # The forecasts are out; the records come again after a rebalance.
            self.metrics.count_error("commit")
            log.warning("offset commit failed: %s", exc)

    def _checkpoint_in_background(self, checkpointer: Checkpointer) -> None:
        """Periodic checkpoints: the loop stops only for the snapshot."""
        for outcome in checkpointer.outcomes():
            self._checkpoint_done(outcome)
        if checkpointer.due():
            started = time.perf_counter()
            if checkpointer.save_in_background():
                self.metrics.checkpoint_snapshot.observe(time.perf_counter() - started)

    def _checkpoint(self) -> None:
        """A checkpoint of every owned partition, written before returning."""
        assert self.checkpointer is not None
        started = time.perf_counter()
        try:
            path = self.checkpointer.save()
        except OSError as exc:
            outcome: Written | Exception = exc
        else:
            outcome = Written(path, path.stat().st_size, time.perf_counter() - started)
        for earlier in self.checkpointer.outcomes():
            self._checkpoint_done(earlier)
        self._checkpoint_done(outcome)

    def _checkpoint_done(self, outcome: Written | Exception) -> None:
        if isinstance(outcome, Exception):  # a full disk must not stop forecasting
            self.metrics.checkpoint_failures.inc()
            log.error("checkpoint failed: %s", outcome)
            return
        self.metrics.checkpoint_duration.observe(outcome.seconds)
        self.metrics.checkpoint_last_success.set_to_current_time()
        self.metrics.checkpoint_bytes.set(outcome.size)

    def _on_assigned(self, partitions: list[TopicPartition]) -> None:
        if self.checkpointer is None:
            log.info("assigned partitions %s", [p for _, p in partitions])
            return
        started = time.perf_counter()
        resume = self.checkpointer.restore_partitions([p for _, p in partitions])
        topic = {p: t for t, p in partitions}
        if resume:
            self.source.seek({(topic[p], p): offset for p, offset in resume.items()})
        self.metrics.entities.set(len(self.engine.arena))
        log.info("assigned partitions %s; state restored in %.3f s", [p for _, p in partitions],
                 time.perf_counter() - started)

    def _on_revoked(self, partitions: list[TopicPartition]) -> None:
        # Logged: with cooperative assignment, assignments and revocations are increments.
        log.info("revoked partitions %s", [p for _, p in partitions])
        if self.checkpointer is not None:
            started = time.perf_counter()
            try:
                self.checkpointer.release([p for _, p in partitions])
            except OSError as exc:  # the new owner restores an older checkpoint and replays
                self.metrics.checkpoint_failures.inc()
                log.error("checkpoint of revoked partitions failed: %s", exc)
            else:
                self.metrics.checkpoint_duration.observe(time.perf_counter() - started)
                self.metrics.checkpoint_last_success.set_to_current_time()
            self.metrics.entities.set(len(self.engine.arena))

    def _shutdown(self) -> None:
        self.health.stopping = True
        self.health.set_ready(False)
        self.metrics.ready.set(0)
        if self.notifier is not None:
            self.notifier.stopping()
        try:
            self.sink.flush(self.config.kafka.shutdown_timeout_s)
        except BrokerError as exc:
            log.error("final flush failed: %s", exc)
        if self.checkpointer is not None:
            self._checkpoint()
        self.sink.close()
        self.source.close()
        if self.memory_link is not None:
            self.memory_link.close()
        log.info("stopped after %d observations, %d forecasts, %d dead letters",
                 self.observations, self.forecasts, self.dead_letters)


def _lag(source: Source) -> dict[int, int]:
    lag = getattr(source, "lag", None)
    return lag() if callable(lag) else {}


def _observe_latency(metrics: Metrics, records: list[Record]) -> None:
    now_ms = time.time() * 1000
    step = max(1, len(records) // _LATENCY_SAMPLES)
    for record in records[::step]:
        if record.timestamp_ms > 0:
            metrics.record_latency.observe(max(0.0, now_ms - record.timestamp_ms) / 1000)


def _log_progress(p: Progress) -> None:
    log.info(
        "%.0f s: %d observations (%.0f/s), %d entities, %d dead letters, model v%d, "
        "online error %.3f (seasonal naive %.3f)", p.seconds, p.observations, p.events_per_s,
        p.entities, p.dead_letters, p.model_version, p.error_model, p.error_naive)

