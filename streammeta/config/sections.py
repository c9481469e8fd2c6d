"""The engine's and the service's sections of the configuration (the Kafka edge's
is in ``streammeta.config.kafka``): keys, defaults and what each accepts."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streammeta.errors import ConfigError
from streammeta.io.frequency import DAY_MS, Frequency
from streammeta.io.frequency import parse as parse_frequency


def check(key: str, value: object, ok: bool, expected: str) -> None:
    """A bad value fails with the key, the value and what was expected."""
    if not ok:
        raise ConfigError(key, value, expected)


_CENTURY_MS = 100 * 366 * DAY_MS
TRANSFORMS = ("auto", "none", "asinh")  # series.transform


@dataclass(frozen=True)
class SeriesConfig:
    # The sampling frequency in the pandas/Nixtla spelling: "30min", "h", "D", "W"
    # (fixed steps) or "MS", "QS", "YS", "ME", "QE", "YE" (calendar steps); empty: the
    # fixed step_ms below.
    freq: str = ""
    step_ms: int = 3_600_000
    # Seasonal period in steps; 0 = from the frequency (Frequency.season, resolved by
    # Config.resolved): steps per day for a step that divides a day (24 hourly, 48 for
    # "30min"), 7 daily, 52 weekly, 12 monthly, 4 quarterly, 1 yearly or otherwise.
    season: int = 0
    horizon: int = 48
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    # Gaps up to this many missing steps are filled by linear interpolation
    # (not scored, not learned from as targets); longer gaps restart the entity cold.
    max_gap_fill: int = 48
    max_entity_id_length: int = 256
    max_record_bytes: int = 4096
    # Values the model sees: "asinh" ≈ log for large values (multiplicative seasonality,
    # positive-looking forecasts) and defined for every real; "none" = as they come;
    # "auto": "none" where the data holds a value at or below 0 (signed data has no
    # logarithm), decided where the data is seen first (evaluate, pretrain: the θ file
    # keeps it, and run --init takes it from there), else "asinh" (Config.resolved).
    transform: str = "auto"

    def __post_init__(self) -> None:
        check("series.transform", self.transform, self.transform in TRANSFORMS,
               "auto, none or asinh")
        # At most a century a step: H targets after any timestamp the contract takes
        # (|ts| < 2**62 ms) stay within 64 bits (a wider step wrapped them negative).
        check("series.step_ms", self.step_ms, 1 <= self.step_ms <= _CENTURY_MS,
              "a positive integer (ms) of at most 100 years")
        try:
            frequency = parse_frequency(self.freq, self.step_ms)
        except ValueError as exc:
            # The message after "unknown frequency 'X': " says what is expected.
            why = str(exc).split(": ", 1)[1]
            raise ConfigError("series.freq", self.freq, why.removeprefix("expected ")) from None
        check("series.freq", self.freq, frequency.step <= (
            1200 if frequency.calendar else _CENTURY_MS), "a step of at most 100 years")
        check("series.season", self.season, 0 <= self.season <= 10000,
              "0 (from the frequency) or an integer in [1, 10000]")
        check("series.horizon", self.horizon, 1 <= self.horizon <= 1000, "an integer in [1, 1000]")
        check("series.quantiles", self.quantiles,
               len(self.quantiles) >= 1 and all(0 < q < 1 for q in self.quantiles)
               and list(self.quantiles) == sorted(set(self.quantiles)),
               "a non-empty increasing list of levels in (0, 1)")
        check("series.max_gap_fill", self.max_gap_fill, 0 <= self.max_gap_fill <= 100000,
               "an integer >= 0")
        check("series.max_entity_id_length", self.max_entity_id_length,
               1 <= self.max_entity_id_length <= 4096, "an integer in [1, 4096]")
        check("series.max_record_bytes", self.max_record_bytes,
               64 <= self.max_record_bytes <= 1 << 20, "bytes in [64, 1 MiB]")

    @property
    def frequency(self) -> Frequency:
        """The frequency that ``freq`` (else ``step_ms``) names."""
        return parse_frequency(self.freq, self.step_ms)

    @property
    def resolved_season(self) -> int:
        """``season``, or where it is 0 (automatic) the frequency's (Frequency.season)."""
        return self.season or self.frequency.season


