from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streammeta.errors import DataError
from streammeta.io import datasets, frequency
from streammeta.io.datasets import Series

HOUR = datasets.HOUR_MS


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- M4 wide ---------------------------------------------------------------------------
def test_m4_rows_are_ragged_series_on_a_synthetic_clock(tmp_path: Path) -> None:
    # Quoted and unquoted cells, trailing cells empty as in the competition's files.
    path = write(tmp_path, "x.csv", '"V1","V2","V3","V4"\n"H1","1","2.5","3"\n'
                                    '"H2","4","5",\nH10,6,,\n')
    a, b, c = datasets.load(path, "m4")
    assert (a.entity, a.values.tolist()) == ("H1", [1.0, 2.5, 3.0])
    assert (b.entity, b.values.tolist()) == ("H2", [4.0, 5.0])
    assert (c.entity, c.values.tolist()) == ("H10", [6.0])
    assert a.ts.tolist() == [datasets.M4_START_MS + i * HOUR for i in range(3)]
    assert a.ts.dtype == np.int64 and a.values.dtype == np.float64
    assert b.ts[0] == a.ts[0] == c.ts[0]


def test_m4_clock_can_be_chosen(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "V1,V2,V3\nD1,1,2\n")
    (series,) = datasets.load_m4(path, step_ms=86_400_000, start_ms=1000)
    assert series.ts.tolist() == [1000, 1000 + 86_400_000]


@pytest.mark.parametrize(("freq", "dates"), [
    ("D", ["2017-01-01", "2017-01-02", "2017-01-03"]),
    ("W-SUN", ["2017-01-01", "2017-01-08", "2017-01-15"]),
    ("MS", ["2017-01-01", "2017-02-01", "2017-03-01"]),
    ("QS", ["2017-01-01", "2017-04-01", "2017-07-01"]),
    ("YS", ["2017-01-01", "2018-01-01", "2019-01-01"]),
    ("ME", ["2017-01-31", "2017-02-28", "2017-03-31"]),
    ("YE", ["2017-01-31", "2018-01-31", "2019-01-31"]),
])
def test_m4_values_go_on_the_configured_frequency(tmp_path: Path, freq: str,
                                                   dates: list[str]) -> None:
    """An M4 file (no timestamps) read for series.freq = "D" or "MS" was put on an
    hourly clock: evaluate rejected every value (sMAPE shown as 0.000) or stopped
    with "not a date of freq"; replay and demo sent values the daemon dead-lettered."""
    from streammeta.io import frequency

    path = write(tmp_path, "Daily-train.csv", "V1,V2,V3,V4\nD1,1,2,3\n")
    freq_ = frequency.parse(freq)
    (series,) = datasets.load(path, "m4", freq_)
    assert series.ts.astype("datetime64[ms]").astype("datetime64[D]").astype(
        str).tolist() == dates
    assert bool(freq_.to_units(series.ts)[1].all())
    (hourly,) = datasets.load(path, "m4")  # no frequency: the hourly clock, as before
    assert np.diff(hourly.ts).tolist() == [HOUR, HOUR]


def test_m4_directory_means_hourly_train_and_its_test_file_is_found(tmp_path: Path) -> None:
    write(tmp_path, "Hourly-train.csv", "V1,V2,V3\nH1,1,2\n")
    write(tmp_path, "Hourly-test.csv", "V1,V2,V3,V4\nH1,3,4,5\n")
    (series,) = datasets.load(tmp_path, "m4")
    assert series.values.tolist() == [1.0, 2.0]
    found = datasets.find_m4_test(tmp_path / "Hourly-train.csv")
    assert found == tmp_path / "Hourly-test.csv"
    assert datasets.load_m4_test(found)["H1"].tolist() == [3.0, 4.0, 5.0]


def test_find_m4_test_beside_a_plain_name_or_none(tmp_path: Path) -> None:
    write(tmp_path, "sub.csv", "V1,V2\nH1,1\n")
    assert datasets.find_m4_test(tmp_path / "sub.csv") is None
    write(tmp_path, "sub_test.csv", "V1,V2\nH1,1\n")
    assert datasets.find_m4_test(tmp_path / "sub.csv") == tmp_path / "sub_test.csv"


