"""Replaying a data set as a stream of observations, at a chosen rate.

The sender is any ``send(key, value)`` callable — the Kafka producer behind
``streammeta replay`` and ``demo``, or a list's ``append`` in tests — so nothing
here touches Kafka.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from streammeta.io import datasets
from streammeta.io.codec import encode_observation
from streammeta.io.frequency import Frequency

# Pacing works in bursts of about this much traffic: one clock check per burst
# instead of one sleep per record, yet smooth enough for a consumer to see a rate.
BURST_S = 0.02
MAX_BURST = 1000  # also how often an unpaced replay looks at the stop event
# When the sender stalls (a broker applying back-pressure) for longer than this,
# the schedule restarts instead of catching up with a flood.
MAX_BEHIND_S = 1.0


def observations_from_file(path: datasets.PathLike, fmt: str, arrival_gap_steps: int = 0,
                           frequency: Frequency | None = None
                           ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The interleaved stream of a data file (see :func:`datasets.interleave`); an M4
    file's values placed on ``frequency``'s clock (``datasets.load``)."""
    return datasets.interleave(datasets.load(path, fmt, frequency), arrival_gap_steps)


def replay(
    entities: Sequence[str],
    ts: np.ndarray,
    values: np.ndarray,
    send: Callable[[bytes, bytes], None],
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Encode each observation (:func:`codec.encode_observation`) and ``send`` its key
    and value, in order, at about ``rate`` observations per second (None or 0: as
    fast as ``send`` allows). Stops after ``limit`` observations or as soon as
    ``stop`` is set; returns how many were sent."""
    if not len(entities) == len(ts) == len(values):
        raise ValueError(f"entities, ts and values differ in length: "
                         f"{len(entities)}, {len(ts)}, {len(values)}")
    if rate is not None and rate < 0:
        raise ValueError(f"rate must be >= 0, got {rate}")
    total = len(entities) if limit is None else max(0, min(limit, len(entities)))
    burst = max(1, min(MAX_BURST, int(rate * BURST_S))) if rate else MAX_BURST
    ts_list, value_list = ts.tolist(), values.tolist()  # Python ints/floats for the JSON
    sent = 0
    anchor, anchor_sent = time.monotonic(), 0  # the schedule: anchor_sent at anchor
    with tqdm(total=total, unit="obs", disable=not progress, smoothing=0.1) as bar:
        while sent < total and not (stop is not None and stop.is_set()):
            end = min(total, sent + burst)
            for i in range(sent, end):
                send(*encode_observation(entities[i], ts_list[i], value_list[i]))
            bar.update(end - sent)
            sent = end
            if not rate or sent == total:
                continue
            now = time.monotonic()
            ahead = anchor + (sent - anchor_sent) / rate - now
            if ahead > 0:
                if stop is not None:
                    stop.wait(ahead)  # wakes at once when stopped
                else:
                    time.sleep(ahead)
            elif ahead < -MAX_BEHIND_S:
                anchor, anchor_sent = now, sent
    return sent
