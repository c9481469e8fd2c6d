"""DataFrames in and out of the engine: Nixtla's long format, checked as the daemon checks.

Observations come as a pandas DataFrame with ``unique_id``, ``ds`` and ``y`` (other
columns ignored). :func:`observations` turns one into the engine's arrays, refusing
with a :class:`DataError` every row that the daemon would dead-letter, with its
dead-letter reason (``streammeta.io.codec.Reason``), before anything is applied.
``ds`` is a datetime column (naive means UTC), epoch milliseconds, or ISO-8601 text.

Forecasts go out in the long format of Nixtla's ``cross_validation``: one row per
entity, origin (``cutoff``) and step, the point forecast in column ``streammeta``
and each quantile level q in ``streammeta-q-<100·q>`` (as TimeGPT names them).

pandas is imported only here and in :mod:`streammeta.forecaster` (the ``eval`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from streammeta.errors import DataError
from streammeta.io import datasets
from streammeta.io.codec import Reason
from streammeta.io.frequency import Frequency

COLUMNS = ("unique_id", "ds", "y")
POINT = "streammeta"
_SHOWN = 3  # bad rows named in an error message
_NS_LIMIT_MS = np.iinfo(np.int64).max // 1_000_000  # datetime64[ns] spans ±this many ms


def pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise DataError("streammeta.Forecaster needs pandas: pip install 'streammeta[eval]'"
                        ) from None
    return pandas


def quantile_column(level: float) -> str:
    """``streammeta-q-10`` for 0.1, ``streammeta-q-2.5`` for 0.025."""
    return f"{POINT}-q-{round(level * 100, 6):g}"


@dataclass(frozen=True)
class Observations:
    """A frame's rows in the order they are applied: time order, ties in frame order."""

    position: np.ndarray  # (N,) row position in the frame
    entities: list[str]  # (N,)
    units: np.ndarray  # (N,) int64 in the frequency's units (ms, or months)
    values: np.ndarray  # (N,) float64
    tz: Any = None  # the time zone of a zone-aware ds column (the forecasts' ds take it)

    def __len__(self) -> int:
        return len(self.entities)


class _Problems:
    """Bad rows found so far: (frame position, reason, what is wrong)."""

    def __init__(self, frame: Any, positions: bool = False) -> None:
        self.index = frame.index
        self.ids, self.times = frame["unique_id"], frame["ds"]
        self.found: list[tuple[int, Reason, str]] = []
        self.positions = positions  # ds are positions (an integer freq): no hint on them

    def add(self, positions: np.ndarray, reason: Reason, what: str) -> None:
        self.found += [(int(p), reason, what) for p in np.asarray(positions).tolist()]

    def raise_any(self) -> None:
        if not self.found:
            return
        self.found.sort(key=lambda item: item[0])
        shown = "; ".join(f"row {label(self.index, p)!r} (unique_id "
                          f"{label(self.ids.array, p)!r}, ds {self.times.iloc[p]}): {what} "
                          f"({reason.value})" for p, reason, what in self.found[:_SHOWN])
        more = len(self.found) - _SHOWN
        raise DataError(f"{len(self.found)} row(s) the daemon would dead-letter, nothing "
                        f"applied: {shown}" + (f"; and {more} more" if more > 0 else "")
                        + self._hint())

    def _hint(self) -> str:
        """Integer ds are epoch ms (but with an integer ``freq``): years (1949) or
        positions (1, 2, 3) are 1 ms apart."""
        if self.positions or not _integers(self.times) or all(r != Reason.MISALIGNED
                                                               for _, r, _ in self.found):
            return ""
        other = unit_hint(self.times)
        if other:
            return other
        return (". An integer ds is epoch milliseconds: years or positions 1, 2, 3 are 1 ms "
                "apart; for positions pass an integer freq, as statsforecast does "
                "(Forecaster(freq=1, ...)), or give dates (pd.to_datetime(df.ds.astype(str), "
                "format='%Y'), or pd.date_range(start, periods=n, freq=...))")


