"""What the reliability tests prove about a stream the daemon worked through:
every observation has a forecast (0 lost), and every entity's final state equals an
uninterrupted run of the same stream (0 applied twice, 0 skipped)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import orjson
import torch
from support import STEP
from test_daemon_kafka import committed_total, read_to_end, start_daemon, wait_for

from streammeta.config import Config
from streammeta.io.codec import encode_observation
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import CheckpointStore

PARTITIONS = 4


def random_walks(steps: int, entities: int, seed: int) -> np.ndarray:
    """(steps, entities) values: one random walk per entity ``e{i}``, hourly."""
    rng = np.random.default_rng(seed)
    return 20 + rng.normal(0, 1, (steps, entities)).cumsum(axis=0)


def encode_steps(values: np.ndarray, steps: range) -> list[tuple[bytes | None, bytes]]:
    return [encode_observation(f"e{e}", t * STEP, float(values[t, e]))
            for t in steps for e in range(values.shape[1])]


def assert_every_observation_forecast(config: Config, values: np.ndarray) -> int:
    """Returns how many forecasts were published more than once (the daemons have
    stopped: replays publish duplicates, so the whole topic is read)."""
    steps, entities = values.shape
    total = steps * entities
    forecasts = read_to_end(config, config.kafka.forecast_topic)
    delivered = {(r.key, orjson.loads(r.value)["origin"]) for r in forecasts}
    assert delivered == {(f"e{e}".encode(), t * STEP) for t in range(steps)
                         for e in range(entities)}  # 0 lost
    return len(forecasts) - total


def finish_stream(config: Config, path: Path, total: int, timeout_s: float = 300) -> None:
    """Start the daemon, wait until ``total`` records are committed, SIGTERM it: exit 0."""
    daemon = start_daemon(config, path)
    try:
        wait_for(lambda: committed_total(config) >= total, timeout_s=timeout_s,
                 what="every record committed")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        daemon.kill()


def assert_state_equals_an_uninterrupted_run(config: Config, values: np.ndarray,
                                             stamps: np.ndarray | None = None) -> None:
    """Compares the newest checkpoint of every partition with a fresh engine that
    processed the whole stream once; ``stamps`` (steps,): each step's time in the
    engine's units (default hourly ms: ``t * STEP``)."""
    steps, entities = values.shape
    stamps = np.arange(steps, dtype=np.int64) * STEP if stamps is None else stamps
    reference = Engine(config)
    names = [f"e{e}" for e in range(entities)]
    for t in range(steps):
        reference.process(names, np.full(entities, stamps[t], dtype=np.int64), values[t])
    restored = Engine(config)
    store = CheckpointStore(config.checkpoint.dir, member="probe",
                            options=config.checkpoint.options())
    for p in range(PARTITIONS):
        found = store.latest_for(p)
        assert found is not None, f"no checkpoint of partition {p}"
        restored.restore_partition(p, found[1]["partitions"][p])
    assert len(restored.arena) == entities
    for name, slot in reference.arena.index.items():
        other = restored.arena.index[name]
        assert int(restored.arena.count[other]) == steps, name  # 0 applied twice, 0 skipped
        torch.testing.assert_close(restored.arena.ring[other], reference.arena.ring[slot])
        torch.testing.assert_close(restored.arena.phi[other], reference.arena.phi[slot],
                                   rtol=1e-3, atol=1e-4)
