"""Every metric the dashboard and the alerts use is served on the daemon's /metrics."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streammeta.serve.health import HealthServer, LoopHealth
from streammeta.serve.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
USERS = [
    DEPLOY / "grafana" / "streammeta.json",
    DEPLOY / "prometheus" / "alerts.yaml",
    DEPLOY / "k8s" / "components" / "monitoring" / "prometheusrule.yaml",
]

# Used by the dashboard or alerts before the daemon exports them. A name checked
# like any other once it is exported; delete it here then.
_NAME = re.compile(r"\b((?:streammeta|process)_[a-z0-9_]+)")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


@pytest.fixture(scope="module")
def exported() -> Iterator[set[str]]:
    """Names on a live /metrics: samples, and families declared by ``# TYPE`` (a
    labelled metric has no sample until a label value is set), histograms also by
    their base name."""
    metrics = Metrics()
    server = HealthServer("127.0.0.1", 0, metrics.registry, LoopHealth(30.0)).start()
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.stop()
    names = {line.split("{", 1)[0].split(" ", 1)[0]
             for line in text.splitlines() if line and not line.startswith("#")}
    names |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    yield names | {_HISTOGRAM_SUFFIX.sub("", name) for name in names}


def used_names() -> set[str]:
    names: set[str] = set()
    for path in USERS:
        names |= set(_NAME.findall(path.read_text()))
    # A histogram is queried as NAME_bucket; it must exist under its base name.
    return {_HISTOGRAM_SUFFIX.sub("", name) for name in names}


def test_the_dashboard_and_alerts_use_metrics() -> None:
    names = used_names()
    assert "streammeta_consumer_lag_records" in names
    assert "streammeta_loop_last_iteration_timestamp_seconds" in names


def test_every_used_metric_is_exported(exported: set[str]) -> None:
    missing = used_names() - exported
    assert not missing, f"used in deploy/ but not on /metrics: {sorted(missing)}"