# -- long ------------------------------------------------------------------------------
def test_long_sorts_each_entity_and_reads_both_timestamp_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "entity,ts,value\n"
                 "b,7200000,2\n"
                 "a,1970-01-01T01:00:00Z,1\n"
                 "b,3600000,1\n"
                 "a,1970-01-01 00:00:00,0\n"  # naive: UTC
                 "a,1970-01-01T03:00:00+01:00,2\n")  # 02:00 UTC
    a_series, b_series = datasets.load(path, "long")  # order of first appearance: b, a
    assert (a_series.entity, b_series.entity) == ("b", "a")
    assert b_series.ts.tolist() == [0, HOUR, 2 * HOUR]
    assert b_series.values.tolist() == [0.0, 1.0, 2.0]
    assert a_series.ts.tolist() == [HOUR, 2 * HOUR] and a_series.values.tolist() == [1.0, 2.0]


def test_long_columns_in_any_order_extra_ignored_duplicates_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "Value,note,TS,Entity\n"
                 "1.5,x,1000,s\n2.5,y,1000,s\n0.5,z,0,s\n")
    (series,) = datasets.load(path, "long")
    assert series.ts.tolist() == [0, 1000, 1000]
    assert series.values.tolist() == [0.5, 1.5, 2.5]  # the repeated ts in file order


# -- ETT -------------------------------------------------------------------------------
def test_ett_columns_are_entities_on_the_utc_date_clock(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "date,HUFL,OT\n"
                 "2016-07-01 00:00:00,1.5,30\n2016-07-01 01:00:00,2.5,31\n")
    hufl, ot = datasets.load(path, "ett")
    assert (hufl.entity, ot.entity) == ("HUFL", "OT")
    assert hufl.values.tolist() == [1.5, 2.5] and ot.values.tolist() == [30.0, 31.0]
    assert hufl.ts.tolist() == [1_467_331_200_000, 1_467_331_200_000 + HOUR]  # 2016-07-01Z
    assert np.array_equal(hufl.ts, ot.ts)


# -- bad files -------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("m4", "", r"x\.csv: empty file"),
    ("m4", "  \n\n", "empty file"),
    ("m4", '"V1","V2"\n', "no data rows"),
    ("m4", '"V1","V2"\n"H1","x"\n', r"x\.csv:2: column 'V2': 'x' is not a number"),
    ("m4", "V1,V2,V3\nH1,1,2\nH2,3,nan\n", r"x\.csv:3: column 'V3': 'nan' is not a finite"),
    ("m4", "V1,V2,V3,V4\nH1,1,,3\n", r"x\.csv:2: column 'V4': value after an empty cell"),
    ("m4", "V1,V2\nH1,1\nH1,2\n", r"x\.csv:3: duplicate series id 'H1'"),
    ("m4", "V1,V2\n,1\n", r"x\.csv:2: missing series id"),
    ("m4", "V1,V2\nH1,\n", r"x\.csv:2: series 'H1' has no values"),
    ("long", "who,when,what\na,0,1\n", r"x\.csv:1: header lacks column\(s\) entity, ts, value"),
    ("long", "entity,value\na,1\n", r"x\.csv:1: header lacks column\(s\) ts"),
    ("long", "entity,ts,value\na,0,1\na,5\n", r"x\.csv:3: expected at least 3 columns, got 2"),
    ("long", "entity,ts,value\na,0,1\na,noon,1\n", r"x\.csv:3: timestamp 'noon' is neither"),
    ("long", "entity,ts,value\na,1.5,1\n", r"x\.csv:2: timestamp '1\.5' is not a whole"),
    ("long", "entity,ts,value\na,0,1\n\na,1,high\n", r"x\.csv:4: column 'value': 'high'"),
    ("long", "entity,ts,value\na,0,1\n,1,2\n", r"x\.csv:3: empty entity id"),
    ("long", "unique_id,ds,y\na,0,1\na,1,\na,2,NaN\n",  # what to do is said
     r"x\.csv:3: column 'y': '' is not a number: drop the rows without a value"),
    ("ett", "time,OT\n0,1\n", r"x\.csv:1: the first column must be 'date'"),
    ("ett", "date\n2016-07-01,\n", "no variable columns"),
    ("ett", "date,OT,OT\n2016-07-01,1,2\n", "unique name"),
    ("ett", "date,A,B\n2016-07-01 00:00,1,2\n2016-07-01 01:00,3\n", r"x\.csv:3: expected 3"),
    ("ett", "date,A,B\n2016-07-01 00:00,1,2\n2016-07-01 01:00,3,?\n",
     r"x\.csv:3: column 'B': '\?' is not a number"),
    ("ett", "date,A\n2016-07-01 01:00,1\n2016-07-01 00:00,2\n", r"x\.csv:3: date .* not after"),
    ("ett", "date,A\n2016-07-01 00:00,1\nyesterday,2\n", r"x\.csv:3: timestamp 'yesterday'"),
])
def test_bad_files_name_the_file_line_and_problem(tmp_path: Path, fmt: str, text: str,
                                                   message: str) -> None:
    with pytest.raises(DataError, match=message):
        datasets.load(write(tmp_path, "x.csv", text), fmt)


