from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support import related_family

from streammeta import Forecaster
from streammeta.config import Config
from streammeta.errors import ConfigError, DataError, ParameterFileError

pd = pytest.importorskip("pandas")

H = 6
SMALL = Config().replace("engine", max_entities=1000)


def hourly(n: int = 4, length: int = 80, start: str = "2024-01-01", seed: int = 0):
    values = related_family(n, length, seed)
    return pd.DataFrame({
        "unique_id": np.repeat([f"s{k}" for k in range(n)], length),
        "ds": np.tile(pd.date_range(start, periods=length, freq="h"), n),
        "y": values.reshape(-1)})


def forecaster(**kwargs: object) -> Forecaster:
    kwargs.setdefault("config", SMALL)
    kwargs.setdefault("outer_loop", "off")
    return Forecaster("h", 24, H, **kwargs)  # type: ignore[arg-type]


def test_update_returns_h_rows_per_observation_in_the_long_format() -> None:
    frame = hourly(n=2, length=30)
    out = forecaster().update(frame)
    assert list(out.columns) == ["unique_id", "cutoff", "ds", "step", "streammeta",
                                 "streammeta-q-10", "streammeta-q-50", "streammeta-q-90",
                                 "model_version", "warm"]
    assert len(out) == len(frame) * H
    # In the frame's order: entity s0's 30 origins, then s1's.
    assert out["unique_id"].tolist()[:: H] == frame["unique_id"].tolist()
    assert out["cutoff"].tolist()[:: H] == frame["ds"].tolist()
    first = out.iloc[:H]
    assert first["step"].tolist() == list(range(1, H + 1))
    assert (first["ds"] - first["cutoff"]).tolist() == [pd.Timedelta(hours=k)
                                                        for k in range(1, H + 1)]
    assert bool((out["streammeta-q-10"] <= out["streammeta-q-90"]).all())
    assert np.isfinite(out["streammeta"]).all()


def test_forecast_is_each_entitys_newest_and_warm_after_the_warm_up() -> None:
    f = forecaster()
    frame = hourly(n=3, length=100)
    out = f.update(frame.iloc[:150])
    before = f.forecast()
    kept = before.copy()
    out = pd.concat([out, f.update(frame.iloc[150:])])
    pd.testing.assert_frame_equal(before, kept)  # a returned frame is the caller's own
    latest = f.forecast()
    assert latest["unique_id"].unique().tolist() == ["s0", "s1", "s2"]
    for entity, rows in latest.groupby("unique_id"):
        newest = out[out["unique_id"] == entity].tail(H)
        np.testing.assert_array_equal(rows["streammeta"].to_numpy(),
                                      newest["streammeta"].to_numpy())
        assert rows["cutoff"].iloc[0] == frame[frame["unique_id"] == entity]["ds"].max()
    assert bool(latest["warm"].all())  # 100 hourly values: past the 72 of the warm-up
    assert not bool(out["warm"].iloc[0])


def test_the_season_is_the_frequencys_unless_given(tmp_path: Path) -> None:
    """``Forecaster(freq="MS", horizon=...)`` without a season served a 24-month one
    (series.season's old default, whatever the frequency): 12, the same forecasts as
    with season=12 given; a season given, here or in the configuration, wins."""
    frame = pd.DataFrame({"unique_id": "a", "y": 10 + np.sin(np.arange(40) * np.pi / 6),
                          "ds": pd.date_range("2020-01-01", periods=40, freq="MS")})
    auto = Forecaster(freq="MS", horizon=3, config=SMALL, outer_loop="off")
    assert auto.config.series.season == 12 and auto.config.model.window == 36
    assert "season=12," in repr(auto)
    given = Forecaster("MS", 12, 3, config=SMALL, outer_loop="off")
    np.testing.assert_array_equal(auto.update(frame)["streammeta"].to_numpy(),
                                  given.update(frame)["streammeta"].to_numpy())
    auto.save(tmp_path)
    assert Forecaster.load(tmp_path, outer_loop="off").config.series.season == 12
    for freq, season in (("D", 7), ("W", 52), ("QS", 4), ("YS", 1), ("30min", 48)):
        assert Forecaster(freq, horizon=3, config=SMALL).config.series.season == season
    assert Forecaster("MS", 6, 3, config=SMALL).config.series.season == 6
    set_in_config = SMALL.replace("series", season=3)
    assert Forecaster("MS", horizon=3, config=set_in_config).config.series.season == 3
    assert Forecaster(horizon=3, config=SMALL).config.series.season == 24  # hourly
    assert Forecaster(1, horizon=3, config=SMALL).config.series.season == 1  # positions


