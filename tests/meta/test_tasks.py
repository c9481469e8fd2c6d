"""The task buffer and the holdout rule."""

from __future__ import annotations

import torch

from streammeta.meta.tasks import TaskBuffer, held_out


def test_task_buffer_keeps_recent_entities_and_orders_histories() -> None:
    buffer = TaskBuffer(capacity=2, length=3, max_slots=10)
    for t in range(4):
        buffer.observe(torch.tensor([0, 1]), torch.tensor([t, 10.0 + t]),
                       fresh=torch.tensor([t == 0, t == 0]))
    assert buffer.histories(buffer.full_rows(3), 3).tolist() == [[1, 2, 3], [11, 12, 13]]
    assert buffer.histories(buffer.full_rows(2), 2).tolist() == [[2, 3], [12, 13]]
    older = buffer.histories(buffer.full_rows(2), 2, torch.Generator().manual_seed(0))
    assert all(row in ([1, 2], [2, 3], [11, 12], [12, 13]) for row in older.tolist())
    assert buffer.histories(buffer.full_rows(2), 2, oldest=True).tolist() == [[1, 2], [11, 12]]
    young = TaskBuffer(capacity=1, length=5, max_slots=1)  # not wrapped: birth is held
    for t in range(3):
        young.observe(torch.tensor([0]), torch.tensor([float(t)]), fresh=torch.tensor([t == 0]))
    assert young.histories(young.full_rows(2), 2, oldest=True).tolist() == [[0, 1]]
    # Rows still holding their entity's first value: the young one, not the wrapped ones.
    assert young.born_rows(2).tolist() == [0] and young.born_rows(4).tolist() == []
    assert buffer.born_rows(2).tolist() == []
    for t in range(4, 11):  # entity 0 goes quiet: 7 values of entity 1, its spacing was 2
        buffer.observe(torch.tensor([1]), torch.tensor([10.0 + t]), fresh=torch.tensor([False]))
    buffer.observe(torch.tensor([5]), torch.tensor([50.0]), fresh=torch.tensor([True]))
    assert int(buffer.row_of_slot[0]) == -1  # the quiet entity made room
    assert buffer.histories(buffer.row_of_slot[torch.tensor([1])], 2).tolist() == [[19, 20]]
    assert buffer.histories(buffer.row_of_slot[torch.tensor([5])], 1).tolist() == [[50]]


def test_more_entities_than_rows_in_turn_keep_the_rows_they_hold() -> None:
    """Ten entities in turn, four rows: taking the least recently updated row handed
    each row on before its entity came back, so no row held a task's two values (the
    outer loop never ran on 48,000 monthly series). Those that hold rows keep them;
    when they go quiet, the others take the rows."""
    buffer = TaskBuffer(capacity=4, length=5, max_slots=20)
    for t in range(8):
        buffer.observe(torch.arange(10), torch.full((10,), float(t)),
                       fresh=torch.full((10,), t == 0))
    assert len(buffer.full_rows(5)) == 4
    assert sorted(buffer.slot_of_row.tolist()) == [0, 1, 2, 3]
    for t in range(8, 20):  # 0..3 stop sending: after three of their spacings, room
        buffer.observe(torch.arange(4, 10), torch.full((6,), float(t)),
                       fresh=torch.zeros(6, dtype=torch.bool))
    assert set(buffer.slot_of_row.tolist()) <= set(range(4, 10))
    assert len(buffer.full_rows(5)) == 4


def test_a_new_entity_takes_no_row_when_none_is_free_and_all_are_fresh() -> None:
    buffer = TaskBuffer(capacity=1, length=4, max_slots=4)
    buffer.observe(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]),
                   fresh=torch.tensor([True, True]))
    rows = buffer.row_of_slot[:2].tolist()
    assert sorted(rows) == [-1, 0]  # one row, one entity holds it
    assert buffer.observed == 2


def test_anchors_are_kept_per_row_and_reset_for_a_new_entity() -> None:
    buffer = TaskBuffer(capacity=2, length=4, max_slots=4, context_dim=2)
    buffer.observe(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]),
                   fresh=torch.tensor([True, True]))
    buffer.set_anchor(torch.tensor([1]), torch.tensor([[0.5, -0.5]]))
    rows = buffer.row_of_slot[torch.tensor([0, 1])]
    assert buffer.anchors(rows).tolist() == [[0.0, 0.0], [0.5, -0.5]]
    buffer.observe(torch.tensor([1]), torch.tensor([3.0]), fresh=torch.tensor([True]))
    assert buffer.anchors(rows[1:]).tolist() == [[0.0, 0.0]]  # restarted cold


def test_holdout_is_a_fixed_share_by_id() -> None:
    ids = torch.arange(10_000)
    held = held_out(ids, 0.2)
    assert 0.18 < float(held.float().mean()) < 0.22
    assert torch.equal(held_out(ids.flip(0), 0.2), held.flip(0))  # by id, not position
    assert not bool(held_out(ids, 0.0).any())
