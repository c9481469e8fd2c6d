"""Command line: ``streammeta run | train | demo | replay | pretrain | evaluate | check-config``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from streammeta import __version__, envvars, logs
from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.errors import StreamMetaError
from streammeta.io.datasets import Series
from streammeta.serve.stopping import StartAbandoned, Stopper, install_stop_handlers

log = logging.getLogger("streammeta")

DEFAULT_CONFIG = "config.toml"
FORMAT_HELP = ("m4: M4's wide CSV (also M1 in its shape); long: columns entity, ts, value or "
               "Nixtla's unique_id, ds, y, as CSV or, named *.parquet, Parquet (needs pandas "
               "and pyarrow); ett: the ETT CSVs")


def _config_path(given: str | None) -> str | None:
    """--config, else $STREAMMETA_CONFIG, else ./config.toml when present, else defaults only."""
    if given:
        return given
    if os.environ.get("STREAMMETA_CONFIG"):
        return os.environ["STREAMMETA_CONFIG"]
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None


def load_config(args: argparse.Namespace) -> Config:
    config = config_mod.load(_config_path(getattr(args, "config", None)))
    if getattr(args, "init", None):
        config = config.replace("model", init=args.init)
    return config


def _setup_logging(config: Config, level: str | None = None) -> None:
    """Logging as ``[log]`` says; then a warning for each STREAMMETA_* variable that
    nothing reads (``check-config`` refuses them)."""
    logs.setup(level or config.log.level, config.log.format)
    for message in envvars.unknown_variables(os.environ, config_mod.sections()):
        log.warning("%s: ignored", message)


# -- subcommands -------------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> int:
    unknown = envvars.unknown_variables(os.environ, config_mod.sections())
    for message in unknown:
        print(f"streammeta: error: {message}", file=sys.stderr)
    config = config_mod.load(args.path if args.path else _config_path(None))
    if config.model.init:  # read as run reads it: not only that the file exists
        _check_init(config)
    if config.meta.device.startswith("cuda"):  # one this machine has, as run needs
        config_mod.resolve_device(config.meta.device)
    if unknown:
        return 2
    text = config_mod.to_toml(config)
    if not config.series.season:  # automatic: the season the frequency gives
        text = text.replace("\nseason = 0\n", f"\nseason = {config.series.resolved_season}"
                            "  # (from the frequency; 0 = automatic)\n", 1)
    print(text, end="")
    return 0


def _check_init(config: Config) -> None:
    """``model.init`` loaded against the shape ``run`` would serve: a file that is no
    parameter file, or one learned for another frequency, season, window, quantiles or
    units, passed check-config and then stopped run."""
    from streammeta.errors import ConfigError
    from streammeta.online.model import ModelShape
    from streammeta.persistence import params as params_io

    try:
        params_io.load(config.model.init, ModelShape.of(config.resolved()),
                       config.series.frequency)
    except StreamMetaError as exc:
        raise ConfigError("model.init", config.model.init,
                          f"a parameter file this configuration can serve ({exc})") from None


class _Served(Protocol):
    def run(self) -> None: ...
    def stop(self) -> None: ...


def _serve(config: Config, start: Callable[[], _Served], abandoned: str) -> int:
    """``start()`` (it waits for the broker and topics) then run until stopped; a
    SIGTERM or SIGINT while it starts abandons the start, logged, and exits 0."""
    _setup_logging(config)
    stopper = Stopper()
    try:
        served = start()
    except StartAbandoned:
        log.info("stopped while starting: %s", abandoned)
        return 0
    stopper.stop = served.stop
    served.run()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args)
    if config.meta.role == "trainer":
        return _train(config)

    def start() -> _Served:
        from streammeta.serve.service import Service  # torch: seconds of a start too

        return Service(config)

    return _serve(config, start, "nothing was consumed, nothing to commit")


def cmd_train(args: argparse.Namespace) -> int:
    return _train(load_config(args).replace("meta", role="trainer"))


def _train(config: Config) -> int:
    def start() -> _Served:
        from streammeta.serve.trainer import Trainer

        return Trainer(config)

    return _serve(config, start, "nothing was trained")


def cmd_demo(args: argparse.Namespace) -> int:
    from streammeta.serve.demo import run_demo

    config = load_config(args)
    _setup_logging(config, None if args.verbose else "WARNING")
    return run_demo(config, data=args.data, fmt=args.format, rate=args.rate,
                    duration=args.duration, install_handlers=install_stop_handlers)


def cmd_replay(args: argparse.Namespace) -> int:
    from streammeta.evaluation.protocols import check_calendar, check_step
    from streammeta.io import datasets
    from streammeta.io.edge import make_writer
    from streammeta.io.replay import replay

    config = load_config(args)
    _setup_logging(config)
    if args.bootstrap_servers:
        config = config.replace("kafka", bootstrap_servers=args.bootstrap_servers)
    if args.topic:
        config = config.replace("kafka", input_topic=args.topic)
    kafka = config.kafka
    series = datasets.load(args.data, args.format, config.series.frequency)
    check_step(series, config.series, args.data, step_ms=True)  # what the daemon would
    check_calendar(series, config.series, args.data)  # reject, or take as gaps: refused
    entities, ts, values = datasets.interleave(series)
    writer = make_writer(kafka)
    stop = threading.Event()
    install_stop_handlers(stop.set)
    try:
        sent = replay(entities, ts, values, writer.send, rate=args.rate, limit=args.limit,
                      progress=not args.quiet, stop=stop)
        writer.flush()
    finally:
        writer.close()
    print(f"sent {sent} observations to {kafka.input_topic}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from streammeta.evaluation.protocols import check_calendar, check_step, for_data
    from streammeta.io import datasets
    from streammeta.meta.pretrain import pretrain, too_short, worse

    _check_outputs(out=args.out)  # before the training, not after it
    config = load_config(args)
    _setup_logging(config)
    series = datasets.load(args.data, args.format, config.series.frequency)
    check_step(series, config.series, args.data)
    check_calendar(series, config.series, args.data)
    config = for_data(config.for_values(s.values for s in series), args.data, args.format,
                      series)
    reason = too_short(config, series)
    if reason:
        print(f"warning: {reason}", file=sys.stderr)
    result = pretrain(config, args.data, args.format, args.out, steps=args.steps,
                      progress=not args.quiet)
    young = " (young tasks only: no series holds a whole task)" if result["young_only"] else ""
    print(f"wrote {args.out} (season {config.series.season}, horizon "
          f"{config.series.horizon}): {int(result['tasks'])} tasks{young}; held-out meta-loss "
          f"{result['held_out_loss_before']:.4f} → {result['held_out_loss_after']:.4f}")
    if worse(result):
        print(f"warning: {worse(result)}: it overfits the training series (evaluate "
              "--pretrain serves the seeded θ then)", file=sys.stderr)
    kept, note = _backtest_file(config, series, args.out)
    print(note if kept else f"warning: {note}; without --init (model.init) it would",
          file=sys.stdout if kept else sys.stderr)
    return 0


def _backtest_file(config: Config, series: list[Series], path: str) -> tuple[bool, str]:
    """``pretrain``'s check of the file it wrote from ``series``: the backtest at each
    held-out series' last H origins, as a final origin is judged."""
    from streammeta.evaluation.backtest import prefer_pretrained
    from streammeta.evaluation.evaluate import engine_config, mean_mase
    from streammeta.evaluation.protocols import final_origin_task, step_of

    H, m = config.series.horizon, config.series.resolved_season
    long_enough = [s for s in series if len(s) > H + 1]
    if not long_enough:
        return True, "no series long enough to backtest"
    # The data's step, as evaluate takes it: with series.step_ms (hourly by default)
    # daily values were 24 steps apart for the engine, and the verdict came from that.
    task = final_origin_task(long_enough, None, H, m, step_of(long_enough))
    seeded = engine_config(config, task, "streammeta")
    pretrained = engine_config(config.replace("model", init=path), task, "streammeta")
    assert seeded is not None and pretrained is not None
    return prefer_pretrained(task, seeded, pretrained, series, mean_mase)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from streammeta.evaluation.evaluate import run

    _check_outputs(json=args.json, per_series=args.per_series,
                   forecasts_out=args.forecasts_out, report=args.report)
    # --init may name one file per horizon ("{h}"): evaluate applies it per task.
    config = config_mod.load(_config_path(args.config))
    _setup_logging(config, "WARNING")
    run(args, config)
    return 0


