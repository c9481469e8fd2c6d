"""kafka-python settings built from ``[kafka]``: connection, security (SASL
PLAIN / SCRAM / OAUTHBEARER through :class:`~streammeta.io.oidc.OidcTokenProvider`,
SSL and mutual TLS), the assignor, and the codec libraries it needs."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from kafka.conn import ConnectionStates
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError
from streammeta.io.faults import Faults

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


class RefusedAuthentication(logging.Handler):
    """kafka-python tells of a refused SASL authentication only in its log (a
    connection closed while authenticating) and then reconnects for ever: this turns
    that record into a persistent fault, so the daemon stops with it."""

    def __init__(self, cfg: KafkaConfig, faults: Faults) -> None:
        super().__init__(logging.ERROR)
        self.cfg, self.faults = cfg, faults
        self.cause = ""  # set once refused

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        conn = args[0] if args else None
        if getattr(conn, "state", None) is not ConnectionStates.AUTHENTICATING:
            return
        error = args[1] if len(args) > 1 else ""
        self.cause = (f"authentication refused: the broker at {getattr(conn, 'host', '?')}:"
                      f"{getattr(conn, 'port', '?')} did not accept SASL "
                      f"{self.cfg.sasl_mechanism} as {self.cfg.sasl_username!r} "
                      f"(kafka-python: {error!r})")
        self.faults.error("poll", self.cause, persistent=True)

    @classmethod
    def watch(cls, cfg: KafkaConfig, faults: Faults) -> RefusedAuthentication | None:
        if not cfg.security_protocol.startswith("SASL"):
            return None
        handler = cls(cfg, faults)
        logging.getLogger("kafka.conn").addHandler(handler)
        return handler

    def unwatch(self) -> None:
        logging.getLogger("kafka.conn").removeHandler(self)