# Epoch times in another unit than ms, known by their size: now is 1.7e9 s, 1.7e15 µs,
# 1.7e18 ns; as ms those were 1970-01 to 1973, or millennia from now. Lower bounds.
_OTHER_UNITS = ((1e17, "ns", "nanoseconds"), (1e14, "us", "microseconds"),
                (1e11, "", ""), (1e8, "s", "seconds"))


def unit_hint(times: Any) -> str:
    """For integer ds that look like epoch seconds, microseconds or nanoseconds (Unix
    time; ``df.ds.astype("int64")`` is nanoseconds), a sentence saying so; else ""."""
    if not _integers(times) or not times.notna().any():
        return ""
    size = float(np.median(np.abs(times.dropna().to_numpy(dtype=np.float64))))
    unit, name = next(((u, n) for bound, u, n in _OTHER_UNITS if size >= bound), ("", ""))
    if not unit:
        return ""
    example = pandas().to_datetime(int(np.median(times.dropna())), unit=unit)
    return (f". An integer ds is epoch milliseconds, and these look like epoch {name} "
            f"(their median {example}): give dates, pd.to_datetime(df.ds, unit={unit!r})")


def label(index: Any, position: int) -> object:
    """The frame's label of the row at ``position``, as a plain Python value."""
    value = index[position]
    return value.item() if hasattr(value, "item") else value


def observations(frame: Any, frequency: Frequency, max_id_length: int,
                 last: Callable[[str], int | None], integer: bool = False) -> Observations:
    """Check ``frame`` and order its rows for the engine; ``last(entity)`` is the
    entity's newest timestamp in units, None for an entity not seen yet; ``integer``:
    ``ds`` are positions (an integer ``freq``), anything else is refused."""
    pd = pandas()
    if not isinstance(frame, pd.DataFrame):
        package = type(frame).__module__.split(".")[0]
        kind = type(frame).__name__ if package == "builtins" else (
            f"{package}.{type(frame).__name__}")  # polars' is a DataFrame too
        hint = " (convert it with .to_pandas())" if hasattr(frame, "to_pandas") else ""
        raise DataError(f"expected a pandas DataFrame with columns {', '.join(COLUMNS)}, "
                        f"got a {kind}{hint}")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        named = [c for c in missing if c in (frame.index.names or [])]
        hint = f"; {', '.join(named)} in the index: .reset_index()" if named else ""
        raise DataError(f"the frame lacks column(s) {', '.join(missing)} (it needs "
                        f"{', '.join(COLUMNS)}; it has {', '.join(map(str, frame.columns))}"
                        f"{hint})")
    if integer and not _integers(frame["ds"]):  # statsforecast's freq=1: positions
        raise DataError(f"an integer freq takes integer ds (positions 1, 2, 3, …); ds is "
                        f"{frame['ds'].dtype}: give a frequency such as 'h', 'D' or 'MS'")
    problems = _Problems(frame, integer)
    entities = _entities(frame["unique_id"], max_id_length, problems)
    ds = _arrow_times(_period_starts(frame["ds"], frequency))
    ts = _timestamps(ds, problems, frequency.wall_clock)
    values = _values(frame["y"], problems)
    units, on = frequency.to_units(ts)
    problems.add(np.flatnonzero(~on), Reason.MISALIGNED,
                 f"ds is not a date of freq {frequency.name!r}: {frequency.dates}")
    problems.raise_any()  # the order checks below need clean ids and times
    _check_order(entities, units, frequency, last, problems, integer)
    problems.raise_any()
    _check_spacing(entities, units, frequency, unit_hint(frame["ds"]))
    order = np.argsort(units, kind="stable")  # (N,) time order; an entity's rows keep theirs
    return Observations(order, [entities[i] for i in order.tolist()], units[order],
                        values[order], _zone(ds))


