"""Configuration: ``config.toml`` → a frozen, validated tree of dataclasses.

Each component owns one section. Any key can be overridden from the environment
as ``STREAMMETA_<SECTION>_<KEY>`` (upper case), for secrets and bootstrap servers:
``STREAMMETA_KAFKA_BOOTSTRAP_SERVERS=broker:9092``; secrets can be read from files
(``streammeta.envvars``). A bad value fails at load with a :class:`ConfigError`
naming the key, the value and what was expected.
"""

from __future__ import annotations

from streammeta.config.kafka import KafkaConfig
from streammeta.config.loading import load, to_toml
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
from streammeta.config.tree import (
    ENV_PREFIX,
    OFFLINE_HIDDEN,
    ONLINE_HIDDEN,
    SECRET_KEYS,
    Config,
    resolve_device,
    sections,
)
from streammeta.errors import ConfigError

__all__ = [
    "ENV_PREFIX", "OFFLINE_HIDDEN", "ONLINE_HIDDEN", "SECRET_KEYS", "AdaptationConfig",
    "CalibrationConfig", "CheckpointConfig",
    "Config", "ConfigError", "DriftConfig", "EngineConfig", "ExpertsConfig", "KafkaConfig",
    "LogConfig", "MemoryConfig", "MetaConfig", "MetricsConfig", "ModelConfig",
    "SeriesConfig", "load", "resolve_device", "sections", "to_toml",
]
