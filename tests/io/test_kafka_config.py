"""[kafka] settings → each client's settings; what a chosen client cannot honour is
refused when loading (``check-config``), not at the first connection."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.errors import BrokerError, ConfigError
from streammeta.io import confluent_settings as rdk
from streammeta.io.faults import Faults
from streammeta.io.kafka_settings import client_kwargs

OAUTH = {"STREAMMETA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
         "STREAMMETA_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
         "STREAMMETA_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://idp.example/token",
         "STREAMMETA_KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "streammeta",
         "STREAMMETA_KAFKA_SASL_OAUTHBEARER_SCOPE": "kafka"}


def load(**env: str) -> Config:
    return config_mod.load(None, env=env)


def test_oauthbearer_needs_the_oidc_client_credentials_at_load() -> None:
    env = {"STREAMMETA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "STREAMMETA_KAFKA_SASL_MECHANISM": "OAUTHBEARER"}
    with pytest.raises(ConfigError, match=r"kafka\.sasl_oauthbearer_token_endpoint_url"):
        config_mod.load(None, env=env)
    with pytest.raises(ConfigError, match=r"kafka\.sasl_oauthbearer_client_secret"):
        config_mod.load(None, env=OAUTH)


def test_oauthbearer_settings_for_librdkafka_with_the_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = config_mod.load(None, env={
        **OAUTH, "STREAMMETA_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE": str(secret)})
    s = rdk.client_settings(config.kafka)
    assert s["security.protocol"] == "sasl_ssl" and s["sasl.mechanism"] == "OAUTHBEARER"
    assert s["sasl.oauthbearer.method"] == "oidc"
    assert s["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/token"
    assert s["sasl.oauthbearer.client.id"] == "streammeta"
    assert s["sasl.oauthbearer.client.secret"] == "s3cret"
    assert s["sasl.oauthbearer.scope"] == "kafka"
    assert "sasl.username" not in s
    assert "s3cret" not in config_mod.to_toml(config)  # masked by check-config


def test_oauthbearer_with_kafka_python_gets_a_token_provider_that_fetches_tokens() -> None:
    seen: list[tuple[str, dict[str, list[str]]]] = []

    class TokenEndpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            seen.append((self.headers["Authorization"], parse_qs(body)))
            payload = b'{"access_token": "tok-%d", "expires_in": 3600}' % len(seen)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/token"
        config = load(**{**OAUTH, "STREAMMETA_KAFKA_CLIENT": "kafka-python",
                         "STREAMMETA_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": url,
                         "STREAMMETA_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "s3cret"})
        provider = client_kwargs(config.kafka)["sasl_oauth_token_provider"]
        assert provider.token() == "tok-1"
        assert provider.token() == "tok-1"  # reused until it nears its expiry
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 1
    auth, form = seen[0]
    assert auth == "Basic c3RyZWFtbWV0YTpzM2NyZXQ="  # streammeta:s3cret
    assert form == {"grant_type": ["client_credentials"], "scope": ["kafka"]}
    with pytest.raises(BrokerError, match="OAUTHBEARER token"):
        client_kwargs(config.kafka)["sasl_oauth_token_provider"].token()  # endpoint gone


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_user_and_password_for_both_clients(mechanism: str) -> None:
    config = load(STREAMMETA_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                  STREAMMETA_KAFKA_SASL_MECHANISM=mechanism,
                  STREAMMETA_KAFKA_SASL_USERNAME="svc", STREAMMETA_KAFKA_SASL_PASSWORD="pw")
    s = rdk.client_settings(config.kafka)
    assert (s["sasl.mechanism"], s["sasl.username"], s["sasl.password"]) == (mechanism, "svc", "pw")
    k = client_kwargs(config.kafka)
    assert (k["sasl_mechanism"], k["sasl_plain_username"], k["sasl_plain_password"]) == \
        (mechanism, "svc", "pw")


@pytest.fixture
def client_certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=streammeta", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    yield cert, key


def test_mutual_tls_settings_are_built_and_accepted_by_librdkafka(
        client_certificate: tuple[Path, Path]) -> None:
    from confluent_kafka import Producer

    cert, key = client_certificate
    config = load(STREAMMETA_KAFKA_SECURITY_PROTOCOL="SSL", STREAMMETA_KAFKA_SSL_CAFILE=str(cert),
                  STREAMMETA_KAFKA_SSL_CERTFILE=str(cert), STREAMMETA_KAFKA_SSL_KEYFILE=str(key),
                  STREAMMETA_KAFKA_SSL_CHECK_HOSTNAME="false",
                  STREAMMETA_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    s = rdk.producer_settings(config.kafka, Faults(60.0))
    assert s["security.protocol"] == "ssl"
    assert (s["ssl.ca.location"], s["ssl.certificate.location"], s["ssl.key.location"]) == \
        (str(cert), str(cert), str(key))
    assert s["ssl.endpoint.identification.algorithm"] == "none"
    Producer(s).flush(0)  # librdkafka loads the certificate and key, or raises
    k = client_kwargs(config.kafka)
    assert (k["ssl_cafile"], k["ssl_certfile"], k["ssl_keyfile"]) == \
        (str(cert), str(cert), str(key))
    assert k["ssl_check_hostname"] is False


def test_delivery_settings_by_default_and_per_client() -> None:
    kafka = load().kafka
    assert kafka.client == "confluent"
    consumer = rdk.consumer_settings(kafka, Faults(60.0))
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["allow.auto.create.topics"] is False
    assert "group.instance.id" not in consumer
    producer = rdk.producer_settings(kafka, Faults(60.0))
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    static = load(STREAMMETA_KAFKA_GROUP_INSTANCE_ID="pod-0").kafka
    assert rdk.consumer_settings(static, Faults(60.0))["group.instance.id"] == "pod-0"
    assert rdk.producer_settings(load(STREAMMETA_KAFKA_ACKS="1").kafka,
                                 Faults(60.0))["enable.idempotence"] is False


@pytest.mark.parametrize(("env", "key"), [
    ({"STREAMMETA_KAFKA_CLIENT": "librdkafka"}, "kafka.client"),
    ({"STREAMMETA_KAFKA_CLIENT": "kafka-python",
      "STREAMMETA_KAFKA_ASSIGNOR": "cooperative-sticky"}, "kafka.assignor"),
    ({"STREAMMETA_KAFKA_ENABLE_IDEMPOTENCE": "true", "STREAMMETA_KAFKA_ACKS": "1"},
     "kafka.enable_idempotence"),
    ({"STREAMMETA_KAFKA_ISOLATION_LEVEL": "dirty"}, "kafka.isolation_level"),
    ({**OAUTH, "STREAMMETA_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "x",
      "STREAMMETA_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "idp.example/token"},
     "kafka.sasl_oauthbearer_token_endpoint_url"),
])
def test_what_a_client_cannot_honour_is_refused_at_load(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_mod.load(None, env=env)


def test_sasl_scram_and_fatal_after_are_accepted_and_checked() -> None:
    env = {"STREAMMETA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "STREAMMETA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "STREAMMETA_KAFKA_SASL_USERNAME": "svc", "STREAMMETA_KAFKA_SASL_PASSWORD": "s3cret",
           "STREAMMETA_KAFKA_FATAL_AFTER_S": "30"}
    config = config_mod.load(None, env=env)
    assert config.kafka.fatal_after_s == 30.0
    assert "s3cret" not in config_mod.to_toml(config)
    with pytest.raises(ConfigError, match=r"kafka\.fatal_after_s"):
        config_mod.load(None, env={"STREAMMETA_KAFKA_FATAL_AFTER_S": "0"})


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_codec_can_be_produced_with_the_installed_libraries(codec: str) -> None:
    from streammeta.io.kafka_settings import missing_codecs

    config = config_mod.load(None, env={"STREAMMETA_KAFKA_COMPRESSION_TYPE": codec})
    assert config.kafka.compression_type == codec
    assert missing_codecs() == []  # the project's own install brings all of them
    assert rdk.producer_settings(config.kafka, Faults(60.0))["compression.type"] == codec
