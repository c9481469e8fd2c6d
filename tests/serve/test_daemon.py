from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import torch
from support import STEP, good_records, run_until_drained

from streammeta.config import CheckpointConfig, Config
from streammeta.errors import BrokerError
from streammeta.io.codec import Reason, Record, encode_observation
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore, Written
from streammeta.serve.daemon import Daemon
from streammeta.serve.metrics import Metrics

TOPIC = "obs"


@pytest.fixture
def cfg(small: Config) -> Config:
    return small


BAD = [
    (b"not json", Reason.NOT_JSON),
    (b"[1, 2]", Reason.NOT_OBJECT),
    (b'{"entity": "x", "ts": 0}', Reason.MISSING_FIELD),
    (b'{"entity": "x", "ts": 0, "value": "1.5"}', Reason.WRONG_TYPE),
    (b'{"entity": "x", "ts": 0, "value": 1e400}', Reason.NON_FINITE),
    (b'{"entity": "", "ts": 0, "value": 1}', Reason.ENTITY_EMPTY),
    (b'{"entity": "' + b"x" * 300 + b'", "ts": 0, "value": 1}', Reason.ENTITY_TOO_LONG),
    (b'{"entity": "x", "ts": "yesterday", "value": 1}', Reason.BAD_TIMESTAMP),
    (b'{"entity": "x", "ts": 0, "value": 1, "pad": "' + b"p" * 5000 + b'"}', Reason.OVERSIZE),
]


