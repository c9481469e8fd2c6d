"""Cold start: how well does a *new* entity forecast, with and without the outer
loop and the external memory?

    python benchmarks/cold_start.py [--data ../shared/data] [--gap 4] [--every 5000]

Entities arrive over time (entity k starts ``gap`` steps after entity k-1), so
later entities meet an initialisation that the outer loop has meta-learned from
the earlier ones. For each entity we score its first 48 warm forecasts (once it
has a full window) over the whole horizon, in MASE units: MAE divided by the
mean absolute seasonal difference of the entity's own values before that
forecast. Every run uses the same engine and online adaptation; "outer loop on"
runs the outer loop synchronously every ``--every`` observations (so the result
does not depend on thread timing); "+ memory" also starts each entity from its
nearest neighbours' φ in the external memory (and shrinks it back towards that
start), with the outer loop off and on. Seasonal naive is printed as a
reference. M4 runs twice: in the data set's order (its series come in groups of
similar sources, so a later group meets a θ learned from other groups) and in a
shuffled order (seed 0).

The second table splits the outer loop's effect by arrival: each sixth of the
entities, in the order they arrived, with the loop off and on (the first arrivals
forecast before the loop has learned from anyone).

The third table is meta-transfer, cross-fitted: θ meta-trained offline
(``streammeta pretrain``'s code, ``--pretrain-steps``) on one half of the series
(M4: the even-numbered ones; synthetic: a second family from another seed), then
the cold start of the *other* half with the outer loop off, from the initial θ, from
θ pretrained without young tasks (``meta.young_share = 0``), and with them.

Data: M4 hourly (414 series, ../shared/data/m4-hourly) and a synthetic family of
related seasonal series.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from streammeta import assemble
from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.io import datasets
from streammeta.meta import outer
from streammeta.meta.pretrain import meta_train
from streammeta.online import model
from streammeta.online.engine import Engine

FIRST = 48  # forecasts per entity in the cold-start slice
PARTS = 6  # the arrivals are also scored in this many groups, in arrival order


class ColdStart(NamedTuple):
    error: float  # cold-start MASE of streammeta
    naive: float  # of seasonal naive
    seconds: float
    by_arrival: tuple[float, ...]  # streammeta's, per sixth of the arrivals


def synthetic(n: int, length: int, seed: int = 0) -> list[datasets.Series]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = []
    for k in range(n):
        shape = np.sin(2 * math.pi * (t + rng.uniform(0, 24)) / 24)
        shape += 0.5 * np.sin(4 * math.pi * t / 24) * rng.uniform(0, 1)
        values = (rng.uniform(5, 50) + rng.uniform(-0.03, 0.03) * t
                  + rng.uniform(1, 4) * shape + rng.normal(0, 0.3, length))
        out.append(datasets.Series(f"s{k}", datasets.M4_START_MS + t * datasets.HOUR_MS,
                                   values))
    return out


def m4_orders(folder: Path) -> tuple[list[datasets.Series], list[datasets.Series]]:
    """M4 hourly in the data set's order, and shuffled (seed 0)."""
    series = datasets.load(folder, "m4")
    return series, [series[i] for i in np.random.default_rng(0).permutation(len(series))]


