"""``streammeta train`` (``meta.role = "trainer"``): the deployment's one outer loop.

No input is consumed. The trainer reads the task samples that the ingesting
replicas send (``meta/samples.py``) into its task buffer, runs the outer loop on
``meta.device`` unpaced (it has the machine to itself), judges candidates on
held-out entities drawn from every replica's samples, and publishes each promoted
version to the versions topic (``meta/versions.py``), which every replica follows.

Exactly one trainer trains: trainers are members of one consumer group on the
1-partition lease topic, and only the member assigned that partition runs the
outer loop (a standby keeps its buffer filled, ready to take over). On taking the
lease, a trainer reads the versions topic to its end and continues from the newest
version, so a version number is never used twice; the line of versions it
continues is the newest record's (a new line only when the topic is empty). If no
trainer runs, the replicas keep serving the last version.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

from streammeta.config import Config
from streammeta.errors import BrokerError
from streammeta.io.edge import make_lease, make_tail, make_writer
from streammeta.io.streams import TopicPartition
from streammeta.meta.outer import OuterLoop, OuterResult, learner_for, task_buffer
from streammeta.meta.samples import SampleIntake
from streammeta.meta.versions import ROOT_LINE, Version, VersionFollower, encode
from streammeta.online import model
from streammeta.persistence import params as params_mod
from streammeta.serve.health import HealthServer, LoopHealth
from streammeta.serve.metrics import Metrics

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config = config.resolved()
        self.metrics = metrics if metrics is not None else Metrics()
        self.health = LoopHealth(config.metrics.stall_after_s)
        self.server: HealthServer | None = None
        if config.metrics.enabled:
            self.server = HealthServer(config.metrics.host, config.metrics.port,
                                       self.metrics.registry, self.health)
        cfg, meta = config.kafka, config.meta
        self.incarnation = uuid.uuid4().hex[:12]
        self.line = ROOT_LINE
        shape = model.ModelShape.of(config)
        self._serving: tuple[model.Params, int] = params_mod.initial(config)
        self._lock = threading.Lock()
        # Dedicated to training: the outer loop is not paced to a share of a core.
        run_config = config.replace("meta", cpu_share=1.0)
        buffer = task_buffer(run_config)
        self.intake = SampleIntake(buffer, 4 * meta.buffer_entities, config.model.context_dim)
        self.outer = OuterLoop(buffer, learner_for(run_config, self._serving[0]),
                               run_config.meta, self.serving, self.publish, self._result,
                               seed=config.model.seed, on_step=self._between_steps)
        self.samples = make_tail(cfg, meta.samples_topic)
        self.versions = VersionFollower(make_tail(cfg, meta.versions_topic), shape)
        self.writer = make_writer(dataclasses.replace(cfg, input_topic=meta.versions_topic))
        self.lease = make_lease(cfg, meta)
        self.lease.set_rebalance_listener(self._assigned, self._revoked)
        self.leading = False
        self._caught_up = False
        self._stop = threading.Event()

    # -- what the outer loop calls -----------------------------------------------
    def serving(self) -> tuple[model.Params, int]:
        with self._lock:
            return self._serving

    def publish(self, params: model.Params, version: int) -> None:
        """Write a promoted version and wait for the broker's acknowledgement; only then
        is it the version the next candidates descend from."""
        if not self.leading:  # the lease moved during this run: the holder publishes now
            log.warning("not publishing version %d: this trainer lost the lease", version)
            return
        with self._lock:
            parent = self._serving[1]
        record = Version(version, parent, self.line, self.incarnation,
                         int(time.time() * 1000), params)
        self.writer.send(str(version).encode(), encode(record))
        self.writer.flush(self.config.kafka.shutdown_timeout_s)
        with self._lock:
            self._serving = (params, version)
        self.metrics.model_version.set(version)
        self.metrics.version_newest.set(version)
        log.info("published version %d (from %d, line %s)", version, parent, self.line)

    def _result(self, result: OuterResult) -> None:
        self.metrics.outer_result(result)
        tasks = self.config.meta.steps * self.config.meta.tasks_per_step
        rate = tasks / max(result.seconds, 1e-9)
        self.metrics.trainer_tasks_per_second.set(rate)
        log.info("trainer: %d tasks in %.2f s (%.0f tasks/s, judging included) on %s", tasks,
                 result.seconds, rate, self.outer.learner.device)

    def _between_steps(self) -> None:
        """Within a run of the outer loop, which this thread runs: a run on the CPU
        can outlast ``metrics.stall_after_s`` (``/healthz`` and the liveness probe
        would fail a trainer that is working) and the group's poll interval (the
        lease would move away mid-run)."""
        self.health.beat()
        self.lease.poll(0)

    # -- the lease -----------------------------------------------------------------
    def _assigned(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            self.leading, self._caught_up = True, False
            self.metrics.trainer_leading.set(1)
            log.info("trainer %s holds the lease", self.incarnation)

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        if partitions and self.leading:
            self.leading = False
            self.metrics.trainer_leading.set(0)
            log.info("trainer %s lost the lease", self.incarnation)

    def _take_over(self) -> None:
        """Continue from the newest version on the topic (its line, its number)."""
        newest = self.versions.catch_up(self.config.kafka.request_timeout_ms / 1000)
        if not self.versions.tail.at_end():
            return  # try again on the next iteration: never number without the end
        if newest is not None:
            with self._lock:
                self._serving = (newest.params, newest.version)
            self.line = newest.line
            self.outer.version = max(self.outer.version, newest.version)
        elif self.line == ROOT_LINE:
            self.line = self.incarnation  # the first trainer of this deployment
        self._caught_up = True
        self.metrics.version_newest.set(self.serving()[1])
        log.info("trainer %s continues from version %d (line %s)", self.incarnation,
                 self.serving()[1], self.line)

    # -- the loop --------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self.outer.stop(0)  # a meta-step in progress ends at its step

    def run(self) -> None:
        if self.server is not None:
            self.server.start()
        try:
            while not self._stop.is_set():
                self.lease.poll(0.1)  # heartbeats; the lease's callbacks run in here
                taken = self.intake.take(self.samples.poll(0))
                self.metrics.task_samples.inc(taken)
                self.versions.poll(0)
                self.health.beat()
                self.health.set_ready(self.leading)
                if not self.leading:
                    continue
                if not self._caught_up:
                    self._take_over()
                elif self.outer.tick() is None:
                    self._stop.wait(0.1)
        finally:
            self._close()

    def _close(self) -> None:
        for close in (self.lease.close, self.samples.close, self.versions.close,
                      self.writer.close):
            try:
                close()
            except BrokerError as exc:
                log.warning("closing: %s", exc)
        if self.server is not None:
            self.server.stop()
