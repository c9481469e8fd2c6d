from __future__ import annotations

import torch

from streammeta.meta.samples import SampleIntake, SampleSender, decode, encode
from streammeta.meta.tasks import TaskBuffer


class Collect:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))

    def close(self) -> None:
        pass


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
    assert sender() == 4 and intake.take(writer.sent) == 4
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
