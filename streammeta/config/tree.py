"""The whole configuration: one section per component, in file order."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streammeta import envvars
from streammeta.config.kafka import KafkaConfig
from streammeta.config.sections import (
    AdaptationConfig,
    CalibrationConfig,
    CheckpointConfig,
    DriftConfig,
    EngineConfig,
    ExpertsConfig,
    LogConfig,
    MemoryConfig,
    MetaConfig,
    MetricsConfig,
    ModelConfig,
    SeriesConfig,
    check,
)

ENV_PREFIX = envvars.ENV_PREFIX
# model.hidden = 0: the trunk's width for a seeded random θ, and for θ meta-trained
# offline. Online only, 128 forecasts as well as 256 at 1.46x the engine's throughput;
# pretrained, 256 is 2.5% better on M4 hourly (docs/evaluation.md).
ONLINE_HIDDEN = 128
OFFLINE_HIDDEN = 256


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
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        """One topic in two roles is refused (the [kafka] three are checked there): a
        replica read its own memory entries or task samples back as observations."""
        k, m = self.kafka, self.meta
        seen = {k.input_topic: "kafka.input_topic", k.forecast_topic: "kafka.forecast_topic",
                k.dead_letter_topic: "kafka.dead_letter_topic"}
        for key, topic in (("meta.versions_topic", m.versions_topic),
                           ("meta.samples_topic", m.samples_topic),
                           ("meta.lease_topic", m.lease_topic),
                           ("memory.topic", self.memory.topic)):
            check(key, topic, topic not in seen, f"a topic of its own (not {seen.get(topic)}'s)")
            if topic:
                seen[topic] = key

    def resolved(self, offline: bool = False) -> Config:
        """This configuration with series.season made concrete where it is 0
        (automatic), from the frequency (SeriesConfig.resolved_season); model.window and
        model.warm_after where they are 0, from the season; and model.hidden: the width
        of the parameter file model.init, else OFFLINE_HIDDEN where θ is to be
        meta-trained offline (``offline``), else ONLINE_HIDDEN."""
        m, model = self.series.resolved_season, self.model
        sub_daily = m >= 24  # a weekly cycle rides on the daily one: a longer look back
        window = model.window or min(max((7 if sub_daily else 3) * m, 16), 168)
        warm = model.warm_after or (
            min(max((3 if sub_daily else 2) * m, 8), 72, window) if not model.window else window)
        hidden = model.hidden
        if not hidden and model.init:
            from streammeta.persistence.width import width  # reads the file once

            hidden = width(model.init)
        hidden = hidden or (OFFLINE_HIDDEN if offline else ONLINE_HIDDEN)
        resolved = self.replace("model", window=window, warm_after=warm, hidden=hidden)
        if m != self.series.season:
            resolved = resolved.replace("series", season=m)
        if self.series.transform != "auto":
            return resolved
        transform = "asinh"  # the units of the parameter file, else for positive data
        if model.init:
            from streammeta.persistence.width import units

            transform = units(model.init)
        return resolved.replace("series", transform=transform)

    def for_values(self, values: Iterable[np.ndarray]) -> Config:
        """``series.transform = "auto"`` decided by the data a process sees first: "none"
        where a value is at or below 0 (it has no logarithm), else "asinh" (with
        ``model.init``, the file's: :meth:`resolved`)."""
        if self.series.transform != "auto" or self.model.init:  # a θ file's units rule
            return self
        signed = any(bool((v[np.isfinite(v)] <= 0).any()) for v in values)
        return self.replace("series", transform="none" if signed else "asinh")

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


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``. A ``cuda[:N]`` this
    machine's torch does not see is a :class:`ConfigError` naming ``meta.device``: it
    stopped run on torch's AssertionError ("Torch not compiled with CUDA enabled")."""
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    index = int(name.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        from streammeta.errors import ConfigError

        seen = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise ConfigError("meta.device", name, f"'auto' or 'cpu', or a CUDA device this "
                          f"machine's torch sees (it sees {seen})")
    return name

