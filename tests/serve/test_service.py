"""The whole service — daemon, outer loop, checkpoints, probes — on in-memory fakes."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from support import good_records

from streammeta.config import Config, ConfigError
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.persistence.checkpoint import CheckpointStore
from streammeta.serve.service import Service


class Manager:
    """What a service manager is told, in order."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def ready(self) -> None:
        self.said.append("ready")

    def loop_iteration_ok(self) -> None:
        if self.said[-1:] != ["alive"]:
            self.said.append("alive")

    def stopping(self) -> None:
        self.said.append("stopping")


def test_the_service_runs_end_to_end_on_in_memory_fakes(small: Config, tmp_path: Path) -> None:
    config = small.replace("checkpoint", dir=str(tmp_path), member="one").replace(
        "metrics", port=0)
    records = good_records(entities=6, steps=30, partitions=2)
    source, sink, manager = MemorySource(records, batch_size=40), MemorySink(), Manager()
    service = Service(config, source=source, sink=sink, notifier=manager)
    assert service.outer is not None  # meta.enabled: the outer loop runs beside
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while service.daemon.observations < len(records) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.metrics_url is not None
        with urllib.request.urlopen(service.metrics_url, timeout=10) as response:
            assert b"streammeta_observations_processed_total 180.0" in response.read()
    finally:
        service.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    # A forecast for every observation, keyed by entity, from every origin.
    assert len(sink.forecasts) == len(records) and not sink.dead_letters
    origins = {(key, orjson.loads(value)["origin"]) for key, value in sink.forecasts}
    assert len(origins) == len(records)
    assert source.committed == {("obs", 0): 90, ("obs", 1): 90}
    # The shutdown checkpoint holds both partitions at the committed offsets.
    store = CheckpointStore(tmp_path, member="reader")
    for partition in (0, 1):
        found = store.latest_for(partition)
        assert found is not None and found[1]["partitions"][partition]["offset"] == 90
    assert manager.said == ["ready", "alive", "stopping"]


def _stopped(service: Service) -> None:
    """Run ``service`` until it has taken its partitions, then stop it as SIGTERM does."""
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while service.daemon.observations < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        service.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_a_second_process_of_one_member_name_is_refused_and_a_restart_is_not(
        small: Config, tmp_path: Path) -> None:
    # Two replicas on one host, neither checkpoint.member nor kafka.group_instance_id
    # set: both were named after the host and pruned each other's checkpoint files.
    config = small.replace("checkpoint", dir=str(tmp_path)).replace("metrics", enabled=False)
    records = good_records(entities=3, steps=10, partitions=1)
    first = Service(config, source=MemorySource(records), sink=MemorySink(), notifier=Manager())
    with pytest.raises(ConfigError, match=r"checkpoint\.member") as refused:
        Service(config, source=MemorySource(records), sink=MemorySink(), notifier=Manager())
    assert socket.gethostname() in str(refused.value)
    assert f"process {os.getpid()}" in str(refused.value)  # who holds the name
    # Another name is another replica: it starts beside the first.
    other = Service(config.replace("checkpoint", member="other"), source=MemorySource([]),
                    sink=MemorySink(), notifier=Manager())
    _stopped(first)
    # Once the first has stopped, a restart under its name starts and restores its state.
    again = Service(config, source=MemorySource(records), sink=MemorySink(),
                    notifier=Manager())
    assert again.daemon.checkpointer is not None
    assert again.daemon.checkpointer.store.member == CheckpointStore(
        tmp_path, member=socket.gethostname()).member
    assert again.daemon.checkpointer.restore_partitions([0]) == {0: 30}
    for service in (other, again):
        service.stop()
        service.run()
