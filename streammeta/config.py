"""Configuration: ``config.toml`` → a frozen, validated tree of dataclasses.

Each component owns one section. Any key can be overridden from the environment
as ``STREAMMETA_<SECTION>_<KEY>`` (upper case), for secrets and bootstrap servers:
``STREAMMETA_KAFKA_BOOTSTRAP_SERVERS=broker:9092``; secrets can be read from files
(``streammeta.envvars``). A bad value fails at load with a :class:`ConfigError`
naming the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streammeta import envvars
from streammeta.errors import ConfigError
from streammeta.io.frequency import Frequency
from streammeta.io.frequency import parse as parse_frequency

ENV_PREFIX = envvars.ENV_PREFIX


CLIENTS = ("confluent", "kafka-python")


def _check(key: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(key, value, expected)


@dataclass(frozen=True)
class KafkaConfig:
    # The client library: "confluent" (confluent-kafka, librdkafka) or "kafka-python".
    client: str = "confluent"
    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: str = "streammeta.observations"
    forecast_topic: str = "streammeta.forecasts"
    dead_letter_topic: str = "streammeta.dead-letters"
    group_id: str = "streammeta"
    client_id: str = "streammeta"
    # Static group membership (KIP-345); empty = dynamic. Set per replica (pod name).
    group_instance_id: str = ""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    # OAUTHBEARER through OIDC client credentials: the token endpoint, client id,
    # secret and (optional) scope.
    sasl_oauthbearer_token_endpoint_url: str = ""
    sasl_oauthbearer_client_id: str = ""
    sasl_oauthbearer_client_secret: str = ""
    sasl_oauthbearer_scope: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_password: str = ""
    ssl_check_hostname: bool = True
    session_timeout_ms: int = 10000
    # Longest time between polls before the member is dropped; also the rebalance
    # timeout: how long a rebalance waits for members that were in the group.
    max_poll_interval_ms: int = 120000
    heartbeat_interval_ms: int = 1000
    # "auto": cooperative-sticky where the client has it (confluent), else sticky.
    assignor: str = "auto"
    isolation_level: str = "read_committed"
    max_poll_records: int = 10000
    poll_timeout_ms: int = 200
    auto_offset_reset: str = "earliest"
    acks: str = "all"
    # The idempotent producer: retries cannot reorder or duplicate a partition's
    # messages (needs acks = "all"). "auto": on with confluent, off with kafka-python
    # (whose 2.3 idempotent producer failed every send on the embedded broker).
    enable_idempotence: str = "auto"
    linger_ms: int = 5
    batch_size: int = 262144
    compression_type: str = "none"
    request_timeout_ms: int = 30000
    shutdown_timeout_s: float = 20.0
    # An error that retrying does not clear (unknown codec, corrupt batch, missing or
    # forbidden topic) stops the daemon, non-zero, once it has lasted this long.
    fatal_after_s: float = 60.0

    def __post_init__(self) -> None:
        _check("kafka.bootstrap_servers", self.bootstrap_servers,
               bool(self.bootstrap_servers.strip()), "host:port[,host:port...]")
        for name in ("input_topic", "forecast_topic", "dead_letter_topic", "group_id"):
            value = getattr(self, name)
            _check(f"kafka.{name}", value, bool(value) and " " not in value,
                   "a non-empty name without spaces")
        topics = {self.input_topic, self.forecast_topic, self.dead_letter_topic}
        _check("kafka.forecast_topic", self.forecast_topic, len(topics) == 3,
               "input, forecast and dead-letter topics to be three different topics")
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        _check("kafka.security_protocol", self.security_protocol,
               self.security_protocol in protocols, f"one of {', '.join(protocols)}")
        _check("kafka.client", self.client, self.client in CLIENTS, f"one of {', '.join(CLIENTS)}")
        if self.security_protocol.startswith("SASL"):
            mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
            _check("kafka.sasl_mechanism", self.sasl_mechanism, self.sasl_mechanism in mechanisms,
                   f"one of {', '.join(mechanisms)} when security_protocol is SASL_*")
            if self.sasl_mechanism == "OAUTHBEARER":
                for name in ("sasl_oauthbearer_token_endpoint_url", "sasl_oauthbearer_client_id",
                             "sasl_oauthbearer_client_secret"):
                    _check(f"kafka.{name}", getattr(self, name), bool(getattr(self, name)),
                           "a value with sasl_mechanism OAUTHBEARER (OIDC client credentials)")
                url = self.sasl_oauthbearer_token_endpoint_url
                _check("kafka.sasl_oauthbearer_token_endpoint_url", url,
                       url.startswith(("https://", "http://")), "an http(s):// URL")
            else:
                _check("kafka.sasl_username", self.sasl_username, bool(self.sasl_username),
                       f"a user name with sasl_mechanism {self.sasl_mechanism}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            _check(f"kafka.{name}", value, not value or Path(value).is_file(),
                   "an existing file (or empty)")
        _check("kafka.session_timeout_ms", self.session_timeout_ms,
               6000 <= self.session_timeout_ms <= 300000, "an integer in [6000, 300000]")
        _check("kafka.max_poll_interval_ms", self.max_poll_interval_ms,
               self.session_timeout_ms <= self.max_poll_interval_ms <= 3_600_000,
               "an integer in [session_timeout_ms, 3600000]")
        _check("kafka.heartbeat_interval_ms", self.heartbeat_interval_ms,
               0 < self.heartbeat_interval_ms * 3 <= self.session_timeout_ms,
               "positive and at most a third of session_timeout_ms")
        assignors = ("auto", "cooperative-sticky", "sticky", "range", "roundrobin")
        _check("kafka.assignor", self.assignor, self.assignor in assignors,
               f"one of {', '.join(assignors)}")
        _check("kafka.assignor", self.assignor,
               not (self.client == "kafka-python" and self.assignor == "cooperative-sticky"),
               "no cooperative-sticky with client kafka-python (it has only eager assignors: "
               "sticky, range, roundrobin; or auto)")
        _check("kafka.isolation_level", self.isolation_level,
               self.isolation_level in ("read_committed", "read_uncommitted"),
               "read_committed or read_uncommitted")
        _check("kafka.max_poll_records", self.max_poll_records,
               1 <= self.max_poll_records <= 1_000_000, "an integer in [1, 1000000]")
        _check("kafka.poll_timeout_ms", self.poll_timeout_ms, 0 <= self.poll_timeout_ms <= 60000,
               "an integer in [0, 60000]")
        _check("kafka.auto_offset_reset", self.auto_offset_reset,
               self.auto_offset_reset in ("earliest", "latest"), "'earliest' or 'latest'")
        _check("kafka.acks", self.acks, self.acks in ("all", "1"),
               "'all' or '1' (acks=0 loses records)")
        _check("kafka.enable_idempotence", self.enable_idempotence,
               self.enable_idempotence in ("auto", "true", "false"), "auto, true or false")
        _check("kafka.enable_idempotence", self.enable_idempotence,
               not (self.enable_idempotence == "true" and self.acks != "all"),
               "auto or false with acks = '1' (an idempotent producer needs acks = 'all')")
        _check("kafka.linger_ms", self.linger_ms, 0 <= self.linger_ms <= 10000, "0..10000")
        _check("kafka.batch_size", self.batch_size, 1024 <= self.batch_size <= 64 << 20,
               "bytes in [1024, 64 MiB]")
        codecs = ("none", "gzip", "lz4", "zstd", "snappy")
        _check("kafka.compression_type", self.compression_type, self.compression_type in codecs,
               f"one of {', '.join(codecs)}")
        _check("kafka.request_timeout_ms", self.request_timeout_ms,
               1000 <= self.request_timeout_ms <= 600000, "1000..600000")
        _check("kafka.shutdown_timeout_s", self.shutdown_timeout_s,
               0 < self.shutdown_timeout_s <= 600, "seconds in (0, 600]")
        _check("kafka.fatal_after_s", self.fatal_after_s, 0 < self.fatal_after_s <= 86400,
               "seconds in (0, 86400]")


@dataclass(frozen=True)
class SeriesConfig:
    # The sampling frequency in the pandas/Nixtla spelling: "30min", "h", "D", "W"
    # (fixed steps) or "MS", "QS", "YS", "ME", "QE", "YE" (calendar steps); empty: the
    # fixed step_ms below.
    freq: str = ""
    step_ms: int = 3_600_000
    season: int = 24
    horizon: int = 48
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    # Gaps up to this many missing steps are filled by linear interpolation
    # (not scored, not learned from as targets); longer gaps restart the entity cold.
    max_gap_fill: int = 48
    max_entity_id_length: int = 256
    max_record_bytes: int = 4096
    # Values the model sees: "asinh" ≈ log for large values (multiplicative seasonality,
    # positive-looking forecasts) and defined for every real; "none" = as they come.
    transform: str = "asinh"

    def __post_init__(self) -> None:
        _check("series.transform", self.transform, self.transform in ("none", "asinh"),
               "none or asinh")
        _check("series.step_ms", self.step_ms, self.step_ms >= 1, "a positive integer (ms)")
        try:
            parse_frequency(self.freq, self.step_ms)
        except ValueError as exc:
            raise ConfigError("series.freq", self.freq, str(exc).split(": ", 1)[1]) from None
        _check("series.season", self.season, 1 <= self.season <= 10000, "an integer in [1, 10000]")
        _check("series.horizon", self.horizon, 1 <= self.horizon <= 1000, "an integer in [1, 1000]")
        _check("series.quantiles", self.quantiles,
               len(self.quantiles) >= 1 and all(0 < q < 1 for q in self.quantiles)
               and list(self.quantiles) == sorted(set(self.quantiles)),
               "a non-empty increasing list of levels in (0, 1)")
        _check("series.max_gap_fill", self.max_gap_fill, 0 <= self.max_gap_fill <= 100000,
               "an integer >= 0")
        _check("series.max_entity_id_length", self.max_entity_id_length,
               1 <= self.max_entity_id_length <= 4096, "an integer in [1, 4096]")
        _check("series.max_record_bytes", self.max_record_bytes,
               64 <= self.max_record_bytes <= 1 << 20, "bytes in [64, 1 MiB]")

    @property
    def frequency(self) -> Frequency:
        """The frequency that ``freq`` (else ``step_ms``) names."""
        return parse_frequency(self.freq, self.step_ms)


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
    hidden: int = 256
    # Parameter file to start from (see ``streammeta pretrain``); empty = seeded random init.
    init: str = ""
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        _check("model.window", self.window, self.window == 0 or 2 <= self.window <= 4096,
               "0 (from the season) or an integer in [2, 4096]")
        _check("model.warm_after", self.warm_after, 0 <= self.warm_after <= 4096,
               "an integer in [0, 4096]")
        _check("model.context_dim", self.context_dim, 1 <= self.context_dim <= 256, "1..256")
        _check("model.hidden", self.hidden, 4 <= self.hidden <= 4096, "4..4096")
        _check("model.init", self.init, not self.init or Path(self.init).is_file(),
               "an existing parameter file (or empty)")
        _check("model.threads", self.threads, 0 <= self.threads <= 256,
               "an integer >= 0 (0 = torch's default)")


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
        _check("adaptation.shrink", self.shrink,
               math.isfinite(self.shrink) and 0 <= self.shrink < 1, "a float in [0, 1)")
        _check("adaptation.inner_steps", self.inner_steps, 1 <= self.inner_steps <= 20, "1..20")
        _check("adaptation.inner_lr", self.inner_lr,
               math.isfinite(self.inner_lr) and 0 < self.inner_lr <= 10, "a float in (0, 10]")
        _check("adaptation.loss", self.loss, self.loss in ("mae", "mse"), "'mae' or 'mse'")


@dataclass(frozen=True)
class MetaConfig:
    # Switch off to ablate the outer loop (a frozen initialisation).
    enabled: bool = True
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
    every_observations: int = 200_000
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
        _check("meta.algorithm", self.algorithm, self.algorithm in algorithms,
               f"one of {', '.join(algorithms)}")
        _check("meta.device", self.device,
               self.device in ("auto", "cpu") or self.device.startswith("cuda"),
               "'auto', 'cpu' or 'cuda[:N]'")
        _check("meta.cpu_share", self.cpu_share, 0 < self.cpu_share <= 1, "a float in (0, 1]")
        _check("meta.young_share", self.young_share, 0 <= self.young_share <= 1,
               "a float in [0, 1]")
        _check("meta.every_s", self.every_s, self.every_s > 0, "seconds > 0")
        _check("meta.every_observations", self.every_observations,
               self.every_observations >= 1, "an integer >= 1")
        for name in ("steps", "tasks_per_step", "support_windows", "query_windows",
                     "window_stride", "buffer_entities"):
            _check(f"meta.{name}", getattr(self, name), 1 <= getattr(self, name) <= 10_000_000,
                   "a positive integer")
        for name in ("meta_lr", "pretrain_lr"):
            _check(f"meta.{name}", getattr(self, name), 0 < getattr(self, name) <= 1,
                   "a float in (0, 1]")
        _check("meta.holdout", self.holdout, 0 < self.holdout < 1, "a float in (0, 1)")
        _check("meta.tolerance", self.tolerance, 0 <= self.tolerance <= 1, "a float in [0, 1]")
        _check("meta.pull", self.pull, 0 <= self.pull < 1, "a float in [0, 1)")
        _check("meta.average", self.average, 0 <= self.average < 1, "a float in [0, 1)")
        _check("meta.guard_rate", self.guard_rate, 0 < self.guard_rate <= 100,
               "a float in (0, 100]")
        _check("meta.guard_for", self.guard_for, 0 <= self.guard_for <= 10_000_000,
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
        _check("memory.capacity", self.capacity, 1 <= self.capacity <= 10_000_000,
               "an integer in [1, 10000000]")
        _check("memory.k", self.k, 1 <= self.k <= 1000, "an integer in [1, 1000]")
        _check("memory.temperature", self.temperature, self.temperature > 0, "a float > 0")
        _check("memory.min_similarity", self.min_similarity, -1 <= self.min_similarity <= 1,
               "a float in [-1, 1]")
        _check("memory.mature_after", self.mature_after, self.mature_after >= 1,
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
        _check("drift.threshold", self.threshold, self.threshold > 0, "a float > 0")
        _check("drift.delta", self.delta, self.delta >= 0, "a float >= 0")
        _check("drift.min_instances", self.min_instances, self.min_instances >= 1,
               "an integer >= 1")
        _check("drift.alpha", self.alpha, 0 < self.alpha <= 1, "a float in (0, 1]")


@dataclass(frozen=True)
class ExpertsConfig:
    # Per entity and scored horizon, serve a weighted average of the model, persistence,
    # seasonal naive and drift, weighted by exp(-rate × each one's discounted sum of
    # absolute errors in the entity's standard deviations) (docs/meta-learning.md, "Experts").
    enabled: bool = True
    rate: float = 1.0
    discount: float = 0.98
    # A new entity starts as if it had this many resolved forecasts with the mean
    # errors of all entities so far (0: even weights).
    prior_events: float = 30.0

    def __post_init__(self) -> None:
        _check("experts.rate", self.rate, math.isfinite(self.rate) and self.rate > 0,
               "a float > 0")
        _check("experts.discount", self.discount, 0 < self.discount <= 1, "a float in (0, 1]")
        _check("experts.prior_events", self.prior_events,
               math.isfinite(self.prior_events) and self.prior_events >= 0, "a float >= 0")


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
        _check("engine.max_entities", self.max_entities, 1 <= self.max_entities <= 50_000_000,
               "an integer in [1, 50000000]")
        _check("engine.error_smoothing", self.error_smoothing,
               0 < self.error_smoothing <= 1, "a float in (0, 1]")


@dataclass(frozen=True)
class CheckpointConfig:
    # Directory of checkpoint files; several replicas may share it (see docs/recovery.md).
    # Empty disables checkpoints: state then starts empty at every start.
    dir: str = "state/checkpoints"
    every_s: float = 60.0
    every_records: int = 1_000_000
    keep: int = 3
    # Name of this replica in file names; empty = kafka.group_instance_id, else the host name.
    member: str = ""

    def __post_init__(self) -> None:
        _check("checkpoint.every_s", self.every_s, self.every_s > 0, "seconds > 0")
        _check("checkpoint.every_records", self.every_records, self.every_records >= 1,
               "an integer >= 1")
        _check("checkpoint.keep", self.keep, 1 <= self.keep <= 1000, "an integer in [1, 1000]")


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464
    # /healthz fails when the loop has not completed an iteration for this long.
    stall_after_s: float = 30.0

    def __post_init__(self) -> None:
        _check("metrics.port", self.port, 0 <= self.port <= 65535, "a port in [0, 65535]")
        _check("metrics.stall_after_s", self.stall_after_s, self.stall_after_s > 0,
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
        _check("log.level", self.level, self.level in levels, f"one of {', '.join(levels)}")
        if isinstance(self.format, str):
            object.__setattr__(self, "format", self.format.lower())
        _check("log.format", self.format, self.format in ("text", "json"), "text or json")


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    series: SeriesConfig = field(default_factory=SeriesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def resolved(self) -> Config:
        """This configuration with model.window and model.warm_after made concrete
        where they are 0 (automatic), from series.season."""
        m, model = self.series.season, self.model
        sub_daily = m >= 24  # a weekly cycle rides on the daily one: a longer look back
        window = model.window or min(max((7 if sub_daily else 3) * m, 16), 168)
        warm = model.warm_after or (
            min(max((3 if sub_daily else 2) * m, 8), 72, window) if not model.window else window)
        return self.replace("model", window=window, warm_after=warm)

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some keys of one section changed (validated again)."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )


def sections() -> dict[str, type]:
    """Section name → its dataclass, in file order."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


