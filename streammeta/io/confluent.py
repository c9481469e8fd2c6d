"""The Kafka edge through confluent-kafka, librdkafka (``kafka.client = "confluent"``).

The same semantics as ``streammeta.io.kafka`` (kafka-python), about 5× its
throughput: every codec built in, OAUTHBEARER through OIDC, the idempotent
producer, cooperative-sticky assignment.

* :class:`ConfluentSource` — a consumer-group member with manual commits; rebalance
  callbacks call the daemon, whose seeks inside them become the assignment's offsets.
* :class:`ConfluentSink` — forecasts and dead letters; ``flush`` raises unless every
  message since the last flush was acknowledged.
* :class:`ConfluentWriter` — the producer behind ``streammeta replay``.
* :func:`ensure_topics` — topic creation. Client settings: ``streammeta.io.confluent_settings``.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable
from itertools import compress, repeat
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as CTP

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError
from streammeta.io.codec import Records
from streammeta.io.confluent_group import GroupFacts
from streammeta.io.confluent_settings import (
    ASSIGNORS,
    Liveness,
    consumer_settings,
    describe,
    explain,
    is_persistent,
    producer_settings,
)
from streammeta.io.faults import Deadline, ErrorCounter, Faults
from streammeta.io.producing import ProducerSink, TopicWriter
from streammeta.io.streams import PartitionsCallback
from streammeta.io.streams import TopicPartition as TP

log = logging.getLogger("streammeta.io.kafka")

_timestamp = operator.itemgetter(1)  # of (timestamp type, timestamp)


def _columns(messages: list[Message]) -> Records:
    """The messages as columns: a few C calls a message, no Python object made for one
    (the timestamp only of the records the daemon samples for latency)."""
    return Records(list(map(Message.topic, messages)),  # type: ignore[arg-type]
                   list(map(Message.partition, messages)),  # type: ignore[arg-type]
                   list(map(Message.offset, messages)),  # type: ignore[arg-type]
                   list(map(Message.key, messages)), list(map(Message.value, messages)),
                   lambda i: _timestamp(messages[i].timestamp()),
                   lambda i: cast(Any, messages[i].headers()) or ())
_MISSING_TOPIC = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                  KafkaError.TOPIC_AUTHORIZATION_FAILED)


def ensure_topics(cfg: KafkaConfig, partitions: int = 4, replication: int = 1,
                  memory_topic: str = "", extra: dict[str, int] | None = None) -> None:
    """Create the input, forecast and dead-letter topics where missing, the
    compacted memory topic if one is named, and ``extra`` (name → partitions)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(producer_settings(cfg, Faults(cfg.fatal_after_s), "admin"))
    timeout_s = cfg.request_timeout_ms / 1000
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {cfg.bootstrap_servers}: {exc}") from None
    wanted = [cfg.input_topic, cfg.forecast_topic, cfg.dead_letter_topic]
    new = [NewTopic(t, partitions, replication) for t in wanted if t not in existing]
    if memory_topic and memory_topic not in existing:
        new.append(NewTopic(memory_topic, partitions, replication,
                            config={"cleanup.policy": "compact"}))
    new += [NewTopic(t, n, replication) for t, n in (extra or {}).items() if t not in existing]
    for topic, future in (admin.create_topics(new, request_timeout=timeout_s) if new else {}
                          ).items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # created meanwhile
                raise BrokerError(f"creating topic {topic!r}: {exc}") from None


