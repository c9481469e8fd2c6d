"""Parameter files: θ and its version, refused when they do not fit."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from streammeta import assemble
from streammeta.config import OFFLINE_HIDDEN, ONLINE_HIDDEN, Config
from streammeta.errors import ParameterFileError
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.persistence import params as params_io


def test_parameter_files_round_trip_and_refuse_bad_content(small: Config, tmp_path: Path) -> None:
    engine = Engine(small)
    path = params_io.save(tmp_path / "p.smp", engine.serving()[0], 7, engine.shape)
    params, version = params_io.load(path, engine.shape)
    assert version == 7 and all(torch.equal(params[k], engine.serving()[0][k]) for k in params)
    served = assemble.engine(small.replace("model", init=str(path)))
    assert served.version == 7
    other = Engine(small.replace("model", hidden=8))
    with pytest.raises(ParameterFileError, match="has shape"):
        params_io.load(path, other.shape)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ParameterFileError, match="checksum"):
        params_io.load(path, engine.shape)


def test_a_file_for_other_quantile_levels_is_refused(small: Config, tmp_path: Path) -> None:
    """As many levels but others: θ's quantile outputs would serve as the wrong levels."""
    engine = Engine(small)
    path = params_io.save(tmp_path / "p.smp", engine.serving()[0], 1, engine.shape)
    levels = tuple(0.05 if q == 0.1 else 0.95 if q == 0.9 else q for q in small.series.quantiles)
    assert levels != tuple(small.series.quantiles)
    other = Engine(small.replace("series", quantiles=levels))
    with pytest.raises(ParameterFileError, match=r"series\.quantiles"):
        params_io.load(path, other.shape)


def test_a_file_for_another_season_is_refused(small: Config, tmp_path: Path) -> None:
    """θ's linear path starts as seasonal naive of its series.season (and learns from
    there): where the window is the same (a set model.window; 16 for every season up to
    5, 168 from 56 on) a file learned for m = 1 served m = 4 silently, as naive."""
    engine = Engine(small)
    path = params_io.save(tmp_path / "p.smp", engine.serving()[0], 1, engine.shape)
    other = Engine(small.replace("series", season=small.series.season + 1))
    assert other.shape.window == engine.shape.window  # the shapes alone would pass
    with pytest.raises(ParameterFileError, match=r"series\.season = 4, this configuration has 5"):
        params_io.load(path, other.shape)


@pytest.mark.parametrize(("section", "key"), [("series", "horizon"), ("model", "window")])
def test_a_file_for_another_horizon_or_window_names_the_key(
        small: Config, tmp_path: Path, section: str, key: str) -> None:
    """Refused by a tensor's shape ("lin_w has shape (21, 14) ..."), which did not say
    that the file was learned for another series.horizon or model.window."""
    engine = Engine(small)
    path = params_io.save(tmp_path / "p.smp", engine.serving()[0], 1, engine.shape)
    have = getattr(getattr(small, section), key)
    other = Engine(small.replace(section, **{key: have + 2}))
    with pytest.raises(ParameterFileError,
                       match=rf"{section}\.{key} = {have}, this configuration has {have + 2}"):
        params_io.load(path, other.shape)


