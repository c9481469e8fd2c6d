from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from streammeta.io import datasets
from streammeta.io import replay as replay_module
from streammeta.io.codec import Decoder, Record
from streammeta.io.replay import observations_from_file, replay


class FakeClock:
    """Stands in for the ``time`` module of streammeta.io.replay: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(replay_module, "time", fake)
    return fake


def stream(n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    return [f"e{i % 3}" for i in range(n)], np.arange(n, dtype=np.int64) * 1000, np.arange(
        n, dtype=np.float64) / 4


def test_sends_every_observation_in_order_as_the_decoder_reads_it() -> None:
    entities, ts, values = stream(10)
    sent: list[tuple[bytes, bytes]] = []
    assert replay(entities, ts, values, lambda k, v: sent.append((k, v))) == 10
    records = [Record("in", 0, i, k, v) for i, (k, v) in enumerate(sent)]
    decoded, dead = Decoder().decode(records)
    assert dead == []
    assert decoded.entities == entities
    assert decoded.ts == ts.tolist() and decoded.values == values.tolist()


def test_limit_caps_the_count() -> None:
    entities, ts, values = stream(10)
    assert replay(entities, ts, values, lambda k, v: None, limit=7) == 7
    assert replay(entities, ts, values, lambda k, v: None, limit=0) == 0
    assert replay(entities, ts, values, lambda k, v: None, limit=99) == 10


def test_rejects_columns_of_different_lengths_and_negative_rates() -> None:
    entities, ts, values = stream(3)
    with pytest.raises(ValueError, match="differ in length"):
        replay(entities, ts[:2], values, lambda k, v: None)
    with pytest.raises(ValueError, match="rate"):
        replay(entities, ts, values, lambda k, v: None, rate=-1)


def test_pacing_keeps_to_the_rate_in_small_bursts(clock: FakeClock) -> None:
    rate, n = 1000.0, 500
    burst = int(rate * replay_module.BURST_S)
    times: list[float] = []
    assert replay(*stream(n), lambda k, v: times.append(clock.now), rate=rate) == n
    for i, at in enumerate(times):  # never more than one burst ahead of the schedule
        assert i + 1 <= rate * at + burst
    # Not slower than the schedule either (the fake sender takes no time).
    assert (n - burst) / rate <= clock.now <= n / rate
    assert clock.sleeps < n  # one sleep per burst, not per record


def test_a_stalled_sender_is_not_followed_by_a_flood(clock: FakeClock) -> None:
    rate = 1000.0
    burst = int(rate * replay_module.BURST_S)
    times: list[float] = []

    def send(key: bytes, value: bytes) -> None:
        if len(times) == 100:
            clock.now += 5.0  # the broker blocked for five seconds
        times.append(clock.now)

    replay(*stream(2000), send, rate=rate)
    after = np.array(times[101:])
    # Within any instant after the stall, at most about a burst goes out.
    assert np.unique(after, return_counts=True)[1].max() <= 2 * burst


def test_unpaced_when_rate_is_none_or_zero(clock: FakeClock) -> None:
    for rate in (None, 0.0):
        assert replay(*stream(3000), lambda k, v: None, rate=rate) == 3000
    assert clock.sleeps == 0


def test_stop_event_set_while_sending_ends_the_replay_early() -> None:
    stop = threading.Event()
    count = [0]

    def send(key: bytes, value: bytes) -> None:
        count[0] += 1
        if count[0] == 250:
            stop.set()

    sent = replay(*stream(10_000), send, rate=None, stop=stop)
    assert sent == count[0] and 250 <= sent < 10_000
    assert replay(*stream(10), lambda k, v: None, stop=stop) == 0  # already set


def test_stop_event_interrupts_the_wait_between_bursts() -> None:
    stop, first_sent = threading.Event(), threading.Event()
    result: list[int] = []

    def run() -> None:  # one observation every ten seconds
        result.append(replay(*stream(5), lambda k, v: first_sent.set(), rate=0.1, stop=stop))

    worker = threading.Thread(target=run)
    worker.start()
    assert first_sent.wait(10)
    stop.set()
    worker.join(timeout=5)  # far less than the ten seconds it would otherwise wait
    assert not worker.is_alive() and result == [1]


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    replay(*stream(3), lambda k, v: None, progress=True)
    assert "3/3" in capsys.readouterr().err
    replay(*stream(3), lambda k, v: None)
    assert capsys.readouterr().err == ""


def test_observations_from_file_is_the_interleaved_stream(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("entity,ts,value\nb,0,1\na,0,2\nb,3600000,3\na,3600000,4\n")
    entities, ts, values = observations_from_file(path, "long", arrival_gap_steps=1)
    assert entities == ["b", "b", "a", "a"]
    assert ts.tolist() == [0, 3_600_000, 3_600_000, 7_200_000]
    assert values.tolist() == [1.0, 3.0, 2.0, 4.0]


def test_the_bundled_subset_replays_as_one_time_ordered_stream() -> None:
    entities, ts, values = observations_from_file(datasets.bundled_m4(), "m4")
    series = datasets.load(datasets.bundled_m4(), "m4")
    assert len(entities) == sum(len(s) for s in series)
    assert entities[:2] == ["H1", "H8"] and np.all(np.diff(ts) >= 0)
    sent: list[bytes] = []
    assert replay(entities, ts, values, lambda k, v: sent.append(k), limit=120) == 120
    assert sent == [e.encode() for e in entities[:120]]
