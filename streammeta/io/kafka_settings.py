"""kafka-python settings built from ``[kafka]``: connection, security (SASL
PLAIN / SCRAM / OAUTHBEARER through :class:`~streammeta.io.oidc.OidcTokenProvider`,
SSL and mutual TLS), the assignor, and the codec libraries it needs."""

from __future__ import annotations

import importlib
from typing import Any

from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError

# kafka-python 2.3 has only eager assignors: "auto" is sticky, which moves the fewest.
ASSIGNORS = {"auto": StickyPartitionAssignor, "sticky": StickyPartitionAssignor,
             "range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}

# The library each codec needs in kafka-python 2.3 (kafka/codec.py imports them).
CODEC_MODULES = {"gzip": "gzip", "snappy": "snappy", "lz4": "lz4.frame", "zstd": "zstandard"}


def client_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection settings shared by every client; security settings only when set."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()],
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": cfg.request_timeout_ms,
    }
    if cfg.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = cfg.sasl_mechanism
        if cfg.sasl_mechanism == "OAUTHBEARER":
            from streammeta.io.oidc import OidcTokenProvider

            kwargs["sasl_oauth_token_provider"] = OidcTokenProvider.from_config(cfg)
        elif cfg.sasl_username:
            kwargs["sasl_plain_username"] = cfg.sasl_username
            kwargs["sasl_plain_password"] = cfg.sasl_password
    if cfg.security_protocol.endswith("SSL"):
        kwargs["ssl_check_hostname"] = cfg.ssl_check_hostname
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
            if getattr(cfg, key):
                kwargs[key] = getattr(cfg, key)
    return kwargs


def unreachable(cfg: KafkaConfig, exc: Exception) -> BrokerError:
    return BrokerError(f"cannot reach Kafka at {cfg.bootstrap_servers}: {exc}")


def missing_codecs() -> list[str]:
    """Codecs whose library this process cannot import: batches compressed with them
    could be neither read nor written."""
    missing = []
    for codec, module in CODEC_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(codec)
    return missing
