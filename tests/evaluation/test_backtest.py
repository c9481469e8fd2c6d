"""A pretrained θ serves only where it wins a backtest on the series pretraining held
out (``streammeta.evaluation.backtest``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from streammeta import config as config_mod
from streammeta.evaluation import backtest
from streammeta.evaluation import protocols as P
from streammeta.evaluation.evaluate import mean_mase
from streammeta.io import datasets
from streammeta.online import model
from streammeta.persistence import params as params_io

DAY = 24 * datasets.HOUR_MS


def _series(n: int = 30, length: int = 120) -> list[datasets.Series]:
    rng = np.random.default_rng(3)
    t = np.arange(length)
    return [datasets.Series(f"s{k}", datasets.M4_START_MS + t * DAY,
                            rng.uniform(50, 80) + 8 * np.sin(2 * math.pi * t / 7 + k)
                            + rng.normal(0, 1.0, length)) for k in range(n)]


def _setup(tmp_path: Path, scramble: float) -> tuple[bool, str]:
    series = _series()
    # The model alone serves: with the experts, a θ thrown far off gets no weight.
    config = config_mod.load(None, env={}).replace(
        "series", season=7, horizon=7, step_ms=DAY).replace("experts", enabled=False)
    # θ from a file is fine-tuned online at meta.pretrain_lr, a seeded one at meta.meta_lr:
    # the same step here, so that only θ differs between the two.
    config = config.replace("meta", pretrain_lr=config.meta.meta_lr)
    task = P.final_origin_task(series, None, 7, 7, DAY)
    params, _ = params_io.initial(config)
    gen = torch.Generator().manual_seed(0)
    # "Pretrained": the seeded θ itself, or with every weight thrown far off.
    moved = {k: v + scramble * torch.randn(v.shape, generator=gen) for k, v in params.items()}
    path = params_io.save(tmp_path / "theta.smp", moved, 1, model.ModelShape.of(config))
    return backtest.prefer_pretrained(task, config, config.replace("model", init=str(path)),
                                      series, mean_mase)


def test_a_pretrained_theta_that_forecasts_worse_does_not_serve(tmp_path: Path) -> None:
    kept, note = _setup(tmp_path, scramble=3.0)
    assert not kept
    assert "the seeded θ serves" in note and "held-out series" in note


def test_a_pretrained_theta_no_worse_than_the_seeded_one_serves(tmp_path: Path) -> None:
    kept, note = _setup(tmp_path, scramble=0.0)
    assert kept, note


def test_the_backtest_reads_only_the_series_pretraining_held_out() -> None:
    series = _series(n=50)
    held = backtest.held_series(series, 0.2)
    assert 0 < len(held) < len(series)
    # The same hash as pretraining's split (meta.tasks.held_out over series numbers).
    from streammeta.meta.tasks import held_out
    mask = held_out(torch.arange(50), 0.2)
    assert [s.entity for s in held] == [s.entity for s, h in zip(series, mask.tolist(),
                                                                  strict=True) if h]


def test_a_final_origin_is_backtested_at_each_series_last_h_origins() -> None:
    series = _series(n=5, length=100)
    task = P.final_origin_task(series, None, 7, 7, DAY)
    held = backtest.backtest_task(series, task)
    assert held is not None
    for k, s in enumerate(held.stream):
        last = len(s) - 1 - 7  # the newest origin whose 7 targets are all known
        assert held.pos[held.ent == k].tolist() == list(range(last - 6, last + 1))
    # Where every origin of a long stream is scored (rolling, ett), so is the backtest's.
    every = backtest.backtest_task(series, P.rolling_task(series, 7, 7, DAY, 21))
    assert every is not None and len(every.ent) > 5 * 7
