"""The pending forecasts' layout: one ring per scored horizon, and row copies of it.

A forecast for scored horizon s made at origin t waits until its target t + s
arrives, so at most s of them are pending at once: scored horizon s keeps a ring of
s cells, its target index mod s, and the rings sit side by side, Σ s cells per entity
(with m = 24, H = 48: 1 + 12 + 24 + 36 + 48 = 121 instead of (H, S) = 240 cells). A
cell is read and cleared when its target arrives, before the next origin writes it
again. ``Arena.cells`` gives the cells of targets; the pending fields
(``Arena.pending``, ``pending_experts``, ``pending_served``) are (N, P, ...) with P
cells. Advanced indexing with two index tensors computes an offset per element;
viewed as rows of a flat (N·P, ...) tensor, the same cells are whole-row copies
(``index_select``, ``index_copy_``, ``index_fill_``), about 3× faster. A round holds
each slot once, so no two rows of a write meet. The fields are allocated contiguous
(``Arena.__init__``) and only written in place; a field that is not falls back to
plain indexing.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def offsets(depths: tuple[int, ...]) -> Tensor:
    """(S,) each ring's first cell."""
    return torch.tensor([0, *itertools.accumulate(depths)][:-1], dtype=torch.int64)


def take(field: Tensor, slots: Tensor, cells: Tensor) -> Tensor:
    """``field[slots[:, None], cells]`` (B, S, ...) of a (N, P, ...) field; cells (B, S)."""
    if not field.is_contiguous():
        return field[slots[:, None], cells]
    rows = field.view(-1, *field.shape[2:])  # (N·P, ...)
    return rows.index_select(0, _rows(field, slots, cells)).view(*cells.shape, *field.shape[2:])


def clear(field: Tensor, slots: Tensor, cells: Tensor) -> None:
    """``field[slots[:, None], cells] = NaN``."""
    if not field.is_contiguous():
        field[slots[:, None], cells] = float("nan")
        return
    field.view(-1, *field.shape[2:]).index_fill_(0, _rows(field, slots, cells), float("nan"))


def put(field: Tensor, slots: Tensor, cells: Tensor, values: Tensor) -> None:
    """``field[slots[:, None], cells] = values``; cells (B, S), values (B, S, ...);
    slots distinct."""
    if not field.is_contiguous():
        field[slots[:, None], cells] = values.to(field.dtype)
        return
    at = _rows(field, slots, cells)
    rest = field.shape[2:]
    field.view(-1, *rest).index_copy_(0, at, values.reshape(len(at), *rest).to(field.dtype))


def _rows(field: Tensor, slots: Tensor, cells: Tensor) -> Tensor:
    return (slots[:, None] * field.shape[1] + cells).reshape(-1)


def flatten(field: Tensor, count: Tensor, depths: tuple[int, ...]) -> Tensor:
    """Rows (B, H, S, ...) of the layout before the rings (target index mod H, one
    column per scored horizon) → (B, Σ depths, ...). ``count`` (B,): the values each
    entity had seen; its pending targets are count … count + s - 1 at horizon s."""
    B, H = field.shape[:2]
    rows, parts = torch.arange(B)[:, None], []
    for s, depth in enumerate(depths):
        cell = torch.arange(depth)[None, :]
        target = count[:, None] + (cell - count[:, None]) % depth  # (B, depth): ≡ cell mod depth
        parts.append(field[rows, target % H, s])
    return torch.cat(parts, dim=1)


def remap(field: Tensor, written: tuple[int, ...], now: tuple[int, ...]) -> Tensor:
    """Rows (B, Σ written, ...) kept in one ring per ``written`` scored horizon →
    (B, Σ now, ...): a horizon in both keeps its ring (s cells for horizon s, the same
    targets), a new one starts with nothing pending (NaN), a dropped one is dropped."""
    if tuple(written) == tuple(now):
        return field
    if field.shape[1] != sum(written):
        raise ValueError(f"{field.shape[1]} cells for the rings of {written}")
    start = dict(zip(written, offsets(written).tolist(), strict=True))
    parts = [field[:, start[s]:start[s] + s] if s in start
             else field.new_full((len(field), s, *field.shape[2:]), float("nan"))
             for s in now]
    return torch.cat(parts, dim=1)
