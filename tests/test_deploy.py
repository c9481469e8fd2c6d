"""deploy/ and docs/operations.md agree with the code (the tools run in deploy/check.sh)."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from streammeta import config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_reference", ROOT / "docs" / "gen_config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_in_operations_doc_is_current() -> None:
    gen = _generator()
    current = gen.DOC.read_text()
    assert current == gen.render(current), (
        "docs/operations.md is stale: run python docs/gen_config_reference.py --write")


def test_configuration_reference_lists_every_key_and_env_var() -> None:
    text = _generator().reference()
    for section, cls in config.sections().items():
        assert f"### [{section}]" in text
        for name in cls.__dataclass_fields__:
            assert f"`STREAMMETA_{section.upper()}_{name.upper()}`" in text


def test_kubernetes_config_loads_with_the_pod_environment() -> None:
    env = {  # what statefulset.yaml sets
        "STREAMMETA_KAFKA_GROUP_INSTANCE_ID": "streammeta-0",
        "STREAMMETA_METRICS_HOST": "0.0.0.0",
        "STREAMMETA_CHECKPOINT_DIR": "/var/lib/streammeta",
    }
    loaded = config.load(DEPLOY / "k8s" / "base" / "config.toml", env=env)
    assert loaded.kafka.group_instance_id == "streammeta-0"
    assert loaded.metrics.host == "0.0.0.0"


def test_kubernetes_config_models_with_the_defaults() -> None:
    """Only the deployment differs (brokers, timeouts, paths): the pods forecast with the
    model the README measured. It used to pin an older window, width and step size."""
    loaded = config.load(DEPLOY / "k8s" / "base" / "config.toml", env={})
    for section in ("series", "model", "adaptation", "meta", "memory", "drift"):
        assert getattr(loaded, section) == getattr(config.Config(), section), section
    # The engine too, but for its size: the pod's memory limit sets that (below).
    assert dataclasses.replace(loaded.engine, max_entities=1) == dataclasses.replace(
        config.Config().engine, max_entities=1)


# Peak RSS per entity while a checkpoint is written: 3.78 GB at 200,000 entities, the
# process's baseline included (`python benchmarks/checkpoint.py --stores --only local
# --entities 200000`, docs/operations.md; 7.5 GB before the pending forecasts' rings).
PEAK_BYTES_PER_ENTITY = 3.78e9 / 200_000


def test_the_statefulset_memory_limit_holds_its_entities_through_a_checkpoint() -> None:
    loaded = config.load(DEPLOY / "k8s" / "base" / "config.toml", env={})
    limit = re.search(r"limits:\n(?:.*\n)*?\s+memory: (\d+)Gi",
                      (DEPLOY / "k8s" / "base" / "statefulset.yaml").read_text())
    assert limit, "no memory limit in the StatefulSet"
    # A GiB of margin for the model, the Kafka client's buffers and the interpreter.
    assert loaded.engine.max_entities * PEAK_BYTES_PER_ENTITY + 2**30 <= int(limit.group(1)) * 2**30


def _seconds(pattern: str, path: Path) -> float:
    match = re.search(pattern, path.read_text(), re.MULTILINE)
    assert match, f"{pattern!r} not in {path}"
    return float(match.group(1))


@pytest.mark.parametrize(("path", "pattern"), [
    ("systemd/streammeta.service", r"^TimeoutStopSec=(\d+)$"),
    ("k8s/base/statefulset.yaml", r"terminationGracePeriodSeconds: (\d+)$"),
    ("compose.yaml", r"stop_grace_period: (\d+)s$"),
])
def test_stop_grace_covers_the_shutdown_flush(path: str, pattern: str) -> None:
    k8s = config.load(DEPLOY / "k8s" / "base" / "config.toml", env={})
    limit = max(config.KafkaConfig().shutdown_timeout_s, k8s.kafka.shutdown_timeout_s)
    # The flush, then the final checkpoint: at least as long again.
    assert _seconds(pattern, DEPLOY / path) >= 2 * limit


def test_watchdog_is_longer_than_the_stall_timeout() -> None:
    # The loop stops pinging when it stalls; systemd should not act before /healthz would.
    watchdog = _seconds(r"^WatchdogSec=(\d+)$", DEPLOY / "systemd" / "streammeta.service")
    assert watchdog >= config.MetricsConfig().stall_after_s


def test_the_compose_replay_finds_the_bundled_data() -> None:
    """The replay service's ``--data "$(python -c '...')"`` runs in the image: the
    snippet must import and print an existing file. It imported ``streammeta.datasets``,
    which does not exist, so the service replayed nothing (ImportError, empty --data)."""
    import subprocess
    import sys

    text = (DEPLOY / "compose.yaml").read_text()
    snippets = re.findall(r"\$\$\(python -c '([^']+)'\)", text)
    assert snippets, "no python -c snippet in the compose replay command"
    for snippet in snippets:
        out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                             cwd=ROOT, check=False)
        assert out.returncode == 0, out.stderr
        assert Path(out.stdout.strip()).is_file(), out.stdout
