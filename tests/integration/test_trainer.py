"""One model across replicas: two ingesting replicas and one trainer on a real broker.

Replica A starts alone with the trainer; B joins mid-stream and takes partitions
over with their checkpointed state; the trainer is SIGKILLed and restarted. Proves:
versions are numbered once across the deployment (the restarted trainer continues
the line from the newest version), both replicas serve the versions in the
published order and end on the newest, forecasts carry those numbers, every
observation is forecast while the trainer is down, and a moved partition keeps its
φ (same line) with no jump in its error. Prints the time from each promotion to
both replicas serving it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2
from streamcheck import PARTITIONS, STEP, random_walks
from test_daemon_kafka import committed_total, read_topic, start_daemon, wait_for
from test_replicas import owned, replica, stop

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.io.codec import encode_observation
from streammeta.io.edge import ensure_topics, make_tail, role_topics
from streammeta.meta import versions
from streammeta.online import model
from streammeta.serve.trainer import Trainer

pytestmark = pytest.mark.integration
ENTITIES = 200
STEPS = 100
MOVE_AT = 40  # the step before which a partition moves from A to B
_SERVING = re.compile(r"^(\S+ \S+) INFO streammeta.serve.ingest: serving model version (\d+)",
                      re.M)


def small(config: Config) -> Config:
    """A small model that promotes often: a version every second or two."""
    return (config.replace("series", season=6, horizon=6).replace("model", hidden=32)
            .replace("meta", every_s=1.0, steps=3, tasks_per_step=16, buffer_entities=512,
                     tolerance=1.0, samples_per_s=2000.0,
                     versions_topic=f"{config.kafka.input_topic}.versions",
                     samples_topic=f"{config.kafka.input_topic}.samples",
                     lease_topic=f"{config.kafka.input_topic}.lease")
            .replace("checkpoint", every_records=2000, every_s=3600)
            .replace("kafka", max_poll_records=500))


class Paced(threading.Thread):
    """Writes the stream one step (every entity once) at a time, pausing between steps;
    before step ``hold_at`` it waits for ``resume`` (a partition moves meanwhile)."""

    def __init__(self, config: Config, values: np.ndarray, pause_s: float,
                 hold_at: int) -> None:
        super().__init__(daemon=True)
        self.config, self.values, self.pause_s = config, values, pause_s
        self.hold_at, self.resume = hold_at, threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.config.kafka.bootstrap_servers,
                                     acks="all", linger_ms=5)
            for t in range(len(self.values)):
                if t == self.hold_at and not self.resume.wait(120):
                    raise TimeoutError("not resumed")
                for e in range(self.values.shape[1]):
                    key, value = encode_observation(f"e{e}", t * STEP, float(self.values[t, e]))
                    producer.send(self.config.kafka.input_topic, key=key, value=value)
                producer.flush()
                time.sleep(self.pause_s)
            producer.close()
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def input_partition(entity: str) -> int:
    """The input partition of an entity's records (the test producer's partitioner)."""
    return (murmur2(entity.encode()) & 0x7FFFFFFF) % PARTITIONS


def start_trainer(config: Config, path: Path) -> subprocess.Popen[bytes]:
    path.write_text(config_mod.to_toml(config, mask_secrets=False))
    with open(path.with_suffix(".log"), "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "streammeta", "train", "--config",
                                 str(path)], stdout=log, stderr=subprocess.STDOUT)


class Published:
    """Every version on the versions topic, in topic order (read as it comes)."""

    def __init__(self, config: Config) -> None:
        self.tail = make_tail(config.kafka, config.meta.versions_topic)
        self.shape = model.ModelShape.of(config.resolved())
        self.versions: list[versions.Version] = []

    def __call__(self) -> list[versions.Version]:
        for _, value in self.tail.poll(0.05):
            self.versions.append(versions.decode(value or b"", self.shape))
        return self.versions


def served(log: Path) -> list[tuple[int, float]]:
    """(version, epoch seconds) of each swap a replica logged, in order."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [(int(m.group(2)), datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
            for m in _SERVING.finditer(text)]


