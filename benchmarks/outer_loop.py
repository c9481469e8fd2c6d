"""The outer loop: its speed per device, and what it costs ingestion.

    python benchmarks/outer_loop.py [--entities 10000] [--rounds 3] [--batches 1024 4096]
                                    [--skip-speed]

1. **Tasks per second** of one meta-update (``MetaLearner.step``, the configured
   algorithm, tasks batched with torch.func, the configured share of them young) at
   ``meta.tasks_per_step`` and at the larger ``--batches``, on the CPU and, when
   torch sees one, on CUDA kernel by kernel and replayed as CUDA graphs
   (``meta.cuda_graphs``): the figures the README records per device.
2. **Ingestion beside it**: the engine alone on a steady stream of ``--entities``
   entities, and with the outer loop running in its background thread (triggered
   as often as it can be: ``meta.every_s`` = 0.1) on each device, alternated
   ``--rounds`` times; with the meta-learning tasks per second the loop got done
   meanwhile. The target is a slowdown under 20%; on every device the loop is busy
   at most ``meta.cpu_share`` of wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from throughput import STEP, family

from streammeta import config as config_mod
from streammeta.meta import outer
from streammeta.meta.layout import TaskLayout
from streammeta.meta.learner import MetaLearner
from streammeta.online.engine import Engine
from streammeta.online.forecast import warm_at
from streammeta.persistence import params as params_io


def tasks_per_second(device: str, tasks: int, graphs: bool = True,
                     min_s: float = 2.0) -> float:
    """Tasks per second of ``MetaLearner.step`` on batches of ``tasks`` tasks
    (``graphs``: ``meta.cuda_graphs``)."""
    config = config_mod.load(None, env={}).replace("meta", cuda_graphs=graphs).resolved()
    m = config.meta
    layout = TaskLayout(config.model.window, config.series.horizon, m.support_windows,
                              m.query_windows, m.window_stride, config.series.season,
                              young=warm_at(config.model, config.series.season))
    learner = MetaLearner(params_io.initial(config)[0], layout, m, config.adaptation,
                                config.series.quantiles, device=device)
    n_young = learner.young_count(tasks)  # the daemon's mix of tasks
    histories = torch.from_numpy(family(tasks, layout.length).T.copy()).float()
    histories, young = histories[n_young:], histories[:n_young, : layout.young_length]
    learner.step(histories, young)  # warm-up (CUDA initialisation, graph recording)
    steps, started = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - started < min_s:
        learner.step(histories, young)  # returns the loss as a float: synchronises CUDA
        steps += 1
    return steps * tasks / (time.perf_counter() - started)


def ingestion(entities: int, device: str | None, tasks: int = 0,
              batches: int = 400) -> tuple[float, float]:
    """→ (observations/s of the engine over ``batches`` steady batches, meta-learning
    tasks/s done meanwhile by the outer loop on ``device``; None: no outer loop)."""
    config = config_mod.load(None, env={}).resolved()
    config = config.replace("meta", every_s=0.1, device=device or "cpu",
                            tasks_per_step=tasks or config.meta.tasks_per_step)
    engine = Engine(config)
    loop = outer.attach(config, engine, engine.swap) if device else None
    m = config.meta
    # Histories long enough for training tasks (a task and the held-back horizon).
    warm = TaskLayout(config.model.window, config.series.horizon, m.support_windows,
                            m.query_windows, m.window_stride).length + config.series.horizon
    values = family(entities, warm + batches)
    names = [f"e{i}" for i in range(entities)]
    for t in range(warm):
        engine.process(names, np.full(entities, t * STEP, dtype=np.int64), values[t])
    done = [0]
    if loop is not None:
        step = loop.learner.step

        def counted(histories: torch.Tensor, *rest: torch.Tensor | None) -> float:
            loss = step(histories, *rest)
            done[0] += len(histories) + (len(rest[0]) if rest and rest[0] is not None else 0)
            return loss

        loop.learner.step = counted  # type: ignore[method-assign,assignment]
        loop.start()
    started = time.perf_counter()
    for t in range(warm, warm + batches):
        engine.process(names, np.full(entities, t * STEP, dtype=np.int64), values[t])
    seconds = time.perf_counter() - started
    if loop is not None:
        loop.stop()
    return batches * entities / seconds, done[0] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternated ingestion measurements (0: skip them)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096],
                        help="task batch sizes measured beside the configured one")
    parser.add_argument("--skip-speed", action="store_true",
                        help="only measure ingestion beside the loop")
    args = parser.parse_args()
    configured = config_mod.load(None, env={}).meta.tasks_per_step
    sizes = [configured, *args.batches]
    cuda = torch.cuda.is_available()
    devices = ["cpu"] + (["cuda"] if cuda else [])
    if not args.skip_speed:
        print("| device | " + " | ".join(f"tasks/s, {n:,} per step" for n in sizes) + " |")
        print("|---" * (len(sizes) + 1) + "|")
        for device, graphs in [("cpu", False)] + ([("cuda", False), ("cuda", True)]
                                                   if cuda else []):
            name = (f"{torch.cuda.get_device_name()}, "
                    + ("CUDA graphs" if graphs else "kernel by kernel") if device == "cuda"
                    else f"CPU ({torch.get_num_threads()} threads)")
            rates = [tasks_per_second(device, n, graphs) for n in sizes]
            print(f"| {name} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |", flush=True)
    if not cuda:
        print("(no CUDA device: GPU figures need a machine with one)")
    if not args.rounds:
        return
    # Beside ingestion: the loop on each device at the configured batch, and on CUDA
    # at the first larger one too (the same share of wall time, more tasks per launch).
    runs = [(d, configured) for d in devices] + ([("cuda", sizes[1])] if cuda else [])
    alone: list[float] = []
    beside: dict[tuple[str, int], list[tuple[float, float]]] = {run: [] for run in runs}
    for _ in range(args.rounds):
        alone.append(ingestion(args.entities, None)[0])
        for device, tasks in runs:
            beside[device, tasks].append(ingestion(args.entities, device, tasks))
    a = float(np.median(alone))
    print(f"\nengine alone, {args.entities:,} entities, median of {args.rounds}: {a:,.0f} obs/s")
    print("\n| outer loop beside it | obs/s | change | outer-loop tasks/s meanwhile |")
    print("|---|---|---|---|")
    for (device, tasks), measured in beside.items():
        b = float(np.median([rate for rate, _ in measured]))
        done = float(np.median([t for _, t in measured]))
        print(f"| {device}, {tasks:,} tasks per step | {b:,.0f} | {100 * (b - a) / a:+.1f}% "
              f"| {done:,.0f} |")


if __name__ == "__main__":
    main()