def test_calendar_months_target_the_next_months() -> None:
    f = Forecaster("MS", 12, 3, config=SMALL, outer_loop="off")
    frame = pd.DataFrame({"unique_id": 7, "ds": pd.date_range("2020-01-01", periods=30,
                                                               freq="MS"),
                          "y": np.arange(30.0)})
    out = f.update(frame)
    last = out.tail(3)
    assert last["unique_id"].tolist() == ["7"] * 3  # ids are the engine's strings
    assert last["ds"].dt.strftime("%Y-%m-%d").tolist() == ["2022-07-01", "2022-08-01",
                                                            "2022-09-01"]


def test_zone_aware_times_come_back_in_their_zone(tmp_path: Path) -> None:
    """ds in Europe/Berlin across the switch to summer time: the forecasts' cutoff and
    ds were naive UTC, so a user's merge on ds with their own frame matched nothing."""
    ds = pd.date_range("2024-03-30", periods=60, freq="h", tz="Europe/Berlin")
    frame = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(60.0) % 24})
    f = forecaster()
    out = f.update(frame)
    assert str(out["ds"].dt.tz) == "Europe/Berlin" == str(out["cutoff"].dt.tz)
    assert out["cutoff"].tolist()[::H] == ds.tolist()
    last = f.forecast()
    assert last["ds"].tolist() == [ds[-1] + pd.Timedelta(hours=k) for k in range(1, H + 1)]
    f.save(tmp_path / "state")
    again = Forecaster.load(tmp_path / "state", outer_loop="off").forecast()
    assert again["ds"].tolist() == last["ds"].tolist()
    naive = forecaster().update(frame.assign(ds=ds.tz_convert("UTC").tz_localize(None)))
    assert naive["ds"].dt.tz is None  # naive in, naive (UTC) out
    assert naive["ds"].tolist() == out["ds"].dt.tz_convert("UTC").dt.tz_localize(None).tolist()


def test_zone_aware_days_and_months_are_the_zones_dates(tmp_path: Path) -> None:
    """Daily ds at Berlin midnights across the switch to summer time are 23 hours
    apart in UTC, and Berlin's month starts are 23:00 UTC the day before: both were
    refused as misaligned. Steps of whole days count the zone's wall clock."""
    days = pd.date_range("2024-03-20", periods=20, freq="D", tz="Europe/Berlin")
    f = Forecaster("D", 7, 3, config=SMALL, outer_loop="off")
    f.update(pd.DataFrame({"unique_id": "a", "ds": days, "y": np.arange(20.0)}))
    assert f.forecast()["ds"].tolist() == [days[-1] + pd.Timedelta(days=k) for k in (1, 2, 3)]
    months = pd.date_range("2023-10-01", periods=8, freq="MS", tz="Europe/Berlin")
    m = Forecaster("MS", 12, 3, config=SMALL, outer_loop="off")
    out = m.update(pd.DataFrame({"unique_id": "a", "ds": months, "y": np.arange(8.0)}))
    assert out["cutoff"].tolist()[::3] == months.tolist()
    m.save(tmp_path / "state")
    again = Forecaster.load(tmp_path / "state", outer_loop="off").forecast()
    assert again["ds"].tolist() == list(pd.date_range("2024-06-01", periods=3, freq="MS",
                                                      tz="Europe/Berlin"))


def test_a_period_column_is_its_periods_first_or_last_days() -> None:
    """pd.period_range months were read as text ("2020-01") and refused."""
    months = pd.period_range("2020-01", periods=3, freq="M")
    frame = pd.DataFrame({"unique_id": "a", "ds": months, "y": [1.0, 2.0, 3.0]})
    for freq, first, target in (("MS", "2020-01-01", "2020-04-01"),
                                ("ME", "2020-01-31", "2020-04-30")):
        f = Forecaster(freq, 12, 2, config=SMALL, outer_loop="off")
        out = f.update(frame)
        assert out["cutoff"].iloc[0] == pd.Timestamp(first)
        assert f.forecast()["ds"].iloc[0] == pd.Timestamp(target)


