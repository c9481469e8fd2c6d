"""The outer loop on CUDA: the same meta-updates as on the CPU, and an engine that
serves what was learned on the GPU. Skipped where torch sees no GPU (CI); on a
machine with one, ``python -m pytest tests/test_gpu.py``. With ``meta.device = "auto"``
the daemon tests of test_outer.py run their outer loop on CUDA there as well."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import STEP, histories, layout_of, related_family

from streammeta.config import Config
from streammeta.io import datasets
from streammeta.meta import outer
from streammeta.meta.layout import TaskLayout
from streammeta.meta.learner import MetaLearner
from streammeta.meta.pretrain import meta_train
from streammeta.online.engine import Engine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="torch sees no CUDA device")


@pytest.fixture
def cfg(meta_cfg: Config) -> Config:
    return meta_cfg


def with_young_tasks(cfg: Config, algorithm: str) -> tuple[Config, Engine, TaskLayout]:
    config = cfg.replace("meta", algorithm=algorithm).replace("model", warm_after=12)
    engine = Engine(config)
    m = config.meta
    return config, engine, TaskLayout(config.model.window, config.series.horizon,
                                      m.support_windows, m.query_windows, m.window_stride,
                                      config.series.season, young=engine.warm_at)


def update(learner: MetaLearner, start: dict[str, torch.Tensor]) -> torch.Tensor:
    """How far the learner moved θ from ``start``, flattened."""
    return torch.cat([(learner.snapshot()[k] - start[k]).flatten() for k in sorted(start)])


@pytest.mark.parametrize("algorithm", ["fomaml", "maml", "reptile"])
def test_a_meta_update_on_cuda_matches_the_cpu(cfg: Config, algorithm: str) -> None:
    config, engine, layout = with_young_tasks(cfg, algorithm)
    m = config.meta
    tasks = histories(config, 64, seed=1)
    anchors = 0.1 * torch.randn(24, config.model.context_dim,
                                generator=torch.Generator().manual_seed(2))
    learners = {device: MetaLearner(engine.serving()[0], layout, m, config.adaptation,
                                    config.series.quantiles, device=device)
                for device in ("cpu", "cuda")}
    assert all(p.is_cuda for p in learners["cuda"].params.values())
    losses = {device: [learner.step(tasks[24:], tasks[:24], anchors) for _ in range(3)]
              for device, learner in learners.items()}
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-3)
    assert losses["cpu"][-1] < losses["cpu"][0]
    # Both moved θ the same way (Adam amplifies rounding where a gradient is ~0, so
    # the directions of the whole update are compared, not each value).
    moved = {device: update(learner, engine.serving()[0]) for device, learner in learners.items()}
    assert float(torch.cosine_similarity(moved["cuda"], moved["cpu"], dim=0)) > 0.99


@pytest.mark.parametrize("algorithm", ["fomaml", "maml", "reptile"])
def test_recorded_steps_replay_what_plain_steps_do(cfg: Config, algorithm: str) -> None:
    """``meta.cuda_graphs``: the first step of a batch shape runs plainly and records a
    CUDA graph; later steps of that shape replay it on new tasks, with the same
    losses and the same updates as steps launched kernel by kernel."""
    config, engine, layout = with_young_tasks(cfg, algorithm)
    θ, _ = engine.serving()
    learners = [MetaLearner(θ, layout, config.replace("meta", cuda_graphs=on).meta,
                            config.adaptation, config.series.quantiles, device="cuda")
                for on in (False, True)]
    plain, graphed = learners
    assert plain.graphs is None and graphed.graphs == {}
    tasks = histories(config, 256, seed=1)
    anchors = 0.1 * torch.randn(256, config.model.context_dim,
                                generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(3)
    for n in (64, 64, 64, 64, 32, 32):  # two batch shapes
        pick = torch.randint(256, (n,), generator=generator)
        young = pick[: n // 3]
        losses = [learner.step(tasks[pick[n // 3:]], tasks[young], anchors[young])
                  for learner in learners]
        assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    assert graphed.graphs is not None and len(graphed.graphs) == 2
    moved = [update(learner, engine.serving()[0]) for learner in learners]
    assert float(torch.cosine_similarity(moved[0], moved[1], dim=0)) > 0.999


def test_the_engine_serves_a_version_the_outer_loop_learned_on_cuda(cfg: Config) -> None:
    config = cfg.replace("meta", device="cuda")
    engine = Engine(config)
    loop = outer.attach(config, engine, engine.swap)
    assert loop.learner.device.type == "cuda"
    values = related_family(64, layout_of(config).length + 20, seed=3)
    names = [f"e{i}" for i in range(64)]
    for t in range(values.shape[1]):
        engine.process(names, np.full(64, t * STEP), values[:, t])
    result = loop.run_once()
    assert result is not None and result.promoted and result.candidate_loss < float("inf")
    assert engine.version == result.version >= 1
    assert all(p.device.type == "cpu" for p in engine.serving()[0].values())  # served on the CPU
    t = values.shape[1]
    forecasts = engine.process(names, np.full(64, t * STEP), values[:, -1]).forecasts
    assert len(forecasts) == 64 and np.isfinite(forecasts.point).all()


def test_pretrain_runs_on_cuda_and_lowers_held_out_loss(cfg: Config) -> None:
    config = cfg.replace("meta", device="cuda", holdout=0.25)
    values = related_family(32, layout_of(config).length * 3, seed=6)
    ts = np.arange(values.shape[1], dtype=np.int64) * STEP
    series = [datasets.Series(f"s{i}", ts, v) for i, v in enumerate(values)]
    params, stats = meta_train(config, series, steps=40, progress=False)
    assert all(p.device.type == "cpu" for p in params.values())
    assert stats["held_out_loss_after"] < stats["held_out_loss_before"]
