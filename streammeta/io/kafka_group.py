"""What the group and the log say about an assignment (kafka-python).

* :meth:`GroupFacts.generation` — the consumer-group generation that made the
  current assignment: checkpoints carry it, so a member that lost its partitions
  in a later generation can never have its state preferred (fencing).
* :meth:`GroupFacts.earliest` — the earliest offset each partition still holds:
  a checkpoint's offset below it points at records retention has deleted.
"""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streammeta.errors import BrokerError
from streammeta.io.streams import TopicPartition as TP


class GroupFacts:
    consumer: KafkaConsumer

    def generation(self) -> int:
        """The generation of the group this member last joined; -1 before any."""
        coordinator = getattr(self.consumer, "_coordinator", None)  # no public view
        generation = getattr(coordinator, "_generation", None)
        return int(getattr(generation, "generation_id", -1))

    def earliest(self, partitions: list[TP]) -> dict[TP, int]:
        """The earliest offset each partition holds (the log start offset)."""
        try:
            found = self.consumer.beginning_offsets(
                [TopicPartition(t, p) for t, p in partitions])
        except KafkaError as exc:
            raise BrokerError(f"earliest offsets: {exc}") from None
        return {(tp.topic, tp.partition): int(offset) for tp, offset in found.items()
                if offset is not None}