def test_a_file_learned_at_another_frequency_names_series_freq(
        small: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """θ learned on daily data was served under series.freq = "MS" (or any other step)
    wherever the season and shapes agreed; the file records the frequency it was learned
    at, and another step is refused naming the key and both values."""
    daily = small.replace("series", freq="D")
    engine = Engine(daily)
    path = params_io.save(tmp_path / "p.smp", engine.serving()[0], 1, engine.shape,
                          frequency=daily.series.frequency)
    monthly = small.replace("series", freq="MS")  # the season is set: the shapes agree
    with pytest.raises(ParameterFileError, match=r"series\.freq = 'D' \(steps of 86400000 "
                                                 r"ms\), this configuration has 'MS'"):
        params_io.initial(monthly.replace("model", init=str(path)))
    params_io.initial(daily.replace("model", init=str(path)))
    same = small.replace("series", freq="", step_ms=86_400_000)  # the same step spelt so
    params_io.initial(same.replace("model", init=str(path)))
    # A file that does not record it (written before) is served, with a warning naming
    # the key, once.
    old = params_io.save(tmp_path / "old.smp", engine.serving()[0], 1, engine.shape)
    with caplog.at_level(logging.WARNING, logger="streammeta.persistence.params"):
        for _ in range(2):
            params_io.initial(monthly.replace("model", init=str(old)))
    said = [r.getMessage() for r in caplog.records if "does not record" in r.getMessage()]
    assert len(said) == 1 and "series.freq 'MS'" in said[0]


def test_a_file_of_another_kind_is_refused(small: Config, tmp_path: Path) -> None:
    from streammeta.persistence.container import FORMAT, write_file

    path = tmp_path / "c.smck"
    write_file(path, {"format": FORMAT, "partitions": {}})
    with pytest.raises(ParameterFileError, match="not a parameter file"):
        params_io.load(path, model.ModelShape.of(small))


def test_initial_parameters_are_seeded_without_a_file(small: Config) -> None:
    first, version = params_io.initial(small)
    again, _ = params_io.initial(small)
    assert version == 0 and all(torch.equal(first[k], again[k]) for k in first)
    other, _ = params_io.initial(small.replace("model", seed=1))
    assert not torch.equal(first["w1"], other["w1"])


def test_the_automatic_width_is_the_files_else_128(small: Config, tmp_path: Path) -> None:
    """model.hidden = 0: a parameter file's width is adopted, without one 128 (256 where θ
    is meta-trained offline); an explicit width keeps refusing a file of another."""
    auto = small.replace("model", hidden=0)
    assert Config().model.hidden == 0
    assert auto.resolved().model.hidden == ONLINE_HIDDEN == 128
    assert auto.resolved(offline=True).model.hidden == OFFLINE_HIDDEN == 256
    assert params_io.initial(auto)[0]["w1"].shape[1] == 128
    assert small.resolved(offline=True).model.hidden == 16  # explicit: as set
    wide = model.ModelShape.of(small.replace("model", hidden=24))
    path = params_io.save(tmp_path / "p.smp", model.init_params(wide, seed=3), 5, wide)
    from_file = auto.replace("model", init=str(path))
    assert from_file.resolved().model.hidden == from_file.resolved(offline=True).model.hidden
    assert from_file.resolved().model.hidden == params_io.width(path) == 24
    params, version = params_io.initial(from_file)
    assert version == 5 and params["w1"].shape[1] == 24
    assert Engine(from_file).shape.hidden == 24
    with pytest.raises(ParameterFileError, match=r"w1 has shape \(12, 24\).*\(12, 16\)"):
        params_io.initial(small.replace("model", init=str(path)))
    path.write_bytes(b"not a parameter file")
    with pytest.raises(ParameterFileError):
        from_file.resolved()


def test_automatic_units_follow_the_data_then_the_parameter_file(small: Config,
                                                                 tmp_path: Path) -> None:
    """series.transform = "auto": signed data (a value at or below 0 has no logarithm)
    gives "none", positive data "asinh", and without data (the daemon's start) the
    parameter file's units serve, else asinh; an explicit setting is kept."""
    import numpy as np

    auto = small.replace("series", transform="auto")
    signed, positive = [np.array([3.0, -0.5, 2.0])], [np.array([3.0, 0.5, np.nan])]
    assert auto.for_values(signed).series.transform == "none"
    assert auto.for_values(positive).series.transform == "asinh"
    assert auto.resolved().series.transform == "asinh"
    assert small.replace("series", transform="asinh").for_values(signed).series.transform == "asinh"
    pretrained = auto.for_values(signed)
    engine = Engine(pretrained)
    path = params_io.save(tmp_path / "p.smp", engine.serving()[0], 3, engine.shape)
    served = assemble.engine(auto.replace("model", init=str(path)).for_values(positive))
    assert served.shape.transform == "none" and served.version == 3
