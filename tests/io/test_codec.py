from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streammeta.io import frequency
from streammeta.io.codec import (
    Decoder,
    ForecastEncoder,
    Reason,
    Record,
    encode_observation,
    round_significant,
)


def record(value: bytes | None, key: bytes | None = None, offset: int = 0) -> Record:
    return Record("obs", 3, offset, key, value)


def decode_one(value: bytes | None, key: bytes | None = None) -> tuple[object, Reason | None]:
    obs, dead = Decoder(max_record_bytes=4096, max_entity_id_length=16).decode(
        [record(value, key)])
    if dead:
        return None, dead[0].reason
    return (obs.entities[0], obs.ts[0], obs.values[0]), None


@pytest.mark.parametrize(("raw", "reason"), [
    (b"not json", Reason.NOT_JSON),
    (b"\xff\xfe\x00", Reason.NOT_JSON),
    (b"[" * 100_00, Reason.OVERSIZE),
    (b"[" * 2000, Reason.NOT_JSON),
    (b"[1, 2]", Reason.NOT_OBJECT),
    (b"42", Reason.NOT_OBJECT),
    (b'{"ts": 0, "value": 1}', Reason.MISSING_FIELD),
    (b'{"entity": "a", "value": 1}', Reason.MISSING_FIELD),
    (b'{"entity": "a", "ts": 0}', Reason.MISSING_FIELD),
    (None, Reason.MISSING_FIELD),
    (b'{"entity": 7, "ts": 0, "value": 1}', Reason.WRONG_TYPE),
    (b'{"entity": "a", "ts": 0, "value": "1.5"}', Reason.WRONG_TYPE),
    (b'{"entity": "a", "ts": 0, "value": true}', Reason.WRONG_TYPE),
    (b'{"entity": "a", "ts": true, "value": 1}', Reason.WRONG_TYPE),
    (b'{"entity": "a", "ts": [1], "value": 1}', Reason.WRONG_TYPE),
    (b'{"entity": "a", "ts": 0, "value": NaN}', Reason.NON_FINITE),
    (b'{"entity": "a", "ts": 0, "value": -Infinity}', Reason.NON_FINITE),
    (b'{"entity": "a", "ts": 0, "value": 1e400}', Reason.NON_FINITE),
    (b'{"entity": "a", "ts": 0, "value": ' + b"9" * 400 + b"}", Reason.NON_FINITE),
    (b'{"entity": "\\ud800", "ts": 0, "value": 1}', Reason.NOT_JSON),  # no UTF-8 key
    (b'{"entity": "", "ts": 0, "value": 1}', Reason.ENTITY_EMPTY),
    (b'{"entity": "' + b"x" * 17 + b'", "ts": 0, "value": 1}', Reason.ENTITY_TOO_LONG),
    (b'{"entity": "a", "ts": "yesterday", "value": 1}', Reason.BAD_TIMESTAMP),
    (b'{"entity": "a", "ts": 1.5, "value": 1}', Reason.BAD_TIMESTAMP),
])
def test_every_bad_record_class_gets_its_reason(raw: bytes | None, reason: Reason) -> None:
    assert decode_one(raw) == (None, reason)


def test_key_must_match_the_entity() -> None:
    assert decode_one(b'{"entity": "a", "ts": 0, "value": 1}', key=b"b") == (
        None, Reason.KEY_MISMATCH)
    assert decode_one(b'{"entity": "a", "ts": 0, "value": 1}', key=b"a")[1] is None
    # a key of the lone surrogate's bytes does not make it an entity id forecasts can carry
    assert decode_one(b'{"entity": "\\ud800", "ts": 0, "value": 1}', key=b"\xed\xa0\x80") == (
        None, Reason.NOT_JSON)


@pytest.mark.parametrize(("ts", "ms"), [
    (1700000000000, 1700000000000),
    (1700000000000.0, 1700000000000),
    ('"2023-11-14T22:13:20Z"', 1700000000000),
    ('"2023-11-14T23:13:20+01:00"', 1700000000000),
    ('"2023-11-14T22:13:20"', 1700000000000),  # naive means UTC
    ('"2023-11"', 1698796800000),  # ISO-8601's calendar month: its first day, 00:00 UTC
])
def test_timestamps_become_epoch_ms(ts: object, ms: int) -> None:
    raw = f'{{"entity": "a", "ts": {ts}, "value": 2.5, "unit": "C"}}'.encode()
    assert decode_one(raw) == (("a", ms, 2.5), None)


