from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

import jsonschema
import numpy as np
import orjson
import pytest
from support import run_until_drained

from streammeta import config as config_mod
from streammeta import contracts
from streammeta.client import decode_forecast
from streammeta.errors import ConfigError
from streammeta.io import frequency
from streammeta.io.codec import Reason, Record, encode_observation
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.serve.daemon import Daemon


def ms(*date: int) -> int:
    return int(datetime(*date, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("spec", "unit", "step"), [
    ("", "ms", 3_600_000), ("30min", "ms", 1_800_000), ("h", "ms", 3_600_000),
    ("2H", "ms", 7_200_000), ("D", "ms", 86_400_000), ("W", "ms", 7 * 86_400_000),
    ("W-SUN", "ms", 7 * 86_400_000), ("15s", "ms", 15_000), ("ms", "ms", 1),
    ("MS", "month", 1), ("ME", "month", 1), ("M", "month", 1), ("QS", "month", 3),
    ("QS-JAN", "month", 3), ("QE", "month", 3), ("YS", "month", 12), ("YE", "month", 12),
    ("2MS", "month", 2), ("W-MON", "ms", 7 * 86_400_000), ("QS-DEC", "month", 3),
    ("YE-JUN", "month", 12), ("A-DEC", "month", 12), ("15min", "ms", 900_000),
])
def test_pandas_spellings_are_understood(spec: str, unit: str, step: int) -> None:
    freq = frequency.parse(spec)
    assert (freq.unit, freq.step) == (unit, step)


@pytest.mark.parametrize("spec", ["fortnight", "0h", "MS-", "1.5h", "W-FOO", "MS-DEC",
                                  "D-MON", "QS-MON"])
def test_unknown_frequencies_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown frequency"):
        frequency.parse(spec)


@pytest.mark.parametrize("spec", ["B", "BMS", "BME", "SMS", "C", "BQS", "bh"])
def test_irregular_pandas_frequencies_are_refused_as_such(spec: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported frequency.*not regular steps"):
        frequency.parse(spec)


@pytest.mark.parametrize("spec", ["B", "fortnight", "W-FOO"])
def test_the_config_error_says_what_is_expected_once(spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.load(None, env={"STREAMMETA_SERIES_FREQ": spec})
    message = str(caught.value)
    assert "expected expected" not in message
    assert message.count("expected a fixed step (ms, s, min, h, D, W") == 1
    if spec == "B":  # and what to do instead
        assert "values on business days can go with D" in message


def test_a_bad_frequency_in_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"series\.freq"):
        config_mod.load(None, env={"STREAMMETA_SERIES_FREQ": "fortnight"})


def test_month_starts_and_ends_follow_the_calendar_across_a_leap_year() -> None:
    starts = np.array([ms(2024, 1, 1), ms(2024, 2, 1), ms(2024, 3, 1), ms(2025, 1, 1)])
    units, on = frequency.parse("MS").to_units(starts)
    assert on.all() and np.diff(units).tolist() == [1, 1, 10]
    ends = np.array([ms(2024, 1, 31), ms(2024, 2, 29), ms(2023, 2, 28)])
    units, on = frequency.parse("ME").to_units(ends)
    assert on.all()
    assert frequency.parse("ME").to_ms(units).tolist() == ends.tolist()
    # Not a month's first day at 00:00 UTC: off the calendar.
    _, on = frequency.parse("MS").to_units(np.array([ms(2024, 1, 2), ms(2024, 1, 1) + 1]))
    assert not on.any()


def test_forecast_targets_step_by_calendar_months_and_quarters() -> None:
    monthly = frequency.parse("MS")
    origin, _ = monthly.to_units(np.array([ms(2024, 11, 1)]))
    assert monthly.targets(origin, 3).tolist() == [[ms(2024, 12, 1), ms(2025, 1, 1),
                                                    ms(2025, 2, 1)]]
    quarterly = frequency.parse("QE")
    origin, _ = quarterly.to_units(np.array([ms(2024, 12, 31)]))
    assert quarterly.targets(origin, 2).tolist() == [[ms(2025, 3, 31), ms(2025, 6, 30)]]


def month_records(months: list[tuple[int, int, int]], entity: str = "store-1") -> list[Record]:
    return [Record("obs", 0, i, *encode_observation(entity, ms(*date), 100.0 + i % 12))
            for i, date in enumerate(months)]


@pytest.mark.parametrize(("freq", "stamps", "shown"), [
    ("MS", [ms(2020, 1, 1), ms(2020, 2, 1) + 1], "2020-02-01T00:00:00.001Z) is not a date"),
    ("h", [0, 3_600_001], "ts 3600001 (1970-01-01T01:00:00.001Z) vs last 0 (1970-01-01T00:00:00Z)"),
])
def test_a_dead_letter_shows_a_timestamp_a_millisecond_off_to_the_millisecond(
        freq: str, stamps: list[int], shown: str) -> None:
    """A ts 1 ms past a month start or an hour is misaligned; its detail showed the
    instant to the second ("2020-02-01T00:00:00Z is not a date of 'MS'"), a valid one."""
    config = config_mod.load(None, env={}).replace("series", freq=freq, horizon=3)
    records = [Record("obs", 0, i, *encode_observation("a", t, 1.0))
               for i, t in enumerate(stamps)]
    source, sink = MemorySource(records), MemorySink()
    run_until_drained(Daemon(config, source, sink), source)
    assert [letter.reason for letter in sink.dead_letters] == [Reason.MISALIGNED]
    assert shown in sink.dead_letters[0].detail


def test_a_monthly_stream_is_forecast_on_the_calendar_with_gaps_and_misalignment() -> None:
    """Calendar months are 28–31 days apart: no fixed step_ms accepts them. With
    series.freq = "MS" every month is accepted, a skipped month is a gap, a mid-month
    value is misaligned, and forecast targets are the following months' first days."""
    dates = [(2020 + m // 12, m % 12 + 1, 1) for m in range(40)]
    dates = dates[:30] + dates[31:]  # one month missing: a gap of one step
    dates.insert(10, (2020, 11, 15))  # not a month start
    config = config_mod.load(None, env={}).replace(
        "series", freq="MS", season=12, horizon=3).replace("model", window=24, hidden=16)
    source, sink = MemorySource(month_records(dates)), MemorySink()
    daemon = Daemon(config, source, sink)
    run_until_drained(daemon, source)
    assert [letter.reason for letter in sink.dead_letters] == [Reason.MISALIGNED]
    assert sink.dead_letters[0].detail == (  # the instant in UTC: an offset shows there
        f"ts {ms(2020, 11, 15)} (2020-11-15T00:00:00Z) is not a date of series.freq 'MS': "
        "the first day of a month at 00:00 UTC (month ends: 'ME', 'QE', 'YE')")
    assert len(sink.forecasts) == len(dates) - 1
    last = orjson.loads(sink.forecasts[-1][1])
    assert last["origin"] == ms(2023, 4, 1) and last["freq"] == "MS" and last["step_ms"] == 0
    assert last["ts"] == [ms(2023, 5, 1), ms(2023, 6, 1), ms(2023, 7, 1)]
    assert last["warm"] and all(np.isfinite(last["point"]))
    filled = daemon.metrics.registry.get_sample_value("streammeta_gap_steps_filled_total")
    assert filled == 1  # the skipped month
    schema = json.loads(resources.files(contracts).joinpath("forecast.schema.json").read_text())
    for key, value in sink.forecasts:  # the contract holds calendar forecasts too
        jsonschema.validate(orjson.loads(value), schema)
        assert decode_forecast(value, key=key).freq == "MS"


def test_the_same_stream_with_a_fixed_step_is_dead_lettered_as_misaligned() -> None:
    dates = [(2020 + m // 12, m % 12 + 1, 1) for m in range(6)]
    config = config_mod.load(None, env={}).replace("series", step_ms=31 * 86_400_000)
    source, sink = MemorySource(month_records(dates)), MemorySink()
    run_until_drained(Daemon(config, source, sink), source)
    assert {letter.reason for letter in sink.dead_letters} == {Reason.MISALIGNED}