@dataclass(frozen=True)
class ModelConfig:
    # Input window in steps; 0 = from the season (Config.resolved): 7 seasons for
    # sub-daily seasons (m >= 24: a weekly cycle rides on the daily one), else 3, within
    # [16, 168] (168 for hourly data, 36 for monthly).
    window: int = 0
    # Warm (forecasting with the model) after this many values, at least a season and
    # at most the window; 0 = automatic: with an automatic window, 3 seasons if m >= 24,
    # else 2, within [8, 72]; with a window set, the window. A younger entity's window
    # is completed with its first season repeated.
    warm_after: int = 0
    context_dim: int = 16
    # Width of the MLP trunk; 0 = automatic (Config.resolved): the width of the parameter
    # file in ``init`` when one is set, else 128 for a seeded random θ, and 256 where θ is
    # meta-trained offline (pretrain, evaluate --pretrain), where the wider trunk pays
    # (docs/evaluation.md). θ restored from a checkpoint or read from the versions topic
    # keeps the width it was written with.
    hidden: int = 0
    # Parameter file to start from (see ``streammeta pretrain``); empty = seeded random init.
    init: str = ""
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        check("model.window", self.window, self.window == 0 or 2 <= self.window <= 4096,
               "0 (from the season) or an integer in [2, 4096]")
        check("model.warm_after", self.warm_after, 0 <= self.warm_after <= 4096,
               "an integer in [0, 4096]")
        check("model.context_dim", self.context_dim, 1 <= self.context_dim <= 256, "1..256")
        check("model.hidden", self.hidden, self.hidden == 0 or 4 <= self.hidden <= 4096,
               "0 (automatic) or an integer in [4, 4096]")
        check("model.init", self.init, not self.init or Path(self.init).is_file(),
               "an existing parameter file (or empty)")
        check("model.threads", self.threads, 0 <= self.threads <= 256,
               "an integer >= 0 (0 = automatic)")


@dataclass(frozen=True)
class AdaptationConfig:
    # Switch off to ablate online adaptation (forecasts from the initialisation only).
    enabled: bool = True
    inner_steps: int = 1
    # Initial Meta-SGD step size of every φ dimension; the outer loop meta-learns each
    # from there (the choice is measured in docs/history.md).
    inner_lr: float = 0.01
    loss: str = "mae"
    # After each online step φ ← s + (1 − shrink)(φ − s), s = the entity's start (φ₀,
    # plus the memory's initialisation): φ follows the recent examples instead of
    # accumulating every step's noise since the entity began.
    shrink: float = 0.1

    def __post_init__(self) -> None:
        check("adaptation.shrink", self.shrink,
               math.isfinite(self.shrink) and 0 <= self.shrink < 1, "a float in [0, 1)")
        check("adaptation.inner_steps", self.inner_steps, 1 <= self.inner_steps <= 20, "1..20")
        check("adaptation.inner_lr", self.inner_lr,
               math.isfinite(self.inner_lr) and 0 < self.inner_lr <= 10, "a float in (0, 10]")
        check("adaptation.loss", self.loss, self.loss in ("mae", "mse"), "'mae' or 'mse'")


ROLES = ("all", "ingest", "trainer")