def _integers(column: Any) -> bool:
    """Whether ``ds`` is an integer column (booleans are not)."""
    pd = pandas()
    return bool(pd.api.types.is_integer_dtype(column) and not pd.api.types.is_bool_dtype(column))


def _zone(column: Any) -> Any:
    """The time zone of a zone-aware datetime column; None for any other ``ds``."""
    if not pandas().api.types.is_datetime64_any_dtype(column):
        return None
    return getattr(column.dt, "tz", None)


def _entities(column: Any, max_length: int, problems: _Problems) -> list[str]:
    null = column.isna().to_numpy()
    problems.add(np.flatnonzero(null), Reason.MISSING_FIELD, "unique_id is missing")
    names = ["" if n else str(v) for v, n in zip(column.tolist(), null.tolist(), strict=True)]
    lengths = np.fromiter((len(n) for n in names), dtype=np.int64, count=len(names))
    problems.add(np.flatnonzero((lengths == 0) & ~null), Reason.ENTITY_EMPTY,
                 "unique_id is empty")
    problems.add(np.flatnonzero(lengths > max_length), Reason.ENTITY_TOO_LONG,
                 f"unique_id is longer than series.max_entity_id_length ({max_length})")
    return names


def _period_starts(column: Any, frequency: Frequency) -> Any:
    """A pandas Period column (``pd.period_range``) as the timestamps ``frequency`` takes:
    each period's first day, its last for a calendar frequency anchored at the end
    ("ME"). As text ("2020-01", "2020-01-06/2020-01-12") it was refused."""
    if not isinstance(column.dtype, pandas().PeriodDtype):
        return column
    if frequency.anchor == "end":
        return column.dt.end_time.dt.normalize()
    return column.dt.start_time


def _arrow_times(column: Any) -> Any:
    """A pyarrow-backed timestamp column (``convert_dtypes(dtype_backend="pyarrow")``,
    ``pd.read_parquet(..., dtype_backend="pyarrow")``, polars' ``to_pandas(
    use_pyarrow_extension_array=True)``) as numpy's datetime64 of its unit and zone.
    pandas does not count it a datetime column: its rows were read one by one as text,
    and its zone was lost (the forecasts came back naive)."""
    pd = pandas()
    if not isinstance(column.dtype, pd.ArrowDtype):
        return column
    import pyarrow  # an ArrowDtype column exists: so does pyarrow

    arrow = column.dtype.pyarrow_dtype
    if not pyarrow.types.is_timestamp(arrow):
        return column
    return column.astype(pd.DatetimeTZDtype(arrow.unit, arrow.tz) if arrow.tz
                         else f"datetime64[{arrow.unit}]")


def _timestamps(column: Any, problems: _Problems, wall: bool = False) -> np.ndarray:
    """ds → (N,) epoch ms (a zone-aware column's wall-clock time, given ``wall``); bad
    cells are reported and read as 0."""
    pd = pandas()
    null = column.isna().to_numpy()
    problems.add(np.flatnonzero(null), Reason.MISSING_FIELD, "ds is missing")
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dt, "tz", None) is not None:
            column = (column if wall else column.dt.tz_convert("UTC")).dt.tz_localize(None)
        ms = column.to_numpy().astype("datetime64[ms]").astype(np.int64)
        return np.where(null, 0, ms)
    if _integers(column):
        return np.where(null, 0, column.to_numpy(dtype=np.int64, na_value=0))
    out = np.zeros(len(column), dtype=np.int64)
    for k, (raw, absent) in enumerate(zip(column.tolist(), null.tolist(), strict=True)):
        if absent:
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError(f"timestamp {raw!r} is a boolean")
            out[k] = datasets.parse_ts(raw.isoformat() if hasattr(raw, "isoformat")
                                       else str(raw), wall)
        except (ValueError, OverflowError) as exc:
            problems.add(np.array([k]), Reason.BAD_TIMESTAMP, f"ds: {exc}")
    return out


