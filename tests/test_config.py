from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from streammeta import config as config_mod
from streammeta.cli import main
from streammeta.config import Config, ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_repository_config_is_valid_and_states_the_defaults() -> None:
    loaded = config_mod.load(Path(__file__).parent.parent / "config.toml", env={})
    assert loaded == Config()


@pytest.mark.parametrize(("toml", "key"), [
    ("[kafka]\nbootstrap = 'x'", "kafka.bootstrap"),
    ("[series]\nhorizon = 'soon'", "series.horizon"),
    ("[series]\nhorizon = true", "series.horizon"),
    ("[series]\nhorizon = 0", "series.horizon"),
    ("[series]\nquantiles = [0.9, 0.1]", "series.quantiles"),
    ("[series]\nquantiles = ['a']", "series.quantiles"),
    ("[meta]\ndevice = 'tpu'", "meta.device"),
    ("[meta]\nguard_rate = 0", "meta.guard_rate"),
    ("[meta]\nguard_for = -1", "meta.guard_for"),
    ("[model]\ninit = 'no/such/file.pt'", "model.init"),
    ("[model]\nhidden = 2", "model.hidden"),
    ("[model]\nhidden = -1", "model.hidden"),
    ("[adaptation]\nloss = 'huber'", "adaptation.loss"),
    ("[adaptation]\ninner_lr = -1", "adaptation.inner_lr"),
    ("[adaptation]\nshrink = 1.0", "adaptation.shrink"),
    ("[series]\ntransform = 'log'", "series.transform"),
    ("[series]\nseason = -1", "series.season"),
    ("[series]\nseason = 10001", "series.season"),
    # one topic in two roles: a replica's memory entries or task samples were read back as
    # observations (and dead-lettered), observations as versions
    ("[memory]\ntopic = 'streammeta.observations'", "memory.topic"),
    ("[meta]\nsamples_topic = 'streammeta.observations'", "meta.samples_topic"),
    ("[meta]\nversions_topic = 'streammeta.forecasts'", "meta.versions_topic"),
    ("[meta]\nlease_topic = 'streammeta.task-samples'", "meta.lease_topic"),
    # steps whose forecast targets overflowed 64-bit ms (wrapped to negative timestamps)
    ("[series]\nfreq = '1000000000000W'", "series.freq"),
    ("[series]\nfreq = '100000000YS'", "series.freq"),
    ("[series]\nstep_ms = 4611686018427387904", "series.step_ms"),
    ("[kafka]\nacks = '0'", "kafka.acks"),
    ("[kafka]\nsession_timeout_ms = 1000", "kafka.session_timeout_ms"),
    ("[kafka]\nforecast_topic = 'streammeta.observations'", "kafka.forecast_topic"),
    ("[kafka]\nsecurity_protocol = 'SASL_SSL'", "kafka.sasl_mechanism"),
    ("[kafka]\nsecurity_protocol = 'SASL_SSL'\nsasl_mechanism = 'PLAIN'", "kafka.sasl_username"),
    ("[metrics]\nport = 70000", "metrics.port"),
    ("[checkpoint]\nkeep = 0", "checkpoint.keep"),
    ("[nonsense]\nx = 1", "nonsense"),
    ("kafka = 3", "kafka"),
])
def test_bad_values_name_the_key_the_value_and_the_expectation(
    tmp_path: Path, toml: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.load(write(tmp_path, toml), env={})
    assert caught.value.key == key
    assert f"config key {key!r}" in str(caught.value) and "expected" in str(caught.value)


def test_environment_overrides_any_key_with_its_type(tmp_path: Path) -> None:
    env = {
        "STREAMMETA_KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
        "STREAMMETA_SERIES_HORIZON": "24",
        "STREAMMETA_ADAPTATION_INNER_LR": "0.2",
        "STREAMMETA_ADAPTATION_ENABLED": "false",
        "STREAMMETA_SERIES_QUANTILES": "0.05,0.95",
    }
    loaded = config_mod.load(write(tmp_path, "[series]\nhorizon = 12\n"), env=env)
    assert loaded.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert loaded.series.horizon == 24  # the environment wins over the file
    assert loaded.adaptation.inner_lr == 0.2 and loaded.adaptation.enabled is False
    assert loaded.series.quantiles == (0.05, 0.95)


def test_log_level_is_read_in_any_case() -> None:
    assert config_mod.load(None, env={"STREAMMETA_LOG_LEVEL": "debug"}).log.level == "DEBUG"
    with pytest.raises(ConfigError):
        config_mod.load(None, env={"STREAMMETA_LOG_LEVEL": "chatty"})


@pytest.mark.parametrize(("name", "value"), [
    ("STREAMMETA_SERIES_HORIZON", "many"), ("STREAMMETA_ADAPTATION_ENABLED", "maybe"),
    ("STREAMMETA_ADAPTATION_INNER_LR", "fast"), ("STREAMMETA_SERIES_QUANTILES", "a,b"),
])
def test_bad_environment_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError):
        config_mod.load(None, env={name: value})


def test_syntax_errors_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid TOML"):
        config_mod.load(write(tmp_path, "[kafka\n"), env={})
    with pytest.raises(ConfigError, match=r"existing config\.toml"):
        config_mod.load(tmp_path / "missing.toml", env={})


