"""Offline meta-training (``streammeta pretrain``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import STEP, layout_of, related_family
from torch import Tensor

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.errors import DataError
from streammeta.io import datasets
from streammeta.meta import outer
from streammeta.meta.pretrain import meta_train, offline_layout, task_pool
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.persistence import params as params_io


@pytest.fixture
def cfg(meta_cfg: Config) -> Config:
    return meta_cfg


def test_pretrain_writes_a_parameter_file_the_daemon_loads(
        cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streammeta.cli import main
    from streammeta.io.datasets import bundled_m4

    config_path = tmp_path / "c.toml"
    config_path.write_text(config_mod.to_toml(cfg))
    out = tmp_path / "m4.smp"
    assert main(["pretrain", "--config", str(config_path), "--data", str(bundled_m4()),
                 "--format", "m4", "--out", str(out), "--steps", "30", "-q"]) == 0
    # It says whether the file served the series it held out better than the seeded θ.
    said = capsys.readouterr()
    assert "backtest on" in said.out + said.err and "θ serves" in said.out + said.err
    params, version = params_io.load(out, model.ModelShape.of(cfg))
    assert version == 1
    assert not torch.equal(params["w_point"], params_io.initial(cfg)[0]["w_point"])  # it learned


def test_pretrain_at_the_automatic_width_is_256_wide_and_served_so(
        cfg: Config, tmp_path: Path) -> None:
    """model.hidden = 0: offline meta-training trains the wider trunk (where it pays),
    and a daemon started from its file serves that width; without a file, 128."""
    from streammeta import assemble
    from streammeta.io.datasets import bundled_m4
    from streammeta.meta.pretrain import pretrain

    auto = cfg.replace("model", hidden=0)
    out = tmp_path / "m4.smp"
    pretrain(auto, str(bundled_m4()), "m4", str(out), steps=2, progress=False)
    assert params_io.width(out) == config_mod.OFFLINE_HIDDEN == 256
    served = assemble.engine(auto.replace("model", init=str(out)))
    assert served.shape.hidden == 256 and served.serving()[0]["w1"].shape[1] == 256
    assert assemble.engine(auto).shape.hidden == config_mod.ONLINE_HIDDEN == 128


def test_pretrain_steps_by_pretrain_lr_and_the_outer_loop_by_meta_lr(
        cfg: Config, tmp_path: Path) -> None:
    """Offline meta-training takes ``meta.pretrain_lr``; ``meta.meta_lr`` is the online
    loop's from a seeded θ (0.002 offline made the M4 final origin worse; online it
    helps). A θ from a parameter file (``model.init``: pretrained) is fine-tuned online
    at ``meta.pretrain_lr``, the step it was trained with: at ``meta.meta_lr`` twelve
    online runs took M4 hourly's final-origin sMAPE from 8.872 to 8.901."""

    values = related_family(16, layout_of(cfg).length * 2, seed=4)
    ts = np.arange(values.shape[1], dtype=np.int64) * STEP
    series = [datasets.Series(f"s{i}", ts, v) for i, v in enumerate(values)]

    def trained(**meta: float) -> Tensor:
        params, _ = meta_train(cfg.replace("meta", holdout=0.25, **meta), series, steps=3,
                               progress=False)
        return params["w_point"]

    base = trained(meta_lr=0.003, pretrain_lr=0.003)
    torch.testing.assert_close(trained(meta_lr=0.5, pretrain_lr=0.003), base, rtol=0, atol=0)
    start = params_io.initial(cfg)[0]["w_point"]
    larger = trained(meta_lr=0.003, pretrain_lr=0.03)
    assert (larger - start).abs().sum() > 5 * (base - start).abs().sum()
    loop = outer.attach(cfg.replace("meta", meta_lr=0.004), Engine(cfg), lambda p, v: None)
    assert loop.learner.optimiser.param_groups[0]["lr"] == 0.004
    engine = Engine(cfg)
    params_io.save(tmp_path / "theta.smp", engine.serving()[0], 0, engine.shape)
    pretrained = cfg.replace("model", init=str(tmp_path / "theta.smp")).replace(
        "meta", meta_lr=0.004, pretrain_lr=0.0015)
    loop = outer.attach(pretrained, Engine(pretrained), lambda p, v: None)
    assert loop.learner.optimiser.param_groups[0]["lr"] == 0.0015


def test_the_task_pool_is_every_stride_of_every_long_enough_series() -> None:
    ts = np.arange(10, dtype=np.int64)
    series = [datasets.Series("a", ts, np.arange(10.0)), datasets.Series("b", ts[:3],
                                                                         np.zeros(3))]
    pool, owner = task_pool(series, length=4, stride=3)
    assert pool.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert owner.tolist() == [0, 0, 0]
    assert task_pool(series, length=11, stride=1)[0].shape == (0, 11)


def test_the_task_pool_is_bounded_by_widening_its_stride() -> None:
    """At season 1 every step starts a history: M4 daily's 10 million values made a
    pool of 7 GB. Beyond ``limit`` the stride widens, spread over whole series."""
    series = [datasets.Series("a", np.arange(10, dtype=np.int64), np.arange(10.0))]
    pool, _ = task_pool(series, length=4, stride=1, limit=3)  # 7 histories at stride 1
    assert pool.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


