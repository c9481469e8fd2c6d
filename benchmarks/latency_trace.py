"""`streammeta run` with a timeline of its rounds, for ``latency.py``.

    python benchmarks/latency_trace.py OUT.json run --config CONFIG

Runs the CLI unchanged, with the daemon's methods wrapped to note wall-clock times
(``time.time()``, comparable with the benchmark's own): per round the poll's call and
return, the records' count, the engine step's start and end; on the delivery thread
each batch's encoding and sending; the loop's waits for a batch's acknowledgement;
the outer loop's runs and the collector's passes. Written to OUT.json on exit. The
wrappers cost a few microseconds a round (rounds hold hundreds of records or more).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

events: dict[str, list[list[float]]] = {
    "rounds": [],  # poll called, poll returned, records, engine start, engine end
    "encode": [],  # start, encoded, sent (delivery thread), forecasts
    "complete": [],  # the loop's wait for the batch in flight: start, end
    "outer": [],  # an outer-loop run: start, end
    "gc": [],  # a collector pass of generation 2: start, end
}


def _timed(owner: Any, name: str, note: Callable[[float, float, Any, tuple[Any, ...]], None]
           ) -> None:
    original = getattr(owner, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        out = original(self, *args, **kwargs)
        note(start, time.time(), out, args)
        return out

    setattr(owner, name, wrapper)


def install() -> None:
    from streammeta.io.confluent import ConfluentSource
    from streammeta.meta.outer import OuterLoop
    from streammeta.online.engine import Engine
    from streammeta.serve.delivery import Delivery

    def polled(start: float, end: float, out: Any, _args: tuple[Any, ...]) -> None:
        if len(out):
            events["rounds"].append([start, end, len(out), 0.0, 0.0])

    def stepped(start: float, end: float, _out: Any, _args: tuple[Any, ...]) -> None:
        if events["rounds"] and not events["rounds"][-1][3]:
            events["rounds"][-1][3:5] = [start, end]

    def submitted(self: Any, batch: Any) -> None:
        encode = batch.encode

        def timed() -> Any:
            start = time.time()
            messages = encode()
            events["encode"].append([start, time.time(), 0.0, len(messages)])
            return messages

        batch.encode = timed
        submit(self, batch)

    def sent(_start: float, end: float, _out: Any, _args: tuple[Any, ...]) -> None:
        if events["encode"] and not events["encode"][-1][2]:
            events["encode"][-1][2] = end

    _timed(ConfluentSource, "poll", polled)
    _timed(Engine, "process", stepped)
    submit = Delivery.submit
    Delivery.submit = submitted  # type: ignore[method-assign]
    _timed(Delivery, "_first_send", sent)
    _timed(Delivery, "complete", lambda s, e, _o, _a: events["complete"].append([s, e]))
    _timed(OuterLoop, "run_once", lambda s, e, _o, _a: events["outer"].append([s, e]))
    started: list[float] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[:] = [time.time()]
        elif started:
            events["gc"].append([started[0], time.time()])

    gc.callbacks.append(collected)


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    install()
    from streammeta.cli import main as cli

    try:
        return cli(argv)
    finally:
        with open(out, "w") as handle:
            json.dump(events, handle)


if __name__ == "__main__":
    sys.exit(main())
