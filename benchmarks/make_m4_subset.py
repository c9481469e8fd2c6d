"""Extract the M4 hourly subset bundled in streammeta/data/ (for `demo` and tests).

    python benchmarks/make_m4_subset.py [--data ../shared/data]

Keeps every 7th series of M4 hourly (H1, H8, H15, ..., H414: 60 series), from the
training and the test file, as byte-for-byte copies of the header and of those
rows, so the subset stays in the competition's wide format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streammeta.io.datasets import default_data_dir, load_m4

EVERY = 7
PACKAGE_DATA = Path(__file__).resolve().parent.parent / "streammeta" / "data"


def keep(series_id: str) -> bool:
    """H1, H8, H15, ...: the same ids in both files, whatever their row order."""
    return series_id.startswith("H") and (int(series_id[1:]) - 1) % EVERY == 0


def extract(source: Path, target: Path) -> list[str]:
    """Copy the header and the kept rows of ``source`` to ``target``; the kept ids."""
    lines = source.read_bytes().splitlines(keepends=True)
    kept, ids = [lines[0]], []
    for line in lines[1:]:
        series_id = line.split(b",", 1)[0].strip().strip(b'"').decode()
        if keep(series_id):
            kept.append(line)
            ids.append(series_id)
    target.write_bytes(b"".join(kept))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data_dir(),
                        help="the shared data directory (default: $STREAMMETA_DATA_DIR "
                             "or ../shared/data)")
    parser.add_argument("--out", type=Path, default=PACKAGE_DATA)
    args = parser.parse_args()
    source = args.data / "m4-hourly"
    train = extract(source / "Hourly-train.csv", args.out / "m4_hourly_subset.csv")
    test = extract(source / "Hourly-test.csv", args.out / "m4_hourly_subset_test.csv")
    if train != test:
        raise SystemExit("training and test subsets hold different ids")
    # Read back with the loader the package uses, so a broken copy fails here.
    lengths = [len(s) for s in load_m4(args.out / "m4_hourly_subset.csv")]
    print(f"{len(train)} series ({train[0]}, {train[1]}, ..., {train[-1]}), "
          f"{min(lengths)}-{max(lengths)} training values each")


if __name__ == "__main__":
    main()
