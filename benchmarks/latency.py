"""The latency scenario of ``throughput.py`` (``--only latency``), decomposed by stage.

Observations are produced at a fixed rate into a running daemon (``streammeta run``,
its own process, through ``latency_trace.py``), after a full window of each entity
went in unpaced; a consumer times each forecast of every 10th entity from its
observation's produce to its arrival. Each timed forecast is split by stage with
wall-clock times (one clock, one machine):

* produce → its round's poll called: the observation was produced while the loop was
  busy with earlier rounds (or still on its way through the producer and broker);
* poll called → returned: the fetch path (producer linger, broker, consumer fetch);
* poll returned → engine start: decoding;
* engine step: the round's model step (the forecast's ``produced_at`` finds its round);
* engine end → forecast produced: the wait for the previous batch's acknowledgement,
  the delivery thread's encoding, the produce calls (the forecast's Kafka timestamp);
* forecast produced → arrival: linger, the broker's ``acks=all``, the consumer's fetch.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from throughput import STEP, broker_config, family

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ("before its poll", "fetch (poll call → return)", "decode", "engine step",
          "ack wait + encode + produce", "forecast → consumer")


def latency_scenario(rate: float, seconds: float, entities: int, client: str,
                     linger_ms: int, max_poll_records: int
                     ) -> dict[str, Any]:
    """Observations produced at ``rate``/s into a running daemon; the time from each
    observation's produce to its forecast's arrival at a consumer, for every 10th
    entity, after a warm-up; and its split by stage."""
    import orjson
    from confluent_kafka import Consumer, Producer

    from streammeta import config as config_mod
    from streammeta.io.broker import EmbeddedBroker
    from streammeta.io.codec import encode_observation
    from streammeta.io.edge import ensure_topics

    load_before = os.getloadavg()
    steps_timed = max(1, int(rate * seconds / entities))
    # A full window for each entity first, as e2e's: the timed forecasts are the model's.
    warm_steps = config_mod.load(None, env={}).resolved().model.window + 1
    steps = warm_steps + steps_timed
    values = family(entities, steps)
    sent = np.zeros((steps, entities))  # produce time of each observation (wall clock)
    timed: list[tuple[float, float, float, float]] = []  # sent, engine done, produced, arrived
    first_step = [0]

    def receive(consumer: Any, timeout_s: float) -> None:
        for message in consumer.consume(10000, timeout_s):
            if message.error() is not None:
                continue
            now = time.time()
            entity = int(message.key()[1:])
            if entity % 10:
                continue
            forecast = orjson.loads(message.value())
            step = forecast["origin"] // STEP
            if step >= first_step[0]:
                timed.append((sent[step, entity], forecast["produced_at"] / 1000,
                              message.timestamp()[1] / 1000, now))

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = broker_config(broker.bootstrap, client, linger_ms=linger_ms,
                               max_poll_records=max_poll_records
                               ).replace("metrics", port=0).replace("checkpoint", dir="")
        ensure_topics(config.kafka, partitions=8)
        path, trace = f"{tmp}/config.toml", f"{tmp}/trace.json"
        with open(path, "w") as handle:
            handle.write(config_mod.to_toml(config, mask_secrets=False))
        daemon = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "latency_trace.py"), trace, "run",
             "--config", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1,
                             "acks": "all"})
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "latency",
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
        consumer.subscribe([config.kafka.forecast_topic])
        try:
            interval = entities / rate  # one step of every entity
            next_at = time.perf_counter()
            for step in range(steps):
                for e in range(entities):
                    key, value = encode_observation(f"e{e}", step * STEP, float(values[step, e]))
                    while True:
                        try:
                            producer.produce(config.kafka.input_topic, value, key)
                            break
                        except BufferError:  # the unpaced warm-up filled the local queue
                            producer.poll(0.05)
                            receive(consumer, 0)
                    sent[step, e] = time.time()
                    if e % 500 == 0:
                        producer.poll(0)
                        receive(consumer, 0)
                        # The warm-up goes in as fast as the daemon takes it, untimed.
                        while (step >= warm_steps
                               and time.perf_counter() < next_at + interval * e / entities):
                            receive(consumer, 0.001)
                next_at += interval
                if step == warm_steps - 1:  # joined, and the warm-up's forecasts all in
                    producer.flush(300)
                    deadline = time.perf_counter() + 300
                    warm = warm_steps * len(range(0, entities, 10))
                    while len(timed) < warm and time.perf_counter() < deadline:
                        receive(consumer, 0.1)
                    timed.clear()
                    first_step[0] = warm_steps
                    cpu = _cpu(daemon.pid, broker.pid)
                    next_at = time.perf_counter()
            producer.flush(30)
            expected = (steps - warm_steps) * len(range(0, entities, 10))
            deadline = time.perf_counter() + 30
            while len(timed) < expected and time.perf_counter() < deadline:
                receive(consumer, 0.1)
            used = [b - a for a, b in zip(cpu, _cpu(daemon.pid, broker.pid), strict=True)]
        finally:
            consumer.close()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        rounds = _read(trace)
        if os.environ.get("LATENCY_TRACE"):  # keep the daemon's timeline for a closer look
            import shutil

            shutil.copy(trace, os.environ["LATENCY_TRACE"])
    out: dict[str, Any] = {"rate": rate, "forecasts_timed": len(timed), "expected": expected,
                           "load_before": [round(x, 2) for x in load_before],
                           "load_after": [round(x, 2) for x in os.getloadavg()]}
    ms = np.array([(a - s) * 1000 for s, _, _, a in timed])
    for q in (50, 99):
        out[f"p{q}_ms"] = float(np.percentile(ms, q)) if len(ms) else math.nan
    out["max_ms"] = float(ms.max()) if len(ms) else math.nan
    if timed:
        out.update(decompose(np.array(timed), rounds))
    # CPU of each process while timed: what the two cores were asked for.
    n = max(1, expected * 10)
    out["cpu µs per observation"] = {
        name: round(seconds / n * 1e6, 1)
        for name, seconds in zip(("daemon", "broker", "benchmark producer + consumer"),
                                 used, strict=True)}
    return out


def _cpu(*pids: int) -> list[float]:
    """CPU seconds so far of each of ``pids``, then of this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / tick)
    return [*out, time.process_time()]


