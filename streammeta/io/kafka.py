"""The Kafka edge through kafka-python (``kafka.client = "kafka-python"``).

* :class:`KafkaSource` — a consumer-group member with manual commits that serves
  batches of :class:`~streammeta.io.codec.Record` and reports rebalances.
* :class:`KafkaSink` — a producer for forecasts and dead letters whose ``flush``
  raises unless every message since the last flush was acknowledged, so the
  daemon never commits offsets for unsent output.
* :class:`ObservationWriter` — the producer behind ``streammeta replay``.
* The memory link is in ``streammeta.io.kafka_memory``.

kafka-python is pinned to 2.3.x: 3.0.x discards a JoinGroup/SyncGroup response
that completes while the application is outside ``poll()``, so a consumer that
works between polls can rejoin for minutes (see ``docs/kafka.md``).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    InconsistentGroupProtocolError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError
from streammeta.io.codec import Records
from streammeta.io.faults import Deadline, ErrorCounter, Faults, assignor_mismatch
from streammeta.io.kafka_group import GroupFacts
from streammeta.io.kafka_settings import (
    ASSIGNORS,
    CODEC_MODULES,
    RefusedAuthentication,
    client_kwargs,
    missing_codecs,
    unreachable,
)
from streammeta.io.producing import ProducerSink, TopicWriter
from streammeta.io.streams import PartitionsCallback
from streammeta.io.streams import TopicPartition as TP

log = logging.getLogger(__name__)
# Columns of kafka-python's ConsumerRecord: attribute reads in C, no Python per record.
_TOPIC, _PARTITION, _OFFSET, _KEY, _VALUE = map(operator.attrgetter, (
    "topic", "partition", "offset", "key", "value"))

def ensure_topics(cfg: KafkaConfig, partitions: int = 4, replication: int = 1,
                  memory_topic: str = "", extra: dict[str, int] | None = None) -> None:
    """Create the input, forecast and dead-letter topics where missing, the
    compacted memory topic if one is named, and ``extra`` (name → partitions)."""
    try:
        admin = KafkaAdminClient(**client_kwargs(cfg))
    except (NoBrokersAvailable, KafkaError) as exc:
        raise unreachable(cfg, exc) from None
    try:
        probe = KafkaConsumer(enable_auto_commit=False, **client_kwargs(cfg))
        existing = set(probe.topics())
        probe.close()
        wanted = [cfg.input_topic, cfg.forecast_topic, cfg.dead_letter_topic]
        new = [NewTopic(t, partitions, replication) for t in wanted if t not in existing]
        if memory_topic and memory_topic not in existing:
            new.append(NewTopic(memory_topic, partitions, replication,
                                topic_configs={"cleanup.policy": "compact"}))
        new += [NewTopic(t, n, replication) for t, n in (extra or {}).items()
                if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                admin.create_topics(new)
    finally:
        admin.close()


def _describe(exc: Exception) -> str:
    text = str(exc)  # kafka-python's errors often start with their class name already
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


class _Listener(ConsumerRebalanceListener):
    """Calls the daemon back. kafka-python logs and swallows a callback's exception
    and goes on serving the partitions (from their committed offsets, without their
    restored state), so an exception is kept and raised from the next ``poll``."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.error: Exception | None = None

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._call(self.source.on_revoked, revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._call(self.source.on_assigned, assigned)

    def _call(self, callback: PartitionsCallback | None, partitions: list[TopicPartition]) -> None:
        tps = sorted((tp.topic, tp.partition) for tp in partitions)
        if not tps or callback is None or self.error is not None:
            return
        try:
            callback(tps)
        except Exception as exc:  # raised by poll(), before any record is served
            self.error = exc


class KafkaSource(GroupFacts):
    """A consumer-group member; see :class:`streammeta.io.streams.Source`."""

    def __init__(self, cfg: KafkaConfig, on_error: ErrorCounter | None = None,
                 faults: Faults | None = None, deadline: Deadline | None = None) -> None:
        self.cfg = cfg
        self.faults = faults or Faults(cfg.fatal_after_s, on_error)
        self.deadline = deadline or Deadline(cfg.shutdown_timeout_s)
        self.on_assigned: PartitionsCallback | None = None
        self.on_revoked: PartitionsCallback | None = None
        self._healthy = False
        self._silent_reported = False
        kwargs = client_kwargs(cfg)
        if cfg.group_instance_id:
            kwargs["group_instance_id"] = cfg.group_instance_id  # static membership
        self._auth = RefusedAuthentication.watch(cfg, self.faults)
        try:
            self.consumer = KafkaConsumer(
                group_id=cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset=cfg.auto_offset_reset,
                session_timeout_ms=cfg.session_timeout_ms,
                max_poll_interval_ms=cfg.max_poll_interval_ms,
                heartbeat_interval_ms=cfg.heartbeat_interval_ms,
                max_poll_records=cfg.max_poll_records,
                isolation_level=cfg.isolation_level,
                # A missing input topic is a fault to report, not one to paper over
                # with a fresh empty topic.
                allow_auto_create_topics=False,
                # Tansu answers fetches larger than fetch_max_bytes asks for; a frame over
                # this limit makes kafka-python drop the connection and fetch again.
                receive_message_max_bytes=256 << 20,
                partition_assignment_strategy=(ASSIGNORS[cfg.assignor],),
                **kwargs,
            )
        except (NoBrokersAvailable, KafkaError) as exc:
            self._unwatch()
            raise unreachable(cfg, exc) from None
        if self._auth is not None and self._auth.cause:  # refused already: say so now
            self.consumer.close(autocommit=False, timeout_ms=1000)
            self._unwatch()
            raise BrokerError(f"cannot use Kafka at {cfg.bootstrap_servers}: {self._auth.cause}")
        self._listener = _Listener(self)
        self.consumer.subscribe([cfg.input_topic], listener=self._listener)

    def set_rebalance_listener(self, on_assigned: PartitionsCallback,
                               on_revoked: PartitionsCallback) -> None:
        self.on_assigned, self.on_revoked = on_assigned, on_revoked

    def poll(self, timeout_s: float) -> Records:
        try:
            batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            where = self._drop_broken_fetch()
            cause = _describe(exc)
            if isinstance(exc, InconsistentGroupProtocolError):
                cause = assignor_mismatch(self.cfg.group_id, self.cfg.client, self.cfg.assignor,
                                          cause)
            self.faults.error("poll", cause, persistent=not exc.retriable, where=where)
            self._healthy = False
            self.faults.check()
            return Records.of([])
        if self._listener.error is not None:  # the records of this poll are not served
            raise self._listener.error
        self._check_topic()
        if self._coordinator_silent():
            if not self._silent_reported:
                self.faults.error("heartbeat", "the group coordinator has not answered "
                                  f"heartbeats for {self.cfg.session_timeout_ms / 1000:.0f} s",
                                  persistent=False)
                self._silent_reported = True
            self._healthy = False
        else:
            self._silent_reported = False
            self._healthy = True
            self.faults.ok()
        self.faults.check()
        messages = [m for batch in batches.values() for m in batch]
        return Records(list(map(_TOPIC, messages)), list(map(_PARTITION, messages)),
                       list(map(_OFFSET, messages)), list(map(_KEY, messages)),
                       list(map(_VALUE, messages)), lambda i: messages[i].timestamp,
                       lambda i: messages[i].headers or ())

    def _drop_broken_fetch(self) -> str:
        """Where a batch failed to parse (unknown codec, corrupt batch), and forget it.

        kafka-python 2.3 keeps the half-parsed batch after the error, and the next
        ``poll`` spins on it forever (neither returning nor raising: the daemon could
        not even stop). Forgetting it makes the next fetch read the batch again and
        raise again, so the fault stays visible and bounded."""
        fetcher = getattr(self.consumer, "_fetcher", None)
        part = getattr(fetcher, "_next_partition_records", None)
        if part is None:
            return ""
        tp = part.topic_partition
        fetcher._next_partition_records = None  # type: ignore[union-attr]
        return f"{tp.topic}/{tp.partition} offset {part.next_fetch_offset}"

    def _check_topic(self) -> None:
        """A missing or forbidden input topic assigns nothing and raises nothing:
        report it as a persistent fault instead of waiting silently."""
        if self.consumer.assignment():
            return
        cluster = self.consumer._client.cluster  # kafka-python keeps no public view
        topic = self.cfg.input_topic
        if topic in cluster.unauthorized_topics:
            self.faults.error("poll", f"not authorised to read topic {topic!r}",
                              persistent=True, where=topic)
        elif cluster._last_successful_refresh_ms and cluster.partitions_for_topic(topic) is None:
            self.faults.error("poll", f"input topic {topic!r} does not exist "
                              f"on {self.cfg.bootstrap_servers}", persistent=True, where=topic)

    def commit(self, offsets: dict[TP, int]) -> None:
        assigned = self.consumer.assignment()
        to_commit = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                     for (t, p), o in offsets.items() if TopicPartition(t, p) in assigned}
        if not to_commit:
            return
        timeout_s = self.deadline.left(self.cfg.session_timeout_ms / 1000)
        try:
            # Bounded: kafka-python retries a commit to a frozen or cut-off broker forever,
            # and the loop would stop beating /healthz. A coordinator that has not answered
            # for a session timeout is gone for readiness too; a later commit covers these
            # offsets.
            self.consumer.commit(to_commit, timeout_ms=max(1, int(timeout_s * 1000)))
        except KafkaError as exc:
            raise BrokerError(f"commit failed: {exc}") from None

    def seek(self, offsets: dict[TP, int]) -> None:
        for (topic, partition), offset in offsets.items():
            self.consumer.seek(TopicPartition(topic, partition), offset)

    def ready(self) -> bool:
        return self._healthy and self.faults.healthy() and bool(self.consumer.assignment()) \
            and not self._coordinator_silent()

    def _coordinator_silent(self) -> bool:
        """No heartbeat answered for a whole session timeout: a broker that is frozen
        or cut off keeps its sockets open, so ``poll`` just returns nothing and no
        error is raised. (kafka-python keeps this state in private attributes.)"""
        coordinator = getattr(self.consumer, "_coordinator", None)
        heartbeat = getattr(coordinator, "heartbeat", None)
        return bool(self.consumer.assignment()) and heartbeat is not None \
            and heartbeat.session_timeout_expired()

    def lag(self) -> dict[int, int]:
        """Records behind the end of each assigned partition (from the last fetch)."""
        return {p: max(0, high - position) for (_, p), (position, high)
                in self.ends().items() if position is not None and high is not None}

    def ends(self, partitions: list[TP] | None = None) -> dict[TP, tuple[int | None, int | None]]:
        """Position and end (high watermark of the last fetch) of each of these
        assigned partitions (all assigned if None); None where not known yet."""
        out: dict[TP, tuple[int | None, int | None]] = {}
        wanted = None if partitions is None else set(partitions)
        for tp in self.consumer.assignment():
            if wanted is not None and (tp.topic, tp.partition) not in wanted:
                continue
            end = self.consumer.highwater(tp)  # end_offsets() is wrong on Tansu
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except KafkaError:
                position = None
            out[(tp.topic, tp.partition)] = (position, end)
        return out

    def close(self) -> None:
        # Leaving the group is best effort: bounded by what is left of the shutdown.
        timeout_ms = int(self.deadline.left(self.cfg.shutdown_timeout_s) * 1000)
        try:
            self.consumer.close(autocommit=False, timeout_ms=max(1, timeout_ms))
        except KafkaError as exc:
            log.warning("consumer close: %s", exc)
        self._unwatch()

    def _unwatch(self) -> None:
        if self._auth is not None:
            self._auth.unwatch()


