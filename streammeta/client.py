"""A forecast consumer's kit: decode and check a forecast, drop duplicates, keep the latest.

What a consumer of the forecast topic has to deal with (docs/contracts.md):

* **Duplicates.** Delivery is at least once: after a broker failure or a restart
  from a checkpoint, forecasts are published again with the same key, ``origin``
  and ``model_version``. :class:`Deduplicator` drops them by ``(entity, origin)``
  in bounded memory.
* **Order.** All forecasts of an entity share its key, hence one partition, and
  are published in order of ``origin``; a re-published stretch goes back in time
  once. Across entities there is no order. :class:`LatestForecasts` keeps the
  forecast with the newest origin per entity whatever the arrival order.

Standard library only (no torch, no numpy), so a consuming service can use it::

    from streammeta.client import Deduplicator, LatestForecasts, decode_forecast

    seen, latest = Deduplicator(), LatestForecasts()
    for record in consumer:  # kafka-python, confluent-kafka, ...
        forecast = decode_forecast(record.value, key=record.key, headers=record.headers)
        if seen.first_time(forecast):
            latest.update(forecast)
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from streammeta.contracts import CONTRACT_VERSION, HEADER_CONTRACT_VERSION, header_map
from streammeta.errors import ContractError

__all__ = ["ContractError", "Deduplicator", "Forecast", "LatestForecasts", "decode_forecast"]


@dataclass(frozen=True, slots=True)
class Forecast:
    """One forecast message (contract version 1). Timestamps are epoch milliseconds."""

    entity: str
    origin: int
    step_ms: int  # 0 for a calendar frequency (see freq)
    ts: tuple[int, ...]  # (H,) target timestamps
    point: tuple[float, ...]  # (H,)
    quantiles: Mapping[float, tuple[float, ...]]  # level → (H,), levels increasing
    model_version: int
    warm: bool
    produced_at: int
    freq: str | None = None  # a calendar frequency's name ("MS", "QE", ...), else None
    v: int = CONTRACT_VERSION

    @property
    def horizon(self) -> int:
        return len(self.ts)

    def quantile(self, level: float) -> tuple[float, ...]:
        """The forecast of quantile ``level`` (one of the daemon's series.quantiles)."""
        try:
            return self.quantiles[level]
        except KeyError:
            raise KeyError(f"no quantile {level}; this forecast has "
                           f"{sorted(self.quantiles)}") from None


def _fail(field: str, problem: str) -> ContractError:
    return ContractError(f"forecast field {field!r}: {problem}")


def _integer(obj: dict[str, Any], field: str) -> int:
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"expected an integer, got {type(value).__name__}")
    return value


