"""Secrets from files, and STREAMMETA_* variables that nothing reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from streammeta import config as config_mod
from streammeta import envvars
from streammeta.errors import ConfigError

SASL = {"STREAMMETA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMMETA_KAFKA_SASL_MECHANISM": "PLAIN", "STREAMMETA_KAFKA_SASL_USERNAME": "svc"}


def secret(tmp_path: Path, text: str, name: str = "password") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("hunter2\n", "hunter2"), ("hunter2\r\n", "hunter2"), ("hunter2", "hunter2"),
    (" pass phrase \n\n", " pass phrase "),  # only the line ending goes
])
def test_a_secret_is_read_from_the_file_an_environment_variable_names(
    tmp_path: Path, text: str, expected: str,
) -> None:
    env = {**SASL, "STREAMMETA_KAFKA_SASL_PASSWORD_FILE": str(secret(tmp_path, text))}
    assert config_mod.load(None, env=env).kafka.sasl_password == expected


def test_a_secret_is_read_from_the_file_the_toml_names(tmp_path: Path) -> None:
    path, file = tmp_path / "c.toml", secret(tmp_path, "k3y\n")
    path.write_text(f'[kafka]\nssl_password_file = "{file}"\n')
    loaded = config_mod.load(path, env={})
    assert loaded.kafka.ssl_password == "k3y"
    assert "k3y" not in config_mod.to_toml(loaded)


def test_the_environment_wins_over_the_toml_value_or_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nssl_password = "from-toml"\n')
    env = {"STREAMMETA_KAFKA_SSL_PASSWORD_FILE": str(secret(tmp_path, "from-file\n"))}
    assert config_mod.load(path, env=env).kafka.ssl_password == "from-file"
    env = {"STREAMMETA_KAFKA_SSL_PASSWORD": "from-env"}
    path.write_text(f'[kafka]\nssl_password_file = "{secret(tmp_path, "from-file")}"\n')
    assert config_mod.load(path, env=env).kafka.ssl_password == "from-env"


def test_a_value_and_its_file_in_the_same_place_are_refused(tmp_path: Path) -> None:
    file = str(secret(tmp_path, "x"))
    env = {"STREAMMETA_KAFKA_SSL_PASSWORD": "a", "STREAMMETA_KAFKA_SSL_PASSWORD_FILE": file}
    with pytest.raises(ConfigError, match="STREAMMETA_KAFKA_SSL_PASSWORD_FILE, not both"):
        config_mod.load(None, env=env)
    path = tmp_path / "c.toml"
    path.write_text(f'[kafka]\nssl_password = "a"\nssl_password_file = "{file}"\n')
    with pytest.raises(ConfigError, match="not both") as caught:
        config_mod.load(path, env={})
    assert caught.value.key == "kafka.ssl_password" and "'a'" not in str(caught.value)


@pytest.mark.parametrize("problem", ["missing", "directory", "empty"])
def test_an_unreadable_secret_file_names_the_key_and_the_path(
    tmp_path: Path, problem: str,
) -> None:
    path = {"missing": tmp_path / "nope", "directory": tmp_path,
            "empty": secret(tmp_path, "\n")}[problem]
    env = {**SASL, "STREAMMETA_KAFKA_SASL_PASSWORD_FILE": str(path)}
    with pytest.raises(ConfigError) as caught:
        config_mod.load(None, env=env)
    assert caught.value.key == "kafka.sasl_password_file" and caught.value.value == str(path)
    assert "STREAMMETA_KAFKA_SASL_PASSWORD_FILE" in str(caught.value)


def test_any_key_named_like_a_secret_gets_a_file_variant_and_is_masked(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class OAuth:  # a section a later change might add
        client_id: str = ""
        client_secret: str = ""
        refresh_token: str = ""

    assert [envvars.is_secret(n) for n in ("client_id", "client_secret", "refresh_token",
                                           "sasl_password", "ssl_keyfile")] == [
        False, True, True, True, False]
    known = envvars.known_variables({"oauth": OAuth})
    assert known["STREAMMETA_OAUTH_CLIENT_SECRET_FILE"] == "oauth.client_secret_file"
    assert "STREAMMETA_OAUTH_CLIENT_ID_FILE" not in known
    rest, from_files = envvars.secrets_from_files(
        "oauth", {"client_id", "client_secret", "refresh_token"},
        {"client_id": "me", "refresh_token_file": str(secret(tmp_path, "t0k\n"))},
        {"STREAMMETA_OAUTH_CLIENT_SECRET_FILE": str(secret(tmp_path, "s3c", "s"))})
    assert rest == {"client_id": "me"}
    assert from_files == {"client_secret": "s3c", "refresh_token": "t0k"}
    assert {"sasl_password", "ssl_password"} <= config_mod.SECRET_KEYS


def test_unknown_variables_are_named_with_the_closest_known_one() -> None:
    env = {"STREAMMETA_KAFKA_BOOTSTRAPSERVERS": "b:9092", "STREAMMETA_SERIES_HORIZON": "12",
           "STREAMMETA_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/p", "STREAMMETA_CONFIG": "c",
           "STREAMMETA_TEST_BROKER": "embedded", "STREAMMETA_ZZZ": "1", "PATH": "/bin"}
    assert envvars.unknown_variables(env, config_mod.sections()) == [
        "unknown environment variable STREAMMETA_KAFKA_BOOTSTRAPSERVERS (did you mean "
        "STREAMMETA_KAFKA_BOOTSTRAP_SERVERS, kafka.bootstrap_servers?)",
        "unknown environment variable STREAMMETA_ZZZ",
    ]
