"""Where a running daemon's CPU goes, by component: py-spy sampling every thread.

``throughput.py --profile`` starts py-spy on its own process once the untimed
warm-up is drained, stops it when the timed run ends, and prints the split below:
each sample (a running thread's stack) goes to the component of the innermost
frame that a rule names, so task samples taken inside the engine's round count
as samples, not engine. Samples with no rule's frame are "other (Python)";
librdkafka's own threads run no Python and are not sampled (their CPU is the
``rdk:*`` figure of ``thread_cpu``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass

RATE = 200  # samples per second per running thread

# (component, frame substring): checked from the innermost frame outwards.
RULES = [
    ("task samples", "(streammeta/meta/tasks.py"),
    ("task samples", "(streammeta/meta/samples.py"),
    ("outer loop / trainer", "(streammeta/meta/"),
    ("outer loop / trainer", "(streammeta/serve/trainer.py"),
    ("checkpoint", "(streammeta/persistence/"),
    ("checkpoint", "(streammeta/serve/keeper.py"),
    ("encode forecasts", "format (streammeta/io/codec.py"),
    ("encode forecasts", "_keyed"),
    ("decode observations", "decode (streammeta/io/codec.py"),
    ("decode observations", "_all_valid (streammeta/io/codec.py"),
    ("produce", "send_forecasts ("),
    ("produce", "send_dead_letters ("),
    ("flush (acks wait)", "flush (streammeta/io/"),
    ("poll", "poll (streammeta/io/confluent.py"),
    ("poll", "poll (streammeta/io/kafka.py"),
    ("commit", "commit (streammeta/io/"),
    ("engine step", "process (streammeta/online/engine.py"),
    ("metrics / health", "_gauges (streammeta/serve/daemon.py"),
    ("metrics / health", "_count (streammeta/serve/daemon.py"),
    ("metrics / health", "_beat (streammeta/serve/daemon.py"),
    ("metrics / health", "(streammeta/serve/metrics.py"),
    ("metrics / health", "(prometheus_client/"),
    ("daemon loop (rest)", "(streammeta/serve/daemon.py"),
    ("delivery (rest)", "(streammeta/serve/delivery.py"),
    ("benchmark watcher", "watch (benchmarks/throughput.py"),
]


@dataclass
class Spy:
    process: subprocess.Popen[bytes]
    path: str


def start(pid: int) -> Spy:
    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    path = os.path.join(tempfile.mkdtemp(prefix="spy-"), "raw.txt")
    process = subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--threads", "--nonblocking",
         "--format", "raw", "--output", path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Spy(process, path)


def stop(spy: Spy) -> dict[str, Counter[str]]:
    """Samples by thread, then by component."""
    spy.process.send_signal(signal.SIGINT)
    spy.process.wait(60)
    by_thread: dict[str, Counter[str]] = {}
    with open(spy.path) as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            thread = frames[0]
            by_thread.setdefault(thread, Counter())[component(frames[1:])] += int(count)
    return by_thread


def component(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needle in RULES:
            if needle in frame:
                return name
    return "other (Python)"


def report(by_thread: dict[str, Counter[str]], observations: int, cpu_s: float) -> str:
    """µs of sampled CPU per observation by component (and by thread)."""
    total = Counter[str]()
    for counts in by_thread.values():
        total.update(counts)
    samples = sum(total.values())
    per_obs = 1e6 / RATE / observations
    lines = [f"py-spy over the timed window: {samples} samples at {RATE}/s, "
             f"{samples / RATE:.1f} s sampled of {cpu_s:.1f} CPU-s of the process "
             f"({observations:,} observations)",
             "| component | µs / observation | share |", "|---|---|---|"]
    for name, count in total.most_common():
        lines.append(f"| {name} | {count * per_obs:.1f} | {count / samples:.0%} |")
    for thread, counts in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
        top = ", ".join(f"{n} {c * per_obs:.1f}" for n, c in counts.most_common(6))
        lines.append(f"{thread}: {sum(counts.values()) * per_obs:.1f} µs/obs ({top})")
    return "\n".join(lines)


class Meter:
    """Exact CPU time (``time.thread_time``) of named calls on the daemon's objects,
    on whichever thread makes them; ``reset`` at the start of the timed window."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.rounds: list[int] = []  # rows of each engine round
        self.batches: list[int] = []  # observations of each engine call

    def wrap(self, obj: object, method: str, name: str) -> None:
        import time

        inner = getattr(obj, method)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.cpu[name] += time.thread_time() - started
                self.calls[name] += 1

        setattr(obj, method, timed)

    def watch_gc(self) -> None:
        """The cyclic garbage collector's CPU, on whichever thread it runs."""
        import gc
        import time

        started: dict[str, float] = {}

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started["t"] = time.thread_time()
            elif "t" in started:
                self.cpu[f"garbage collector (gen {info['generation']})"] += (
                    time.thread_time() - started.pop("t"))
                self.calls[f"garbage collector (gen {info['generation']})"] += 1

        gc.callbacks.append(callback)

    def watch_rounds(self) -> None:
        from streammeta.online import rounds

        split = rounds.split

        def counted(slots: object) -> list[object]:
            parts = split(slots)  # type: ignore[arg-type]
            self.rounds.extend(len(p) for p in parts)  # type: ignore[arg-type]
            self.batches.append(sum(len(p) for p in parts))  # type: ignore[arg-type]
            return parts  # type: ignore[return-value]

        rounds.split = counted  # type: ignore[assignment]

    def reset(self) -> None:
        self.cpu.clear()
        self.calls.clear()
        self.rounds.clear()
        self.batches.clear()

    def report(self, observations: int, cpu_s: float, rdkafka_s: float) -> str:
        lines = ["| component (exact thread CPU) | µs / observation | calls |", "|---|---|---|"]
        for name, seconds in self.cpu.most_common():
            lines.append(f"| {name} | {seconds / observations * 1e6:.1f} | "
                         f"{self.calls[name]} |")
        rest = cpu_s - sum(self.cpu.values()) - rdkafka_s
        lines.append(f"| librdkafka's threads | {rdkafka_s / observations * 1e6:.1f} | |")
        lines.append(f"| the rest of the process | {rest / observations * 1e6:.1f} | |")
        lines.append(f"| process total | {cpu_s / observations * 1e6:.1f} | |")
        if self.rounds:
            r = sorted(self.rounds)
            b = sorted(self.batches)
            lines.append(f"engine calls {len(b)}: observations per call median "
                         f"{b[len(b) // 2]}; rounds {len(r)}: rows median {r[len(r) // 2]}, "
                         f"p10 {r[len(r) // 10]}, p90 {r[len(r) * 9 // 10]}")
        return "\n".join(lines)
