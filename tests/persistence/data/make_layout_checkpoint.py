"""Writes ``layout-eb5cd9b/``: a checkpoint of the small engine written by the version whose
pending forecasts were kept as (H, S) cells (commit eb5cd9b), and the forecasts that
version served after it, for tests/persistence/test_layout_upgrade.py. Run from a
checkout of that version, with its tests/ on the path:

    PYTHONPATH=.:tests python <this file> <out dir>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from support import STEP, small_config

from streammeta.config import CheckpointConfig
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

NAMES = [f"e{i}" for i in range(6)]
SAVED_AT, UNTIL = 60, 75


def batch(t: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Step t of every entity but e5 between 30 and 33 and e4 between 63 and 65 (gaps
    the engine fills), e3 from step 10 on."""
    rng = np.random.default_rng(t)
    names = [n for n in NAMES if not (n == "e5" and 30 <= t < 34)
             and not (n == "e4" and 63 <= t < 66) and not (n == "e3" and t < 10)]
    i = np.array([NAMES.index(n) for n in names])
    values = 10 + i + 2 * np.sin(2 * np.pi * t / 4) + 0.05 * t * i + rng.normal(0, 0.3, len(i))
    return names, np.full(len(i), t * STEP, dtype=np.int64), values, i % 2


def main() -> None:
    out = Path(sys.argv[1])
    engine = Engine(small_config().replace("engine", max_entities=100))
    for t in range(SAVED_AT):
        engine.process(*batch(t))
    saver = Checkpointer(CheckpointStore(out, member="main"), engine,
                         CheckpointConfig(every_s=3600, every_records=10**9))
    saver.advance({0: SAVED_AT, 1: SAVED_AT}, 2 * SAVED_AT)
    saver.save()
    served = []
    for t in range(SAVED_AT, UNTIL):
        names, ts, values, parts = batch(t)
        f = engine.process(names, ts, values, parts).forecasts
        served.append({"t": t, "names": [names[i] for i in f.obs_index.tolist()],
                       "point": f.point.tolist(), "quantiles": f.quantiles.tolist()})
    (out / "served.json").write_text(json.dumps(served))


if __name__ == "__main__":
    main()
