"""Tasks as the outer loop sees them: where support and query windows sit in an
entity's history, and how each window is normalised and weighted.

A task is one entity's recent history split in time into support windows
(earlier) and query windows (later, their targets never seen by the adaptation).
A *young* task replays the H steps after a new entity turns warm: the engine's
forecasts then, made from windows completed with the entity's first season. Every
window is standardised by its own inputs, as the engine does; the query windows
are weighted into MASE units, as evaluation scores them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streammeta.online import model


@dataclass(frozen=True)
class TaskLayout:
    """Where support and query windows sit in a history of ``length`` values."""

    window: int  # L
    horizon: int  # H
    support: int  # S windows
    query: int  # Q windows
    stride: int
    season: int = 1  # m, for the task's error scale (see normalise_task)
    young: int = 0  # values an entity has at its first forecast (0: no young tasks)

    @property
    def young_length(self) -> int:
        """Values from an entity's birth that a young task needs."""
        return self.young + self.young_steps + self.horizon

    @property
    def length(self) -> int:
        S, Q, d, L, H = self.support, self.query, self.stride, self.window, self.horizon
        # Query inputs may overlap support targets, query targets may not: the first
        # query window starts H after the last support window.
        return (S - 1) * d + H + (Q - 1) * d + L + H

    @property
    def query_span(self) -> int:
        """The newest values of a task that are query targets."""
        return (self.query - 1) * self.stride + self.horizon

    @property
    def young_steps(self) -> int:
        """Online steps a young task follows after the entity turns warm: until all the
        targets of its first forecast have arrived."""
        return self.horizon - 1

    def split(self, history: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(n, T) histories → support x (n, S, L), y (n, S, H), query x (n, Q, L), y."""
        L, H, d, S = self.window, self.horizon, self.stride, self.support
        first_query = (S - 1) * d + H
        starts = torch.tensor([j * d for j in range(S)]
                              + [first_query + k * d for k in range(self.query)])
        examples = history[:, starts[:, None] + torch.arange(L + H)[None, :]]  # (n, S+Q, L+H)
        return examples[:, :S, :L], examples[:, :S, L:], examples[:, S:, :L], examples[:, S:, L:]

    def young_split(self, history: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(n, T ≥ young_length) histories from the entity's birth → the forecasts the
        engine makes at each step k = 0..K (K = ``young_steps``) after the entity turns
        warm, x (n, K+1, L) and y (n, K+1, H); and which targets of the first have
        arrived at each step k = 1..K, (K, H). Until then the engine adapts on that
        first forecast's window: its newest example with an arrived target."""
        L, H, K = self.window, self.horizon, self.young_steps
        # Forecast k is made having seen young + k values; inputs before the birth read
        # the same phase of the first season, as state.window completes them.
        index = (self.young + torch.arange(K + 1))[:, None] - L + torch.arange(L + H)
        query = history[:, torch.where(index < 0, index % self.season, index)]
        mask = (torch.arange(H)[None, :] < torch.arange(1, K + 1)[:, None]).to(history)
        return query[..., :L], query[..., L:], mask


def normalise_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor,
                   season: int = 1) -> tuple[Tensor, ...]:
    """Each window standardised by its own inputs, as the engine does, and the query
    windows' weights (:func:`mase_weight`, the task's scale from its first support
    window's inputs)."""
    first = xs[:, 0]
    xs, ys, _ = standardise(xs, ys)
    xq, yq, scale = standardise(xq, yq)
    return xs, ys, xq, yq, mase_weight(scale, first, season)


def mase_weight(scale: Tensor, known: Tensor, season: int) -> Tensor:
    """A weight per query window (n, w) that turns its loss from window units (its
    standard deviation ``scale``) into units of the task's mean absolute seasonal
    difference, taken from the values ``known`` (n, K), as MASE scores it. Without
    it, the loss of a flat window is blown up, and meta-learning favours those
    windows over the ones MASE counts."""
    lag = min(season, known.shape[1] - 1)
    task_scale = (known[:, lag:] - known[:, :-lag]).abs().mean(dim=1, keepdim=True)  # (n, 1)
    floor = model.scale_floor(known.abs().mean(dim=1, keepdim=True))
    return (scale / torch.maximum(task_scale, floor)).clamp(max=10.0)


def standardise(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Windows x (n, w, L) and their targets y (n, w, H), each standardised by its own
    inputs as the engine does → (x, y, scale (n, w))."""
    n, w, L = x.shape
    xn, mean, scale = model.normalise(x.reshape(n * w, L))
    return (xn.reshape(n, w, L), ((y.reshape(n * w, -1) - mean) / scale).reshape(y.shape),
            scale.reshape(n, w))
