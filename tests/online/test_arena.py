"""The state arena: slots, rows that export and restore, windows of the ring."""

from __future__ import annotations

import math

import numpy as np
import torch

from streammeta.online import drift
from streammeta.online.arena import FREE, GUARD_UNTIL, ROW_FIELDS, Arena, upgrade_rows, window
from streammeta.online.experts import EXPERTS, KEPT


def arena(max_entities: int = 4, ring_len: int = 8) -> Arena:
    return Arena(ring_len=ring_len, context_dim=2, horizon=3, scored_horizons=2,
                 max_entities=max_entities, phi0=torch.tensor([0.5, -0.5]))


def test_entities_get_slots_until_the_cap() -> None:
    a = arena(max_entities=3)
    slots = a.slots_for(["x", "y", "x", "z", "w"], np.array([0, 1, 0, 1, 0]))
    assert slots.tolist() == [0, 1, 0, 2, FREE]  # the same entity twice: one slot
    assert len(a) == 3 and a.partition[:3].tolist() == [0, 1, 1]


def test_new_slots_start_cold_at_phi0() -> None:
    a = arena()
    [slot] = a.slots_for(["x"]).tolist()
    assert int(a.count[slot]) == 0 and bool(torch.isnan(a.pending[slot]).all())
    torch.testing.assert_close(a.phi[slot], a.phi0)
    assert a.drift[slot].tolist()[:len(drift.NEW)] == list(drift.NEW)


def test_removed_slots_are_reused() -> None:
    a = arena(max_entities=3)
    a.slots_for(["e0", "e1", "e2"], np.array([0, 1, 0]))
    a.remove(a.slots_in([0]))
    assert sorted(a.index) == ["e1"]
    [slot] = a.slots_for(["new"]).tolist()
    assert slot in (0, 2) and len(a) == 2


def test_exported_rows_restore_into_another_arena() -> None:
    a = arena()
    a.slots_for(["x", "y"], np.array([3, 3]))
    a.ring[:2] = torch.arange(16.0).reshape(2, 8)
    a.count[:2] = torch.tensor([5, 9])
    rows = a.export(a.slots_in([3]))
    b = arena()
    b.slots_for(["other"])
    slots = b.restore(rows)
    assert [b.names[s] for s in slots.tolist()] == ["x", "y"]
    for field in ROW_FIELDS:
        torch.testing.assert_close(getattr(b, field)[slots], getattr(a, field)[:2],
                                   equal_nan=True)


def test_rows_of_an_older_version_are_completed() -> None:
    rows = {"names": ["x"], "count": torch.tensor([7]), "phi": torch.ones(1, 2),
            "pending": torch.full((1, 4, 3), math.nan)}
    upgraded = upgrade_rows(rows)
    assert bool((upgraded["anchor"] == 0).all())
    torch.testing.assert_close(upgraded["phi_origin"], upgraded["phi"])
    assert float(upgraded["guard"][0, GUARD_UNTIL]) == 0.0  # guard period over
    assert upgraded["experts"].shape == (1, 3, EXPERTS) and not upgraded["experts"].any()  # even
    assert bool(upgraded["pending_experts"].isnan().all())
    # The (H, S) cells move into a ring of H cells per scored horizon (none given).
    assert upgraded["pending"].shape == (1, 12) and upgraded["pending_experts"].shape == (1, 12,
                                                                                         KEPT)


def test_an_expert_added_since_the_rows_were_written_starts_at_their_mean_record() -> None:
    """Rows written before the damped-trend expert existed (9 experts, 3 kept): the new
    expert's record is the mean of the others' (a record of 0 would hand it every weight
    of a mature entity at once), and its pending forecasts are none."""
    a = arena()
    a.slots_for(["x"])
    rows = a.export(a.slots_in([0]))
    old = torch.arange(1.0, 1.0 + 3 * 9).reshape(1, 3, 9)
    rows["experts"] = old.clone()
    rows["pending_experts"] = rows["pending_experts"][..., :3].clone()
    upgraded = upgrade_rows(rows)
    assert upgraded["experts"].shape == (1, 3, EXPERTS)
    torch.testing.assert_close(upgraded["experts"][:, :, :9], old)
    torch.testing.assert_close(upgraded["experts"][:, :, 9], old.mean(dim=2))
    assert upgraded["pending_experts"].shape[-1] == KEPT
    assert bool(upgraded["pending_experts"][..., 3].isnan().all())


