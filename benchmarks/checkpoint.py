"""How long a periodic checkpoint blocks the loop, and what it costs the loop meanwhile.

    python benchmarks/checkpoint.py                    # 200,000 entities
    python benchmarks/checkpoint.py --entities 1000000

Fills an engine with ``--entities`` entities over 4 partitions, then measures:

* ``sync``: ``Checkpointer.save()`` — snapshot, serialise, fsync, all on the
  calling thread (what revocation and shutdown do; what periodic saves did before).
* ``background``: ``Checkpointer.save_in_background()`` — the time the call blocks
  the loop (the snapshot), the time until the file is written, and the engine's
  observations/s while the write runs beside it, against the same rounds without.

Each run writes to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

STEP = 3_600_000


def main() -> None:
    from streammeta import config as config_mod
    from streammeta.config import CheckpointConfig
    from streammeta.online.engine import Engine
    from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=3, help="observations per entity first")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    n = args.entities
    config = config_mod.load(None, env={}).replace("engine", max_entities=n).replace(
        "meta", enabled=False)
    engine = Engine(config)
    names = [f"entity-{i}" for i in range(n)]
    partitions = np.arange(n) % 4
    rng = np.random.default_rng(0)
    step = 0

    def round_trip() -> float:
        """One observation for every entity; → seconds."""
        nonlocal step
        started = time.perf_counter()
        engine.process(names, np.full(n, step * STEP, dtype=np.int64),
                       rng.normal(10, 1, n), partitions)
        step += 1
        return time.perf_counter() - started

    for _ in range(args.steps):
        round_trip()
    with tempfile.TemporaryDirectory() as directory:
        store = CheckpointStore(directory, member="bench", keep=2)
        rarely = CheckpointConfig(every_s=3600, every_records=10**9)
        checkpointer = Checkpointer(store, engine, rarely)
        checkpointer.advance({p: 1 for p in range(4)}, 0)
        print(f"{n} entities, {len(engine)} resident")
        for _ in range(args.repeat):
            started = time.perf_counter()
            path = checkpointer.save()
            print(f"sync save: loop blocked {time.perf_counter() - started:.3f} s "
                  f"({path.stat().st_size / 1e6:.0f} MB)")
        background = getattr(checkpointer, "save_in_background", None)
        if background is None:
            return
        for _ in range(args.repeat):
            idle = round_trip()
            started = time.perf_counter()
            assert background()
            blocked = time.perf_counter() - started
            rounds, busy = 0, 0.0
            while checkpointer.writing:
                busy += round_trip()
                rounds += 1
            written = time.perf_counter() - started
            checkpointer.wait()
            rate = f"{rounds * n / busy:,.0f}" if rounds else "-"
            print(f"background save: loop blocked {blocked:.3f} s, file written after "
                  f"{written:.3f} s; engine meanwhile {rate} obs/s "
                  f"(alone {n / idle:,.0f} obs/s, {rounds} rounds)")


if __name__ == "__main__":
    main()