# Keys named *password, *secret or *token, in any section: masked, readable from files.
SECRET_KEYS = frozenset(
    f.name for cls in sections().values() for f in dataclasses.fields(cls)
    if envvars.is_secret(f.name))


def _coerce(key: str, raw: object, kind: Any, from_env: bool) -> object:
    """Turn a TOML (or environment string) value into the field's type, strictly."""
    if from_env:
        assert isinstance(raw, str)
        if kind is bool:
            lowered = raw.strip().lower()
            _check(key, raw, lowered in ("true", "false", "1", "0", "yes", "no"), "a boolean")
            return lowered in ("true", "1", "yes")
        if kind is int:
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(key, raw, "an integer") from None
        if kind is float:
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(key, raw, "a number") from None
        if typing.get_origin(kind) is tuple:
            try:
                return tuple(float(part) for part in raw.split(",") if part.strip())
            except ValueError:
                raise ConfigError(key, raw, "comma-separated numbers") from None
        return raw
    if kind is bool:
        _check(key, raw, isinstance(raw, bool), "true or false")
        return raw
    if kind is int:
        _check(key, raw, isinstance(raw, int) and not isinstance(raw, bool), "an integer")
        return raw
    if kind is float:
        _check(key, raw, isinstance(raw, int | float) and not isinstance(raw, bool), "a number")
        return float(raw)  # type: ignore[arg-type]
    if typing.get_origin(kind) is tuple:
        items = raw if isinstance(raw, list) else []
        ok = isinstance(raw, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in items
        )
        _check(key, raw, ok, "a list of numbers")
        return tuple(float(v) for v in items)
    _check(key, raw, isinstance(raw, str), "a string")
    return raw


