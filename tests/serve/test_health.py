from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from streammeta.serve.health import HealthServer, LoopHealth
from streammeta.serve.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, LoopHealth, Clock, Metrics]]:
    clock, metrics = Clock(), Metrics()
    health = LoopHealth(stall_after_s=30, clock=clock)
    server = HealthServer("127.0.0.1", 0, metrics.registry, health).start()
    yield server, health, clock, metrics
    server.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_probes_follow_the_loop(served: tuple[HealthServer, LoopHealth, Clock, Metrics]) -> None:
    server, health, clock, _ = served
    assert get(server.url + "/healthz") == (503, "loop not started\n")
    health.beat()
    assert get(server.url + "/healthz")[0] == 200
    assert get(server.url + "/readyz")[0] == 503  # alive but not assigned
    health.set_ready(True)
    assert get(server.url + "/readyz")[0] == 200
    clock.now += 31  # no iteration for longer than stall_after_s
    status, body = get(server.url + "/healthz")
    assert status == 503 and "stalled" in body
    assert get(server.url + "/readyz")[0] == 503
    health.beat()
    health.stopping = True
    assert get(server.url + "/healthz")[0] == 200 and get(server.url + "/readyz")[0] == 503
    assert get(server.url + "/other")[0] == 404


def test_metrics_endpoint_serves_the_registry(
    served: tuple[HealthServer, LoopHealth, Clock, Metrics],
) -> None:
    server, _, _, metrics = served
    metrics.records_consumed.inc(3)
    status, text = get(server.url + "/metrics")
    assert status == 200
    assert "streammeta_records_consumed_total 3.0" in text
    assert 'streammeta_dead_letters_total{reason="not_json"} 0.0' in text
    assert "process_resident_memory_bytes" in text
    assert "entity=" not in text


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.forecasts.inc()
    assert a.registry.get_sample_value("streammeta_forecasts_published_total") == 1
    assert b.registry.get_sample_value("streammeta_forecasts_published_total") == 0


def test_a_port_in_use_or_a_bad_host_names_the_setting() -> None:
    """A second daemon on one host (metrics.port 9464 taken) stopped ``run`` with an
    ``OSError: [Errno 98] Address already in use`` traceback; it is a configuration
    error naming the key (exit 2)."""
    import socket

    from streammeta.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"'metrics.port': got {port}, expected a port "
                           r"free .*Address already in use"):
            HealthServer("127.0.0.1", port, Metrics().registry, LoopHealth(30.0))
    with pytest.raises(ConfigError, match=r"'metrics.host': got 'no.such.host.invalid'"):
        HealthServer("no.such.host.invalid", 0, Metrics().registry, LoopHealth(30.0))