@dataclass(frozen=True)
class MetaConfig:
    # Switch off to ablate the outer loop (a frozen initialisation).
    enabled: bool = True
    # What this process does (docs/operations.md, "Roles"): all = ingest and train in one
    # process; ingest = serve the versions the trainer publishes, send it task samples;
    # trainer = the one outer loop of the deployment (``streammeta train``).
    role: str = "all"
    # With roles ingest/trainer: promoted versions (1 partition, one record each) ...
    versions_topic: str = "streammeta.versions"
    # ... the ingesting replicas' sampled task histories ...
    samples_topic: str = "streammeta.task-samples"
    # ... and the trainers' lease (1 partition: its group member owning it trains).
    lease_topic: str = "streammeta.trainer-lease"
    # Task histories each ingesting replica sends per second at most.
    samples_per_s: float = 200.0
    algorithm: str = "fomaml"
    # Where meta-steps run: auto = CUDA when torch sees a GPU, else the CPU.
    device: str = "auto"
    # On CUDA, record each meta-step's kernels once per batch shape and replay them
    # (a CUDA graph): a step is thousands of tiny kernels, launched one by one otherwise.
    cuda_graphs: bool = True
    # Share of wall time the outer loop may be busy, on any device (on CUDA its host
    # side still holds the interpreter lock that ingestion needs while it launches).
    cpu_share: float = 0.15
    every_s: float = 60.0
    # 0: automatic, 50 new observations per entity the task buffer holds (at least 350,
    # at most 200,000): streammeta.meta.outer.period.
    every_observations: int = 0
    steps: int = 20
    tasks_per_step: int = 128
    support_windows: int = 4
    query_windows: int = 4
    window_stride: int = 6
    # Share of tasks that replay a new entity's first H forecasts as the engine makes them.
    young_share: float = 0.5
    # Adam's step size on θ, φ₀ and the inner step sizes: online (the outer loop), and
    # offline (pretrain, evaluate --pretrain); why they differ: docs/meta-learning.md.
    meta_lr: float = 0.002
    pretrain_lr: float = 0.001
    buffer_entities: int = 8192
    # Share of buffered entities used only to decide promotions.
    holdout: float = 0.2
    # Promote a candidate whose held-out loss is at most (1 + tolerance) × the serving one.
    tolerance: float = 0.0
    # After each meta-step, move θ this share of the way back to the θ the process
    # started from (model.init, else the seeded one): a brake for data whose new
    # entities may differ from all seen so far; meta.guard is the default answer to
    # that (docs/meta-learning.md).
    pull: float = 0.0
    # The candidate is an exponential moving average of the learner's θ with this decay
    # per meta-step (0: the last step's θ itself).
    average: float = 0.9
    # Per entity, blend the served version's forecasts with those of the θ the process
    # started from, each weighted by exp(-guard_rate × its summed one-step errors so
    # far, in the entity's standard deviations), for guard_for values after the entity
    # turns warm (or drifts); then serve the one with the smaller sum. A new kind of
    # entity that the learned θ forecasts worse falls back to the initial θ.
    guard: bool = True
    guard_rate: float = 6.0
    guard_for: int = 96

    def __post_init__(self) -> None:
        algorithms = ("fomaml", "maml", "reptile")
        check("meta.algorithm", self.algorithm, self.algorithm in algorithms,
               f"one of {', '.join(algorithms)}")
        check("meta.role", self.role, self.role in ROLES, f"one of {', '.join(ROLES)}")
        check("meta.samples_per_s", self.samples_per_s, 0 < self.samples_per_s <= 1e6,
               "a float in (0, 1e6]")
        for name in ("versions_topic", "samples_topic", "lease_topic"):
            check(f"meta.{name}", getattr(self, name), bool(getattr(self, name)),
                   "a topic name")
        check("meta.device", self.device,
               self.device in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", self.device)
               is not None,  # "cudafoo", "cuda:x" were taken and failed in torch
               "'auto', 'cpu' or 'cuda[:N]'")
        check("meta.cpu_share", self.cpu_share, 0 < self.cpu_share <= 1, "a float in (0, 1]")
        check("meta.young_share", self.young_share, 0 <= self.young_share <= 1,
               "a float in [0, 1]")
        check("meta.every_s", self.every_s, self.every_s > 0, "seconds > 0")
        check("meta.every_observations", self.every_observations,
               self.every_observations >= 0, "an integer >= 0 (0: automatic)")
        for name in ("steps", "tasks_per_step", "support_windows", "query_windows",
                     "window_stride", "buffer_entities"):
            check(f"meta.{name}", getattr(self, name), 1 <= getattr(self, name) <= 10_000_000,
                   "a positive integer")
        for name in ("meta_lr", "pretrain_lr"):
            check(f"meta.{name}", getattr(self, name), 0 < getattr(self, name) <= 1,
                   "a float in (0, 1]")
        check("meta.holdout", self.holdout, 0 < self.holdout < 1, "a float in (0, 1)")
        check("meta.tolerance", self.tolerance, 0 <= self.tolerance <= 1, "a float in [0, 1]")
        check("meta.pull", self.pull, 0 <= self.pull < 1, "a float in [0, 1)")
        check("meta.average", self.average, 0 <= self.average < 1, "a float in [0, 1)")
        check("meta.guard_rate", self.guard_rate, 0 < self.guard_rate <= 100,
               "a float in (0, 100]")
        check("meta.guard_for", self.guard_for, 0 <= self.guard_for <= 10_000_000,
               "an integer >= 0")


