"""Throughput of streammeta beside per-entity online models, measured in one run.

    python benchmarks/throughput.py            # everything (about 30 minutes on 2 cores)
    python benchmarks/throughput.py --quick    # smaller sizes, a couple of minutes

Scenarios (each in its own process, so peak RSS is its own):
  engine-10k   the engine alone (no Kafka), 10,000 entities, steady state
  engine-1m    the engine alone, 1,000,000 entities resident, steady state
  e2e          Kafka in → daemon → Kafka out through the embedded Tansu broker,
               one forecast message per observation, offsets committed
  river        river's HoltWinters and SNARIMAX, one model per entity, on a prefix
               of the same stream (learn_one + an H-step forecast per observation,
               the same work streammeta does per observation)

The stream is a synthetic family of related seasonal series (hourly, season 24):
"steady state" means every entity has a full window, so every observation takes an
inner-loop step and produces a model forecast. Printed figures are events/s and
peak RSS; ratios are against the river baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

STEP = 3_600_000


def family(entities: int, steps: int, seed: int = 0) -> np.ndarray:
    """(steps, entities) values: level + trend + daily season + noise, per entity."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    level = rng.uniform(5, 50, entities)
    amp = rng.uniform(1, 3, entities)
    phase = rng.uniform(0, 24, entities)
    slope = rng.uniform(-0.02, 0.02, entities)
    season = np.sin(2 * math.pi * (t + phase) / 24)
    return level + slope * t + amp * season + rng.normal(0, 0.2, (steps, entities))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB on Linux


def engine_scenario(entities: int, measure_steps: int, batch: int) -> dict[str, float]:
    from streammeta import config as config_mod
    from streammeta.online.engine import Engine

    config = config_mod.load(None, env={}).replace("engine", max_entities=entities)
    engine = Engine(config)
    warm_steps = config.resolved().model.window + 1
    names = [f"entity-{i}" for i in range(entities)]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    events = 0
    for step in range(warm_steps + measure_steps):
        if step == warm_steps:
            started, events = time.perf_counter(), 0
        ts = np.full(entities, step * STEP, dtype=np.int64)
        values = 10 + np.sin(2 * math.pi * step / 24) + rng.normal(0, 0.2, entities)
        for lo in range(0, entities, batch):
            engine.process(names[lo:lo + batch], ts[lo:lo + batch], values[lo:lo + batch])
            events += min(batch, entities - lo)
    seconds = time.perf_counter() - started
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds,
            "peak_rss_gb": peak_rss_gb(), "entities": entities}


def river_scenario(entities: int, budget_s: float) -> dict[str, float]:
    """Per-entity river models on the same kind of stream, for ``budget_s`` seconds each."""
    from river import time_series

    values = family(entities, 24 * 8)
    out: dict[str, float] = {}
    makers = {
        "holtwinters": lambda: time_series.HoltWinters(
            alpha=0.3, beta=0.1, gamma=0.6, seasonality=24, multiplicative=False),
        "snarimax": lambda: time_series.SNARIMAX(p=1, d=0, q=0, m=24, sp=1, sq=0),
    }
    warm = 48  # steady state, as for the engine: HoltWinters forecasts once initialised
    for name, make in makers.items():
        models = [make() for _ in range(entities)]
        for step in range(warm):
            for e in range(entities):
                models[e].learn_one(float(values[step, e]))
        events, started = 0, time.perf_counter()
        for step in range(warm, values.shape[0]):
            for e in range(entities):
                model = models[e]
                model.learn_one(float(values[step, e]))
                model.forecast(horizon=48)
                events += 1
            if time.perf_counter() - started > budget_s:
                break
        seconds = time.perf_counter() - started
        out[f"{name}_events_per_s"] = events / seconds
    out["peak_rss_gb"] = peak_rss_gb()
    return out


