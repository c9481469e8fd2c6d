"""The worker loop: poll → decode → engine → publish → flush → commit.

Offsets are committed only after every forecast and dead letter that their
records caused was acknowledged by the sink; the acknowledgement of one batch is
awaited while the next is polled and processed (``serve/delivery.py``). Signal
handlers only call :meth:`Daemon.stop`; the loop then finishes the batch in hand,
flushes, commits and returns.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import torch

from streammeta import assemble
from streammeta.config import Config
from streammeta.errors import BrokerError
from streammeta.io.codec import (
    DeadLetter,
    Decoder,
    ForecastEncoder,
    Observations,
    Reason,
    Record,
    Records,
)
from streammeta.io.frequency import Frequency, utc_text
from streammeta.io.streams import Sink, Source, TopicPartition, next_offsets
from streammeta.meta.memory import MemoryLink
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.online.result import Result, concat
from streammeta.persistence.checkpoint import Checkpointer
from streammeta.serve.delivery import Batch, Delivery
from streammeta.serve.health import LoopHealth
from streammeta.serve.keeper import StateKeeper
from streammeta.serve.metrics import Metrics

log = logging.getLogger(__name__)

_LATENCY_SAMPLES = 64  # records per batch whose latency is observed
# Torch threads of a serving process where model.threads is 0 (automatic). The loop
# shares the cores with the delivery thread, the Kafka client's threads and the
# outer loop: torch's default team of one thread per core then spin-waits for cores
# they hold. Measured end to end on 2 cores (docs/kafka.md): 1 thread 14,000-14,400
# observations/s, the default team (2) 2,529.
SERVING_THREADS = 1


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
        between_batches: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        if config.model.threads == 0:  # automatic: see SERVING_THREADS
            torch.set_num_threads(SERVING_THREADS)
        self.source, self.sink = source, sink
        self.metrics = metrics if metrics is not None else Metrics()
        self.engine = engine if engine is not None else assemble.engine(config)
        self.health = health if health is not None else LoopHealth(config.metrics.stall_after_s)
        self.notifier, self.checkpointer = notifier, checkpointer
        self.keeper = None if checkpointer is None else StateKeeper(
            checkpointer, source, self.metrics, self.engine, config)
        self.memory_link, self.between_batches = memory_link, between_batches
        if memory_link is not None:
            self.engine.share_memory()
        self.on_progress, self.progress_every_s = on_progress or log_progress, progress_every_s
        self.decoder = Decoder(config.series.max_record_bytes, config.series.max_entity_id_length)
        self.frequency = config.series.frequency
        self.encoder = ForecastEncoder(self.frequency, config.series.quantiles)
        self._stop = threading.Event()
        self.delivery = Delivery(source, sink, self.metrics, self.health, self._stop,
                                 config.kafka.shutdown_timeout_s)
        self._offered: tuple[model.Params, int] | None = None
        self._offer_lock = threading.Lock()
        self._announced_ready = False
        self._settle = False  # the batch in flight makes a partition's first checkpoint
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
        # What exists now (modules, torch, θ, restored state) lives as long as the process:
        # out of the collector's full passes, which otherwise stop the loop ~75 ms each
        # (measured in steady state: 1.3 µs of CPU per observation, and a p99 outlier).
        gc.freeze()
        try:
            while not self._stop.is_set():
                self._swap_if_offered()
                records = self.source.poll(poll_s)
                if records:
                    self._process(records)
                else:  # idle: the batch in flight is acknowledged and committed now
                    self.delivery.complete()
                if self.memory_link is not None:
                    exchange_memory(self.engine, self.memory_link, self.metrics)
                if self.between_batches is not None:
                    self.between_batches()  # e.g. following the versions topic (role ingest)
                if self.keeper is not None:
                    self.keeper.commit_restored(records, self.delivery.commit)
                    if self.keeper.checkpointer.due():  # a snapshot holds only acknowledged state
                        self.delivery.complete()
                    self.keeper.checkpoint_in_background()
                self._beat()
                now = time.monotonic()
                if now - last_report >= self.progress_every_s:
                    rate = (self.observations - reported_obs) / (now - last_report)
                    self.on_progress(self.progress(now - started, rate))
                    last_report, reported_obs = now, self.observations
            now = time.monotonic()  # a last report: where the run ended (served version too)
            self.on_progress(self.progress(now - started, (self.observations - reported_obs)
                                           / max(now - last_report, 1e-3)))
        finally:
            self._shutdown()

    def progress(self, seconds: float, rate: float) -> Progress:
        return Progress(
            seconds=seconds, observations=self.observations, forecasts=self.forecasts,
            dead_letters=self.dead_letters, events_per_s=rate, entities=len(self.engine),
            model_version=self.engine.version,
            error_model=self.engine.online_error["streammeta"],
            error_naive=self.engine.online_error["seasonal_naive"])

    def _beat(self) -> None:
        ready = self.delivery.alive_and_ready()
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

    def _process(self, polled: Sequence[Record]) -> None:
        started = time.perf_counter()
        m = self.metrics
        records = Records.of(polled)  # columns: nothing below runs Python per record
        m.records_consumed.inc(len(records))
        obs, dead = self.decoder.decode(records)
        obs = _on_calendar(self.frequency, records, obs, dead)
        ts, values = obs.arrays()
        ts, _ = self.frequency.to_units(ts)
        partitions = np.asarray(records.partitions, dtype=np.int32)
        if len(obs) != len(records):
            partitions = partitions[np.asarray(obs.index, dtype=np.intp)]
        if self._settle:  # its first checkpoint must hold exactly the acknowledged state
            self.delivery.complete()
        result = process_in_parts(self.engine, obs.entities, ts, values, partitions)
        for i, reason, detail in result.rejected:
            dead.append(DeadLetter(records.with_headers(obs.index[i]), reason, detail))
        f = result.forecasts
        entities = list(map(obs.entities.__getitem__, f.obs_index.tolist()))
        # Copies the engine cannot touch again; formatted on the delivery's thread while
        # this one goes on with the next batch.
        encode = partial(self.encoder.format, entities, f.origin_ts.copy(),
                         self.encoder.stack(f.point, f.quantiles), f.warm.copy(),
                         self.engine.version, int(time.time() * 1000))
        offsets = next_offsets(records)

        first = self.keeper is not None and self.keeper.first_checkpoint_due(offsets)

        def acknowledged() -> None:  # may checkpoint first: see StateKeeper.advance
            if self.keeper is not None:
                self.keeper.advance({p: o for (_, p), o in offsets.items()}, len(records), first)

        def committed() -> None:  # counted once acknowledged and committed
            self.observations += len(f)
            self.forecasts += len(f)  # one message a forecast
            self.dead_letters += len(dead)
            _count(m, result, len(f), dead)

        self.delivery.submit(Batch(_keyed(entities, encode), dead, self.engine.version,
                                   offsets, acknowledged, committed))
        self._settle = first
        _gauges(m, self.engine, records, started)

    def _on_assigned(self, partitions: list[TopicPartition]) -> None:
        if self.keeper is None:
            log.info("assigned partitions %s", [p for _, p in partitions])
        else:
            self.keeper.assigned(partitions)

    def _on_revoked(self, partitions: list[TopicPartition]) -> None:
        log.info("revoked partitions %s", [p for _, p in partitions])  # cooperative: a part
        self.delivery.complete()  # their records' output acknowledged, offsets committed
        if self.keeper is not None:
            self.keeper.revoked(partitions)

    def _shutdown(self) -> None:
        self.health.stopping = True
        self.health.set_ready(False)
        self.metrics.ready.set(0)
        if self.notifier is not None:
            self.notifier.stopping()
        try:
            self.delivery.complete()
            self.sink.flush(self.config.kafka.shutdown_timeout_s)
        except BrokerError as exc:
            log.error("final flush failed: %s", exc)
        finally:
            self.delivery.close()
        if self.keeper is not None:
            self.keeper.checkpoint()
        self.sink.close()
        self.source.close()
        if self.memory_link is not None:
            self.memory_link.close()
        log.info("stopped after %d observations, %d forecasts, %d dead letters",
                 self.observations, self.forecasts, self.dead_letters)


def _keyed(entities: list[str], encode: Callable[[], list[bytes]]
           ) -> Callable[[], list[tuple[bytes, bytes]]]:
    """The (key, value) messages of a batch's forecasts, made when called."""
    return lambda: list(zip(map(str.encode, entities), encode(), strict=True))


