"""Extract the M4 hourly subset bundled in streammeta/data/ (for `demo` and tests).

    python benchmarks/make_m4_subset.py [--data ../shared/data]

Every 7th series of M4 hourly (H1, H8, H15, ...), copied verbatim from the
training and test files, in the same wide format.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from streammeta.datasets import default_data_dir

EVERY = 7


def extract(source: Path, target: Path) -> list[str]:
    with open(source, newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [rows[0]] + [row for row in rows[1:] if (int(row[0][1:]) - 1) % EVERY == 0]
    with open(target, "w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(keep)
    return [row[0] for row in keep[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=default_data_dir())
    args = parser.parse_args()
    out = Path(__file__).resolve().parent.parent / "streammeta" / "data"
    ids = extract(args.data / "m4-hourly" / "Hourly-train.csv", out / "m4_hourly_subset.csv")
    extract(args.data / "m4-hourly" / "Hourly-test.csv", out / "m4_hourly_subset_test.csv")
    print(f"{len(ids)} series: {ids[0]} .. {ids[-1]}")


if __name__ == "__main__":
    main()
