"""A checkpoint whose offset retention has deleted: counted, logged with both
offsets, and the partition continues from the earliest retained offset with its
entities' state kept (they see a gap) or dropped (``checkpoint.expired = "cold"``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support import run_until_drained
from test_daemon import good_records

from streammeta import config as config_mod
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore
from streammeta.serve.daemon import Daemon
from streammeta.serve.metrics import Metrics


@pytest.mark.parametrize("expired", ["keep", "cold"])
def test_a_checkpoint_older_than_retention_continues_from_the_earliest_offset(
    tmp_path: Path, expired: str, caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = config_mod.load(None, env={}).replace("meta", enabled=False).replace(
        "model", window=12, hidden=16).replace("series", season=4, horizon=6).replace(
        "checkpoint", expired=expired, dir=str(tmp_path))
    records = good_records(entities=8, steps=40, partitions=2)  # 160 records per partition

    def daemon(source: MemorySource, metrics: Metrics) -> Daemon:
        engine = Engine(cfg)
        checkpointer = Checkpointer(CheckpointStore(tmp_path, "a"), engine, cfg.checkpoint)
        return Daemon(cfg, source, MemorySink(), metrics, engine=engine,
                      checkpointer=checkpointer)

    first_part = [r for r in records if r.offset < 40]  # 10 steps, then a shutdown checkpoint
    run_until_drained(daemon(src := MemorySource(first_part, batch_size=50), Metrics()), src)
    # Later the daemon was down while retention deleted offsets below 100 (steps < 25).
    retained = [r for r in records if r.offset >= 100]
    metrics = Metrics()
    second = daemon(src := MemorySource(retained, batch_size=50), metrics)
    with caplog.at_level(logging.WARNING, logger="streammeta.serve.daemon"):
        run_until_drained(second, src)
    assert metrics.registry.get_sample_value("streammeta_checkpoint_expired_total") == 2
    assert "checkpoint offset 40 is below the earliest retained offset 100" in caplog.text
    assert second.observations == len(retained)  # every retained record, once
    arena = second.engine.arena
    counts = {int(arena.count[slot]) for slot in arena.index.values()}
    # Kept state holds the 10 steps before the deleted ones, which are a gap of 15
    # steps (interpolated: under series.max_gap_fill), then the 15 retained ones;
    # dropped state starts at the earliest retained record.
    assert counts == ({40} if expired == "keep" else {15})
    assert len(arena) == 8
