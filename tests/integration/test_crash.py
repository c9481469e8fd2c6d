"""SIGKILL the daemon repeatedly while it works through a stream on a real broker.

Proves: no observation lost (every one has a forecast in the output topic), none
applied twice (the final state of every entity equals an uninterrupted run of the
same stream), and reports how long each restart took to serve again.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from streamcheck import (
    assert_every_observation_forecast,
    assert_state_equals_an_uninterrupted_run,
    encode_steps,
    finish_stream,
    random_walks,
)
from test_daemon_kafka import committed_total, produce, start_daemon, wait_for

from streammeta.config import Config

pytestmark = pytest.mark.integration
# 60 × 500 = 30k records in batches of 500, a checkpoint every 4 batches: the kills
# land between checkpoints with batches in flight, as they did in a stream three
# times as long (STREAMMETA_CRASH_STEPS=200: 100k records).
ENTITIES = 500
STEPS = int(os.environ.get("STREAMMETA_CRASH_STEPS", "60"))
TAIL = STEPS // 6  # steps written after the last kill: the last start has work to do
KILLS = 5


def test_sigkill_loses_nothing_and_applies_nothing_twice(kafka_config: Config,
                                                         tmp_path: Path) -> None:
    config = kafka_config.replace("checkpoint", every_records=2000, every_s=3600).replace(
        "meta", enabled=False,  # outer-loop timing would make versions differ between runs
    ).replace("kafka", max_poll_records=500)  # smaller batches: kills land mid-stream
    values = random_walks(STEPS, ENTITIES, seed=7)
    head = encode_steps(values, range(STEPS - TAIL))
    produce(config, head)
    total = STEPS * ENTITIES
    chooser = random.Random(11)
    kill_points = sorted(chooser.sample(range(len(head) // 10, len(head) * 9 // 10), KILLS))
    recoveries = []
    path = tmp_path / "config.toml"
    # Progress is read from the group's committed offsets: cheap, and a commit
    # happens only after a batch's forecasts were acknowledged.
    for point in kill_points:
        daemon = start_daemon(config, path)
        started = time.monotonic()
        before = committed_total(config)
        if before < len(head):
            wait_for(lambda b=before: committed_total(config) > b, timeout_s=120,
                     what="the first commit after a restart")
            recoveries.append(time.monotonic() - started)
        wait_for(lambda p=point: committed_total(config) >= p, timeout_s=300,
                 what=f"{point} records committed")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
    # The rest of the stream after the last kill: every partition gets records past
    # what is committed, so the last start must catch up (replay what its restored
    # checkpoints miss, then the new records) before the stream counts as done.
    produce(config, encode_steps(values, range(STEPS - TAIL, STEPS)))
    finish_stream(config, path, total)
    duplicates = assert_every_observation_forecast(config, values)
    assert_state_equals_an_uninterrupted_run(config, values)
    print(f"\n{KILLS} kills over {total} records; duplicates published: "
          f"{duplicates}; time to the first commit after a restart: "
          + ", ".join(f"{s:.1f} s" for s in recoveries))