def test_dates_beyond_the_years_nanoseconds_span_come_back_as_given() -> None:
    """A yearly series from 1600, or forecasts past 2262, were cast to datetime64[ns]
    and wrapped round to other dates (1600 came back as 2184-07-20 23:34:33.709)."""
    old = Forecaster("YS", 1, 3, config=SMALL, outer_loop="off")
    out = old.update(pd.DataFrame({"unique_id": "a", "ds": ["1600-01-01", "1601-01-01"],
                                   "y": [1.0, 2.0]}))
    assert out["cutoff"].tolist()[::3] == [pd.Timestamp("1600-01-01"), pd.Timestamp("1601")]
    assert out["ds"].tolist()[:3] == [pd.Timestamp(f"{y}-01-01") for y in (1601, 1602, 1603)]
    late = Forecaster("YS", 1, 3, config=SMALL, outer_loop="off")
    late.update(pd.DataFrame({"unique_id": "a", "ds": ["2261-01-01"], "y": [1.0]}))
    assert late.forecast()["ds"].tolist() == [pd.Timestamp(f"{y}-01-01")
                                              for y in (2262, 2263, 2264)]


@pytest.mark.parametrize("tz", ["dateutil/Europe/Berlin", "Europe/Berlin",
                                dt.timezone(dt.timedelta(hours=5, minutes=30))])
def test_a_saved_zone_is_read_back_whatever_its_library(tmp_path: Path, tz: object) -> None:
    """A dateutil zone was saved as its str, tzfile('/usr/share/zoneinfo/...'), and
    the loaded state's forecast() failed on it (UnknownTimeZoneError)."""
    ds = pd.date_range("2024-03-20", periods=10, freq="D", tz=tz)
    f = Forecaster("D", 7, 3, config=SMALL, outer_loop="off")
    f.update(pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(10.0)}))
    f.save(tmp_path / "state")
    again = Forecaster.load(tmp_path / "state", outer_loop="off").forecast()
    assert again["ds"].tolist() == f.forecast()["ds"].tolist()


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: d.drop(columns="y"), "lacks column"),
    (lambda d: d.iloc[[0, 2, 1]],
     r"row 1 \(unique_id 'a', ds 2024-01-01 01:00:00\): ds is before .*sort the frame.*\(late\)"),
    (lambda d: d.iloc[[0, 1, 1]], r"\(duplicate\)"),
    (lambda d: d.assign(ds=d["ds"] + pd.to_timedelta([0, 0, 30], unit="min")),
     r"row 2 \(.*\): ds is not a whole number of steps .*\(misaligned_timestamp\)"),
    (lambda d: d.assign(y=[1.0, np.nan, 2.0]), r"row 1 \(.*\): y is missing.*\(non_finite\)"),
    (lambda d: d.assign(y=[1.0, "2", 3.0]), r"\(wrong_type\)"),
    (lambda d: d.assign(y=[True, False, True]), r"row 0 \(.*\): y is not a number"),
    (lambda d: d.assign(y=pd.array([True, None, False], dtype="boolean")), r"\(wrong_type\)"),
    (lambda d: d.assign(y=[1.0, 1e39, 3.0]), r"row 1 \(.*\): y is beyond .*\(non_finite\)"),
    (lambda d: d.assign(unique_id=["a", "", "a"]), r"\(entity_empty\)"),
    (lambda d: d.assign(ds=["2024-01-01", "yesterday", "2024-01-02"]), r"\(bad_timestamp\)"),
])
def test_rows_the_daemon_would_dead_letter_are_refused_and_nothing_applied(
        change: object, match: str) -> None:
    good = pd.DataFrame({"unique_id": ["a"] * 3,
                         "ds": pd.date_range("2024-01-01", periods=3, freq="h"),
                         "y": [1.0, 2.0, 3.0]})
    f = forecaster()
    with pytest.raises(DataError, match=match):
        f.update(change(good))  # type: ignore[operator]
    assert f.observations == 0 and len(f.forecast()) == 0
    assert len(f.update(good)) == 3 * H  # still usable


