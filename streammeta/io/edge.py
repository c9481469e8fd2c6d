"""Builds the Kafka edge the configuration asks for: what the service wires in.

:func:`make_kafka_edge` returns the source, the sink and (if configured) the memory
link, sharing one :class:`~streammeta.io.faults.Faults` and one shutdown
:class:`~streammeta.io.faults.Deadline`; :meth:`KafkaEdge.stop` starts that deadline
so every blocking call of the edge ends within ``kafka.shutdown_timeout_s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from streammeta.config import Config, KafkaConfig
from streammeta.errors import BrokerError
from streammeta.io.faults import Deadline, ErrorCounter, Faults, OncePerCause
from streammeta.io.streams import Sink, Source
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
    from streammeta.io import kafka as kafka_edge
    from streammeta.io.kafka_memory import KafkaMemoryLink

    cfg = config.kafka
    quiet = OncePerCause.install("kafka")
    faults = Faults(cfg.fatal_after_s, on_error, quiet)
    deadline = Deadline(cfg.shutdown_timeout_s)
    missing = kafka_edge.missing_codecs()
    if missing:  # every codec a producer may use must be readable
        log.error("no library for the %s codec(s): records compressed with them cannot be "
                  "read", ", ".join(missing))
    source = kafka_edge.KafkaSource(cfg, faults=faults, deadline=deadline)
    try:
        sink = kafka_edge.KafkaSink(cfg, deadline)
        link = None
        if config.memory.enabled and config.memory.topic:
            link = KafkaMemoryLink(cfg, config.memory.topic, key_dim(config.series.season),
                                   config.model.context_dim, on_error=on_error)
    except BrokerError:
        source.close()
        raise
    return KafkaEdge(source, sink, link, deadline, faults)


def make_writer(cfg: KafkaConfig) -> Writer:
    """The observation writer (``streammeta replay``, the demo)."""
    from streammeta.io import kafka as kafka_edge

    OncePerCause.install("kafka")
    return kafka_edge.ObservationWriter(cfg)
