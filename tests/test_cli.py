from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streammeta.cli import main


def test_check_config_prints_the_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                    'sasl_username = "svc"\n')
    monkeypatch.setenv("STREAMMETA_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("STREAMMETA_SERIES_HORIZON", "12")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    parsed = tomllib.loads(out)
    assert parsed["series"]["horizon"] == 12 and parsed["kafka"]["sasl_password"] == "***"


def test_check_config_fails_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[series]\nseason = 0\n")
    done = subprocess.run([sys.executable, "-m", "streammeta", "check-config", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "config key 'series.season': got 0, expected an integer in [1, 10000]" in done.stderr


@pytest.mark.parametrize("command", ["run", "demo", "replay", "check-config"])
def test_every_command_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 3


def test_run_against_an_unreachable_broker_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nbootstrap_servers = "127.0.0.1:1"\nrequest_timeout_ms = 2000\n'
                    '[metrics]\nport = 0\n[checkpoint]\ndir = ""\n')
    done = subprocess.run([sys.executable, "-m", "streammeta", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in done.stderr