def test_each_scored_horizon_keeps_a_ring_of_its_own_length() -> None:
    a = Arena(ring_len=8, context_dim=2, horizon=6, scored_horizons=3, max_entities=2,
              phi0=torch.zeros(2), horizons=(1, 4, 6))
    assert a.pending.shape == (2, 11) and a.pending_served.shape == (2, 11, 5)
    # Origin 9's forecasts for 10, 13 and 15 go to the cells read when 9 arrived (just
    # before): each cell is read before the next origin writes it again.
    made = a.cells(torch.tensor([[9]]) + torch.tensor([1, 4, 6]))
    assert made.tolist() == a.cells(torch.tensor([[9]])).tolist() == [[0, 1 + 1, 5 + 3]]
    # Over a ring's length, every target has a cell of its own.
    cells = a.cells(torch.arange(20, 26)[:, None])  # (6, 3)
    for s, depth in enumerate((1, 4, 6)):
        assert len(set(cells[:depth, s].tolist())) == depth


def test_window_reads_absolute_indices_of_the_ring() -> None:
    a = arena(ring_len=4)
    [slot] = a.slots_for(["x"]).tolist()
    a.ring[slot] = torch.tensor([40.0, 50.0, 20.0, 30.0])  # indices 4, 5, 2, 3
    history = a.history(torch.tensor([slot]))
    assert window(history, torch.tensor([2]), 4).tolist() == [[20.0, 30.0, 40.0, 50.0]]


def test_window_completes_indices_before_the_first_value_with_the_first_season() -> None:
    history = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0] * 2])  # 6 values seen, R = 6
    got = window(history, torch.tensor([-2]), 5, season=2)
    assert got.tolist() == [[1.0, 2.0, 1.0, 2.0, 3.0]]


def test_rings_saved_with_another_length_keep_the_newest_values_at_their_indices() -> None:
    old = arena(ring_len=5)
    new = arena(ring_len=8)
    slots = old.slots_for(["long", "short"])
    for i in range(7):  # "long" sees 0..6, "short" 0..2
        old.ring[slots[0], i % 5] = float(i)
        if i < 3:
            old.ring[slots[1], i % 5] = float(i)
    old.count[slots] = torch.tensor([7, 3])
    restored = new.restore(old.export(slots))
    ring = new.ring[restored]
    assert [float(ring[0, i % 8]) for i in range(2, 7)] == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert [float(ring[1, i % 8]) for i in range(3)] == [0.0, 1.0, 2.0]
    small = arena(ring_len=3)
    [kept, _] = small.restore(old.export(slots)).tolist()
    assert [float(small.ring[kept, i % 3]) for i in range(4, 7)] == [4.0, 5.0, 6.0]


def test_no_damped_trend_is_kept_where_the_theta_experts_do_not_serve() -> None:
    """m >= 24: the damped trend does not serve, and its pending forecasts take no state
    (121 cells at m = 24, H = 48: 484 bytes an entity); rows that hold the column
    restore without it."""
    def at(season: int) -> Arena:
        return Arena(ring_len=8, context_dim=2, horizon=3, scored_horizons=2, max_entities=2,
                     phi0=torch.tensor([0.5, -0.5]), season=season)
    hourly, yearly = at(24), at(1)
    assert hourly.pending_experts.shape[-1] == KEPT - 1
    assert yearly.pending_experts.shape[-1] == KEPT
    yearly.slots_for(["x"])
    yearly.pending_experts[0] = 1.0
    rows = hourly.upgrade(yearly.export(yearly.slots_in([0])))
    assert rows["pending_experts"].shape[-1] == KEPT - 1
    slots = hourly.restore(rows)
    assert bool((hourly.pending_experts[slots] == 1.0).all())
