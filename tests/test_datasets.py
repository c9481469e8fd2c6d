from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

from streammeta import datasets
from streammeta.errors import DataError
from streammeta.replay import replay


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_m4_wide_rows_are_ragged_series_with_synthetic_hours(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", '"V1","V2","V3","V4"\n"H1","1","2","3"\n"H2","4","5",""\n')
    a, b = datasets.load(path, "m4")
    assert (a.entity, a.values.tolist()) == ("H1", [1.0, 2.0, 3.0])
    assert (b.entity, b.values.tolist()) == ("H2", [4.0, 5.0])
    assert np.diff(a.ts).tolist() == [datasets.HOUR_MS] * 2 and a.ts[0] == b.ts[0]


def test_long_format_sorts_each_entity_and_reads_both_timestamp_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "entity,ts,value\nb,7200000,2\na,1970-01-01T01:00:00Z,1\n"
                 "b,3600000,1\na,0,0\n")
    by_name = {s.entity: s for s in datasets.load(path, "long")}
    assert by_name["a"].ts.tolist() == [0, 3_600_000] and by_name["a"].values.tolist() == [0, 1]
    assert by_name["b"].values.tolist() == [1.0, 2.0]


def test_ett_columns_are_entities(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "date,HUFL,OT\n2016-07-01 00:00:00,1.5,30\n"
                 "2016-07-01 01:00:00,2.5,31\n")
    hufl, ot = datasets.load(path, "ett")
    assert (hufl.entity, ot.entity) == ("HUFL", "OT")
    assert ot.values.tolist() == [30.0, 31.0] and hufl.ts[1] - hufl.ts[0] == datasets.HOUR_MS


@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("m4", '"V1","V2"\n"H1","x"\n', "x.csv:2: 'x' is not a number"),
    ("m4", '"V1"\n', "no data rows"),
    ("long", "who,when,what\na,0,1\n", "header must name"),
    ("long", "entity,ts,value\na,noon,1\n", "x.csv:2: timestamp 'noon'"),
    ("ett", "time,OT\n0,1\n", "first column must be 'date'"),
])
def test_bad_files_name_the_line(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        datasets.load(write(tmp_path, "x.csv", text), fmt)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        datasets.load(tmp_path / "none.csv", "m4")
    with pytest.raises(DataError, match="unknown format"):
        datasets.load(tmp_path, "parquet")


def test_interleave_orders_by_time_and_staggers_arrivals() -> None:
    a = datasets.Series("a", np.array([0, 10, 20]), np.array([1.0, 2.0, 3.0]))
    b = datasets.Series("b", np.array([0, 10]), np.array([4.0, 5.0]))
    names, ts, values = datasets.interleave([a, b])
    assert names == ["a", "b", "a", "b", "a"] and ts.tolist() == [0, 0, 10, 10, 20]
    names, ts, values = datasets.interleave([a, b], arrival_gap_steps=2, step_ms=10)
    assert list(zip(names, ts.tolist(), strict=True)) == [
        ("a", 0), ("a", 10), ("a", 20), ("b", 20), ("b", 30)]
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_bundled_subset_matches_the_shared_m4_data() -> None:
    bundled = datasets.load(datasets.bundled_m4(), "m4")
    assert len(bundled) == 60 and bundled[0].entity == "H1"
    test = datasets.find_m4_test(datasets.bundled_m4())
    assert test is not None and set(datasets.load_m4_test(test)) == {s.entity for s in bundled}
    shared = datasets.default_data_dir() / "m4-hourly"
    if not shared.is_dir():
        pytest.skip("../shared/data not present")
    full = {s.entity: s.values for s in datasets.load(shared, "m4")}
    for series in bundled:
        np.testing.assert_array_equal(series.values, full[series.entity])


def test_replay_sends_every_observation_in_order_and_stops_on_request() -> None:
    names, ts, values = ["a", "b", "a"], np.array([0, 0, 5]), np.array([1.0, 2.0, 3.0])
    sent: list[tuple[bytes, bytes]] = []
    assert replay(names, ts, values, lambda k, v: sent.append((k, v))) == 3
    assert [k for k, _ in sent] == [b"a", b"b", b"a"]
    assert orjson.loads(sent[2][1]) == {"entity": "a", "ts": 5, "value": 3.0}

    stop = threading.Event()
    count = [0]

    def send(key: bytes, value: bytes) -> None:
        count[0] += 1
        if count[0] == 250:
            stop.set()

    many = ["x"] * 10_000
    sent_n = replay(many, np.arange(10_000), np.ones(10_000), send, rate=1e6, stop=stop)
    assert sent_n < 10_000 and sent_n == count[0]
    assert replay(many, np.arange(10_000), np.ones(10_000), lambda k, v: None, limit=7) == 7