def test_a_month_out_of_range_is_a_bad_timestamp() -> None:
    for month in ('"2023-13"', '"2023-00"', '"2023-1"', '" 2023-11"'):
        raw = f'{{"entity": "a", "ts": {month}, "value": 1}}'.encode()
        assert decode_one(raw) == (None, Reason.BAD_TIMESTAMP), month


@settings(max_examples=500, deadline=None)
@given(st.integers(-62135596800000, 253402300799999), st.sampled_from(["Z", "+05:30", "-08:00"]))
def test_an_iso_timestamp_in_milliseconds_is_read_exactly(ms: int, zone: str) -> None:
    """``datetime.timestamp() * 1000`` is a float: 0.8% of millisecond ISO timestamps
    between 1900 and 2100 came out 1 ms early ("1970-02-19T02:33:13.464Z" as
    4242793463), misaligned on a sub-second step and off the origin the producer wrote."""
    from datetime import UTC, datetime, timedelta, timezone

    hours, minutes = (0, 0) if zone == "Z" else (int(zone[:3]), int(zone[0] + zone[4:]))
    local = timezone(timedelta(hours=hours, minutes=minutes))
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    try:
        text = when.astimezone(local).isoformat(timespec="milliseconds")
    except OverflowError:  # beyond year 1..9999 in that zone
        return
    raw = f'{{"entity": "a", "ts": "{text}", "value": 1}}'.encode()
    assert decode_one(raw) == (("a", ms, 1.0), None)
    assert decode_one(b'{"entity": "a", "ts": "1970-02-19T02:33:13.464Z", "value": 1}') == (
        ("a", 4242793464, 1.0), None)


def test_index_maps_observations_back_to_the_batch() -> None:
    good = encode_observation("a", 0, 1.0)[1]
    obs, dead = Decoder().decode([record(b"x"), record(good), record(b"[]"), record(good)])
    assert obs.index == [1, 3] and [d.record.offset for d in dead] == [0, 0]


def test_dead_letter_headers_carry_reason_and_source() -> None:
    _, dead = Decoder().decode([Record("obs", 5, 77, b"k", b"nope")])
    headers = dict(dead[0].headers())
    assert headers["streammeta.reason"] == b"not_json"
    assert headers["streammeta.source.topic"] == b"obs"
    assert headers["streammeta.source.partition"] == b"5"
    assert headers["streammeta.source.offset"] == b"77"


def test_an_oversize_value_or_key_is_dead_lettered_cut_to_the_limit() -> None:
    """A record over series.max_record_bytes (or a key that long) may be far larger than
    a producer or broker takes (compressed on its way in: 2 MB of padding is a few KB
    of zstd): sent back whole, the dead letter was refused (MSG_SIZE_TOO_LARGE) and
    the batch re-sent for ever, stalling the partition. Its first max_record_bytes go
    out, with its size."""
    from streammeta.config import KafkaConfig
    from streammeta.io.producing import ProducerSink

    raw = b'{"entity": "a", "ts": 0, "value": 1, "pad": "' + b"p" * 2_000_000 + b'"}'
    long_key = b"k" * 2_000_000  # a key_mismatch's key
    _, dead = Decoder(max_record_bytes=4096).decode([
        record(raw, b"a"), record(b"nope", b"b"),
        record(b'{"entity": "a", "ts": 0, "value": 1}', long_key)])
    big, small, keyed = dead
    assert big.reason is Reason.OVERSIZE and big.record.value == raw  # the record is kept
    assert big.value == raw[:4096] and big.key == b"a"
    assert dict(big.headers())["streammeta.value.truncated"] == str(len(raw)).encode()
    assert small.value == b"nope" and "streammeta.value.truncated" not in dict(small.headers())
    assert keyed.reason is Reason.KEY_MISMATCH and keyed.key == long_key[:4096]
    assert dict(keyed.headers())["streammeta.key.truncated"] == b"2000000"

    sent: list[tuple[str, bytes | None, bytes | None]] = []

    class Producer:
        def send(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
            sent.append((topic, key, value))

    ProducerSink(KafkaConfig(), Producer()).send_dead_letters(dead)  # type: ignore[arg-type]
    assert [(len(k or b""), len(v or b"")) for _, k, v in sent] == [(1, 4096), (1, 4),
                                                                    (4096, 36)]


def test_forecast_messages_follow_the_contract() -> None:
    encoder = ForecastEncoder(frequency.parse("", 1000), quantiles=(0.1, 0.5, 0.9))
    point = np.array([[1.5, 2.25, 3.0]], dtype=np.float32)
    quant = np.stack([point - 1, point, point + 1], axis=1)
    (msg,) = encoder.encode(["s1"], np.array([5000]), point, quant, np.array([True]), 4, 99)
    body = orjson.loads(msg)
    assert body == {
        "v": 1, "entity": "s1", "origin": 5000, "step_ms": 1000, "ts": [6000, 7000, 8000],
        "point": [1.5, 2.25, 3.0],
        "quantiles": {"0.1": [0.5, 1.25, 2.0], "0.5": [1.5, 2.25, 3.0], "0.9": [2.5, 3.25, 4.0]},
        "model_version": 4, "warm": True, "produced_at": 99,
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
                | st.fixed_dictionaries({"entity": json_values, "ts": json_values,
                                         "value": json_values}).map(
                    lambda d: json.dumps(d).encode()), max_size=20))