def _reach(consumer: Consumer, cfg: KafkaConfig, faults: Faults) -> None:
    """librdkafka connects lazily: fail at start, as kafka-python does. Asked in
    slices, serving the client's errors between them, so that a persistent one
    (credentials refused) ends the start at once, named, not as a timeout."""
    deadline = time.monotonic() + cfg.request_timeout_ms / 1000
    while True:
        try:
            consumer.list_topics(timeout=min(1.0, max(0.001, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            consumer.poll(0)  # serves error_cb: the faults hear the cause
            refused = faults.persistent_cause()
            if refused or time.monotonic() >= deadline:
                consumer.close()
                raise BrokerError(f"cannot reach Kafka at {cfg.bootstrap_servers}: "
                                  f"{refused or describe(exc.args[0])}") from None
        except BaseException:  # a stop while starting (SIGTERM): the start is abandoned
            consumer.close()
            raise


class ConfluentSource(GroupFacts):
    """A consumer-group member; see :class:`streammeta.io.streams.Source`."""

    def __init__(self, cfg: KafkaConfig, on_error: ErrorCounter | None = None,
                 faults: Faults | None = None, deadline: Deadline | None = None,
                 liveness: Liveness | None = None) -> None:
        self.cfg = cfg
        self.faults = faults or Faults(cfg.fatal_after_s, on_error)
        self.deadline = deadline or Deadline(cfg.shutdown_timeout_s)
        self.liveness = liveness or Liveness(cfg.session_timeout_ms / 1000)
        self.on_assigned: PartitionsCallback | None = None
        self.on_revoked: PartitionsCallback | None = None
        self._cooperative = ASSIGNORS[cfg.assignor] == "cooperative-sticky"
        self._in_callback = False
        self._pending_seek: dict[TP, int] = {}
        self._callback_error: Exception | None = None
        self._closing = False
        self._missing_topic = ""  # the cause, while the input topic is missing
        self._polled_ok = False
        self._unconfirmed: dict[TP, int] = {}  # offsets committed, not yet confirmed
        self._commit_again = False
        self.consumer = Consumer({**consumer_settings(cfg, self.faults, self.liveness),
                                  "on_commit": self._committed})
        _reach(self.consumer, cfg, self.faults)
        self.consumer.subscribe([cfg.input_topic], on_assign=self._assigned,
                                on_revoke=self._revoked, on_lost=self._revoked)

    def set_rebalance_listener(self, on_assigned: PartitionsCallback,
                               on_revoked: PartitionsCallback) -> None:
        self.on_assigned, self.on_revoked = on_assigned, on_revoked

    # -- rebalances (called by librdkafka from inside consume/poll) -----------------
    def _call(self, callback: PartitionsCallback | None, partitions: list[CTP]) -> None:
        tps = sorted((tp.topic, tp.partition) for tp in partitions)
        if not tps or callback is None or self._closing or self._callback_error is not None:
            return
        self._in_callback = True
        try:
            callback(tps)
        except Exception as exc:  # raised by poll(), before any record is served
            self._callback_error = exc
        finally:
            self._in_callback = False

    def _assigned(self, consumer: Consumer, partitions: list[CTP]) -> None:
        self._pending_seek = {}
        self._call(self.on_assigned, partitions)
        for tp in partitions:  # the daemon's seeks: where its restored state resumes
            tp.offset = self._pending_seek.get((tp.topic, tp.partition), tp.offset)
        self._pending_seek = {}
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self._missing_topic = ""

    def _revoked(self, consumer: Consumer, partitions: list[CTP]) -> None:
        self._call(self.on_revoked, partitions)  # the daemon commits their offsets
        for tp in partitions:
            self._unconfirmed.pop((tp.topic, tp.partition), None)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    # -- the Source protocol ---------------------------------------------------------
    def poll(self, timeout_s: float) -> Records:
        if self._commit_again:
            self._commit_again = False
            self.commit(dict(self._unconfirmed))
        # Wait for the first message only, then take what is already fetched: a batch
        # never waits for the timeout to fill up (latency at moderate rates).
        first = self.consumer.poll(timeout_s)
        messages = [] if first is None else [first]
        if first is not None and self.cfg.max_poll_records > 1:
            messages.extend(self.consumer.consume(self.cfg.max_poll_records - 1, 0))
        if self._callback_error is not None:  # the records of this poll are not served
            raise self._callback_error
        errors = list(map(Message.error, messages))
        failed = any(map(operator.is_not, errors, repeat(None)))  # KafkaError == None raises
        if failed:  # the errors are reported, the records served
            for m, error in zip(messages, errors, strict=True):
                if error is not None:
                    self._poll_error(m, error)
            messages = list(compress(messages, map(operator.is_, errors, repeat(None))))
        records = _columns(messages)
        if self._missing_topic and not self.consumer.assignment():
            # Reported once by librdkafka; it lasts until the topic exists.
            self.faults.error("poll", self._missing_topic, persistent=True,
                              where=self.cfg.input_topic)
            failed = True
        if not failed:
            self._polled_ok = True
            self.faults.ok()
        self.faults.check()
        return records

    def _poll_error(self, message: Message, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        where = ""
        if message.topic():
            where = f"{message.topic()}/{message.partition()}"
            offset = message.offset()
            if offset is not None and offset >= 0:
                where += f" offset {offset}"
        cause = explain(error, self.cfg)
        if error.code() in _MISSING_TOPIC:
            what = "may not be read" if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED \
                else "does not exist"
            cause = self._missing_topic = (f"input topic {self.cfg.input_topic!r} {what} on "
                                           f"{self.cfg.bootstrap_servers} ({cause})")
        self._polled_ok = False
        self.faults.error("poll", cause, persistent=is_persistent(error), where=where)

    def commit(self, offsets: dict[TP, int]) -> None:
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        to_commit = [CTP(t, p, o) for (t, p), o in offsets.items() if (t, p) in assigned]
        if not to_commit:
            return
        # Asynchronous: the loop never waits for the coordinator (librdkafka serialises
        # calls on a consumer, so a synchronous commit to a frozen broker would hold
        # every poll until socket.timeout.ms); a failure comes to _committed and the
        # next poll commits again what is not confirmed (an idle input makes no later
        # commit that would cover it); close() waits for the last one.
        for tp in to_commit:
            self._unconfirmed[(tp.topic, tp.partition)] = tp.offset
        try:
            self.consumer.commit(offsets=to_commit, asynchronous=True)
        except KafkaException as exc:
            raise BrokerError(f"commit failed: {exc}") from None

    def _committed(self, error: KafkaError | None, partitions: list[CTP]) -> None:
        """The outcome of an asynchronous commit (served by poll)."""
        failed = [tp for tp in partitions or [] if tp.error is not None]
        for tp in partitions or []:
            key = (tp.topic, tp.partition)
            if tp.error is None and error is None and self._unconfirmed.get(key, -1) <= tp.offset:
                self._unconfirmed.pop(key, None)
        self._commit_again = bool(self._unconfirmed) and (error is not None or bool(failed))
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            self.faults.error("commit", describe(error), persistent=False)
        elif failed:
            tp = failed[0]
            self.faults.error("commit", str(tp.error), persistent=False,
                              where=f"{tp.topic}/{tp.partition}")

    def seek(self, offsets: dict[TP, int]) -> None:
        if self._in_callback:  # applied to the assignment when the callback returns
            self._pending_seek.update(offsets)
            return
        for (topic, partition), offset in offsets.items():
            try:
                self.consumer.seek(CTP(topic, partition, offset))
            except KafkaException as exc:
                raise BrokerError(f"seek {topic}/{partition} to {offset}: {exc}") from None

    def ready(self) -> bool:
        return self._polled_ok and self.faults.healthy() and self.liveness.answering() \
            and bool(self.consumer.assignment())

    def lag(self) -> dict[int, int]:
        """Records behind the end of each assigned partition (from the last fetch)."""
        return {p: max(0, high - position) for (_, p), (position, high)
                in self.ends().items() if position is not None and high is not None}

    def ends(self, partitions: list[TP] | None = None) -> dict[TP, tuple[int | None, int | None]]:
        """Position and end (high watermark of the last fetch) of each of these assigned
        partitions (all if None); None where not known yet (the position: until a record
        of the partition was read since it was assigned)."""
        wanted = [tp for tp in self.consumer.assignment()
                  if partitions is None or (tp.topic, tp.partition) in partitions]
        try:
            marks = [(tp, self.consumer.get_watermark_offsets(tp, cached=True)[1])
                     for tp in self.consumer.position(wanted)]
        except KafkaException:
            return {}
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None,
                                           high if high >= 0 else None) for tp, high in marks}

    def close(self) -> None:
        """Leave the group within what is left of the shutdown (best effort): a frozen
        broker would hold librdkafka's close for a session timeout or longer."""
        self._closing = True  # the daemon has checkpointed already: no callbacks now
        done = threading.Event()

        def close() -> None:
            try:
                self.consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer close: %s", exc)
            done.set()

        threading.Thread(target=close, name="streammeta-consumer-close", daemon=True).start()
        if not done.wait(self.deadline.left(self.cfg.shutdown_timeout_s)):
            log.warning("consumer close did not finish in time; leaving the group to the "
                        "session timeout")


class _Producer:
    """A producer that remembers whether anything failed since the last flush
    (librdkafka reports only failed deliveries: ``delivery.report.only.error``)."""

    def __init__(self, cfg: KafkaConfig, deadline: Deadline | None = None,
                 faults: Faults | None = None, liveness: Liveness | None = None) -> None:
        self.cfg = cfg
        self.deadline = deadline or Deadline(cfg.shutdown_timeout_s)
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._settings = producer_settings(cfg, faults or Faults(cfg.fatal_after_s), "produce",
                                           liveness)
        self._generation = 0
        self.producer = self._build()

    def _build(self) -> Producer:
        generation = self._generation

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None and generation == self._generation:  # not a dropped one's
                with self._lock:
                    self._failures.append(describe(error))

        return Producer({**self._settings, "on_delivery": delivered})

    def _rebuild(self) -> None:
        """A new producer in place of one whose batch was not acknowledged in time.

        An idempotent producer whose broker lost its producer id (the embedded broker
        after a restart) waits on its sequence forever without an error: a new one
        starts a new id. What the old one still holds is dropped (the daemon re-sends
        the batch, uncommitted); it is destroyed on a thread, away from the loop."""
        self._generation += 1
        old, self.producer = self.producer, self._build()

        def drop() -> None:
            old.purge(in_queue=True, in_flight=True, blocking=False)
            old.flush(0)

        threading.Thread(target=drop, name="streammeta-producer-drop", daemon=True).start()

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=cast(Any, headers))
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.05)
                if self.deadline.started and self.deadline.left(1.0) <= 0:
                    self._failures.append("the producer's queue stayed full")
                    return
            except KafkaException as exc:
                with self._lock:
                    self._failures.append(str(exc))
                return

    def flush(self, timeout_s: float, waiting: Callable[[], object] | None = None) -> None:
        """Wait until everything sent was acknowledged or ``timeout_s`` passed (less
        once the daemon is stopping), calling ``waiting`` about once a second
        meanwhile; raise if anything failed."""
        deadline = time.monotonic() + self.deadline.left(timeout_s)
        while True:
            left = self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            if left == 0:
                break
            if time.monotonic() >= deadline:
                with self._lock:
                    self._failures.append(f"{left} messages unacknowledged after the timeout")
                if self._settings["enable.idempotence"] and not self.deadline.started:
                    self._rebuild()
                break
            if waiting is not None:
                waiting()
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise BrokerError(f"{len(failures)} messages not acknowledged: {failures[0]}")

    def close(self, timeout_s: float) -> None:
        """Close within ``timeout_s`` (or what is left of the shutdown); unsent messages
        are dropped (their offsets were not committed)."""
        left = self.producer.flush(self.deadline.left(timeout_s))
        if left:
            self.producer.purge(in_queue=True, in_flight=True, blocking=False)
            self.producer.flush(0)
            log.warning("producer closed with %d unacknowledged messages", left)


class ConfluentSink(ProducerSink):
    """Forecasts and dead letters through librdkafka; see :class:`ProducerSink`."""

    def __init__(self, cfg: KafkaConfig, deadline: Deadline | None = None,
                 faults: Faults | None = None, liveness: Liveness | None = None) -> None:
        self._client = _Producer(cfg, deadline, faults, liveness)
        super().__init__(cfg, self._client)

    def send_forecasts(self, messages: list[tuple[bytes, bytes]],
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        produce, topic = self._client.producer.produce, self.cfg.forecast_topic
        send, fixed = self._client.send, cast(Any, headers)
        # The fast path: the one call a message that the contract's headers allow (the
        # library copies them per message: about half the call's cost, measured);
        # send() handles a full queue and errors.
        for key, value in messages:
            try:
                produce(topic, value, key, headers=fixed)
            except (BufferError, KafkaException):
                send(topic, key, value, headers)


class ConfluentWriter(TopicWriter):
    """Observations to the input topic through librdkafka (``streammeta replay``)."""

    def __init__(self, cfg: KafkaConfig, deadline: Deadline | None = None) -> None:
        super().__init__(cfg, _Producer(cfg, deadline))