def one_step_errors(forecasts: list[dict], values: np.ndarray) -> dict[tuple[int, int], float]:
    """(entity, origin step) → |first-step point forecast − the value that came|."""
    out = {}
    for f in forecasts:
        e, t = int(f["entity"][1:]), f["origin"] // STEP
        if t + 1 < len(values):
            out[(e, t)] = abs(f["point"][0] - float(values[t + 1, e]))
    return out


def test_two_replicas_serve_one_trainers_versions(kafka_config: Config, tmp_path: Path) -> None:
    config = small(kafka_config)
    ensure_topics(config.kafka, PARTITIONS, extra=role_topics(config.meta, PARTITIONS))
    # Replicas at the automatic width without a parameter file (128) serve the trainer's
    # 32-wide versions in their width.
    ingest = config.replace("meta", role="ingest").replace("model", hidden=0)
    values = random_walks(STEPS, ENTITIES, seed=7)
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    trainer = start_trainer(config, tmp_path / "trainer.toml")
    a = start_daemon(replica(ingest, "replica-a"), tmp_path / "a.toml")
    b = None
    producer = Paced(config, values, pause_s=0.2, hold_at=MOVE_AT)
    published = Published(config)
    try:
        wait_for(lambda: owned(a_log) == set(range(PARTITIONS)), timeout_s=60,
                 what="A owning every partition")
        producer.start()
        wait_for(lambda: len(published()) >= 1, timeout_s=60, what="a first version")
        b = start_daemon(replica(ingest, "replica-b"), tmp_path / "b.toml")
        wait_for(lambda: owned(b_log) and not owned(a_log) & owned(b_log), timeout_s=60,
                 what="B taking partitions over from A")
        moved, moved_at = owned(b_log), MOVE_AT
        wait_for(lambda: committed_total(config) >= MOVE_AT * ENTITIES, timeout_s=30,
                 what="the first steps committed")  # the stream waits meanwhile
        producer.resume.set()
        wait_for(lambda: committed_total(config) >= (MOVE_AT + 4) * ENTITIES, timeout_s=30,
                 what="both replicas forecasting")
        before_kill = list(published())
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(30)
        killed = committed_total(config)
        # Replicas keep serving the last version while no trainer runs.
        wait_for(lambda: committed_total(config) >= killed + 4 * ENTITIES, timeout_s=30,
                 what="forecasts while the trainer is down")
        trainer = start_trainer(config, tmp_path / "trainer.toml")
        wait_for(lambda: len(published()) >= len(before_kill) + 2, timeout_s=60,
                 what="the restarted trainer's versions")
        producer.join(120)
        assert producer.error is None
        wait_for(lambda: committed_total(config) >= STEPS * ENTITIES, timeout_s=60,
                 what="every record committed")
        stop(trainer)  # no version after this: every one served is on the topic
        all_versions = list(published())
        newest = all_versions[-1].version
        wait_for(lambda: served(a_log)[-1][0] == newest == served(b_log)[-1][0],
                 timeout_s=30, what="both replicas serving the newest version")
        for process in (a, b):
            process.send_signal(signal.SIGTERM)
        assert a.wait(60) == 0 and b.wait(60) == 0
    finally:
        for process in (a, b, trainer):
            if process is not None:
                process.kill()
                process.wait(30)
        published.tail.close()

    numbers = [v.version for v in all_versions]
    assert numbers == sorted(set(numbers)), f"a version number reused: {numbers}"
    incarnations = list(dict.fromkeys(v.incarnation for v in all_versions))
    assert len(incarnations) == 2
    first_after = next(v for v in all_versions if v.incarnation == incarnations[1])
    last_before = [v for v in all_versions if v.incarnation == incarnations[0]][-1]
    assert first_after.parent == last_before.version  # continued from the newest
    assert len({v.line for v in all_versions}) == 1
    for log in (a_log, b_log):
        seq = [v for v, _ in served(log)]
        assert seq == sorted(set(seq)) and set(seq) <= set(numbers), seq
    # Both follow the published order to its end; a version superseded before a replica
    # swapped it in is skipped, never served out of order.
    a_seq, b_seq = ([v for v, _ in served(log)] for log in (a_log, b_log))
    assert a_seq[-1] == b_seq[-1] == numbers[-1]
    common = [n for n in numbers if n >= b_seq[0]]
    skipped = sum(n not in a_seq for n in common) + sum(n not in b_seq for n in common)
    assert "reset to the served" not in b_log.read_text()  # same line: φ kept
    assert "has model.hidden = 32 (the configuration 128)" in a_log.read_text()

    forecasts = read_topic(config, config.kafka.forecast_topic, expected=STEPS * ENTITIES)
    decoded = [orjson.loads(r.value) for r in forecasts]
    assert {(f["entity"], f["origin"]) for f in decoded} == {
        (f"e{e}", t * STEP) for t in range(STEPS) for e in range(ENTITIES)}  # 0 lost
    assert {f["model_version"] for f in decoded} <= {0, *numbers}

    # A moved partition's entities: the error after the move is in line with before,
    # relative to the entities that stayed.
    errors = one_step_errors(decoded, values)
    def mean(entities: set[int], steps: range) -> float:
        return float(np.mean([errors[(e, t)] for e in entities for t in steps
                              if (e, t) in errors]))
    was_moved = {e for e in range(ENTITIES) if input_partition(f"e{e}") in moved}
    stayed = set(range(ENTITIES)) - was_moved
    before, after = range(moved_at - 12, moved_at), range(moved_at + 2, moved_at + 14)
    ratio = (mean(was_moved, after) / mean(was_moved, before)) / (
        mean(stayed, after) / mean(stayed, before))
    assert ratio < 1.5, f"moved partitions' error jumped ×{ratio:.2f} relative to the others"

    published_at = {v.version: v.published_at_ms / 1000 for v in all_versions}
    delays = [max(dict(served(log)).get(n, np.nan) for log in (a_log, b_log)) - published_at[n]
              for n in numbers if all(n in dict(served(log)) for log in (a_log, b_log))]
    print(f"\n{len(numbers)} versions by {len(incarnations)} trainer incarnations ({skipped} of "
          f"{2 * len(common)} superseded before a replica swapped them in); promotion → "
          f"served by both replicas: median {np.nanmedian(delays) * 1000:.0f} ms, max "
          f"{np.nanmax(delays) * 1000:.0f} ms; moved partitions {sorted(moved)} at step "
          f"{moved_at}, error ratio after/before vs the others ×{ratio:.2f}")


