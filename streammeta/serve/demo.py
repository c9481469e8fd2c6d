"""``streammeta demo``: embedded broker + bundled data + the daemon, with live progress."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from streammeta.config import Config
from streammeta.errors import ConfigError
from streammeta.serve.daemon import Progress

if TYPE_CHECKING:
    from streammeta.meta.outer import OuterResult
    from streammeta.serve.service import Service


def run_demo(
    config: Config,
    data: str | None,
    fmt: str,
    rate: float,
    duration: float | None,
    install_handlers: Callable[[Callable[[], None]], None],
) -> int:
    from streammeta.evaluation.protocols import check_calendar, check_step
    from streammeta.io import datasets
    from streammeta.io.broker import EmbeddedBroker
    from streammeta.io.edge import ensure_topics, make_writer
    from streammeta.io.replay import replay
    from streammeta.serve.service import Service

    if config.meta.role != "all":  # before the broker: one process has no trainer
        raise ConfigError("meta.role", config.meta.role, "all in the demo (one process: "
                          "roles ingest and trainer are for `streammeta run` replicas beside "
                          "one `streammeta train`)")
    path = data if data else str(datasets.bundled_m4())
    series = datasets.load(path, fmt, config.series.frequency)
    check_step(series, config.series, path, step_ms=True)  # as replay: not data the
    check_calendar(series, config.series, path)  # daemon would reject or fill as gaps
    entities, ts, values = datasets.interleave(series)
    if threading.current_thread() is threading.main_thread():
        # Until the daemon's handlers take over, SIGTERM unwinds as Ctrl-C does, so the
        # broker (in a session of its own, out of the terminal's reach) is stopped on the
        # way out; killed by SIGTERM's default action it kept running, orphaned.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"streammeta demo: {len(entities)} observations of {len(set(entities))} entities "
          f"from {path}")
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="streammeta-") as state:
        # The embedded broker forgets everything when it stops: so must the demo's state.
        config = config.replace("kafka", bootstrap_servers=broker.bootstrap,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
        config = config.replace("checkpoint", dir=state)
        # A short demo should show the outer loop at work: run it every few seconds, and
        # let it take half the CPU (the replay is rate-limited: ingestion has room).
        config = config.replace("meta", every_s=min(config.meta.every_s, 5.0),
                                cpu_share=max(config.meta.cpu_share, 0.5))
        if config.memory.enabled and not config.memory.topic:  # shared, as replicas would
            config = config.replace("memory", topic="streammeta.memory")
        ensure_topics(config.kafka, memory_topic=config.memory.topic)
        print(f"embedded Tansu broker on {broker.bootstrap}; topics {config.kafka.input_topic} "
              f"→ {config.kafka.forecast_topic} (+ {config.kafka.dead_letter_topic}, "
              f"memory {config.memory.topic or 'off'})")
        service = Service(config, on_progress=_print_progress)
        service.daemon.progress_every_s = 2.0
        if service.outer is not None:  # each verdict as it comes, beside the metrics
            service.outer.on_result = _also(service.outer.on_result, _print_verdict)
        install_handlers(service.stop)
        stop_replay = threading.Event()
        writer = make_writer(config.kafka)
        sent = [0]

        def feed() -> None:
            sent[0] = replay(entities, ts, values, writer.send, rate=rate or None,
                             stop=stop_replay)
            writer.flush()

        feeder = threading.Thread(target=feed, name="demo-replay", daemon=True)
        feeder.start()
        if duration is not None:
            timer = threading.Timer(duration, service.stop)
            timer.daemon = True
            timer.start()
        done = threading.Thread(target=_stop_when_drained,
                                args=(service, feeder, len(entities)), daemon=True)
        done.start()
        if service.metrics_url:
            print(f"metrics: {service.metrics_url}  (also /healthz, /readyz)")
        print("replaying at " + (f"{rate:.0f} obs/s" if rate else "full speed")
              + "; Ctrl-C to stop")
        service.run()
        stop_replay.set()
        feeder.join(timeout=10)
        writer.close()
        d = service.daemon
        print(f"done: {d.observations} observations → {d.forecasts} forecasts, "
              f"{d.dead_letters} dead letters, {len(d.engine)} entities; online error "
              f"{_fmt(d.engine.online_error['streammeta'])} vs seasonal naive "
              f"{_fmt(d.engine.online_error['seasonal_naive'])}; "
              f"{d.engine.memory_entries or 0} memory entries")
        print(_outer_summary(service))
    return 0


def _outer_summary(service: Service) -> str:
    """The outer loop's tally: what the published forecasts' ``model_version`` went through."""
    outer, served = service.outer, service.daemon.engine.version
    if outer is None:
        return f"outer loop off; model v{served}"
    promoted = sum(r.promoted for r in outer.results)
    return (f"outer loop: {len(outer.results)} runs, {promoted} promoted, "
            f"{len(outer.results) - promoted} rejected; forecasts ended on model v{served}")


def _also(first: Callable[[OuterResult], None] | None,
          then: Callable[[OuterResult], None]) -> Callable[[OuterResult], None]:
    def both(result: OuterResult) -> None:
        if first is not None:
            first(result)
        then(result)
    return both


def _print_verdict(r: OuterResult) -> None:
    print(f"outer loop: v{r.version} {'promoted' if r.promoted else 'rejected'} (held-out "
          f"loss {r.candidate_loss:.4f} vs serving {r.serving_loss:.4f}, {r.seconds:.1f} s)",
          flush=True)


def _stop_when_drained(service: Service, feeder: threading.Thread, total: int) -> None:
    """Stop once the replay has finished and every record was processed."""
    daemon = service.daemon
    while not daemon.stopping:
        consumed = daemon.observations + daemon.dead_letters
        if not feeder.is_alive() and consumed >= total:
            daemon.stop()
            return
        time.sleep(0.2)


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"


def _print_progress(p: Progress) -> None:
    print(f"[{p.seconds:6.1f} s] {p.observations:>9} obs  {p.events_per_s:>8.0f} obs/s  "
          f"{p.entities:>6} entities  model v{p.model_version}  online error "
          f"{_fmt(p.error_model)} (seasonal naive {_fmt(p.error_naive)})", flush=True)