def test_a_gzip_compressed_csv_is_read_as_the_csv(tmp_path: Path) -> None:
    """Public data sets come as data.csv.gz: it was refused as not UTF-8 (byte 1)."""
    import gzip

    text = "unique_id,ds,y\na,2020-01-01,1.5\na,2020-01-02,2.5\n"
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(text.encode()))
    (plain,) = datasets.load(write(tmp_path, "d.csv", text), "long")
    (packed,) = datasets.load(tmp_path / "d.csv.gz", "long")
    assert packed.values.tolist() == plain.values.tolist() == [1.5, 2.5]
    assert packed.ts.tolist() == plain.ts.tolist()
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode())[:20])
    with pytest.raises(DataError, match=r"t\.csv\.gz: not a readable gzip file"):
        datasets.load(tmp_path / "t.csv.gz", "long")


def _zipped(text: str, *members: str) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in members:
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".bz2", ".xz", ".zip", ".zst"])
def test_a_csv_compressed_as_pandas_reads_it_is_read_as_the_csv(tmp_path: Path,
                                                                 suffix: str) -> None:
    """pandas (and so a statsforecast user's files) reads .bz2, .xz, .zip and .zst
    CSVs as it reads .gz; evaluate, pretrain and replay refused them as "not UTF-8
    text (byte 10)", which sent the user looking for an encoding problem."""
    import bz2
    import lzma

    import zstandard

    text = "unique_id,ds,y\na,2020-01-01,1.5\na,2020-01-02,2.5\n"
    packed_bytes = {".bz2": lambda: bz2.compress(text.encode()),
                    ".xz": lambda: lzma.compress(text.encode()),
                    ".zip": lambda: _zipped(text, "d.csv"),
                    ".zst": lambda: zstandard.ZstdCompressor().compress(text.encode())}[suffix]()
    (tmp_path / f"d.csv{suffix}").write_bytes(packed_bytes)
    (plain,) = datasets.load(write(tmp_path, "d.csv", text), "long")
    (packed,) = datasets.load(tmp_path / f"d.csv{suffix}", "long")
    assert packed.values.tolist() == plain.values.tolist() == [1.5, 2.5]
    assert packed.ts.tolist() == plain.ts.tolist()
    (tmp_path / f"t.csv{suffix}").write_bytes(packed_bytes[:30])
    with pytest.raises(DataError, match=r"t\.csv\.[a-z0-9]+: not a readable [a-z0-9]+ file"):
        datasets.load(tmp_path / f"t.csv{suffix}", "long")