def _values(column: Any, problems: _Problems) -> np.ndarray:
    pd = pandas()
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        numbers = pd.to_numeric(column, errors="coerce")
        wrong = numbers.isna().to_numpy() & column.notna().to_numpy()
        wrong |= np.array([isinstance(v, bool | str) for v in column.tolist()], dtype=bool)
        problems.add(np.flatnonzero(wrong), Reason.WRONG_TYPE, "y is not a number")
        # Not Series.where: on a boolean column it warned of pandas' future downcasting.
        values = np.where(wrong, 0.0, numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    else:
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    problems.add(np.flatnonzero(~finite), Reason.NON_FINITE, "y is missing, NaN or infinite")
    problems.add(np.flatnonzero(finite & (np.abs(values) > np.finfo(np.float32).max)),
                 Reason.NON_FINITE, "y is beyond ±3.4e38, the float32 range the engine "
                 "computes in")
    return values


def _by_entity(entities: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The distinct entities in order of appearance, each row's code among them (N,),
    and the rows ordered by entity, then frame order (N,)."""
    codes_of: dict[str, int] = {}
    codes = np.fromiter((codes_of.setdefault(e, len(codes_of)) for e in entities),
                        dtype=np.int64, count=len(entities))
    return list(codes_of), codes, np.lexsort((np.arange(len(codes)), codes))


def _check_order(entities: list[str], units: np.ndarray, frequency: Frequency,
                 last: Callable[[str], int | None], problems: _Problems,
                 integer: bool = False) -> None:
    """Per entity, in frame order: each ds a whole number of steps after the previous
    one (the entity's newest before this frame, for its first row); ``integer``: ds are
    positions."""
    names, codes, by_entity = _by_entity(entities)
    none = np.iinfo(np.int64).min
    known = np.array([none if (t := last(e)) is None else t for e in names], dtype=np.int64)
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[by_entity][1:] != codes[by_entity][:-1]
    previous = np.empty(len(codes), dtype=np.int64)
    previous[1:] = units[by_entity][:-1]
    previous[first] = known[codes[by_entity][first]]
    has = previous != none  # a new entity's first row has no previous
    gap = units[by_entity] - np.where(has, previous, 0)
    where = by_entity
    within = has & ~first  # against the row before it in the frame
    problems.add(where[within & (gap < 0)], Reason.LATE,
                 "ds is before the entity's previous ds (rows of a unique_id must be in "
                 "time order: sort the frame by ds)")
    problems.add(where[within & (gap == 0)], Reason.DUPLICATE,
                 "ds repeats the entity's previous ds")
    for k in np.flatnonzero(has & first & (gap <= 0)).tolist():  # against an earlier update
        ms = int(frequency.to_ms(previous[k]))
        newest = ms if integer else np.datetime64(ms, "ms")
        problems.add(where[k:k + 1], Reason.LATE if gap[k] < 0 else Reason.DUPLICATE,
                     f"ds is not after {newest}, the newest ds an earlier update applied "
                     "for this unique_id")
    name = frequency.step if integer else repr(frequency.name)
    problems.add(where[has & (gap > 0) & (gap % frequency.step != 0)], Reason.MISALIGNED,
                 f"ds is not a whole number of steps of {name} after the "
                 "entity's previous ds")


def _check_spacing(entities: list[str], units: np.ndarray, frequency: Frequency,
                   hint: str = "") -> None:
    """Refuse a frame none of whose series' consecutive rows is one step of ``freq``
    apart (one series with 4 rows at least): its data has another step. Without ``freq`` (hourly by
    default) daily rows were taken as 23-hour gaps, interpolated, and forecast by the
    hour; monthly ones each restarted their series cold, a gap beyond
    ``series.max_gap_fill``; all silently. Gaps between some rows stay fine."""
    _, codes, by_entity = _by_entity(entities)
    same = codes[by_entity][1:] == codes[by_entity][:-1]
    gaps = np.diff(units[by_entity])[same]  # (pairs,) in the frequency's units
    pairs = np.bincount(codes[by_entity][1:][same], minlength=1)  # per series
    if int(pairs.max()) < 3 or bool((gaps == frequency.step).any()):
        return  # a few rows each (Friday and Monday of daily values) may all be gaps
    median = int(np.median(gaps))
    try:
        apart = (f"{median} months" if frequency.calendar
                 else str(pandas().Timedelta(median, unit="ms")))
    except (OverflowError, ValueError):  # beyond pandas' 292 years (ns in ms)
        apart = f"{median} ms"
    if hint:
        raise DataError(f"no row of the frame is one step of freq {frequency.name!r} after "
                        f"its series' previous row (the median is {apart}){hint}, nothing "
                        "applied")
    raise DataError(f"no row of the frame is one step of freq {frequency.name!r} after its "
                    f"series' previous row (the median is {apart}): set freq to the data's "
                    "step (Forecaster(freq='D'), 'MS', ...; without one it is hourly), "
                    "nothing applied")


def forecasts(entities: list[str], cutoff_ms: np.ndarray, targets_ms: np.ndarray,
              point: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...],
              version: np.ndarray, warm: np.ndarray, tz: Any = None,
              wall: bool = False, integer: bool = False) -> Any:
    """B forecasts (point (B, H), quantiles (B, Q, H)) → B·H rows of the long format,
    ``cutoff`` and ``ds`` naive UTC or, given ``tz``, in that time zone (the times
    being its wall-clock ones, given ``wall``: ``Frequency.wall_clock``); integers
    as given (positions), given ``integer``.
    The frame may share memory with the arrays given: pass arrays nobody changes later."""
    pd = pandas()
    B, H = point.shape

    def times(ms: np.ndarray) -> Any:
        return ms if integer else _datetimes(ms, tz, wall)

    columns: dict[str, Any] = {
        "unique_id": np.repeat(np.array(entities, dtype=object), H),
        "cutoff": times(np.repeat(cutoff_ms, H)),
        "ds": times(targets_ms.reshape(-1)),
        "step": np.tile(np.arange(1, H + 1), B),
        POINT: point.reshape(-1),
    }
    for q, level in enumerate(levels):
        columns[quantile_column(level)] = quantiles[:, q, :].reshape(-1)
    columns["model_version"] = np.repeat(version, H)
    columns["warm"] = np.repeat(warm, H)
    # Not copied into one block per dtype: for B·H rows that copy took longer than the rest.
    return pd.DataFrame(columns, copy=False)


def _datetimes(ms: np.ndarray, tz: Any = None, wall: bool = False) -> Any:
    """Epoch ms → datetime64[ns], pandas' default unit (numpy does it ~15x faster than
    pandas.to_datetime), or [ms] for dates beyond the years 1677–2262 that ns spans;
    with ``tz``, zone-aware in that zone (``ms`` its wall-clock
    times, given ``wall``; one that the zone skips moves forward)."""
    ms = np.asarray(ms, dtype=np.int64)
    naive = ms.astype("datetime64[ms]")
    # Kept in ms where ns cannot hold them (before 1677-09-21 or after 2262-04-11):
    # cast, they wrapped around to other dates without a word.
    if not len(ms) or int(np.abs(ms).max()) < _NS_LIMIT_MS:
        naive = naive.astype("datetime64[ns]")
    if tz is None:
        return naive
    if wall:
        return pandas().DatetimeIndex(naive).tz_localize(tz, ambiguous="NaT",
                                                         nonexistent="shift_forward")
    return pandas().DatetimeIndex(naive).tz_localize("UTC").tz_convert(tz)


def empty(horizon: int, levels: tuple[float, ...]) -> Any:
    """The long format with no rows (an update of an empty frame)."""
    H, Q = horizon, len(levels)
    return forecasts([], np.zeros(0, np.int64), np.zeros((0, H), np.int64),
                     np.zeros((0, H), np.float32), np.zeros((0, Q, H), np.float32), levels,
                     np.zeros(0, np.int64), np.zeros(0, bool))