def test_hostile_input_never_raises_and_every_record_is_accounted_for(raws: list[bytes]) -> None:
    records = [record(raw, offset=i) for i, raw in enumerate(raws)]
    obs, dead = Decoder().decode(records)
    assert len(obs) + len(dead) == len(records)
    assert all(isinstance(d.reason, Reason) for d in dead)
    assert all(np.isfinite(v) for v in obs.values)


observation_fields = st.fixed_dictionaries({
    "entity": st.sampled_from(["a", "b", "", "é", "x" * 20]) | json_values,
    "ts": st.integers(-(2**63), 2**64) | st.floats(allow_nan=False) | st.sampled_from(
        ["2023-11-14T22:13:20Z", "yesterday", 0, 2**62 - 1, -(2**62) + 1]),
    "value": st.integers(-(2**70), 2**70) | st.floats() | st.booleans() | json_values,
})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(observation_fields, st.sampled_from(["match", "none", "other"])),
                min_size=1, max_size=12))
def test_a_batch_decodes_as_each_record_would_alone(
        batch: list[tuple[dict[str, object], str]]) -> None:
    """The column-wise path for all-valid batches gives what record-by-record decoding
    gives, for every batch: the same observations, dead letters and reasons."""
    records = []
    for i, (fields, key_kind) in enumerate(batch):
        entity = fields["entity"]
        key = (None if key_kind == "none" or not isinstance(entity, str) else
               b"other" if key_kind == "other" else entity.encode())
        records.append(record(json.dumps(fields).encode(), key, offset=i))
    decoder = Decoder(max_record_bytes=4096, max_entity_id_length=16)
    obs, dead = decoder.decode(records)
    each, each_dead = decoder.decode_each(records)
    assert (obs.entities, obs.ts, obs.values, obs.index) == (
        each.entities, each.ts, each.values, each.index)
    assert [(d.record, d.reason, d.detail) for d in dead] == [
        (d.record, d.reason, d.detail) for d in each_dead]


def test_a_valid_batch_takes_the_column_wise_path() -> None:
    records = [record(encode_observation(f"e{i}", i * 1000, i / 3)[1], f"e{i}".encode(), i)
               for i in range(100)]
    valid = Decoder()._all_valid(records)
    assert valid is not None and valid.entities[7] == "e7" and valid.ts[7] == 7000
    assert valid.values[7] == 7 / 3 and valid.index == list(range(100))


@pytest.mark.parametrize(("spec", "quantiles", "horizon"), [
    ("h", (0.1, 0.5, 0.9), 48), ("MS", (0.5,), 1), ("30min", (0.05, 0.25, 0.5, 0.75, 0.95), 5)])
