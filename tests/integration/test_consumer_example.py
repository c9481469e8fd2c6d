"""The demo's flow on a real broker, read by examples/consume_forecasts.py and by a
consumer that knows only the schema files in docs/contracts/."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from test_daemon_kafka import read_topic

from streammeta.config import Config
from streammeta.contracts import header_map
from streammeta.io import datasets
from streammeta.io import kafka as kafka_edge
from streammeta.io.replay import observations_from_file, replay
from streammeta.serve.service import Service

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OBSERVATIONS = 3000  # the bundled M4 subset's first 50 hours of its 60 series


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "docs" / "contracts" / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def test_example_consumer_reads_every_forecast_of_a_demo_run(kafka_config: Config) -> None:
    # The demo's flow, quicker: no outer loop (a run in progress holds the shutdown up
    # to 30 s), a 12-step horizon (jsonschema takes ~6 ms per 48-step forecast) and
    # entities warm after a day, so that both young and warm forecasts are published.
    config = kafka_config.replace("meta", enabled=False).replace("series", horizon=12)
    service = Service(config.replace("model", window=48, warm_after=24))
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        entities, ts, values = observations_from_file(datasets.bundled_m4(), "m4")
        writer = kafka_edge.ObservationWriter(kafka_config.kafka)
        try:
            replay(entities, ts, values, writer.send, limit=OBSERVATIONS)
            writer.flush()
        finally:
            writer.close()
        daemon = service.daemon
        deadline = time.monotonic() + 60
        while daemon.observations < OBSERVATIONS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.observations == OBSERVATIONS and daemon.dead_letters == 0

        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "consume_forecasts.py"),
             "--bootstrap-servers", kafka_config.kafka.bootstrap_servers,
             "--topic", kafka_config.kafka.forecast_topic, "--group", "example-" +
             kafka_config.kafka.group_id, "--max-forecasts", str(OBSERVATIONS),
             "--idle-timeout", "20"],
            capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        assert sum(line.startswith("forecast ") for line in lines) == OBSERVATIONS
        assert f"summary: {OBSERVATIONS} forecasts, 0 duplicates dropped, 0 invalid, 60 " \
               "entities" in lines
        assert any(" warm=True " in line for line in lines)
        assert any(" warm=False " in line for line in lines)

        # A consumer written from the schema files alone accepts every message.
        forecasts = read_topic(kafka_config, kafka_config.kafka.forecast_topic, OBSERVATIONS)
        assert len(forecasts) == OBSERVATIONS
        body_schema, header_schema = schema_validator("forecast"), schema_validator(
            "forecast-headers")
        for record in forecasts:
            body_schema.validate(json.loads(record.value))
            header_schema.validate(header_map(record.headers))  # every forecast carries them
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
