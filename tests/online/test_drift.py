"""The vectorised Page-Hinkley test flags drift exactly where river's does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from river.drift import PageHinkley as RiverPageHinkley

from streammeta.online.drift import NEW, PageHinkley


def _streams(n: int, length: int, seed: int) -> np.ndarray:
    """Error-like streams, some with a rise of the mean at a random step."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(0.6, 0.3, (n, length)))
    for e in range(0, n, 2):
        at = rng.integers(length // 4, 3 * length // 4)
        x[e, at:] += rng.uniform(0.5, 3.0)
    return x


@pytest.mark.parametrize("settings", [
    {"min_instances": 30, "delta": 0.005, "threshold": 50.0, "alpha": 1 - 0.0001},
    {"min_instances": 48, "delta": 0.05, "threshold": 20.0, "alpha": 0.999},
    {"min_instances": 5, "delta": 0.1, "threshold": 3.0, "alpha": 0.9},
])
def test_detections_match_river_step_for_step(settings: dict[str, float]) -> None:
    n, length = 16, 600
    x = _streams(n, length, seed=int(settings["threshold"]))
    ours = PageHinkley(**settings)  # type: ignore[arg-type]
    table = torch.tensor([NEW] * n, dtype=torch.float64)
    slots = torch.arange(n)
    rivers = [RiverPageHinkley(mode="up", **settings) for _ in range(n)]  # type: ignore[arg-type]
    ours_at: list[tuple[int, int]] = []
    river_at: list[tuple[int, int]] = []
    for t in range(length):
        fired = ours.update(table, slots, torch.from_numpy(x[:, t]))
        ours_at += [(e, t) for e in torch.nonzero(fired).flatten().tolist()]
        for e, detector in enumerate(rivers):
            detector.update(float(x[e, t]))
            if detector.drift_detected:
                river_at.append((e, t))
    assert ours_at == sorted(river_at, key=lambda et: (et[1], et[0]))
    assert ours_at, "the shifted streams must drift"


def test_only_the_given_slots_move() -> None:
    table = torch.tensor([NEW] * 4, dtype=torch.float64)
    PageHinkley().update(table, torch.tensor([1, 3]), torch.tensor([0.5, 0.7]))
    assert table[0].tolist() == list(NEW) and table[2].tolist() == list(NEW)
    assert table[1, 0] == 1 and table[3, 1] == pytest.approx(0.7)