@dataclass(frozen=True)
class MemoryConfig:
    # Off, every entity starts from φ₀. Worth turning on when the outer loop is off
    # (docs/memory.md, "Default: off, and why").
    enabled: bool = False
    # Entries (one per entity); the least recently used goes when full.
    capacity: int = 100_000
    # Neighbours blended into a new entity's φ, and the softmax temperature on similarity.
    k: int = 2
    temperature: float = 0.05
    # Neighbours less similar than this (cosine of task keys) are not used.
    min_similarity: float = 0.5
    # An entity's φ enters the memory once it has this many values past its first full
    # window (at model.window + mature_after values).
    mature_after: int = 48
    # Kafka topic shared by replicas (compacted, keyed by entity); "" = not shared.
    topic: str = ""

    def __post_init__(self) -> None:
        check("memory.capacity", self.capacity, 1 <= self.capacity <= 10_000_000,
               "an integer in [1, 10000000]")
        check("memory.k", self.k, 1 <= self.k <= 1000, "an integer in [1, 1000]")
        check("memory.temperature", self.temperature, self.temperature > 0, "a float > 0")
        check("memory.min_similarity", self.min_similarity, -1 <= self.min_similarity <= 1,
               "a float in [-1, 1]")
        check("memory.mature_after", self.mature_after, self.mature_after >= 1,
               "an integer >= 1")


@dataclass(frozen=True)
class DriftConfig:
    # Page-Hinkley on each entity's scaled one-step error; drift re-initialises φ from
    # memory. Switch off to keep every entity's φ whatever its error does.
    enabled: bool = True
    threshold: float = 20.0
    delta: float = 0.05
    min_instances: int = 48
    alpha: float = 0.999

    def __post_init__(self) -> None:
        check("drift.threshold", self.threshold, self.threshold > 0, "a float > 0")
        check("drift.delta", self.delta, self.delta >= 0, "a float >= 0")
        check("drift.min_instances", self.min_instances, self.min_instances >= 1,
               "an integer >= 1")
        check("drift.alpha", self.alpha, 0 < self.alpha <= 1, "a float in (0, 1]")


@dataclass(frozen=True)
class ExpertsConfig:
    # Per entity and scored horizon, serve a weighted average of the model, persistence,
    # seasonal naive and drift, weighted by exp(-rate × each one's discounted sum of
    # absolute errors in the entity's standard deviations; Huber-squared errors with
    # adaptation.loss = "mse") (docs/meta-learning.md, "Experts").
    enabled: bool = True
    rate: float = 0.5
    discount: float = 0.98
    # A new entity starts as if it had this many resolved forecasts with the mean
    # errors of all entities so far (0: even weights).
    prior_events: float = 30.0
    # ... whose weight falls by e every this many forecasts the entity resolves itself
    # (0: never): the record stands for forecasts it has not made yet.
    prior_fade: float = 250.0
    # The analogue expert for young entities: what followed the stored windows of all
    # entities most like theirs (streammeta/online/analogues.py, docs/memory.md).
    analogues: bool = True
    # Windows it stores at most (the oldest go first).
    analogue_capacity: int = 50_000
    # The errors the weights follow: "mae" absolute, "mse" Huber-squared (the loss the
    # user's metric is); "auto" as adaptation.loss.
    loss: str = "auto"

    def __post_init__(self) -> None:
        check("experts.rate", self.rate, math.isfinite(self.rate) and self.rate > 0,
               "a float > 0")
        check("experts.analogue_capacity", self.analogue_capacity,
              self.analogue_capacity >= 16, "an integer >= 16")
        check("experts.discount", self.discount, 0 < self.discount <= 1, "a float in (0, 1]")
        check("experts.loss", self.loss, self.loss in ("auto", "mae", "mse"),
              "'auto', 'mae' or 'mse'")
        check("experts.prior_events", self.prior_events,
               math.isfinite(self.prior_events) and self.prior_events >= 0, "a float >= 0")
        check("experts.prior_fade", self.prior_fade,
              math.isfinite(self.prior_fade) and self.prior_fade >= 0, "a float >= 0")


