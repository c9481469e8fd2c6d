"""The outer loop: its speed per device, and what it costs ingestion.

    python benchmarks/outer_loop.py [--entities 10000] [--rounds 3]

1. **Tasks per second** of one meta-update (``MetaLearner.step``, the configured
   algorithm, ``meta.tasks_per_step`` tasks batched with torch.func, the configured
   share of them young) on the CPU and,
   when torch sees one, on CUDA: the figure the README records per device.
2. **Ingestion beside it**: the engine alone on a steady stream of ``--entities``
   entities, with and without the outer loop running in its background thread
   (triggered as often as it can be: ``meta.every_s`` = 0.1), alternated
   ``--rounds`` times. The target is a slowdown under 20%; on the CPU the loop
   limits itself to ``meta.cpu_share`` of wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from throughput import STEP, family

from streammeta import config as config_mod
from streammeta import outer
from streammeta.engine import Engine


def tasks_per_second(device: str, steps: int = 10) -> float:
    config = config_mod.load(None, env={})
    engine = Engine(config)
    m = config.meta
    layout = outer.TaskLayout(config.model.window, config.series.horizon, m.support_windows,
                              m.query_windows, m.window_stride, config.series.season,
                              young=engine.warm_at)
    learner = outer.MetaLearner(engine.params, layout, m, config.adaptation,
                                config.series.quantiles, device=device)
    n_young = learner.young_count(m.tasks_per_step)  # the daemon's mix of tasks
    histories = torch.from_numpy(family(m.tasks_per_step, layout.length).T.copy()).float()
    histories, young = histories[n_young:], histories[:n_young, : layout.young_length]
    learner.step(histories, young)  # warm-up (and CUDA initialisation)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        learner.step(histories, young)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * m.tasks_per_step / (time.perf_counter() - started)


def ingestion(entities: int, with_outer: bool, batches: int = 400) -> tuple[float, int]:
    """→ (observations/s of the engine over ``batches`` steady batches, outer runs)."""
    config = config_mod.load(None, env={}).replace("meta", every_s=0.1)
    engine = Engine(config)
    loop = outer.attach(config, engine, engine.swap) if with_outer else None
    m = config.meta
    # Histories long enough for training tasks (a task and the held-back horizon).
    warm = outer.TaskLayout(config.model.window, config.series.horizon, m.support_windows,
                            m.query_windows, m.window_stride).length + config.series.horizon
    values = family(entities, warm + batches)
    names = [f"e{i}" for i in range(entities)]
    for t in range(warm):
        engine.process(names, np.full(entities, t * STEP, dtype=np.int64), values[t])
    if loop is not None:
        loop.start()
    started = time.perf_counter()
    for t in range(warm, warm + batches):
        engine.process(names, np.full(entities, t * STEP, dtype=np.int64), values[t])
    seconds = time.perf_counter() - started
    runs = 0
    if loop is not None:
        loop.stop()
        runs = len(loop.results)
    return batches * entities / seconds, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("| device | outer-loop tasks/s |")
    print("|---|---|")
    for device in devices:
        name = (torch.cuda.get_device_name() if device == "cuda"
                else f"CPU ({torch.get_num_threads()} threads)")
        print(f"| {name} | {tasks_per_second(device):,.0f} |", flush=True)
    if not torch.cuda.is_available():
        print("(no CUDA device: GPU figures need a machine with one)")
    alone, beside, runs = [], [], 0
    for _ in range(args.rounds):
        alone.append(ingestion(args.entities, with_outer=False)[0])
        rate, n = ingestion(args.entities, with_outer=True)
        beside.append(rate)
        runs += n
    a, b = float(np.median(alone)), float(np.median(beside))
    print(f"\nengine alone, {args.entities:,} entities, median of {args.rounds}: "
          f"{a:,.0f} obs/s; with the outer loop running: {b:,.0f} obs/s "
          f"({100 * (b - a) / a:+.1f}%; {runs} outer-loop runs during the measurements)")


if __name__ == "__main__":
    main()