def test_good_records_are_forecast_bad_ones_dead_lettered_and_offsets_committed(
    cfg: Config,
) -> None:
    records = good_records(entities=10, steps=30)
    n_good = len(records)
    offset = records[-1].offset + 1
    mixed: list[Record] = []
    for i, record in enumerate(records):
        mixed.append(record)
        if i % 7 == 0:  # hostile records between good ones, on partition 0
            raw, _ = BAD[(i // 7) % len(BAD)]
            mixed.append(Record(TOPIC, 0, 10_000 + i, None, raw))
    # A late and a duplicate record of an entity that exists.
    _, late = encode_observation("e0", 5 * STEP, 1.0)
    _, dup = encode_observation("e0", 29 * STEP, 1.0)
    mixed.append(Record(TOPIC, 1, offset, b"e0", late))
    mixed.append(Record(TOPIC, 1, offset + 1, b"e0", dup))
    mixed.append(Record(TOPIC, 0, 99_999, None, b'{"entity": "x", "ts": 0, "value": NaN}'))
    n_bad = len(mixed) - n_good
    source, sink, metrics = MemorySource(mixed, batch_size=97), MemorySink(), Metrics()
    daemon = Daemon(cfg, source, sink, metrics)
    run_until_drained(daemon, source)

    assert len(sink.forecasts) == n_good
    assert len(sink.dead_letters) == n_bad
    keys = [key for key, _ in sink.forecasts]
    assert sorted(set(keys)) == sorted(f"e{e}".encode() for e in range(10))
    first = orjson.loads(sink.forecasts[0][1])
    assert first["entity"] == "e0" and first["origin"] == 0 and len(first["point"]) == 6
    assert first["ts"][0] == STEP and first["warm"] is False
    reasons = {letter.reason for letter in sink.dead_letters}
    assert reasons == {reason for _, reason in BAD} | {Reason.DUPLICATE, Reason.LATE}
    for letter in sink.dead_letters:  # original bytes and coordinates kept
        assert letter.record in mixed
    # Offsets: everything consumed is committed, per partition.
    assert source.committed[(TOPIC, 0)] == 100_000
    assert source.committed[(TOPIC, 1)] == offset + 2
    # Metrics agree with what was sent.
    reg = metrics.registry
    assert reg.get_sample_value("streammeta_records_consumed_total") == len(mixed)
    assert reg.get_sample_value("streammeta_observations_processed_total") == n_good
    assert reg.get_sample_value("streammeta_forecasts_published_total") == n_good
    assert reg.get_sample_value("streammeta_dead_letters_total", {"reason": "duplicate"}) == 1
    total_dead = sum(reg.get_sample_value("streammeta_dead_letters_total", {"reason": r.value})
                     or 0 for r in Reason)
    assert total_dead == n_bad
    assert reg.get_sample_value("streammeta_entities_resident") == 10


class FlakySink(MemorySink):
    """Fails the first ``failures`` flushes, as a broker outage would."""

    def __init__(self, failures: int, source: MemorySource) -> None:
        super().__init__()
        self.failures = failures
        self.source = source
        self.committed_at_failure: list[dict[tuple[str, int], int]] = []

    def flush(self, timeout_s: float, waiting: Callable[[], object] | None = None) -> None:
        super().flush(timeout_s, waiting)
        if self.failures > 0:
            self.failures -= 1
            self.committed_at_failure.append(dict(self.source.committed))
            raise BrokerError("broker unavailable")


def test_offsets_are_not_committed_before_forecasts_are_acknowledged(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streammeta.serve.delivery._RETRY_BACKOFF_S", (0.01,))
    records = good_records(entities=4, steps=5, partitions=1)
    source = MemorySource(records, batch_size=len(records))
    sink, metrics = FlakySink(failures=2, source=source), Metrics()
    daemon = Daemon(cfg, source, sink, metrics)
    run_until_drained(daemon, source)
    assert sink.committed_at_failure == [{}, {}]  # nothing committed while failing
    assert source.committed == {(TOPIC, 0): len(records)}
    # Resent after each failure: at least once, duplicates carry the same key and origin.
    assert len(sink.forecasts) == 3 * len(records)
    assert len(set(sink.forecasts)) == len(records)
    assert metrics.registry.get_sample_value(
        "streammeta_kafka_errors_total", {"operation": "produce"}) == 2


class RefusingSink(MemorySink):
    """Refuses the first hand-over of forecasts (the client's queue refused them), and
    notes on which threads forecasts were handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1
        self.threads: list[int] = []

    def send_forecasts(self, messages: list[tuple[bytes, bytes]],
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        self.threads.append(threading.get_ident())
        if self.refusals:
            self.refusals -= 1
            raise BrokerError("queue refused")
        super().send_forecasts(messages, headers)


def test_forecasts_are_handed_over_off_the_loop_and_a_refusal_is_retried(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Formatting and producing run on the delivery's thread; a send that fails there
    is retried by the loop before the batch's offsets are committed (3 batches)."""
    monkeypatch.setattr("streammeta.serve.delivery._RETRY_BACKOFF_S", (0.01,))
    records = good_records(entities=4, steps=6, partitions=2)
    source, sink, metrics = MemorySource(records, batch_size=8), RefusingSink(), Metrics()
    daemon = Daemon(cfg, source, sink, metrics)
    loop: set[int] = set()
    original_poll = source.poll

    def poll(timeout_s: float) -> list[Record]:
        loop.add(threading.get_ident())
        return original_poll(timeout_s)

    source.poll = poll  # type: ignore[method-assign]
    run_until_drained(daemon, source)
    # Each batch handed over on the delivery's thread; only the retry on the loop's.
    assert len(loop) == 1 and sink.threads.count(loop.pop()) == 1 and len(sink.threads) == 4
    assert sorted(k for k, _ in sink.forecasts) == sorted(r.key for r in records)
    assert source.committed == {(TOPIC, 0): 12, (TOPIC, 1): 12}
    assert metrics.registry.get_sample_value(
        "streammeta_kafka_errors_total", {"operation": "produce"}) == 1


def test_offered_parameters_are_served_from_the_next_batch(cfg: Config) -> None:
    records = good_records(entities=2, steps=20, partitions=1)
    source, sink = MemorySource(records, batch_size=10), MemorySink()
    daemon = Daemon(cfg, source, sink)
    original_poll = source.poll
    polls = [0]

    def poll(timeout_s: float) -> list[Record]:
        polls[0] += 1
        if polls[0] == 2:
            daemon.offer_params(dict(daemon.engine.serving()[0]), version=7)
        if source.exhausted():
            daemon.stop()
        return original_poll(timeout_s)

    source.poll = poll  # type: ignore[method-assign]
    daemon.run()
    versions = [orjson.loads(value)["model_version"] for _, value in sink.forecasts]
    # Offered during the second poll: that batch is already in hand, the third swaps.
    assert versions[:20] == [0] * 20
    assert set(versions[20:]) == {7}
    assert daemon.metrics.registry.get_sample_value("streammeta_model_version") == 7


def test_health_reflects_the_loop(cfg: Config) -> None:
    source, sink = MemorySource([], batch_size=10), MemorySink()
    daemon = Daemon(cfg, source, sink)
    assert daemon.health.alive() == (False, "loop not started")
    polled = threading.Event()
    original_poll = source.poll

    def poll(timeout_s: float) -> list[Record]:
        polled.set()
        return original_poll(timeout_s)

    source.poll = poll  # type: ignore[method-assign]
    thread = threading.Thread(target=daemon.run)
    thread.start()
    assert polled.wait(10)
    while not daemon.health.alive()[0]:
        polled.wait(0.01)
    assert daemon.health.ready()[0]
    daemon.stop()
    thread.join(10)
    assert not daemon.health.ready()[0]


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def test_restart_from_checkpoint_applies_every_observation_exactly_once(
    cfg: Config, tmp_path: Path
) -> None:
    records = good_records(entities=8, steps=40, partitions=2)
    reference = Daemon(cfg, src := MemorySource(records, batch_size=50), MemorySink())
    run_until_drained(reference, src)

    def daemon_with_checkpoints(source: MemorySource) -> Daemon:
        engine = Engine(cfg)
        store = CheckpointStore(tmp_path, member="a", keep=2)
        every = CheckpointConfig(every_s=3600, every_records=100)
        checkpointer = Checkpointer(store, engine, every)
        return Daemon(cfg, source, MemorySink(), engine=engine, checkpointer=checkpointer)

    crashing = MemorySource(records, batch_size=50)
    first = daemon_with_checkpoints(crashing)
    polls = [0]
    original_poll = crashing.poll

    def poll(timeout_s: float) -> list[Record]:
        polls[0] += 1
        # Batches of 50, each acknowledged when the next is sent: the first one before the
        # second was processed, and checkpointed (its partitions had no file yet); the
        # periodic checkpoint came due at 150 acknowledged and was taken once the fourth
        # batch was (200); at the sixth poll the fifth batch is processed but in flight.
        if polls[0] == 6:
            first._shutdown = lambda: None  # type: ignore[method-assign]
            raise Crash
        return original_poll(timeout_s)

    crashing.poll = poll  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.run()
    assert first.checkpointer is not None
    first.checkpointer.wait()  # the checkpoint after 200 records was on disk before the crash
    assert first.observations == 200

    source = MemorySource(records, batch_size=50)
    second = daemon_with_checkpoints(source)
    run_until_drained(second, source)
    assert second.observations == len(records) - 200  # resumed at the checkpoint's offsets
    a, b = reference.engine.arena, second.engine.arena
    assert sorted(a.index) == sorted(b.index)
    for name, slot in a.index.items():
        other = b.index[name]
        assert int(a.count[slot]) == int(b.count[other]) == 40
        torch.testing.assert_close(a.ring[slot], b.ring[other])
        torch.testing.assert_close(a.phi[slot], b.phi[other], rtol=1e-4, atol=1e-5)


def test_periodic_checkpoints_are_written_beside_the_loop(cfg: Config, tmp_path: Path) -> None:
    records = good_records(entities=8, steps=40, partitions=2)
    gate = threading.Event()

    class SlowDisk(CheckpointStore):
        saves = 0

        def save(self, payload: dict) -> Written:
            self.saves += 1
            if self.saves > 1:  # the first: the first batch's partitions had no file yet
                assert gate.wait(30)
            return super().save(payload)

    engine = Engine(cfg)
    store = SlowDisk(tmp_path, member="a", keep=5)
    checkpointer = Checkpointer(store, engine, CheckpointConfig(every_s=3600, every_records=50))
    source = MemorySource(records, batch_size=50)
    metrics = Metrics()
    daemon = Daemon(cfg, source, MemorySink(), metrics, engine=engine, checkpointer=checkpointer)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while daemon.observations < len(records) and time.monotonic() < deadline:
            time.sleep(0.01)
        # Every record was processed while the first periodic write was stuck.
        assert daemon.observations == len(records) and checkpointer.writing
        assert metrics.registry.get_sample_value(
            "streammeta_checkpoint_snapshot_seconds_count") == 1
    finally:
        gate.set()
        daemon.stop()
        thread.join(30)
    assert not thread.is_alive()
    found = store.latest_for(0)
    assert found is not None and found[1]["partitions"][0]["offset"] == records[-1].offset + 1
    assert len(list(store.newest())) == 3  # after the first batch, periodic, at shutdown
    assert metrics.registry.get_sample_value("streammeta_checkpoint_duration_seconds_count") == 3


def test_a_partition_is_checkpointed_before_its_first_offsets_are_committed(
    cfg: Config, tmp_path: Path
) -> None:
    """A replica killed after committing a partition's first records and before any
    periodic checkpoint: its restart resumes at the committed offsets, and must find
    the state of the records before them (it restarted those entities cold before)."""
    records = good_records(entities=8, steps=40, partitions=2)

    def daemon_with_checkpoints(source: MemorySource) -> Daemon:
        engine = Engine(cfg)
        rarely = CheckpointConfig(every_s=3600, every_records=10**6)
        checkpointer = Checkpointer(CheckpointStore(tmp_path, member="a"), engine, rarely)
        return Daemon(cfg, source, MemorySink(), engine=engine, checkpointer=checkpointer)

    crashing = MemorySource(records, batch_size=50)
    first = daemon_with_checkpoints(crashing)
    original_poll = crashing.poll
    polls = [0]

    def poll(timeout_s: float) -> list[Record]:
        polls[0] += 1
        if polls[0] == 4:  # 100 records committed, 50 of each partition (a third in flight)
            first._shutdown = lambda: None  # type: ignore[method-assign]
            raise Crash
        return original_poll(timeout_s)

    crashing.poll = poll  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.run()
    assert first.observations == 100
    # The broker serves the restart from the committed offsets.
    source = MemorySource([r for r in records if r.offset >= 50], batch_size=50)
    second = daemon_with_checkpoints(source)
    run_until_drained(second, source)
    arena = second.engine.arena
    assert len(arena) == 8
    assert {int(arena.count[slot]) for slot in arena.index.values()} == {40}


def test_restored_offsets_are_committed_though_no_record_follows(
        cfg: Config, tmp_path: Path) -> None:
    """A member whose commit failed when it lost its partitions (a frozen broker) gets
    them back with their checkpoint at the end of the input: nothing is polled, so no
    batch commits, and the group's offsets must still reach the checkpoint's."""
    records = good_records(entities=4, steps=10, partitions=2)

    def daemon_with_checkpoints(source: MemorySource) -> Daemon:
        engine = Engine(cfg)
        checkpointer = Checkpointer(CheckpointStore(tmp_path, member="a", keep=2), engine,
                                    CheckpointConfig(every_s=3600, every_records=10**6))
        return Daemon(cfg, source, MemorySink(), engine=engine, checkpointer=checkpointer)

    first = daemon_with_checkpoints(src := MemorySource(records, batch_size=7))
    run_until_drained(first, src)  # checkpointed at shutdown, at the end
    ends = dict(src.committed)
    again = MemorySource(records, batch_size=7)  # the group's commits were lost
    second = daemon_with_checkpoints(again)
    run_until_drained(second, again)
    assert second.observations == 0
    assert again.committed == ends


def test_what_exists_when_the_loop_starts_is_out_of_the_collectors_full_passes(
        cfg: Config) -> None:
    import gc

    gc.unfreeze()
    source, sink = MemorySource(good_records(entities=3, steps=4), batch_size=5), MemorySink()
    daemon = Daemon(cfg, source, sink)
    try:
        run_until_drained(daemon, source)
        # The engine (θ, its state) was made before the loop started: frozen with it,
        # so a full collection no longer walks it (a ~75 ms pause on a 10,000-entity
        # daemon, measured).
        assert gc.get_freeze_count() > 0
        assert len(sink.forecasts) == 12
    finally:
        gc.unfreeze()


def test_a_run_ends_with_a_progress_report_of_where_it_ended(cfg: Config) -> None:
    """However short the run (no 10-second report falls inside it), the last report
    holds every observation and the version the forecasts ended on."""
    records = good_records(entities=4, steps=12)
    source = MemorySource(records, batch_size=10)
    reports = []
    daemon = Daemon(cfg, source, MemorySink(), on_progress=reports.append,
                    progress_every_s=3600.0)
    params, _ = daemon.engine.serving()
    daemon.offer_params(params, 7)  # a promotion, swapped in before the first batch
    run_until_drained(daemon, source)
    assert len(reports) == 1
    assert reports[-1].observations == len(records) and reports[-1].model_version == 7