def test_a_directory_or_a_file_not_utf8_is_a_config_error_not_a_traceback(
        tmp_path: Path) -> None:
    """`check-config DIR` stopped on IsADirectoryError, a config.toml saved as UTF-16
    (Windows editors) on UnicodeDecodeError: tracebacks, exit 1, not the exit 2 and
    the message of every other bad configuration."""
    with pytest.raises(ConfigError, match=r"a readable config\.toml"):
        config_mod.load(tmp_path, env={})
    utf16 = tmp_path / "utf16.toml"
    utf16.write_bytes("[series]\nseason = 12\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"a UTF-8 TOML file \(byte 0 is not UTF-8\)"):
        config_mod.load(utf16, env={})
    assert main(["check-config", str(utf16)]) == 2


def test_effective_config_masks_secrets_and_round_trips(tmp_path: Path) -> None:
    env = {"STREAMMETA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "STREAMMETA_KAFKA_SASL_MECHANISM": "PLAIN",
           "STREAMMETA_KAFKA_SASL_USERNAME": "svc", "STREAMMETA_KAFKA_SASL_PASSWORD": "hunter2"}
    loaded = config_mod.load(None, env=env)
    text = config_mod.to_toml(loaded)
    assert "hunter2" not in text and 'sasl_password = "***"' in text
    tomllib.loads(text)
    again = config_mod.load(write(tmp_path, config_mod.to_toml(loaded, mask_secrets=False)),
                            env={})
    assert again == loaded


def test_sections_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().series.horizon = 3  # type: ignore[misc]


def test_a_cuda_device_this_machine_lacks_is_a_config_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """meta.device = "cuda" on a machine whose torch sees no GPU passed check-config and
    stopped run on torch's AssertionError ("Torch not compiled with CUDA enabled"),
    exit 1; "cudafoo" passed the syntax check. Both are refused naming the key."""
    import torch

    from streammeta import Forecaster

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="it sees no CUDA device"):
        config_mod.resolve_device("cuda:0")
    assert config_mod.resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match=r"'cuda\[:N\]'"):
        config_mod.load(None, env={"STREAMMETA_META_DEVICE": "cudafoo"})
    monkeypatch.setenv("STREAMMETA_META_DEVICE", "cuda")
    assert main(["check-config"]) == 2
    assert "config key 'meta.device': got 'cuda'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"meta\.device"):
        Forecaster("D", 7, 3, config=Config().replace("meta", device="cuda"))


@pytest.mark.parametrize(("freq", "season"), [
    ("", 24), ("h", 24), ("30min", 48), ("15min", 96), ("2h", 12), ("6h", 4), ("D", 7),
    ("W", 52), ("W-SUN", 52), ("MS", 12), ("ME", 12), ("M", 12), ("2MS", 6), ("QS", 4),
    ("QE-DEC", 4), ("YS", 1), ("YE", 1), ("5h", 1), ("2D", 1), ("30s", 1), ("5min", 288),
    ("min", 60), ("2min", 30), ("7min", 1),
])
def test_the_season_follows_the_frequency_unless_set(
        tmp_path: Path, freq: str, season: int) -> None:
    """series.season was 24 whatever the frequency: a configuration with only
    freq = "MS" served a season of 24 months. 0 (the default) is the frequency's."""
    loaded = config_mod.load(write(tmp_path, f'[series]\nfreq = "{freq}"\n'), env={})
    assert loaded.series.season == 0  # automatic, as written
    resolved = loaded.resolved()
    assert resolved.series.season == loaded.series.resolved_season == season
    assert resolved.resolved() == resolved  # resolving again changes nothing
    # From the environment alike, and a season set wins over the frequency's.
    env = {"STREAMMETA_SERIES_FREQ": freq}
    assert config_mod.load(None, env=env).resolved().series.season == season
    env["STREAMMETA_SERIES_SEASON"] = "5"
    assert config_mod.load(None, env=env).resolved().series.season == 5


def test_the_automatic_season_sizes_the_window_as_a_set_one_does() -> None:
    """The window and warm-up come from the resolved season: monthly data looks back
    3 years (36), as with season = 12 set; hourly 168, as before."""
    monthly = Config().replace("series", freq="MS").resolved()
    assert monthly.model == Config().replace("series", freq="MS", season=12).resolved().model
    assert (monthly.model.window, monthly.model.warm_after) == (36, 24)
    hourly = Config().resolved()
    assert (hourly.series.season, hourly.model.window, hourly.model.warm_after) == (24, 168, 72)
    assert Config().replace("series", step_ms=86_400_000).resolved().series.season == 7


def test_check_config_prints_the_season_it_resolved(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, '[series]\nfreq = "MS"\n'))]) == 0
    out = capsys.readouterr().out
    assert "season = 12  # (from the frequency; 0 = automatic)" in out
    assert tomllib.loads(out)["series"]["season"] == 12
    assert main(["check-config", str(write(tmp_path, '[series]\nfreq = "MS"\nseason = 3\n'))
                 ]) == 0
    out = capsys.readouterr().out
    assert "\nseason = 3\n" in out and "from the frequency" not in out
