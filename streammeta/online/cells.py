"""Reads and writes of the arena's pending cells as row copies of a flat view.

The pending forecasts (``Arena.pending``, ``pending_experts``, ``pending_served``) are
(N, H, S, ...) tensors addressed per round by slot, target cell and scored horizon.
Advanced indexing with two or three index tensors computes an offset per element;
viewed as rows of a flat (N·H, ...) or (N·H·S, ...) tensor, the same cells are
whole-row copies (``index_select``, ``index_copy_``, ``index_fill_``), about 3× faster.
A round holds each slot once, so no two rows of a write meet. The fields are
allocated contiguous (``Arena.__init__``) and only written in place; a field that is
not falls back to plain indexing.
"""

from __future__ import annotations

import torch
from torch import Tensor


def take(field: Tensor, slots: Tensor, cell: Tensor) -> Tensor:
    """``field[slots, cell]`` (B, ...) of a (N, H, ...) field: a copy."""
    if not field.is_contiguous():
        return field[slots, cell]
    rows = field.view(-1, *field.shape[2:])  # (N·H, ...)
    return rows.index_select(0, slots * field.shape[1] + cell)


def clear(field: Tensor, slots: Tensor, cell: Tensor) -> None:
    """``field[slots, cell] = NaN``."""
    if not field.is_contiguous():
        field[slots, cell] = float("nan")
        return
    field.view(-1, *field.shape[2:]).index_fill_(0, slots * field.shape[1] + cell,
                                                  float("nan"))


def put(field: Tensor, slots: Tensor, cells: Tensor, values: Tensor) -> None:
    """``field[slots[:, None], cells, arange(S)] = values`` of a (N, H, S, ...) field;
    cells (B, S), values (B, S, ...); slots distinct."""
    N, H, S = field.shape[:3]
    scored = torch.arange(S)[None, :]
    if not field.is_contiguous():
        field[slots[:, None], cells, scored] = values
        return
    at = ((slots[:, None] * H + cells) * S + scored).reshape(-1)  # (B·S,)
    rest = field.shape[3:]
    rows = field.view(N * H * S, *rest)
    rows.index_copy_(0, at, values.reshape(len(at), *rest).to(field.dtype))
