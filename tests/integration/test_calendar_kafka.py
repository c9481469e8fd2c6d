"""A monthly stream (``series.freq = "MS"``) through the broker as another producer
writes it: librdkafka, zstd batches, ISO-8601 dates. The daemon is SIGKILLed twice in
the middle; every observation still gets one forecast whose targets are the next
months' first days, and every entity's state equals an uninterrupted run's."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import orjson
import pytest
from streamcheck import assert_state_equals_an_uninterrupted_run, finish_stream
from test_daemon_kafka import committed_total, read_to_end, start_daemon, wait_for

from streammeta.config import Config

pytestmark = pytest.mark.integration
confluent_kafka = pytest.importorskip("confluent_kafka")
ENTITIES, MONTHS, H = 60, 48, 6
MONTH_STARTS = np.arange(np.datetime64("2019-01"), np.datetime64("2019-01") + MONTHS + H)


def _ms(month: np.datetime64) -> int:
    return int(month.astype("datetime64[ms]").astype(np.int64))


def test_a_monthly_zstd_stream_survives_sigkills(kafka_config: Config, tmp_path: Path) -> None:
    config = kafka_config.replace("series", freq="MS", season=12, horizon=H).replace(
        "checkpoint", every_records=600, every_s=3600).replace(
        "meta", enabled=False).replace("kafka", max_poll_records=300)
    rng = np.random.default_rng(5)
    values = 100 + 10 * np.sin(np.arange(MONTHS)[:, None] * np.pi / 6) + rng.normal(
        0, 1, (MONTHS, ENTITIES)).cumsum(axis=0)
    producer = confluent_kafka.Producer({"bootstrap.servers": config.kafka.bootstrap_servers,
                                         "compression.type": "zstd", "linger.ms": 20})
    for t in range(MONTHS):
        for e in range(ENTITIES):
            doc = {"entity": f"e{e}", "ts": f"{MONTH_STARTS[t]}-01T00:00:00Z",
                   "value": float(values[t, e])}
            producer.produce(config.kafka.input_topic, key=f"e{e}", value=orjson.dumps(doc))
        producer.poll(0)
    assert producer.flush(30) == 0
    del producer  # librdkafka would log reconnects to the broker the fixture stops
    total = MONTHS * ENTITIES
    path = tmp_path / "config.toml"
    for point in (total // 4, total // 2):
        daemon = start_daemon(config, path)
        wait_for(lambda p=point: committed_total(config) >= p, timeout_s=180,
                 what=f"{point} records committed")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
    finish_stream(config, path, total, timeout_s=180)

    forecasts = {}
    for record in read_to_end(config, config.kafka.forecast_topic):
        doc = orjson.loads(record.value)
        forecasts[(doc["entity"], doc["origin"])] = doc
    assert set(forecasts) == {(f"e{e}", _ms(MONTH_STARTS[t])) for t in range(MONTHS)
                              for e in range(ENTITIES)}  # 0 lost
    for t in (0, MONTHS // 2, MONTHS - 1):
        doc = forecasts[("e0", _ms(MONTH_STARTS[t]))]
        assert doc["step_ms"] == 0 and doc["freq"] == "MS"
        assert doc["ts"] == [_ms(m) for m in MONTH_STARTS[t + 1:t + 1 + H]]
        assert all(np.isfinite(doc["point"]))

    # 0 applied twice, 0 skipped; a calendar frequency's engine units are months
    assert_state_equals_an_uninterrupted_run(config, values, MONTH_STARTS[:MONTHS].astype(np.int64))
