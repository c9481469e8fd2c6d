"""Accuracy: ``streammeta evaluate`` on every development data set, peers in the same run.

    python benchmarks/accuracy.py [--data ../shared/data] [--config config.toml]
        [--only m1-monthly ...] [--methods ...] [--limit-series N] [--out DIR]

| name | data | protocol | H, m |
|---|---|---|---|
| m4-final | M4 hourly | final origin, ``--pretrain 5000`` | 48, 24 |
| m4-rolling | M4 hourly | rolling | 48, 24 |
| ett | ETTh2 | the leakage-free ett protocol, ``--pretrain 2000`` | 1/24/48, 24 |
| m1-yearly, m1-quarterly, m1-monthly | M1 | final origin | 6/8/18, 1/4/12 |
| retail | fpp3 aus_retail, monthly, long format | rolling | 18, 12 |
| elec | fpp3 vic_elec, half-hourly, long format | rolling | 48, 48 |

Every run has streammeta, the baselines and the statsforecast peers (AutoETS,
AutoARIMA, AutoTheta; `streammeta/evaluation/peers.py`). Where fitting the
peers at every scored origin of every series would take far beyond the ~10
minutes a data set is given on 2 cores, the peers run on a sample, stated in
each run's notes and scored in the slice ``peers`` together with every other
method (``PEER_SAMPLES``). Each run prints its command, its table and
streammeta's rank; a summary table closes; JSON and reports go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from streammeta.cli import main as streammeta_main
from streammeta.io import datasets

# The ETT protocol streams standardised values (signed, around 0): the defaults'
# asinh transform and weekly window are tuned for positive, multiplicative data.
ETT_CONFIG = Path(__file__).with_name("ett.toml")
NAMES = ("m4-final", "m4-rolling", "ett", "m1-yearly", "m1-quarterly", "m1-monthly",
         "retail", "elec")
# The peers' sample where all of it is out of reach (seconds measured on the 2-core
# machine: AutoARIMA's reduced search 3-4 s per M4 hourly series, AutoETS about 1 s).
PEER_SAMPLES = {
    "m4-final": ["--peer-series", "40"],
    "m4-rolling": ["--peer-series", "12", "--peer-origins", "3"],
    "retail": ["--peer-series", "24", "--peer-origins", "3"],
    "elec": ["--peer-origins", "8", "--peer-window", "1440"],
}
# Methods of the summary: streammeta against these.
SUMMARY = ("auto-ets", "auto-arima", "auto-theta", "seasonal-naive")


def evaluations(data: Path, config: str | None) -> dict[str, list[str]]:
    """Each evaluation's arguments. Offline meta-training (``--pretrain``) only where
    the protocol allows it and the series are long enough for its tasks (not M1)."""
    m4, fpp3 = str(data / "m4-hourly"), data / "fpp3"
    default = ["--config", config] if config else []
    runs = {
        "m4-final": ["--data", m4, "--format", "m4", "--protocol", "final-origin",
                     "--pretrain", "5000", *default],
        "m4-rolling": ["--data", m4, "--format", "m4", "--protocol", "rolling", *default],
        "ett": ["--data", str(data / "ett" / "ETTh2.csv"), "--format", "ett",
                "--protocol", "ett", "--pretrain", "2000",
                "--config", config or os.path.relpath(ETT_CONFIG)],
        "retail": ["--data", str(fpp3 / "aus_retail_monthly.csv"), "--format", "long",
                   "--protocol", "rolling", "--horizon", "18", "--season", "12", *default],
        "elec": ["--data", str(fpp3 / "vic_elec_halfhourly.csv"), "--format", "long",
                 "--protocol", "rolling", "--horizon", "48", "--season", "48", *default],
    }
    for subset in ("yearly", "quarterly", "monthly"):  # H and m from the file's name
        runs[f"m1-{subset}"] = ["--data", str(data / "m1" / subset.capitalize()),
                                "--format", "m4", "--protocol", "final-origin", *default]
    return {name: runs[name] for name in NAMES}


def summary_rows(name: str, results: list[dict[str, Any]]) -> list[str]:
    """One line per slice and horizon where streammeta met the peers: MASE (MSE for
    ett), its rank, and the same figure of each summary method."""
    key = "mse" if name == "ett" else "mase"
    lines = []
    for r in results:
        if r["method"] != "streammeta":
            continue
        same = {o["method"]: o for o in results
                if o["slice"] == r["slice"] and o["horizon"] == r["horizon"]}
        if not any(m in same for m in SUMMARY[:3]):
            continue  # the peers are scored in another slice (a sample)
        cells = [name, r["slice"], str(r["horizon"]), f"{r[key]:.3f}",
                 f"{r.get('rank_' + key, '')}/{r['ranked']}",
                 f"{r['coverage']:.3f}" if "coverage" in r else ""]
        cells += [f"{same[m][key]:.3f}" if m in same else "" for m in SUMMARY]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=datasets.default_data_dir())
    parser.add_argument("--config", help="config.toml for the engine (default: as `run`; "
                        "benchmarks/ett.toml for ETT)")
    parser.add_argument("--limit-series", type=int, help="only the first N series of each")
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--only", nargs="+", choices=NAMES)
    parser.add_argument("--out", type=Path, help="directory for JSON and reports")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="streammeta-accuracy-"))
    extra = []
    if args.limit_series:
        extra += ["--limit-series", str(args.limit_series)]
    if args.methods:
        extra += ["--methods", *args.methods]
    summary = []
    for name, argv in evaluations(args.data, args.config).items():
        if args.only and name not in args.only:
            continue
        command = ["evaluate", *argv, *PEER_SAMPLES.get(name, []), *extra,
                   "--json", str(out / f"{name}.json"), "--report", str(out / name), "-q"]
        print(f"\n## {name}\n`streammeta {' '.join(command)}`", flush=True)
        started = time.perf_counter()
        if streammeta_main(command) != 0:
            raise SystemExit(f"{name} failed")
        results = json.loads((out / f"{name}.json").read_text())["results"]
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
        summary += summary_rows(name, results)
    print("\n## Summary: streammeta against the peers and seasonal naive "
          "(MASE; ett: MSE)\n")
    print("| data | slice | H | streammeta | rank | coverage | " + " | ".join(SUMMARY) + " |")
    print("|" + "---|" * (6 + len(SUMMARY)))
    print("\n".join(summary))
    print(f"\nJSON and reports in {out}")


if __name__ == "__main__":
    main()
