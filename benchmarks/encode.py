"""CPU per forecast of the forecast encoder alone, on the daemon's batch shape.

    python benchmarks/encode.py                 # 10,000 forecasts, H = 48, 3 quantiles
    python benchmarks/encode.py --batch 2000 --horizon 24

The numbers are the e2e benchmark's kind (positive series of levels 5–50, float32,
as the engine hands them over); the best of ``--repeat`` runs of
``ForecastEncoder.format`` in thread CPU time, and the mean message size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streammeta.io import frequency
from streammeta.io.codec import ForecastEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--horizon", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    B, H = args.batch, args.horizon
    rng = np.random.default_rng(0)
    point = (rng.uniform(5, 50, (B, 1)) + rng.normal(0, 2, (B, H))).astype(np.float32)
    quantiles = np.stack([point - 1.3, point, point + 1.3], axis=1)
    origin = np.full(B, 3_600_000 * 200, dtype=np.int64)
    entities = [f"e{i}" for i in range(B)]
    encoder = ForecastEncoder(frequency.parse("", 3_600_000), (0.1, 0.5, 0.9))
    stacked = encoder.stack(point, quantiles)
    best = float("inf")
    for _ in range(args.repeat):
        started = time.thread_time()
        messages = encoder.format(entities, origin, stacked, np.ones(B, bool), 3, 0)
        best = min(best, time.thread_time() - started)
    size = sum(map(len, messages)) / B
    print(f"{best / B * 1e6:.2f} µs of CPU per forecast (best of {args.repeat}), "
          f"{size:,.0f} bytes per message, batch {B:,} × {1 + quantiles.shape[1]} × {H}")


if __name__ == "__main__":
    main()
