"""What the group and the log say about an assignment (confluent-kafka).

The same two facts as ``streammeta.io.kafka_group`` gives for kafka-python; without
them the daemon on the default client wrote every checkpoint in generation 0 and
never checked a restored offset against retention.

* :meth:`GroupFacts.generation` — the consumer-group generation that made the
  current assignment: checkpoints carry it, so a member that lost its partitions
  in a later generation can never have its state preferred (fencing).
* :meth:`GroupFacts.earliest` — the earliest offset each partition still holds
  (the log start offset, librdkafka's low watermark): a checkpoint's offset below
  it points at records retention has deleted.
"""

from __future__ import annotations

import struct

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import TopicPartition as CTP

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError
from streammeta.io.confluent_settings import describe
from streammeta.io.streams import TopicPartition as TP

# librdkafka has no accessor for the generation; its serialised group metadata
# starts with this magic, then the generation id (int32, the host's byte order).
_METADATA_MAGIC = b"CGMDv2:"


def generation_of(metadata: object) -> int:
    """The generation in ``Consumer.consumer_group_metadata()``; -1 if unknown."""
    start = len(_METADATA_MAGIC)
    if not isinstance(metadata, bytes) or not metadata.startswith(_METADATA_MAGIC) \
            or len(metadata) < start + 4:
        return -1
    return int(struct.unpack_from("=i", metadata, start)[0])


class GroupFacts:
    consumer: Consumer
    cfg: KafkaConfig

    def generation(self) -> int:
        """The generation of the group this member last joined; -1 before any."""
        try:
            return generation_of(self.consumer.consumer_group_metadata())
        except (KafkaException, RuntimeError):
            return -1

    def earliest(self, partitions: list[TP]) -> dict[TP, int]:
        """The earliest offset each partition holds (the log start offset)."""
        timeout_s = self.cfg.request_timeout_ms / 1000
        found: dict[TP, int] = {}
        for topic, partition in partitions:
            try:
                marks = self.consumer.get_watermark_offsets(CTP(topic, partition),
                                                            timeout=timeout_s, cached=False)
            except KafkaException as exc:
                raise BrokerError(f"earliest offset of {topic}/{partition}: "
                                  f"{describe(exc.args[0])}") from None
            if marks is None:
                raise BrokerError(f"earliest offset of {topic}/{partition}: no answer "
                                  f"within {timeout_s:.0f} s")
            if marks[0] >= 0:
                found[(topic, partition)] = int(marks[0])
        return found
