"""The data contracts as files: JSON Schemas (draft 2020-12) shipped with the package.

=========================== ==========================================================
``observation``             the value of an input record
``forecast``                the value of a forecast record
``forecast-headers``        the headers of a forecast record, as a name → text map
``dead-letter-headers``     the headers of a dead-letter record (its key and value are
                            the input record's bytes, unchanged)
=========================== ==========================================================

The files are the source of truth for consumers in any language; docs/contracts.md
says how the contract evolves. This module imports nothing heavy, so a consumer
can use it (and :mod:`streammeta.client`) without torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

CONTRACT_VERSION = 1
SCHEMAS = ("observation", "forecast", "forecast-headers", "dead-letter-headers")

# Headers of every forecast record.
HEADER_CONTENT_TYPE = "content-type"
HEADER_CONTRACT_VERSION = "streammeta.contract.version"
HEADER_MODEL_VERSION = "streammeta.model.version"
CONTENT_TYPE = "application/json"

# Headers of every dead-letter record (written by streammeta.io.codec.DeadLetter).
DEAD_LETTER_HEADERS = (
    "streammeta.reason",
    "streammeta.detail",
    "streammeta.source.topic",
    "streammeta.source.partition",
    "streammeta.source.offset",
)

_CONSTANT_HEADERS = (
    (HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()),
    (HEADER_CONTRACT_VERSION, str(CONTRACT_VERSION).encode()),
)


def forecast_headers(model_version: int) -> list[tuple[str, bytes]]:
    """The headers of a forecast record made by ``model_version``, in the form Kafka
    clients take them (kafka-python's and confluent-kafka's ``headers=``). Every
    forecast of one batch carries the same version, so one list serves a batch."""
    return [*_CONSTANT_HEADERS, (HEADER_MODEL_VERSION, str(int(model_version)).encode())]


def header_map(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers → ``{name: text}``, the shape the header schemas describe (the
    last value wins where a name repeats; a value that is not UTF-8 is kept replaced)."""
    return {name: (value or b"").decode("utf-8", "replace") for name, value in headers or ()}


def schema_file(name: str) -> Traversable:
    """The schema file ``<name>.schema.json`` inside the installed package."""
    if name not in SCHEMAS:
        raise KeyError(f"no contract {name!r}; the contracts are {', '.join(SCHEMAS)}")
    return resources.files(__package__).joinpath(f"{name}.schema.json")


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` as a dict, e.g. for ``jsonschema.Draft202012Validator``."""
    loaded: dict[str, Any] = json.loads(schema_file(name).read_text(encoding="utf-8"))
    return loaded
