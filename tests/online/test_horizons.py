from __future__ import annotations

import itertools
import math

import torch

from streammeta.online import cells
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
    assert scored(1, 24) == (1,)
    assert legacy(48, 24) == (1, 24, 48)


def test_long_seasons_are_also_scored_every_12_steps() -> None:
    """Above m = 24 the half season leaves more than 12 steps on one set of weights:
    every 12th step is scored too (vic_elec, m = H = 48: 1, 24, 48 before)."""
    assert scored(48, 48) == (1, 12, 24, 36, 48)
    assert scored(48, 168) == (1, 12, 24, 36, 48)  # a weekly season of hours
    assert scored(60, 30) == (1, 12, 15, 24, 30, 36, 45, 48, 60)
    assert scored(24, 48) == (1, 12, 24)
    # m ≤ 24 keeps its set: every 12th step is already a half season or season there.
    assert scored(48, 24) == (1, 12, 24, 36, 48)
    assert scored(18, 12) == (1, 6, 12, 18)
    assert scored(8, 4) == (1, 2, 4, 6, 8)
    assert scored(48, 1) == (1, 2, 4, 8, 16, 32, 48)
    for horizon, season in ((48, 48), (48, 168), (60, 30), (100, 26)):
        hs = scored(horizon, season)
        assert max(b - a for a, b in itertools.pairwise(hs)) <= 12


def test_rings_kept_at_other_horizons_keep_the_shared_ones() -> None:
    """Pending forecasts in one ring per scored horizon (s cells for horizon s): a
    horizon in both sets keeps its ring, a new one has nothing pending."""
    t = torch.arange(1.0, 8.0)[None, :]  # rings of 1, 2, 4: [1 | 2 3 | 4 5 6 7]
    got = cells.remap(t, (1, 2, 4), (1, 3, 4))[0].tolist()
    assert got[0] == 1.0 and all(math.isnan(x) for x in got[1:4]) and got[4:] == [4, 5, 6, 7]
    assert cells.remap(t, (1, 2, 4), (1, 2, 4)) is t


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
