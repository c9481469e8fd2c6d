"""What the engine serves stays within what an entity's values make plausible."""

from __future__ import annotations

import numpy as np
import torch
from test_calibration import run, small

from streammeta.online.engine import Engine
from streammeta.online.forecast import plausible


def spiky(n: int, T: int, seed: int) -> np.ndarray:
    """Short positive series near zero with a yearly spike 15 times their level (M1
    monthly has such series), whose logarithms vary wildly."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    base = rng.uniform(0.3, 8.0, (n, T))
    return base + 70.0 * (t % 12 == 3)[None, :] * rng.uniform(0.5, 1.5, (n, 1))


def test_a_positive_series_is_never_forecast_below_zero_nor_far_above_its_range() -> None:
    values = spiky(12, 120, seed=3)
    point, quant, _ = run(Engine(small()), values)
    warm = ~np.isnan(point)
    assert warm.sum() > 1000
    assert np.nanmin(quant) >= 0.0 and np.nanmin(point) >= 0.0
    top = values.max() * 2 - values.min()
    assert np.nanmax(quant) <= top and np.nanmax(point) <= top


def test_the_bound_is_the_recent_range_widened_by_itself_and_keeps_levels_ordered() -> None:
    recent = torch.tensor([[1.0, 5.0, 3.0], [-2.0, 2.0, 0.0], [4.0, 4.0, 4.0]])
    point = torch.tensor([[-3.0, 20.0], [-9.0, 1.0], [4.0, 9.0]])
    quant = torch.stack([point - 1.0, point + 1.0], dim=1)  # (B, Q, H)
    warm = torch.tensor([True, True, False])
    plausible(recent.amin(dim=1), recent.amax(dim=1), warm, point, quant)
    assert point.tolist() == [[0.0, 9.0], [-6.0, 1.0], [4.0, 9.0]]  # cold rows as they were
    assert quant[0].tolist() == [[0.0, 9.0], [0.0, 9.0]]
    assert quant[1].tolist() == [[-6.0, 0.0], [-6.0, 2.0]]
    assert bool((quant[:, 0] <= point).all()) and bool((point <= quant[:, 1]).all())
