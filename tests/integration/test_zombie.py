"""A zombie replica on a real broker: frozen past its session timeout, then thawed.

Two ``streammeta run`` processes share a 4-partition input topic and one checkpoint
store. Replica A is frozen (SIGSTOP) while records keep arriving; the group's
session timeout expires, B takes A's partitions, restores A's newest checkpoint,
works on and checkpoints them. A is thawed (SIGCONT): it still holds their state
and tries to save it when it learns it lost them. Proves: the zombie publishes
nothing for the partitions it lost and a restore picks the new owner's state; the
partitions then move once more (A rejoins), and in the end every observation has a
forecast (0 lost) and every entity's state equals an uninterrupted run (0 applied
twice, 0 skipped).
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from streamcheck import (
    PARTITIONS,
    assert_every_observation_forecast,
    assert_state_equals_an_uninterrupted_run,
    random_walks,
)
from test_daemon_kafka import committed_total, wait_for
from test_replicas import ENTITIES, newest_of, owned, start_pair, stop

from streammeta.config import Config

pytestmark = pytest.mark.integration
STEPS = 80
_FENCED = re.compile(r"not publishing partitions \[([\d, ]*)\]")


def _held(payload: dict | None) -> dict[int, tuple[int, int]]:
    """partition -> (epoch, offset) of the state a checkpoint holds."""
    if payload is None:
        return {}
    return {p: (int(s["epoch"]), int(s["offset"])) for p, s in payload["partitions"].items()}


def _log_after(log: Path, size: int) -> str:
    with log.open("rb") as f:
        f.seek(size)
        return f.read().decode(errors="replace")


def test_a_thawed_zombie_cannot_publish_the_state_of_partitions_it_lost(
    kafka_config: Config, tmp_path: Path
) -> None:
    values = random_walks(STEPS, ENTITIES, seed=13)
    total = STEPS * ENTITIES
    pair = start_pair(kafka_config, tmp_path, values, pause_s=0.2)
    config, a, b, a_log, b_log = pair.config, pair.a, pair.b, pair.a_log, pair.b_log
    committed, producer, store = pair.committed, pair.producer, pair.store
    frozen = False
    try:
        producer.start()
        a_parts = owned(a_log)
        wait_for(lambda: committed_total(config) >= total // 4
                 and set(_held(newest_of(store, "replica-a"))) == a_parts,
                 timeout_s=120, what="a quarter of the stream committed, A checkpointed")
        a.send_signal(signal.SIGSTOP)
        frozen, frozen_at = True, time.monotonic()
        at_freeze = committed()
        zombie_held = _held(newest_of(store, "replica-a"))

        def b_took_over() -> bool:  # and published A's partitions in a newer epoch
            held = _held(newest_of(store, "replica-b"))
            return all(p in held and held[p][0] > zombie_held[p][0] for p in a_parts)
        wait_for(lambda: owned(b_log) == set(range(PARTITIONS)) and b_took_over()
                 and any(committed()[p] > at_freeze[p] for p in a_parts),
                 timeout_s=90, what="B owning, committing and checkpointing A's partitions")
        takeover_s = time.monotonic() - frozen_at
        owner_held = _held(newest_of(store, "replica-b"))
        a_size = a_log.stat().st_size
        a.send_signal(signal.SIGCONT)
        frozen = False
        # The zombie learns it lost its partitions (librdkafka: the lost callback) and
        # saves them on the way out: fenced. It rejoins, and partitions move again.
        wait_for(lambda: _FENCED.search(_log_after(a_log, a_size)) is not None
                 and "assigned partitions" in _log_after(a_log, a_size),
                 timeout_s=90, what="the thawed replica fenced, then assigned again")
        fenced = {int(p) for p in _FENCED.findall(_log_after(a_log, a_size))[0].split(",")}
        assert fenced == a_parts
        for p in a_parts:  # a restore now picks the new owner's state (or a later one)
            found = store.latest_for(p)
            assert found is not None
            epoch, offset = _held(found[1])[p]
            assert epoch >= owner_held[p][0] and offset >= owner_held[p][1], (p, found[0])
        wait_for(lambda: committed_total(config) >= total, timeout_s=180,
                 what="every record committed")
        producer.join(60)
        assert producer.error is None
        assert owned(a_log) and owned(a_log) | owned(b_log) == set(range(PARTITIONS))
        stop(a)
        stop(b)
    finally:
        if frozen:
            a.send_signal(signal.SIGCONT)
        pair.close()

    duplicates = assert_every_observation_forecast(config, values)
    assert_state_equals_an_uninterrupted_run(config, values)
    print(f"\nreplica A (partitions {sorted(a_parts)}) frozen; session timeout "
          f"{config.kafka.session_timeout_ms} ms; B committed and checkpointed them "
          f"{takeover_s:.1f} s after the freeze (epochs {zombie_held} → {owner_held}); "
          f"thawed A fenced from {sorted(fenced)}; duplicate forecasts {duplicates}")