def test_off_calendar_dates_and_rows_older_than_the_last_update_are_refused() -> None:
    f = Forecaster("MS", 12, 3, config=SMALL, outer_loop="off")
    with pytest.raises(DataError, match=r"not a date of freq 'MS': the first day of a month "
                                        r"at 00:00 UTC .*\(misaligned_timestamp\)"):
        f.update(pd.DataFrame({"unique_id": ["a"], "ds": ["2020-01-15"], "y": [1.0]}))
    f.update(pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2020-01-01", "2020-02-01"],
                           "y": [1.0, 2.0]}))
    # Named with the newest ds applied (a frame loaded from elsewhere does not show it).
    newest = r"ds is not after 2020-02-01T00:00:00.000, the newest ds an earlier update"
    with pytest.raises(DataError, match=rf"\(unique_id 'a', ds 2020-02-01\): {newest}.*"
                       r"\(duplicate\)"):
        f.update(pd.DataFrame({"unique_id": ["a"], "ds": ["2020-02-01"], "y": [1.0]}))
    with pytest.raises(DataError, match=rf"{newest}.*\(late\)"):
        f.update(pd.DataFrame({"unique_id": ["a"], "ds": ["2020-01-01"], "y": [1.0]}))
    out = f.update(pd.DataFrame({"unique_id": ["a"], "ds": ["2020-05-01"], "y": [3.0]}))
    assert out["cutoff"].iloc[0] == pd.Timestamp("2020-05-01")  # a gap is fine


def test_integer_ds_are_positions_with_an_integer_freq_as_in_statsforecast(
        tmp_path: Path) -> None:
    """Data sets without dates come with ds = 1, 2, 3, … and statsforecast's
    ``freq=1``: ``Forecaster(1, ...)`` took them with a TypeError, and with a ``freq``
    of days they were refused as off its step, with no word of why."""
    dated = hourly(n=3, length=60)
    positions = dated.assign(ds=np.tile(np.arange(1, 61), 3))
    f = Forecaster(1, 24, H, config=SMALL, outer_loop="off")
    out = f.update(positions)
    assert out["cutoff"].tolist()[:: H] == positions["ds"].tolist()
    assert (out["ds"] - out["cutoff"]).tolist() == list(range(1, H + 1)) * len(positions)
    # Positions are the dates' steps: the same forecasts as the dated rows give.
    same = forecaster().update(dated)
    np.testing.assert_array_equal(out["streammeta"].to_numpy(), same["streammeta"].to_numpy())
    assert repr(f).startswith("Forecaster(freq=1,")
    f.save(tmp_path)
    loaded = Forecaster.load(tmp_path, outer_loop="off")
    later = loaded.update(positions.iloc[[59]].assign(ds=61))
    assert later["cutoff"].tolist() == [61] * H and later["ds"].tolist() == list(range(62, 68))
    with pytest.raises(DataError, match=r"integer freq takes integer ds"):
        Forecaster(1, 24, H, config=SMALL).update(dated)
    with pytest.raises(DataError, match=r"for positions pass an integer freq"):
        Forecaster("D", 7, H, config=SMALL).update(positions)
    with pytest.raises(ValueError, match=r"integer freq is the step"):
        Forecaster(0, 24, H)


def test_month_starts_under_pandas_month_end_aliases_are_told_the_start_aliases() -> None:
    """pandas' "M", "Q" and "A" are month, quarter and year ends: data dated on the 1st
    was refused under them naming only the alias."""
    starts = pd.DataFrame({"unique_id": "a", "y": np.arange(30.0),
                           "ds": pd.date_range("2020-01-01", periods=30, freq="MS")})
    for alias in ("M", "Q", "A"):
        with pytest.raises(DataError, match=r"the last day of a month at 00:00 UTC \(the "
                                            r"1st: 'MS', 'QS', 'YS'\)"):
            Forecaster(alias, 12, H, config=SMALL, outer_loop="off").update(starts)