def _gauges(m: Metrics, engine: Engine, records: Records, started: float) -> None:
    """A processed batch's gauges and timings."""
    entries = engine.memory_entries
    if entries is not None:
        m.memory_entries.set(entries)
    m.entities.set(len(engine))
    for name, value in engine.online_error.items():
        if value == value:  # not NaN
            m.online_error.labels(model=name).set(value)
    m.batch_duration.observe(time.perf_counter() - started)
    _observe_latency(m, records)


def _count(m: Metrics, result: Result, forecasts: int, dead: list[DeadLetter]) -> None:
    """A batch's counters, once its output is acknowledged and its offsets committed."""
    m.observations.inc(len(result.forecasts))
    m.forecasts.inc(forecasts)
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


def exchange_memory(engine: Engine, link: MemoryLink, metrics: Metrics) -> None:
    """Publish this replica's new memory entries; take in the other replicas'."""
    if engine.memory_entries is None:
        return
    outbox = engine.take_outbox()
    if outbox:
        link.publish(outbox)
    incoming = link.receive()
    if incoming:
        engine.receive_memory(incoming)
        metrics.memory_entries.set(engine.memory_entries or 0)


def _on_calendar(frequency: Frequency, records: Records, obs: Observations,
                 dead: list[DeadLetter]) -> Observations:
    """Dead-letter observations whose ts is not on a calendar frequency's dates."""
    if not frequency.calendar:
        return obs
    _, on = frequency.to_units(np.asarray(obs.ts, dtype=np.int64))
    if bool(on.all()):
        return obs
    for i in np.nonzero(~on)[0].tolist():
        ts = int(obs.ts[i])
        dead.append(DeadLetter(records.with_headers(obs.index[i]), Reason.MISALIGNED,
                               f"ts {ts} ({utc_text(ts)}) is not a date of series.freq "
                               f"{frequency.name!r}: {frequency.dates}"))
    return obs.subset(on)


