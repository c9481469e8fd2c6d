"""The inner loop: each entity's φ takes Meta-SGD step(s) as its targets arrive.

Per round, an entity with more than ``warm_at`` values adapts on its newest
example that has at least one arrived target (L inputs, then the H steps after
them, the missing ones masked), and φ is then shrunk back towards where it
started (``adaptation.shrink``). Under the guard, φ of the initial θ adapts on
the same example where that expert still counts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streammeta.online import model
from streammeta.online.arena import Arena, window
from streammeta.online.guard import Guard


class InnerLoop:
    def __init__(self, shape: model.ModelShape, warm_at: int, steps: int, shrink: float,
                 loss: str) -> None:
        self.shape = shape
        self.warm_at = warm_at
        self.steps = steps
        self.shrink = shrink
        self.loss = loss

    def adapt(self, params: model.Params, arena: Arena, slots: Tensor, n: Tensor,
              history: Tensor, weight: Tensor | None, guard: Guard) -> None:
        """Inner loop on each entity's newest example with at least one arrived target."""
        L, H = self.shape.window, self.shape.horizon
        ready = n > self.warm_at
        if not bool(ready.any()):
            return
        all_ready = bool(ready.all())
        s, n = (slots, n) if all_ready else (slots[ready], n[ready])
        if weight is not None and not all_ready:
            weight = weight[ready]
        k = torch.clamp(n - self.warm_at, max=H)  # targets available for the newest example
        first = n - k - L  # absolute index of its first input (< 0: young, see window)
        seq = window(history if all_ready else history[ready], first, L + H,
                     self.shape.season)  # (B, L+H)
        x, mean, scale = model.normalise(seq[:, :L])
        target = (seq[:, L:] - mean) / scale  # (B, H)
        mask = (torch.arange(H)[None, :] < k[:, None]).to(torch.float32)  # (B, H)
        phi = self._step(params, arena.phi.index_select(0, s),
                         arena.phi0 + arena.anchor.index_select(0, s), x, target, mask)
        arena.phi.index_copy_(0, s, phi)
        if not guard.enabled:
            return
        if weight is None:  # serving the initial θ: both experts are one
            arena.phi_origin.index_copy_(0, s, phi)
            return
        used = weight < 1.0  # rows whose initial-θ forecast counts
        if not bool(used.any()):
            return
        so = s[used]
        arena.phi_origin[so] = self._step(guard.origin, arena.phi_origin[so],
                                          arena.origin_phi0, x[used], target[used],
                                          mask[used])

    def _step(self, params: model.Params, phi: Tensor, start: Tensor, x: Tensor,
              target: Tensor, mask: Tensor) -> Tensor:
        """φ (B, C) adapted on one example each, then shrunk towards ``start``."""
        phi = model.adapt(params, phi, x, target, mask, self.loss, self.steps)
        return model.shrink(phi, start, self.shrink)
