"""Wires the daemon to its source and sink, the metrics/health server and the
service manager; by default the source and sink are the configured Kafka ones."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from streammeta import assemble
from streammeta.config import Config
from streammeta.io.streams import Sink, Source
from streammeta.meta.memory import MemoryLink, key_dim
from streammeta.meta.outer import OuterLoop, attach
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore
from streammeta.persistence.spill import SpillStore
from streammeta.serve.daemon import Daemon, Notifier, Progress
from streammeta.serve.health import HealthServer, LoopHealth
from streammeta.serve.metrics import Metrics

log = logging.getLogger(__name__)


class Service:
    """``streammeta run``: the daemon, its outer loop, checkpoints and probes.

    ``source``/``sink``: where records come from and forecasts go (default: the
    Kafka consumer and producer of ``[kafka]``); ``memory_link``: how replicas share
    the task memory (default: the Kafka topic ``memory.topic``, if set);
    ``notifier``: the service manager (default: systemd's).
    """

    def __init__(self, config: Config,
                 on_progress: Callable[[Progress], None] | None = None, *,
                 source: Source | None = None, sink: Sink | None = None,
                 memory_link: MemoryLink | None = None,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.health = LoopHealth(config.metrics.stall_after_s)
        self.server: HealthServer | None = None
        if config.metrics.enabled:
            self.server = HealthServer(config.metrics.host, config.metrics.port,
                                       self.metrics.registry, self.health)
        if source is None or sink is None or (
                memory_link is None and config.memory.enabled and config.memory.topic):
            source, sink, memory_link = self._kafka(source, sink, memory_link)
        if notifier is None:
            from streammeta.serve import systemd

            notifier = systemd.Notifier()
        store, spill = None, None
        c = config.checkpoint
        if c.dir:
            member = c.member or config.kafka.group_instance_id or socket.gethostname()
            store = CheckpointStore(c.dir, member=member, keep=c.keep)
            if config.engine.evict:
                spill = SpillStore(c.dir, store.member)
        engine = assemble.engine(config, spill)
        checkpointer = Checkpointer(store, engine, c) if store is not None else None
        self.daemon = Daemon(config, source, sink, self.metrics, engine=engine,
                             health=self.health, notifier=notifier,
                             on_progress=on_progress, checkpointer=checkpointer,
                             memory_link=memory_link)
        self.outer: OuterLoop | None = None
        if config.meta.enabled:
            self.outer = attach(config, engine, self.daemon.offer_params,
                                on_result=self.metrics.outer_result)

    def _kafka(self, source: Source | None, sink: Sink | None,
               link: MemoryLink | None) -> tuple[Source, Sink, MemoryLink | None]:
        """The Kafka edge for whatever was not given."""
        from streammeta.io import kafka as kafka_edge

        config = self.config
        if source is None:
            source = kafka_edge.KafkaSource(config.kafka, on_error=self.metrics.count_error)
        if sink is None:
            sink = kafka_edge.KafkaSink(config.kafka)
        if link is None and config.memory.enabled and config.memory.topic:
            link = kafka_edge.KafkaMemoryLink(
                config.kafka, config.memory.topic, key_dim(config.series.season),
                config.model.context_dim, on_error=self.metrics.count_error)
        return source, sink, link

    @property
    def metrics_url(self) -> str | None:
        return self.server.url + "/metrics" if self.server is not None else None

    def stop(self) -> None:
        self.daemon.stop()

    def run(self) -> None:
        if self.server is not None:
            self.server.start()
            log.info("metrics and probes on %s", self.server.url)
        if self.outer is not None:
            self.outer.start()
        try:
            self.daemon.run()
        finally:
            if self.outer is not None:
                self.outer.stop()
            if self.server is not None:
                self.server.stop()
