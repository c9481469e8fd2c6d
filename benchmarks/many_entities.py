"""The outer loop with more entities than task-buffer rows: a synthetic monthly data set.

    python benchmarks/many_entities.py                  # 48,000 series (M4 monthly's count), ~6 min
    python benchmarks/many_entities.py --series 12000   # a couple of minutes

Writes seeded synthetic monthly series (42 to 299 values each, level + yearly season +
random walk + trend; M4's wide CSV with a test file of 18 values) to a scratch folder
and runs ``streammeta evaluate --protocol final-origin`` on them with seasonal naive
and persistence beside it. The values arrive as a stream brings them, every entity's
first value, then every entity's second, ...: with more entities than
``meta.buffer_entities`` (8,192) that is what the task buffer must keep rows through
for the outer loop to have tasks. The report's note says how many outer-loop runs
there were; without rows that stay with their entity there were none.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

H = 18


def write(folder: Path, series: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    train, test = folder / "Monthly-train.csv", folder / "Monthly-test.csv"
    with train.open("w") as tr, test.open("w") as te:
        tr.write('"V1","V2"\n')
        te.write('"V1","V2"\n')
        for k in range(series):
            n = int(rng.integers(42, 300))
            t = np.arange(n + H)
            y = (1000 + rng.normal(0, 50) * np.sin(2 * np.pi * t / 12)
                 + np.cumsum(rng.normal(0, 20, n + H)) + 5 * t * rng.random())
            tr.write(f'"M{k + 1}",' + ",".join(f"{v:.2f}" for v in y[:n]) + "\n")
            te.write(f'"M{k + 1}",' + ",".join(f"{v:.2f}" for v in y[n:]) + "\n")
    return folder / "Monthly"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=48_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streammeta-many-") as scratch:
        data = write(Path(scratch), args.series, args.seed)
        print(f"{args.series} synthetic monthly series in {scratch}", flush=True)
        raise SystemExit(subprocess.call(
            [sys.executable, "-m", "streammeta", "evaluate", "--data", str(data),
             "--format", "m4", "--protocol", "final-origin", "--methods", "streammeta",
             "seasonal-naive", "naive", "-q"]))


if __name__ == "__main__":
    main()
