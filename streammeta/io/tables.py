"""Long tables beyond CSV, and timestamps the engine's fixed step cannot hold.

* :func:`load_parquet`: a long Parquet file (``entity,ts,value`` or Nixtla's
  ``unique_id,ds,y``) through pandas and pyarrow, imported only here: an optional
  dependency (the ``eval`` extra), with a clear error without it. ``ts`` may be a
  datetime column (naive means UTC), epoch ms, or ISO-8601 text.
* :func:`on_step_grid`: calendar months, quarters or years are not a fixed number
  of milliseconds apart, so the engine (one ``series.step_ms``) would reject
  most of them as misaligned, and a series with gaps would be scored against values
  its forecasts were not for. The evaluation places each series' values one step
  apart, in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streammeta.errors import DataError
from streammeta.io.series import MISSING_VALUE, Series, group, long_columns, parse_ts

if TYPE_CHECKING:
    from streammeta.io.frequency import Frequency


def _pandas() -> Any:
    try:
        import pandas
        import pyarrow  # noqa: F401  (pandas reads Parquet through it)
    except ImportError:
        raise DataError("reading Parquet needs pandas and pyarrow: "
                        "pip install 'streammeta[eval]'") from None
    return pandas


def load_parquet(path: Path, wall: bool = False, end: bool = False) -> list[Series]:
    """The series of a long Parquet file; ``wall``: a zone-aware ``ts`` counts in its
    zone's wall clock (``Frequency.wall_clock``), else in UTC. A pandas Period ``ts``
    (``PeriodIndex`` written by ``to_parquet``) is each period's first day, its last
    given ``end`` (``"ME"``, ``"QE"``, ``"YE"``), as ``Forecaster`` takes it; it was
    refused as text ("timestamp '1995Q1' is neither epoch ms nor ISO-8601")."""
    pd = _pandas()
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    header = [str(c) for c in frame.columns]
    ie, it, iv = long_columns(header, path)
    for j in (ie, it):  # null: "None" as an id, NaT as the year -292 million
        null = np.flatnonzero(frame.iloc[:, j].isna().to_numpy())
        if len(null):
            raise DataError(f"{path}: row {int(null[0]) + 1}: column {header[j]!r} is "
                            f"missing ({len(null)} row(s) without one)")
    stamps = frame.iloc[:, it]
    if isinstance(stamps.dtype, pd.PeriodDtype):
        stamps = stamps.dt.end_time.dt.normalize() if end else stamps.dt.start_time
    if pd.api.types.is_datetime64_any_dtype(stamps):
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = (stamps if wall else stamps.dt.tz_convert("UTC")).dt.tz_localize(None)
        ts = stamps.to_numpy().astype("datetime64[ms]").astype(np.int64)
    elif pd.api.types.is_integer_dtype(stamps):
        ts = stamps.to_numpy(dtype=np.int64)
    else:
        try:
            ts = np.array([parse_ts(str(v), wall) for v in stamps], dtype=np.int64)
        except ValueError as exc:
            raise DataError(f"{path}: column {header[it]!r}: {exc}") from None
    values = pd.to_numeric(frame.iloc[:, iv], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        cell = frame.iloc[int(bad[0]), iv]
        cell = cell.item() if hasattr(cell, "item") else cell  # nan, not np.float64(nan)
        raise DataError(f"{path}: row {int(bad[0]) + 1}: column {header[iv]!r}: {cell!r} is "
                        f"not a finite number ({len(bad)} row(s) so): {MISSING_VALUE}")
    entities = [str(e) for e in frame.iloc[:, ie].tolist()]
    return group(entities, ts, values, None, path)


def on_step_grid(series: list[Series], frequency: Frequency | None = None,
                 source: object = "the data") -> tuple[list[Series], str | None]:
    """``series`` unchanged where every entity's values are one step apart, else
    re-timed so that they are: evaluation scores value by value (an origin's truth is
    the next H values, whatever their timestamps), so a series with a gap would have
    the engine forecast the missing steps (it fills short gaps) and be scored against
    the values after them. With a calendar ``frequency`` each series keeps its first
    date and takes the next ones of the calendar; otherwise the step is the median
    spacing (about a month for monthly data without ``series.freq``) and each series
    starts at its first timestamp's place among the data set's distinct timestamps,
    so entities stay aligned where none has a gap. → (series, a note or None). Two
    values of one entity at one time raise :class:`DataError`."""
    for s in series:
        same = np.flatnonzero(np.diff(s.ts) == 0)
        if len(same):
            when = np.datetime64(int(s.ts[same[0]]), "ms")
            raise DataError(f"{source}: series {s.entity!r} has two values at {when}: "
                            "evaluate needs one per time (the daemon dead-letters the later "
                            "one as 'duplicate')")
    if frequency is not None and frequency.calendar:
        placed = [frequency.to_units(s.ts) for s in series]
        off = not all(bool(on.all()) for _, on in placed)  # the engine refuses such dates
        if off or all(bool((np.diff(u) == frequency.step).all()) for u, _ in placed):
            return series, None
        out = [Series(s.entity, frequency.to_ms(u[0] + np.arange(len(u)) * frequency.step),
                      s.values) for s, (u, _) in zip(series, placed, strict=True)]
        return out, (f"some series skip dates of freq {frequency.name!r}: each series' "
                     "values are placed on consecutive dates from its first (evaluate "
                     "scores value by value)")
    diffs = [np.diff(s.ts) for s in series if len(s) > 1]
    if not diffs:
        return series, None
    spacing = np.concatenate(diffs)
    step = max(1, int(np.median(spacing)))
    if bool((spacing == step).all()):
        return series, None
    stamps = np.unique(np.concatenate([s.ts for s in series]))
    first = int(stamps[0])
    out = [Series(s.entity, first + (int(np.searchsorted(stamps, s.ts[0]))
                                     + np.arange(len(s), dtype=np.int64)) * step, s.values)
           for s in series]
    return out, (f"timestamps are not a fixed step apart (calendar months without "
                 f"series.freq, or gaps): each series' values are placed one step of {step} "
                 "ms apart from its first (evaluate scores value by value)")
