from __future__ import annotations

import platform

import torch
from prometheus_client import CollectorRegistry

from streammeta import __version__
from streammeta.serve.metrics import Metrics


def test_build_info_names_the_versions_running() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    labels = {"version": __version__, "python": platform.python_version(),
              "torch": torch.__version__}
    assert registry.get_sample_value("streammeta_build_info", labels) == 1.0
    samples = [s for m in registry.collect() if m.name == "streammeta_build_info"
               for s in m.samples]
    assert len(samples) == 1  # one series: the running build
