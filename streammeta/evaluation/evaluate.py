"""``streammeta evaluate``: the daemon's engine replayed over a data set, scored.

The data set is replayed as the daemon would see it: every entity's values in
one stream in global time order (:func:`datasets.interleave`), fed to
:meth:`Engine.process` in batches (``--batch-size``, default 5000 records). The
engine forecasts t+1..t+H at every observation t from data up to t and adapts
online; the outer loop, when enabled, runs synchronously every
``meta.every_observations`` observations (``--outer-every``; the daemon's count
trigger, by default 50 per entity: ``outer.period`` — its wall-clock trigger means
nothing in a replay), between batches, so no batch is longer than that. Baselines
(:mod:`streammeta.evaluation.baselines`) and the statsforecast peers
(:mod:`streammeta.evaluation.peers`) see the same values; what is scored is defined in
:mod:`streammeta.evaluation.protocols`, the metrics in :mod:`streammeta.evaluation.scores`, the
outputs in :mod:`streammeta.evaluation.report`.

``--pretrain STEPS`` meta-trains θ offline first (``streammeta pretrain``'s
learner) on the values a protocol allows: the train rows for ``ett`` (as the
literature's methods train on them), the whole streamed training parts for
``final-origin``; never for ``rolling``, whose later origins it would leak; not
where most series are shorter than a whole task (``pretrain.too_short``: there it
served worse than the seeded θ), which the note says.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from streammeta.config import Config
from streammeta.errors import DataError
from streammeta.evaluation import backtest, baselines, peers
from streammeta.evaluation import scores as M
from streammeta.evaluation.protocols import Task, load_tasks, plot_rows, unscaled_note
from streammeta.evaluation.runs import Evaluation, MethodRun
from streammeta.io import datasets

log = logging.getLogger(__name__)

ENGINE_METHODS = ("streammeta", "no-adaptation", "no-outer-loop", "no-memory", "no-guard")
PEER_METHODS = tuple(peers.PEERS)
METHODS = ENGINE_METHODS + tuple(baselines.BASELINES) + PEER_METHODS
# Ranked by MASE and sMAPE; by MSE where the protocol has no MASE (ett).
RANKED = ("mase", "smape", "mse")


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
    if method == "no-guard":
        return config.replace("meta", guard=False)
    return config


def run_engine(task: Task, config: Config, name: str, rows: np.ndarray, batch_size: int,
               outer_every: int | None, progress: bool, keep_point: bool) -> MethodRun:
    from streammeta import assemble
    from streammeta.meta import outer

    names, ts, values = _stream(task, config)
    flat = _flat_index(task, names)  # (n,) index of each observation in the flat series
    lengths = np.array([len(s) for s in task.stream])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    origin_of = np.full(int(lengths.sum()), -1, dtype=np.int64)
    origin_of[starts[task.ent] + task.pos] = np.arange(len(task.ent))
    plot_slot = np.full(len(task.ent), -1, dtype=np.int64)
    plot_slot[rows] = np.arange(len(rows))
    H, Q = task.horizon, len(config.series.quantiles)
    levels = np.array(config.series.quantiles)
    point = np.full((len(task.ent), H), np.nan, dtype=np.float32)
    pinball = np.full(len(task.ent), np.nan)
    coverage = np.full(len(task.ent), np.nan)
    quant = np.full((len(rows), Q, H), np.nan, dtype=np.float32)
    started = time.perf_counter()
    engine = assemble.engine(config)
    loop = None
    if config.meta.enabled:
        # Same meta-learning; no pacing sleeps (they only share the daemon's CPU).
        paced = config.replace("meta", cpu_share=1.0,
                               every_observations=outer_every or config.meta.every_observations)
        loop = outer.attach(paced, engine, engine.swap)
        # The loop runs between batches: none longer than its period.
        batch_size = min(batch_size, outer.period(paced.meta.every_observations,
                                                  len(task.stream)))
    bar = tqdm(total=len(names), desc=name, unit="obs", disable=not progress, leave=False)
    for lo in range(0, len(names), batch_size):
        hi = min(lo + batch_size, len(names))
        f = engine.process(names[lo:hi], ts[lo:hi], values[lo:hi]).forecasts
        o = origin_of[flat[lo + f.obs_index]]
        keep = o >= 0
        point[o[keep]] = f.point[keep]
        # Quantiles scored here, batch by batch: (N, Q, H) of a rolling run is large.
        pinball[o[keep]], coverage[o[keep]] = M.quantile_scores(
            f.quantiles[keep], levels, task.truth[o[keep]], task.scale[o[keep]])
        slot = plot_slot[o[keep]]
        quant[slot[slot >= 0]] = f.quantiles[keep][slot >= 0]
        if loop is not None:
            loop.run_if_due()
        bar.update(hi - lo)
    bar.close()
    seconds = time.perf_counter() - started
    missing = int(np.isnan(point).any(axis=1).sum())
    if missing:
        log.warning("%s: %d origins without a forecast (rejected observations)", name, missing)
    errors = M.score(point, task.truth, task.scale, task.std)
    errors.pinball, errors.coverage = pinball, coverage
    results = loop.results if loop is not None else []
    return MethodRun(name, seconds, errors, point[rows].copy(), quant,
                     point if keep_point else None, len(results),
                     sum(r.promoted for r in results))


def _stream(task: Task, config: Config) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The task's observations in time order, as :meth:`Engine.process` takes them:
    timestamps in the frequency's units (ms, or months for a calendar ``series.freq``,
    as the daemon converts them), arrival gaps in its steps."""
    frequency = config.series.frequency
    if not frequency.calendar:
        return datasets.interleave(task.stream, task.arrival_gap, task.step_ms)
    stream = []
    for s in task.stream:
        units, on = frequency.to_units(s.ts)
        if not bool(on.all()):
            at = int(np.flatnonzero(~on)[0])
            when = np.datetime64(int(s.ts[at]), "ms")
            raise DataError(f"series {s.entity!r}: {when} (UTC) is not a date of freq "
                            f"{frequency.name!r} (series.freq): {frequency.dates}")
        stream.append(datasets.Series(s.entity, units, s.values))
    return datasets.interleave(stream, task.arrival_gap, frequency.step)


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