def _numbers(field: str, values: object, length: int) -> tuple[float, ...]:
    if not isinstance(values, list):
        raise _fail(field, f"expected an array, got {type(values).__name__}")
    if len(values) != length:
        raise _fail(field, f"expected {length} values (one per target timestamp), "
                    f"got {len(values)}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(field, f"expected numbers, got {type(value).__name__}")
        if not math.isfinite(value):
            raise _fail(field, "expected finite numbers")
    return tuple(float(v) for v in values)


_REQUIRED = ("v", "entity", "origin", "step_ms", "ts", "point", "quantiles", "model_version",
             "warm", "produced_at")


def decode_forecast(value: bytes | str, key: bytes | None = None,
                    headers: Iterable[tuple[str, bytes | None]] | None = None) -> Forecast:
    """A forecast record's value (and, when given, its key and headers) → :class:`Forecast`.

    Checks everything forecast.schema.json states, and what a schema cannot: the
    arrays are as long as ``ts``, ``ts`` increases after ``origin``, the key and the
    contract-version header agree with the value. Raises :class:`ContractError`
    naming the field. Unknown fields are ignored (they may be added within v1).
    """
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ContractError(f"forecast is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ContractError(f"forecast is a JSON {type(obj).__name__}, expected an object")
    missing = [name for name in _REQUIRED if name not in obj]
    if missing:
        raise _fail(missing[0], "missing")
    version = obj["v"]
    if version != CONTRACT_VERSION or isinstance(version, bool):
        raise _fail("v", f"contract version {version!r}; this client reads version "
                    f"{CONTRACT_VERSION} (see docs/contracts.md)")
    declared = header_map(headers).get(HEADER_CONTRACT_VERSION)
    if declared is not None and declared != str(CONTRACT_VERSION):
        raise ContractError(f"header {HEADER_CONTRACT_VERSION!r} is {declared!r} but the "
                            f"value has v = {CONTRACT_VERSION}")
    entity = obj["entity"]
    if not isinstance(entity, str) or not entity:
        raise _fail("entity", "expected a non-empty string")
    if key is not None and key != entity.encode("utf-8", "surrogatepass"):
        raise _fail("entity", f"differs from the record key {key!r}")
    origin, step_ms = _integer(obj, "origin"), _integer(obj, "step_ms")
    freq = obj.get("freq")
    if step_ms < 0 or (step_ms == 0) != isinstance(freq, str):
        raise _fail("step_ms", f"expected a positive integer, or 0 with a calendar freq; "
                               f"got {step_ms} with freq {freq!r}")
    ts = obj["ts"]
    if not isinstance(ts, list) or not ts or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in ts):
        raise _fail("ts", "expected a non-empty array of integers (epoch ms)")
    if not all(a < b for a, b in zip([origin, *ts], ts, strict=False)):
        raise _fail("ts", "expected target timestamps increasing after origin")
    horizon = len(ts)
    point = _numbers("point", obj["point"], horizon)
    raw_quantiles = obj["quantiles"]
    if not isinstance(raw_quantiles, dict) or not raw_quantiles:
        raise _fail("quantiles", "expected a non-empty object of level → array")
    quantiles: dict[float, tuple[float, ...]] = {}
    for level_text, values in raw_quantiles.items():
        try:
            level = float(level_text)
        except ValueError:
            level = math.nan
        if not 0 < level < 1:
            raise _fail("quantiles", f"level {level_text!r} is not a number in (0, 1)")
        quantiles[level] = _numbers(f"quantiles.{level_text}", values, horizon)
    model_version = _integer(obj, "model_version")
    if model_version < 0:
        raise _fail("model_version", f"expected an integer >= 0, got {model_version}")
    warm = obj["warm"]
    if not isinstance(warm, bool):
        raise _fail("warm", f"expected true or false, got {type(warm).__name__}")
    return Forecast(entity=entity, origin=origin, step_ms=step_ms, ts=tuple(ts), point=point,
                    quantiles=dict(sorted(quantiles.items())), model_version=model_version,
                    warm=warm, produced_at=_integer(obj, "produced_at"),
                    freq=freq if isinstance(freq, str) else None)


class Deduplicator:
    """Drops forecasts seen before, by ``(entity, origin)``, remembering the last
    ``capacity`` keys (least recently seen forgotten first; about 150 bytes each).

    Duplicates are the forecasts of the records a daemon processes again after it
    resumed from a checkpoint or a commit: at most what arrived since then
    (``checkpoint.every_s`` and ``every_records``). A capacity above the forecasts of
    that stretch catches every duplicate; one that slips past an exhausted capacity
    still cannot replace a newer forecast in :class:`LatestForecasts`.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.dropped = 0
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def first_time(self, forecast: Forecast) -> bool:
        """True the first time this (entity, origin) is seen, False for a duplicate."""
        key = (forecast.entity, forecast.origin)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.dropped += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)


class LatestForecasts:
    """The forecast with the newest origin per entity, what a "latest forecast" table
    or a compacted topic holds. An older or equal origin arriving later (a redelivery)
    does not replace a newer one. With ``max_entities``, the entity updated least
    recently is forgotten first."""

    def __init__(self, max_entities: int | None = None) -> None:
        if max_entities is not None and max_entities < 1:
            raise ValueError(f"max_entities must be >= 1, got {max_entities}")
        self.max_entities = max_entities
        self._latest: OrderedDict[str, Forecast] = OrderedDict()

    def update(self, forecast: Forecast) -> bool:
        """Keep ``forecast`` if it is newer than the one held; True when it was kept."""
        held = self._latest.get(forecast.entity)
        if held is not None and held.origin >= forecast.origin:
            return False
        self._latest[forecast.entity] = forecast
        self._latest.move_to_end(forecast.entity)
        if self.max_entities is not None and len(self._latest) > self.max_entities:
            self._latest.popitem(last=False)
        return True

    def get(self, entity: str) -> Forecast | None:
        return self._latest.get(entity)

    def __len__(self) -> int:
        return len(self._latest)

    def __iter__(self) -> Iterator[Forecast]:
        return iter(list(self._latest.values()))
