"""The broker for integration tests, chosen by ``STREAMMETA_TEST_BROKER``:

* unset or ``embedded`` — the embedded Tansu broker (no Docker needed);
* ``container`` — Apache Kafka through testcontainers (needs a Docker engine);
* ``host:port`` — an external broker that is already running.

Checkpoints go to a directory under the test's ``tmp_path``, or with
``STREAMMETA_TEST_CHECKPOINTS=s3`` to a fresh bucket on a local S3-compatible
server (moto's, started for the session): the same tests then prove that state
follows its partitions through object storage.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from streammeta import config as config_mod
from streammeta.config import Config


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    choice = os.environ.get("STREAMMETA_TEST_BROKER", "embedded")
    if choice == "embedded":
        from streammeta.io.broker import EmbeddedBroker

        with EmbeddedBroker() as embedded:
            yield embedded.bootstrap
    elif choice == "container":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        yield choice


CLIENTS = ("confluent", "kafka-python")


def config_for(bootstrap: str, checkpoint_dir: str, client: str = "") -> Config:
    """A configuration with topics and a group of its own, created on the broker
    (``client``: the Kafka client; empty = the default)."""
    from streammeta.io.edge import ensure_topics

    run = uuid.uuid4().hex[:8]
    config = config_mod.load(None, env={})
    config = config.replace(
        "kafka", client=client or config.kafka.client, bootstrap_servers=bootstrap,
        input_topic=f"obs-{run}",
        forecast_topic=f"fc-{run}", dead_letter_topic=f"dlq-{run}", group_id=f"g-{run}",
        session_timeout_ms=6000, heartbeat_interval_ms=1000, poll_timeout_ms=100,
        max_poll_interval_ms=20000,
    ).replace("metrics", port=0).replace("checkpoint", dir=checkpoint_dir)
    ensure_topics(config.kafka, partitions=4)
    return config


@pytest.fixture
def kafka_config(broker: str, tmp_path: object, request: pytest.FixtureRequest) -> Config:
    """With the default client (checkpoints in S3 with STREAMMETA_TEST_CHECKPOINTS=s3)."""
    if os.environ.get("STREAMMETA_TEST_CHECKPOINTS", "dir") == "s3":
        return s3_config(broker, request)
    return config_for(broker, f"{tmp_path}/checkpoints")


def s3_config(broker: str, request: pytest.FixtureRequest) -> Config:
    """Checkpoints in a fresh bucket of the test S3 server; the daemons the tests
    start inherit its credentials from the environment."""
    endpoint = request.getfixturevalue("s3_endpoint")
    config = config_for(broker, request.getfixturevalue("s3_url"))
    return config.replace("checkpoint", storage_options=json.dumps({"endpoint_url": endpoint}))


@pytest.fixture(params=CLIENTS)
def each_client(request: pytest.FixtureRequest, broker: str, tmp_path: object) -> Config:
    """The conformance suite: the same test with every supported client."""
    return config_for(broker, f"{tmp_path}/checkpoints", request.param)
