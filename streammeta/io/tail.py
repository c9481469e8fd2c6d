"""Reading a whole topic from its beginning, outside any consumer group.

The versions topic (every replica and the trainer read all of it) and the task
samples topic (the trainer reads all of it) are read this way. :meth:`Tail.at_end`
says when every partition has been read up to its end once: end offsets are not
trusted (the embedded broker reports them wrong, ``../shared/KAFKA.md``), so the
end is what a fetch reports: librdkafka's partition-EOF events, kafka-python's
high watermark after a fetch.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError

# A version record holds θ (about 0.6 MB at model.hidden 256): fetches must take it.
_FETCH_BYTES = 64 << 20

KeyValue = tuple[bytes | None, bytes | None]


class Tail(Protocol):
    def poll(self, timeout_s: float) -> list[KeyValue]:
        """Records that arrived since the last call, waiting at most ``timeout_s``."""
        ...

    def at_end(self) -> bool:
        """Every partition has been read to its end at least once."""
        ...

    def close(self) -> None: ...


class ConfluentTail:
    """:class:`Tail` through librdkafka (``io/confluent.py``'s client)."""

    def __init__(self, cfg: KafkaConfig, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer
        from confluent_kafka import TopicPartition as CTP

        from streammeta.io.confluent_settings import client_settings, topic_partitions

        self.topic = topic
        self.errors = 0
        # A group id is required by librdkafka; nothing is committed or joined.
        self.consumer = Consumer({**client_settings(cfg), "group.id": f"{cfg.group_id}.tail",
                                  "enable.auto.commit": False, "enable.partition.eof": True,
                                  "auto.offset.reset": "earliest",
                                  "fetch.max.bytes": _FETCH_BYTES,
                                  "max.partition.fetch.bytes": _FETCH_BYTES,
                                  "receive.message.max.bytes": _FETCH_BYTES + (1 << 20)})
        partitions = topic_partitions(
            self.consumer, cfg, topic, self.close,
            f"topic {topic!r} does not exist on {cfg.bootstrap_servers}")
        self._pending = set(partitions)
        self.consumer.assign([CTP(topic, p, OFFSET_BEGINNING) for p in partitions])

    def poll(self, timeout_s: float) -> list[KeyValue]:
        from confluent_kafka import KafkaError

        out: list[KeyValue] = []
        for message in self.consumer.consume(1000, timeout_s):
            error = message.error()
            if error is None:
                out.append((message.key(), message.value()))
            elif error.code() == KafkaError._PARTITION_EOF:
                self._pending.discard(message.partition())
            else:
                self.errors += 1
        return out

    def at_end(self) -> bool:
        return not self._pending

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()


class KafkaTail:
    """:class:`Tail` through kafka-python (``io/kafka.py``'s client)."""

    def __init__(self, cfg: KafkaConfig, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError, NoBrokersAvailable

        from streammeta.io.kafka_settings import client_kwargs, unreachable

        self.topic = topic
        self.errors = 0
        try:
            self.consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest",
                                          fetch_max_bytes=_FETCH_BYTES,
                                          max_partition_fetch_bytes=_FETCH_BYTES,
                                          receive_message_max_bytes=_FETCH_BYTES + (1 << 20),
                                          **client_kwargs(cfg))
        except (NoBrokersAvailable, KafkaError) as exc:
            raise unreachable(cfg, exc) from None
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            self.close()
            raise BrokerError(f"topic {topic!r} does not exist on {cfg.bootstrap_servers}")
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._pending = set(self._tps)
        self.consumer.assign(self._tps)
        self.consumer.seek_to_beginning(*self._tps)

    def poll(self, timeout_s: float) -> list[KeyValue]:
        from kafka.errors import KafkaError

        try:
            polled = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=1000)
        except KafkaError:
            self.errors += 1
            return []
        out = [(r.key, r.value) for records in polled.values() for r in records]
        for tp in list(self._pending):
            high = self.consumer.highwater(tp)  # known once a fetch answered
            if high is not None and self.consumer.position(tp) >= high:
                self._pending.discard(tp)
        return out

    def at_end(self) -> bool:
        return not self._pending

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close(autocommit=False)