def run_baseline(task: Task, name: str, rows: np.ndarray, progress: bool,
                 levels: np.ndarray) -> MethodRun:
    forecast: Callable[[np.ndarray, np.ndarray, int, int], np.ndarray] = (
        baselines.BASELINES[name])
    quantiles = baselines.QUANTILES.get(name)
    point = np.empty((len(task.ent), task.horizon))
    pinball = np.full(len(task.ent), np.nan)
    coverage = np.full(len(task.ent), np.nan)
    bounds = np.searchsorted(task.ent, np.arange(len(task.stream) + 1))
    started = time.perf_counter()
    for k in tqdm(range(len(task.stream)), desc=name, unit="entity", disable=not progress,
                  leave=False):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            values, origins = task.stream[k].values, task.pos[lo:hi]
            point[lo:hi] = forecast(values, origins, task.horizon, task.season)
            if quantiles is not None:  # scored per entity: (N, Q, H) may be large
                q = quantiles(values, origins, task.horizon, task.season, levels)
                pinball[lo:hi], coverage[lo:hi] = M.quantile_scores(
                    q, levels, task.truth[lo:hi], task.scale[lo:hi])
    seconds = time.perf_counter() - started
    errors = M.score(point, task.truth, task.scale, task.std)
    errors.pinball, errors.coverage = pinball, coverage
    return MethodRun(name, seconds, errors, point[rows].astype(np.float32), None)


PeerCache = dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]]


