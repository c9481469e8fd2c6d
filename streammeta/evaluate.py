"""``streammeta evaluate``: the daemon's engine replayed over a data set, scored.

The data set is replayed as the daemon would see it: every entity's values in
one stream in global time order (:func:`datasets.interleave`), fed to
:meth:`Engine.process` in batches (``--batch-size``, default 5000 records). The
engine forecasts t+1..t+H at every observation t from data up to t and adapts
online; the outer loop, when enabled, runs synchronously every
``meta.every_observations`` observations (the daemon's count trigger; its
wall-clock trigger means nothing in a replay). Baselines see the same values.

Protocols (an *origin* is an entity's observation at position t, 0-based):

* ``final-origin`` (M4): the training parts are streamed; the forecast made at
  each series' last training observation is scored against the test file found
  beside the data (``Hourly-test.csv`` beside ``Hourly-train.csv``); without one,
  the last H values of each series are held out and are the test.
* ``rolling``: every origin t with W−1 ≤ t ≤ T−1−H is scored (the whole horizon
  has arrived), W = ``--warmup`` (default 3 seasons: 72 hourly values, the
  engine's default window, so its forecasts are warm from the first scored
  origin). Slice ``cold_start``: each entity's first 48 scored origins,
  t = W−1 … W+46 — its first 48 forecasts after the warm-up. Slice ``all``: every
  scored origin. MASE scales by the history up to the origin only.
* ``ett``: the online-forecasting literature's protocol (../shared/data/README.md):
  the first 20 months (14,400 hourly rows), rows 0–2879 train, 2880–3599
  validation, 3600–14399 test; values standardised by the train rows' mean and
  population std; every variable an entity; origins t = 3599 … 14399−H; MSE and
  MAE averaged over variables, origins and horizon; H = 1, 24, 48. The engine
  streams from row 0 and learns online from everything up to each origin.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from streammeta import baselines, datasets
from streammeta import metrics_eval as M
from streammeta.config import Config
from streammeta.errors import DataError

log = logging.getLogger(__name__)

PROTOCOLS = ("final-origin", "rolling", "ett")
ENGINE_METHODS = ("streammeta", "no-adaptation", "no-outer-loop", "no-memory")
METHODS = ENGINE_METHODS + tuple(baselines.BASELINES)
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
    truth: np.ndarray = field(init=False)  # (N, H)
    scale: np.ndarray = field(init=False)  # (N,) MASE scale from the history
    std: np.ndarray = field(init=False)  # (N,) units of MSE and MAE

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
        for k, s in enumerate(self.stream):  # per entity: prefix statistics of its history
            rows = np.flatnonzero(self.ent == k)
            self.scale[rows] = M.seasonal_scale(s.values, self.season)[self.pos[rows]]
            if not standardised:
                self.std[rows] = M.history_std(s.values)[self.pos[rows]]

    @property
    def entities(self) -> list[str]:
        return [s.entity for s in self.stream]


@dataclass
class MethodRun:
    name: str
    seconds: float
    errors: M.ForecastErrors
    plot_point: np.ndarray  # (P, H) at Task plot rows
    plot_quantiles: np.ndarray | None  # (P, Q, H), engine methods only
    point: np.ndarray | None = None  # (N, H), kept only for --forecasts-out
    outer_runs: int = 0  # outer-loop runs during the stream
    promoted: int = 0  # of which promoted


# -- protocols ----------------------------------------------------------------------
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
                ("smape", "mase", "owa", "mse", "mae"))


def rolling_task(series: list[datasets.Series], horizon: int, season: int, step_ms: int,
                 warmup: int, arrival_gap: int = 0) -> Task:
    lo = np.full(len(series), warmup - 1)
    hi = np.array([len(s) - 1 - horizon for s in series])
    ent, pos = _origins(lo, hi)
    cold = pos < warmup - 1 + COLD_START
    return Task(f"rolling H={horizon}", "rolling", horizon, season, step_ms, list(series),
                [s.values for s in series], ent, pos,
                {"all": np.ones(len(ent), dtype=bool), "cold_start": cold},
                ("smape", "mase", "owa", "mse", "mae"), arrival_gap)


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
                ("mse", "mae"))


def plot_rows(task: Task, entities: int = 6) -> np.ndarray:
    """Origins whose full forecasts (with quantiles) are kept for the report: the
    last origin of a few entities spread over the data set."""
    picks = np.unique(np.linspace(0, len(task.stream) - 1, min(entities, len(task.stream)))
                      .round().astype(np.int64))
    last = np.array([np.flatnonzero(task.ent == k)[-1] for k in picks
                     if bool((task.ent == k).any())], dtype=np.int64)
    return last


# -- running methods ---------------------------------------------------------------
def engine_config(base: Config, task: Task, method: str) -> Config | None:
    """The engine's configuration for this task and method; None where the ablation's
    switch does not exist in this version."""
    config = base.replace("series", horizon=task.horizon, season=task.season,
                          step_ms=task.step_ms)
    config = config.replace("engine", max_entities=max(1, len(task.stream)))
    if method == "no-adaptation":
        return config.replace("adaptation", enabled=False)
    if method == "no-outer-loop":
        return config.replace("meta", enabled=False)
    if method == "no-memory":
        return config.replace("memory", enabled=False) if hasattr(config, "memory") else None
    return config


def run_engine(task: Task, config: Config, name: str, rows: np.ndarray, batch_size: int,
               outer_every: int | None, progress: bool, keep_point: bool) -> MethodRun:
    from streammeta import outer
    from streammeta.engine import Engine

    names, ts, values = datasets.interleave(task.stream, task.arrival_gap, task.step_ms)
    flat = _flat_index(task, names)  # (n,) index of each observation in the flat series
    lengths = np.array([len(s) for s in task.stream])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    origin_of = np.full(int(lengths.sum()), -1, dtype=np.int64)
    origin_of[starts[task.ent] + task.pos] = np.arange(len(task.ent))
    plot_slot = np.full(len(task.ent), -1, dtype=np.int64)
    plot_slot[rows] = np.arange(len(rows))
    H, Q = task.horizon, len(config.series.quantiles)
    point = np.full((len(task.ent), H), np.nan, dtype=np.float32)
    quant = np.full((len(rows), Q, H), np.nan, dtype=np.float32)
    started = time.perf_counter()
    engine = Engine(config)
    loop = None
    if config.meta.enabled:
        # Same meta-learning; no pacing sleeps (they only share the daemon's CPU).
        paced = config.replace("meta", cpu_share=1.0)
        loop = outer.attach(paced, engine, engine.swap)
    every = outer_every or config.meta.every_observations
    last_outer = 0
    bar = tqdm(total=len(names), desc=name, unit="obs", disable=not progress, leave=False)
    for lo in range(0, len(names), batch_size):
        hi = min(lo + batch_size, len(names))
        f = engine.process(names[lo:hi], ts[lo:hi], values[lo:hi]).forecasts
        o = origin_of[flat[lo + f.obs_index]]
        keep = o >= 0
        point[o[keep]] = f.point[keep]
        slot = plot_slot[o[keep]]
        quant[slot[slot >= 0]] = f.quantiles[keep][slot >= 0]
        if loop is not None and engine.task_buffer is not None:
            observed = engine.task_buffer.observed
            if observed - last_outer >= every:
                last_outer = observed
                loop.run_once()
        bar.update(hi - lo)
    bar.close()
    seconds = time.perf_counter() - started
    missing = int(np.isnan(point).any(axis=1).sum())
    if missing:
        log.warning("%s: %d origins without a forecast (rejected observations)", name, missing)
    errors = M.score(point, task.truth, task.scale, task.std)
    results = loop.results if loop is not None else []
    return MethodRun(name, seconds, errors, point[rows].copy(), quant,
                     point if keep_point else None, len(results),
                     sum(r.promoted for r in results))


def _flat_index(task: Task, names: list[str]) -> np.ndarray:
    """Index of each streamed observation in the entity-major concatenation of the
    stream: entity start + its position (the stream keeps each entity's order)."""
    lookup = {e: k for k, e in enumerate(task.entities)}
    owner = np.fromiter((lookup[n] for n in names), dtype=np.int64, count=len(names))
    lengths = np.array([len(s) for s in task.stream])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = np.argsort(owner, kind="stable")
    pos = np.empty(len(owner), dtype=np.int64)
    pos[order] = np.arange(len(owner)) - np.repeat(starts, lengths)
    return starts[owner] + pos


def run_baseline(task: Task, name: str, rows: np.ndarray, progress: bool) -> MethodRun:
    forecast: Callable[[np.ndarray, np.ndarray, int, int], np.ndarray] = (
        baselines.BASELINES[name])
    point = np.empty((len(task.ent), task.horizon))
    bounds = np.searchsorted(task.ent, np.arange(len(task.stream) + 1))
    started = time.perf_counter()
    for k in tqdm(range(len(task.stream)), desc=name, unit="entity", disable=not progress,
                  leave=False):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            point[lo:hi] = forecast(task.stream[k].values, task.pos[lo:hi], task.horizon,
                                    task.season)
    seconds = time.perf_counter() - started
    errors = M.score(point, task.truth, task.scale, task.std)
    return MethodRun(name, seconds, errors, point[rows].astype(np.float32), None)


# -- the whole evaluation -----------------------------------------------------------
@dataclass
class Evaluation:
    task: Task
    runs: list[MethodRun]
    results: list[dict[str, Any]]
    plot_rows: np.ndarray


def evaluate(task: Task, config: Config, methods: tuple[str, ...], batch_size: int = 5000,
             outer_every: int | None = None, progress: bool = True,
             notes: list[str] | None = None, keep_point: str | None = None) -> Evaluation:
    """Run ``methods`` on ``task`` and aggregate their metrics per slice."""
    notes = notes if notes is not None else []
    rows = plot_rows(task)
    runs: list[MethodRun] = []
    for name in methods:
        if name in ENGINE_METHODS:
            cfg = engine_config(config, task, name)
            if cfg is None:
                notes.append(f"{name}: skipped, this version has no [memory] section yet")
                continue
            run = run_engine(task, cfg, name, rows, batch_size, outer_every, progress,
                             keep_point == name)
            runs.append(run)
            if cfg.meta.enabled:
                notes.append(f"{task.label} {name}: {run.outer_runs} outer-loop runs, "
                             f"{run.promoted} promoted")
        else:
            runs.append(run_baseline(task, name, rows, progress))
    reference = next((r for r in runs if r.name == "naive2"), None)
    if "owa" in task.metrics and reference is None:
        reference = run_baseline(task, "naive2", rows, progress=False)  # OWA's yardstick
    results = []
    for run in runs:
        for slice_name, mask in task.slices.items():
            row: dict[str, Any] = {"method": run.name, "slice": slice_name,
                                   "horizon": task.horizon}
            row.update(M.aggregate(run.errors, mask, task.ent, task.metrics))
            if "owa" in task.metrics and reference is not None:
                ref = M.aggregate(reference.errors, mask, task.ent, ("smape", "mase"))
                row["owa"] = M.owa(row["smape"], row["mase"], ref["smape"], ref["mase"])
            row["seconds"] = round(run.seconds, 3)
            results.append({k: (round(v, 6) if isinstance(v, float) else v)
                            for k, v in row.items()})
    return Evaluation(task, runs, results, rows)


# -- command line ----------------------------------------------------------------------
def step_of(series: list[datasets.Series]) -> int:
    """The sampling step: the median spacing of the first series with two values."""
    for s in series:
        if len(s) > 1:
            return int(np.median(np.diff(s.ts)))
    return datasets.HOUR_MS


def load_tasks(args: argparse.Namespace, base: Config) -> tuple[list[Task], list[str]]:
    """The tasks that ``args`` ask for, and notes about what was found."""
    notes: list[str] = []
    series = datasets.load(args.data, args.format)
    if args.limit_series:
        series = series[: args.limit_series]
    step = step_of(series)
    hourly = args.format in ("m4", "ett")
    season = args.season or (24 if hourly else base.series.season)
    if args.horizon:
        horizons = [args.horizon]
    elif args.protocol == "ett":
        horizons = [1, 24, 48]
    else:
        horizons = [48 if args.format == "m4" else base.series.horizon]
    if args.protocol == "final-origin":
        test = None
        if args.format == "m4":
            train = Path(args.data)
            train = train / "Hourly-train.csv" if train.is_dir() else train
            found = datasets.find_m4_test(train)
            if found is not None:
                test = datasets.load_m4_test(found)
                notes.append(f"test values from {found.name}")
        if test is None:
            notes.append("no test file: the last H values of each series are held out")
        return [final_origin_task(series, test, h, season, step) for h in horizons], notes
    if args.protocol == "rolling":
        warmup = args.warmup or 3 * season
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


def run(args: argparse.Namespace, config: Config) -> list[Evaluation]:
    """``streammeta evaluate``: every task, its outputs, and a printed table."""
    from streammeta import report

    methods = tuple(args.methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DataError(f"unknown method {unknown[0]!r}: expected some of {', '.join(METHODS)}")
    if args.init:
        config = config.replace("model", init=str(args.init))
    tasks, notes = load_tasks(args, config)
    keep = next((m for m in methods if m in ENGINE_METHODS), None) if args.forecasts_out else None
    evaluations = []
    for task in tasks:
        evaluation = evaluate(task, config, methods, args.batch_size, args.outer_every,
                              progress=not args.quiet, notes=notes, keep_point=keep)
        evaluations.append(evaluation)
        if args.forecasts_out and keep is not None:
            run_kept = next(r for r in evaluation.runs if r.name == keep)
            assert run_kept.point is not None
            path = report.suffixed(Path(args.forecasts_out), task, len(tasks))
            report.write_forecasts(path, task, run_kept.point)
            run_kept.point = None
    payload = {"protocol": args.protocol, "data": str(args.data),
               "results": [r for e in evaluations for r in e.results],
               "notes": list(dict.fromkeys(notes))}
    print(report.table(payload["results"]))
    for note in payload["notes"]:
        print(f"note: {note}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.report:
        report.write_report(Path(args.report), evaluations, payload, report.command_line(args))
    return evaluations
