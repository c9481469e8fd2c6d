"""Memory oracle: the most that any entry of the external memory could add to a new
entity's cold start, with the outer loop off and on.

    python benchmarks/memory_oracle.py [--data ../shared/data] [--only synthetic m4 m4-shuffled]

The memory's value for a new entity is a fast-weight offset φ − φ₀ (its anchor,
docs/memory.md). The best value there can be is the entity's *own*: here, when an
entity turns warm, a second engine holding the parameters served at that moment
adapts φ over the entity's own first ``model.window + memory.mature_after`` values
(its future, so this is a bound, not a method), and that offset becomes the
anchor. It is also what re-adapting stored entries whenever the outer loop promotes
a version could give at best, with each entity as its own nearest neighbour.

The stream, the scoring and the outer loop are ``benchmarks/cold_start.py``'s
(entities arriving 4 steps apart, each entity's first 48 warm forecasts in MASE
units, the loop run every 5,000 observations); the memory itself is off, drift
too (the oracle starts entities at birth only). About 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from cold_start import change, m4_orders, run, synthetic
from torch import Tensor

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.io import datasets
from streammeta.meta.memory import MemoryStore, key_dim
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.online.ports import Retrieval


class OracleMemory(MemoryStore):
    """Recalls for each entity the offset the serving parameters reach on its own
    first ``window + mature_after`` values; stores nothing."""

    series: ClassVar[dict[str, datasets.Series]] = {}  # set per data set by main()

    def __init__(self, config: Config) -> None:
        super().__init__(1, key_dim(config.series.resolved_season), config.model.context_dim)
        self.config = config
        self.engine: Engine | None = None  # whose serving parameters the oracle adapts

    def recall(self, names: list[str], windows: Tensor) -> Retrieval:
        offset = self._own_offset(names)
        return Retrieval(offset, torch.zeros(len(names), dtype=torch.bool),
                         torch.full((len(names),), float("nan")))

    def remember(self, names: list[str], windows: Tensor, offsets: Tensor,
                 version: int) -> None:
        pass

    def _own_offset(self, names: list[str]) -> Tensor:
        assert self.engine is not None
        params, _ = self.engine.serving()
        shadow = Engine(self.config, {k: v.clone() for k, v in params.items()})
        first = self.config.model.window + self.config.memory.mature_after
        for t in range(first):
            shadow.process(names, np.array([self.series[n].ts[t] for n in names]),
                           np.array([self.series[n].values[t] for n in names]))
        slots = [shadow.arena.names.index(n) for n in names]
        return shadow.arena.phi[slots] - shadow.arena.phi0


def oracle_engine(config: Config, params: model.Params | None) -> Engine:
    memory = OracleMemory(config)
    memory.engine = Engine(config, params, memory=memory)
    return memory.engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=datasets.default_data_dir())
    parser.add_argument("--only", nargs="+", choices=("synthetic", "m4", "m4-shuffled"),
                        default=("synthetic", "m4", "m4-shuffled"))
    args = parser.parse_args()
    config: Config = config_mod.load(None, env={}).replace("meta", cpu_share=1.0).replace(
        "memory", enabled=False).replace("drift", enabled=False)
    sets: dict[str, list[datasets.Series]] = {}
    if "synthetic" in args.only:
        sets["synthetic (400 related seasonal series)"] = synthetic(400, 600)
    if {"m4", "m4-shuffled"} & set(args.only):
        series, shuffled = m4_orders(args.data / "m4-hourly")
        if "m4" in args.only:
            sets["M4 hourly, in the data set's order"] = series
        if "m4-shuffled" in args.only:
            sets["M4 hourly, shuffled arrival order"] = shuffled
    print("| data | loop off | + oracle | change | loop on | + oracle | change | "
          "by arrival, loop on (sixths) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, stream in sets.items():
        OracleMemory.series = {s.entity: s for s in stream}
        row = []
        for with_outer in (False, True):
            plain = run(config, stream, 4, 5000, with_outer)
            oracle = run(config, stream, 4, 5000, with_outer, make_engine=oracle_engine)
            row.append(f"{plain.error:.3f} | {oracle.error:.3f} | "
                       f"{change(oracle.error, plain.error)}")
        sixths = ", ".join(change(a, b) for a, b in zip(oracle.by_arrival, plain.by_arrival,
                                                       strict=True))
        print(f"| {label} | {' | '.join(row)} | {sixths} |", flush=True)


if __name__ == "__main__":
    main()
