"""evaluate, pretrain and replay read a long Parquet (Nixtla's unique_id, ds, y) as they
read the CSVs (streammeta.io.tables)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import STEP, related_family

import streammeta
from streammeta.cli import main
from streammeta.errors import DataError
from streammeta.io import datasets
from streammeta.io.frequency import parse
from streammeta.io.replay import observations_from_file
from streammeta.persistence.container import read_file

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

M1 = Path(streammeta.__file__).parent / "data" / "m1_monthly_subset.csv"
M1_TEST = M1.with_name("m1_monthly_subset_test.csv")


def m1_long(n: int) -> pd.DataFrame:
    """The first n bundled M1 series, training then test values, monthly from 1990-01."""
    test = datasets.load_m4_test(M1_TEST)
    frames = []
    for s in datasets.load(M1, "m4")[:n]:
        values = np.concatenate([s.values, test[s.entity]])
        frames.append(pd.DataFrame({"unique_id": s.entity, "y": values, "ds": pd.date_range(
            "1990-01-01", periods=len(values), freq="MS")}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("name", ["m1.pq", "m1.parq", "m1"])
def test_a_parquet_named_otherwise_is_read_as_parquet(tmp_path: Path, name: str) -> None:
    """Parquet files are also named .pq or .parq, or nothing: they were read as CSV and
    refused as "not UTF-8 text (byte 7)"."""
    frame = m1_long(3)
    frame.to_parquet(tmp_path / "m1.parquet")
    frame.to_parquet(tmp_path / name)
    named = datasets.load(tmp_path / "m1.parquet", "long")
    other = datasets.load(tmp_path / name, "long")
    assert [s.entity for s in other] == [s.entity for s in named]
    assert all(np.array_equal(a.values, b.values) and np.array_equal(a.ts, b.ts)
               for a, b in zip(other, named, strict=True))
    with pytest.raises(DataError, match=r"a Parquet file is read in the long format"):
        datasets.load(tmp_path / name, "m4")


def test_evaluate_scores_a_long_parquet_as_the_m4_csv(tmp_path: Path) -> None:
    m1_long(12).to_parquet(tmp_path / "m1.parquet")
    common = ["--protocol", "final-origin", "--horizon", "18", "--season", "12",
              "--outer-every", "500", "--methods", "streammeta", "seasonal-naive", "-q"]
    assert main(["evaluate", "--data", str(M1), "--format", "m4", "--limit-series", "12",
                 "--json", str(tmp_path / "csv.json"), *common]) == 0
    # No test file beside the Parquet: its last 18 values per series are held out.
    assert main(["evaluate", "--data", str(tmp_path / "m1.parquet"), "--format", "long",
                 "--json", str(tmp_path / "parquet.json"), *common]) == 0

    def scores(name: str) -> list[dict[str, object]]:
        rows = json.loads((tmp_path / name).read_text())["results"]
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert scores("parquet.json") == scores("csv.json")
    assert {row["method"] for row in scores("csv.json")} == {"streammeta", "seasonal-naive"}


def test_pretrain_learns_the_same_from_a_parquet_and_a_csv(tmp_path: Path) -> None:
    values = related_family(4, 500, seed=3)
    start = datasets.M4_START_MS
    ts = start + np.arange(500) * STEP
    pd.DataFrame({"entity": np.repeat(["a", "b", "c", "d"], 500), "ts": np.tile(ts, 4),
                  "value": values.reshape(-1)}).to_csv(tmp_path / "x.csv", index=False)
    pd.DataFrame({"unique_id": np.repeat(["a", "b", "c", "d"], 500),
                  "ds": np.tile(pd.to_datetime(ts, unit="ms"), 4),
                  "y": values.reshape(-1)}).to_parquet(tmp_path / "x.parquet")
    for name in ("x.csv", "x.parquet"):
        assert main(["pretrain", "--data", str(tmp_path / name), "--format", "long", "--out",
                     str(tmp_path / f"{name}.smp"), "--steps", "2", "-q"]) == 0
    a = read_file(tmp_path / "x.csv.smp")["params"]
    b = read_file(tmp_path / "x.parquet.smp")["params"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_replay_streams_a_parquet_as_the_csv_on_the_calendar(tmp_path: Path) -> None:
    frame = m1_long(5)
    frame.to_parquet(tmp_path / "m1.parquet")
    frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%d")).to_csv(tmp_path / "m1.csv",
                                                                 index=False)
    names, ts, values = observations_from_file(tmp_path / "m1.parquet", "long")
    csv_names, csv_ts, csv_values = observations_from_file(tmp_path / "m1.csv", "long")
    assert names == csv_names and ts.tolist() == csv_ts.tolist()
    assert values.tolist() == csv_values.tolist()
    assert len(names) == len(frame) and bool((np.diff(ts) >= 0).all())  # in time order
    _, on_calendar = parse("MS").to_units(ts)  # a daemon with series.freq "MS" takes them
    assert bool(on_calendar.all())


def test_a_parquet_in_another_format_is_refused_clearly(tmp_path: Path) -> None:
    m1_long(1).to_parquet(tmp_path / "m1.parquet")
    for fmt in ("m4", "ett"):
        with pytest.raises(DataError, match="Parquet file is read in the long format"):
            datasets.load(tmp_path / "m1.parquet", fmt)


def test_parquet_timestamps_with_a_time_zone_or_as_text(tmp_path: Path) -> None:
    aware = pd.DataFrame({"unique_id": ["a", "a"], "y": [1.0, 2.0], "ds": pd.to_datetime(
        ["2020-01-01 01:00", "2020-01-01 02:00"]).tz_localize("Europe/Paris")})
    aware.to_parquet(tmp_path / "tz.parquet")
    (a,) = datasets.load(tmp_path / "tz.parquet", "long")
    assert a.ts.tolist() == [1577836800000, 1577840400000]  # 00:00 and 01:00 UTC
    aware.assign(ds=["2020-01-01T00:00:00Z", "nonsense"]).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"column 'ds'.*nonsense"):
        datasets.load(tmp_path / "t.parquet", "long")


def test_parquet_rows_without_an_id_or_a_time_are_refused_naming_the_row(
        tmp_path: Path) -> None:
    """A null id became a series named "None", a NaT the year -292 million (its series
    re-timed around it): both silently. Refused, as an empty cell of a CSV is."""
    frame = m1_long(2)
    for column, row in (("unique_id", 3), ("ds", 5)):
        broken = frame.astype({column: object})
        broken.loc[row, column] = None
        broken.to_parquet(tmp_path / "b.parquet")
        with pytest.raises(DataError, match=rf"row {row + 1}: column '{column}' is missing"):
            datasets.load(tmp_path / "b.parquet", "long")
    frame.assign(y=frame["y"].where(frame.index != 7)).to_parquet(tmp_path / "y.parquet")
    with pytest.raises(DataError, match=r"row 8: column 'y': nan is not a finite number "
                       r"\(1 row\(s\) so\): drop the rows without a value"):
        datasets.load(tmp_path / "y.parquet", "long")
    frame.loc[5, "ds"] = pd.NaT  # a datetime column's own null
    frame.to_parquet(tmp_path / "nat.parquet")
    with pytest.raises(DataError, match=r"row 6: column 'ds' is missing"):
        datasets.load(tmp_path / "nat.parquet", "long")


def test_zone_aware_months_and_days_are_the_zones_dates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Berlin's month starts are 23:00 UTC the day before: with series.freq "MS" a
    zone-aware Parquet or a CSV with offsets was refused as off the calendar. Steps
    of whole days read such times in their zone's wall clock; shorter ones in UTC."""
    frame = m1_long(2)
    frame["ds"] = frame["ds"].dt.tz_localize("Europe/Berlin")
    frame.to_parquet(tmp_path / "m.parquet")
    frame.to_csv(tmp_path / "m.csv", index=False)
    for name in ("m.parquet", "m.csv"):
        a, _ = datasets.load(tmp_path / name, "long", parse("MS"))
        assert a.ts[:2].tolist() == [631152000000, 633830400000]  # 1990-01-01, -02-01
        assert datasets.load(tmp_path / name, "long", parse("h"))[0].ts[0] == 631148400000
    days = pd.date_range("2024-03-20", periods=20, freq="D", tz="Europe/Berlin")
    pd.DataFrame({"unique_id": "d", "ds": days, "y": 1.0}).to_csv(tmp_path / "d.csv")
    (d,) = datasets.load(tmp_path / "d.csv", "long", parse("D"))
    assert set(np.diff(d.ts).tolist()) == {86_400_000}  # 23 hours apart in UTC on the 31st
    monkeypatch.setenv("STREAMMETA_SERIES_FREQ", "MS")
    assert main(["evaluate", "--data", str(tmp_path / "m.parquet"), "--format", "long",
                 "--protocol", "final-origin", "--horizon", "6", "--season", "12",
                 "--methods", "streammeta", "naive", "-q"]) == 0


def test_a_parquet_of_pandas_periods_is_read_as_forecaster_reads_them(tmp_path: Path) -> None:
    """A frame with a PeriodIndex ds (quarters, months) written by to_parquet keeps the
    Period type: evaluate refused it ("timestamp '1995Q1' is neither epoch ms nor
    ISO-8601") though Forecaster.update takes the same frame. Each period is its first
    day, its last under a calendar freq anchored at the end."""
    quarters = pd.period_range("1995Q1", periods=8, freq="Q")
    frame = pd.DataFrame({"unique_id": "a", "ds": quarters, "y": np.arange(8.0) + 1})
    path = tmp_path / "q.parquet"
    frame.to_parquet(path)
    assert isinstance(pd.read_parquet(path)["ds"].dtype, pd.PeriodDtype)
    for freq, days in (("QS", quarters.start_time), ("QE", quarters.end_time.normalize())):
        (series,) = datasets.load(path, "long", parse(freq))
        assert series.ts.tolist() == (days.asi8 // 1_000_000).tolist(), freq