def _check_outputs(report: str | None = None, **files: str | None) -> None:
    """Refuse output paths that cannot be written before the work, which may take
    hours: a directory given for a file (--json DIR), a folder under a file. They
    stopped pretrain and evaluate with a traceback at the end, the results lost."""
    from streammeta.errors import DataError

    wanted = [(f"--{k.replace('_', '-')}", v, False) for k, v in files.items()]
    for option, value, folder in [*wanted, ("--report", report, True)]:
        if not value:
            continue
        path = Path(value)
        if path.is_dir() != folder and path.exists():
            raise DataError(f"{option} {value}: is a {'file' if folder else 'directory'}, "
                            f"expected {'a directory' if folder else 'a file name'}")
        try:
            (path if folder else path.parent).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{option} {value}: cannot create its directory "
                            f"({exc.strerror or exc}: {exc.filename})") from None


# -- parser --------------------------------------------------------------------------
def _at_least_zero(text: str) -> float:
    """A rate or a duration: a finite number >= 0 (argparse names the option)."""
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return number


def _whole(low: int) -> Callable[[str], int]:
    """An integer >= ``low`` (argparse names the option): --batch-size 0 and --horizon -2
    stopped evaluate with a traceback, --batch-size -1 scored nothing with exit 0,
    --limit-series -3 left the last 3 series out, silently."""
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = low - 1
        if number < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return number

    parse.__name__ = f"integer >= {low}"  # argparse's "invalid <name> value" otherwise
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streammeta",
        description="Streaming online meta-learning forecaster: observations from Kafka in, "
        "per-entity forecasts to Kafka out.")
    parser.add_argument("-V", "--version", action="version",
                        version=f"streammeta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], int],
            config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        if config:
            p.add_argument("--config", metavar="PATH",
                           help="config.toml to read (default: $STREAMMETA_CONFIG, else "
                           "./config.toml if present, else built-in defaults); any key can "
                           "be overridden by STREAMMETA_<SECTION>_<KEY>")
        return p

    run = add("run", "Run the daemon: consume observations, publish forecasts, serve "
              "/metrics, /healthz and /readyz, until SIGTERM or SIGINT.", cmd_run)
    run.add_argument("--init", metavar="FILE", help="parameter file to start from")

    train = add("train", "Run the deployment's one trainer (meta.role = trainer): meta-learn "
                "on the task samples the ingesting replicas send, on meta.device, and publish "
                "promoted versions to meta.versions_topic, until SIGTERM or SIGINT.", cmd_train)
    train.add_argument("--init", metavar="FILE", help="parameter file to start from when "
                       "the versions topic is empty")

    demo = add("demo", "Start an embedded Kafka-compatible broker (Tansu), replay bundled M4 "
               "hourly data into it and run the daemon on it, printing live progress.",
               cmd_demo)
    demo.add_argument("--rate", type=_at_least_zero, default=500.0,
                      help="observations per second to replay (default 500: the bundled "
                      "data then lasts about 100 s, long enough for the outer loop to "
                      "promote a few versions; 0 = unpaced)")
    demo.add_argument("--duration", type=_at_least_zero, default=None, metavar="SECONDS",
                      help="stop after this many seconds (default: until Ctrl-C or the data "
                      "is consumed)")
    demo.add_argument("--data", metavar="PATH", help="data set to replay instead of the "
                      "bundled M4 hourly subset")
    demo.add_argument("--format", choices=("m4", "long", "ett"), default="m4",
                      help=FORMAT_HELP)
    demo.add_argument("--init", metavar="FILE", help="parameter file to start from")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the daemon's log")

    replay = add("replay", "Write a data set (M4 wide CSV, long CSV or Parquet, or ETT CSV) "
                 "to the input topic as observations, at a chosen rate.", cmd_replay)
    replay.add_argument("--data", required=True, metavar="PATH")
    replay.add_argument("--format", choices=("m4", "long", "ett"), required=True,
                        help=FORMAT_HELP)
    replay.add_argument("--rate", type=_at_least_zero, default=0.0,
                        help="observations per second (default 0 = as fast as possible)")
    replay.add_argument("--limit", type=_whole(0), default=None, help="stop after N observations")
    replay.add_argument("--bootstrap-servers", help="override kafka.bootstrap_servers")
    replay.add_argument("--topic", help="override kafka.input_topic")
    replay.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    pre = add("pretrain", "Meta-train θ offline on a data set and write a parameter file "
              "for --init (meta-transfer); shows a progress bar.", cmd_pretrain)
    pre.add_argument("--data", required=True, metavar="PATH")
    pre.add_argument("--format", choices=("m4", "long", "ett"), required=True,
                     help=FORMAT_HELP)
    pre.add_argument("--out", required=True, metavar="FILE", help="parameter file to write")
    pre.add_argument("--steps", type=_whole(1), default=500, help="meta-updates (default 500)")
    pre.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    evaluate = add("evaluate", "Back-test the engine (no Kafka) on a data set replayed as a "
                   "stream, against baselines and ablations: a table, --json, --report with "
                   "plots, --forecasts-out, --per-series.", cmd_evaluate)
    evaluate.add_argument("--data", required=True, metavar="PATH",
                          help="data file, or the M4 folder holding Hourly-train.csv")
    evaluate.add_argument("--format", choices=("m4", "long", "ett"), required=True,
                          help=FORMAT_HELP)
    evaluate.add_argument("--protocol", choices=("final-origin", "rolling", "ett"),
                          required=True)
    evaluate.add_argument("--horizon", type=_whole(1), help="forecast steps (default: "
                          "series.horizon where set, else an M4 file's subset's by its name, "
                          "e.g. 18 for Monthly-train.csv; 1, 24 and 48 for the ett protocol; "
                          "else series.horizon)")
    evaluate.add_argument("--season", type=_whole(1), help="seasonal period in steps (default: "
                          "series.season where set, else an M4 file's subset's by its name, "
                          "e.g. 12 for Monthly-train.csv; else series.freq's, else the data's "
                          "step's: 24 hourly (ETTh), 96 for 15min (ETTm), 7 daily, 12 for MS)")
    evaluate.add_argument("--init", metavar="FILE", help="parameter file to start from; "
                          "'{h}' in the name is replaced by the horizon")
    evaluate.add_argument("--pretrain", type=_whole(0), metavar="STEPS", help="meta-train offline "
                          "first on the training values (ett: train rows; final-origin: the "
                          "training parts)")
    evaluate.add_argument("--methods", nargs="+", metavar="METHOD",
                          help="methods to run (default all): streammeta no-adaptation "
                          "no-outer-loop no-memory no-guard naive seasonal-naive naive2 "
                          "holt-winters snarimax auto-ets auto-arima auto-theta (the last "
                          "three: statsforecast peers, skipped if it is not installed)")
    evaluate.add_argument("--peer-origins", type=_whole(1), metavar="K", help="rolling, ett: the "
                          "peers refit about K times per entity, every whole number of "
                          "seasons (default 4; ett 8)")
    evaluate.add_argument("--peer-series", type=_whole(1), metavar="N", help="the peers forecast "
                          "N entities only, evenly spaced (default all); every method is "
                          "also scored on them (slice 'peers')")
    evaluate.add_argument("--peer-window", type=_whole(1), metavar="W", help="the peers fit the "
                          "last W values of each history (default all; ett 30 seasons)")
    evaluate.add_argument("--limit-series", type=_whole(1), metavar="N",
                          help="only the first N series")
    evaluate.add_argument("--warmup", type=_whole(1), metavar="W", help="rolling: values before "
                          "an entity's first scored forecast (default 3 seasons, at most "
                          "half the median series' length and its length less H, at "
                          "least a season and one)")
    evaluate.add_argument("--arrival-gap", type=_whole(0), default=0, metavar="STEPS",
                          help="rolling: series k starts k*STEPS steps after the first")
    evaluate.add_argument("--batch-size", type=_whole(1), default=5000,
                          help="records per engine batch (default 5000; at most "
                          "--outer-every while the outer loop is on)")
    evaluate.add_argument("--outer-every", type=_whole(0), metavar="N", help="observations between "
                          "outer-loop runs (default meta.every_observations)")
    evaluate.add_argument("--forecasts-out", metavar="CSV", help="write the engine's "
                          "forecasts (final-origin: M4 submission shape id,F1..FH)")
    evaluate.add_argument("--per-series", metavar="CSV", help="write every method's "
                          "sMAPE, MASE, pinball and coverage per entity (its mean over "
                          "the entity's scored forecasts)")
    evaluate.add_argument("--json", metavar="OUT", help="write the results as JSON")
    evaluate.add_argument("--report", metavar="DIR", help="write report.md and PNG plots")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    check = add("check-config", "Print the effective configuration (file + environment, "
                "secrets masked); exit 2 naming the key, value and expectation if invalid, "
                "or naming each STREAMMETA_* variable that no key reads.",
                cmd_check_config, config=False)
    check.add_argument("path", nargs="?", metavar="PATH", help="config file (default as run)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StreamMetaError as exc:
        print(f"streammeta: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before a command's own handlers (or with none)
        print("streammeta: interrupted", file=sys.stderr)
        return 130
