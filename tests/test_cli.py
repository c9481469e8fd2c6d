from __future__ import annotations

import json
import os
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
    assert parsed["model"]["hidden"] == 0  # automatic, as written (Config.resolved)


def test_check_config_fails_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[series]\nseason = -1\n")
    done = subprocess.run([sys.executable, "-m", "streammeta", "check-config", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert ("config key 'series.season': got -1, expected 0 (from the frequency) or an "
            "integer in [1, 10000]") in done.stderr


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


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_package_version(
    flag: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([flag])
    assert exited.value.code == 0
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert capsys.readouterr().out == f"streammeta {pyproject['project']['version']}\n"


def test_check_config_names_an_unknown_variable_and_the_key_meant(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMMETA_KAFKA_BOOTSTRAPSERVERS", "broker:9092")
    assert main(["check-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "streammeta: error: unknown environment variable STREAMMETA_KAFKA_BOOTSTRAPSERVERS "
        "(did you mean STREAMMETA_KAFKA_BOOTSTRAP_SERVERS, kafka.bootstrap_servers?)\n")


def test_run_logs_json_and_warns_about_an_unknown_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nbootstrap_servers = "127.0.0.1:1"\nrequest_timeout_ms = 2000\n'
                    '[metrics]\nport = 0\n[checkpoint]\ndir = ""\n[log]\nformat = "json"\n')
    env = {**os.environ, "STREAMMETA_METRICS_PROT": "9000"}
    done = subprocess.run([sys.executable, "-m", "streammeta", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[-1].startswith("streammeta: error: cannot reach Kafka")  # printed, not logged
    records = [json.loads(line) for line in lines[:-1]]
    assert records[0]["level"] == "WARNING" and records[0]["logger"] == "streammeta"
    assert records[0]["message"] == (
        "unknown environment variable STREAMMETA_METRICS_PROT (did you mean "
        "STREAMMETA_METRICS_PORT, metrics.port?): ignored")


@pytest.mark.parametrize("argv", [
    ["replay", "--data", "x.csv", "--format", "long", "--rate", "-1"],
    ["demo", "--rate", "-5"], ["demo", "--rate", "nan"], ["demo", "--duration", "-1"]])
def test_a_negative_rate_or_duration_is_refused_by_the_parser(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``replay --rate -1`` connected to Kafka and then stopped on a ValueError
    traceback; ``demo --rate -5`` replayed nothing and said only "0 observations"."""
    from streammeta.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert f"argument {argv[-2]}: expected a number >= 0" in capsys.readouterr().err



_EVALUATE = ["evaluate", "--data", "x.csv", "--format", "long", "--protocol", "rolling"]


@pytest.mark.parametrize(("argv", "low"), [
    ([*_EVALUATE, "--batch-size", "0"], 1), ([*_EVALUATE, "--batch-size", "-1"], 1),
    ([*_EVALUATE, "--horizon", "-2"], 1), ([*_EVALUATE, "--season", "0"], 1),
    ([*_EVALUATE, "--limit-series", "-3"], 1), ([*_EVALUATE, "--warmup", "-3"], 1),
    ([*_EVALUATE, "--arrival-gap", "-2"], 0), ([*_EVALUATE, "--peer-origins", "0"], 1),
    (["pretrain", "--data", "x.csv", "--format", "long", "--out", "p", "--steps", "-1"], 1),
    (["replay", "--data", "x.csv", "--format", "long", "--limit", "-5"], 0)])
def test_counts_below_their_least_are_refused_by_the_parser(
        argv: list[str], low: int, capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate --batch-size 0, --horizon -2, --arrival-gap -2 stopped on a ValueError or
    IndexError traceback; --batch-size -1 scored nothing (all NaN) with exit 0;
    --limit-series -3 left the last three series out and --warmup -3 scored from
    before the start, silently; --season 0 and --peer-origins 0 were taken as unset."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert f"argument {argv[-2]}: expected an integer >= {low}" in capsys.readouterr().err

def test_output_paths_that_cannot_be_written_are_refused_before_the_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`evaluate --json DIR` (or --per-series, --forecasts-out) and `pretrain --out DIR`
    ran the whole back-test or training and then stopped on IsADirectoryError, the
    results lost (pretrain also left DIR.tmp beside it); a --report that is a file, or
    a folder under a file, on FileExistsError. They are refused first, exit 2."""
    data = tmp_path / "q.csv"
    data.write_text("unique_id,ds,y\n" + "".join(f"a,{t},{t % 4 + 1}\n" for t in range(1, 41)))
    base = ["--data", str(data), "--format", "long"]
    evaluate = ["evaluate", *base, "--protocol", "final-origin", "--horizon", "4",
                "--season", "4", "--methods", "naive", "-q"]
    cases = [([*evaluate, "--json", str(tmp_path)], "--json"),
             ([*evaluate, "--per-series", str(tmp_path)], "--per-series"),
             ([*evaluate, "--forecasts-out", str(tmp_path)], "--forecasts-out"),
             ([*evaluate, "--report", str(data)], "--report"),
             ([*evaluate, "--json", str(data / "out.json")], "--json"),
             (["pretrain", *base, "--out", str(tmp_path), "--steps", "1", "-q"], "--out")]
    for argv, option in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"streammeta: error: {option} "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.csv"]  # nothing written
    assert not Path(f"{tmp_path}.tmp").exists()
    assert main([*evaluate, "--json", str(tmp_path / "new" / "out.json")]) == 0
    assert json.loads((tmp_path / "new" / "out.json").read_text())["results"]


def test_check_config_reads_model_init_as_run_would(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config only checked that model.init exists: a CSV, or θ learned for another
    series.season, passed (exit 0) and `run` then stopped on it (exit 2)."""
    from streammeta import config as config_mod
    from streammeta.online import model
    from streammeta.persistence import params as params_io

    quarterly = config_mod.load(None, env={}).replace("series", season=4, horizon=8)
    shape = model.ModelShape.of(quarterly.resolved())
    theta = params_io.save(tmp_path / "q.pt", model.init_params(shape, seed=0), 1, shape)
    other = tmp_path / "data.csv"
    other.write_text("unique_id,ds,y\na,1,2.0\n")
    for path, season, expected in ((theta, "4", 0), (theta, "24", 2), (other, "4", 2)):
        config = tmp_path / "c.toml"
        config.write_text(f'[series]\nseason = {season}\nhorizon = 8\n[model]\ninit = "{path}"\n')
        assert main(["check-config", str(config)]) == expected, (path, season)
        err = capsys.readouterr().err
        if expected:
            assert err.startswith(f"streammeta: error: config key 'model.init': got '{path}'")


def test_check_config_takes_a_theta_file_of_the_season_the_frequency_gives(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """θ learned for monthly data (season 12) was refused under freq = "MS" alone: the
    season was 24 whatever the frequency. It is the frequency's, here 12."""
    from streammeta import config as config_mod
    from streammeta.online import model
    from streammeta.persistence import params as params_io

    monthly = config_mod.load(None, env={}).replace("series", freq="MS", season=12, horizon=8)
    shape = model.ModelShape.of(monthly)
    theta = params_io.save(tmp_path / "m.pt", model.init_params(shape, seed=0), 1, shape)
    config = tmp_path / "c.toml"
    for freq, expected in (("MS", 0), ("h", 2)):
        config.write_text(f'[series]\nfreq = "{freq}"\nhorizon = 8\n[model]\ninit = "{theta}"\n')
        assert main(["check-config", str(config)]) == expected, freq
        said = capsys.readouterr()
        if expected:
            assert "θ was learned for series.season = 12, this configuration has 24" in said.err
        else:
            assert "season = 12  # (from the frequency; 0 = automatic)" in said.out


def test_demo_refuses_data_of_another_step_before_starting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --data daily.csv` with the default hourly step ran the daemon on values it
    took as 23-hour gaps, forecasting them by the hour; refused as replay refuses it."""
    daily = tmp_path / "daily.csv"
    daily.write_text("unique_id,ds,y\n" + "".join(
        f"a,2021-01-{d:02d},{d % 7 + 1}\n" for d in range(1, 29)))
    assert main(["demo", "--data", str(daily), "--format", "long", "--duration", "1"]) == 2
    assert "but series.step_ms (no series.freq set) is a step of 3600000 ms" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("role", ["ingest", "trainer"])
def test_demo_refuses_a_replicas_role_before_starting(
        role: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`STREAMMETA_META_ROLE=ingest streammeta demo` started the broker and then failed
    on "topic 'streammeta.versions' does not exist": a replica's role in one process
    that has no trainer. Refused by key before the broker starts."""
    monkeypatch.setenv("STREAMMETA_META_ROLE", role)
    assert main(["demo", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "config key 'meta.role'" in err and "all in the demo" in err
    assert "does not exist" not in err
