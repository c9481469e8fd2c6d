"""A consumed record, why one was not used, and the dead letter that carries it back:
the original key and value bytes (a key or value over ``series.max_record_bytes`` cut
to it), with the headers of the dead-letter contract
(``contracts/dead-letter-headers.schema.json``). ``codec`` re-exports them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


class Reason(enum.StrEnum):
    """Why a record was dead-lettered (the ``reason`` label of the metric)."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    OVERSIZE = "oversize"
    ENTITY_EMPTY = "entity_empty"
    ENTITY_TOO_LONG = "entity_too_long"
    KEY_MISMATCH = "key_mismatch"
    BAD_TIMESTAMP = "bad_timestamp"
    MISALIGNED = "misaligned_timestamp"
    LATE = "late"
    DUPLICATE = "duplicate"
    CAPACITY = "capacity"


class Record(NamedTuple):
    """One consumed message and where it came from (a tuple: made per message, cheaply)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """``limit``: the most bytes of the record's key and of its value the dead letter
    carries (an oversize record's value or key, perhaps megabytes that arrived
    compressed, would be refused by the producer or the broker, and its batch re-sent
    for ever)."""

    record: Record
    reason: Reason
    detail: str
    limit: int | None = None

    @property
    def key(self) -> bytes | None:
        """The key the dead letter carries: the record's, cut to ``limit`` bytes."""
        return _cut(self.record.key, self.limit)

    @property
    def value(self) -> bytes | None:
        """The value the dead letter carries: the record's, cut to ``limit`` bytes."""
        return _cut(self.record.value, self.limit)

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("streammeta.reason", self.reason.value.encode()),
            ("streammeta.detail", self.detail.encode("utf-8", "replace")[:1000]),
            ("streammeta.source.topic", self.record.topic.encode()),
            ("streammeta.source.partition", str(self.record.partition).encode()),
            ("streammeta.source.offset", str(self.record.offset).encode()),
        ]
        for name, raw in (("key", self.record.key), ("value", self.record.value)):
            if raw is not None and self.limit is not None and len(raw) > self.limit:
                headers.append((f"streammeta.{name}.truncated", str(len(raw)).encode()))
        return headers


def _cut(raw: bytes | None, limit: int | None) -> bytes | None:
    return raw if raw is None or limit is None else raw[:limit]
