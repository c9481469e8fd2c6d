"""The scored horizons: the steps at which forecasts are remembered and judged.

The experts' weights (``online.experts``) and the calibration offsets
(``online.calibration``) are learnt at these S steps and serve the steps between
them. Rows, population records and spill files keep one column per scored
horizon; those written with another set (:func:`legacy`: versions before the
half-season horizons kept none of their own) are mapped onto this one by
:func:`remap`.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Seasons above 2 · LONG_GAP are also scored every LONG_GAP steps: at m = 48 the half
# season alone left steps 2–24 on one set of weights. m ≤ 24 is unchanged (its half
# seasons already hold every 12th step).
LONG_GAP = 12


def scored(horizon: int, season: int) -> tuple[int, ...]:
    """1, every half season and season up to H, and H itself: m = 24, H = 48 → 1, 12,
    24, 36, 48; m = 12, H = 18 → 1, 6, 12, 18; m = 4, H = 8 → 1, 2, 4, 6, 8; with no
    season (m = 1) the powers of two: H = 6 → 1, 2, 4, 6. Seasons above 24 add every
    :data:`LONG_GAP` steps: m = 48, H = 48 → 1, 12, 24, 36, 48 (before: 1, 24, 48;
    docs/evaluation.md, "Scored horizons every 12 steps for long seasons"). A step h
    is served by the smallest scored horizon ≥ h, and persistence, whose record at a
    multiple of the season is seasonal naive's, serves the half seasons (with 1, m and
    H alone it served step 1 only). Measured in docs/meta-learning.md ("Scored horizons")."""
    out = {1, horizon}
    if season > 1:
        for k in range(0, (horizon + season - 1) // season):
            out |= {k * season + season // 2, (k + 1) * season}
        if season > 2 * LONG_GAP:
            out |= set(range(LONG_GAP, horizon + 1, LONG_GAP))
    else:
        out |= {2**k for k in range(1, horizon.bit_length())}
    return tuple(sorted(h for h in out if 1 <= h <= horizon))


def legacy(horizon: int, season: int) -> tuple[int, ...]:
    """The scored horizons of rows and records written without a record of them."""
    return tuple(sorted({1, min(season, horizon), horizon}))


def remap(t: Tensor, axis: int, written: tuple[int, ...], now: tuple[int, ...],
          fill: float | None) -> Tensor:
    """``t`` with one column per ``written`` horizon along ``axis`` → one per ``now``
    horizon: a horizon in both keeps its column; a new one takes ``fill`` or, with
    None, the column of the written horizon that served its steps (the smallest ≥ it,
    else the largest), so the served forecasts and quantiles stay as they were."""
    if tuple(written) == tuple(now):
        return t
    if t.shape[axis] != len(written):
        raise ValueError(f"{t.shape[axis]} columns for the scored horizons {written}")
    columns = []
    for h in now:
        if h in written:
            columns.append(t.select(axis, written.index(h)))
        else:
            src = next((i for i, w in enumerate(written) if w >= h), len(written) - 1)
            column = t.select(axis, src)
            columns.append(column.clone() if fill is None else torch.full_like(column, fill))
    return torch.stack(columns, dim=axis)


def persistence_steps(horizons: tuple[int, ...], season: int) -> dict[int, list[int]]:
    """Scored horizon index → the steps persistence is judged on there: every step the
    horizon's weights serve (with m = 24, H = 48: 12 on 2..12, 36 on 25..36), its loss
    the mean of its losses on them. Its error grows with the step, so judged at the
    horizon alone it would be blamed for the far end of the steps it serves; on ETTh2
    (H = 48) the weights learnt at 36 served step 25 29% worse than persistence.
    At a multiple of the season (> 1) its forecast at the horizon itself is seasonal
    naive's, so only the steps before it count (24 on 13..23, 48 on 37..47); none
    where there are none (m = 2: the horizon 2 serves step 2 alone)."""
    out: dict[int, list[int]] = {}
    for i, h in enumerate(horizons):
        if h > 1:
            below = horizons[i - 1] if i else 0
            out[i] = list(range(below + 1, h if season > 1 and h % season == 0 else h + 1))
    return out


def persistence_judged(horizons: tuple[int, ...], season: int) -> tuple[Tensor, Tensor, Tensor]:
    """Persistence judged on the steps each horizon serves (:func:`persistence_steps`):
    the scored horizons judged so (S',), their steps (P,), and the (S', P) averaging
    over each such horizon's steps."""
    judged = {i: st for i, st in persistence_steps(horizons, season).items() if st}
    steps = torch.tensor([h for st in judged.values() for h in st], dtype=torch.long)
    mean = torch.zeros(len(judged), len(steps))
    at = 0
    for r, st in enumerate(judged.values()):
        mean[r, at : at + len(st)] = 1.0 / len(st)
        at += len(st)
    return torch.tensor(list(judged), dtype=torch.long), steps, mean
