"""The shape every data set is read into: one :class:`Series` per entity, and the
helpers a long table (``entity,ts,value`` or Nixtla's ``unique_id,ds,y``) needs
whatever its file format (CSV in ``streammeta.io.datasets``, Parquet in
``streammeta.io.tables``)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from streammeta.errors import DataError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Series:
    """One entity's observations, in time order."""

    entity: str
    ts: np.ndarray  # (T,) int64 epoch ms, increasing
    values: np.ndarray  # (T,) float64

    def __post_init__(self) -> None:
        # Coerce once here so that every consumer can rely on the dtypes (no copy
        # when they are right already).
        ts = np.asarray(self.ts, dtype=np.int64)
        values = np.asarray(self.values, dtype=np.float64)
        if ts.ndim != 1 or ts.shape != values.shape:
            raise ValueError(f"series {self.entity!r}: ts {ts.shape} and values "
                             f"{values.shape} must be 1-D of one length")
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.values)


_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def from_iso(raw: str) -> datetime:
    """``datetime.fromisoformat``, plus ISO-8601's calendar month ``"1949-01"`` (the first
    day, 00:00), as monthly data sets write their dates (AirPassengers) and pandas reads
    them; Python's parser refused it, and so did ``evaluate`` and the daemon."""
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        month = _YEAR_MONTH.match(raw)
        if month is None or not 1 <= int(month.group(2)) <= 12:
            raise
        return datetime(int(month.group(1)), int(month.group(2)), 1)


def parse_ts(raw: str, wall: bool = False) -> int:
    """Epoch ms (integral) or ISO-8601 (naive means UTC) → epoch ms; ValueError if neither.
    ``wall``: an offset is dropped, the wall-clock time kept (``Frequency.wall_clock``)."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and number == int(number) and abs(number) < 2**62:
            return int(number)
        raise ValueError(f"timestamp {raw!r} is not a whole number of milliseconds")
    try:
        parsed = from_iso(raw.strip())
    except ValueError:
        raise ValueError(f"timestamp {raw!r} is neither epoch ms nor ISO-8601") from None
    if parsed.tzinfo is None or wall:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // _MS  # exact integer arithmetic, no float rounding


LONG_COLUMNS = (("entity", "ts", "value"), ("unique_id", "ds", "y"))
# What to do about missing values in a long table, said with the refusal.
MISSING_VALUE = ("drop the rows without a value (missing values are gaps: evaluate scores "
                 "the values left one step apart, the daemon fills short gaps)")
ABSENT = ("", "nan", "na", "n/a", "null", "none", "<na>")  # how CSVs write a missing value


def long_columns(header: Sequence[str], path: Path) -> tuple[int, int, int]:
    """Positions of the entity, time and value columns in a long header."""
    names = [name.lower() for name in header]
    for columns in LONG_COLUMNS:
        if all(c in names for c in columns):
            ie, it, iv = (names.index(c) for c in columns)
            return ie, it, iv
    missing = [c for c in LONG_COLUMNS[0] if c not in names]
    raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)} "
                    f"(a long file needs entity, ts, value or unique_id, ds, y)")


def group(entities: list[str], ts: np.ndarray, values: np.ndarray,
          lines: Sequence[int] | None, path: Path) -> list[Series]:
    """Long rows → one series per entity, in order of first appearance, each sorted
    by time (stable: duplicates keep their order)."""
    codes_by_name: dict[str, int] = {}
    codes = np.array([codes_by_name.setdefault(e, len(codes_by_name)) for e in entities],
                     dtype=np.int64)  # (N,) entity code, first appearance first
    if "" in codes_by_name:
        k = entities.index("")
        raise DataError(f"{path}:{lines[k] if lines else f'row {k + 1}'}: empty entity id")
    order = np.lexsort((ts, codes))  # by entity, then time; stable for duplicates
    bounds = np.cumsum(np.bincount(codes))[:-1]
    ts_parts, value_parts = np.split(ts[order], bounds), np.split(values[order], bounds)
    return [Series(name, t, v)
            for name, t, v in zip(codes_by_name, ts_parts, value_parts, strict=True)]