def test_series_too_short_for_a_whole_task_pretrain_on_young_tasks(cfg: Config) -> None:
    """Yearly-like series (shorter than a whole task) meta-train on their first
    forecasts instead of being refused; shorter still is refused, named."""
    layout = offline_layout(cfg.resolved(offline=True))
    assert layout.young_length < layout.length
    values = related_family(24, layout.length - 1, seed=5)
    ts = np.arange(values.shape[1], dtype=np.int64) * STEP
    series = [datasets.Series(f"s{i}", ts, v) for i, v in enumerate(values)]
    params, stats = meta_train(cfg.replace("meta", holdout=0.25), series, steps=3,
                               progress=False)
    assert stats["young_only"] == 1.0 and stats["tasks"] >= 24
    assert not torch.equal(params["w_point"], params_io.initial(cfg)[0]["w_point"])
    short = [datasets.Series(s.entity, s.ts[:layout.young_length - 1],
                             s.values[:layout.young_length - 1]) for s in series]
    with pytest.raises(DataError, match=f"young tasks {layout.young_length}"):
        meta_train(cfg, short, steps=1, progress=False)


def test_pretrain_backtests_daily_values_one_day_apart_without_a_frequency(
        cfg: Config, tmp_path: Path) -> None:
    """``streammeta pretrain``'s backtest takes the data's step, as ``evaluate`` does:
    with ``series.freq`` unset it gave the engine ``series.step_ms`` (hourly), so daily
    values were 24 steps apart, and the verdict on the file (MASE 3.8 against 0.66 on
    twelve daily series) came from forecasts across gaps."""
    from streammeta.cli import _backtest_file
    from streammeta.meta.pretrain import pretrain

    values = related_family(12, 200, seed=6)
    ts = np.arange(values.shape[1], dtype=np.int64) * 86_400_000
    series = [datasets.Series(f"s{i}", ts, v) for i, v in enumerate(values)]
    path = tmp_path / "daily.csv"
    path.write_text("unique_id,ds,y\n" + "".join(
        f"{s.entity},{t},{v}\n" for s in series for t, v in zip(s.ts, s.values, strict=True)))
    out = tmp_path / "daily.smp"
    cfg = cfg.replace("series", season=7, horizon=7)
    pretrain(cfg, str(path), "long", str(out), steps=2, progress=False)
    unset = _backtest_file(cfg, series, str(out))
    assert unset == _backtest_file(cfg.replace("series", freq="D"), series, str(out))


def test_a_file_pretrained_on_daily_values_is_refused_at_another_frequency(
        cfg: Config, tmp_path: Path) -> None:
    """θ pretrained on daily values was served by a daemon of series.freq = "MS" where
    the season and horizon agreed: the file records the data's step (here without
    series.freq set: the data's own), and another frequency is refused naming it."""
    from streammeta.errors import ParameterFileError
    from streammeta.meta.pretrain import pretrain

    values = related_family(12, 120, seed=3)
    ts = np.arange(values.shape[1], dtype=np.int64) * 86_400_000
    path = tmp_path / "daily.csv"
    path.write_text("unique_id,ds,y\n" + "".join(
        f"s{i},{t},{v}\n" for i, row in enumerate(values) for t, v in zip(ts, row, strict=True)))
    out = tmp_path / "daily.smp"
    cfg = cfg.replace("series", season=7, horizon=7)
    pretrain(cfg, str(path), "long", str(out), steps=1, progress=False)
    for daily in ("D", "24h"):
        params_io.initial(cfg.replace("series", freq=daily).replace("model", init=str(out)))
    with pytest.raises(ParameterFileError, match=r"series\.freq = 'D' \(steps of "
                                                 r"86400000 ms\), this configuration has 'MS'"):
        params_io.initial(cfg.replace("series", freq="MS").replace("model", init=str(out)))


def test_pretrain_with_only_a_monthly_frequency_learns_for_a_season_of_12(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``STREAMMETA_SERIES_FREQ=MS`` alone: the file was learned (and backtested) for a
    season of 24 months, and a daemon with the same frequency and season 12 refused it.
    The season is the frequency's, 12, in the file and in the backtest."""
    from streammeta.cli import main
    from streammeta.errors import ParameterFileError
    from streammeta.io.datasets import bundled_m4

    monkeypatch.setenv("STREAMMETA_SERIES_FREQ", "MS")
    monkeypatch.setenv("STREAMMETA_SERIES_HORIZON", "6")
    monthly = bundled_m4().parent / "m1_monthly_subset.csv"
    out = tmp_path / "m1.smp"
    assert main(["pretrain", "--data", str(monthly), "--format", "m4", "--out", str(out),
                 "--steps", "2", "-q"]) == 0
    said = capsys.readouterr()
    assert "backtest on" in said.out + said.err
    config = config_mod.load(None).resolved(offline=True)
    assert config.series.season == 12
    params_io.load(out, model.ModelShape.of(config))
    with pytest.raises(ParameterFileError, match=r"series\.season = 12, this configuration "
                                                 r"has 24"):
        params_io.load(out, model.ModelShape.of(config.replace("series", season=24)))


def test_pretrain_takes_the_season_evaluate_takes_for_daily_values(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Daily values and neither ``series.freq`` nor ``series.season``: the file was learned
    for the hourly defaults' season 24, and ``run`` with ``series.freq = "D"`` (season 7)
    refused it. ``pretrain`` takes the season ``evaluate`` takes, the data's step's."""
    from streammeta.cli import main

    days = 86_400_000
    values = related_family(12, 200, seed=5)
    rows = ["entity,ts,value"] + [f"e{e},{datasets.M4_START_MS + t * days},{values[e, t]:.4f}"
                                  for e in range(12) for t in range(200)]
    data = tmp_path / "daily.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "daily.smp"
    assert main(["pretrain", "--data", str(data), "--format", "long", "--out", str(out),
                 "--steps", "2", "-q"]) == 0
    assert "(season 7, horizon 48)" in capsys.readouterr().out
    daily = config_mod.load(None, env={"STREAMMETA_SERIES_FREQ": "D"}).resolved(offline=True)
    params_io.load(out, model.ModelShape.of(daily.replace("series", transform="none")),
                   daily.series.frequency)
