"""The drift expert's step (``online.experts``: DRIFT): the average step over an
entity's last window, robust to a jump of level."""

from __future__ import annotations

import torch
from torch import Tensor


def slope(ring: Tensor, last_index: Tensor, span: int, season: int = 1) -> Tensor:
    """The drift expert's average step (B,) at absolute index ``last_index`` (B,), or (B, S)
    at (B, S), over the last ``span`` steps (fewer when the entity has fewer), in whole
    seasons once a season is seen (a young entity's step between two phases of the season
    is the season's shape, not a trend); ``ring`` (B, R) the entities' rows of
    ``Arena.ring``.

    Where those steps hold three chunks of at least a step (two whole seasons with a
    season), the median of the chunks' average steps: a single jump of level inside the
    window is one chunk's, not a trend to extrapolate (the models work in asinh units,
    where a straight line is growth by a factor: a series at 0 that jumps to 1,000
    was extrapolated to its plausible ceiling for a whole window); a steady trend is
    every chunk's. Chunks of one season are too noisy: M1 quarterly (window 16, m = 4)
    final-origin MASE 1.632 with the whole window, 1.649 with such chunks."""
    at = last_index if last_index.dim() == 2 else last_index[:, None]  # (B, S)
    k = torch.minimum(at, torch.tensor(span))
    unit = 1
    if season > 1:
        k = torch.where(k >= season, k - k % season, k)
        unit = season
    k = k.clamp(min=1)
    R = ring.shape[1]
    now = torch.gather(ring, 1, at % R)
    then = torch.gather(ring, 1, (at - k) % R)
    whole = (now - then) / k
    c = k // 3
    c = c - c % unit  # chunks of whole seasons
    split = c >= (2 * unit if season > 1 else 1)
    if bool(split.any()):
        c = c.clamp(min=1)
        a = torch.gather(ring, 1, (at - c) % R)
        b = torch.gather(ring, 1, (at - 2 * c) % R)
        d = torch.gather(ring, 1, (at - 3 * c) % R)
        s0, s1, s2 = now - a, a - b, b - d
        mid = (s0 + s1 + s2 - torch.maximum(torch.maximum(s0, s1), s2)
               - torch.minimum(torch.minimum(s0, s1), s2))
        whole = torch.where(split, mid / c, whole)
    return torch.where(at > 0, whole, torch.zeros_like(now)).reshape(last_index.shape)
