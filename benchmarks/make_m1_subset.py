"""Extract the M1 monthly subset bundled in streammeta/data/ (for docs/notebook.md).

    python benchmarks/make_m1_subset.py [--data ../shared/data]

Keeps every 5th series of M1 monthly in the order of ``Monthly-train.csv`` (its
rows 1, 6, 11, ...: 124 of 617 series), from the training and the test file, as
byte-for-byte copies of the header and of those rows: the M4-shaped wide format of
``../shared/data/m1`` (id in the first column, then the values).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streammeta.io.datasets import default_data_dir, load_m4

EVERY = 5
PACKAGE_DATA = Path(__file__).resolve().parent.parent / "streammeta" / "data"


def _id(line: bytes) -> str:
    return line.split(b",", 1)[0].strip().strip(b'"').decode()


def extract(source: Path, target: Path, ids: list[str] | None = None) -> list[str]:
    """Copy the header and the kept rows of ``source`` to ``target``: every EVERY-th
    row, or the rows of ``ids``; → the kept ids."""
    lines = source.read_bytes().splitlines(keepends=True)
    rows = lines[1:]
    kept = (rows[::EVERY] if ids is None
            else [line for line in rows if _id(line) in set(ids)])
    target.write_bytes(b"".join([lines[0], *kept]))
    return [_id(line) for line in kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data_dir(),
                        help="the shared data directory (default: $STREAMMETA_DATA_DIR "
                             "or ../shared/data)")
    parser.add_argument("--out", type=Path, default=PACKAGE_DATA)
    args = parser.parse_args()
    source = args.data / "m1"
    train = extract(source / "Monthly-train.csv", args.out / "m1_monthly_subset.csv")
    test = extract(source / "Monthly-test.csv", args.out / "m1_monthly_subset_test.csv", train)
    if train != test:
        raise SystemExit("training and test subsets hold different ids (or orders)")
    lengths = [len(s) for s in load_m4(args.out / "m1_monthly_subset.csv")]
    print(f"{len(train)} series ({train[0]}, {train[1]}, ..., {train[-1]}), "
          f"{min(lengths)}-{max(lengths)} training values each, {sum(lengths)} in all")


if __name__ == "__main__":
    main()
