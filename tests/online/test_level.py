from __future__ import annotations

from types import SimpleNamespace

import torch

from streammeta import config as config_mod
from streammeta.online import cells, experts, level


def test_the_shift_is_the_newest_half_seasons_mean_against_a_season_earlier() -> None:
    season = 4  # half a season: 2 values
    ring = torch.tensor([[1.0, 2.0, 3.0, 4.0, 1.1, 2.1, 3.1, 4.1]])
    # At index 7: mean(3.1, 4.1) - mean(3.0, 4.0) = 0.1; at 6: mean(2.1, 3.1) - mean(2, 3).
    shift = level.shift(ring, torch.tensor([[7, 6, 4]]), season)
    torch.testing.assert_close(shift, torch.tensor([[0.1, 0.1, 0.0]]))  # 4: 5 values < 4 + 2
    jump = level.shift(ring * torch.tensor([1.0] * 4 + [3.0] * 4), torch.tensor([7]), season)
    torch.testing.assert_close(jump, torch.tensor([level.CLIP]))  # clipped
    assert level.serves(12, 36) and level.serves(24, 168) and not level.serves(24, 30)
    assert not level.serves(4, 16) and not level.serves(1, 16)  # too short a season
    assert not experts.allowed((1, 2, 4), 4, level=level.serves(4, 16))[:, experts.LEVEL].any()


def test_the_scored_origins_shifts_are_the_served_ones_also_where_spans_wrap_the_ring() -> None:
    """Scoring reads several origins per row from prefix sums, serving one origin by its
    values: both give the same shift, across the ring's wrap and in float32 at a level
    of 10³ (the prefix sums are taken less the row's first value)."""
    gen = torch.Generator().manual_seed(0)
    ring = 1e3 + torch.randn(3, 50, generator=gen) * 0.1  # R = 50, m = 12: spans wrap
    at = torch.tensor([[49, 60, 75, 11], [20, 30, 99, 17], [54, 55, 56, 200]])
    each = torch.stack([level.shift(ring, at[:, i], 12) for i in range(at.shape[1])], 1)
    torch.testing.assert_close(level.shift(ring, at, 12), each, atol=5e-4, rtol=0)
    assert float(each[0, 3]) == 0.0  # index 11: fewer than 12 + 6 values seen
    assert float(each.abs().sum()) > 0.1


def test_after_a_level_shift_the_level_expert_is_charged_less_than_seasonal_naive() -> None:
    """m = 24: the level moves up by 0.2 half a day before the target. Seasonal naive
    (the value a day before the target, at the old level) errs by 0.2 at every scored
    horizon; the level expert's shift, judged at each forecast's origin, has the new
    level at step 1 and part of it at 12: it is charged less, and served with its weight."""
    horizons, H, season = (1, 12, 24), 24, 24
    weighting = experts.Weighting(config_mod.load(None, env={}).experts, horizons, H, season,
                                  168)
    first, depth = cells.offsets(horizons), torch.tensor(horizons)
    shape = torch.sin(torch.arange(73) * 2 * torch.pi / 24)
    ring = shape + 5.0 + 0.2 * (torch.arange(73) >= 60)  # ring[72] the target, not yet in
    pending = torch.full((1, sum(horizons), experts.KEPT), float("nan"))
    arena = SimpleNamespace(ring=ring[None, :72].clone(), ring_len=72, horizon=H,
                            experts=torch.zeros(1, 3, experts.EXPERTS), pending_experts=pending,
                            season_indices=torch.zeros(1, season),
                            cells=lambda target: first + target % depth)
    S = len(horizons)
    naive = torch.full((1, S), float(ring[48]))  # a day before the target
    weighting.score(arena, torch.tensor([0]), torch.tensor([72]),  # type: ignore[arg-type]
                    ring[72:73], naive, naive, torch.ones(1, 1),
                    torch.ones(1, S, dtype=torch.bool), torch.ones(1, S, dtype=torch.bool))
    losses = arena.experts[0]  # (S, E)
    torch.testing.assert_close(losses[:, experts.SEASONAL], torch.full((S,), 0.2))
    assert float(losses[0, experts.LEVEL]) < 1e-5  # step 1: the whole new level
    assert float(losses[1, experts.LEVEL]) < 0.19  # 12: the newest half day holds 1 of 12
    w = torch.zeros(1, S, experts.EXPERTS)
    w[:, :, experts.LEVEL] = 1.0
    seasonal = torch.full((1, H), 5.0)
    served = experts.blend(w, experts.buckets(horizons, H), seasonal, torch.zeros(1),
                           seasonal, torch.zeros(1), torch.zeros(1, H, experts.KEPT),
                           level=torch.tensor([0.2]))
    torch.testing.assert_close(served, torch.full((1, H), 5.2))


def test_the_level_expert_serves_young_entities_only() -> None:
    """Where an entity's record is long it weighs seasonal naive's level by its own
    errors; the level expert cost mature entities accuracy (M4 hourly final origin,
    ETTh2), so only young ones may weigh it."""
    weighting = experts.Weighting(config_mod.load(None, env={}).experts, (1, 12, 24), 24, 24,
                                  168)
    assert weighting._allowed_young[:, experts.LEVEL].all()
    assert not weighting._allowed[:, experts.LEVEL].any()
