"""Builds the Kafka edge the configuration asks for: what the service wires in.

:func:`make_kafka_edge` returns the source, the sink and (if configured) the memory
link of the client ``kafka.client`` names (``io/confluent.py`` or ``io/kafka.py``),
sharing one :class:`~streammeta.io.faults.Faults` and one shutdown
:class:`~streammeta.io.faults.Deadline`; :meth:`KafkaEdge.stop` starts that deadline
so every blocking call of the edge ends within ``kafka.shutdown_timeout_s``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from streammeta.config import Config, KafkaConfig, MetaConfig
from streammeta.errors import BrokerError
from streammeta.io.faults import Deadline, ErrorCounter, Faults, OncePerCause
from streammeta.io.streams import Sink, Source
from streammeta.io.tail import Tail
from streammeta.meta.memory import MemoryLink, key_dim

log = logging.getLogger(__name__)


class Writer(Protocol):
    """Writes encoded observations to the input topic."""

    def send(self, key: bytes, value: bytes) -> None: ...
    def flush(self, timeout_s: float = 60.0) -> None: ...
    def close(self) -> None: ...


@dataclass
class KafkaEdge:
    source: Source
    sink: Sink
    memory_link: MemoryLink | None
    deadline: Deadline
    faults: Faults = field(repr=False)

    def stop(self) -> None:
        """The daemon is stopping: from now on, blocking calls end by the deadline."""
        self.deadline.start()


def make_kafka_edge(config: Config, on_error: ErrorCounter | None = None) -> KafkaEdge:
    """Source, sink and memory link for ``config.kafka.client``."""
    cfg = config.kafka
    faults = Faults(cfg.fatal_after_s, on_error, OncePerCause.install(_library(cfg)))
    deadline = Deadline(cfg.shutdown_timeout_s)
    if cfg.client == "confluent":
        source, sink_and_link = _confluent(config, faults, deadline, on_error)
    else:
        source, sink_and_link = _kafka_python(config, faults, deadline, on_error)
    try:
        sink, link = sink_and_link()
    except BrokerError:
        source.close()
        raise
    return KafkaEdge(source, sink, link, deadline, faults)


_SinkAndLink = Callable[[], tuple[Sink, MemoryLink | None]]


def _confluent(config: Config, faults: Faults, deadline: Deadline,
               on_error: ErrorCounter | None) -> tuple[Source, _SinkAndLink]:
    from streammeta.io.confluent import ConfluentSink, ConfluentSource
    from streammeta.io.confluent_memory import ConfluentMemoryLink
    from streammeta.io.confluent_settings import Liveness

    cfg = config.kafka
    # Either client hearing from the brokers shows they answer (the producer's
    # statistics are served while a flush blocks, the consumer's while it polls).
    liveness = Liveness(cfg.session_timeout_ms / 1000)
    source = ConfluentSource(cfg, faults=faults, deadline=deadline, liveness=liveness)

    def sink_and_link() -> tuple[Sink, MemoryLink | None]:
        sink = ConfluentSink(cfg, deadline, faults, liveness)
        link = None
        if config.memory.enabled and config.memory.topic:
            link = ConfluentMemoryLink(cfg, config.memory.topic,
                                       key_dim(config.series.resolved_season),
                                       config.model.context_dim, on_error=on_error)
        return sink, link

    return source, sink_and_link


def _kafka_python(config: Config, faults: Faults, deadline: Deadline,
                  on_error: ErrorCounter | None) -> tuple[Source, _SinkAndLink]:
    from streammeta.io import kafka as kafka_edge
    from streammeta.io import kafka_settings
    from streammeta.io.kafka_memory import KafkaMemoryLink

    cfg = config.kafka
    missing = kafka_settings.missing_codecs()
    if missing:  # every codec a producer may use must be readable
        log.error("no library for the %s codec(s): records compressed with them cannot be "
                  "read", ", ".join(missing))
    source = kafka_edge.KafkaSource(cfg, faults=faults, deadline=deadline)

    def sink_and_link() -> tuple[Sink, MemoryLink | None]:
        sink = kafka_edge.KafkaSink(cfg, deadline)
        link = None
        if config.memory.enabled and config.memory.topic:
            link = KafkaMemoryLink(cfg, config.memory.topic,
                                   key_dim(config.series.resolved_season),
                                   config.model.context_dim, on_error=on_error)
        return sink, link

    return source, sink_and_link


def make_source(cfg: KafkaConfig) -> Source:
    """A consumer-group member alone, with its own faults and deadline."""
    OncePerCause.install(_library(cfg))
    if cfg.client == "confluent":
        from streammeta.io.confluent import ConfluentSource

        return ConfluentSource(cfg)
    from streammeta.io import kafka as kafka_edge

    return kafka_edge.KafkaSource(cfg)


def _library(cfg: KafkaConfig) -> str:
    """The logger name of the chosen client library."""
    return "confluent_kafka" if cfg.client == "confluent" else "kafka"


def make_writer(cfg: KafkaConfig, deadline: Deadline | None = None) -> Writer:
    """The observation writer (``streammeta replay``, the demo); ``deadline``: a
    shutdown's (:class:`KafkaEdge`'s), which then bounds its close too."""
    OncePerCause.install(_library(cfg))
    if cfg.client == "confluent":
        from streammeta.io.confluent import ConfluentWriter

        return ConfluentWriter(cfg, deadline)
    from streammeta.io import kafka as kafka_edge

    return kafka_edge.ObservationWriter(cfg, deadline)


def ensure_topics(cfg: KafkaConfig, partitions: int = 4, replication: int = 1,
                  memory_topic: str = "", extra: dict[str, int] | None = None) -> None:
    """Create the input, forecast and dead-letter topics (the compacted memory topic,
    if named, and ``extra``: name → partitions) where missing, with the chosen client."""
    if cfg.client == "confluent":
        from streammeta.io import confluent

        confluent.ensure_topics(cfg, partitions, replication, memory_topic, extra)
    else:
        from streammeta.io import kafka as kafka_edge

        kafka_edge.ensure_topics(cfg, partitions, replication, memory_topic, extra)


def role_topics(meta: MetaConfig, partitions: int = 4) -> dict[str, int]:
    """The topics of the ingest and trainer roles: name → partitions. The versions and
    lease topics have one partition (one order of versions, one lease holder)."""
    return {meta.versions_topic: 1, meta.lease_topic: 1, meta.samples_topic: partitions}


def make_tail(cfg: KafkaConfig, topic: str) -> Tail:
    """A reader of every partition of ``topic`` from its beginning, outside any group."""
    if cfg.client == "confluent":
        from streammeta.io.tail import ConfluentTail

        return ConfluentTail(cfg, topic)
    from streammeta.io.tail import KafkaTail

    return KafkaTail(cfg, topic)


def make_lease(cfg: KafkaConfig, meta: MetaConfig) -> Source:
    """A member of the trainers' group on the 1-partition lease topic: the member that
    is assigned the partition is the one trainer."""
    return make_source(dataclasses.replace(
        cfg, input_topic=meta.lease_topic, group_id=f"{cfg.group_id}.trainer",
        group_instance_id=""))