def test_a_zip_of_several_files_is_refused_naming_them(tmp_path: Path) -> None:
    (tmp_path / "d.zip").write_bytes(_zipped("unique_id,ds,y\n", "a.csv", "b.csv"))
    with pytest.raises(DataError, match=r"d\.zip: a zip archive of 2 files \('a\.csv', "
                                        r"'b\.csv'\), where one CSV was expected"):
        datasets.load(tmp_path / "d.zip", "long")


def test_malformed_encoding_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", b"V1,V2\nH1,1\nH2,\xff\n")
    with pytest.raises(DataError, match=r"x\.csv:3: not UTF-8"):
        datasets.load(path, "m4")


def test_missing_file_directory_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        datasets.load(tmp_path / "none.csv", "long")
    with pytest.raises(DataError, match=r"Hourly-train\.csv: no such file"):
        datasets.load(tmp_path, "m4")
    with pytest.raises(DataError, match="is a directory"):
        datasets.load(tmp_path, "ett")
    with pytest.raises(DataError, match="unknown format 'parquet'"):
        datasets.load(tmp_path, "parquet")


# -- the stream ------------------------------------------------------------------------
def test_interleave_orders_by_time_with_ties_in_series_order() -> None:
    a = Series("a", np.array([0, 10, 20]), np.array([1.0, 2.0, 3.0]))
    b = Series("b", np.array([0, 10]), np.array([4.0, 5.0]))
    names, ts, values = datasets.interleave([b, a])
    assert names == ["b", "a", "b", "a", "a"]
    assert ts.tolist() == [0, 0, 10, 10, 20] and values.tolist() == [4, 1, 5, 2, 3]
    assert ts.dtype == np.int64 and values.dtype == np.float64


def test_arrival_gaps_shift_each_entity_start_and_keep_values() -> None:
    a = Series("a", np.array([0, 10, 20]), np.array([1.0, 2.0, 3.0]))
    b = Series("b", np.array([0, 10]), np.array([4.0, 5.0]))
    c = Series("c", np.array([30]), np.array([6.0]))
    names, ts, values = datasets.interleave([a, b, c], arrival_gap_steps=2)  # step: 10
    assert list(zip(names, ts.tolist(), values.tolist(), strict=True)) == [
        ("a", 0, 1.0), ("a", 10, 2.0), ("a", 20, 3.0), ("b", 20, 4.0), ("b", 30, 5.0),
        ("c", 40, 6.0)]
    names, ts, _ = datasets.interleave([a, b], arrival_gap_steps=1, step_ms=100)
    assert list(zip(names, ts.tolist(), strict=True)) == [
        ("a", 0), ("a", 10), ("a", 20), ("b", 100), ("b", 110)]


def test_interleave_of_nothing_and_bad_gap() -> None:
    names, ts, values = datasets.interleave([])
    assert names == [] and len(ts) == len(values) == 0
    with pytest.raises(ValueError, match="arrival_gap_steps"):
        datasets.interleave([], arrival_gap_steps=-1)


@given(st.lists(st.lists(st.integers(0, 50), max_size=8), max_size=6), st.integers(0, 3))
def test_interleave_is_a_time_ordered_merge_of_the_series(deltas: list[list[int]],
                                                          gap: int) -> None:
    series = [Series(f"e{k}", np.cumsum(np.array(d, dtype=np.int64) + 1) * 10,
                     np.arange(len(d), dtype=np.float64) + 100 * k)
              for k, d in enumerate(deltas)]
    names, ts, values = datasets.interleave(series, arrival_gap_steps=gap, step_ms=10)
    assert len(names) == len(ts) == len(values) == sum(len(s) for s in series)
    assert np.all(np.diff(ts) >= 0)
    for k, s in enumerate(series):  # each entity's values in their own order, time shifted
        mine = np.array([n == s.entity for n in names], dtype=bool)
        assert values[mine].tolist() == s.values.tolist()
        if len(s):
            assert np.array_equal(np.diff(ts[mine]), np.diff(s.ts))
            earliest = min(int(x.ts[0]) for x in series if len(x))
            if gap:
                assert ts[mine][0] == earliest + k * gap * 10


