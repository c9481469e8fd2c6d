from __future__ import annotations

import dataclasses
import socket
import time

import torch

from streammeta import config as config_mod
from streammeta.io.edge import make_writer
from streammeta.meta.samples import SampleIntake, SampleSender, decode, encode
from streammeta.meta.tasks import TaskBuffer


class Collect:
    """Keeps what it is sent (an in-memory topic)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))

    def flush(self, timeout_s: float = 60.0) -> None:
        pass

    def close(self) -> None:
        pass


def delivered(sender: SampleSender, n: int) -> None:
    """Wait until the sender's thread has handed ``n`` samples in all to the writer."""
    deadline = time.monotonic() + 10
    while sender.sent < n:
        assert time.monotonic() < deadline, f"{sender.sent} of {n} samples sent"
        time.sleep(0.005)


def fill(buffer: TaskBuffer, entities: int, steps: int, start: int = 0) -> None:
    slots = torch.arange(entities)
    for t in range(start, start + steps):
        buffer.observe(slots, slots.float() * 100 + t, torch.full((entities,), t == 0))


def test_a_sample_record_roundtrips() -> None:
    count, anchor, values = decode(encode(40, torch.ones(3), torch.arange(5.0)), 3)
    assert count == 40
    torch.testing.assert_close(anchor, torch.ones(3))
    torch.testing.assert_close(values, torch.arange(5.0))


def test_the_trainer_samples_the_same_tasks_the_replica_holds() -> None:
    replica = TaskBuffer(capacity=8, length=20, max_slots=8, context_dim=3)
    fill(replica, entities=4, steps=12)  # young: each row still starts at its birth
    replica.set_anchor(torch.arange(4), torch.full((4, 3), 0.5))
    writer = Collect()
    sender = SampleSender(replica, writer, "r1", per_s=1000, min_values=10)
    sender._budget = 1000.0
    assert sender() == 4
    assert sender() == 0  # nothing changed since
    delivered(sender, 4)

    trainer = TaskBuffer(capacity=8, length=20, max_slots=32, context_dim=3)
    intake = SampleIntake(trainer, max_slots=32, context_dim=3)
    assert intake.take(writer.sent) == 4
    assert trainer.observed == 48
    rows = intake_rows(intake, trainer, [f"r1/{r}".encode() for r in range(4)])
    torch.testing.assert_close(trainer.histories(rows, 12, oldest=True),
                               replica.histories(torch.arange(4), 12, oldest=True))
    assert sorted(trainer.born_rows(10).tolist()) == sorted(rows.tolist())
    torch.testing.assert_close(trainer.anchors(rows), torch.full((4, 3), 0.5))

    fill(replica, entities=4, steps=30, start=12)  # rings wrap: the newest 20 travel
    sender._budget = 1000.0
    writer.sent.clear()
    assert sender() == 4
    delivered(sender, 8)
    assert intake.take(writer.sent) == 4
    torch.testing.assert_close(trainer.histories(rows, 20), replica.histories(torch.arange(4), 20))
    assert trainer.observed == 48 + 4 * 20


def intake_rows(intake: SampleIntake, buffer: TaskBuffer, keys: list[bytes]) -> torch.Tensor:
    return buffer.row_of_slot[torch.tensor([intake.slot_of[k] for k in keys])]


def test_the_sender_keeps_to_its_rate() -> None:
    replica = TaskBuffer(capacity=64, length=20, max_slots=64)
    fill(replica, entities=64, steps=12)
    writer = Collect()
    sender = SampleSender(replica, writer, "r", per_s=10, min_values=1)
    sender._budget = 0.0
    sender._last -= 1.0  # one second since the last call: at most 10 rows
    assert sender() == 10
    assert sender() == 0
    delivered(sender, 10)
    sender.close()


def test_a_broker_outage_neither_blocks_the_loop_nor_piles_up_samples() -> None:
    """A replica whose broker is away (here: nothing listens at its address) keeps its
    loop's calls short, holds at most ``max_queued`` samples, counts what it could not
    queue and what was not acknowledged, and closes within its shutdown bound."""
    with socket.socket() as probe:  # a free port: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    cfg = dataclasses.replace(config_mod.load(None, env={}).kafka, bootstrap_servers=address,
                              input_topic="samples", shutdown_timeout_s=1.0)
    replica = TaskBuffer(capacity=64, length=20, max_slots=64)
    fill(replica, entities=64, steps=12)
    sender = SampleSender(replica, make_writer(cfg), "r", per_s=100_000, min_values=1,
                          max_queued=16, flush_timeout_s=0.3)
    slowest, step = 0.0, 12
    until = time.monotonic() + 1.5
    while time.monotonic() < until:  # every row changes each round: all want to go
        fill(replica, entities=64, steps=1, start=step)
        step += 1
        started = time.perf_counter()
        sender()
        slowest = max(slowest, time.perf_counter() - started)
        assert sender.waiting <= 16
        time.sleep(0.01)
    assert slowest < 0.25, f"a call of the loop waited {slowest:.2f} s"
    assert sender.sent == 0 and sender.lost > 0, (sender.sent, sender.lost)
    assert sender.deferred > 0
    started = time.perf_counter()
    sender.close()
    assert time.perf_counter() - started < cfg.shutdown_timeout_s + 1.5