def _build(section: str, cls: type, table: Mapping[str, object], env: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    table, from_files = envvars.secrets_from_files(section, names, table, env)
    for unknown in sorted(set(table) - names):
        raise ConfigError(
            f"{section}.{unknown}", table[unknown], f"one of the keys {sorted(names)}")
    values: dict[str, object] = {}
    for name in names:
        key = f"{section}.{name}"
        env_name = envvars.env_name(section, name)
        if env_name in env:
            values[name] = _coerce(key, env[env_name], hints[name], from_env=True)
        elif name in from_files:
            values[name] = _coerce(key, from_files[name], hints[name], from_env=True)
        elif name in table:
            values[name] = _coerce(key, table[name], hints[name], from_env=False)
    return cls(**values)


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or only defaults when ``None``), apply environment overrides, validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("(file)", str(path), "an existing config.toml") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("(file)", str(path), f"valid TOML ({exc})") from None
    tables = sections()
    for unknown in sorted(set(data) - set(tables)):
        raise ConfigError(unknown, "[section]", f"one of the sections {sorted(tables)}")
    built = {}
    for name, cls in tables.items():
        table = data.get(name, {})
        _check(name, table, isinstance(table, dict), "a [section] table")
        built[name] = _build(name, cls, table, env)
    return Config(**built)


def to_toml(config: Config, mask_secrets: bool = True) -> str:
    """The effective configuration as TOML text; secrets are masked."""
    lines: list[str] = []
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        for item in dataclasses.fields(getattr(config, section.name)):
            value = getattr(getattr(config, section.name), item.name)
            if mask_secrets and envvars.is_secret(item.name) and value:
                value = "***"
            lines.append(f"{item.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

