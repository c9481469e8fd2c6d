"""What a Kafka client's producer gives the sink and the observation writer.

Each client module (``io/kafka.py``, ``io/confluent.py``) wraps its library's
producer as a :class:`Producer`; the sink and the writer built on it are the same
for both clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from streammeta.config import KafkaConfig
from streammeta.io.codec import DeadLetter


class Producer(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None = None) -> None: ...
    def flush(self, timeout_s: float, waiting: Callable[[], object] | None = None) -> None: ...
    def close(self, timeout_s: float) -> None: ...


class ProducerSink:
    """Forecasts and dead letters to Kafka; see :class:`streammeta.io.streams.Sink`."""

    def __init__(self, cfg: KafkaConfig, producer: Producer) -> None:
        self.cfg = cfg
        self._producer = producer

    def send_forecasts(self, messages: list[tuple[bytes, bytes]],
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        send, topic = self._producer.send, self.cfg.forecast_topic
        for key, value in messages:
            send(topic, key, value, headers)

    def send_dead_letters(self, letters: list[DeadLetter]) -> None:
        # The original key and value, unchanged: a tombstone's null value stays null
        # (an oversize key or value is cut to the record limit: DeadLetter.key, .value).
        for letter in letters:
            self._producer.send(self.cfg.dead_letter_topic, letter.key, letter.value,
                                letter.headers())

    def flush(self, timeout_s: float, waiting: Callable[[], object] | None = None) -> None:
        self._producer.flush(timeout_s, waiting)

    def close(self) -> None:
        self._producer.close(self.cfg.shutdown_timeout_s)


class TopicWriter:
    """Writes encoded observations to the input topic (``streammeta replay``)."""

    def __init__(self, cfg: KafkaConfig, producer: Producer) -> None:
        self.cfg = cfg
        self._producer = producer

    def send(self, key: bytes, value: bytes) -> None:
        self._producer.send(self.cfg.input_topic, key, value)

    def flush(self, timeout_s: float = 60.0) -> None:
        self._producer.flush(timeout_s)

    def close(self) -> None:
        self._producer.close(self.cfg.shutdown_timeout_s)