def run_peers(task: Task, names: tuple[str, ...], rows: np.ndarray, plan: peers.PeerPlan,
              levels: np.ndarray, notes: list[str], cache: PeerCache | None = None,
              fit_horizon: int = 0) -> list[MethodRun]:
    """The peers at the plan's origins, in one batched fit per peer. ``cache`` (ett:
    the same stream for every horizon) keeps forecasts of ``fit_horizon`` steps
    for the next task."""
    picked, cadence = plan.rows(task)
    H, fit_h = task.horizon, max(task.horizon, fit_horizon)
    cache = cache if cache is not None else {}
    keys = list(zip(task.ent[picked].tolist(), task.pos[picked].tolist(), strict=True))
    todo = [i for i, (k, t) in enumerate(keys) if (names[0], k, t) not in cache]
    found = peers.forecast(list(names), plan.histories(task, picked[todo]), fit_h,
                           task.season, levels) if todo else {}
    where = "every origin" if not cadence else (
        f"every {cadence} steps from each entity's first scored origin")
    window = (f"the last {plan.fit_window} values" if plan.fit_window else "the whole history")
    notes.append(f"{task.label} peers: fitted at {where}, {len(picked)} origins of "
                 f"{len(set(task.ent[picked].tolist()))} entities, on {window}"
                 + ("; scored in slice 'peers', where every method is" if len(picked)
                    < len(task.ent) else ""))
    if len(picked) < len(task.ent):
        mask = np.zeros(len(task.ent), dtype=bool)
        mask[picked] = True
        task.slices["peers"] = mask
    note = peers.arima_note(task.season)
    if note and "auto-arima" in names:
        notes.append(note)
    runs = []
    for name in names:
        if name in found:
            fc = found[name]
            for j, i in enumerate(todo):
                cache[(name, *keys[i])] = (fc.point[j], fc.quantiles[j])
            notes.append(f"{task.label} {name}: {fc.fallbacks} of {len(todo)} forecasts by "
                         "seasonal naive (history too short, or the model failed)")
        point = np.full((len(task.ent), H), np.nan)
        quant = np.full((len(picked), len(levels), H), np.nan)
        for j, key in enumerate(keys):
            p, q = cache[(name, *key)]
            point[picked[j]], quant[j] = p[:H], q[:, :H]
        errors = M.score(point, task.truth, task.scale, task.std)
        errors.pinball[picked], errors.coverage[picked] = M.quantile_scores(
            quant, levels, task.truth[picked], task.scale[picked])
        seconds = found[name].seconds if name in found else 0.0
        runs.append(MethodRun(name, seconds, errors, point[rows].astype(np.float32), None,
                              slices=("peers",) if "peers" in task.slices else None))
    return runs