def test_rows_are_applied_in_time_order_whatever_the_frame_order() -> None:
    frame = hourly(n=3, length=40)
    by_time = frame.sort_values("ds", kind="stable")
    a, b = forecaster(), forecaster()
    out_a = a.update(frame).sort_values(["unique_id", "cutoff", "step"])
    out_b = b.update(by_time).sort_values(["unique_id", "cutoff", "step"])
    np.testing.assert_array_equal(out_a["streammeta"].to_numpy(), out_b["streammeta"].to_numpy())


def test_save_and_load_continue_exactly(tmp_path: Path) -> None:
    config = SMALL
    frame = hourly(n=4, length=120)
    first, rest = frame[frame["ds"] < "2024-01-05"], frame[frame["ds"] >= "2024-01-05"]
    kept = Forecaster("h", 24, H, config=config, outer_loop="off")
    kept.update(first)
    kept.save(tmp_path / "state")
    file = kept.save(tmp_path / "state")  # the newest only is kept
    assert sorted((tmp_path / "state").iterdir()) == [file.with_suffix(".json"), file]
    assert file.suffix == ".smck"
    loaded = Forecaster.load(tmp_path / "state", outer_loop="off")
    assert loaded.config == kept.config and loaded.observations == kept.observations
    pd.testing.assert_frame_equal(loaded.forecast(), kept.forecast())
    for name, tensor in kept.engine.serving()[0].items():
        assert torch.equal(loaded.engine.serving()[0][name], tensor)
    pd.testing.assert_frame_equal(loaded.update(rest), kept.update(rest))
    with pytest.raises(DataError, match=r"\(duplicate\)"):  # it knows every entity's last ds
        loaded.update(rest.tail(1))


def test_load_refuses_what_save_did_not_write(tmp_path: Path) -> None:
    with pytest.raises(ParameterFileError, match="no such directory"):
        Forecaster.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterFileError, match=r"no state saved by Forecaster\.save"):
        Forecaster.load(tmp_path / "empty")
    f = forecaster()
    f.update(hourly(n=1, length=10))
    f.save(tmp_path / "s")
    other = SMALL.replace("series", freq="h", season=24, horizon=H + 1)
    with pytest.raises(ParameterFileError, match="shape"):
        Forecaster.load(tmp_path / "s", config=other)


def test_inline_outer_loop_runs_every_n_observations_and_serves_what_it_promotes() -> None:
    config = SMALL.replace("meta", every_observations=500, steps=2, tasks_per_step=16)
    f = Forecaster("h", 24, H, config=config, batch_size=10_000)
    out = f.update(hourly(n=12, length=200))
    # Batches no longer than the loop's period: it runs at 500, 1,000, 1,500 and 2,000
    # observations, and at 500 (42 values each) no entity has a task yet.
    assert len(f.outer_results) == 3
    promoted = [r.version for r in f.outer_results if r.promoted]
    assert f.version == (promoted[-1] if promoted else 0)
    assert out["model_version"].iloc[-1] == f.version


def test_background_outer_loop_is_the_daemons_thread() -> None:
    config = SMALL.replace("meta", every_observations=500, steps=2, tasks_per_step=16,
                           cpu_share=1.0)
    with Forecaster("h", 24, H, config=config, outer_loop="background") as f:
        frame = hourly(n=12, length=200)
        f.update(frame)
        assert f.loop is not None and f.loop._thread is not None
        deadline = time.monotonic() + 60
        while not f.outer_results and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f.outer_results, "the background loop never ran"
        first = f.outer_results[0]
        out = f.update(hourly(n=12, length=1, start="2024-01-09 08:00"))
        # Later runs may promote meanwhile: a promoted version serves from the next batch.
        served = int(out["model_version"].iloc[0])
        assert served in {0} | {r.version for r in f.outer_results if r.promoted}
        assert served != 0 or not first.promoted
    assert not f.loop._thread.is_alive()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="outer_loop"):
        Forecaster(outer_loop="sometimes")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"expected a pandas DataFrame.*got a list$"):
        forecaster().update([("a", 1, 2.0)])
    # A polars frame is a "DataFrame" too: it is named by its package, with the way out.
    polars_like = type("DataFrame", (), {"__module__": "polars.dataframe.frame",
                                         "to_pandas": lambda self: None})()
    with pytest.raises(DataError, match=r"got a polars\.DataFrame \(convert it with "
                       r"\.to_pandas\(\)\)"):
        forecaster().update(polars_like)
    frame = pd.DataFrame({"unique_id": ["a"], "ds": ["2024-01-01"], "y": [1.0]})
    with pytest.raises(DataError, match=r"unique_id in the index: \.reset_index\(\)"):
        forecaster().update(frame.set_index("unique_id"))


