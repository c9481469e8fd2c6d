"""Accuracy: the three headline evaluations of ``streammeta evaluate``, one table.

    python benchmarks/accuracy.py [--data ../shared/data] [--config config.toml]
        [--limit-series N] [--methods ...] [--out DIR] [--only m4-final m4-rolling ett]

1. M4 hourly, final origin: sMAPE / MASE / OWA of the forecast made at each
   series' last training value (targets: sMAPE < 8.9, MASE < 0.80; the best M4
   entry on this subset 8.913 / 0.801).
2. M4 hourly, rolling: every origin after a 72-value warm-up; the cold-start slice
   is each series' first 48 forecasts (target: MASE 25% below the best baseline).
3. ETTh2, the leakage-free online protocol, H = 1, 24, 48 (targets: MSE < 0.365,
   1.70, 2.85; naive persistence 0.404 / 1.818 / 2.852).

Each evaluation is printed with the command that reproduces it; its JSON and
report (plots) go to ``--out`` (default a temporary directory).
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

# (evaluation, slice, horizon, metric, target); None: 25% below the best baseline.
TARGETS: list[tuple[str, str, int, str, float | None]] = [
    ("m4-final", "all", 48, "smape", 8.9),
    ("m4-final", "all", 48, "mase", 0.80),
    ("m4-rolling", "cold_start", 48, "mase", None),
    ("ett", "all", 1, "mse", 0.365),
    ("ett", "all", 24, "mse", 1.70),
    ("ett", "all", 48, "mse", 2.85),
]
BASELINES = ("naive", "seasonal-naive", "naive2", "holt-winters", "snarimax")


# The ETT protocol streams standardised values (signed, around 0): the defaults'
# asinh transform and weekly window are tuned for positive, multiplicative data.
ETT_CONFIG = Path(__file__).with_name("ett.toml")


def evaluations(data: Path, config: str | None) -> dict[str, list[str]]:
    """Each evaluation's arguments. Offline meta-training (``--pretrain``) only where
    the protocol allows it: on the M4 training parts, and on ETT's train rows."""
    m4 = str(data / "m4-hourly")
    default = ["--config", config] if config else []
    return {
        "m4-final": ["--data", m4, "--format", "m4", "--protocol", "final-origin",
                     "--pretrain", "5000", *default],
        "m4-rolling": ["--data", m4, "--format", "m4", "--protocol", "rolling", *default],
        "ett": ["--data", str(data / "ett" / "ETTh2.csv"), "--format", "ett",
                "--protocol", "ett", "--pretrain", "2000",
                "--config", config or os.path.relpath(ETT_CONFIG)],
    }


def verdicts(name: str, results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for evaluation, slice_name, horizon, metric, target in TARGETS:
        if evaluation != name:
            continue
        rows = [r for r in results if r["slice"] == slice_name and r["horizon"] == horizon]
        model = next((r for r in rows if r["method"] == "streammeta"), None)
        if model is None:
            continue
        if target is None:
            base = [r[metric] for r in rows if r["method"] in BASELINES]
            if not base:
                continue
            target = 0.75 * min(base)
        ok = "met" if model[metric] < target else "missed"
        lines.append(f"  {evaluation} {slice_name} H={horizon}: streammeta {metric} "
                     f"{model[metric]:.3f}, target < {target:.3f}: {ok}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=datasets.default_data_dir())
    parser.add_argument("--config", help="config.toml for the engine (default: as `run` for "
                        "M4, benchmarks/ett.toml for ETT)")
    parser.add_argument("--limit-series", type=int)
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--only", nargs="+", choices=("m4-final", "m4-rolling", "ett"))
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
        command = ["evaluate", *argv, *extra, "--json", str(out / f"{name}.json"),
                   "--report", str(out / name), "-q"]
        print(f"\n## {name}\n`streammeta {' '.join(command)}`", flush=True)
        started = time.perf_counter()
        if streammeta_main(command) != 0:
            raise SystemExit(f"{name} failed")
        results = json.loads((out / f"{name}.json").read_text())["results"]
        print(f"({time.perf_counter() - started:.0f} s)")
        summary += verdicts(name, results)
    print("\nTargets:")
    print("\n".join(summary))
    print(f"\nJSON and reports in {out}")


if __name__ == "__main__":
    main()
