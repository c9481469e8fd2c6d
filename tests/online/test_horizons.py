from __future__ import annotations

import math

import torch

from streammeta.online.experts import NAIVE, allowed, persistence_steps
from streammeta.online.horizons import legacy, remap, scored


def test_the_scored_horizons_are_every_half_season_and_season_up_to_h() -> None:
    assert scored(48, 24) == (1, 12, 24, 36, 48)
    assert scored(24, 24) == (1, 12, 24)
    assert scored(18, 12) == (1, 6, 12, 18)
    assert scored(8, 4) == (1, 2, 4, 6, 8)
    assert scored(6, 1) == (1, 2, 4, 6)  # no season: powers of two
    assert scored(1, 1) == (1,)
    assert scored(14, 7) == (1, 3, 7, 10, 14)  # odd season: half a season rounded down
    assert scored(48, 48) == (1, 24, 48)
    assert scored(1, 24) == (1,)
    assert legacy(48, 24) == (1, 24, 48)


def test_persistence_is_judged_on_the_steps_each_horizon_serves() -> None:
    """Persistence is judged at each scored horizon beyond 1 on every step the horizon
    serves; at a multiple of the season (its forecast there is seasonal naive's) on
    the steps before it, and barred only where there are none."""
    assert persistence_steps(scored(48, 24), 24) == {1: list(range(2, 13)),
                                                     2: list(range(13, 24)),
                                                     3: list(range(25, 37)),
                                                     4: list(range(37, 48))}
    assert allowed(scored(48, 24), 24)[:, NAIVE].tolist() == [True] * 5  # 1, 12, 24, 36, 48
    assert persistence_steps(scored(4, 2), 2) == {1: [], 2: [3], 3: []}  # 1, 2, 3, 4
    assert allowed(scored(4, 2), 2)[:, NAIVE].tolist() == [True, False, True, False]
    assert persistence_steps(scored(6, 1), 1) == {1: [2], 2: [3, 4], 3: [5, 6]}  # no season
    assert persistence_steps(scored(1, 24), 24) == {}


def test_remap_keeps_shared_columns_and_fills_new_ones() -> None:
    t = torch.tensor([[10.0, 40.0, 60.0]])  # at 1, 4, 6
    assert remap(t, 1, (1, 4, 6), (1, 2, 4, 6), None).tolist() == [[10.0, 40.0, 40.0, 60.0]]
    filled = remap(t, 1, (1, 4, 6), (1, 2, 4, 6), math.nan)[0].tolist()
    assert filled[0] == 10.0 and math.isnan(filled[1]) and filled[2:] == [40.0, 60.0]
    assert remap(t, 1, (1, 4, 6), (1, 6), None).tolist() == [[10.0, 60.0]]  # a dropped one
    assert remap(t, 1, (1, 4, 6), (1, 4, 6), None) is t
