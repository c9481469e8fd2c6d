"""Throughput of streammeta beside per-entity online models, measured in one run.

    python benchmarks/throughput.py            # everything (about 30 minutes on 2 cores)
    python benchmarks/throughput.py --quick    # smaller sizes, a couple of minutes
    python benchmarks/throughput.py --only e2e # engine alone, e2e with each client, latency

Scenarios (each in its own process, so peak RSS is its own):
  engine-10k   the engine alone (no Kafka), 10,000 entities, steady state
  engine-1m    the engine alone, 1,000,000 entities resident, steady state (10,000
               warmed step by step, the rest copies of their rows)
  e2e-confluent, e2e-kafka-python
               Kafka in → daemon → Kafka out through the embedded Tansu broker with
               each client: one forecast message per observation, acks=all, offsets
               committed, timed in steady state (each of the 10,000 entities' first
               full window is drained untimed first, and only then are the timed
               steps written to the topic); also the daemon process's
               CPU time per observation, which a loaded machine distorts far less
               than the rate, and librdkafka's threads' part of it. --profile
               splits the timed window's CPU by component (spy_split.py: exact
               thread CPU of the engine step, decode, encode, produce, flush,
               poll, commit, the garbage collector; the engine's round sizes);
               PYSPY=1 adds a py-spy sample of every thread
  e2e-service  e2e with the default client through `Service`, as `streammeta run`
               serves: the outer loop, task samples and checkpoints on (e2e-* above
               run the bare daemon loop)
  latency      observations produced at half the default client's e2e rate into a
               running daemon (`streammeta run`), after a full window of each entity
               went in unpaced; the time from an observation's produce to its
               forecast's arrival at a consumer, p50 / p99, split by stage from
               wall-clock times of the daemon's rounds (latency.py)
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
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

STEP = 3_600_000
WARM_BLOCK = 10_000  # entities warmed step by step; more are copies of their rows


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
    """Steady state: every entity has a full window. Above ``WARM_BLOCK`` entities only
    the first block is warmed step by step; the others are copies of its rows (restored
    like a checkpoint's), so a million resident entities do not take an hour to warm."""
    import torch

    from streammeta import config as config_mod
    from streammeta.online.engine import Engine

    config = config_mod.load(None, env={}).replace("engine", max_entities=entities)
    engine = Engine(config)
    warm_steps = config.resolved().model.window + 1
    names = [f"entity-{i}" for i in range(entities)]
    block = min(entities, WARM_BLOCK)
    if entities % block:
        raise SystemExit(f"engine scenario: {entities} entities is not a multiple of {block}")
    rng = np.random.default_rng(0)

    def step_all(step: int, count: int) -> None:
        ts = np.full(count, step * STEP, dtype=np.int64)
        values = 10 + np.sin(2 * math.pi * step / 24) + rng.normal(0, 0.2, count)
        for lo in range(0, count, batch):
            engine.process(names[lo:lo + batch], ts[lo:lo + batch], values[lo:lo + batch])

    for step in range(warm_steps):
        step_all(step, block)
    rows = engine.arena.export(torch.arange(block))
    for lo in range(block, entities, block):
        engine.arena.restore({**rows, "names": names[lo:lo + block]})
    started, cpu = time.perf_counter(), time.process_time()
    for step in range(warm_steps, warm_steps + measure_steps):
        step_all(step, entities)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    events = entities * measure_steps
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds,
            "events_per_cpu_s": events / cpu, "peak_rss_gb": peak_rss_gb(),
            "entities": entities}


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


def preload(config: Any, entities: int, steps: int, first_step: int = 0) -> None:
    """Write ``steps`` observations of each entity to the input topic (set-up, untimed)."""
    from streammeta.io.codec import encode_observation
    from streammeta.io.edge import make_writer

    values = family(entities, first_step + steps)
    writer = make_writer(dataclasses.replace(config.kafka, client="confluent"))
    for step in range(first_step, first_step + steps):
        for e in range(entities):
            writer.send(*encode_observation(f"e{e}", step * STEP, float(values[step, e])))
    writer.flush()
    writer.close()


