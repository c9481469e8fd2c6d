"""Wires the daemon to Kafka, the metrics/health server and the service manager."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from streammeta.config import Config
from streammeta.meta.outer import OuterLoop, attach
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore
from streammeta.persistence.spill import SpillStore
from streammeta.serve.daemon import Daemon, Notifier, Progress
from streammeta.serve.health import HealthServer, LoopHealth
from streammeta.serve.metrics import Metrics

log = logging.getLogger(__name__)


def _checkpointer(config: Config, engine: Engine) -> Checkpointer | None:
    c = config.checkpoint
    if not c.dir:
        return None
    member = c.member or config.kafka.group_instance_id or socket.gethostname()
    store = CheckpointStore(c.dir, member=member, keep=c.keep, options=c.options())
    if config.engine.evict:
        engine.spill = SpillStore(store.files, store.member)
    return Checkpointer(store, engine, every_s=c.every_s, every_records=c.every_records)


class Service:
    """``streammeta run``: the daemon against the configured Kafka cluster."""

    def __init__(self, config: Config,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        from streammeta.io.edge import make_kafka_edge
        from streammeta.serve import systemd

        self.config = config
        self.metrics = Metrics()
        self.health = LoopHealth(config.metrics.stall_after_s)
        self.server: HealthServer | None = None
        if config.metrics.enabled:
            self.server = HealthServer(config.metrics.host, config.metrics.port,
                                       self.metrics.registry, self.health)
        self.edge = make_kafka_edge(config, on_error=self.metrics.count_error)
        notifier: Notifier = systemd.Notifier()
        engine = Engine(config)
        self.daemon = Daemon(config, self.edge.source, self.edge.sink, self.metrics,
                             engine=engine, health=self.health, notifier=notifier,
                             on_progress=on_progress, checkpointer=_checkpointer(config, engine),
                             memory_link=self.edge.memory_link)
        self.outer: OuterLoop | None = None
        if config.meta.enabled:
            self.outer = attach(config, engine, self.daemon.offer_params,
                                on_result=self.metrics.outer_result)

    @property
    def metrics_url(self) -> str | None:
        return self.server.url + "/metrics" if self.server is not None else None

    def stop(self) -> None:
        self.edge.stop()  # from now on the edge's blocking calls end within the bound
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

