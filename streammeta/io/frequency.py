"""Sampling frequencies: fixed steps and calendar steps, in the pandas/Nixtla spelling.

A fixed frequency (``"30min"``, ``"h"``, ``"D"``, ``"W"``, or ``series.step_ms``) is a
number of milliseconds; an entity's timestamps may start anywhere, each one must
be a whole number of steps after the previous. A calendar frequency (``"MS"``,
``"ME"``, ``"QS"``, ``"QE"``, ``"YS"``, ``"YE"``, with an optional multiple such as
``"2MS"``) follows the calendar: months are 28–31 days long, so its timestamps are
counted in months instead. Each must fall on the first (``S``) or last (``E``) day
of a month at 00:00 UTC, as pandas' ``date_range`` writes them, and be a whole number
of steps (1, 3 or 12 months, times the multiple) after the previous one.
pandas' anchors are taken (``"W-MON"``, ``"QS-DEC"``, ``"YE-JUN"``) but not checked: an
entity's steps count from its own first timestamp. Business-day and semi-month aliases
(``"B"``, ``"BMS"``, ``"SMS"``, …) are refused: they are not regular steps.

The engine checks steps, gaps and order on *units*: milliseconds for a fixed
frequency, months since 1970-01 for a calendar one (:meth:`Frequency.to_units`).
Forecast target timestamps are computed back in milliseconds (:meth:`Frequency.targets`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_FIXED_MS = {
    "ms": 1, "s": 1000, "min": 60_000, "t": 60_000, "h": 3_600_000,
    "d": 86_400_000, "w": 7 * 86_400_000,
}
# Calendar aliases → (months per step, anchored at the month's start or end).
_CALENDAR = {
    "ms": (1, "start"), "me": (1, "end"), "m": (1, "end"),
    "qs": (3, "start"), "qe": (3, "end"), "q": (3, "end"),
    "ys": (12, "start"), "as": (12, "start"), "ye": (12, "end"), "a": (12, "end"),
    "y": (12, "end"),
}
_SPEC = re.compile(r"^\s*(\d*)\s*([A-Za-z]+)(?:-([A-Za-z]{3}))?\s*$")
# The anchors pandas takes after a dash: a weekday for "W" (its timestamps are 7 days
# apart whichever day it names), a month for quarters and years (steps of 3 or 12
# months from wherever an entity starts). Any other anchor is refused, as pandas does.
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# pandas aliases that are not a regular step: business days and hours, semi-months,
# business month/quarter/year ends and starts, custom business days.
_IRREGULAR = re.compile(
    r"^(B|C|BH|CBH|SM|SMS|SME|BM|BMS|BME|CBMS|CBME|BQ|BQS|BQE|BA|BAS|BY|BYS|BYE)$",
    re.IGNORECASE)
DAY_MS = 86_400_000


def utc_text(ms: int) -> str:
    """An instant (epoch ms) in ISO-8601 UTC, to the millisecond where it is not a whole
    second: a dead letter's ``1970-01-01T01:00:00.001Z`` was shown as ``...01:00:00Z``,
    a valid hour under a rejection for not being one."""
    instant = np.datetime64(ms, "ms")
    if ms % 1000:
        return f"{np.datetime_as_string(instant, unit='ms')}Z"
    return f"{np.datetime_as_string(instant, unit='s')}Z"


@dataclass(frozen=True)
class Frequency:
    """A regular sampling frequency. ``step`` is in ``unit``s: "ms" or "month"."""

    name: str
    unit: str  # "ms" | "month"
    step: int
    anchor: str = ""  # calendar only: "start" | "end" of the month

    @property
    def calendar(self) -> bool:
        return self.unit == "month"

    @property
    def wall_clock(self) -> bool:
        """Whether zone-aware times are read as the zone's wall-clock time: for steps
        of whole days (``"D"``, ``"W"``, calendar months), whose dates are local
        midnights a day apart though 23 or 25 hours apart in UTC across a change of
        daylight saving time, and on the 1st in the zone though not in UTC. Shorter
        steps count in UTC (an hour of the wall clock repeats in autumn)."""
        return self.calendar or self.step % DAY_MS == 0

    @property
    def dates(self) -> str:
        """A calendar frequency's dates in words, naming the aliases of the other end:
        pandas' "M", "Q" and "A" are month, quarter and year *ends*, which data dated on
        the 1st does not meet (it was refused naming only the alias)."""
        if not self.calendar:
            return f"{self.step} ms apart"
        if self.anchor == "start":
            return "the first day of a month at 00:00 UTC (month ends: 'ME', 'QE', 'YE')"
        return "the last day of a month at 00:00 UTC (the 1st: 'MS', 'QS', 'YS')"

    @property
    def season(self) -> int:
        """The seasonal period this frequency suggests, in steps (``series.season = 0``):
        a step of 5 minutes or more that divides a day → steps per day (``"h"`` → 24,
        ``"30min"`` → 48, ``"5min"`` → 288), finer than 5 minutes → steps per hour
        (``"min"`` → 60: a day of minutes would make each entity's ring 1,441 values, and
        the reservation of ``engine.max_entities`` five times that at 5 minutes); a day
        → 7 (a week of days); a week → 52 (a year of weeks); calendar steps that divide
        a year → steps per year (``"MS"`` → 12, ``"QS"`` → 4, ``"YS"`` → 1); any other
        step → 1 (no season). Steps under a minute (and statsforecast's integer
        positions) get 1."""
        if self.calendar:
            return 12 // self.step if 12 % self.step == 0 else 1
        if self.step == DAY_MS:
            return 7
        if self.step == 7 * DAY_MS:
            return 52
        if 60_000 <= self.step < DAY_MS and DAY_MS % self.step == 0:
            per_day = DAY_MS // self.step
            hour = DAY_MS // 24
            return per_day if per_day <= 288 else hour // self.step if hour % self.step == 0 else 1
        return 1

    @property
    def step_ms(self) -> int:
        """The step in ms for a fixed frequency; 0 for a calendar one (no fixed length)."""
        return 0 if self.calendar else self.step

    def to_units(self, ts_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Epoch-ms timestamps (B,) → (units (B,) int64, on the calendar (B,) bool).

        A fixed frequency's units are the milliseconds themselves (always on it here:
        the step is checked against the entity's previous timestamp)."""
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        if not self.calendar:
            return ts_ms, np.ones(len(ts_ms), dtype=bool)
        months = ts_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
        return months, self.to_ms(months) == ts_ms

    def to_ms(self, units: np.ndarray) -> np.ndarray:
        """Units (any shape) → the epoch-ms timestamps they stand for."""
        units = np.asarray(units, dtype=np.int64)
        if not self.calendar:
            return units
        start = units.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
        if self.anchor == "start":
            return start
        following = (units + 1).astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
        return following - DAY_MS  # the last day of the month, 00:00

    def targets(self, origin_units: np.ndarray, horizon: int) -> np.ndarray:
        """(B,) origins in units → (B, H) target timestamps in ms."""
        steps = np.arange(1, horizon + 1, dtype=np.int64) * self.step
        return self.to_ms(np.asarray(origin_units, dtype=np.int64)[:, None] + steps[None, :])


