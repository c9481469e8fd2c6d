"""A consumed record, why one was not used, and the dead letter that carries it back:
the original key and value bytes (a key or value over ``series.max_record_bytes`` cut
to it) and the original headers, with the headers of the dead-letter contract
(``contracts/dead-letter-headers.schema.json``). ``codec`` re-exports them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

# The names a dead letter writes itself: an original header of one of these names is
# left out, so that each is there once and is the dead letter's.
OWN_HEADERS = frozenset({
    "streammeta.reason", "streammeta.detail", "streammeta.source.topic",
    "streammeta.source.partition", "streammeta.source.offset",
    "streammeta.key.truncated", "streammeta.value.truncated", "streammeta.headers.truncated"})
HEADER_BYTES = 4096  # the original headers carried, where no limit is given


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
    headers: Sequence[tuple[str, bytes | None]] = ()  # as the producer wrote them


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
        """The original record's headers (a null value as an empty one: kafka-python's
        producer sends no null), then the contract's; originals beyond ``limit`` bytes
        (names and values) are left out, and ``streammeta.headers.truncated`` says how
        many bytes they all had."""
        headers, size, total = [], 0, 0
        for name, raw in self.record.headers:
            if name in OWN_HEADERS:
                continue
            value = raw or b""
            total += len(name.encode("utf-8", "replace")) + len(value)
            if total <= (HEADER_BYTES if self.limit is None else self.limit):
                headers.append((name, value))
                size = total
        headers += [
            ("streammeta.reason", self.reason.value.encode()),
            ("streammeta.detail", self.detail.encode("utf-8", "replace")[:1000]),
            ("streammeta.source.topic", self.record.topic.encode()),
            ("streammeta.source.partition", str(self.record.partition).encode()),
            ("streammeta.source.offset", str(self.record.offset).encode()),
        ]
        for name, raw in (("key", self.record.key), ("value", self.record.value)):
            if raw is not None and self.limit is not None and len(raw) > self.limit:
                headers.append((f"streammeta.{name}.truncated", str(len(raw)).encode()))
        if total > size:
            headers.append(("streammeta.headers.truncated", str(total).encode()))
        return headers


def _cut(raw: bytes | None, limit: int | None) -> bytes | None:
    return raw if raw is None or limit is None else raw[:limit]
