"""The online loop's façade: observations in, forecasts out, no Kafka.

A batch is processed in *rounds* (``streammeta.online.rounds``): round r holds
the r-th observation of every entity that has at least r+1 in the batch, so each
round touches each entity at most once and is done with whole-tensor gathers and
scatters. Per round, in this order:

1. ``rounds.admit`` — timestamp checks (late, duplicate, misaligned) in steps of
   ``series.freq`` (ms, or months for calendar frequencies); gap filling;
2. ``scoring`` — the pending forecasts that the new values resolve, drift, and
   each cheap expert's error (``experts``); ``calibration`` — the served
   forecasts' normalised errors move the entities' quantile offsets;
3. ``guard`` — each expert's error, while another version than the initial θ serves;
4. ``rounds.append`` — the values join the entities' rings and normalisers;
5. ``initialise`` — φ of entities turning warm or drifted, from the task memory;
6. ``inner`` — the inner-loop step on the newest example whose targets have arrived;
7. ``initialise.remember`` — mature entities' φ into the task memory;
8. ``forecast`` — t+1..t+H from every observation; ``experts`` blends what is served,
   ``calibration`` sets the warm rows' quantiles around it.

After the rounds, the batch's expert and calibration errors enter the population's
records.

Nothing outside this class touches its state: the checkpointer, the daemon and
the outer loop go through the methods below. What it needs from ``meta/`` and
``persistence/`` (task memory, task buffer, spill store, initial θ) is handed in
(``streammeta.assemble`` builds it from the configuration).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from streammeta.config import Config
from streammeta.io.codec import Reason
from streammeta.online import experts, model, rounds
from streammeta.online.arena import FREE, Arena
from streammeta.online.calibration import Calibration
from streammeta.online.drift import PageHinkley
from streammeta.online.forecast import Forecaster, warm_at
from streammeta.online.guard import Guard
from streammeta.online.initialise import Initialiser
from streammeta.online.inner import InnerLoop
from streammeta.online.ports import Entry, EvictionStore, TaskMemory, TaskRecorder
from streammeta.online.residency import Residency
from streammeta.online.result import Forecasts, Result, concat, empty_forecasts
from streammeta.online.scoring import Scorer, scored_horizons


def _keep_freed_memory() -> None:
    """Stop glibc from returning every large freed tensor to the kernel.

    Each round allocates tensors of a few MB; by default glibc serves those with
    mmap and unmaps them on free, so the next round page-faults them in again,
    which measured here as about half of the forward pass's time.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from malloc.h