def parse(spec: str, step_ms: int = 3_600_000) -> Frequency:
    """``series.freq`` (empty: the fixed ``series.step_ms``) → a :class:`Frequency`.

    Raises ValueError naming what is accepted."""
    if not spec:
        return Frequency(f"{step_ms}ms", "ms", step_ms)
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(_expected(spec))
    multiple = int(match.group(1) or 1)
    alias, anchor = match.group(2), (match.group(3) or "").upper()
    if multiple < 1:
        raise ValueError(_expected(spec))
    if _IRREGULAR.match(alias):
        raise ValueError(f"unsupported frequency {spec!r}: expected {_ACCEPTED} (business "
                         "days and semi-months are not regular steps; values on business "
                         "days can go with D: the engine fills each weekend as a gap of "
                         "two steps, evaluate places the values one step apart)")
    if anchor and not _anchored(alias, anchor):
        raise ValueError(f"unknown frequency {spec!r}: expected {_ACCEPTED}; an anchor after "
                         "a dash is a weekday for W (W-MON), a month for QS, QE, YS, YE "
                         "(QS-DEC)")
    # Case decides between "MS" (month start) and "ms" (milliseconds), as in pandas.
    if alias in ("MS", "ME", "M", "QS", "QE", "Q", "YS", "AS", "YE", "A", "Y"):
        months, side = _CALENDAR[alias.lower()]
        return Frequency(spec.strip(), "month", months * multiple, side)
    fixed = _FIXED_MS.get(alias.lower())
    if fixed is None:
        raise ValueError(_expected(spec))
    return Frequency(spec.strip(), "ms", fixed * multiple)


_ACCEPTED = ("a fixed step (ms, s, min, h, D, W, with an optional multiple such as 30min) "
             "or a calendar one (MS, ME, QS, QE, YS, YE, optionally with a multiple such "
             "as 2MS)")


def _anchored(alias: str, anchor: str) -> bool:
    """Whether pandas takes ``alias-anchor`` (W-SUN, QS-DEC, YE-JUN, A-DEC)."""
    if alias.lower() == "w":
        return anchor in _WEEKDAYS
    return alias in ("QS", "QE", "Q", "YS", "AS", "YE", "A", "Y") and anchor in _MONTHS


def _expected(spec: str) -> str:
    return f"unknown frequency {spec!r}: expected {_ACCEPTED}"
