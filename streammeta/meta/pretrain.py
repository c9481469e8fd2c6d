"""``streammeta pretrain``: meta-train θ offline on a source data set (meta-transfer).

θ is meta-trained at ``OFFLINE_HIDDEN`` (256) wide where ``model.hidden = 0`` and no
``model.init`` is set (``Config.resolved(offline=True)``), so the file is that wide and
a daemon started from it serves that width.

Tasks are windows of the data set's series, split into support and query windows
exactly as the daemon's outer loop does; the result is a parameter file that
``run``, ``demo`` and ``evaluate`` load with ``--init``, and the online outer loop
continues from.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from streammeta.config import Config, resolve_device
from streammeta.errors import DataError
from streammeta.io import datasets
from streammeta.io.frequency import Frequency
from streammeta.io.frequency import parse as parse_frequency
from streammeta.meta.layout import TaskLayout
from streammeta.meta.learner import MetaLearner
from streammeta.meta.tasks import held_out
from streammeta.online import model
from streammeta.online.forecast import warm_at
from streammeta.persistence import params as params_io

# At most this many histories in the pool (~150 MB at M4 daily's 85 values each): at
# season 1 every step starts one, and M4 daily's 10 million values took 7 GB of memory.
# Every development set's pool is smaller (M4 hourly ~15,000).
POOL_LIMIT = 500_000


def task_pool(series: list[datasets.Series], length: int, stride: int,
              limit: int = POOL_LIMIT) -> tuple[Tensor, Tensor]:
    """Every history of ``length`` values (every ``stride`` steps, a multiple of it
    where there would be more than ``limit``) of every series: → (windows (N, T),
    index of the series each came from (N,)); none if no series is that long."""
    count = sum((len(s) - length) // stride + 1 for s in series if len(s) >= length)
    stride *= -(-count // limit) if count > limit else 1
    pools, owners = [], []
    for k, s in enumerate(series):
        if len(s) >= length:
            values = torch.as_tensor(s.values, dtype=torch.float32)
            windows = values.unfold(0, length, stride)  # (n, T)
            pools.append(windows)
            owners.append(torch.full((len(windows),), k))
    if not pools:
        return torch.zeros(0, length), torch.zeros(0, dtype=torch.long)
    return torch.cat(pools), torch.cat(owners)


def split_pool(series: list[datasets.Series], layout: TaskLayout, holdout: float,
               transform: str) -> tuple[Tensor, Tensor, bool]:
    """Training and validation histories (whole series held out), in model units, and
    whether they are young tasks only. Whole tasks where some series are long enough
    to train on and to hold out; else young tasks — an entity's first forecasts, which
    short series have (a yearly series of 20 values has no whole task)."""
    split = _split(series, layout, holdout)
    if split is not None:
        length, young = split
        pool, owner = task_pool(series, length, stride=layout.season)
        held = held_out(owner, holdout)
        pool = model.to_model_units(pool, transform)
        return pool[~held], pool[held][:2048], young
    longest = max((len(s) for s in series), default=0)
    raise DataError(f"too few series long enough to train on and hold some out: tasks need "
                    f"{layout.length} values (young tasks {layout.young_length}), the "
                    f"longest series has {longest}")


def _split(series: list[datasets.Series], layout: TaskLayout,
           holdout: float) -> tuple[int, bool] | None:
    """The task length (whole tasks, else young ones) whose series fall on both sides
    of the hold-out, and whether young; None where there is none. From the series'
    lengths alone: ``too_short`` asks before any pool is built."""
    for length, young in ((layout.length, False), (layout.young_length, True)):
        if young and not layout.young:
            break
        held = held_out(torch.tensor([k for k, s in enumerate(series) if len(s) >= length],
                                     dtype=torch.long), holdout)
        if bool(held.any()) and not bool(held.all()):
            return length, young
    return None


# Offline meta-training paid where every series holds a whole task (M4 hourly, ETT);
# where few do, the θ it made served worse than the seeded one on every M1 subset
# (final origin, MASE yearly 3.766 / quarterly 2.036 / monthly 1.102 against 3.481 /
# 1.633 / 1.086; docs/meta-learning.md): a quarter of the monthly series hold one,
# no yearly or quarterly series does (young tasks alone).
WHOLE_SHARE = 0.5


def too_short(config: Config, series: list[datasets.Series]) -> str:
    """Why offline meta-training is not worth it on ``series`` ('' where it is): fewer
    than ``WHOLE_SHARE`` of them hold a whole task, or none can be held out."""
    layout = offline_layout(config.resolved(offline=True))
    share = sum(len(s) >= layout.length for s in series) / max(len(series), 1)
    if share < WHOLE_SHARE:
        return (f"{share:.0%} of the series hold the {layout.length} values of a whole task "
                f"(fewer than {WHOLE_SHARE:.0%}); on such short series a pretrained θ served "
                "worse than the seeded one (docs/meta-learning.md)")
    if _split(series, layout, config.meta.holdout) is None:  # one series, say
        return (f"too few series ({len(series)}) to train on some and hold others out "
                f"(meta.holdout = {config.meta.holdout}): a pretrained θ could not be checked "
                "on series it never saw")
    return ""


def worse(stats: dict[str, float]) -> str:
    """Why a pretrained θ should not serve from its held-out meta-loss ('' where it
    fell): a rise is overfitting to the training series (docs/meta-learning.md)."""
    before, after = stats["held_out_loss_before"], stats["held_out_loss_after"]
    return "" if not after > before else (
        f"its held-out meta-loss rose ({before:.4f} -> {after:.4f})")


def pretrain(config: Config, data: str, fmt: str, out: str, steps: int,
             progress: bool = True) -> dict[str, float]:
    """Meta-train on the series of ``data`` and write the parameter file ``out``."""
    config = config.resolved(offline=True)
    series = datasets.load(data, fmt, config.series.frequency)
    params, stats = meta_train(config, series, steps, progress, name=data)
    params_io.save(Path(out), params, version=1, shape=model.ModelShape.of(config),
                   note=f"pretrained on {Path(data).name} ({fmt}), {steps} steps",
                   frequency=learned_frequency(config, series))
    return stats


def learned_frequency(config: Config, series: list[datasets.Series]) -> Frequency | None:
    """The frequency of the data θ is learned on, which its file records: series.freq,
    else the data's own step (a long or ETT file's; an M4 file's values, which carry
    no times, are placed on series.step_ms's clock, as datasets.load does). None where
    it cannot be told: steps of 28 days or more may be calendar months, quarters, years."""
    if config.series.freq:
        return config.series.frequency
    gaps = [np.diff(s.ts) for s in series if len(s) > 1]
    if not gaps:
        return config.series.frequency
    step = int(np.median(np.concatenate(gaps)))
    if step >= 28 * 86_400_000:
        return None
    for alias, ms in (("W", 7 * 86_400_000), ("D", 86_400_000), ("h", 3_600_000),
                      ("min", 60_000), ("s", 1000)):  # named as series.freq would be
        if step % ms == 0:
            return parse_frequency(f"{step // ms if step > ms else ''}{alias}")
    return parse_frequency("", step)


def offline_layout(config: Config) -> TaskLayout:
    """The tasks offline meta-training draws: the outer loop's, with young tasks."""
    m = config.meta
    return TaskLayout(config.model.window, config.series.horizon, m.support_windows,
                      m.query_windows, m.window_stride, config.series.season,
                      young=warm_at(config.model, config.series.season))