def test_an_empty_frame_gives_no_forecasts() -> None:
    f = forecaster()
    out = f.update(pd.DataFrame({"unique_id": [], "ds": [], "y": []}))
    assert len(out) == 0 and "streammeta-q-90" in out.columns
    assert len(f.forecast()) == 0


def test_signed_data_gets_the_transform_evaluate_gives_it(tmp_path: Path) -> None:
    """``series.transform = "auto"``: evaluate takes "none" for data with a value at or
    below 0 and the Forecaster took asinh (built before any data), so the same rows gave
    other forecasts (ETT daily means: up to 7x apart). It decides from its first update,
    and gives evaluate's final-origin forecasts."""
    from streammeta.cli import main

    n, h = 3, 7
    frame = hourly(n=n, length=60)
    frame["y"] = frame["y"] - frame["y"].mean()  # signed around 0
    frame["ds"] = np.tile(pd.date_range("2023-01-01", periods=60, freq="D"), n)
    path, out = tmp_path / "signed.csv", tmp_path / "fo.csv"
    frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%dT00:00:00Z")).to_csv(path, index=False)
    assert main(["evaluate", "--data", str(path), "--format", "long", "--protocol",
                 "final-origin", "--season", "7", "--horizon", str(h), "--methods",
                 "streammeta", "-q", "--forecasts-out", str(out)]) == 0
    theirs = pd.read_csv(out).set_index("id").to_numpy()
    fc = Forecaster("D", 7, h, config=SMALL)
    fc.update(frame.groupby("unique_id").head(60 - h))
    assert fc.config.series.transform == "none"
    ours = fc.forecast().pivot(index="unique_id", columns="step", values="streammeta")
    np.testing.assert_allclose(ours.to_numpy(), theirs, rtol=1e-4, atol=1e-4)
    positive = Forecaster("D", 7, h, config=SMALL)
    positive.update(frame.assign(y=frame["y"] - frame["y"].min() + 1))
    assert positive.config.series.transform == "asinh"


def test_the_default_entity_cap_is_lowered_to_what_the_machine_can_reserve() -> None:
    """5-minute values with a daily season and a long horizon: a million entities' state
    cannot be reserved (before: ConfigError at construction, no forecast at all)."""
    pd = pytest.importorskip("pandas")
    fc = Forecaster(freq="5min", season=288, horizon=1000, outer_loop="off")
    assert 16 <= fc.config.engine.max_entities < 1_000_000
    ds = pd.date_range("2024-01-01", periods=400, freq="5min")
    fc.update(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 50 + np.sin(np.arange(400))}))
    assert fc.forecast().shape[0] == 1000
    with pytest.raises(ConfigError, match=r"engine\.max_entities"):  # a cap the user set
        Forecaster(freq="5min", season=288, horizon=1000, outer_loop="off",
                   config=Config().replace("engine", max_entities=999_999))



