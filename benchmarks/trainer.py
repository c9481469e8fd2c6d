"""One trainer, several ingesting replicas: how fast it trains, how fast versions spread.

    python benchmarks/trainer.py [--replicas 2] [--entities 200] [--warmup-steps 180]
                                 [--rate 1000] [--duration 90] [--every-s 5] [--device auto]

Starts the embedded broker, one ``streammeta train`` and ``--replicas``
``streammeta run`` processes with ``meta.role = ingest`` (the default model and
meta-learning settings, except ``meta.every_s``), and streams ``--entities``
hourly seasonal series: the first ``--warmup-steps`` of every series unpaced (so
that young tasks exist), then ``--rate`` observations per second for
``--duration`` seconds. Prints:

* the trainer's tasks per second per outer-loop run (meta-steps and judging, on
  ``meta.device``; the trainer runs unpaced), from its log;
* for each promoted version, the time from its publication to the last replica
  serving it (each replica logs how long ago the version it swapped in was
  published), median and maximum.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from streammeta import config as config_mod
from streammeta.io.broker import EmbeddedBroker
from streammeta.io.codec import encode_observation
from streammeta.io.edge import ensure_topics, make_writer, role_topics

STEP = 3_600_000
_TASKS = re.compile(r"trainer: (\d+) tasks in ([\d.]+) s \((\d+) tasks/s")
_SERVED = re.compile(r"serving model version (\d+) \(published (-?\d+) ms ago\)")


def stream(config: config_mod.Config, entities: int, warmup: int, rate: float,
           duration_s: float, stop: threading.Event) -> None:
    """Seasonal series with noise: ``warmup`` steps at once, then ``rate``
    observations/s for ``duration_s``."""
    writer = make_writer(config.kafka)
    rng = np.random.default_rng(0)
    level, phase = rng.uniform(10, 100, entities), rng.uniform(0, 24, entities)
    t, until = 0, float("inf")
    try:
        while time.monotonic() < until and not stop.is_set():
            values = level * (1 + 0.3 * np.sin(2 * np.pi * (t + phase) / 24)) + rng.normal(
                0, 1, entities)
            for e in range(entities):
                writer.send(*encode_observation(f"s{e}", t * STEP, float(values[e])))
            t += 1
            if t % 50 == 0 or t > warmup:
                writer.flush()  # the producer's queue holds about 100,000 messages
            if t == warmup:
                until = time.monotonic() + duration_s
            if t > warmup:
                time.sleep(entities / rate)
        writer.flush()
    finally:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--warmup-steps", type=int, default=180,
                        help="steps written at once first (a young task needs 167 hourly)")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--every-s", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = config_mod.load(None, env={})
        config = config.replace(
            "kafka", bootstrap_servers=broker.bootstrap, session_timeout_ms=6000,
            heartbeat_interval_ms=1000, poll_timeout_ms=100,
        ).replace("meta", every_s=args.every_s, device=args.device).replace(
            "metrics", port=0).replace("checkpoint", dir=f"{tmp}/checkpoints")
        ensure_topics(config.kafka, 4, extra=role_topics(config.meta, 4))
        processes, logs = [], []

        def start(name: str, command: str, cfg: config_mod.Config) -> None:
            path = Path(tmp) / f"{name}.toml"
            path.write_text(config_mod.to_toml(cfg, mask_secrets=False))
            logs.append(Path(tmp) / f"{name}.log")
            with open(logs[-1], "wb") as out:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "streammeta", command, "--config", str(path)],
                    stdout=out, stderr=subprocess.STDOUT))

        start("trainer", "train", config)
        for i in range(args.replicas):
            start(f"replica-{i}", "run", config.replace("meta", role="ingest").replace(
                "checkpoint", member=f"replica-{i}"))
        stop = threading.Event()
        producer = threading.Thread(target=stream, args=(
            config, args.entities, args.warmup_steps, args.rate, args.duration, stop))
        producer.start()
        try:
            producer.join()
            time.sleep(3 * args.every_s)  # the last promotions reach every replica
        finally:
            stop.set()
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(60)

        texts = [log.read_text(errors="replace") for log in logs]
        runs = [(int(n), float(s), int(r)) for n, s, r in _TASKS.findall(texts[0])]
        served: dict[int, list[int]] = {}
        for text in texts[1:]:
            for version, ago in _SERVED.findall(text):
                served.setdefault(int(version), []).append(int(ago))
        everywhere = [max(agos) for agos in served.values() if len(agos) == args.replicas]
        device = re.findall(r"tasks/s, judging included\) on (\S+)", texts[0])
        print(f"trainer ({device[0] if device else '?'}): {len(runs)} outer-loop runs, "
              f"tasks/s per run median {statistics.median(r for *_, r in runs) if runs else 0:.0f}"
              f" (min {min((r for *_, r in runs), default=0)}, max "
              f"{max((r for *_, r in runs), default=0)})")
        if everywhere:
            print(f"promotion → served by all {args.replicas} replicas: {len(everywhere)} "
                  f"versions, median {statistics.median(everywhere):.0f} ms, max "
                  f"{max(everywhere)} ms")
        else:
            print("no version reached every replica (too short a run?); the logs end:")
            for log, text in zip(logs, texts, strict=True):
                print(f"-- {log.name}\n" + "\n".join(text.splitlines()[-6:]))


if __name__ == "__main__":
    main()
