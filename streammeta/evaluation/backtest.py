"""Whether a pretrained θ serves: a backtest on the series that pretraining held out.

``evaluate --pretrain`` meta-trains θ on the training values, holding whole series
out (``meta.holdout``) to report a held-out meta-loss. A lower meta-loss did not
always mean better served forecasts: on ETTh1/ETTh2 variables as daily means the
meta-loss rose (2.544 → 2.932) and the final-origin MASE went 0.691 → 0.844–0.864
(two runs), and on fpp3 aus_retail summed to quarters it fell (1.939 → 1.387) while
the MASE went 1.243 → 1.400–1.406: the model alone is not what serves, the experts'
weighting is.

So both θ forecast the held-out series' training values as a rolling stream (the
engine as it serves, experts included), and the pretrained θ serves only where its
mean MASE there is not higher than the seeded one's. Those series never entered
pretraining, so the comparison does not favour it, and it reads training values
only. Where the final origin is scored, the backtest scores each series' last H
origins: a pretrained θ can help an entity's first forecasts and hurt its later ones
(docs/meta-learning.md), and over every origin of the held-out series it won on
both data sets above (0.982 against 0.984; 1.377 against 1.411) while over their
last H it lost, as at the final origin (0.810 against 0.800; 1.368 against 1.288).
The ett protocol scores every origin of a long stream, and so does its backtest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from streammeta.config import Config
from streammeta.evaluation.protocols import Task, default_warmup, rolling_task
from streammeta.io import datasets
from streammeta.meta.tasks import held_out


def held_series(series: list[datasets.Series], holdout: float) -> list[datasets.Series]:
    """The series whose windows pretraining held out (``meta.pretrain.split_pool``: by
    their number in the data it read)."""
    held = held_out(torch.arange(len(series)), holdout).tolist()
    return [s for s, h in zip(series, held, strict=True) if h]


def backtest_task(series: list[datasets.Series], task: Task) -> Task | None:
    """The rolling stream of ``series`` at the task's horizon and season, scored at
    every origin after the warm-up, or at each series' last H where ``task`` is
    scored at its final origin; None where no series is long enough to score one."""
    H, m = task.horizon, task.season
    usable = [s for s in series if len(s) > H + m + 2]
    if not usable:
        return None
    warmup = default_warmup(usable, m)
    usable = [s for s in usable if len(s) - 1 - H >= warmup - 1]
    if not usable:
        return None
    rolling = rolling_task(usable, H, m, task.step_ms, warmup)
    if task.protocol != "final-origin":
        return rolling
    last = np.array([len(s) - 1 - H for s in usable])
    late = rolling.pos > last[rolling.ent] - H
    return replace(rolling, ent=rolling.ent[late], pos=rolling.pos[late],
                   slices={"all": np.ones(int(late.sum()), dtype=bool)})


def prefer_pretrained(task: Task, seeded: Config, pretrained: Config,
                      trained_on: list[datasets.Series],
                      mase: Callable[[Task, Config], float]) -> tuple[bool, str]:
    """Whether ``pretrained`` (a config whose ``model.init`` is the pretrained file)
    serves rather than ``seeded``, and a note saying why; ``mase(task, config)``: the
    engine's mean MASE on a task (``evaluate.mean_mase``)."""
    held = backtest_task(held_series(trained_on, seeded.meta.holdout), task)
    if held is None:
        return True, "no held-out series long enough to backtest: the pretrained θ serves"
    with_seeded = mase(held, seeded)
    with_pretrained = mase(held, pretrained)
    keep = not with_pretrained > with_seeded  # NaN on either side: keep the pretrained
    serves = "the pretrained θ serves" if keep else "the seeded θ serves"
    where = "their last H origins" if task.protocol == "final-origin" else "every origin"
    return keep, (f"backtest on {len(held.stream)} held-out series' training values "
                  f"(MASE at {where}, {len(held.ent)} forecasts): pretrained "
                  f"{with_pretrained:.4f}, seeded {with_seeded:.4f}: {serves}")

