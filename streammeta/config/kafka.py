"""The ``[kafka]`` section: the client, the cluster and its security, the topics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streammeta.config.sections import check

CLIENTS = ("confluent", "kafka-python")


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
        check("kafka.bootstrap_servers", self.bootstrap_servers,
               bool(self.bootstrap_servers.strip()), "host:port[,host:port...]")
        for name in ("input_topic", "forecast_topic", "dead_letter_topic", "group_id"):
            value = getattr(self, name)
            check(f"kafka.{name}", value, bool(value) and " " not in value,
                   "a non-empty name without spaces")
        topics = {self.input_topic, self.forecast_topic, self.dead_letter_topic}
        check("kafka.forecast_topic", self.forecast_topic, len(topics) == 3,
               "input, forecast and dead-letter topics to be three different topics")
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        check("kafka.security_protocol", self.security_protocol,
               self.security_protocol in protocols, f"one of {', '.join(protocols)}")
        check("kafka.client", self.client, self.client in CLIENTS, f"one of {', '.join(CLIENTS)}")
        if self.security_protocol.startswith("SASL"):
            mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
            check("kafka.sasl_mechanism", self.sasl_mechanism, self.sasl_mechanism in mechanisms,
                   f"one of {', '.join(mechanisms)} when security_protocol is SASL_*")
            if self.sasl_mechanism == "OAUTHBEARER":
                for name in ("sasl_oauthbearer_token_endpoint_url", "sasl_oauthbearer_client_id",
                             "sasl_oauthbearer_client_secret"):
                    check(f"kafka.{name}", getattr(self, name), bool(getattr(self, name)),
                           "a value with sasl_mechanism OAUTHBEARER (OIDC client credentials)")
                url = self.sasl_oauthbearer_token_endpoint_url
                check("kafka.sasl_oauthbearer_token_endpoint_url", url,
                       url.startswith(("https://", "http://")), "an http(s):// URL")
            else:
                check("kafka.sasl_username", self.sasl_username, bool(self.sasl_username),
                       f"a user name with sasl_mechanism {self.sasl_mechanism}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            check(f"kafka.{name}", value, not value or Path(value).is_file(),
                   "an existing file (or empty)")
        check("kafka.session_timeout_ms", self.session_timeout_ms,
               6000 <= self.session_timeout_ms <= 300000, "an integer in [6000, 300000]")
        check("kafka.max_poll_interval_ms", self.max_poll_interval_ms,
               self.session_timeout_ms <= self.max_poll_interval_ms <= 3_600_000,
               "an integer in [session_timeout_ms, 3600000]")
        check("kafka.heartbeat_interval_ms", self.heartbeat_interval_ms,
               0 < self.heartbeat_interval_ms * 3 <= self.session_timeout_ms,
               "positive and at most a third of session_timeout_ms")
        assignors = ("auto", "cooperative-sticky", "sticky", "range", "roundrobin")
        check("kafka.assignor", self.assignor, self.assignor in assignors,
               f"one of {', '.join(assignors)}")
        check("kafka.assignor", self.assignor,
               not (self.client == "kafka-python" and self.assignor == "cooperative-sticky"),
               "no cooperative-sticky with client kafka-python (it has only eager assignors: "
               "sticky, range, roundrobin; or auto)")
        check("kafka.isolation_level", self.isolation_level,
               self.isolation_level in ("read_committed", "read_uncommitted"),
               "read_committed or read_uncommitted")
        check("kafka.max_poll_records", self.max_poll_records,
               1 <= self.max_poll_records <= 1_000_000, "an integer in [1, 1000000]")
        check("kafka.poll_timeout_ms", self.poll_timeout_ms, 0 <= self.poll_timeout_ms <= 60000,
               "an integer in [0, 60000]")
        check("kafka.auto_offset_reset", self.auto_offset_reset,
               self.auto_offset_reset in ("earliest", "latest"), "'earliest' or 'latest'")
        check("kafka.acks", self.acks, self.acks in ("all", "1"),
               "'all' or '1' (acks=0 loses records)")
        check("kafka.enable_idempotence", self.enable_idempotence,
               self.enable_idempotence in ("auto", "true", "false"), "auto, true or false")
        check("kafka.enable_idempotence", self.enable_idempotence,
               not (self.enable_idempotence == "true" and self.acks != "all"),
               "auto or false with acks = '1' (an idempotent producer needs acks = 'all')")
        check("kafka.linger_ms", self.linger_ms, 0 <= self.linger_ms <= 10000, "0..10000")
        check("kafka.batch_size", self.batch_size, 1024 <= self.batch_size <= 64 << 20,
               "bytes in [1024, 64 MiB]")
        codecs = ("none", "gzip", "lz4", "zstd", "snappy")
        check("kafka.compression_type", self.compression_type, self.compression_type in codecs,
               f"one of {', '.join(codecs)}")
        check("kafka.request_timeout_ms", self.request_timeout_ms,
               1000 <= self.request_timeout_ms <= 600000, "1000..600000")
        check("kafka.shutdown_timeout_s", self.shutdown_timeout_s,
               0 < self.shutdown_timeout_s <= 600, "seconds in (0, 600]")
        check("kafka.fatal_after_s", self.fatal_after_s, 0 < self.fatal_after_s <= 86400,
               "seconds in (0, 86400]")
