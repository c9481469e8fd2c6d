"""A replica's state through rebalances and checkpoints, for the daemon's loop.

On assignment the partitions' newest checkpointed state is restored and the
source seeks to the offsets it ends at; on revocation their state is saved and
forgotten; periodic checkpoints are written beside the loop, and the last one at
shutdown. Each outcome is counted in the metrics; a failed write is reported,
never raised into the loop (a full disk must not stop forecasting).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from streammeta.config import Config
from streammeta.errors import BrokerError
from streammeta.io.codec import Record
from streammeta.io.streams import Source, TopicPartition, next_offsets
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, Written
from streammeta.serve.metrics import Metrics

# The loop's own log: operators follow (and alert on) one logger for the loop.
log = logging.getLogger("streammeta.serve.daemon")
# How long a restored offset must stay beyond its partition's end, with nothing read
# from it, before it is taken as outside the log (fetches answer every 25-100 ms: a
# high watermark cached from an earlier assignment is replaced well within this).
BEYOND_END_S = 5.0


class StateKeeper:
    def __init__(self, checkpointer: Checkpointer, source: Source, metrics: Metrics,
                 engine: Engine, config: Config) -> None:
        self.checkpointer = checkpointer
        # Keep or drop the state of a restored offset outside the log (checkpoint.expired);
        # where an offset beyond the partition's end goes (kafka.auto_offset_reset).
        self.expired, self.reset = config.checkpoint.expired, config.kafka.auto_offset_reset
        # Restored offsets not yet seen inside their partition's log: → (offset, since
        # when the partition's end was seen below it, or None).
        self._unconfirmed: dict[TopicPartition, tuple[int, float | None]] = {}
        self.source = source
        self.metrics = metrics
        self.engine = engine
        self._retry_at = 0.0  # of a first checkpoint of partitions that failed
        self.to_commit: dict[TopicPartition, int] = {}  # restored offsets, for the loop

    def checkpoint_in_background(self) -> None:
        """Periodic checkpoints: the loop stops only for the snapshot."""
        checkpointer = self.checkpointer
        for outcome in checkpointer.outcomes():
            self._done(outcome)
        if checkpointer.due():
            started = time.perf_counter()
            if checkpointer.save_in_background():
                self.metrics.checkpoint_snapshot.observe(time.perf_counter() - started)

    def checkpoint(self) -> None:
        """A checkpoint of every owned partition, written before returning."""
        try:
            outcome: Written | Exception = self.checkpointer.save()
        except OSError as exc:
            outcome = exc
        for earlier in self.checkpointer.outcomes():
            self._done(earlier)
        self._done(outcome)

    def first_checkpoint_due(self, offsets: dict[TopicPartition, int]) -> bool:
        """A partition of these no checkpoint holds yet (and no failed try is recent)."""
        return (self.checkpointer.unpublished(p for _, p in offsets)
                and time.monotonic() >= self._retry_at)

    def advance(self, offsets: dict[int, int], records: int, first: bool = False) -> None:
        """Records up to these next offsets are applied and about to be committed.
        ``first`` (:meth:`first_checkpoint_due` when the batch was made, and the loop has
        stepped nothing since): checkpoint before the commit, since a partition's
        committed offsets would otherwise run ahead of any state a restart finds, and
        its entities would restart without the records before them. Once per ownership."""
        self.checkpointer.advance(offsets, records)
        if first:
            self.checkpoint()
            if self.checkpointer.unpublished(offsets):  # it failed: not again every batch
                self._retry_at = time.monotonic() + self.checkpointer.every_s

    def _done(self, outcome: Written | Exception) -> None:
        if isinstance(outcome, Exception):  # a full disk must not stop forecasting
            self.metrics.checkpoint_failures.inc()
            log.error("checkpoint failed: %s", outcome)
            return
        self.metrics.checkpoint_duration.observe(outcome.seconds)
        self.metrics.checkpoint_last_success.set_to_current_time()
        self.metrics.checkpoint_bytes.set(outcome.size)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Restore the partitions' state and seek the source to where it ends."""
        started = time.perf_counter()
        generation = getattr(self.source, "generation", lambda: 0)()
        resume = self.checkpointer.restore_partitions([p for _, p in partitions], generation)
        topic = {p: t for t, p in partitions}
        self._within_retention(resume, topic)
        if resume:
            self.source.seek({(topic[p], p): offset for p, offset in resume.items()})
            # Applied and acknowledged up to there: committed by the loop once assigned,
            # or an idle input leaves the group's offsets behind a commit that failed
            # on revocation (a session lost to a frozen broker).
            self.to_commit.update({(topic[p], p): offset for p, offset in resume.items()})
            self._unconfirmed.update({(topic[p], p): (offset, None)
                                      for p, offset in resume.items() if offset > 0})
        self.metrics.entities.set(len(self.engine))
        log.info("assigned partitions %s; state restored in %.3f s", [p for _, p in partitions],
                 time.perf_counter() - started)

    def commit_restored(self, polled: Sequence[Record],
                        commit: Callable[[dict[TopicPartition, int]], None]) -> None:
        """Commit the offsets restored since the last call (now assigned), but for the
        partitions of the batch just polled: that batch's own commit follows. First,
        restored offsets found beyond their partition's end move as Kafka would."""
        if self._unconfirmed:
            self._beyond_end()
        if self.to_commit:
            batch = next_offsets(polled).keys()
            restored, self.to_commit = self.to_commit, {}
            rest = {tp: o for tp, o in restored.items() if tp not in batch}
            if rest:
                commit(rest)

    def _within_retention(self, resume: dict[int, int], topic: dict[int, str]) -> None:
        """Restored offsets below the earliest retained one: continue from there."""
        earliest_of = getattr(self.source, "earliest", None)
        if not resume or earliest_of is None:
            return
        try:
            earliest = earliest_of([(topic[p], p) for p in resume])
        except BrokerError as exc:  # the restore stands; the fetch reports what is missing
            log.warning("earliest offsets unknown, restored ones not checked: %s", exc)
            return
        keep = self.expired == "keep"
        for (_, p), first in earliest.items():
            if p in resume and resume[p] < first:
                log.warning(
                    "partition %d: checkpoint offset %d is below the earliest retained offset "
                    "%d (%d records deleted by retention); continuing from %d with its state "
                    "%s", p, resume[p], first, first - resume[p], first,
                    "kept (its entities see a gap)" if keep else "dropped (entities start cold)")
                self.metrics.checkpoint_expired.inc()
                self.checkpointer.expire(p, first, keep_state=keep)
                resume[p] = first

    def _beyond_end(self) -> None:
        """A restored offset beyond the end of its partition (the topic deleted and
        recreated, its log truncated): Kafka answers the fetch with
        OFFSET_OUT_OF_RANGE and the client moves to ``kafka.auto_offset_reset``; a
        broker that answers an empty fetch instead (Tansu) would leave the partition
        waiting there while the records below it are never read. So once a partition's
        end, from fetches, has stayed below its restored offset for ``BEYOND_END_S``
        with nothing read, it moves there too: its earliest offset (or its end, with
        ``latest``), its state kept (or dropped, ``checkpoint.expired = "cold"``)."""
        ends = getattr(self.source, "ends", None)
        marks = ends(list(self._unconfirmed)) if callable(ends) else {}
        now = time.monotonic()
        for tp, (offset, since) in list(self._unconfirmed.items()):
            if tp not in marks:  # revoked (or the client cannot tell now)
                del self._unconfirmed[tp]
                continue
            position, end = marks[tp]  # librdkafka: no position until a record is read
            if end is None:  # not fetched yet
                continue
            if (position is not None and position != offset) or end >= offset:
                del self._unconfirmed[tp]  # read from, or inside the log
            elif since is None:
                self._unconfirmed[tp] = (offset, now)
            elif now - since >= BEYOND_END_S and self.source.ready():
                del self._unconfirmed[tp]
                self._move_beyond_end(tp, offset, end)

    def _move_beyond_end(self, tp: TopicPartition, offset: int, end: int) -> None:
        target = end
        if self.reset == "earliest":
            earliest_of = getattr(self.source, "earliest", None)
            try:
                target = earliest_of([tp]).get(tp, 0) if callable(earliest_of) else 0
            except BrokerError as exc:
                log.warning("partition %d: earliest offset unknown (%s); from 0", tp[1], exc)
                target = 0
        keep = self.expired == "keep"
        log.warning(
            "partition %d: checkpoint offset %d is beyond the partition's end %d (the topic "
            "was recreated or its log truncated); continuing from %d (kafka.auto_offset_reset "
            "= %s) with its state %s", tp[1], offset, end, target, self.reset,
            "kept" if keep else "dropped (entities start cold)")
        self.metrics.checkpoint_expired.inc()
        self.checkpointer.expire(tp[1], target, keep_state=keep)
        self.source.seek({tp: target})
        self.to_commit[tp] = target

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Save the partitions' state and forget it."""
        started = time.perf_counter()
        for tp in partitions:
            self._unconfirmed.pop(tp, None)
        try:
            self.checkpointer.release([p for _, p in partitions])
        except OSError as exc:  # the new owner restores an older checkpoint and replays
            self.metrics.checkpoint_failures.inc()
            log.error("checkpoint of revoked partitions failed: %s", exc)
        else:
            self.metrics.checkpoint_duration.observe(time.perf_counter() - started)
            self.metrics.checkpoint_last_success.set_to_current_time()
        self.metrics.entities.set(len(self.engine))

