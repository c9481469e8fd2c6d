"""Log output of the command line: readable text, or one JSON object per line.

JSON (``log.format = "json"``) is what log aggregators (Loki, Elasticsearch,
Cloud Logging) parse without a pattern: every record is one line holding
``time`` (ISO-8601, UTC, milliseconds), ``level``, ``logger``, ``message``, then
``exception`` (the formatted traceback) when there is one and any ``extra=``
fields the call passed. Standard library only.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

import orjson

_HANDLER_NAME = "streammeta"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry:
                entry[name] = value
        # default=str: an extra field that JSON cannot hold is written as its text.
        return orjson.dumps(entry, default=str).decode()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, so a handler
    outliving a redirection (pytest's capture, a test's) never writes to a closed file."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route every logger to ``stream`` (stderr) in the chosen format, replacing
    the handler a previous call installed (and only that one)."""
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python is chatty at INFO
