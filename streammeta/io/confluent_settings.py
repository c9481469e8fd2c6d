"""librdkafka settings built from ``[kafka]``, and what its errors and statistics mean.

* :func:`client_settings` — connection and security: SASL PLAIN / SCRAM /
  OAUTHBEARER (librdkafka's own OIDC client-credentials flow: token endpoint,
  client id, secret, scope), SSL and mutual TLS.
* :func:`consumer_settings`, :func:`producer_settings` — the consumer-group member
  (manual commits, assignor, static membership, isolation level) and the producer
  (acks, idempotence, linger, codec), both wired to the edge's
  :class:`~streammeta.io.faults.Faults` and a :class:`Liveness`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError
from streammeta.io.faults import Faults, assignor_mismatch

log = logging.getLogger("streammeta.io.kafka")
library_log = logging.getLogger("confluent_kafka")

# Errors that retrying does not clear (faults.py): a topic that does not exist or may
# not be read, credentials refused, a batch that cannot be decoded.
PERSISTENT = frozenset({
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._BAD_COMPRESSION, KafkaError._BAD_MSG,
    KafkaError.INVALID_MSG, KafkaError._SSL, KafkaError._UNSUPPORTED_FEATURE,
    KafkaError.UNSUPPORTED_COMPRESSION_TYPE, KafkaError.INCONSISTENT_GROUP_PROTOCOL,
})
ASSIGNORS = {"auto": "cooperative-sticky", "cooperative-sticky": "cooperative-sticky",
             "sticky": "cooperative-sticky", "range": "range", "roundrobin": "roundrobin"}
STATS_INTERVAL_MS = 1000


def is_persistent(error: KafkaError) -> bool:
    return bool(error.fatal()) or error.code() in PERSISTENT


# librdkafka's timing suffix differs between retries of one cause (logged once).
_TIMING = re.compile(r" \(after \d+ms in state [A-Z_]+\)")


def describe(error: KafkaError) -> str:
    return f"{error.name()}: {_TIMING.sub('', error.str())}"


def explain(error: KafkaError, cfg: KafkaConfig) -> str:
    """:func:`describe`, with what to change where the error alone does not say."""
    if error.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
        return assignor_mismatch(cfg.group_id, cfg.client, cfg.assignor, describe(error))
    return describe(error)


class Liveness:
    """When a broker last answered, from librdkafka's statistics (each client's
    ``rxidle``, served while it polls or flushes): a broker that is frozen or cut
    off keeps its sockets open and raises no error, it just stops answering."""

    def __init__(self, silent_after_s: float) -> None:
        self.silent_after_s = silent_after_s
        self._heard = time.monotonic()
        self._lock = threading.Lock()

    def stats(self, text: str) -> None:
        try:
            brokers = json.loads(text).get("brokers", {}).values()
            idle_us = [b["rxidle"] for b in brokers if b.get("state") == "UP"
                       and b.get("rxidle", -1) >= 0]
        except (ValueError, AttributeError, KeyError, TypeError):
            return
        if idle_us:
            heard = time.monotonic() - min(idle_us) / 1e6
            with self._lock:
                self._heard = max(self._heard, heard)

    def answering(self) -> bool:
        with self._lock:
            return time.monotonic() - self._heard < self.silent_after_s


class _LibraryLog:
    """librdkafka's log lines through Python logging, keyed by facility (``FAIL``,
    ``REQTMOUT``, ...) so that :class:`~streammeta.io.faults.OncePerCause` forwards
    each kind once, not every reconnect attempt."""

    def log(self, level: int, _fmt: str, facility: str, name: str, text: str) -> None:
        library_log.log(level, "%s " + facility.replace("%", "%%") + ": %s", name, text)


def client_settings(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection settings shared by every client; security settings only when set."""
    s: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "client.id": cfg.client_id,
        "security.protocol": cfg.security_protocol.lower(),
        "socket.timeout.ms": cfg.request_timeout_ms,
        # Back within ~2 s of a broker's return (librdkafka waits up to 10 s by default).
        "reconnect.backoff.max.ms": 2000,
        "logger": _LibraryLog(),
    }
    if cfg.security_protocol.startswith("SASL"):
        s["sasl.mechanism"] = cfg.sasl_mechanism
        if cfg.sasl_mechanism == "OAUTHBEARER":
            s["sasl.oauthbearer.method"] = "oidc"
            s["sasl.oauthbearer.token.endpoint.url"] = cfg.sasl_oauthbearer_token_endpoint_url
            s["sasl.oauthbearer.client.id"] = cfg.sasl_oauthbearer_client_id
            s["sasl.oauthbearer.client.secret"] = cfg.sasl_oauthbearer_client_secret
            if cfg.sasl_oauthbearer_scope:
                s["sasl.oauthbearer.scope"] = cfg.sasl_oauthbearer_scope
        else:
            s["sasl.username"] = cfg.sasl_username
            s["sasl.password"] = cfg.sasl_password
    if cfg.security_protocol.endswith("SSL"):
        s["ssl.endpoint.identification.algorithm"] = "https" if cfg.ssl_check_hostname else "none"
        for key, name in (("ssl_cafile", "ssl.ca.location"),
                          ("ssl_certfile", "ssl.certificate.location"),
                          ("ssl_keyfile", "ssl.key.location"),
                          ("ssl_password", "ssl.key.password")):
            if getattr(cfg, key):
                s[name] = getattr(cfg, key)
    return s


