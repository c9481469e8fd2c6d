"""The outer loop: meta-learning beside ingestion, in its own thread.

Each trigger (every ``meta.every_observations`` observations or ``meta.every_s``
seconds) runs some meta-steps (``streammeta.meta.learner``) on tasks from the task
buffer that the engine feeds (``streammeta.meta.plans`` picks them) and yields a
numbered candidate version. It is promoted (served) only if its meta-loss on
held-out tasks is not worse than the serving version's — on held-out entities'
newest windows, later in time than any training task (training stretches end a
horizon before the newest value); with too few entities to hold any out, on every
entity's newest task, whose query targets no training stretch reaches. A rejected
candidate is not discarded: the next trigger continues training it, and only a
newly served version (promoted, or swapped in) restarts the learner from it.

The loop's thread is paced to ``meta.cpu_share`` of wall time and runs torch with
one CPU thread, so that ingestion keeps its speed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from streammeta.config import Config, MetaConfig, resolve_device
from streammeta.meta.layout import TaskLayout
from streammeta.meta.learner import MetaLearner
from streammeta.meta.plans import Plan, plan
from streammeta.meta.tasks import TaskBuffer
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.online.forecast import warm_at

log = logging.getLogger(__name__)

# meta.every_observations = 0: the loop runs after PER_ENTITY new values per entity,
# every LEAST observations at the most often and MOST at the least (the fixed default
# before; a daemon's meta.every_s triggers it as well).
PER_ENTITY, LEAST, MOST = 50, 350, 200_000


@dataclass
class OuterResult:
    version: int
    promoted: bool
    meta_loss: float
    candidate_loss: float
    serving_loss: float
    seconds: float


class OuterLoop:
    """Runs meta-learning beside ingestion and hands promoted versions to ``publish``."""

    def __init__(self, buffer: TaskBuffer, learner: MetaLearner, config: MetaConfig,
                 serving: Callable[[], tuple[model.Params, int]],
                 publish: Callable[[model.Params, int], None],
                 on_result: Callable[[OuterResult], None] | None = None,
                 seed: int = 0, on_step: Callable[[], None] | None = None) -> None:
        self.buffer = buffer
        self.learner = learner
        self.config = config
        self.serving = serving
        self.publish = publish
        self.on_result = on_result
        # Called after each meta-step and after judging: a caller that runs the loop in
        # its own thread (the trainer) keeps its heartbeat and group membership there.
        self.on_step = on_step if on_step is not None else (lambda: None)
        self.generator = torch.Generator().manual_seed(seed)
        self.version = serving()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observed_at_last = 0
        self._last_run = time.monotonic()
        self.results: list[OuterResult] = []
        # Training stops this many values short of the newest: promotion is decided on
        # held-out entities' newest windows, later in time than anything trained on.
        self._recent = learner.layout.horizon
        # The version the learner's parameters were trained from (None: not loaded yet).
        self._descends_from: int | None = None

    def _tasks(self) -> Plan | None:
        """What the next trigger trains and judges on (:func:`plans.plan`)."""
        return plan(self.buffer, self.learner.layout, self.config.tasks_per_step,
                    self.config.holdout, self._recent, self.learner.young_count)

    def ready(self) -> bool:
        return self._tasks() is not None

    def run_once(self) -> OuterResult | None:
        """One trigger: meta-steps from the serving version (or on from the candidate
        that was last rejected against it), then promote or reject."""
        tasks = self._tasks()
        if tasks is None:
            return None
        layout, buffer = self.learner.layout, self.buffer
        train, held, young_train, young_held, skip, per_step = tasks

        def young_of(n: int) -> int:  # all young while no whole-window task exists
            if not len(young_train):
                return 0
            return self.learner.young_count(n) if len(train) else n

        started = time.perf_counter()
        params, serving_version = self.serving()
        if serving_version != self._descends_from:
            self.learner.load(params)
        losses = []
        for _ in range(self.config.steps):
            if self._stop.is_set():
                break
            step_started = time.perf_counter()
            n_young = young_of(per_step)
            pick = torch.randint(max(1, len(train)), (per_step - n_young,),
                                 generator=self.generator)
            histories = buffer.histories(train[pick], layout.length, self.generator,
                                         skip_newest=skip)
            pick = young_train[torch.randint(max(1, len(young_train)), (n_young,),
                                             generator=self.generator)]
            young = buffer.histories(pick, layout.young_length, oldest=True)
            losses.append(self.learner.step(histories, young, buffer.anchors(pick)))
            self.on_step()
            self._pace(time.perf_counter() - step_started)
        self.version = max(self.version, serving_version) + 1
        candidate = self.learner.snapshot()
        n = self.config.tasks_per_step * 4
        n_young = young_of(n)
        held_histories = buffer.histories(held[: n - n_young], layout.length)
        held_young = buffer.histories(young_held[:n_young], layout.young_length, oldest=True)
        held_anchors = buffer.anchors(young_held[:n_young])
        judged = time.perf_counter()
        candidate_loss = self.learner.evaluate(candidate, held_histories, held_young,
                                               held_anchors)
        serving_loss = self.learner.evaluate(params, held_histories, held_young, held_anchors)
        self.on_step()
        self._pace(time.perf_counter() - judged)
        promoted = candidate_loss <= serving_loss * (1.0 + self.config.tolerance)
        if promoted:
            self.publish(candidate, self.version)
        # A rejected candidate is not thrown away: the next trigger goes on training it
        # (it is judged against the serving version again), unless another version
        # was swapped in meanwhile.
        self._descends_from = self.version if promoted else serving_version
        result = OuterResult(self.version, promoted, sum(losses) / max(1, len(losses)),
                             candidate_loss, serving_loss, time.perf_counter() - started)
        log.info("outer loop: version %d %s (held-out loss %.4f vs serving %.4f)",
                 result.version, "promoted" if promoted else "rejected", candidate_loss,
                 serving_loss)
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _pace(self, seconds: float) -> None:
        """Sleep so that the loop is busy at most ``cpu_share`` of wall time. On CUDA too:
        the host side of a step (launching the small kernels of many tasks) holds the
        interpreter lock that ingestion needs."""
        share = self.config.cpu_share
        if share < 1.0:
            self._stop.wait(seconds * (1.0 - share) / share)

    def period(self) -> int:
        return period(self.config.every_observations, self.buffer.entities())

    def due(self) -> bool:
        return self.buffer.observed - self._observed_at_last >= self.period()

    def run_if_due(self) -> OuterResult | None:
        """Run now if the count trigger is due: the schedule of a replay (``evaluate``,
        the inline ``Forecaster``), which has no clock."""
        if not self.due():
            return None
        self._observed_at_last = self.buffer.observed
        return self.run_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="streammeta-outer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        # One CPU thread for this thread's own torch work. A second OpenMP team in the
        # process (this thread's, idle between runs) makes every parallel region of the
        # ingestion thread sleep and wake on futexes instead of spinning: measured 2.4x
        # slower engine batches for as long as the team exists. On CUDA the host side
        # needs no team; on the CPU the loop is paced to a share of one core anyway.
        torch.set_num_threads(1)
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(0.5)

    def tick(self) -> OuterResult | None:
        """Run once if a trigger is due (``meta.every_observations`` or ``meta.every_s``)."""
        if not (self.due() or time.monotonic() - self._last_run >= self.config.every_s):
            return None
        self._observed_at_last = self.buffer.observed
        self._last_run = time.monotonic()
        try:
            return self.run_once()
        except Exception:  # a failed meta-step must not take down ingestion
            log.exception("outer loop step failed")
            return None


def period(every_observations: int, entities: int) -> int:
    """Observations between count-triggered runs: ``meta.every_observations``, or where
    it is 0 (automatic) ``PER_ENTITY`` per entity the task buffer holds, within
    [``LEAST``, ``MOST``]. A fixed count meant nothing across populations: at 200,000 a
    stream of 7 sensors (ETTh2 replayed, 100,000 values) or 152 monthly series never ran
    the loop, and θ stayed the initial one."""
    return every_observations or min(MOST, max(LEAST, PER_ENTITY * entities))


def attach(config: Config, engine: Engine, publish: Callable[[model.Params, int], None],
           on_result: Callable[[OuterResult], None] | None = None) -> OuterLoop:
    """An outer loop fed by ``engine`` (a task buffer is attached to it) that meta-learns
    from the serving parameters and hands promoted versions to ``publish``."""
    config = config.resolved()
    buffer = task_buffer(config)
    engine.attach_tasks(buffer)
    return OuterLoop(buffer, learner_for(config, engine.serving()[0]), config.meta,
                     engine.serving, publish, on_result, seed=config.model.seed)


def layout_of(config: Config) -> TaskLayout:
    """The task layout of a resolved configuration."""
    m = config.meta
    return TaskLayout(window=config.model.window, horizon=config.series.horizon,
                      support=m.support_windows, query=m.query_windows,
                      stride=m.window_stride, season=config.series.season,
                      young=warm_at(config.model, config.series.season))


def task_buffer(config: Config) -> TaskBuffer:
    """The task buffer of a resolved configuration (an engine's or the trainer's)."""
    layout = layout_of(config)
    # Longer than one task: tasks start at random points of the last few days, and a
    # small population's training stretches end before its newest query targets.
    spare = max(4 * config.series.season, layout.query_span + config.series.season)
    return TaskBuffer(config.meta.buffer_entities, layout.length + spare,
                      config.engine.max_entities, config.model.context_dim)


def learner_for(config: Config, params: model.Params) -> MetaLearner:
    m = config.meta
    if config.model.init:  # a pretrained θ is fine-tuned at the step it was trained with:
        # at meta_lr, twice that, 12 online runs took M4 hourly's final-origin sMAPE from
        # 8.872 to 8.901 (8.873 at pretrain_lr; docs/meta-learning.md)
        m = dataclasses.replace(m, meta_lr=m.pretrain_lr)
    return MetaLearner(params, layout_of(config), m, config.adaptation,
                       config.series.quantiles, device=resolve_device(m.device))
