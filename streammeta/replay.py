"""Replaying a data set as a stream of observations, at a chosen rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from streammeta import datasets
from streammeta.codec import encode_observation

_BURST = 200  # observations sent between pacing checks


def observations_from_file(path: str, fmt: str, arrival_gap_steps: int = 0
                           ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The interleaved stream of a data file (see :func:`datasets.interleave`)."""
    return datasets.interleave(datasets.load(path, fmt), arrival_gap_steps)


def replay(
    entities: list[str],
    ts: np.ndarray,
    values: np.ndarray,
    send: Callable[[bytes, bytes], None],
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Encode and ``send`` each observation in order, at most ``rate`` per second
    (None or 0: as fast as possible). Returns how many were sent."""
    total = len(entities) if limit is None else min(limit, len(entities))
    ts_list, value_list = ts.tolist(), values.tolist()
    started = time.monotonic()
    bar = tqdm(total=total, unit="obs", disable=not progress)
    sent = 0
    try:
        while sent < total and not (stop is not None and stop.is_set()):
            end = min(total, sent + _BURST)
            for i in range(sent, end):
                send(*encode_observation(entities[i], ts_list[i], value_list[i]))
            bar.update(end - sent)
            sent = end
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    if stop is not None:
                        stop.wait(ahead)
                    else:
                        time.sleep(ahead)
    finally:
        bar.close()
    return sent
