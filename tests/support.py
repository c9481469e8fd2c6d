"""Helpers shared by tests of several packages (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.io.codec import Record, encode_observation
from streammeta.io.streams import MemorySource
from streammeta.meta.layout import TaskLayout
from streammeta.online.engine import Engine
from streammeta.serve.daemon import Daemon

STEP = 3_600_000  # one hour in ms: the step of the tests' series


def checkpoint_payload(directory: Path, engine: Engine, offset: int) -> dict[str, Any]:
    """A checkpoint of ``engine`` with partitions 0 and 1 at ``offset`` (not saved)."""
    from streammeta.config import CheckpointConfig
    from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

    rarely = CheckpointConfig(every_s=3600, every_records=10**9)
    saver = Checkpointer(CheckpointStore(directory, member="a"), engine, rarely)
    saver.advance({0: offset, 1: offset}, 2 * offset)
    return saver.snapshot()


def restore_checkpoint(directory: Path, original: Engine, copy: Engine, names: list[str],
                       offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Partitions 0 and 1 of the checkpoint in ``directory`` restored into ``copy``
    (both at ``offset``) → the slots of ``names`` in ``copy`` and in ``original``."""
    from streammeta.config import CheckpointConfig
    from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

    rarely = CheckpointConfig(every_s=3600, every_records=10**9)
    restorer = Checkpointer(CheckpointStore(directory, member="b"), copy, rarely)
    assert restorer.restore_partitions([0, 1]) == {0: offset, 1: offset}
    return (torch.tensor([copy.arena.index[n] for n in names]),
            torch.tensor([original.arena.index[n] for n in names]))


def feed_seasonal(engine: Engine, names: list[str], steps: range, season: int) -> None:
    """Noisy sine waves of period ``season`` for ``names`` at ``steps``, two partitions;
    the noise seeded by the first step, so a run can be repeated."""
    rng = np.random.default_rng(steps.start)
    parts = np.array([i % 2 for i in range(len(names))])
    for t in steps:
        wave = np.sin(2 * np.pi * t / season)
        engine.process(names, np.full(len(names), t * STEP, dtype=np.int64),
                       10 + 2 * wave + rng.normal(0, 0.3, len(names)), parts)


def small_config() -> Config:
    """The defaults (no config file, no environment) for a small engine: window 12,
    season 4, horizon 6, hidden 16."""
    return config_mod.load(None, env={}).replace("model", window=12, hidden=16).replace(
        "series", season=4, horizon=6)


def meta_config() -> Config:
    """A day's season, half a day ahead, and meta-steps small enough for a test."""
    return config_mod.load(None, env={}).replace("model", window=24, hidden=32).replace(
        "series", horizon=12, season=24).replace(
        "meta", steps=30, tasks_per_step=64, cpu_share=1.0, meta_lr=0.003, pretrain_lr=0.003)


def good_records(entities: int, steps: int, partitions: int = 2,
                 topic: str = "obs") -> list[Record]:
    """Observations of ``entities`` entities for ``steps`` steps, entity e in partition
    e % partitions, offsets counting per partition."""
    records, offsets = [], [0] * partitions
    for t in range(steps):
        for e in range(entities):
            p = e % partitions
            key, value = encode_observation(f"e{e}", t * STEP, float(e + t % 4))
            records.append(Record(topic, p, offsets[p], key, value))
            offsets[p] += 1
    return records


def related_family(n: int, length: int, seed: int) -> np.ndarray:
    """Seasonal series sharing a shape, each with its own level, amplitude and trend."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    level = rng.uniform(5, 50, n)[:, None]
    amp = rng.uniform(1, 3, n)[:, None]
    slope = rng.uniform(-0.05, 0.05, n)[:, None]
    phase = rng.uniform(0, 24, n)[:, None]
    noise = rng.normal(0, 0.2, (n, length))
    return level + slope * t + amp * np.sin(2 * math.pi * (t + phase) / 24) + noise


def layout_of(config: Config) -> TaskLayout:
    m = config.meta
    return TaskLayout(config.model.window, config.series.horizon, m.support_windows,
                      m.query_windows, m.window_stride)


def histories(config: Config, n: int, seed: int = 0) -> torch.Tensor:
    return torch.tensor(related_family(n, layout_of(config).length, seed), dtype=torch.float32)


def before_rings(field: torch.Tensor, count: torch.Tensor, depths: tuple[int, ...],
                 horizon: int) -> torch.Tensor:
    """A pending field (B, P, ...) kept in one ring per scored horizon (``online.cells``)
    in the layout before the rings, (B, H, S, ...) by target index mod H; NaN where no
    target is pending: the inverse of ``cells.flatten``, as the older versions kept it."""
    B = len(field)
    out = field.new_full((B, horizon, len(depths), *field.shape[2:]), math.nan)
    rows, first = torch.arange(B)[:, None], 0
    for s, depth in enumerate(depths):
        cell = torch.arange(depth)[None, :]
        target = count[:, None] + (cell - count[:, None]) % depth
        out[rows, target % horizon, s] = field[:, first:first + depth]
        first += depth
    return out


def rows_before_rings(rows: dict[str, object], depths: tuple[int, ...],
                      horizon: int) -> dict[str, object]:
    """Exported rows with their pending fields as :func:`before_rings` lays them out."""
    count = rows["count"]
    assert isinstance(count, torch.Tensor)
    out = dict(rows)
    for field in ("pending", "pending_experts", "pending_served"):
        t = rows[field]
        assert isinstance(t, torch.Tensor)
        out[field] = before_rings(t, count, depths, horizon)
    return out


def run_until_drained(daemon: Daemon, source: MemorySource) -> None:
    """Run the loop in a thread and stop it once the source is empty and processed
    (its last batch's output acknowledged)."""
    thread = threading.Thread(target=daemon.run)
    original_poll = source.poll

    def poll(timeout_s: float) -> list[Record]:
        if source.exhausted() and not daemon.delivery.in_flight:
            daemon.stop()
        return original_poll(timeout_s)

    source.poll = poll  # type: ignore[method-assign]
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()


# Credentials of the S3-compatible test server (moto accepts any); the daemon and
# s3fs read them from the environment like real ones.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A standalone S3-compatible server (moto's server mode) in a subprocess, on a
    free local port; → its endpoint URL. The tests create their own buckets."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **S3_ENV})
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def s3_bucket(endpoint: str, name: str) -> None:
    """Create bucket ``name`` on the test server (no error if it exists)."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=S3_ENV["AWS_ACCESS_KEY_ID"],
                           secret=S3_ENV["AWS_SECRET_ACCESS_KEY"], skip_instance_cache=True)
    with contextlib.suppress(FileExistsError):
        fs.mkdir(name)