@dataclass(frozen=True)
class CalibrationConfig:
    # Per entity and scored horizon, move the served quantiles by tracking the levels'
    # quantiles of the served forecast's realised errors, in units of the model's spread
    # (online quantile tracking: docs/meta-learning.md, "Calibrated quantiles").
    enabled: bool = True
    # Least step of each entity's offsets per resolved forecast, in the spread of all
    # entities' normalised errors (at most 0.9 × rate of it per forecast once the
    # entity's first forecasts, which step further, are past): larger follows changes
    # faster, smaller is steadier.
    rate: float = 0.01

    def __post_init__(self) -> None:
        check("calibration.rate", self.rate, math.isfinite(self.rate) and 0 < self.rate <= 1,
               "a float in (0, 1]")


@dataclass(frozen=True)
class EngineConfig:
    max_entities: int = 1_000_000
    # At the cap, move the least recently observed entities to disk (under
    # checkpoint.dir) and read them back when they return; false, or no checkpoint
    # directory: new entities beyond the cap are dead-lettered.
    evict: bool = True
    # Smoothing of the online error gauges (per resolved forecast).
    error_smoothing: float = 0.001

    def __post_init__(self) -> None:
        check("engine.max_entities", self.max_entities, 1 <= self.max_entities <= 50_000_000,
               "an integer in [1, 50000000]")
        check("engine.error_smoothing", self.error_smoothing,
               0 < self.error_smoothing <= 1, "a float in (0, 1]")


@dataclass(frozen=True)
class CheckpointConfig:
    # Where checkpoint (and spill) files go: a directory that several replicas may share,
    # or object storage through fsspec (s3://bucket/prefix, gs://…, az://…), credentials
    # from the cloud SDK's environment (see docs/recovery.md). Empty disables
    # checkpoints: state then starts empty at every start.
    dir: str = "state/checkpoints"
    # fsspec storage options as a JSON object, e.g. {"endpoint_url": "http://minio:9000"}
    # for an S3-compatible server; empty for none.
    storage_options: str = ""
    # A restored offset older than the partition's earliest retained offset: continue
    # from the earliest, keeping the state ("keep": its entities see a gap) or
    # dropping it ("cold").
    expired: str = "keep"
    every_s: float = 60.0
    every_records: int = 1_000_000
    keep: int = 3
    # Name of this replica in file names (its files and θ line are found by it after a
    # restart); empty = kafka.group_instance_id, else the host name. One running process
    # a name: in a local directory a second is refused at start (persistence/claim.py).
    member: str = ""

    def __post_init__(self) -> None:
        check("checkpoint.every_s", self.every_s, self.every_s > 0, "seconds > 0")
        check("checkpoint.every_records", self.every_records, self.every_records >= 1,
               "an integer >= 1")
        check("checkpoint.keep", self.keep, 1 <= self.keep <= 1000, "an integer in [1, 1000]")
        check("checkpoint.expired", self.expired, self.expired in ("keep", "cold"),
              "keep or cold")
        try:
            options = json.loads(self.storage_options or "{}")
        except ValueError:
            options = None
        check("checkpoint.storage_options", self.storage_options, isinstance(options, dict),
              "a JSON object (or empty)")

    def options(self) -> dict[str, Any]:
        """``storage_options`` parsed."""
        return dict(json.loads(self.storage_options or "{}"))


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464
    # /healthz fails when the loop has not completed an iteration for this long.
    stall_after_s: float = 30.0

    def __post_init__(self) -> None:
        check("metrics.port", self.port, 0 <= self.port <= 65535, "a port in [0, 65535]")
        check("metrics.stall_after_s", self.stall_after_s, self.stall_after_s > 0,
               "seconds > 0")


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    # "json": one JSON object per line (time, level, logger, message, exception) for
    # log aggregators; "text": one readable line per record.
    format: str = "text"

    def __post_init__(self) -> None:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR")
        if isinstance(self.level, str):  # "info" means INFO, as in Python's logging
            object.__setattr__(self, "level", self.level.upper())
        check("log.level", self.level, self.level in levels, f"one of {', '.join(levels)}")
        if isinstance(self.format, str):
            object.__setattr__(self, "format", self.format.lower())
        check("log.format", self.format, self.format in ("text", "json"), "text or json")

