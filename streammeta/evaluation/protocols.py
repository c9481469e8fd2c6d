"""What an evaluation scores: the protocols, as tasks of origins and truths.

An *origin* is an entity's observation at position t (0-based); every method
forecasts t+1..t+H from the entity's values up to t, and is scored against
them (``Task.truth``).

* ``final-origin`` (M4): the training parts are streamed; the forecast made at
  each series' last training observation is scored against the test file found
  beside the data (``Hourly-test.csv`` beside ``Hourly-train.csv``); without one,
  the last H values of each series are held out and are the test.
* ``rolling``: every origin t with W−1 ≤ t ≤ T−1−H is scored (the whole horizon
  has arrived), W = ``--warmup`` (default 3 seasons: 72 hourly values, the
  engine's default window, so its forecasts are warm from the first scored
  origin; at most half the median series' length, at least a season and a value:
  :func:`default_warmup`). Slice ``cold_start``: each entity's first 48 scored origins,
  t = W−1 … W+46 — its first 48 forecasts after the warm-up. Slice ``all``: every
  scored origin. MASE scales by the history up to the origin only.
* ``ett``: the online-forecasting literature's protocol (../shared/data/README.md):
  the first 20 months (14,400 hourly rows), rows 0–2879 train, 2880–3599
  validation, 3600–14399 test; values standardised by the train rows' mean and
  population std; every variable an entity; origins t = 3599 … 14399−H; MSE and
  MAE averaged over variables, origins and horizon; H = 1, 24, 48.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streammeta.config import Config, SeriesConfig
from streammeta.errors import DataError
from streammeta.evaluation import scores as M
from streammeta.io import datasets
from streammeta.io.frequency import parse as parse_frequency

COLD_START = 48  # forecasts per entity in the cold-start slice
ETT_MONTHS_HOURS = 20 * 30 * 24  # the literature's "first 20 months" of hourly rows


@dataclass
class Task:
    """What to stream, which origins to score and against what."""

    label: str
    protocol: str
    horizon: int  # H
    season: int  # m
    step_ms: int
    stream: list[datasets.Series]  # the values the methods see, per entity
    truth_values: list[np.ndarray]  # per entity: streamed values, then any held-out test
    ent: np.ndarray  # (N,) entity of each origin (entity-major, positions increasing)
    pos: np.ndarray  # (N,) position of each origin in its series
    slices: dict[str, np.ndarray]  # slice name → (N,) bool
    metrics: tuple[str, ...]
    arrival_gap: int = 0
    # Leading values of each stream that offline pretraining may use: -1 all of them
    # (final origin: the training parts), None none (rolling).
    train_rows: int | None = None

    truth: np.ndarray = field(init=False)  # (N, H)
    scale: np.ndarray = field(init=False)  # (N,) MASE scale from the history
    std: np.ndarray = field(init=False)  # (N,) units of MSE and MAE

    def seen_first(self) -> list[np.ndarray]:
        """The values each series shows before its first scored forecast (what decides
        ``series.transform = "auto"``): its training part (final origin), the train rows
        (ett), its values up to its first origin (rolling)."""
        if self.train_rows is not None:
            return [s.values if self.train_rows < 0 else s.values[:self.train_rows]
                    for s in self.stream]
        entities, at = np.unique(self.ent, return_index=True)  # entity-major: first origins
        return [self.stream[e].values[: int(p) + 1]
                for e, p in zip(entities.tolist(), self.pos[at].tolist(), strict=True)]

    def __post_init__(self) -> None:
        H = self.horizon
        lengths = np.array([len(v) for v in self.truth_values])
        flat = np.concatenate(self.truth_values)
        start = np.concatenate([[0], np.cumsum(lengths)[:-1]])[self.ent] + self.pos
        if bool((self.pos + H >= lengths[self.ent]).any()):
            raise DataError(f"{self.label}: an origin's horizon runs past the data")
        self.truth = flat[start[:, None] + np.arange(1, H + 1)[None, :]]
        standardised = self.protocol == "ett"
        self.scale = np.empty(len(self.ent))
        self.std = np.ones(len(self.ent))
        # Each entity's origins by one sort: a scan of all origins per entity was
        # quadratic (16,000 series of 60 daily values: 2.8 s here).
        order = np.argsort(self.ent, kind="stable")
        bounds = np.searchsorted(self.ent[order], np.arange(len(self.stream) + 1))
        for k, s in enumerate(self.stream):  # per entity: prefix statistics of its history
            rows = order[bounds[k]:bounds[k + 1]]
            self.scale[rows] = M.seasonal_scale(s.values, self.season)[self.pos[rows]]
            if not standardised:
                self.std[rows] = M.history_std(s.values)[self.pos[rows]]

    @property
    def entities(self) -> list[str]:
        return [s.entity for s in self.stream]



def _origins(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origins lo[k]..hi[k] (inclusive) of every entity k → (ent, pos)."""
    counts = np.maximum(hi - lo + 1, 0)
    ent = np.repeat(np.arange(len(lo)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.repeat(lo, counts) + np.arange(counts.sum()) - first
    return ent, pos


def final_origin_task(series: list[datasets.Series], test: dict[str, np.ndarray] | None,
                      horizon: int, season: int, step_ms: int) -> Task:
    if test is None:  # hold out the last H values of each series
        stream = [datasets.Series(s.entity, s.ts[:-horizon], s.values[:-horizon])
                  for s in series if len(s) > horizon + 1]
        full = [s.values for s in series if len(s) > horizon + 1]
    else:
        missing = [s.entity for s in series if s.entity not in test]
        if missing:
            raise DataError(f"the test file has no values for {', '.join(missing[:5])}")
        short = [s.entity for s in series if len(test[s.entity]) < horizon]
        if short:
            raise DataError(f"the test file has fewer than {horizon} values for "
                            f"{', '.join(short[:5])}")
        stream = list(series)
        full = [np.concatenate([s.values, test[s.entity][:horizon]]) for s in series]
    last = np.array([len(s) - 1 for s in stream])
    ent, pos = _origins(last, last)
    return Task(f"final-origin H={horizon}", "final-origin", horizon, season, step_ms, stream,
                full, ent, pos, {"all": np.ones(len(ent), dtype=bool)},
                ("smape", "mase", "owa", "mse", "mae", "pinball", "coverage"), train_rows=-1)


def unscaled_note(task: Task) -> str | None:
    """Say how many origins MASE (and the scaled pinball) leave out: those whose
    history has no seasonal scale (fewer than m + 1 values, or flat). The table's MASE
    averaged the rest without a word (one-year weekly series at m = 52: all of them)."""
    unscaled = int((~(task.scale > 0)).sum())
    if not unscaled or "mase" not in task.metrics:
        return None
    return (f"{task.label}: MASE and pinball leave out {unscaled} of {len(task.scale)} "
            f"origins whose history has no seasonal scale (fewer than m + 1 = "
            f"{task.season + 1} values, or flat: seasonal changes at most "
            f"{M.FLAT_SHARE:g} of its mean |y|); the other metrics score them")


def default_warmup(series: list[datasets.Series], season: int, horizon: int = 0) -> int:
    """The rolling protocol's warm-up: 3 seasons, but at most half the median series'
    length, at most its length less the horizon (so that it scores a forecast), and at
    least m + 1 values (MASE's seasonal scale needs a season of history). With m = 52
    on two years of weekly values, 3 seasons (156) scored nothing: every method's row
    was NaN; 80 hourly values with H = 48 had half of them (40) as warm-up, and nothing
    to score. The development sets (M4 hourly, fpp3) keep 3 seasons."""
    median = int(np.median([len(s) for s in series])) if series else 0
    return max(1, min(3 * season, max(season + 1, min(median // 2, median - horizon))))


def rolling_task(series: list[datasets.Series], horizon: int, season: int, step_ms: int,
                 warmup: int, arrival_gap: int = 0) -> Task:
    lo = np.full(len(series), warmup - 1)
    hi = np.array([len(s) - 1 - horizon for s in series])
    ent, pos = _origins(lo, hi)
    cold = pos < warmup - 1 + COLD_START
    return Task(f"rolling H={horizon}", "rolling", horizon, season, step_ms, list(series),
                [s.values for s in series], ent, pos,
                {"all": np.ones(len(ent), dtype=bool), "cold_start": cold},
                ("smape", "mase", "owa", "mse", "mae", "pinball", "coverage"), arrival_gap)


@dataclass(frozen=True)
class EttSplit:
    used: int  # rows used (the first 20 months)
    train: int  # rows 0..train-1
    val: int  # rows train..train+val-1

    @property
    def first_origin(self) -> int:
        return self.train + self.val - 1  # forecasting from the first test row on


def ett_split(rows: int, step_ms: int) -> EttSplit:
    """20 months of rows (14,400 hourly), then 20% train, 5% validation, 75% test."""
    used = min(rows, ETT_MONTHS_HOURS * datasets.HOUR_MS // step_ms)
    return EttSplit(used, int(0.2 * used), int(0.05 * used))


def ett_task(series: list[datasets.Series], horizon: int, season: int, step_ms: int) -> Task:
    split = ett_split(min(len(s) for s in series), step_ms)
    stream = []
    for s in series:  # standardised by the train rows: mean and population std
        values = s.values[:split.used]
        mean, std = values[:split.train].mean(), values[:split.train].std()
        stream.append(datasets.Series(s.entity, s.ts[:split.used],
                                      (values - mean) / (std if std > 0 else 1.0)))
    lo = np.full(len(stream), split.first_origin)
    ent, pos = _origins(lo, np.full(len(stream), split.used - 1 - horizon))
    if len(ent) == 0:
        raise DataError(f"too few rows ({split.used}) for the ETT protocol at H={horizon}")
    return Task(f"ett H={horizon}", "ett", horizon, season, step_ms, stream,
                [s.values for s in stream], ent, pos, {"all": np.ones(len(ent), dtype=bool)},
                ("mse", "mae", "pinball", "coverage"), train_rows=split.train)


def plot_rows(task: Task, entities: int = 6) -> np.ndarray:
    """Origins whose full forecasts (with quantiles) are kept for the report: the
    last origin of a few entities spread over the data set."""
    picks = np.unique(np.linspace(0, len(task.stream) - 1, min(entities, len(task.stream)))
                      .round().astype(np.int64))
    last = np.array([np.flatnonzero(task.ent == k)[-1] for k in picks
                     if bool((task.ent == k).any())], dtype=np.int64)
    return last


def step_of(series: list[datasets.Series]) -> int:
    """The sampling step: the median spacing of the first series with two values."""
    for s in series:
        if len(s) > 1:
            return int(np.median(np.diff(s.ts)))
    return datasets.HOUR_MS


CENTURY_MS = 100 * 366 * 86_400_000  # series.step_ms's largest


def check_step(series: list[datasets.Series], configured: SeriesConfig,
               source: object, step_ms: bool = False) -> None:
    """Refuse data whose values are not one step of a fixed ``series.freq`` apart: the
    engine counts in that step, so it rejected every value (epoch seconds read as ms)
    or took each as a gap, and the scores came out as garbage with exit status 0.
    Given ``step_ms`` (replay: the daemon's step), ``series.step_ms`` where no freq is
    set (evaluate and pretrain take the data's own step there)."""
    frequency = configured.frequency
    if not any(len(s) > 1 for s in series):
        return
    step = int(np.median(np.concatenate([np.diff(s.ts) for s in series])))  # of them all
    if step > CENTURY_MS:  # the data's own step (no freq) stopped on series.step_ms's range
        size = float(np.median(np.abs(np.concatenate([s.ts for s in series]))))
        unit = "nanoseconds" if size >= 1e17 else "microseconds" if size >= 1e14 else ""
        raise DataError(f"{source}: the values are {step} ms apart, more than 100 years: an "
                        "integer time is epoch milliseconds" + (
                            f", and these look like epoch {unit} (a datetime column's "
                            "int64)" if unit else "") + "; give datetimes or ISO-8601")
    if (not configured.freq and not step_ms) or frequency.calendar:
        return
    if step != frequency.step_ms:
        key = (f"series.freq {frequency.name!r}" if configured.freq
               else "series.step_ms (no series.freq set)")
        raise DataError(f"{source}: the values are {step} ms apart, but {key} is a step of "
                        f"{frequency.step_ms} ms: set series.freq (STREAMMETA_SERIES_FREQ) "
                        "to the data's step, with the timestamps as datetimes, ISO-8601 or "
                        "epoch milliseconds")


def check_calendar(series: list[datasets.Series], configured: SeriesConfig,
                   source: object) -> None:
    """Refuse data off a calendar ``series.freq``: a date not on its calendar (the daemon
    dead-letters it), or values another number of its steps apart (quarter starts under
    "MS": evaluate placed them on consecutive months, the daemon filled two months
    between each, replay sent them so), as :func:`check_step` refuses a fixed one."""
    frequency = configured.frequency
    if not frequency.calendar:
        return
    steps = []  # (pairs,) of every series, in months
    for s in series:
        units, on = frequency.to_units(s.ts)
        if not bool(on.all()):
            when = np.datetime64(int(s.ts[int(np.flatnonzero(~on)[0])]), "ms")
            raise DataError(f"{source}: series {s.entity!r}: {when} (UTC) is not a date of "
                            f"freq {frequency.name!r} (series.freq): {frequency.dates}")
        steps.append(np.diff(units))
    pairs = np.concatenate(steps) if steps else np.zeros(0, dtype=np.int64)
    step = int(np.median(pairs)) if len(pairs) else frequency.step
    if step != frequency.step:  # the median of all: a series' gaps are gaps
        months = f"{frequency.step} month" + ("s" if frequency.step > 1 else "")
        raise DataError(f"{source}: the values are {step} months apart, but series.freq "
                        f"{frequency.name!r} is a step of {months}: set series.freq "
                        "(STREAMMETA_SERIES_FREQ) to the data's step")


# M4's (and M1's) subsets by the name of their files: (horizon, season).
M4_SUBSETS = {"hourly": (48, 24), "daily": (14, 1), "weekly": (13, 1), "monthly": (18, 12),
              "quarterly": (8, 4), "yearly": (6, 1)}


def m4_subset(path: Path) -> tuple[int, int] | None:
    """(horizon, season) of an M4-format file named after its subset, e.g.
    ``Monthly-train.csv`` → (18, 12); None for another name."""
    words = re.split(r"[-_.]", path.name.lower())
    return next((M4_SUBSETS[w] for w in words if w in M4_SUBSETS), None)


def default_season(configured: SeriesConfig, subset: tuple[int, int] | None,
                   step: int) -> int:
    """The season where the command gives none: ``series.season`` where set, else an M4
    file's subset's (:func:`m4_subset`), else ``series.freq``'s, else the data's step's
    (24 for hours, 96 for quarter hours, 7 for days; M4-format files carry no step: 24)."""
    if configured.season:
        return configured.season
    if subset:
        return subset[1]
    return configured.resolved_season if configured.freq else parse_frequency("", step).season


def for_data(base: Config, path: str, fmt: str, series: list[datasets.Series]) -> Config:
    """``pretrain``'s configuration for a data set: the season and horizon ``evaluate``
    takes for it where the configuration leaves them to be chosen (a file learned for
    the hourly defaults' season 24 from daily values was refused by ``run`` with
    ``series.freq = "D"``, and one from ``Monthly-train.csv`` by ``evaluate``)."""
    subset = m4_subset(datasets.resolve_m4(path)) if fmt == "m4" else None
    s = base.series
    horizon = subset[0] if subset and s.horizon == SeriesConfig().horizon else s.horizon
    return base.replace("series", season=default_season(s, subset, step_of(series)),
                        horizon=horizon)


def load_tasks(args: argparse.Namespace, base: Config) -> tuple[list[Task], list[str]]:
    """The tasks that ``args`` ask for, and notes about what was found."""
    notes: list[str] = []
    series = datasets.load(args.data, args.format, base.series.frequency)
    if args.limit_series:
        series = series[: args.limit_series]
    if args.format == "long":
        # Values one step apart: a calendar series.freq counts calendar steps itself
        # (run_engine), so the data's own dates are kept where none is skipped.
        from streammeta.io import tables

        check_calendar(series, base.series, args.data)
        series, note = tables.on_step_grid(series, base.series.frequency, args.data)
        if note:
            notes.append(note)
    step = step_of(series)
    check_step(series, base.series, args.data)
    subset, train = None, None
    if args.format == "m4":
        train = datasets.resolve_m4(args.data)
        subset = m4_subset(train)
    # --season/--horizon, else series.season/horizon where set (not 0, the automatic
    # season, nor the built-in horizon 48: they were overridden by 24/48 on an M4 file not
    # named after a subset, or by the subset's), else the subset's, the frequency's where
    # series.freq is set, else the data's step's (24 for ETTh's hours, 96 for ETTm's
    # quarter hours, 7 for days; M4-format files carry no step: 24), and the built-in
    # horizon.
    own_horizon = base.series.horizon != SeriesConfig().horizon
    season = args.season or default_season(base.series, subset, step)
    if args.horizon or own_horizon:
        horizons = [args.horizon or base.series.horizon]
    elif args.protocol == "ett":
        horizons = [1, 24, 48]
    else:
        horizons = [subset[0] if subset else base.series.horizon]
    if args.protocol == "final-origin":
        test = None
        if train is not None:
            found = datasets.find_m4_test(train)
            if found is not None:
                test = datasets.load_m4_test(found)
                notes.append(f"test values from {found.name}")
        if test is None:
            notes.append("no test file: the last H values of each series are held out")
            short = sum(len(s) <= h + 1 for s in series for h in horizons)
            longest = max((len(s) for s in series), default=0)
            if longest <= max(horizons) + 1:
                raise DataError(f"{args.data}: final-origin: nothing to score: the last H "
                                f"values of each series are held out, which leaves a series "
                                f"of at most H + 1 = {max(horizons) + 1} values nothing to "
                                f"forecast from, and the longest has {longest} (--horizon H)")
            if short:
                notes.append(f"{short} series with at most H + 1 values left out (nothing "
                             "to forecast from)")
        return [final_origin_task(series, test, h, season, step) for h in horizons], notes
    if args.protocol == "rolling":
        warmup = args.warmup or default_warmup(series, season, max(horizons))
        longest = max((len(s) for s in series), default=0)
        if all(longest - 1 - h < warmup - 1 for h in horizons):
            raise DataError(f"{args.data}: rolling: nothing to score: a forecast is scored "
                            f"after a warm-up of {warmup} values with its {max(horizons)} "
                            f"values to come, and the longest series has {longest} "
                            "(--warmup W sets the warm-up, --horizon H)")
        if not args.warmup and warmup < 3 * season:
            notes.append(f"warm-up cut from 3 seasons ({3 * season}) to {warmup} values: "
                         "at most half the median series' length, and its length less "
                         "H (--warmup W sets it)")
        notes.append(f"warm-up {warmup} values; cold_start = forecasts at positions "
                     f"{warmup - 1}..{warmup - 2 + COLD_START}; arrival gap "
                     f"{args.arrival_gap} steps")
        return [rolling_task(series, h, season, step, warmup, args.arrival_gap)
                for h in horizons], notes
    split = ett_split(min(len(s) for s in series), step)
    notes.append(f"ETT split of the first {split.used} rows: train 0-{split.train - 1}, "
                 f"validation {split.train}-{split.train + split.val - 1}, test "
                 f"{split.train + split.val}-{split.used - 1}")
    return [ett_task(series, h, season, step) for h in horizons], notes