def ranks(results: list[dict[str, Any]]) -> None:
    """Each row gets its method's rank (1 = best) by MASE, sMAPE (or MSE) among the
    methods scored on the same slice and horizon: ``rank_<metric>`` and ``ranked``."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in results:
        groups.setdefault((row["slice"], row["horizon"]), []).append(row)
    for rows in groups.values():
        present = [m for m in RANKED if any(m in r for r in rows)]
        for metric in present if "mase" not in present else ("mase", "smape"):
            scored = [r for r in rows if np.isfinite(r.get(metric, np.nan))]
            for r in scored:
                r[f"rank_{metric}"] = 1 + sum(o[metric] < r[metric] for o in scored)
        for r in rows:
            r["ranked"] = len(rows)


# -- the whole evaluation -----------------------------------------------------------
def evaluate(task: Task, config: Config, methods: tuple[str, ...], batch_size: int = 5000,
             outer_every: int | None = None, progress: bool = True,
             notes: list[str] | None = None, keep_point: str | None = None,
             plan: peers.PeerPlan | None = None, peer_cache: PeerCache | None = None,
             fit_horizon: int = 0) -> Evaluation:
    """Run ``methods`` on ``task`` and aggregate their metrics per slice."""
    notes = notes if notes is not None else []
    rows = plot_rows(task)
    levels = np.array(config.series.quantiles)
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
        elif name in baselines.BASELINES:
            runs.append(run_baseline(task, name, rows, progress, levels))
    chosen = tuple(m for m in methods if m in PEER_METHODS)
    if chosen:
        runs += run_peers(task, chosen, rows, plan or peers.PeerPlan(), levels, notes,
                          peer_cache, fit_horizon)
    bare = [m for m in methods if m in baselines.BASELINES and m not in baselines.QUANTILES]
    if bare:
        notes.append(f"no quantiles (pinball and coverage not scored): {', '.join(bare)}")
    reference = next((r for r in runs if r.name == "naive2"), None)
    if "owa" in task.metrics and reference is None:
        reference = run_baseline(task, "naive2", rows, False, levels)  # OWA's yardstick
    results = []
    for run in runs:
        for slice_name, mask in task.slices.items():
            if run.slices is not None and slice_name not in run.slices:
                continue
            row: dict[str, Any] = {"method": run.name, "slice": slice_name,
                                   "horizon": task.horizon}
            scored = M.aggregate(run.errors, mask, task.ent, task.metrics)
            row.update({k: v for k, v in scored.items()  # no quantiles: no key
                        if k not in ("pinball", "coverage") or np.isfinite(v)})
            if "owa" in task.metrics and reference is not None:
                ref = M.aggregate(reference.errors, mask, task.ent, ("smape", "mase"))
                row["owa"] = M.owa(row["smape"], row["mase"], ref["smape"], ref["mase"])
            row["seconds"] = round(run.seconds, 3)
            results.append({k: (round(v, 6) if isinstance(v, float) else v)
                            for k, v in row.items()})
    ranks(results)
    return Evaluation(task, runs, results, rows)


def pretrain_params(task: Task, config: Config, steps: int, directory: Path,
                    progress: bool) -> tuple[Path | None, str]:
    """Meta-train θ offline on the task's training values → (parameter file, note);
    no file where the series are too short for it to pay (``pretrain.too_short``)."""
    from streammeta.meta.pretrain import pretrain, too_short, worse
    from streammeta.persistence import params as params_io

    if task.train_rows is None:
        raise DataError(f"--pretrain is not defined for the {task.protocol} protocol: it "
                        "would learn from values after the scored origins")
    cfg = engine_config(config, task, "streammeta")
    assert cfg is not None
    train = [s if task.train_rows < 0 else datasets.Series(
        s.entity, s.ts[:task.train_rows], s.values[:task.train_rows]) for s in task.stream]
    reason = too_short(cfg, train)
    if reason:
        return None, f"{task.label}: not pretrained, the seeded θ serves: {reason}"
    data = directory / f"pretrained_h{task.horizon}.csv"  # beside the parameter file
    with open(data, "w", newline="") as handle:  # the allowed values, as a long CSV
        out = csv.writer(handle)
        out.writerow(["entity", "ts", "value"])
        for s in train:
            out.writerows(zip([s.entity] * len(s), s.ts.tolist(), s.values.tolist(),
                              strict=True))
    path = directory / f"pretrained_h{task.horizon}.smp"
    started = time.perf_counter()
    result = pretrain(cfg, str(data), "long", str(path), steps, progress=progress)
    young = ", young tasks only: no whole task fits" if result["young_only"] else ""
    note = (f"{task.label}: pretrained {steps} meta-steps on the training values "
            f"(model.hidden = {params_io.width(path)}{young}) in "
            f"{time.perf_counter() - started:.0f} s, held-out meta-loss "
            f"{result['held_out_loss_before']:.4f} -> {result['held_out_loss_after']:.4f}")
    # A rise: overfit to the training series, whatever a backtest on a few series says.
    return (None, f"{note}: it rose, the seeded θ serves") if worse(result) else (path, note)


def mean_mase(task: Task, config: Config, batch_size: int = 5000,
              outer_every: int | None = None) -> float:
    """The engine's mean MASE over the task's origins (NaN where none is finite)."""
    run = run_engine(task, config, "streammeta", np.zeros(0, dtype=np.int64), batch_size,
                     outer_every, progress=False, keep_point=False)
    mase = run.errors.mase
    return float(np.nanmean(mase)) if bool(np.isfinite(mase).any()) else float("nan")


# -- command line ----------------------------------------------------------------------
def peer_plan(args: argparse.Namespace, protocol: str, tasks: list[Task]) -> peers.PeerPlan:
    """--peer-origins (default 4 per entity, ett 8), --peer-series (default all),
    --peer-window (default the whole history; ett 30 seasons: its histories grow
    to 14,400 values)."""
    season = tasks[0].season if tasks else 24
    origins = getattr(args, "peer_origins", None) or (8 if protocol == "ett" else 4)
    window = getattr(args, "peer_window", None)
    if window is None:
        window = 30 * season if protocol == "ett" else 0
    return peers.PeerPlan(origins, getattr(args, "peer_series", None) or 0, window)


def run(args: argparse.Namespace, config: Config) -> list[Evaluation]:
    """``streammeta evaluate``: every task, its outputs, and a printed table."""
    from streammeta.evaluation import report

    methods = tuple(args.methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DataError(f"unknown method {unknown[0]!r}: expected some of {', '.join(METHODS)}")
    tasks, notes = load_tasks(args, config)
    notes += [n for n in map(unscaled_note, tasks) if n]
    if not peers.available() and any(m in PEER_METHODS for m in methods):
        if args.methods:
            raise DataError("the peers need statsforecast: pip install 'streammeta[eval]'")
        methods = tuple(m for m in methods if m not in PEER_METHODS)
        notes.append("peers skipped: statsforecast is not installed (the eval extra)")
    plan = peer_plan(args, tasks[0].protocol if tasks else "final-origin", tasks)
    cache: PeerCache = {}  # ett: one fit serves every horizon (the same stream)
    fit_horizon = max(t.horizon for t in tasks) if args.protocol == "ett" else 0
    keep = next((m for m in methods if m in ENGINE_METHODS), None) if args.forecasts_out else None
    evaluations = []
    with tempfile.TemporaryDirectory(prefix="streammeta-evaluate-") as scratch:
        for task in tasks:
            task_config = config
            if args.init:  # "{h}" in the name: one parameter file per horizon
                task_config = config.replace("model", init=str(args.init).format(h=task.horizon))
            task_config = task_config.for_values(task.seen_first())  # a θ file's units rule
            if task_config.series.transform != config.series.transform:
                notes.append(f"{task.label}: series.transform auto: "
                             f"{task_config.series.transform}, from the values before "
                             "the first scored forecast")
            elif args.init and config.series.transform == "auto":
                notes.append(f"{task.label}: series.transform auto: "
                             f"{task_config.resolved().series.transform}, the --init file's")
            if args.pretrain:
                path, note = pretrain_params(task, task_config, args.pretrain, Path(scratch),
                                             progress=not args.quiet)
                notes.append(note)
                if path is not None:
                    pretrained = task_config.replace("model", init=str(path))
                    seeded = engine_config(task_config, task, "streammeta")
                    served = engine_config(pretrained, task, "streammeta")
                    assert seeded is not None and served is not None
                    trained_on = datasets.load(str(path.with_suffix(".csv")), "long",
                                               seeded.series.frequency)
                    kept, note = backtest.prefer_pretrained(
                        task, seeded, served, trained_on, functools.partial(
                            mean_mase, batch_size=args.batch_size,
                            outer_every=args.outer_every))
                    notes.append(f"{task.label}: {note}")
                    task_config = pretrained if kept else task_config
            evaluation = evaluate(task, task_config, methods, args.batch_size, args.outer_every,
                                  progress=not args.quiet, notes=notes, keep_point=keep,
                                  plan=plan, peer_cache=cache if args.protocol == "ett"
                                  else None, fit_horizon=fit_horizon)
            evaluations.append(evaluation)
            if getattr(args, "per_series", None):
                report.write_per_series(report.suffixed(Path(args.per_series), task,
                                                        len(tasks)), evaluation)
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
    print(report.rank_line(payload["results"]))
    for note in payload["notes"]:
        print(f"note: {note}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.report:
        report.write_report(Path(args.report), evaluations, payload, report.command_line(args))
    return evaluations