def test_a_run_longer_than_the_stall_bound_keeps_the_trainer_alive(
        kafka_config: Config) -> None:
    """The trainer runs the outer loop in its own loop's thread: a run on the CPU (a
    wide model, many tasks) can outlast ``metrics.stall_after_s``. The heartbeat goes on
    between meta-steps, so ``/healthz`` (the liveness probe) does not fail a trainer
    that is working, and the lease is polled meanwhile."""
    config = small(kafka_config).replace("metrics", stall_after_s=1.0).replace(
        "meta", steps=8, every_s=3600.0, every_observations=1)
    ensure_topics(config.kafka, PARTITIONS, extra=role_topics(config.meta, PARTITIONS))
    trainer = Trainer(config)
    buffer = trainer.outer.buffer
    values = torch.tensor(random_walks(buffer.length, 64, seed=3), dtype=torch.float32)
    for t in range(len(values)):  # 64 entities' histories, as the replicas' samples give
        buffer.observe(torch.arange(64), values[t], torch.full((64,), t == 0))
    step = trainer.outer.learner.step

    def slow(*args: torch.Tensor) -> float:  # each meta-step as long as a wide model's
        time.sleep(0.3)
        return step(*args)

    trainer.outer.learner.step = slow  # type: ignore[method-assign]
    runner = threading.Thread(target=trainer.run, daemon=True)
    runner.start()
    probes: list[tuple[bool, str]] = []
    try:
        wait_for(lambda: trainer.leading, timeout_s=60, what="the trainer taking the lease")
        deadline = time.monotonic() + 90
        while not trainer.outer.results and time.monotonic() < deadline:
            probes.append(trainer.health.alive())
            time.sleep(0.05)
    finally:
        trainer.stop()
        runner.join(30)
    assert trainer.outer.results, "no outer-loop run"
    assert trainer.outer.results[0].seconds > 2 * config.metrics.stall_after_s
    assert all(alive for alive, _ in probes), next(why for alive, why in probes if not alive)
    assert trainer.leading  # the lease stayed with it through the run
