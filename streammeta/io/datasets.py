"""Data sets as per-entity series, and their interleaving into one stream.

Formats (``fmt`` of :func:`load`):

* ``m4`` — M4 wide CSV (M4, and M1 in M4's shape): a header row, then one row per
  series: the id in the first column, then the values until the first empty
  cell. M4 has no timestamps, so value i of every series is placed at
  ``start_ms + i * step_ms``, or, given the configured ``series.freq``
  (``frequency``), i steps of it after 2017-01-01: on its calendar for ``"MS"``,
  ``"QS"``, ``"YE"``, …, so that the daemon and ``evaluate`` accept the values as
  whole steps of the frequency they were told. The path is the file (``Monthly-train.csv``), a
  folder holding ``Hourly-train.csv`` or a single ``<Name>-train.csv``, or
  ``<folder>/<Name>`` meaning ``<folder>/<Name>-train.csv``
  (:func:`resolve_m4`); the test file beside it is ``<Name>-test.csv``.
* ``long`` — a header naming ``entity``, ``ts`` and ``value``, or Nixtla's
  ``unique_id``, ``ds`` and ``y`` (any order, other columns ignored); ``ts`` epoch
  ms or ISO-8601 (naive means UTC); rows in any order; CSV, or Parquet when the
  name ends in ``.parquet`` (:mod:`streammeta.io.tables`, needs pandas and
  pyarrow: the ``eval`` extra). Each entity keeps its rows sorted by ``ts`` (ties
  in file order: duplicates are kept, for the daemon to dead-letter). Integer
  times 1 apart (Nixtla's ``ds`` = 1, 2, 3, … where a data set has no dates) are
  positions, placed as an M4 file's values are (:func:`positions_on_clock`).
* ``ett`` — the ETT CSVs: a ``date`` column (UTC) and one column per variable;
  every variable is one entity named after its column.

A CSV may be compressed as pandas reads it (``Daily-train.csv.gz``, ``.bz2``, ``.xz``,
``.zst``, or a ``.zip`` of the one file): it is read as the CSV.
A file that cannot be used raises :class:`DataError` naming the file, the line
and what is wrong. The real data sets live beside the repository in
``../shared/data`` (see :func:`default_data_dir`); a small M4 subset ships with
the package (:func:`bundled_m4`).
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import itertools
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streammeta.errors import DataError
from streammeta.io.compressed import decompressed
from streammeta.io.frequency import Frequency
from streammeta.io.series import (
    ABSENT,
    MISSING_VALUE,
    Series,
    from_iso,
    group,
    long_columns,
    parse_ts,
)

M4_START_MS = int(datetime(2017, 1, 1, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000
FORMATS = ("m4", "long", "ett")
DATA_DIR_ENV = "STREAMMETA_DATA_DIR"
M4_TRAIN_NAME = "Hourly-train.csv"

PathLike = str | os.PathLike[str]


def default_data_dir() -> Path:
    """Where the shared real data sets are: ``$STREAMMETA_DATA_DIR`` if set, else
    ``../shared/data`` relative to the working directory — the repository is
    checked out beside ``shared/`` and commands run from its root."""
    return Path(os.environ.get(DATA_DIR_ENV) or "../shared/data")


def bundled_m4() -> Path:
    """The M4 hourly subset shipped with the package (see ``streammeta/data/README.md``);
    its test part is ``find_m4_test(bundled_m4())``."""
    # The package is installed unzipped (setuptools), so the resource is a real file.
    return Path(str(importlib.resources.files("streammeta").joinpath(
        "data", "m4_hourly_subset.csv")))


# -- reading CSV -----------------------------------------------------------------------
def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    data = decompressed(path, data)
    if not data.strip():
        raise DataError(f"{path}: empty file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None


def _records(path: Path) -> tuple[list[str], list[int], list[list[str]]]:
    """Header, and the line number and cells of every non-blank data row."""
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    lines: list[int] = []
    rows: list[list[str]] = []
    try:
        header = [name.strip() for name in next(reader)]
        for row in reader:
            if row:  # a blank line holds nothing (a trailing one is common)
                lines.append(reader.line_num)  # physical line, right across quoted newlines
                rows.append(row)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no data rows (only a header)")
    return header, lines, rows


def _column(header: Sequence[str], index: int) -> str:
    return repr(header[index]) if index < len(header) and header[index] else f"#{index + 1}"


def _numbers(cells: list[str], width: int, lines: Sequence[int],
             column: Callable[[int], str], path: Path) -> np.ndarray:
    """``cells`` (row-major, ``width`` per row) as a (rows, width) float64 array.

    numpy parses the whole block at once; only on failure are the cells walked to
    name the bad one: its row's line, and ``column(j)`` for its column j.
    """
    def where(k: int) -> str:
        return f"{path}:{lines[k // width]}: column {column(k % width)}"

    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        for k, raw in enumerate(cells):
            try:
                float(raw)
            except ValueError:
                raise DataError(f"{where(k)}: {raw!r} is not a number") from None
        raise  # numpy refused something float() accepts: not expected
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        k = int(bad[0])
        raise DataError(f"{where(k)}: {cells[k]!r} is not a finite number")
    return values.reshape(-1, width)


def _timestamps(cells: list[str], lines: Sequence[int], path: Path,
                wall: bool = False) -> np.ndarray:
    try:  # all epoch ms: one numpy call
        return np.array(cells, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:  # all naive ISO-8601 (as in ETT): numpy converts the datetimes at once
        parsed = [from_iso(raw) for raw in cells]
        if not any(p.tzinfo for p in parsed):
            return np.array(parsed, dtype="datetime64[ms]").astype(np.int64)
    except ValueError:
        pass
    out: list[int] = []  # mixed kinds or time zones: one by one, naming a bad cell
    for raw, line in zip(cells, lines, strict=True):
        try:
            out.append(parse_ts(raw, wall))
        except (ValueError, OverflowError) as exc:
            raise DataError(f"{path}:{line}: {exc}") from None
    try:
        return np.array(out, dtype=np.int64)
    except OverflowError:
        raise DataError(f"{path}: a timestamp is out of the int64 range of ms") from None


# -- formats ---------------------------------------------------------------------------
def load_m4(path: PathLike, step_ms: int = HOUR_MS, start_ms: int = M4_START_MS,
            frequency: Frequency | None = None) -> list[Series]:
    """Series of an M4 wide CSV, placed on a synthetic clock (M4 has no timestamps):
    ``step_ms`` apart, or whole steps of ``frequency`` (its calendar's dates from the
    month of ``start_ms`` on, for a calendar one)."""
    if frequency is not None and not frequency.calendar:
        step_ms = frequency.step_ms
    if step_ms < 1:
        raise ValueError(f"step_ms must be positive, got {step_ms}")
    path = Path(path)
    header, lines, rows = _records(path)
    out: list[Series] = []
    seen: set[str] = set()
    for line, row in zip(lines, rows, strict=True):
        entity = row[0].strip()
        if not entity:
            raise DataError(f"{path}:{line}: missing series id in the first column")
        if entity in seen:
            raise DataError(f"{path}:{line}: duplicate series id {entity!r}")
        seen.add(entity)
        cells = row[1:]
        try:
            n = cells.index("")
        except ValueError:
            n = len(cells)
        if n == 0:
            raise DataError(f"{path}:{line}: series {entity!r} has no values")
        if any(cells[n:]):  # a value after an empty cell: a hole, not a ragged end
            j = n + next(i for i, cell in enumerate(cells[n:]) if cell)
            raise DataError(f"{path}:{line}: column {_column(header, j + 1)}: value after an "
                            f"empty cell (series must not have holes)")
        values = _numbers(cells[:n], n, [line], lambda j: _column(header, j + 1), path)[0]
        if frequency is not None and frequency.calendar:
            first = frequency.to_units(np.array([start_ms], dtype=np.int64))[0][0]
            ts = frequency.to_ms(first + np.arange(n, dtype=np.int64) * frequency.step)
        else:
            ts = start_ms + np.arange(n, dtype=np.int64) * step_ms
        out.append(Series(entity, ts, values))
    return out


def resolve_m4(path: PathLike) -> Path:
    """The training file meant by an M4-format ``path`` (see the module docstring)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / M4_TRAIN_NAME).is_file():
            return path / M4_TRAIN_NAME
        found = sorted(path.glob("*-train.csv"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise DataError(f"{path / M4_TRAIN_NAME}: no such file (nor any "
                            "<Name>-train.csv beside it)")
        names = ", ".join(f.name.removesuffix("-train.csv") for f in found)
        raise DataError(f"{path}: name one subset, as {path}/<Name> or the file "
                        f"(subsets here: {names})")
    candidate = path.with_name(f"{path.name}-train.csv")
    if candidate.is_file():
        return candidate
    raise DataError(f"{path}: no such file (nor {candidate.name})")


def load_m4_test(path: PathLike) -> dict[str, np.ndarray]:
    """Series id → the official test values (the H values after its training part)."""
    return {s.entity: s.values for s in load_m4(path)}


def find_m4_test(train_path: PathLike) -> Path | None:
    """The test file beside a training file: ``Hourly-test.csv`` for
    ``Hourly-train.csv``, ``x_test.csv`` for ``x.csv``; None when there is none."""
    train = Path(train_path)
    names = []
    if "-train" in train.name:
        head, _, tail = train.name.rpartition("-train")
        names.append(f"{head}-test{tail}")
    names.append(f"{train.stem}_test{train.suffix}")
    for name in names:
        candidate = train.with_name(name)
        if candidate != train and candidate.is_file():
            return candidate
    return None


def is_parquet(path: Path) -> bool:
    """Named ``*.parquet``, or a Parquet file by its magic bytes (``data.pq``, ``.parq``:
    they were read as CSV and refused as "not UTF-8 text (byte 7)")."""
    if path.suffix.lower() == ".parquet":
        return True
    try:
        with open(path, "rb") as file:
            return file.read(4) == b"PAR1"
    except OSError:  # a folder, or no such file: the CSV reader says which
        return False


def load_long(path: PathLike, wall: bool = False, end: bool = False) -> list[Series]:
    """Series of a long CSV ``entity,ts,value`` (or ``unique_id,ds,y``), entities in
    order of first appearance; Parquet by its name or content (:func:`is_parquet`).
    ``wall``: times with an offset or zone count in its wall clock
    (``Frequency.wall_clock``); ``end``: a Parquet's pandas periods are their last days
    (``"ME"``), else their first."""
    path = Path(path)
    if is_parquet(path):
        from streammeta.io import tables

        return tables.load_parquet(path, wall, end)
    header, lines, rows = _records(path)
    ie, it, iv = long_columns(header, path)
    need = max(ie, it, iv) + 1
    for line, row in zip(lines, rows, strict=True):
        if len(row) < need:
            raise DataError(f"{path}:{line}: expected at least {need} columns, got {len(row)}")
    entities = [row[ie] for row in rows]
    ts = _timestamps([row[it] for row in rows], lines, path, wall)
    cells = [row[iv] for row in rows]
    try:
        values = _numbers(cells, 1, lines, lambda _: _column(header, iv), path)[:, 0]
    except DataError as exc:
        if not any(cell.strip().lower() in ABSENT for cell in cells):
            raise
        raise DataError(f"{exc}: {MISSING_VALUE}") from None
    return group(entities, ts, values, lines, path)


def load_ett(path: PathLike) -> list[Series]:
    """Series of an ETT CSV: one entity per variable column, all on the ``date`` clock."""
    path = Path(path)
    header, lines, rows = _records(path)
    if header[0].lower() != "date":
        raise DataError(f"{path}:1: the first column must be 'date', got {header[0]!r}")
    variables = header[1:]
    if not variables:
        raise DataError(f"{path}:1: no variable columns after 'date'")
    for j, name in enumerate(variables):
        if not name or name in variables[:j]:
            raise DataError(f"{path}:1: column {j + 2} needs a unique name, got {name!r}")
    width = len(header)
    for line, row in zip(lines, rows, strict=True):
        if len(row) != width:
            raise DataError(f"{path}:{line}: expected {width} columns, got {len(row)}")
    ts = _timestamps([row[0] for row in rows], lines, path)
    back = np.flatnonzero(np.diff(ts) <= 0)
    if len(back):
        k = int(back[0]) + 1
        raise DataError(f"{path}:{lines[k]}: date {rows[k][0]!r} is not after the previous row")
    cells = list(itertools.chain.from_iterable(row[1:] for row in rows))
    values = _numbers(cells, width - 1, lines, lambda j: _column(header, j + 1), path)  # (T, V)
    return [Series(name, ts.copy(), values[:, j].copy()) for j, name in enumerate(variables)]


def load(path: PathLike, fmt: str, frequency: Frequency | None = None) -> list[Series]:
    """Load ``path`` in format ``fmt`` (one of :data:`FORMATS`); for ``m4`` see
    :func:`resolve_m4`. ``frequency`` (``series.freq``, else ``series.step_ms``): the
    clock an M4 file, which has no timestamps, is placed on (default hourly); the
    other formats keep their own timestamps (a long file's with an offset or zone in
    its wall clock where ``frequency`` steps whole days: ``Frequency.wall_clock``)."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    path = Path(path)
    if fmt != "long" and is_parquet(path):
        raise DataError(f"{path}: a Parquet file is read in the long format (--format long: "
                        f"columns entity, ts, value or unique_id, ds, y), not as {fmt}")
    if fmt == "m4":
        path = resolve_m4(path)
    elif path.is_dir():
        raise DataError(f"{path}: is a directory, expected a {fmt} file")
    if fmt == "m4":
        return load_m4(path, frequency=frequency)
    if fmt == "long":
        series = load_long(path, frequency is not None and frequency.wall_clock,
                           frequency is not None and frequency.anchor == "end")
        return positions_on_clock(series, frequency) if frequency is not None else series
    return load_ett(path)


def positions_on_clock(series: list[Series], frequency: Frequency,
                       start_ms: int = M4_START_MS) -> list[Series]:
    """Integer times 1 apart (Nixtla's ``ds`` = 1, 2, 3, … of data sets without dates,
    statsforecast's ``freq=1``), which read as epoch ms are 1 ms apart, placed on
    ``frequency``'s clock as an M4 file's values are: position p at p − (the smallest)
    steps after 2017-01-01, on its calendar for a calendar frequency. A daily or
    monthly ``series.freq`` refused them as off its step or calendar. Anything else
    (median spacing not 1 ms, or a frequency of 1 ms) is returned unchanged."""
    diffs = [np.diff(s.ts) for s in series if len(s) > 1]
    if not diffs or frequency.step_ms == 1 or int(np.median(np.concatenate(diffs))) != 1:
        return series
    low = min(int(s.ts.min()) for s in series if len(s))
    if frequency.calendar:
        first = int(frequency.to_units(np.array([start_ms], dtype=np.int64))[0][0])
        return [Series(s.entity, frequency.to_ms(first + (s.ts - low) * frequency.step),
                       s.values) for s in series]
    return [Series(s.entity, start_ms + (s.ts - low) * frequency.step_ms, s.values)
            for s in series]


# -- one stream ------------------------------------------------------------------------
def _median_step(series: Sequence[Series]) -> int:
    for s in series:
        if len(s) > 1:
            return max(1, int(np.median(np.diff(s.ts))))
    return HOUR_MS  # no spacing to measure: every loader here is hourly


def interleave(series: Sequence[Series], arrival_gap_steps: int = 0,
               step_ms: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All observations in global time order (ties in the order of ``series``): the
    stream a daemon would see, as (entities, ts, values).

    With ``arrival_gap_steps > 0`` series k is shifted in time to start
    ``k * arrival_gap_steps`` steps after the earliest start, so that entities
    arrive over time (cold start); values are unchanged. The step is ``step_ms``,
    else the median spacing of the first series with two observations.
    """
    if arrival_gap_steps < 0:
        raise ValueError(f"arrival_gap_steps must be >= 0, got {arrival_gap_steps}")
    lengths = np.array([len(s) for s in series], dtype=np.int64)  # (S,)
    if not lengths.sum():
        return [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    ts = np.concatenate([s.ts for s in series])  # (N,) grouped by series
    values = np.concatenate([s.values for s in series])
    owner = np.repeat(np.arange(len(series)), lengths)  # (N,) series index
    if arrival_gap_steps:
        step = step_ms or _median_step(series)
        firsts = np.array([s.ts[0] if len(s) else 0 for s in series], dtype=np.int64)
        t0 = firsts[lengths > 0].min()
        shifts = t0 + np.arange(len(series), dtype=np.int64) * arrival_gap_steps * step - firsts
        ts = ts + shifts[owner]
    # Stable on the grouped layout: ties keep series order, then position.
    order = np.argsort(ts, kind="stable")
    names = np.array([s.entity for s in series], dtype=object)
    return names[owner[order]].tolist(), ts[order], values[order]
