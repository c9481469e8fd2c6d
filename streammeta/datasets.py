"""Data sets as per-entity series, and their interleaving into one stream.

Formats:

* ``m4`` — M4 wide CSV: one row per series, the id in the first column, then the
  values, trailing cells empty. M4 has no timestamps: value i of every series is
  at ``start + i * step``.
* ``long`` — ``entity,ts,value`` with a header; ``ts`` epoch ms or ISO-8601; rows
  in any order.
* ``ett`` — the ETT CSVs: a ``date`` column and one column per variable; every
  variable is one entity.

Shared data lives beside the repository in ``../shared/data`` (or wherever
``$STREAMMETA_DATA_DIR`` points).
"""

from __future__ import annotations

import csv
import importlib.resources
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streammeta.errors import DataError

M4_START_MS = int(datetime(2017, 1, 1, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000
FORMATS = ("m4", "long", "ett")


@dataclass(frozen=True)
class Series:
    entity: str
    ts: np.ndarray  # (T,) int64 epoch ms, increasing
    values: np.ndarray  # (T,) float64

    def __len__(self) -> int:
        return len(self.values)


def default_data_dir() -> Path:
    return Path(os.environ.get("STREAMMETA_DATA_DIR", "../shared/data"))


def bundled_m4() -> Path:
    """The M4 hourly subset shipped with the package (see streammeta/data/README.md)."""
    return Path(str(importlib.resources.files("streammeta") / "data" / "m4_hourly_subset.csv"))


def _number(raw: str, path: Path, line: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{path}:{line}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}:{line}: {raw!r} is not finite")
    return value


def _rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: no data rows")
    return rows


def load_m4(path: str | os.PathLike[str], step_ms: int = HOUR_MS,
            start_ms: int = M4_START_MS) -> list[Series]:
    path = Path(path)
    out = []
    for line, row in enumerate(_rows(path)[1:], start=2):
        if not row or not row[0]:
            raise DataError(f"{path}:{line}: missing series id")
        cells = row[1:]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells:
            raise DataError(f"{path}:{line}: series {row[0]} has no values")
        values = np.array([_number(c, path, line) for c in cells])
        ts = start_ms + np.arange(len(values), dtype=np.int64) * step_ms
        out.append(Series(row[0], ts, values))
    return out


def load_m4_test(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    return {s.entity: s.values for s in load_m4(path)}


def find_m4_test(train: str | os.PathLike[str]) -> Path | None:
    """``Hourly-test.csv`` beside ``Hourly-train.csv`` (or ``x_test.csv`` beside ``x.csv``)."""
    train = Path(train)
    for name in (train.name.replace("-train", "-test"), f"{train.stem}_test{train.suffix}"):
        candidate = train.with_name(name)
        if candidate != train and candidate.is_file():
            return candidate
    return None


def _parse_ts(raw: str, path: Path, line: int) -> int:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise DataError(f"{path}:{line}: timestamp {raw!r} is neither epoch ms nor ISO-8601"
                        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def load_long(path: str | os.PathLike[str]) -> list[Series]:
    path = Path(path)
    rows = _rows(path)
    header = [h.strip().lower() for h in rows[0]]
    try:
        ie, it, iv = header.index("entity"), header.index("ts"), header.index("value")
    except ValueError:
        raise DataError(f"{path}:1: header must name the columns entity, ts, value") from None
    by_entity: dict[str, tuple[list[int], list[float]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        ts_list, values = by_entity.setdefault(row[ie], ([], []))
        ts_list.append(_parse_ts(row[it], path, line))
        values.append(_number(row[iv], path, line))
    out = []
    for entity, (ts_list, values) in by_entity.items():
        ts = np.asarray(ts_list, dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        out.append(Series(entity, ts[order], np.asarray(values)[order]))
    return out


def load_ett(path: str | os.PathLike[str]) -> list[Series]:
    path = Path(path)
    rows = _rows(path)
    header = rows[0]
    if not header or header[0] != "date":
        raise DataError(f"{path}:1: the first column must be 'date'")
    ts = np.array([_parse_ts(r[0], path, i) for i, r in enumerate(rows[1:], start=2)],
                  dtype=np.int64)
    out = []
    for col, name in enumerate(header[1:], start=1):
        values = np.array([_number(r[col], path, i) for i, r in enumerate(rows[1:], start=2)])
        out.append(Series(name, ts, values))
    return out


def load(path: str | os.PathLike[str], fmt: str) -> list[Series]:
    """Load ``path`` in format ``fmt``; an M4 directory means its ``Hourly-train.csv``."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "m4" and path.is_dir():
        path = path / "Hourly-train.csv"
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return {"m4": load_m4, "long": load_long, "ett": load_ett}[fmt](path)


def interleave(series: list[Series], arrival_gap_steps: int = 0,
               step_ms: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All observations in global time order (ties in series order): the stream a
    daemon would see. With ``arrival_gap_steps``, series k starts k·gap steps after
    the first series starts, so entities arrive over time (shifting timestamps)."""
    if not series:
        return [], np.zeros(0, dtype=np.int64), np.zeros(0)
    shifts = np.zeros(len(series), dtype=np.int64)
    if arrival_gap_steps:
        step = step_ms or (int(np.median(np.diff(series[0].ts))) if len(series[0]) > 1
                           else HOUR_MS)
        first = min(int(s.ts[0]) for s in series)
        shifts = np.array([first + k * arrival_gap_steps * step - int(s.ts[0])
                           for k, s in enumerate(series)], dtype=np.int64)
    ts = np.concatenate([s.ts + shift for s, shift in zip(series, shifts, strict=True)])
    values = np.concatenate([s.values for s in series])
    owner = np.repeat(np.arange(len(series)), [len(s) for s in series])
    order = np.lexsort((owner, ts))  # by time, then series order
    names = [s.entity for s in series]
    return [names[i] for i in owner[order]], ts[order], values[order]