def test_a_pyarrow_backed_ds_keeps_its_zone() -> None:
    """A pyarrow-backed timestamp column (convert_dtypes(dtype_backend="pyarrow"),
    read_parquet(dtype_backend="pyarrow")) is no datetime column to pandas: its rows
    were read as text and its zone lost, the forecasts' cutoff and ds naive where the
    same frame with numpy's dtype gave them in Europe/Berlin."""
    days = pd.date_range("2024-03-20", periods=20, freq="D", tz="Europe/Berlin")
    frame = pd.DataFrame({"unique_id": "a", "ds": days, "y": np.arange(20.0)})
    arrow = frame.convert_dtypes(dtype_backend="pyarrow")
    assert isinstance(arrow["ds"].dtype, pd.ArrowDtype)
    want = Forecaster("D", 7, 3, config=SMALL, outer_loop="off").update(frame)
    got = Forecaster("D", 7, 3, config=SMALL, outer_loop="off").update(arrow)
    assert str(got["ds"].dt.tz) == "Europe/Berlin" == str(got["cutoff"].dt.tz)
    pd.testing.assert_frame_equal(got, want)
    hourly = frame.assign(ds=pd.date_range("2024-03-30", periods=20, freq="h",
                                           tz="Europe/Berlin"))
    want = Forecaster("h", 24, 3, config=SMALL, outer_loop="off").update(hourly)
    got = Forecaster("h", 24, 3, config=SMALL, outer_loop="off").update(
        hourly.convert_dtypes(dtype_backend="pyarrow"))
    pd.testing.assert_frame_equal(got, want)


def test_load_with_another_step_is_refused(tmp_path: Path) -> None:
    """Forecaster.load(config=...) with series.freq "D" took state saved at "MS": the
    entities' months since 1970 were read as days (the latest forecast's cutoff
    1970-01-01 00:00:00.629) and "2MS" continued monthly histories as two-monthly.
    Refused as `run` refuses a checkpoint kept at another step, naming both."""
    months = pd.date_range("2020-01-01", periods=30, freq="MS")
    f = Forecaster("MS", 12, 3, config=SMALL, outer_loop="off")
    f.update(pd.DataFrame({"unique_id": "a", "ds": months, "y": np.arange(30.0) % 12}))
    f.save(tmp_path / "state")
    for freq in ("D", "2MS"):
        other = SMALL.replace("series", freq=freq, season=12, horizon=3)
        with pytest.raises(ParameterFileError, match=rf"'MS' .*this configuration has '{freq}'"):
            Forecaster.load(tmp_path / "state", config=other, outer_loop="off")
    same = SMALL.replace("series", freq="MS", season=12, horizon=3)
    loaded = Forecaster.load(tmp_path / "state", config=same, outer_loop="off")
    assert loaded.forecast()["cutoff"].iloc[0] == months[-1]


def test_load_with_an_automatic_transform_takes_the_states_units(tmp_path: Path) -> None:
    """series.transform = "auto" (the default) is decided by a Forecaster's first update:
    "none" for values at or below 0. Forecaster.load(config=...) with that same
    default config took "auto" as asinh, as before any data, and refused the state
    ("holds values with series.transform = 'none', this configuration needs 'asinh'")."""
    months = pd.date_range("2020-01-01", periods=30, freq="MS")
    frame = pd.DataFrame({"unique_id": "a", "ds": months, "y": np.arange(30.0) % 12 - 3})
    config = SMALL.replace("series", freq="MS", season=12, horizon=3)
    f = Forecaster(config=config, outer_loop="off")
    f.update(frame.iloc[:20])
    assert f.config.series.transform == "none"
    f.save(tmp_path / "state")
    loaded = Forecaster.load(tmp_path / "state", config=config, outer_loop="off")
    assert loaded.config.series.transform == "none"
    pd.testing.assert_frame_equal(loaded.update(frame.iloc[20:]), f.update(frame.iloc[20:]))