def thread_cpu(tids: set[str] | None = None) -> dict[str, float]:
    """CPU seconds of this process's threads so far (of ``tids`` only, if given), summed
    by the name the OS knows (librdkafka's ``rdk:*`` threads; Python's threads all show
    as the interpreter's)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task") if tids is None else tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        name = name.split("/")[0] if name.startswith("rdk:") else name
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


def broker_config(bootstrap: str, client: str, **kafka: Any) -> Any:
    from streammeta import config as config_mod

    return config_mod.load(None, env={}).replace(
        "kafka", client=client, bootstrap_servers=bootstrap, session_timeout_ms=6000,
        heartbeat_interval_ms=1000, **kafka)


def e2e_scenario(observations: int, entities: int, client: str, profile: bool = False,
                 service: bool = False, **kafka: Any) -> dict[str, float]:
    """Pre-load the input topic, then time the daemon draining it through the broker:
    one forecast message per observation, acks=all, offsets committed. ``service``: the
    daemon as ``streammeta run`` wires it (outer loop, task samples, checkpoints)."""
    import tempfile
    import threading

    from streammeta.io.broker import EmbeddedBroker
    from streammeta.io.edge import ensure_topics, make_kafka_edge
    from streammeta.serve.daemon import Daemon
    from streammeta.serve.metrics import Metrics

    steps = observations // entities
    with EmbeddedBroker() as broker:
        config = broker_config(broker.bootstrap, client, **kafka)
        # Steady state, as engine-10k: every entity first gets a full window (drained
        # untimed), so the timed observations each take an inner-loop step and a model
        # forecast. The timed steps are written only once the warm-up is drained: a
        # backlog is not consumed partition by partition in step, so with both in the
        # topic at once the "timed" window held one partition's warm-up (its entities
        # young, searching analogues: ~35 µs of engine CPU per observation, not ~19).
        warm = config.resolved().model.window + 1
        ensure_topics(config.kafka, partitions=8)
        preload(config, entities, warm)
        runner: Any
        if service:
            from streammeta.serve.service import Service

            runner = Service(config.replace("metrics", port=0).replace(
                "checkpoint", dir=tempfile.mkdtemp(prefix="streammeta-e2e-")))
            daemon = runner.daemon
        else:
            metrics = Metrics()
            edge = make_kafka_edge(config, metrics.count_error)
            daemon = runner = Daemon(config, edge.source, edge.sink, metrics,
                                     progress_every_s=3600)
        paused = threading.Event()  # the loop polls nothing while the timed steps go in
        daemon.source.poll = _pausable(daemon.source.poll, paused)
        meter = None
        if profile:
            import spy_split

            meter = spy_split.Meter()
            for obj, method, name in [
                    (daemon.engine, "process", "engine step"),
                    (daemon.decoder, "decode", "decode observations"),
                    (daemon.encoder, "format", "encode forecasts"),
                    (daemon.sink, "send_forecasts", "produce forecasts"),
                    (daemon.sink, "flush", "flush (acknowledgements)"),
                    (daemon.source, "poll", "poll"),
                    (daemon.source, "commit", "commit")]:
                meter.wrap(obj, method, name)
            meter.watch_rounds()
            meter.watch_gc()
        total = (warm + steps) * entities
        first_batch: list[float] = []
        # When the warm-up was drained: wall clock, process CPU, observations.
        timed: list[tuple[float, float, int]] = []
        drained: list[float] = []  # when the warm-up was drained
        prefetched: list[float] = []  # librdkafka's CPU seconds while the timed steps went in
        threads_cpu = [thread_cpu()]
        daemon_threads: set[str] = set()

        def watch() -> None:
            while daemon.observations < total and not daemon.stopping:
                if daemon.observations and not first_batch:
                    first_batch.append(time.perf_counter())
                if daemon.observations >= warm * entities and not timed:
                    drained.append(time.perf_counter())
                    paused.set()
                    # From here: the consumer's threads prefetch the timed steps while
                    # they go in; the daemon's threads are counted, not the writer's.
                    daemon_threads.update(os.listdir("/proc/self/task"))
                    threads_cpu[0] = thread_cpu(daemon_threads)
                    preload(config, entities, steps, first_step=warm)
                    prefetch = _minus(thread_cpu(daemon_threads), threads_cpu[0])
                    prefetched.append(sum(v for k, v in prefetch.items() if k.startswith("rdk:")))
                    timed.append((time.perf_counter(), time.process_time(),
                                  daemon.observations))
                    if meter is not None:  # the timed window only: the warm-up is set-up
                        meter.reset()
                        spy.append(start_spy())
                    paused.clear()
                time.sleep(0.01)
            threads_cpu.append(thread_cpu(daemon_threads))  # before the daemon's threads end
            daemon.stop()

        spy: list[Any] = []

        def start_spy() -> Any:
            import spy_split

            return spy_split.start(os.getpid()) if os.environ.get("PYSPY") else None

        watcher = threading.Thread(target=watch, daemon=True)
        started = time.perf_counter()
        watcher.start()
        runner.run()
        ended = time.perf_counter()
        cpu_ended = time.process_time() + sum(prefetched)  # the prefetch is the timed work's
        if meter is not None and timed:
            import spy_split

            n = max(1, daemon.observations - timed[0][2])
            by_thread = _minus(threads_cpu[-1], threads_cpu[0])
            rdkafka = sum(v for k, v in by_thread.items() if k.startswith("rdk:"))
            print(meter.report(n, cpu_ended - timed[0][1], rdkafka), file=sys.stderr)
            if spy and spy[0] is not None:
                print(spy_split.report(spy_split.stop(spy[0]), n, cpu_ended - timed[0][1]),
                      file=sys.stderr)
            print(f"CPU seconds by thread while timed: {by_thread}", file=sys.stderr)
    # Timed from the warm-up drained: the group join (~3 s on Tansu) and the warm-up
    # are set-up.
    begin = first_batch[0] if first_batch else started
    t0, cpu0, seen = timed[0] if timed else (begin, 0.0, 0)
    n = max(1, daemon.observations - seen)
    return {"observations": daemon.observations - seen, "forecasts": daemon.forecasts,
            "seconds": ended - t0, "events_per_s": n / (ended - t0),
            "join_seconds": begin - started,
            "warm_up_seconds": (drained[0] if drained else t0) - begin,
            "peak_rss_gb": peak_rss_gb(),
            "cpu_us_per_observation": (cpu_ended - cpu0) / n * 1e6,
            "librdkafka_us_per_observation": sum(
                v for k, v in _minus(threads_cpu[-1], threads_cpu[0]).items()
                if k.startswith("rdk:")) / n * 1e6}


def _pausable(poll: Any, paused: Any) -> Any:
    """``poll`` that returns nothing while ``paused`` is set (the loop idles)."""
    def gated(timeout_s: float) -> Any:
        if paused.is_set():
            time.sleep(0.01)
            return []
        return poll(timeout_s)
    return gated


def run_child(args: list[str], show_stderr: bool = False) -> dict[str, Any]:
    result = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                            capture_output=True, text=True)
    if show_stderr:
        print(result.stderr, file=sys.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(kind: str, rest: list[str]) -> dict[str, Any]:
    if kind == "engine":
        return engine_scenario(int(rest[0]), int(rest[1]), int(rest[2]))
    if kind == "river":
        return river_scenario(int(rest[0]), float(rest[1]))
    if kind == "latency":
        from latency import latency_scenario

        return latency_scenario(float(rest[0]), float(rest[1]), int(rest[2]), rest[3],
                                int(rest[4]), int(rest[5]))
    return e2e_scenario(int(rest[0]), int(rest[1]), rest[2], profile=rest[3] == "profile",
                        service=rest[6:] == ["service"], linger_ms=int(rest[4]),
                        max_poll_records=int(rest[5]))


GROUPS = {"e2e": ("engine-10k", "e2e-confluent", "e2e-service", "e2e-kafka-python", "latency")}


def main() -> None:
    from streammeta import config as config_mod

    default = config_mod.load(None, env={}).kafka
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", choices=("engine-10k", "engine-1m", "e2e", "e2e-confluent",
                                           "e2e-service", "e2e-kafka-python", "latency",
                                           "river"),
                        help="one scenario; e2e = the engine alone, e2e through each client "
                             "and the latency")
    parser.add_argument("--profile", action="store_true",
                        help="split the default client's e2e run's timed CPU by component "
                             "(to stderr; PYSPY=1 also samples it with py-spy)")
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="observations/s of the latency run (default: half the default "
                             "client's e2e rate measured in this run, else 25,000)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--linger-ms", type=int, default=default.linger_ms,
                        help="kafka.linger_ms of the daemon in the e2e and latency runs")
    parser.add_argument("--max-poll-records", type=int, default=default.max_poll_records,
                        help="kafka.max_poll_records of the daemon in the e2e and latency runs")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return

    big = 200_000 if args.quick else 1_000_000
    e2e_size = "100000" if args.quick else "400000"
    plan: dict[str, list[str]] = {
        "engine-10k": ["engine", "10000", "10" if args.quick else "30", "10000"],
        "engine-1m": ["engine", str(big), "2", "10000"],
        **{f"e2e-{c}": ["e2e", e2e_size, "10000", c,
                        "profile" if args.profile and c == default.client else "-",
                        str(args.linger_ms), str(args.max_poll_records)]
           for c in ("confluent", "kafka-python")},
        "e2e-service": ["e2e", e2e_size, "10000", default.client, "-", str(args.linger_ms),
                        str(args.max_poll_records), "service"],
        "latency": [],  # its rate comes from the e2e run of the default client
        "river": ["river", "1000", "10" if args.quick else "30"],
    }
    chosen = GROUPS.get(args.only or "", (args.only,) if args.only else tuple(plan))
    print(f"streammeta throughput on {os.cpu_count()} cores (torch threads: default); "
          f"default client {default.client}")
    results: dict[str, dict[str, Any]] = {}
    for name, child_args in plan.items():
        if name not in chosen:
            continue
        if name == "latency":
            measured = results.get(f"e2e-{default.client}", {}).get("events_per_s", 50_000.0)
            rate = args.latency_rate or measured / 2
            child_args = ["latency", f"{rate:.0f}", str(args.latency_seconds), "10000",
                          default.client, str(args.linger_ms), str(args.max_poll_records)]
        print(f"running {name} ...", flush=True)
        results[name] = run_child(child_args, show_stderr=args.profile)
        print(f"  {json.dumps(results[name])}", flush=True)
    report(results, big)


def report(results: dict[str, dict[str, Any]], big: int) -> None:
    print("\n| scenario | events/s | peak RSS (GB) |\n|---|---|---|")
    labels = {"engine-10k": "engine, 10k entities", "engine-1m": f"engine, {big:,} entities",
              "e2e-confluent": "end to end via embedded broker, confluent-kafka",
              "e2e-kafka-python": "end to end via embedded broker, kafka-python",
              "e2e-service": "end to end as `streammeta run` serves (outer loop, task "
                             "samples, checkpoints), default client"}
    for name, r in results.items():
        if name == "river":
            for model in ("holtwinters", "snarimax"):
                print(f"| river {model}, 1 model/entity | {r[f'{model}_events_per_s']:,.0f} "
                      f"| {r['peak_rss_gb']:.2f} |")
        elif name in labels:
            print(f"| {labels[name]} | {r['events_per_s']:,.0f} | {r['peak_rss_gb']:.2f} |")
    for name in ("engine-10k", "engine-1m"):
        if name in results:
            print(f"{name}: {results[name]['events_per_cpu_s']:,.0f} events per CPU-second "
                  "(less distorted by a loaded machine than the rate)")
    for name in ("e2e-confluent", "e2e-service", "e2e-kafka-python"):
        if "cpu_us_per_observation" in results.get(name, {}):
            print(f"{name}: {results[name]['cpu_us_per_observation']:.1f} µs of the daemon "
                  "process's CPU per observation (all its threads; the broker's not included)")
    if "latency" in results:
        from latency import report as latency_report

        latency_report(results["latency"])
    if "engine-10k" in results:
        for name in ("e2e-confluent", "e2e-service", "e2e-kafka-python"):
            if name in results:
                share = results[name]["events_per_s"] / results["engine-10k"]["events_per_s"]
                print(f"{name} / engine alone: {share:.2f}")
    if "river" in results:
        river = results["river"]
        for name in ("engine-10k", "engine-1m", "e2e-confluent", "e2e-kafka-python"):
            if name in results:
                for model in ("holtwinters", "snarimax"):
                    ratio = results[name]["events_per_s"] / river[f"{model}_events_per_s"]
                    print(f"{name} / river {model}: {ratio:,.1f}x")


if __name__ == "__main__":
    main()
