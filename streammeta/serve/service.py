"""Wires the daemon to its source and sink, the metrics/health server and the
service manager; by default the source and sink are the configured Kafka ones."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from streammeta import assemble
from streammeta.config import Config, ConfigError
from streammeta.io.edge import KafkaEdge, make_kafka_edge
from streammeta.io.streams import Sink, Source
from streammeta.meta.memory import MemoryLink
from streammeta.meta.outer import OuterLoop, attach
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore
from streammeta.persistence.claim import MemberClaim, claim_member
from streammeta.persistence.spill import SpillStore
from streammeta.serve.daemon import Daemon, Notifier, Progress, log_progress
from streammeta.serve.health import HealthServer, LoopHealth
from streammeta.serve.ingest import Follow
from streammeta.serve.metrics import Metrics

log = logging.getLogger(__name__)


class Service:
    """``streammeta run``: the daemon, its outer loop (``meta.role = "all"``) or the
    trainer's versions it follows (``"ingest"``, ``serve/ingest.py``), checkpoints and
    probes.

    ``source``/``sink``: where records come from and forecasts go, both or neither
    (default: the Kafka edge of ``[kafka]``, ``streammeta.io.edge``); ``memory_link``:
    how replicas share the task memory (default with the Kafka edge: the topic
    ``memory.topic``, if set); ``notifier``: the service manager (default: systemd's).
    """

    def __init__(self, config: Config,
                 on_progress: Callable[[Progress], None] | None = None, *,
                 source: Source | None = None, sink: Sink | None = None,
                 memory_link: MemoryLink | None = None,
                 notifier: Notifier | None = None) -> None:
        if (source is None) != (sink is None):
            raise TypeError("Service takes both source and sink, or neither (Kafka)")
        self.config = config
        self.metrics = Metrics()
        self.health = LoopHealth(config.metrics.stall_after_s)
        self.server: HealthServer | None = None
        if config.metrics.enabled:
            self.server = HealthServer(config.metrics.host, config.metrics.port,
                                       self.metrics.registry, self.health)
        self.edge: KafkaEdge | None = None
        self.claim: MemberClaim | None = None
        try:
            store, spill = None, None
            c = config.checkpoint
            if c.dir:
                member = c.member or config.kafka.group_instance_id or socket.gethostname()
                store = CheckpointStore(c.dir, member=member, keep=c.keep, options=c.options())
                self.claim = claim_member(store.files, store.member)  # one process a name
                if config.engine.evict:
                    spill = SpillStore(store.files, store.member)
            if source is None or sink is None:
                self.edge = make_kafka_edge(config, on_error=self.metrics.count_error)
                source, sink = self.edge.source, self.edge.sink
                memory_link = memory_link or self.edge.memory_link
            if notifier is None:
                from streammeta.serve import systemd

                notifier = systemd.Notifier()
            engine = assemble.engine(config, spill)
            checkpointer = None if store is None else Checkpointer(
                store, engine, c, frequency=config.series.frequency)
            # meta.role ingest: θ comes from the trainer through the versions topic.
            self.follow: Follow | None = None
            if config.meta.role == "ingest":
                member = store.member if store is not None else (
                    config.kafka.group_instance_id or socket.gethostname())
                self.follow = Follow(config, engine, self.metrics, checkpointer, member,
                                     self.edge.deadline if self.edge is not None else None)
            elif config.meta.role != "all":
                raise ConfigError("meta.role", config.meta.role,
                                  "'all' or 'ingest' here (a trainer runs with `streammeta train`)")
            self.daemon = Daemon(config, source, sink, self.metrics, engine=engine,
                                 health=self.health, notifier=notifier,
                                 on_progress=_with_status(on_progress or log_progress,
                                                          notifier),
                                 checkpointer=checkpointer,
                                 memory_link=memory_link, between_batches=self.follow)
            self.outer: OuterLoop | None = None
            if config.meta.enabled and self.follow is None:
                self.outer = attach(config, engine, self.daemon.offer_params,
                                    on_result=self.metrics.outer_result)
        except BaseException:  # a start that fails midway leaves nothing open
            self._close_unstarted(source, sink, memory_link, getattr(self, "follow", None))
            raise

    def _close_unstarted(self, source: Source | None, sink: Sink | None,
                         memory_link: MemoryLink | None, follow: Follow | None = None) -> None:
        """Close what the daemon would have closed on its way out, had it run."""
        for client in (follow, sink, source, memory_link):
            if client is not None:
                try:
                    client.close()
                except Exception:  # the start's error is the one to report
                    log.exception("closing %s after a failed start", type(client).__name__)
        if self.server is not None:
            self.server.stop()
        if self.claim is not None:
            self.claim.release()

    @property
    def metrics_url(self) -> str | None:
        return self.server.url + "/metrics" if self.server is not None else None

    def stop(self) -> None:
        if self.edge is not None:
            self.edge.stop()  # from now on the edge's blocking calls end within the bound
        self.daemon.stop()

    def run(self) -> None:
        ran = False
        try:
            if self.server is not None:
                self.server.start()
                log.info("metrics and probes on %s", self.server.url)
            if self.outer is not None:
                self.outer.start()
            if self.follow is not None:
                self.follow.start()
            ran = True
            self.daemon.run()  # closes the source, sink and memory link on its way out
        finally:
            if self.outer is not None:
                self.outer.stop()
            if self.follow is not None:
                self.follow.close()
            if not ran:
                self._close_unstarted(self.daemon.source, self.daemon.sink,
                                      self.daemon.memory_link)
            elif self.server is not None:
                self.server.stop()
            if self.claim is not None:  # after the shutdown checkpoint
                self.claim.release()


def _with_status(report: Callable[[Progress], None],
                 notifier: Notifier) -> Callable[[Progress], None]:
    """Each progress report also becomes the service manager's status line (systemd:
    ``STATUS=``, shown by ``systemctl status``), as deploy/systemd/README.md says."""
    status = getattr(notifier, "status", None)
    if not callable(status):
        return report

    def both(p: Progress) -> None:
        report(p)
        status(f"{p.observations} observations ({p.events_per_s:.0f}/s), {p.entities} "
               f"entities, {p.dead_letters} dead letters, model v{p.model_version}")
    return both