def meta_train(config: Config, series: list[datasets.Series], steps: int,
               progress: bool = True, name: str = "the data") -> tuple[model.Params,
                                                                      dict[str, float]]:
    """θ meta-trained for ``steps`` on tasks from ``series``, and the held-out meta-loss
    before and after (on whole series held out by ``meta.holdout``)."""
    config = config.resolved(offline=True)
    if config.model.threads:
        torch.set_num_threads(config.model.threads)
    initial, _ = params_io.initial(config)  # the θ the daemon would start from
    m = config.meta
    layout = offline_layout(config)
    try:
        train, valid, young_only = split_pool(series, layout, m.holdout, config.series.transform)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    learner = MetaLearner(initial, layout, replace(m, meta_lr=m.pretrain_lr),
                          config.adaptation, config.series.quantiles,
                          device=resolve_device(m.device))
    generator = torch.Generator().manual_seed(config.model.seed)
    # Young tasks take each pool window's first value as an entity's birth.
    n_young = m.tasks_per_step if young_only else learner.young_count(m.tasks_per_step)
    valid_young = valid if young_only else valid[: learner.young_count(len(valid))]
    valid = valid[:0] if young_only else valid
    before = learner.evaluate(initial, valid, valid_young)
    bar = tqdm(range(steps), desc="meta-training", unit="step", disable=not progress)
    loss = before
    for step in bar:
        pick = torch.randint(len(train), (m.tasks_per_step,), generator=generator)
        loss = learner.step(train[pick[n_young:]], train[pick[:n_young]])
        if step % 20 == 0:
            bar.set_postfix(meta_loss=f"{loss:.4f}")
    params = learner.snapshot()
    after = learner.evaluate(params, valid, valid_young)
    return params, {"tasks": float(len(train) + len(valid)), "young_only": float(young_only),
                    "held_out_loss_before": before,
                    "held_out_loss_after": after, "last_meta_loss": loss}
