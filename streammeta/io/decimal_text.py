"""Rows of floats as JSON number text in bulk, by integer arithmetic over whole arrays.

A forecast's numbers are rounded to six significant digits of the row's largest
(:func:`significands`): each is an integer ``k`` (``|k| < 10**6``) times ``10**-d``,
one ``d`` for the whole row. Where ``1 <= d <= 6`` the text of every number of the
row has the same width, and its text, comma included, is one ``uint64``: the sum of
two table look-ups, one for the first two digits of ``k`` (with the sign, the point,
the comma and leading spaces in place), one for the last four. It is stored into the
message buffer with the keys between the arrays at fixed offsets
(:func:`fixed_width`). Other rows (a largest value under 0.1 or from 10**5,
non-finite) are left to a float formatter. No Python runs per number and no formatting call either.

The text reads back as exactly the rounded float: ``k / 10**d`` in float64 is
correctly rounded because ``k`` and ``10**d`` (``d <= 22``) are exact, and so is a
JSON parser's reading of the decimal text. It may differ from the shortest
representation in the bytes only: trailing zeros (``21.5000``) and spaces before a
number (``[ 9.87654,12.3456]``), both plain JSON.
"""

from __future__ import annotations

import functools

import numpy as np

SIGNIFICANT_DIGITS = 6
WIDEST = 9  # bytes a number may take on the fixed-width path, its comma included
_LIMIT = 10 ** SIGNIFICANT_DIGITS


def significands(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(B, ...) values → ((B, N) float64 integers ``k``, (B,) float64 ``10**d``):
    each row rounded to ``digits`` significant digits of its largest is ``k / 10**d``."""
    flat = values.reshape(len(values), -1).astype(np.float64)  # a copy: rounded in place
    largest = np.abs(flat).max(axis=1, initial=0.0)
    exponent = np.floor(np.log10(np.where(largest > 0, largest, 1.0)))
    scale = 10.0 ** (digits - 1 - exponent)  # (B,)
    np.multiply(flat, scale[:, None], out=flat)
    np.round(flat, out=flat)
    return flat, scale


def layouts(k: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B,) the ``d`` of each row whose numbers :func:`fixed_width` can write, else -1
    (finite, ``|k| < 10**6``, ``1 <= d <= 6``: the row's largest in [0.1, 10**5), and
    no negative number where ``d == 6``; with a point in every text, each reads back as
    a float, ``-0.0`` included); (B,) whether the row has a negative number
    (its texts then have a sign column)."""
    negative = np.signbit(k).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.log10(scale)
        largest = np.maximum(k.max(axis=1, initial=0.0), -k.min(axis=1, initial=0.0))
    ok = np.isfinite(d) & (d >= 1) & (d <= 6) & (largest < _LIMIT)
    ok &= ~((d > 5.5) & negative)
    return np.where(ok, np.round(np.where(ok, d, 0.0)), -1).astype(np.int64), negative


def fixed_width(k: np.ndarray, d: int, signed: bool) -> tuple[np.ndarray, int]:
    """Integers ``k`` (float64, ``|k| < 10**6``) read as ``k·10**-d`` → (the text of
    each, comma last, as a ``uint64``; the width in bytes, 8 or 9). A width of 9
    leaves the comma out of the word: the buffer it is stored into holds it.
    ``signed``: a sign column (some ``k`` negative); with ``d == 6`` that needs 10
    bytes, which the caller keeps off (:func:`layouts`).

    The word is two table look-ups added: the first two digits of ``|k|`` (with the
    sign, the point, the comma and leading spaces) and the last four."""
    high, low, leading = _tables(d, signed)
    if signed:
        negative = np.signbit(k)
        a = np.abs(k).astype(np.int64)
    else:
        a = k.astype(np.int64)
    hi = a // 10_000
    lo = np.multiply(hi, 10_000)
    np.subtract(a, lo, out=lo)
    if leading:  # leading zeros among the last four digits: their own table where hi = 0
        np.add(lo, (hi == 0) * 10_000, out=lo)
        if signed:
            np.add(lo, negative * 20_000, out=lo)
    if signed:
        np.add(hi, negative * 100, out=hi)
    words = high.take(hi)
    np.add(words, low.take(lo), out=words)
    return words, 9 if signed or d == 6 else 8


@functools.cache
def _tables(d: int, signed: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """The look-up tables of :func:`fixed_width` for one layout, and whether the last
    four digits can hold leading zeros of the integer part (``d <= 3``). Made once per
    layout a process meets (tens of ms; at most 11 layouts, 320 KB each). Little-endian
    words ("<u8") whatever the machine, so the bytes stored are the text in order."""
    if not 1 <= d <= 6 or (signed and d == 6):
        raise ValueError(f"decimals {d}, signed {signed}: not fixed-width")
    width = (6 - d if d < 6 else 1) + 1 + d + signed  # characters before the comma

    def word(a: int, negative: bool) -> int:
        integer, fraction = divmod(a, 10 ** d)
        text = f"{'-' if negative else ''}{integer}.{fraction:0{d}d}".rjust(width)
        return int.from_bytes(text.encode() + (b"," if width < 8 else b""), "little")

    leading = d <= 3
    signs = (False, True) if signed else (False,)
    high = [word(h * 10_000, n) if h or not leading else 0 for n in signs for h in range(100)]
    base = word(10_000, False)
    low = [word(10_000 + lo, False) - base for lo in range(10_000)]
    if leading:  # where hi = 0 the whole word, by sign
        low += [word(lo, False) for lo in range(10_000)]
        if signed:
            low += low[:10_000] + [word(lo, True) for lo in range(10_000)]
    return np.array(high, dtype="<u8"), np.array(low, dtype="<u8"), leading