def test_every_message_of_a_batch_holds_its_own_values(
        spec: str, quantiles: tuple[float, ...], horizon: int) -> None:
    """The batch is formatted at once and cut into messages: each message must carry
    its own entity, origin, targets and numbers (rounded to 6 significant digits)."""
    freq = frequency.parse(spec)
    rng = np.random.default_rng(0)
    B, Q = 40, len(quantiles)
    point = rng.normal(0, 10.0 ** rng.integers(-6, 12, (40, 1)), (B, horizon))
    quant = point[:, None, :] + rng.normal(0, 1, (B, Q, horizon))
    origin = rng.integers(600, 610, B) * (1 if freq.calendar else freq.step)
    warm = rng.random(B) < 0.5
    entities = [f'e"{i}%s\n' if i % 3 == 0 else f"é{i}" for i in range(B)]
    messages = ForecastEncoder(freq, quantiles).encode(entities, origin, point, quant, warm,
                                                        3, 77)
    numbers = round_significant(np.concatenate([point[:, None, :], quant], axis=1))
    targets = freq.targets(origin, horizon)
    for i, message in enumerate(messages):
        body = orjson.loads(message)
        assert body["entity"] == entities[i] and body["warm"] == bool(warm[i])
        assert body["origin"] == int(freq.to_ms(origin[i:i + 1])[0])
        assert body["ts"] == targets[i].tolist()
        assert body["point"] == numbers[i, 0].tolist()
        assert body["quantiles"] == {repr(q): numbers[i, k + 1].tolist()
                                     for k, q in enumerate(quantiles)}
        assert (body["model_version"], body["produced_at"]) == (3, 77)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(-12, 20), st.integers(1, 49),
       st.sampled_from([np.float32, np.float64]), st.booleans())
def test_forecast_numbers_read_back_as_the_rounded_floats_bit_for_bit(
        seed: int, magnitude: int, horizon: int, dtype: type, positive: bool) -> None:
    """Rows written as fixed-width decimal text (trailing zeros, spaces before a number)
    and rows left to orjson both parse back to exactly ``round_significant``'s floats,
    ``-0.0`` and NaN (as null) included, in valid JSON with the contract's keys."""
    rng = np.random.default_rng(seed)
    B, quantiles = 12, (0.1, 0.5, 0.9)
    stacked = rng.normal(0, 1, (B, 4, horizon)) * 10.0 ** rng.integers(magnitude - 2,
                                                                      magnitude + 1, (B, 1, 1))
    stacked = np.abs(stacked) if positive else stacked
    stacked[0, 0, 0], stacked[1] = -0.0, 0.0
    stacked[2, 1, 0] = np.nan
    stacked = stacked.astype(dtype)
    encoder = ForecastEncoder(frequency.parse("", 1000), quantiles)
    messages = encoder.encode([f"e{i}" for i in range(B)], np.arange(B) * 1000, stacked[:, 0],
                              stacked[:, 1:], np.ones(B, bool), 1, 2)
    expected = round_significant(stacked)
    for i, message in enumerate(messages):
        body = json.loads(message)
        got = np.array([body["point"], *body["quantiles"].values()], dtype=np.float64)
        assert list(body["quantiles"]) == ["0.1", "0.5", "0.9"]
        assert np.array_equal(got.view(np.int64), expected[i].view(np.int64)) or (
            i == 2 and np.array_equal(got, expected[i], equal_nan=True))


def test_typical_forecasts_are_fixed_width_text_that_reads_back_as_rounded() -> None:
    """What the fast path writes: every number with a point, padded in front to the
    width of its row's largest, the sign next to the first digit."""
    encoder = ForecastEncoder(frequency.parse("", 1000), (0.5,))
    point = np.array([[-1.25, 23.456789, -123.4567]])
    (message,) = encoder.encode(["s"], np.array([0]), point, point[:, None, :] * 0,
                                np.array([False]), 1, 2)
    assert b'"point":[  -1.250,  23.457,-123.457],"quantiles":{"0.5":[  -0.000,   0.000,' \
           b'  -0.000]}' in message
    assert orjson.loads(message)["point"] == [-1.25, 23.457, -123.457]


def test_a_dead_letter_carries_the_records_headers_then_the_contracts() -> None:
    """A trace id or any other header the producer set was dropped from dead letters.
    Null values come back empty (kafka-python's producer sends none); a header named
    as the contract's is left out (each of those is the dead letter's, once); headers
    beyond the record limit are left out, and their size said."""
    original = [("trace-id", b"t-1"), ("none", None), ("streammeta.reason", b"spoofed"),
                ("big", b"b" * 100), ("after", b"x")]
    letter = Decoder(max_record_bytes=64, max_entity_id_length=16).decode(
        [Record("obs", 3, 7, None, b"not json", 0, original)])[1][0]
    headers = letter.headers()
    assert headers[:2] == [("trace-id", b"t-1"), ("none", b"")]
    names = [name for name, _ in headers]
    assert names.count("streammeta.reason") == 1 and "big" not in names
    assert "after" not in names  # after one left out, the rest too: a prefix is kept
    assert dict(headers)["streammeta.reason"] == b"not_json"
    assert dict(headers)["streammeta.headers.truncated"] == b"124"  # 11 + 4 + 103 + 6
