"""What one ``Engine.process`` call returns: forecasts and what happened on the way."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streammeta.io.codec import Reason
from streammeta.online.model import ModelShape


@dataclass
class Forecasts:
    """One forecast per accepted observation, rows aligned."""

    obs_index: np.ndarray  # (B,) index into the processed observations
    slots: np.ndarray  # (B,)
    origin_ts: np.ndarray  # (B,) int64 ms
    point: np.ndarray  # (B, H) float32
    quantiles: np.ndarray  # (B, Q, H) float32
    warm: np.ndarray  # (B,) bool

    def __len__(self) -> int:
        return len(self.obs_index)


@dataclass
class Result:
    forecasts: Forecasts
    rejected: list[tuple[int, Reason, str]] = field(default_factory=list)
    scored: int = 0  # forecast values resolved and scored
    gap_steps: int = 0
    resets: int = 0
    drifts: int = 0  # entities whose error drifted: φ re-initialised
    evicted: int = 0  # entities moved to the spill store to make room
    paged_in: int = 0  # evicted entities read back
    recalled: list[float] = field(default_factory=list)  # similarity of each memory retrieval
    guarded: int = 0  # warm forecasts that the initial θ's forecast had a share in


def empty_forecasts(shape: ModelShape) -> Forecasts:
    H, Q = shape.horizon, len(shape.quantiles)
    return Forecasts(
        obs_index=np.zeros(0, dtype=np.int64), slots=np.zeros(0, dtype=np.int64),
        origin_ts=np.zeros(0, dtype=np.int64), point=np.zeros((0, H), dtype=np.float32),
        quantiles=np.zeros((0, Q, H), dtype=np.float32), warm=np.zeros(0, dtype=bool))


def concat(parts: list[Forecasts]) -> Forecasts:
    if len(parts) == 1:
        return parts[0]
    return Forecasts(
        obs_index=np.concatenate([p.obs_index for p in parts]),
        slots=np.concatenate([p.slots for p in parts]),
        origin_ts=np.concatenate([p.origin_ts for p in parts]),
        point=np.concatenate([p.point for p in parts]),
        quantiles=np.concatenate([p.quantiles for p in parts]),
        warm=np.concatenate([p.warm for p in parts]))
