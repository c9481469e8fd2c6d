"""Bytes of state per entity: every per-slot tensor of the arena, at a configuration.

    python benchmarks/state_size.py                  # the defaults (hourly, H = 48, m = 24)
    python benchmarks/state_size.py --config my.toml

Prints each field's shape per entity, dtype and bytes, and the total: what resident
memory and a checkpoint grow by per entity (engine-1m's RSS and checkpoint.py's file
size follow it; the last two rows are resident only, not checkpointed). Nothing is
filled: the arena reserves its tensors unmapped.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from streammeta import config as config_mod
    from streammeta.online.arena import ROW_FIELDS
    from streammeta.online.engine import Engine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="a config.toml")
    args = parser.parse_args()
    config = config_mod.load(args.config, env={}).replace("engine", max_entities=8)
    arena = Engine(config).arena
    s = config.resolved().series
    print(f"H = {s.horizon}, m = {s.season}, scored horizons {arena.horizons}")
    print("| field | per entity | dtype | bytes |\n|---|---|---|---:|")
    total = 0
    # occupied and lag_sums (derived from the rings) are resident only: not in a checkpoint
    for field in (*ROW_FIELDS, "occupied", "lag_sums"):
        t = getattr(arena, field)
        size = t[0].numel() * t.element_size()
        total += size
        shape = "×".join(str(d) for d in t.shape[1:]) or "1"
        print(f"| {field} | {shape} | {str(t.dtype).removeprefix('torch.')} | {size:,} |")
    print(f"| total | | | {total:,} |")


if __name__ == "__main__":
    main()