def test_series_checks_shapes_and_coerces_dtypes() -> None:
    series = Series("s", [1, 2], [3, 4])  # type: ignore[arg-type]
    assert series.ts.dtype == np.int64 and series.values.dtype == np.float64
    assert len(series) == 2
    with pytest.raises(ValueError, match="one length"):
        Series("s", np.array([1, 2]), np.array([1.0]))


# -- where data lives ------------------------------------------------------------------
def test_default_data_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    assert datasets.default_data_dir() == tmp_path
    monkeypatch.delenv(datasets.DATA_DIR_ENV)
    assert datasets.default_data_dir() == Path("../shared/data")
    assert not datasets.default_data_dir().is_absolute()


def test_bundled_subset_is_small_matches_its_test_file_and_the_shared_data() -> None:
    path = datasets.bundled_m4()
    bundled = datasets.load(path, "m4")
    assert [s.entity for s in bundled] == [f"H{i}" for i in range(1, 415, 7)]
    assert all(700 <= len(s) <= 960 for s in bundled)
    test_path = datasets.find_m4_test(path)
    assert test_path is not None
    assert path.stat().st_size + test_path.stat().st_size < 1_000_000
    test = datasets.load_m4_test(test_path)
    assert list(test) == [s.entity for s in bundled]
    assert all(len(v) == 48 for v in test.values())

    shared = datasets.default_data_dir() / "m4-hourly"
    if not (shared / datasets.M4_TRAIN_NAME).is_file():
        pytest.skip("the shared data directory is not present")
    full = {s.entity: s.values for s in datasets.load(shared, "m4")}
    full_test = datasets.load_m4_test(shared / "Hourly-test.csv")
    for series in bundled:
        np.testing.assert_array_equal(series.values, full[series.entity])
        np.testing.assert_array_equal(test[series.entity], full_test[series.entity])


# -- M1 in M4's shape, Nixtla's columns, Parquet, calendar steps ------------------------
def test_an_m4_shaped_subset_is_found_by_file_folder_or_name(tmp_path: Path) -> None:
    write(tmp_path, "Monthly-train.csv", "V1,V2,V3\nM1,1,2\nM2,3,\n")
    write(tmp_path, "Monthly-test.csv", "V1,V2\nM1,3\nM2,4\n")
    for where in (tmp_path / "Monthly-train.csv", tmp_path / "Monthly", tmp_path):
        assert [s.entity for s in datasets.load(where, "m4")] == ["M1", "M2"]
    assert datasets.find_m4_test(tmp_path / "Monthly-train.csv") == tmp_path / "Monthly-test.csv"
    write(tmp_path, "Yearly-train.csv", "V1,V2\nY1,1\n")
    with pytest.raises(DataError, match="subsets here: Monthly, Yearly"):
        datasets.load(tmp_path, "m4")


def test_long_csv_with_nixtla_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "unique_id,ds,y\nb,2020-02-01,2\na,2020-01-01,1\n"
                                    "a,2020-02-01,3\n")
    b, a = datasets.load(path, "long")
    assert (b.entity, a.entity, a.values.tolist()) == ("b", "a", [1.0, 3.0])