def _lag(source: Source) -> dict[int, int]:
    lag = getattr(source, "lag", None)
    return lag() if callable(lag) else {}


def _observe_latency(metrics: Metrics, records: Records) -> None:
    now_ms = time.time() * 1000
    step = max(1, len(records) // _LATENCY_SAMPLES)
    for i in range(0, len(records), step):
        timestamp_ms = records.timestamp_of(i)
        if timestamp_ms > 0:
            metrics.record_latency.observe(max(0.0, now_ms - timestamp_ms) / 1000)


def log_progress(p: Progress) -> None:
    log.info(
        "%.0f s: %d observations (%.0f/s), %d entities, %d dead letters, model v%d, "
        "online error %.3f (seasonal naive %.3f)", p.seconds, p.observations, p.events_per_s,
        p.entities, p.dead_letters, p.model_version, p.error_model, p.error_naive)


def process_in_parts(engine: Engine, entities: list[str], ts: np.ndarray, values: np.ndarray,
                     partitions: np.ndarray) -> Result:
    """``engine.process``, in consecutive parts of at most ``engine.max_entities``
    distinct entities each: a poll holding more could not page its evicted entities
    back in at once (ValueError, the replica stopped, and again after each restart).
    Each entity's records keep their order; the parts' results are joined."""
    cap = engine.arena.max_entities
    if len(entities) <= cap:
        return engine.process(entities, ts, values, partitions)
    cuts, seen = [0], set[str]()
    for i, entity in enumerate(entities):
        if entity not in seen and len(seen) == cap:
            cuts.append(i)
            seen.clear()
        seen.add(entity)
    cuts.append(len(entities))
    results = []
    for a, b in itertools.pairwise(cuts):
        part = engine.process(entities[a:b], ts[a:b], values[a:b], partitions[a:b])
        part.forecasts.obs_index += a
        part.rejected = [(i + a, reason, detail) for i, reason, detail in part.rejected]
        results.append(part)
    joined = results[0]
    joined.forecasts = concat([r.forecasts for r in results])
    for r in results[1:]:
        joined.rejected += r.rejected
        joined.recalled += r.recalled
        for name in ("scored", "gap_steps", "resets", "drifts", "evicted", "paged_in",
                     "guarded"):
            setattr(joined, name, getattr(joined, name) + getattr(r, name))
    return joined