def test_a_frame_of_another_step_than_freq_is_refused() -> None:
    """Forecaster() is hourly unless told: daily rows were taken as 23-hour gaps,
    interpolated and forecast by the hour, monthly rows each restarted their series
    cold (a gap beyond series.max_gap_fill), silently. A frame none of whose rows is
    one step after its series' previous one is refused; gaps between some are not."""
    days = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2020-01-01", periods=30),
                         "y": np.arange(30.0) + 1})
    with pytest.raises(DataError, match=r"freq '3600000ms' .*the median is 1 days"):
        Forecaster(config=SMALL, outer_loop="off").update(days)
    months = days.assign(ds=pd.date_range("2020-01-01", periods=30, freq="MS"))
    with pytest.raises(DataError, match=r"freq 'D' .*the median is 31 days"):
        Forecaster("D", 7, 3, config=SMALL, outer_loop="off").update(months)
    quarters = days.assign(ds=pd.date_range("2000-01-01", periods=30, freq="QS"))
    with pytest.raises(DataError, match=r"freq 'MS' .*the median is 3 months"):
        Forecaster("MS", 12, 3, config=SMALL, outer_loop="off").update(quarters)
    gappy = days.drop(index=[3, 4, 10, 20])  # some rows one day apart: gaps as in run
    f = Forecaster("D", 7, 3, config=SMALL, outer_loop="off")
    assert len(f.update(gappy)) == 3 * len(gappy)
    one_a_day = days.iloc[[29]].assign(ds=pd.Timestamp("2020-02-05"))  # one pair: a gap
    assert len(f.update(one_a_day)) == 3
    friday_monday = pd.DataFrame({"unique_id": np.repeat(["b", "c", "d", "e"], 2), "ds": np.tile(
        pd.to_datetime(["2020-01-03", "2020-01-06"]), 4), "y": 1.0})  # a gap in each
    assert len(f.update(friday_monday)) == 3 * 8


@pytest.mark.parametrize(("unit", "per_ms"), [("s", 1e-3), ("us", 1e3), ("ns", 1e6)])
def test_integer_epoch_seconds_micro_or_nanoseconds_are_named(unit: str, per_ms: float) -> None:
    """Integer ds in another unit than ms (Unix seconds; ``df.ds.astype("int64")`` or
    ``.asi8``: nanoseconds): nanoseconds raised pandas' OutOfBoundsTimedelta, "Cannot
    cast 86400000000000 from ms to 'ns'", microseconds were refused as "1000 days"
    apart and seconds as years or positions (pass freq=1), none saying what they are."""
    ms = pd.date_range("2020-01-01", periods=30, freq="D").asi8 // 1_000_000
    frame = pd.DataFrame({"unique_id": "a", "ds": (ms * per_ms).astype(np.int64),
                          "y": np.arange(30.0) + 1})
    for freq in ("D", "MS"):
        with pytest.raises(DataError, match=rf"look like epoch .*pd\.to_datetime\(df\.ds, "
                                            rf"unit='{unit}'\)"):
            Forecaster(freq, 7, 3, config=SMALL, outer_loop="off").update(frame)
    fixed = frame.assign(ds=pd.to_datetime(frame.ds, unit=unit))  # what the hint says
    assert len(Forecaster("D", 7, 3, config=SMALL, outer_loop="off").update(fixed)) == 90


def test_integer_years_or_positions_are_told_to_be_dates() -> None:
    """An integer ds is epoch ms (docs/python-api.md), so Nixtla's positions 1, 2, 3 or
    a column of years were refused row by row as off the frequency, saying nothing of
    why; the refusal now says what an integer ds is and how to give dates."""
    for ds in (np.arange(1949, 1979), np.arange(1, 31)):
        frame = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(30.0) + 1})
        with pytest.raises(DataError, match=r"misaligned_timestamp\).*An integer ds is epoch "
                                            r"milliseconds: years or positions"):
            Forecaster("YS", 1, 3, config=SMALL, outer_loop="off").update(frame)
    ms = pd.date_range("2020-01-01", periods=30, freq="D").asi8 // 1_000_000
    out = Forecaster("D", 7, 3, config=SMALL, outer_loop="off").update(
        pd.DataFrame({"unique_id": "a", "ds": ms, "y": np.arange(30.0) + 1}))
    assert len(out) == 90  # epoch ms themselves are fine


def test_forecast_lists_series_by_their_first_ds_as_documented() -> None:
    """docs/python-api.md said "in order of first appearance", read as the frame's
    order; the series come in the order their first rows were applied (time order)."""
    frame = pd.concat([pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=5,
                                                                          freq="D"), "y": 1.0})
                       for uid, start in (("a", "2021-01-01"), ("b", "2020-01-01"),
                                          ("c", "2020-06-01"))], ignore_index=True)
    f = Forecaster("D", 7, 2, config=SMALL, outer_loop="off")
    out = f.update(frame)
    assert list(dict.fromkeys(out.unique_id)) == ["a", "b", "c"]  # the frame's order
    assert list(dict.fromkeys(f.forecast().unique_id)) == ["b", "c", "a"]  # first ds