def e2e_scenario(observations: int, entities: int) -> dict[str, float]:
    """Pre-load the input topic, then time the daemon draining it through the broker."""
    import threading

    from streammeta import config as config_mod
    from streammeta.io import kafka as kafka_edge
    from streammeta.io.broker import EmbeddedBroker
    from streammeta.io.codec import encode_observation
    from streammeta.serve.daemon import Daemon
    from streammeta.serve.metrics import Metrics

    steps = observations // entities
    values = family(entities, steps)
    with EmbeddedBroker() as broker:
        config = config_mod.load(None, env={}).replace(
            "kafka", bootstrap_servers=broker.bootstrap, session_timeout_ms=6000,
            heartbeat_interval_ms=1000)
        kafka_edge.ensure_topics(config.kafka, partitions=8)
        writer = kafka_edge.ObservationWriter(config.kafka)
        for step in range(steps):
            for e in range(entities):
                writer.send(*encode_observation(f"e{e}", step * STEP, float(values[step, e])))
        writer.flush()
        writer.close()
        metrics = Metrics()
        daemon = Daemon(config, kafka_edge.KafkaSource(config.kafka, metrics.count_error),
                        kafka_edge.KafkaSink(config.kafka), metrics,
                        progress_every_s=3600)
        total = steps * entities
        first_batch: list[float] = []

        def watch() -> None:
            while daemon.observations < total and not daemon.stopping:
                if daemon.observations and not first_batch:
                    first_batch.append(time.perf_counter())
                time.sleep(0.01)
            daemon.stop()

        watcher = threading.Thread(target=watch, daemon=True)
        started = time.perf_counter()
        watcher.start()
        daemon.run()
        ended = time.perf_counter()
    # Timed from the first processed batch: the group join (~3 s on Tansu) is set-up.
    begin = first_batch[0] if first_batch else started
    return {"observations": daemon.observations, "forecasts": daemon.forecasts,
            "seconds": ended - begin, "events_per_s": daemon.observations / (ended - begin),
            "join_seconds": begin - started, "peak_rss_gb": peak_rss_gb()}


def run_child(args: list[str]) -> dict[str, float]:
    result = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", choices=("engine-10k", "engine-1m", "e2e", "river"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "engine":
            out = engine_scenario(int(rest[0]), int(rest[1]), int(rest[2]))
        elif kind == "river":
            out = river_scenario(int(rest[0]), float(rest[1]))
        else:
            out = e2e_scenario(int(rest[0]), int(rest[1]))
        print(json.dumps(out))
        return

    big = 200_000 if args.quick else 1_000_000
    plan = {
        "engine-10k": ["engine", "10000", "10" if args.quick else "30", "10000"],
        "engine-1m": ["engine", str(big), "2", "10000"],
        "e2e": ["e2e", "100000" if args.quick else "400000", "10000"],
        "river": ["river", "1000", "10" if args.quick else "30"],
    }
    print(f"streammeta throughput on {os.cpu_count()} cores (torch threads: default)")
    results: dict[str, dict[str, float]] = {}
    for name, child_args in plan.items():
        if args.only and name != args.only:
            continue
        print(f"running {name} ...", flush=True)
        results[name] = run_child(child_args)
        print(f"  {json.dumps(results[name])}", flush=True)

    print("\n| scenario | events/s | peak RSS (GB) |\n|---|---|---|")
    for name, r in results.items():
        if name == "river":
            for model in ("holtwinters", "snarimax"):
                print(f"| river {model}, 1 model/entity | {r[f'{model}_events_per_s']:,.0f} "
                      f"| {r['peak_rss_gb']:.2f} |")
        else:
            label = {"engine-10k": "engine, 10k entities",
                     "engine-1m": f"engine, {big:,} entities",
                     "e2e": "end to end via embedded broker"}[name]
            print(f"| {label} | {r['events_per_s']:,.0f} | {r['peak_rss_gb']:.2f} |")
    if "river" in results:
        river = results["river"]
        for name in ("engine-10k", "engine-1m", "e2e"):
            if name in results:
                for model in ("holtwinters", "snarimax"):
                    ratio = results[name]["events_per_s"] / river[f"{model}_events_per_s"]
                    print(f"{name} / river {model}: {ratio:,.1f}x")


if __name__ == "__main__":
    main()
