"""Long tables beyond CSV, and timestamps the engine's fixed step cannot hold.

* :func:`load_parquet`: a long Parquet file (``entity,ts,value`` or Nixtla's
  ``unique_id,ds,y``) through pandas and pyarrow, imported only here: an optional
  dependency (the ``eval`` extra), with a clear error without it. ``ts`` may be a
  datetime column (naive means UTC), epoch ms, or ISO-8601 text.
* :func:`on_step_grid`: calendar months, quarters or years are not a fixed number
  of milliseconds apart, so the engine (one ``series.step_ms``) would reject
  most of them as misaligned. The evaluation places such data on a grid: every
  distinct timestamp of the data set, in order, becomes one step, so entities
  stay aligned with each other and each keeps its order and spacing in steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streammeta.errors import DataError
from streammeta.io.series import Series, group, long_columns, parse_ts


def _pandas() -> Any:
    try:
        import pandas
        import pyarrow  # noqa: F401  (pandas reads Parquet through it)
    except ImportError:
        raise DataError("reading Parquet needs pandas and pyarrow: "
                        "pip install 'streammeta[eval]'") from None
    return pandas


def load_parquet(path: Path) -> list[Series]:
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
    stamps = frame.iloc[:, it]
    if pd.api.types.is_datetime64_any_dtype(stamps):
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        ts = stamps.to_numpy().astype("datetime64[ms]").astype(np.int64)
    elif pd.api.types.is_integer_dtype(stamps):
        ts = stamps.to_numpy(dtype=np.int64)
    else:
        try:
            ts = np.array([parse_ts(str(v)) for v in stamps], dtype=np.int64)
        except ValueError as exc:
            raise DataError(f"{path}: column {header[it]!r}: {exc}") from None
    values = pd.to_numeric(frame.iloc[:, iv], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(f"{path}: row {int(bad[0]) + 1}: column {header[iv]!r}: "
                        f"{frame.iloc[int(bad[0]), iv]!r} is not a finite number")
    entities = [str(e) for e in frame.iloc[:, ie].tolist()]
    return group(entities, ts, values, None, path)


def on_step_grid(series: list[Series]) -> tuple[list[Series], str | None]:
    """``series`` unchanged if every spacing is the same, else re-timed: the k-th
    distinct timestamp of the data set at ``first + k * step``, step the median
    spacing (about a month for monthly data); → (series, a note or None)."""
    diffs = [np.diff(s.ts) for s in series if len(s) > 1]
    if not diffs:
        return series, None
    spacing = np.concatenate(diffs)
    step = max(1, int(np.median(spacing)))
    if bool((spacing == step).all()):
        return series, None
    stamps = np.unique(np.concatenate([s.ts for s in series]))
    first = int(stamps[0])
    out = [Series(s.entity, first + np.searchsorted(stamps, s.ts) * step, s.values)
           for s in series]
    return out, (f"timestamps are not a fixed step apart (calendar months?): each distinct "
                 f"timestamp is placed one step of {step} ms after the previous one")