def _read(path: str) -> dict[str, Any]:
    import json

    try:
        with open(path) as handle:
            return dict(json.load(handle))
    except (OSError, ValueError):
        return {}


def decompose(timed: np.ndarray, trace: dict[str, Any]) -> dict[str, Any]:
    """Each timed forecast's stages (ms; p50, p99, and the mean over the slowest 1%),
    and the daemon's rounds in the timed window."""
    sent, done, produced, arrived = timed.T
    out: dict[str, Any] = {}
    rounds = np.array(trace.get("rounds") or [[0.0] * 5]).reshape(-1, 5)
    rounds = rounds[rounds[:, 4] > 0]
    if len(rounds) == 0:
        return out
    # The round whose engine step ended last before the forecast's produced_at (ms).
    which = np.clip(np.searchsorted(rounds[:, 4], done + 0.0011) - 1, 0, len(rounds) - 1)
    called, returned, _, started, ended = rounds[which].T
    stages = np.stack([np.maximum(0, called - sent),
                       returned - np.maximum(sent, called), started - returned,
                       ended - started, produced - ended, arrived - produced]) * 1000
    total = (arrived - sent) * 1000
    tail = total >= np.percentile(total, 99)
    out["stages_ms"] = {name: [round(float(np.percentile(s, 50)), 1),
                               round(float(np.percentile(s, 99)), 1),
                               round(float(s[tail].mean()), 1)]
                        for name, s in zip(STAGES, stages, strict=True)}
    window = rounds[(rounds[:, 0] >= sent.min()) & (rounds[:, 0] <= arrived.max())]
    if len(window):
        size, engine = window[:, 2], (window[:, 4] - window[:, 3]) * 1000
        out["rounds"] = {"count": len(window),
                         "records p50/p99/max": _spread(size),
                         "engine ms p50/p99/max": _spread(engine),
                         # the rest of the loop: submit (the ack wait), gauges, lag, outer
                         # loop's turn at the interpreter lock, till the next poll
                         "engine end → next poll ms p50/p99/max": _spread(
                             (window[1:, 0] - window[:-1, 4]) * 1000),
                         "engine µs per record": round(float(engine.sum() / size.sum() * 1000), 1)}
    lo, hi = sent.min(), arrived.max()
    for name in ("complete", "encode", "outer", "gc"):
        spans = np.array(trace.get(name) or [[0.0, 0.0]])[:, :2]
        spans = spans[(spans[:, 0] >= lo) & (spans[:, 0] <= hi)]
        if len(spans):
            out[f"{name} ms p50/p99/max (n={len(spans)})"] = _spread(
                (spans[:, 1] - spans[:, 0]) * 1000)
    return out


def _spread(x: np.ndarray) -> list[float]:
    return [round(float(np.percentile(x, 50)), 1), round(float(np.percentile(x, 99)), 1),
            round(float(x.max()), 1)]


def report(r: dict[str, Any]) -> None:
    print(f"\nlatency, observation produced → forecast received, at {r['rate']:,.0f} obs/s: "
          f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms "
          f"({r['forecasts_timed']:,.0f} of {r['expected']:,.0f} forecasts timed; load "
          f"average {r['load_before'][0]:.2f} before, {r['load_after'][0]:.2f} after)")
    if "stages_ms" in r:
        print("\n| stage | p50 ms | p99 ms | mean over the slowest 1% |\n|---|---|---|---|")
        for name, (p50, p99, tail) in r["stages_ms"].items():
            print(f"| {name} | {p50} | {p99} | {tail} |")
    for key, value in r.items():
        if key in ("rounds", "cpu µs per observation") or key.endswith(")"):
            print(f"{key}: {value}")
