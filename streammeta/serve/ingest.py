"""``meta.role = "ingest"``: a replica that serves the trainer's versions.

Between batches (:class:`Follow` is the daemon's ``between_batches``): swap in the
newest version read from the versions topic, and send task samples to the trainer
(``meta/samples.py``). At start, the versions topic is read to its end first, so a
replica that starts, restarts or takes over partitions serves the newest
published version (version 0, the configured initial θ, while none exists).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from streammeta.config import Config
from streammeta.io.edge import Writer, make_tail, make_writer
from streammeta.io.faults import Deadline
from streammeta.meta.outer import layout_of, task_buffer
from streammeta.meta.samples import SampleSender
from streammeta.meta.versions import ROOT_LINE, Version, VersionFollower
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer
from streammeta.serve.metrics import Metrics

log = logging.getLogger(__name__)


class Follow:
    """``deadline``: the edge's shutdown deadline, which then bounds the samples'
    writer's close too (``Service.stop``)."""

    def __init__(self, config: Config, engine: Engine, metrics: Metrics,
                 checkpointer: Checkpointer | None, member: str,
                 deadline: Deadline | None = None) -> None:
        config = config.resolved()
        cfg, meta = config.kafka, config.meta
        self.engine, self.metrics, self.checkpointer = engine, metrics, checkpointer
        if checkpointer is not None:
            checkpointer.line = ROOT_LINE  # version 0 until the topic says otherwise
            checkpointer.restores_params = False
        self.follower = VersionFollower(make_tail(cfg, meta.versions_topic),
                                        model.ModelShape.of(config))
        self.writer: Writer | None = None
        try:
            self.writer = make_writer(
                dataclasses.replace(cfg, input_topic=meta.samples_topic), deadline)
            buffer = task_buffer(config)
            engine.attach_tasks(buffer)
            layout = layout_of(config)
            self.sender = SampleSender(buffer, self.writer, member, meta.samples_per_s,
                                       min(layout.young_length, layout.length),
                                       seed=config.model.seed,
                                       flush_timeout_s=cfg.request_timeout_ms / 1000)
        except BaseException:  # a start that fails leaves no client open
            self.follower.close()
            if self.writer is not None:
                self.writer.close()
            raise
        self._counted = (0, 0, 0)  # the sender's sent, lost and deferred, last counted
        self.timeout_s = cfg.request_timeout_ms / 1000

    def start(self) -> None:
        """Serve the newest published version before the first batch."""
        newest = self.follower.catch_up(self.timeout_s)
        if newest is not None:
            self._serve(newest)

    def __call__(self) -> None:
        newest = self.follower.poll(0)
        if newest is not None:
            self._serve(newest)
        self.sender()
        self._count()

    def _count(self) -> None:
        s, m = self.sender, self.metrics
        sent, lost, deferred = s.sent, s.lost, s.deferred
        m.task_samples.inc(sent - self._counted[0])
        m.task_samples_dropped.labels(reason="unacknowledged").inc(lost - self._counted[1])
        m.task_samples_dropped.labels(reason="queue_full").inc(deferred - self._counted[2])
        self._counted = (sent, lost, deferred)

    def _serve(self, v: Version) -> None:
        if v.version <= self.engine.version:
            return
        self.engine.swap(v.params, v.version)  # between batches: the loop's thread
        if self.checkpointer is not None:
            self.checkpointer.line = v.line
        m = self.metrics
        m.model_version.set(v.version)
        m.version_newest.set(v.version)
        m.version_lag.set(0)
        m.version_lag_seconds.set(max(0.0, time.time() - v.published_at_ms / 1000))
        log.info("serving model version %d (published %d ms ago)", v.version,
                 time.time() * 1000 - v.published_at_ms)

    def close(self) -> None:
        try:
            self.follower.close()
        finally:
            self.sender.close()  # and its writer, within the shutdown's deadline
            self._count()
