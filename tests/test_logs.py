"""Log output: one JSON object per line, with what an aggregator needs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from streammeta import config as config_mod
from streammeta import logs
from streammeta.errors import ConfigError


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_are_one_parsable_object_per_line(restore_root: None) -> None:
    out = io.StringIO()
    logs.setup("INFO", "json", stream=out)
    log = logging.getLogger("streammeta.test")
    log.debug("not shown at INFO")
    log.info("assigned %d partitions\nsecond line", 4, extra={"partitions": [0, 1]})
    try:
        raise ValueError("bad checkpoint")
    except ValueError:
        log.exception("restore failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the newline in the message stays inside its line
    first, second = (json.loads(line) for line in lines)
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["level"] == "INFO" and first["logger"] == "streammeta.test"
    assert first["message"] == "assigned 4 partitions\nsecond line"
    assert first["partitions"] == [0, 1] and "exception" not in first
    stamp = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert first["time"].endswith("Z") and stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)
    assert second["level"] == "ERROR" and second["message"] == "restore failed"
    assert second["exception"].startswith("Traceback (most recent call last):")
    assert second["exception"].endswith("ValueError: bad checkpoint")


def test_text_logs_and_a_second_setup_replaces_the_first(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.setup("INFO", "json", stream=first)
    logs.setup("WARNING", "text", stream=second)
    logging.getLogger("streammeta.test").warning("lag growing")
    assert first.getvalue() == ""
    assert second.getvalue().rstrip().endswith("WARNING streammeta.test: lag growing")


def test_log_format_is_a_config_key() -> None:
    assert config_mod.load(None, env={"STREAMMETA_LOG_FORMAT": "JSON"}).log.format == "json"
    assert config_mod.load(None, env={}).log.format == "text"
    with pytest.raises(ConfigError, match=r"log\.format"):
        config_mod.load(None, env={"STREAMMETA_LOG_FORMAT": "xml"})