class Engine:
    """Holds θ and the entities' state; ``process`` is the whole online step.

    ``params``/``version``: the θ to serve first (default: seeded from ``model.seed``),
    of any width. ``memory``: the task memory, when ``memory.enabled``; ``spill``: where
    entities go when the arena is full (None: new ones are dead-lettered).
    """

    def __init__(self, config: Config, params: model.Params | None = None, version: int = 0,
                 *, memory: TaskMemory | None = None, spill: EvictionStore | None = None):
        self.automatic_width = config.model.hidden == 0  # θ of any width is as configured
        config = config.resolved()
        s, m, a = config.series, config.model, config.adaptation
        _keep_freed_memory()
        if m.threads:
            torch.set_num_threads(m.threads)
        self.shape = model.ModelShape.of(config)
        if params is None:
            params = model.init_params(self.shape, seed=m.seed, inner_lr=a.inner_lr)
        self._params, self._version = params, version
        self._serving_lock = threading.Lock()  # serving() is read from the outer loop's thread
        self.warm_at = warm_at(m, s.season)
        drift, horizons = config.drift, scored_horizons(s.horizon, s.season)
        self._experts = experts.Weighting(
            config.experts, horizons, s.horizon, s.season, m.window, self.warm_at, a.loss,
            s.transform) if config.experts.enabled else None
        self._calibration = Calibration(
            config.calibration, horizons, s.horizon, s.quantiles, self.warm_at, s.season
        ) if config.calibration.enabled else None
        self._scorer = Scorer(s.horizon, s.season, config.engine.error_smoothing,
                              PageHinkley(drift.min_instances, drift.delta, drift.threshold,
                                          drift.alpha) if drift.enabled else None,
                              self._experts, self._calibration)
        self._arena = Arena(
            ring_len=rounds.ring_length(m.window, s.horizon, s.season),
            context_dim=m.context_dim, horizon=s.horizon, scored_horizons=len(horizons),
            max_entities=config.engine.max_entities, phi0=params["phi0"],
            experts=experts.EXPERTS, season=s.season, quantiles=len(s.quantiles),
            horizons=horizons)
        self._guard = Guard(config.meta.enabled and config.meta.guard, config.meta.guard_rate,
                            config.meta.guard_for, params, version)
        self._inner = InnerLoop(self.shape, self.warm_at, a.inner_steps, a.shrink, a.loss)
        self._adapting = a.enabled
        self._forecaster = Forecaster(self.shape, self.warm_at, horizons, self._experts,
                                      self._calibration)
        self._memory = memory
        self._initialiser = Initialiser(self.shape, self.warm_at, memory=memory, mature_at=min(
            m.window + config.memory.mature_after, self._arena.ring_len))
        self._residency = Residency(self._arena, spill, s.transform)
        self._tasks: TaskRecorder | None = None
        # Its units are process()'s: ms, or months for a calendar frequency.
        self._frequency, self._max_gap_fill = s.frequency, s.max_gap_fill
        self._ew_span = 4 * max(m.window, s.season)  # running normaliser memory (values)

    # -- parameters ---------------------------------------------------------------
    def swap(self, params: model.Params, version: int) -> None:
        """Serve new parameters from the next round on (between batches)."""
        with self._serving_lock:
            self._params, self._version = params, version
        self._arena.phi0 = params["phi0"].detach().clone()

    def serving(self) -> tuple[model.Params, int]:
        """The served θ and its version, read together (safe from any thread)."""
        with self._serving_lock:
            return self._params, self._version

    @property
    def version(self) -> int:
        return self._version

    def attach_tasks(self, recorder: TaskRecorder) -> None:
        """Hand every round's values to ``recorder`` (the outer loop's task buffer)."""
        self._tasks = recorder

    # -- the online step ----------------------------------------------------------
    @torch.no_grad()
    def process(self, entities: list[str], ts: np.ndarray, values: np.ndarray,
                partitions: np.ndarray | None = None) -> Result:
        """Apply a batch of observations (arrival order) and forecast from each.

        ``partitions`` (the input partition of each observation) tags new entities'
        state so that it can move with its partition.
        """
        result = Result(forecasts=empty_forecasts(self.shape))
        n = len(entities)
        if n:
            self._residency.make_room(entities, result)
        slots = (self._arena.slots_for(entities, partitions) if n
                 else np.zeros(0, dtype=np.int64))
        for i in np.nonzero(slots == FREE)[0].tolist():
            result.rejected.append((i, Reason.CAPACITY, "engine.max_entities reached"))
        parts = [self._round(rows, slots[rows], ts[rows], values[rows], result, settled)
                 for rows, settled in rounds.timed(slots, ts)]
        if parts:
            result.forecasts = concat(parts)
        self._scorer.commit()
        return result

    def _round(self, rows: np.ndarray, slots: np.ndarray, ts: np.ndarray, y: np.ndarray,
               result: Result, settled: bool) -> Forecasts:
        if settled:  # the errors so far enter the population's records (rounds.timed)
            self._scorer.commit()
        arena, guard, params, freq = self._arena, self._guard, self._params, self._frequency
        r = rounds.admit(arena, rows, slots, ts, y, freq, self.shape.transform, result)
        if bool((r.gap > 0).any()):
            rounds.fill_gaps(arena, r.slots, r.y, r.gap, self._max_gap_fill, freq.step, result)
        ring = arena.ring.index_select(0, r.slots)  # (B, R) one gather for the whole round
        drifted = self._scorer.score(arena, r.slots, r.y, result, ring)
        guarding = guard.active(self._version)
        if guarding:
            guard.score(arena, r.slots, r.y)
        rounds.append(arena, r.slots, r.ts, r.y, self._ew_span, ring)
        if self._tasks is not None:
            self._tasks.observe(r.slots, r.y, fresh=arena.count[r.slots] == 1)
        history, count = torch.cat([ring, ring], dim=1), arena.count[r.slots]  # as Arena.history
        self._initialiser.start(arena, guard, self._tasks, r.slots, count, history, drifted,
                                result)
        # The served version's weight per row while the guard runs (None: it serves alone).
        weight = guard.weight(arena, r.slots, count) if guarding else None
        if self._adapting:
            self._inner.adapt(params, arena, r.slots, count, history, weight, guard)
        if self._memory is not None:
            self._initialiser.remember(arena, r.slots, count, history, self._version)
        return self._forecaster.forecast(params, guard, arena, r.rows, r.slots, r.ts, count,
                                         history, weight, result)

    # -- state, for checkpoints and partition moves ---------------------------------
    @property
    def arena(self) -> Arena:
        """The entities' state, to inspect (tests, benchmarks); change it through
        the methods of this class."""
        return self._arena

    def __len__(self) -> int:
        """Entities resident."""
        return len(self._arena)

    @property
    def online_error(self) -> dict[str, float]:
        """Smoothed scaled error of the model and of seasonal naive (NaN: none yet)."""
        return dict(self._scorer.online_error)

    def export_partition(self, partition: int) -> dict[str, Any]:
        """A copy of a partition's state (a checkpoint's entry for it)."""
        return self._residency.export(partition)

    def restore_partition(self, partition: int, state: dict[str, Any]) -> int:
        """Load a partition's state from :meth:`export_partition`; → entities."""
        return self._residency.restore(partition, state)

    def drop_partitions(self, partitions: list[int], spilled: bool = True) -> None:
        """Forget the partitions' resident entities and, with ``spilled``, which spill
        files hold their evicted ones (they may be another replica's now)."""
        self._residency.drop(partitions, spilled)

    def checkpointed(self, oldest_kept_s: Callable[[], float | None]) -> None:
        """A checkpoint is on disk, and this replica's oldest kept one is from
        ``oldest_kept_s()`` (Unix s): spill files no kept checkpoint names can go."""
        if self._residency.spill is not None:
            self._residency.spill.collect(oldest_kept_s())

    # -- the task memory ------------------------------------------------------------
    @property
    def memory_entries(self) -> int | None:
        """Entries in the task memory (None: no memory)."""
        return len(self._memory) if self._memory is not None else None

    def export_memory(self) -> dict[str, object] | None:
        return self._memory.export() if self._memory is not None else None

    def restore_memory(self, state: dict[str, object]) -> int | None:
        """Load exported entries (ValueError if they do not fit); → entries held."""
        if self._memory is None:
            return None
        self._memory.restore(state)
        return len(self._memory)

    # -- the experts' record and store, and calibration's record -------------------------
    def export_experts(self) -> dict[str, object] | None:
        return self._scorer.export_records()

    def restore_experts(self, state: dict[str, object]) -> bool:
        """Take records :meth:`export_experts` wrote; False if a part does not fit
        (that part starts again; one written before calibration fits)."""
        return self._scorer.restore_records(state)

    def share_memory(self) -> None:
        """Keep new memory entries for :meth:`take_outbox` (replicas share them)."""
        if self._memory is not None:
            self._memory.share()

    def take_outbox(self) -> list[Entry]:
        """New memory entries since the last call, for the other replicas."""
        return self._memory.take_outbox() if self._memory is not None else []

    def receive_memory(self, entries: list[Entry]) -> None:
        """Entries the other replicas stored."""
        if self._memory is not None:
            self._memory.receive(entries)
