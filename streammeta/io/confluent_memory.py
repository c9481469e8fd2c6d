"""The memory topic through confluent-kafka (see :class:`ConfluentMemoryLink`)."""

from __future__ import annotations

import contextlib

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CTP

from streammeta.config import KafkaConfig
from streammeta.io.confluent_settings import client_settings, topic_partitions
from streammeta.io.faults import ErrorCounter
from streammeta.meta.memory import Entry, encode_entry, entry_of


class ConfluentMemoryLink:
    """The memory topic shared by replicas, as ``streammeta.io.kafka_memory.KafkaMemoryLink``:
    every replica reads every partition from the beginning outside the consumer group;
    entries are best effort (a failed publish is counted, not resent)."""

    def __init__(self, cfg: KafkaConfig, topic: str, key_dim: int, value_dim: int,
                 on_error: ErrorCounter | None = None) -> None:
        self.topic, self.key_dim, self.value_dim = topic, key_dim, value_dim
        self.on_error = on_error or (lambda operation: None)
        self.invalid = 0  # records on the topic that are not entries of this configuration
        settings = client_settings(cfg)
        self.producer = Producer({**settings, "linger.ms": cfg.linger_ms,
                                  "delivery.report.only.error": True,
                                  "on_delivery": self._delivered})
        self.consumer = Consumer({**settings, "group.id": f"{cfg.group_id}.memory",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        partitions = topic_partitions(
            self.consumer, cfg, topic, self.close,
            f"memory topic {topic!r} does not exist on {cfg.bootstrap_servers} "
            "(create it compacted, keyed by entity)")
        self.consumer.assign([CTP(topic, p, OFFSET_BEGINNING) for p in partitions])

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self.on_error("memory")

    def publish(self, entries: list[Entry]) -> None:
        for name, key, value, version in entries:
            try:
                self.producer.produce(self.topic, encode_entry(key, value, version),
                                      name.encode())
            except (BufferError, KafkaException):
                self.on_error("memory")
        self.producer.poll(0)  # serve delivery reports

    def receive(self, max_records: int = 10_000) -> list[Entry]:
        """Entries that arrived since the last call (does not wait)."""
        entries: list[Entry] = []
        for record in self.consumer.consume(max_records, 0):
            if record.error() is not None:
                self.on_error("memory")
                continue
            entry = entry_of(record.key(), record.value(), self.key_dim, self.value_dim)
            if entry is None:
                self.invalid += 1
            else:
                entries.append(entry)
        return entries

    def close(self, timeout_s: float = 5.0) -> None:
        self.producer.flush(timeout_s)
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