class _Producer:
    """A producer that remembers whether anything failed since the last flush."""

    def __init__(self, cfg: KafkaConfig, deadline: Deadline | None = None) -> None:
        self.cfg = cfg
        self.deadline = deadline or Deadline(cfg.shutdown_timeout_s)
        self._lock = threading.Lock()
        self._failures: list[Exception] = []
        self.producer = self._build()

    def _build(self) -> KafkaProducer:
        codec = self.cfg.compression_type
        if codec in missing_codecs():
            raise BrokerError(f"kafka.compression_type = {codec!r} needs the Python module "
                              f"{CODEC_MODULES[codec]!r}, which cannot be imported here "
                              "(it is a dependency of streammeta: reinstall it)")
        try:
            return KafkaProducer(
                acks="all" if self.cfg.acks == "all" else 1,
                linger_ms=self.cfg.linger_ms,
                batch_size=self.cfg.batch_size,
                compression_type=None if codec == "none" else codec,
                retries=5,
                # "auto" is off here: kafka-python 2.3's idempotent producer failed every
                # send on the embedded broker (UnknownError from InitProducerId).
                enable_idempotence=self.cfg.enable_idempotence == "true",
                **client_kwargs(self.cfg))
        except (NoBrokersAvailable, KafkaError) as exc:
            raise unreachable(self.cfg, exc) from None

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._failures.append(exc)

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        try:
            future = self.producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as exc:  # e.g. buffer full or metadata timeout
            self._failed(exc)
            return
        future.add_errback(self._failed)

    def flush(self, timeout_s: float, waiting: Callable[[], object] | None = None) -> None:
        """Wait until everything sent was acknowledged or ``timeout_s`` passed (less
        once the daemon is stopping), calling ``waiting`` about once a second
        meanwhile; raise if anything failed."""
        deadline = time.monotonic() + self.deadline.left(timeout_s)
        while True:
            try:  # kafka-python's timeout is per batch, not for the whole flush
                self.producer.flush(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                break
            except KafkaTimeoutError as exc:
                if time.monotonic() >= deadline:
                    self._failed(exc)
                    break
                if waiting is not None:
                    waiting()
            except KafkaError as exc:
                self._failed(exc)
                break
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise BrokerError(f"{len(failures)} messages not acknowledged: {failures[0]!r}")

    def close(self, timeout_s: float) -> None:
        """Close within ``timeout_s`` (or what is left of the shutdown), whatever the
        broker does; unsent messages are dropped (their offsets were not committed)."""
        try:
            self.producer.close(timeout=self.deadline.left(timeout_s))
        except KafkaTimeoutError:
            # kafka-python's close raises from its flush before stopping its I/O thread;
            # stop it now, or the interpreter's exit would wait on it.
            sender = getattr(self.producer, "_sender", None)
            if sender is not None:
                _quiet_abort(sender)
                sender.force_close()
                sender.join(1.0)
            # Its close never got to mark it closed, so its __del__ would flush again
            # (raising from a finaliser, a traceback on stderr): it is closed now.
            self.producer._closed = True
            log.warning("producer closed with unacknowledged messages")
        except KafkaError as exc:
            log.warning("producer close: %s", exc)


def _quiet_abort(sender: Any) -> None:
    """kafka-python 2.3's I/O thread, force-closed while it expires batches itself, can
    remove a batch twice and die printing a ValueError traceback: the batches are being
    dropped on purpose (their offsets were not committed), so let it end quietly."""
    accumulator = getattr(sender, "_accumulator", None)
    if accumulator is None:
        return
    abort = accumulator.abort_incomplete_batches

    def quiet() -> None:
        with contextlib.suppress(ValueError):
            abort()

    accumulator.abort_incomplete_batches = quiet


class KafkaSink(ProducerSink):
    """Forecasts and dead letters through kafka-python; see :class:`ProducerSink`."""

    def __init__(self, cfg: KafkaConfig, deadline: Deadline | None = None) -> None:
        super().__init__(cfg, _Producer(cfg, deadline))


class ObservationWriter(TopicWriter):
    """Observations to the input topic through kafka-python (``streammeta replay``)."""

    def __init__(self, cfg: KafkaConfig, deadline: Deadline | None = None) -> None:
        super().__init__(cfg, _Producer(cfg, deadline))
