"""The [kafka] settings the client cannot honour are refused when loading."""

from __future__ import annotations

import pytest

from streammeta import config as config_mod
from streammeta.errors import ConfigError


def test_oauthbearer_is_refused_at_load_not_at_the_first_connection() -> None:
    env = {"STREAMMETA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "STREAMMETA_KAFKA_SASL_MECHANISM": "OAUTHBEARER"}
    with pytest.raises(ConfigError, match=r"kafka\.sasl_mechanism.*token provider"):
        config_mod.load(None, env=env)


def test_sasl_scram_and_fatal_after_are_accepted_and_checked() -> None:
    env = {"STREAMMETA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "STREAMMETA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "STREAMMETA_KAFKA_SASL_USERNAME": "svc", "STREAMMETA_KAFKA_SASL_PASSWORD": "s3cret",
           "STREAMMETA_KAFKA_FATAL_AFTER_S": "30"}
    config = config_mod.load(None, env=env)
    assert config.kafka.fatal_after_s == 30.0
    assert "s3cret" not in config_mod.to_toml(config)
    with pytest.raises(ConfigError, match=r"kafka\.fatal_after_s"):
        config_mod.load(None, env={"STREAMMETA_KAFKA_FATAL_AFTER_S": "0"})


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_codec_can_be_produced_with_the_installed_libraries(codec: str) -> None:
    from streammeta.io.kafka import missing_codecs

    config = config_mod.load(None, env={"STREAMMETA_KAFKA_COMPRESSION_TYPE": codec})
    assert config.kafka.compression_type == codec
    assert missing_codecs() == []  # the project's own install brings all of them
