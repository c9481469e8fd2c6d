"""The schema files agree with what the daemon really publishes and the replay tool writes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from support import STEP, run_until_drained

from streammeta import config as config_mod
from streammeta import contracts
from streammeta.client import decode_forecast
from streammeta.config import Config
from streammeta.errors import ContractError
from streammeta.io import codec, datasets
from streammeta.io.codec import Reason, Record, encode_observation
from streammeta.io.replay import observations_from_file, replay
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.serve.daemon import Daemon
from streammeta.serve.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = contracts.load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", contracts.SCHEMAS)
def test_schemas_are_valid_draft_2020_12_and_docs_hold_the_same_files(name: str) -> None:
    schema = contracts.load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    shipped = contracts.schema_file(name).read_bytes()
    assert (ROOT / "docs" / "contracts" / f"{name}.schema.json").read_bytes() == shipped, (
        f"docs/contracts/{name}.schema.json differs from streammeta/contracts/: copy it")


def test_contract_constants_match_the_codec() -> None:
    assert contracts.CONTRACT_VERSION == codec.CONTRACT_VERSION
    reasons = contracts.load_schema("dead-letter-headers")["properties"]["streammeta.reason"]
    assert reasons["enum"] == [reason.value for reason in Reason]


Published = tuple[list[tuple[bytes, bytes]], list[codec.DeadLetter], list[list[tuple[str, bytes]]]]


@pytest.fixture(scope="module")
def published() -> Published:
    """Forecasts and dead letters of a daemon run on in-memory fakes: young and warm
    entities, every kind of hostile record, a late and a duplicate observation."""
    config: Config = config_mod.load(None, env={}).replace(
        "model", window=12, hidden=16).replace("series", season=4, horizon=6)
    records, offset = [], 0
    for t in range(30):
        for e in range(8):
            key, value = encode_observation(f"e{e}", t * STEP, float(e + t % 4) - 3.5)
            records.append(Record("obs", 0, offset, key, value))
            offset += 1
    hostile = [b"not json", b"[1]", b'{"entity": "x", "ts": 0}', b'{"entity": 1, "ts": 0, '
               b'"value": 1}', b'{"entity": "x", "ts": 0, "value": NaN}',
               b'{"entity": "", "ts": 0, "value": 1}', b'{"entity": "x", "ts": "noon", '
               b'"value": 1}', b'{"entity": "e0", "ts": %d, "value": 1}' % (30 * STEP + 5),
               encode_observation("e1", 3 * STEP, 1.0)[1],
               encode_observation("e2", 29 * STEP, 1.0)[1]]
    for raw in hostile:
        records.append(Record("obs", 1, offset, None, raw))
        offset += 1
    source, sink = MemorySource(records, batch_size=50), MemorySink()
    run_until_drained(Daemon(config, source, sink, Metrics()), source)
    return sink.forecasts, sink.dead_letters, sink.forecast_headers


def test_every_forecast_the_daemon_publishes_matches_the_schema(
    published: Published,
) -> None:
    forecasts, _, headers = published
    check = validator("forecast")
    bodies = [orjson.loads(value) for _, value in forecasts]
    assert len(bodies) == 240
    assert {body["warm"] for body in bodies} == {True, False}  # young and warm both seen
    for (key, value), body in zip(forecasts, bodies, strict=True):
        check.validate(body)
        decoded = decode_forecast(value, key=key)  # the consumer's kit agrees
        assert decoded.entity == body["entity"] and decoded.horizon == 6
    check_headers = validator("forecast-headers")
    for version in (0, 1, 17):
        check_headers.validate(contracts.header_map(contracts.forecast_headers(version)))
    assert len(headers) == len(forecasts)
    for sent, body in zip(headers, bodies, strict=True):  # every forecast carries them
        check_headers.validate(contracts.header_map(sent))
        assert contracts.header_map(sent)["streammeta.model.version"] == str(body["model_version"])


def test_every_dead_letter_carries_the_headers_of_the_schema(
    published: Published,
) -> None:
    _, letters, _ = published
    check = validator("dead-letter-headers")
    assert len(letters) == 10
    for letter in letters:
        headers = contracts.header_map(letter.headers())
        check.validate(headers)
        assert tuple(headers) == contracts.DEAD_LETTER_HEADERS
    reasons = {letter.reason for letter in letters}
    assert {Reason.LATE, Reason.DUPLICATE, Reason.MISALIGNED, Reason.NON_FINITE} <= reasons


def test_observations_the_replay_tool_writes_match_the_schema() -> None:
    entities, ts, values = observations_from_file(datasets.bundled_m4(), "m4")
    written: list[tuple[bytes, bytes]] = []
    assert replay(entities, ts, values, lambda k, v: written.append((k, v)), limit=3000) == 3000
    check = validator("observation")
    for key, value in written:
        body = orjson.loads(value)
        check.validate(body)
        assert key == body["entity"].encode()


@pytest.mark.parametrize("body", [
    {"entity": "s", "ts": 1700000000000, "value": 21.5},
    {"entity": "s", "ts": "2023-11-14T22:13:20Z", "value": 3},
    {"entity": "s", "ts": "2023-11-14T22:13:20.250+01:00", "value": -1e9, "unit": "kW"},
    {"entity": "s", "ts": "2023-11-14", "value": 0},
    {"entity": "s", "ts": "2023-11", "value": 0},  # the month's first day (README)
])
def test_observations_producers_may_write(body: dict[str, Any]) -> None:
    validator("observation").validate(body)
    observations, dead = codec.Decoder().decode(
        [Record("t", 0, 0, None, json.dumps(body).encode())])
    assert len(observations) == 1 and not dead  # and the daemon takes them


@pytest.mark.parametrize("body", [
    {"entity": "s", "ts": 0},
    {"entity": "", "ts": 0, "value": 1},
    {"entity": 7, "ts": 0, "value": 1},
    {"entity": "s", "ts": 0, "value": "21.5"},
    {"entity": "s", "ts": 0, "value": True},
    {"entity": "s", "ts": "yesterday", "value": 1},
    {"entity": "s", "ts": 1.5, "value": 1},
    [{"entity": "s", "ts": 0, "value": 1}],
])
def test_observations_the_schema_refuses_are_dead_lettered(body: object) -> None:
    assert not validator("observation").is_valid(body)
    observations, dead = codec.Decoder().decode(
        [Record("t", 0, 0, None, json.dumps(body).encode())])
    assert len(observations) == 0 and len(dead) == 1


def _mutations() -> list[tuple[str, Any]]:
    def drop(field: str) -> Any:
        return lambda b: {k: v for k, v in b.items() if k != field}

    def put(field: str, value: object) -> Any:
        return lambda b: {**b, field: value}

    return [
        ("no v", drop("v")), ("v 2", put("v", 2)), ("no entity", drop("entity")),
        ("empty entity", put("entity", "")), ("origin as text", put("origin", "0")),
        ("step 0", put("step_ms", 0)), ("ts empty", put("ts", [])),
        ("ts of text", put("ts", ["a"] * 6)), ("point of text", put("point", ["1"] * 6)),
        ("point missing", drop("point")), ("no quantiles", put("quantiles", {})),
        ("quantile level 'median'", lambda b: {**b, "quantiles": {"median": b["point"]}}),
        ("quantile of booleans", lambda b: {**b, "quantiles": {"0.5": [True] * 6}}),
        ("negative version", put("model_version", -1)), ("warm as 1", put("warm", 1)),
        ("produced_at float", put("produced_at", 1.5)), ("not an object", lambda b: [b]),
    ]


@pytest.mark.parametrize(("what", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_invalid_forecasts_fail_the_schema_and_the_client(
    published: Published, what: str,
    mutate: Any,
) -> None:
    good = orjson.loads(published[0][-1][1])
    bad = mutate(copy.deepcopy(good))
    assert not validator("forecast").is_valid(bad), what
    with pytest.raises(ContractError):
        decode_forecast(json.dumps(bad).encode())


def test_forecast_headers_name_content_type_contract_and_model_version() -> None:
    assert contracts.forecast_headers(3) == [
        ("content-type", b"application/json"),
        ("streammeta.contract.version", b"1"),
        ("streammeta.model.version", b"3"),
    ]
    assert not validator("forecast-headers").is_valid({"content-type": "application/json"})
