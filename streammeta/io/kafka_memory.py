"""The memory topic through kafka-python (see :class:`KafkaMemoryLink`)."""

from __future__ import annotations

import contextlib

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, NoBrokersAvailable

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError
from streammeta.io.faults import ErrorCounter
from streammeta.io.kafka_settings import client_kwargs, unreachable
from streammeta.meta.memory import Entry, encode_entry, entry_of


class KafkaMemoryLink:
    """The memory topic shared by replicas: this replica's new entries out, every
    replica's entries in.

    Each replica reads every partition from the beginning with a plain consumer
    outside the consumer group, so all of them converge on the same memory; the
    topic is compacted by entity id (the record key), so it keeps the newest entry
    of each entity however long the daemon runs. Entries are best effort: one that
    fails to publish is counted (``kafka_errors{operation="memory"}``) and not
    resent; the entity's φ is still in this replica's memory and checkpoint.
    """

    def __init__(self, cfg: KafkaConfig, topic: str, key_dim: int, value_dim: int,
                 on_error: ErrorCounter | None = None) -> None:
        self.topic, self.key_dim, self.value_dim = topic, key_dim, value_dim
        self.on_error = on_error or (lambda operation: None)
        self.invalid = 0  # records on the topic that are not entries of this configuration
        try:
            self.producer = KafkaProducer(linger_ms=cfg.linger_ms, **client_kwargs(cfg))
            self.consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest",
                                          receive_message_max_bytes=256 << 20,
                                          **client_kwargs(cfg))
        except (NoBrokersAvailable, KafkaError) as exc:
            raise unreachable(cfg, exc) from None
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            self.close()
            raise BrokerError(f"memory topic {topic!r} does not exist on "
                              f"{cfg.bootstrap_servers} (create it compacted, keyed by entity)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)

    def publish(self, entries: list[Entry]) -> None:
        for name, key, value, version in entries:
            try:
                future = self.producer.send(self.topic, key=name.encode(),
                                            value=encode_entry(key, value, version))
            except KafkaError:
                self.on_error("memory")
                continue
            future.add_errback(lambda exc: self.on_error("memory"))

    def receive(self, max_records: int = 10_000) -> list[Entry]:
        """Entries that arrived since the last call (does not wait)."""
        try:
            polled = self.consumer.poll(timeout_ms=0, max_records=max_records)
        except KafkaError:
            self.on_error("memory")
            return []
        entries: list[Entry] = []
        for records in polled.values():
            for record in records:
                entry = entry_of(record.key, record.value, self.key_dim, self.value_dim)
                if entry is None:
                    self.invalid += 1
                else:
                    entries.append(entry)
        return entries

    def close(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(KafkaError):
            self.producer.close(timeout=timeout_s)
        with contextlib.suppress(KafkaError):
            self.consumer.close(autocommit=False)
