"""The consumer's kit: decoding, duplicates, the latest forecast per entity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from streammeta.client import Deduplicator, Forecast, LatestForecasts, decode_forecast
from streammeta.contracts import forecast_headers
from streammeta.errors import ContractError, StreamMetaError
from streammeta.io import frequency
from streammeta.io.codec import ForecastEncoder

STEP = 3_600_000


def message(entity: str = "s1", origin: int = 10 * STEP, version: int = 2) -> bytes:
    """A forecast as the daemon's encoder writes it."""
    point = np.array([[1.0, 2.0, 3.0]])
    quantiles = np.stack([point - 1, point, point + 1], axis=1)  # (1, 3, 3)
    return ForecastEncoder(frequency.parse("", STEP), (0.1, 0.5, 0.9)).encode(
        [entity], np.array([origin]), point, quantiles, np.array([True]), version,
        produced_at=123)[0]


def point_of(value: bytes) -> bytes:
    """The point forecast's array as the encoder wrote it (its number text is its own)."""
    return b'"point":[' + value.split(b'"point":[')[1].split(b"]")[0] + b"]"


def test_decodes_a_daemon_forecast_into_a_typed_record() -> None:
    forecast = decode_forecast(message(), key=b"s1", headers=forecast_headers(2))
    assert forecast == Forecast(
        entity="s1", origin=10 * STEP, step_ms=STEP, ts=(11 * STEP, 12 * STEP, 13 * STEP),
        point=(1.0, 2.0, 3.0), quantiles={0.1: (0.0, 1.0, 2.0), 0.5: (1.0, 2.0, 3.0),
                                          0.9: (2.0, 3.0, 4.0)},
        model_version=2, warm=True, produced_at=123)
    assert forecast.horizon == 3 and forecast.quantile(0.9) == (2.0, 3.0, 4.0)
    with pytest.raises(KeyError, match=r"no quantile 0.25"):
        forecast.quantile(0.25)


def test_unknown_fields_are_ignored() -> None:
    extended = message()[:-1] + b',"interval":"P1H"}'
    assert decode_forecast(extended).entity == "s1"


@pytest.mark.parametrize(("value", "key", "headers", "says"), [
    (b"\xff\xfe garbage", None, None, "not UTF-8 JSON"),
    (b"[]", None, None, "JSON list"),
    (message(), b"s2", None, "differs from the record key"),
    (message().replace(b'"v":1', b'"v":2'), None, None, "contract version 2"),
    (message(), None, [("streammeta.contract.version", b"2")], "header"),
    (message().replace(point_of(message()), b'"point":[1.0,2.0]'), None, None,
     "'point': expected 3 values"),
    (message().replace(point_of(message()), b'"point":[1.0,NaN,3.0]'), None, None,
     "finite"),
    (message().replace(b'"ts":[39600000', b'"ts":[36000000'), None, None, "increasing"),
    (message().replace(b'"warm":true', b'"warm":"yes"'), None, None, "'warm'"),
    (message().replace(b'"produced_at":123,', b""), None, None, "'produced_at': missing"),
])
def test_bad_input_is_refused_naming_the_field(
    value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None, says: str,
) -> None:
    with pytest.raises(ContractError, match=says) as caught:
        decode_forecast(value, key=key, headers=headers)
    assert isinstance(caught.value, StreamMetaError)


def test_duplicates_are_dropped_by_entity_and_origin_in_bounded_memory() -> None:
    seen = Deduplicator(capacity=3)
    stream = [decode_forecast(message("a", t * STEP)) for t in (1, 2, 3)]
    assert [seen.first_time(f) for f in stream] == [True, True, True]
    # A redelivered stretch: the same forecasts again (any model version).
    assert not seen.first_time(decode_forecast(message("a", 2 * STEP, version=7)))
    assert seen.first_time(decode_forecast(message("b", 2 * STEP)))  # another entity
    assert len(seen) == 3 and seen.dropped == 1
    # a@1 was the least recently seen key: forgotten, memory stays at capacity.
    assert seen.first_time(stream[0]) and len(seen) == 3


def test_latest_forecast_per_entity_ignores_older_redeliveries() -> None:
    latest = LatestForecasts(max_entities=2)
    assert latest.update(decode_forecast(message("a", 5 * STEP)))
    assert latest.update(decode_forecast(message("a", 6 * STEP)))
    assert not latest.update(decode_forecast(message("a", 5 * STEP)))  # redelivered, older
    assert not latest.update(decode_forecast(message("a", 6 * STEP, version=9)))
    held = latest.get("a")
    assert held is not None and held.origin == 6 * STEP and held.model_version == 2
    latest.update(decode_forecast(message("b", STEP)))
    latest.update(decode_forecast(message("c", STEP)))  # over max_entities: "a" goes
    assert latest.get("a") is None and [f.entity for f in latest] == ["b", "c"]


def test_the_client_imports_without_torch_or_numpy() -> None:
    code = ("import sys, streammeta.client; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