def run(config: Config, series: list[datasets.Series], gap: int, every: int,
        with_outer: bool, params: model.Params | None = None,
        make_engine: Callable[[Config, model.Params | None], Engine] | None = None,
        ) -> ColdStart:
    """Streams ``series`` arriving ``gap`` steps apart and scores their cold start."""
    names, ts, values = datasets.interleave(series, arrival_gap_steps=gap)
    truth = {s.entity: s.values for s in series}
    # By default the engine the daemon builds: with the task memory if memory.enabled.
    engine = (make_engine(config, params) if make_engine is not None
              else assemble.engine(config, params=params))
    loop = outer.attach(config, engine, engine.swap) if with_outer else None
    H, m = config.series.horizon, config.series.resolved_season
    captured: dict[str, list[tuple[int, np.ndarray]]] = {s.entity: [] for s in series}
    seen: dict[str, int] = {}
    started = time.perf_counter()
    next_outer = every
    # One batch per time step: the stream as the daemon sees it, entities in rounds.
    bounds = np.flatnonzero(np.diff(ts)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ts)], strict=True):
        batch = names[lo:hi]
        result = engine.process(batch, ts[lo:hi], values[lo:hi])
        f = result.forecasts
        for row, i in enumerate(f.obs_index.tolist()):
            name = batch[i]
            index = seen.get(name, -1) + 1  # position of this value in the entity's series
            seen[name] = index
            store = captured[name]
            if f.warm[row] and len(store) < FIRST and index + H < len(truth[name]):
                store.append((index, f.point[row].copy()))
        if loop is not None and hi >= next_outer:
            next_outer += every
            loop.run_once()
    seconds = time.perf_counter() - started
    model_err, naive_err, part = [], [], []
    for arrival, (name, store) in enumerate(captured.items()):
        y = truth[name]
        for index, point in store:
            past = y[: index + 1]
            scale = np.mean(np.abs(past[m:] - past[:-m])) if len(past) > m else np.nan
            if not scale > 0:
                continue
            target = y[index + 1: index + 1 + H]
            naive = np.array([past[index + h - m * math.ceil(h / m)] for h in range(1, H + 1)])
            model_err.append(np.mean(np.abs(target - point)) / scale)
            naive_err.append(np.mean(np.abs(target - naive)) / scale)
            part.append(arrival * PARTS // len(series))
    errors, parts = np.array(model_err), np.array(part)
    return ColdStart(float(errors.mean()), float(np.mean(naive_err)), seconds,
                     tuple(float(errors[parts == k].mean()) for k in range(PARTS)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=datasets.default_data_dir())
    parser.add_argument("--gap", type=int, default=4, help="steps between entity arrivals")
    parser.add_argument("--every", type=int, default=5000,
                        help="observations between outer-loop runs")
    parser.add_argument("--config", help="config.toml (default: the built-in defaults)")
    parser.add_argument("--only", choices=("synthetic", "m4"))
    parser.add_argument("--pretrain-steps", type=int, default=2000,
                        help="meta-steps of the cross-fitted transfer (0: skip it)")
    args = parser.parse_args()
    # The outer loop runs synchronously here: no need to leave the CPU to ingestion.
    config = config_mod.load(args.config, env={}).replace("meta", cpu_share=1.0)
    sets: dict[str, list[datasets.Series]] = {}
    pairs: dict[str, tuple[list[datasets.Series], list[datasets.Series]]] = {}  # transfer
    if args.only != "m4":
        sets["synthetic (400 related seasonal series)"] = synthetic(400, 600)
        pairs["synthetic (source: a family from another seed)"] = (
            synthetic(400, 600, seed=1), synthetic(400, 600))
    m4 = args.data / "m4-hourly"
    if args.only == "synthetic":
        pass
    elif m4.is_dir():
        series, shuffled = m4_orders(m4)
        sets["M4 hourly (414 series)"] = series
        sets["M4 hourly, shuffled arrival order"] = shuffled
        pairs["M4 hourly, odd-numbered series (source: the even-numbered)"] = (
            series[0::2], series[1::2])
    else:
        print(f"{m4} not found: M4 skipped")
    bare = config.replace("memory", enabled=False)
    memory = config.replace("memory", enabled=True)
    print("| data | outer loop off | off + memory | change | outer loop on | change | "
          "on + memory | change | seasonal naive | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    arrivals = []
    for label, stream in sets.items():
        off = run(bare, stream, args.gap, args.every, with_outer=False)
        off_mem = run(memory, stream, args.gap, args.every, with_outer=False)
        on = run(bare, stream, args.gap, args.every, with_outer=True)
        mem = run(memory, stream, args.gap, args.every, with_outer=True)
        print(f"| {label} | {off.error:.3f} | {off_mem.error:.3f} | "
              f"{change(off_mem.error, off.error)} | {on.error:.3f} | "
              f"{change(on.error, off.error)} | {mem.error:.3f} | {change(mem.error, on.error)} | "
              f"{off.naive:.3f} | {off.seconds:.0f}, {off_mem.seconds:.0f}, "
              f"{on.seconds:.0f}, {mem.seconds:.0f} |", flush=True)
        arrivals.append((label, off, on))
    print(f"\nBy arrival: the outer loop on against off, each {PARTS}th of the entities in "
          "the order they arrived:\n")
    print("| data | " + " | ".join(f"{k + 1}/{PARTS}" for k in range(PARTS)) + " |")
    print("|---|" + "---|" * PARTS)
    for label, off, on in arrivals:
        print(f"| {label} | " + " | ".join(
            f"{b:.3f} → {a:.3f} ({change(a, b)})"
            for b, a in zip(off.by_arrival, on.by_arrival, strict=True)) + " |")
    if args.pretrain_steps:
        transfer(bare, pairs, args)


def change(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.1f}%"


def transfer(config: Config, pairs: dict[str, tuple[list[datasets.Series],
                                                     list[datasets.Series]]],
             args: argparse.Namespace) -> None:
    print(f"\nMeta-transfer, cross-fitted ({args.pretrain_steps} offline meta-steps), "
          "outer loop off:\n")
    print("| streamed | initial θ | pretrained, no young tasks | change | pretrained | "
          "change |")
    print("|---|---|---|---|---|---|")
    for label, (source, stream) in pairs.items():
        base = run(config, stream, args.gap, args.every, with_outer=False).error
        errors = []
        for share in (0.0, config.meta.young_share):
            cfg = config.replace("meta", young_share=share)
            params, _ = meta_train(cfg, source, args.pretrain_steps, progress=False)
            errors.append(run(cfg, stream, args.gap, args.every, False, params).error)
        print(f"| {label} | {base:.3f} | {errors[0]:.3f} | {change(errors[0], base)} | "
              f"{errors[1]:.3f} | {change(errors[1], base)} |", flush=True)


if __name__ == "__main__":
    main()