def _wired(cfg: KafkaConfig, faults: Faults, operation: str,
           liveness: Liveness | None) -> dict[str, Any]:
    s = client_settings(cfg)

    def on_error(error: KafkaError) -> None:  # client-wide errors (brokers down, auth)
        faults.error(operation, explain(error, cfg), persistent=is_persistent(error))

    s["error_cb"] = on_error
    if liveness is not None:
        s["statistics.interval.ms"] = STATS_INTERVAL_MS
        s["stats_cb"] = liveness.stats
    return s


def consumer_settings(cfg: KafkaConfig, faults: Faults,
                      liveness: Liveness | None = None) -> dict[str, Any]:
    s = _wired(cfg, faults, "poll", liveness)
    s.update({
        "group.id": cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": cfg.auto_offset_reset,
        "session.timeout.ms": cfg.session_timeout_ms,
        "heartbeat.interval.ms": cfg.heartbeat_interval_ms,
        "max.poll.interval.ms": cfg.max_poll_interval_ms,
        # librdkafka's sticky assignor is the cooperative one.
        "partition.assignment.strategy": ASSIGNORS[cfg.assignor],
        "isolation.level": cfg.isolation_level,
        # A missing input topic is a fault to report, not one to paper over.
        "allow.auto.create.topics": False,
        # How long the broker may hold a fetch for data: part of the latency at
        # moderate rates (Tansu holds it the whole time); idle, 40 fetches a second.
        "fetch.wait.max.ms": min(25, max(5, cfg.poll_timeout_ms)),
    })
    if cfg.group_instance_id:
        s["group.instance.id"] = cfg.group_instance_id  # static membership
    return s


def producer_settings(cfg: KafkaConfig, faults: Faults, operation: str = "produce",
                      liveness: Liveness | None = None) -> dict[str, Any]:
    s = _wired(cfg, faults, operation, liveness)
    if operation == "admin":
        return s
    s.update({
        "acks": "all" if cfg.acks == "all" else "1",
        "enable.idempotence": cfg.enable_idempotence == "true"
        or (cfg.enable_idempotence == "auto" and cfg.acks == "all"),
        "linger.ms": cfg.linger_ms,
        "batch.size": cfg.batch_size,
        "compression.type": cfg.compression_type,
        "request.timeout.ms": cfg.request_timeout_ms,
        "delivery.report.only.error": True,
        # The Java client's (and kafka-python's) hash of the key: an entity's records
        # written by `streammeta replay` go where every other producer's go, and its
        # forecasts to the same partition number (librdkafka's default is CRC32).
        "partitioner": "murmur2_random",
    })
    return s


def topic_partitions(consumer: Consumer, cfg: KafkaConfig, topic: str,
                     close: Callable[[], object], missing: str) -> list[int]:
    """The partitions of ``topic``; if the broker cannot be reached or the topic does not
    exist, ``close`` the caller's clients and raise :class:`BrokerError` (``missing``
    names the topic in that message). Asked in slices of a second up to
    ``kafka.request_timeout_ms``: a signal (SIGTERM at start) is handled between them."""
    deadline = time.monotonic() + cfg.request_timeout_ms / 1000
    try:
        while True:
            try:
                metadata = consumer.list_topics(
                    topic, timeout=min(1.0, max(0.001, deadline - time.monotonic())))
                break
            except KafkaException as exc:
                if time.monotonic() < deadline:
                    time.sleep(0.05)  # an error at once (refused) is not asked again at once
                    continue
                raise BrokerError(f"cannot reach Kafka at {cfg.bootstrap_servers}: "
                                  f"{exc}") from None
    except BaseException:  # BrokerError, or a stop while starting
        close()
        raise
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        close()
        raise BrokerError(missing)
    return sorted(found.partitions)