def test_long_parquet_with_either_column_names(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    stamps = pd.to_datetime(["2020-01-01", "2020-02-01", "2020-01-01"])
    pd.DataFrame({"unique_id": ["a", "a", "b"], "ds": stamps, "y": [1.0, 2.0, 5.0]}
                 ).to_parquet(tmp_path / "n.parquet")
    pd.DataFrame({"entity": ["a", "a"], "ts": [7200000, 3600000], "value": [2, 1]}
                 ).to_parquet(tmp_path / "e.parquet")
    a, b = datasets.load(tmp_path / "n.parquet", "long")
    assert a.values.tolist() == [1.0, 2.0] and b.values.tolist() == [5.0]
    assert a.ts[0] == 1577836800000  # naive datetimes are UTC
    (e,) = datasets.load(tmp_path / "e.parquet", "long")
    assert e.ts.tolist() == [3600000, 7200000] and e.values.tolist() == [1.0, 2.0]
    pd.DataFrame({"entity": ["a"], "ts": [1], "value": ["x"]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="'x' is not a finite number"):
        datasets.load(tmp_path / "x.parquet", "long")


def test_calendar_months_are_placed_on_a_step_grid(tmp_path: Path) -> None:
    from streammeta.io import tables

    path = write(tmp_path, "x.csv", "entity,ts,value\na,2020-01-01,1\na,2020-02-01,2\n"
                                    "a,2020-03-01,3\nb,2020-02-01,5\nb,2020-03-01,6\n")
    series, note = tables.on_step_grid(datasets.load(path, "long"))
    assert note is not None and "not a fixed step" in note
    a, b = series
    step = int(a.ts[1] - a.ts[0])
    assert np.diff(a.ts).tolist() == [step, step] and b.ts.tolist() == a.ts[1:].tolist()
    same, none = tables.on_step_grid([Series("h", np.arange(3) * HOUR, np.ones(3))])
    assert none is None and same[0].ts.tolist() == [0, HOUR, 2 * HOUR]


def test_each_series_is_placed_one_step_apart_and_duplicates_are_refused(
        tmp_path: Path) -> None:
    """evaluate scores an origin against the next H values: a series with a gap was
    scored against values after it, for forecasts the engine made of the missing
    steps (it fills short gaps)."""
    from streammeta.io import frequency, tables

    path = write(tmp_path, "g.csv", "entity,ts,value\na,2020-01-01,1\na,2020-01-02,2\n"
                                    "a,2020-01-04,4\nb,2020-01-02,5\nb,2020-01-03,6\n")
    (a, b), note = tables.on_step_grid(datasets.load(path, "long"))
    day = 86_400_000
    assert note is not None and "gaps" in note
    assert np.diff(a.ts).tolist() == [day, day] and b.ts[0] == a.ts[1]
    assert a.values.tolist() == [1.0, 2.0, 4.0]
    months = write(tmp_path, "m.csv", "entity,ts,value\na,2020-01-01,1\na,2020-02-01,2\n"
                                      "a,2020-04-01,4\n")
    (m,), note = tables.on_step_grid(datasets.load(months, "long"), frequency.parse("MS"))
    assert note is not None and "'MS'" in note
    assert [str(np.datetime64(int(t), "ms"))[:10] for t in m.ts] == [
        "2020-01-01", "2020-02-01", "2020-03-01"]
    # Dates off the calendar are left as they are, for the engine to refuse them.
    off = write(tmp_path, "o.csv", "entity,ts,value\na,2020-01-15,1\na,2020-03-15,2\n")
    kept, none = tables.on_step_grid(datasets.load(off, "long"), frequency.parse("MS"))
    assert none is None and kept[0].ts.tolist() == datasets.load(off, "long")[0].ts.tolist()
    dup = write(tmp_path, "d.csv", "entity,ts,value\na,2020-01-01,1\na,2020-01-01,2\n")
    with pytest.raises(DataError, match="'a' has two values at 2020-01-01"):
        tables.on_step_grid(datasets.load(dup, "long"), source=dup)


def test_a_long_csv_of_year_month_dates_is_read_as_month_starts(tmp_path: Path) -> None:
    """Monthly data sets write their dates as ISO-8601's calendar month ("1949-01",
    AirPassengers), which pandas reads as the month's first day; Python's parser
    refused them ("timestamp '1949-01' is neither epoch ms nor ISO-8601")."""
    path = tmp_path / "air.csv"
    path.write_text("unique_id,ds,y\n" + "".join(
        f"air,{1949 + k // 12}-{k % 12 + 1:02d},{100 + k}\n" for k in range(24)))
    (series,) = datasets.load(path, "long", frequency.parse("MS"))
    assert series.ts.tolist() == [
        int(np.datetime64(f"{1949 + k // 12}-{k % 12 + 1:02d}-01", "ms").astype(np.int64))
        for k in range(24)]
    path.write_text("unique_id,ds,y\nair,1949-13,1\n")
    with pytest.raises(DataError, match="'1949-13' is neither epoch ms nor ISO-8601"):
        datasets.load(path, "long")
