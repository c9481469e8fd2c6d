"""The whole configuration: one section per component, in file order."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

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
)

ENV_PREFIX = envvars.ENV_PREFIX


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


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

