"""The outer loop: meta-learning θ, φ₀ and the inner step sizes from replayed tasks.

A task is one entity's recent history (``streammeta.meta.tasks``) split in time into
support windows (earlier) and query windows (later, their targets never seen by
the adaptation). Per task, φ starts at φ₀ and takes the daemon's inner step(s) on
the support windows — the same Meta-SGD rule as ``model.adapt`` — then the query
loss (point + pinball) of the adapted model is the meta-loss. Everything is
batched over tasks with ``torch.func`` (``vmap`` of ``grad``), no Python loop per
task. Algorithms:

* ``fomaml`` — first order: the support gradient is a constant, so θ, φ₀ and α
  get exact first-order gradients without second derivatives;
* ``maml`` — second order: differentiates through the support gradient;
* ``reptile`` — φ₀ moves towards the mean adapted φ; θ and α follow the
  first-order query gradient (θ itself is shared, not adapted per task).

A share of the tasks (``meta.young_share``) are *young*: they replay what the
engine does for a new entity in the H steps after it turns warm. The stretch's
first value is taken as the entity's first (new entities' rows are preferred:
their oldest value is their birth), windows are completed with its first season
exactly as ``state.window`` completes them, and the query is every forecast of
those steps, made with the context the engine has then: φ₀ (plus the memory's
initialisation, when the entity got one) at the first, then one online step per new
value on the first forecast's partly arrived targets, shrunk back towards that start
after each (``adaptation.shrink``). Without them θ only learns from
entities with a whole window of history; with young tasks that forecast from φ₀
alone, the meta-learned step sizes went to zero and the engine's cold-start
adaptation was lost (docs/meta-learning.md).

Each trigger runs some meta-steps and yields a numbered candidate version: the
learner's θ averaged over its recent meta-steps (an exponential moving average,
``meta.average``), which is less noisy than the last step's. It is
promoted (served) only if its meta-loss on held-out tasks is not worse than the
serving version's — on held-out entities' newest windows, later in time than any
training task (training stretches end a horizon before the newest value); with too
few entities to hold any out, on every entity's newest task, whose query targets no
training stretch reaches. A
rejected candidate is not discarded: the next trigger continues training it, and
only a newly served version (promoted, or swapped in) restarts the learner from it.

The loop's thread is paced to ``meta.cpu_share`` of wall time and runs torch with one
CPU thread, so that ingestion keeps its speed. On CUDA a meta-step is thousands of
tiny kernels; with ``meta.cuda_graphs`` each batch shape's step is recorded once as
a CUDA graph and replayed (docs/meta-learning.md, "Speed and the GPU").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, vmap

from streammeta.config import AdaptationConfig, Config, MetaConfig, resolve_device
from streammeta.meta.tasks import TaskBuffer, held_out
from streammeta.online import model
from streammeta.online.engine import Engine

log = logging.getLogger(__name__)
MAX_GRAPHS = 8  # recorded batch shapes per learner; each keeps its own GPU memory


@dataclass(frozen=True)
class TaskLayout:
    """Where support and query windows sit in a history of ``length`` values."""

    window: int  # L
    horizon: int  # H
    support: int  # S windows
    query: int  # Q windows
    stride: int
    season: int = 1  # m, for the task's error scale (see normalise_task)
    young: int = 0  # values an entity has at its first forecast (0: no young tasks)

    @property
    def young_length(self) -> int:
        """Values from an entity's birth that a young task needs."""
        return self.young + self.young_steps + self.horizon

    @property
    def length(self) -> int:
        S, Q, d, L, H = self.support, self.query, self.stride, self.window, self.horizon
        # Query inputs may overlap support targets, query targets may not: the first
        # query window starts H after the last support window.
        return (S - 1) * d + H + (Q - 1) * d + L + H

    @property
    def query_span(self) -> int:
        """The newest values of a task that are query targets."""
        return (self.query - 1) * self.stride + self.horizon

    @property
    def young_steps(self) -> int:
        """Online steps a young task follows after the entity turns warm: until all the
        targets of its first forecast have arrived."""
        return self.horizon - 1

    def split(self, history: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(n, T) histories → support x (n, S, L), y (n, S, H), query x (n, Q, L), y."""
        L, H, d, S = self.window, self.horizon, self.stride, self.support
        first_query = (S - 1) * d + H
        starts = torch.tensor([j * d for j in range(S)]
                              + [first_query + k * d for k in range(self.query)])
        examples = history[:, starts[:, None] + torch.arange(L + H)[None, :]]  # (n, S+Q, L+H)
        return examples[:, :S, :L], examples[:, :S, L:], examples[:, S:, :L], examples[:, S:, L:]

    def young_split(self, history: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(n, T ≥ young_length) histories from the entity's birth → the forecasts the
        engine makes at each step k = 0..K (K = ``young_steps``) after the entity turns
        warm, x (n, K+1, L) and y (n, K+1, H); and which targets of the first have
        arrived at each step k = 1..K, (K, H). Until then the engine adapts on that
        first forecast's window: its newest example with an arrived target."""
        L, H, K = self.window, self.horizon, self.young_steps
        # Forecast k is made having seen young + k values; inputs before the birth read
        # the same phase of the first season, as state.window completes them.
        index = (self.young + torch.arange(K + 1))[:, None] - L + torch.arange(L + H)
        query = history[:, torch.where(index < 0, index % self.season, index)]
        mask = (torch.arange(H)[None, :] < torch.arange(1, K + 1)[:, None]).to(history)
        return query[..., :L], query[..., L:], mask


def normalise_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor,
                   season: int = 1) -> tuple[Tensor, ...]:
    """Each window standardised by its own inputs, as the engine does, and the query
    windows' weights (:func:`mase_weight`, the task's scale from its first support
    window's inputs)."""
    first = xs[:, 0]
    xs, ys, _ = standardise(xs, ys)
    xq, yq, scale = standardise(xq, yq)
    return xs, ys, xq, yq, mase_weight(scale, first, season)


def mase_weight(scale: Tensor, known: Tensor, season: int) -> Tensor:
    """A weight per query window (n, w) that turns its loss from window units (its
    standard deviation ``scale``) into units of the task's mean absolute seasonal
    difference, taken from the values ``known`` (n, K), as MASE scores it. Without
    it, the loss of a flat window is blown up, and meta-learning favours those
    windows over the ones MASE counts."""
    lag = min(season, known.shape[1] - 1)
    task_scale = (known[:, lag:] - known[:, :-lag]).abs().mean(dim=1, keepdim=True)  # (n, 1)
    floor = model.scale_floor(known.abs().mean(dim=1, keepdim=True))
    return (scale / torch.maximum(task_scale, floor)).clamp(max=10.0)


def standardise(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Windows x (n, w, L) and their targets y (n, w, H), each standardised by its own
    inputs as the engine does → (x, y, scale (n, w))."""
    n, w, L = x.shape
    xn, mean, scale = model.normalise(x.reshape(n * w, L))
    return (xn.reshape(n, w, L), ((y.reshape(n * w, -1) - mean) / scale).reshape(y.shape),
            scale.reshape(n, w))


@dataclass(frozen=True)
class TaskBatch:
    """Normalised windows of a batch of tasks (see :meth:`MetaLearner.batch`)."""

    mature: tuple[Tensor, ...]  # support x, y; query x, y; query weights — (n, ...)
    young: tuple[Tensor, ...]  # query x, y, weights, start of φ less φ₀ — (n', ...);
    #                             arrived targets (K, H)


class MetaLearner:
    """Meta-updates of a parameter dict from batches of task histories."""

    def __init__(self, params: model.Params, layout: TaskLayout, config: MetaConfig,
                 adaptation: AdaptationConfig, quantiles: tuple[float, ...],
                 device: str = "cpu") -> None:
        self.layout = layout
        self.config = config
        self.point_loss = adaptation.loss
        self.inner_steps = adaptation.inner_steps
        self.shrink = adaptation.shrink
        self.device = torch.device(device)
        self.levels = torch.tensor(quantiles, device=self.device)
        self.z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(quantiles)).to(
            self.device)
        self.params = {k: v.detach().clone().to(self.device) for k, v in params.items()}
        # Where θ started, for ``meta.pull``.
        self.origin = {k: v.clone() for k, v in self.params.items()} if config.pull else {}
        # The moving average of θ that candidates are taken from, for ``meta.average``.
        self.average = {k: v.clone() for k, v in self.params.items()} if config.average else {}
        cuda = self.device.type == "cuda"
        self.optimiser = torch.optim.Adam(list(self.params.values()), lr=config.meta_lr,
                                          capturable=cuda)
        # Per batch shape: the recorded step, its input tensors and its loss.
        self.graphs: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, list[Tensor],
                                                 Tensor]] | None = (
            {} if cuda and config.cuda_graphs else None)

    # -- the functional pieces, per task ------------------------------------------------
    def _support_loss(self, phi: Tensor, params: model.Params, x: Tensor, y: Tensor,
                      mask: Tensor) -> Tensor:
        point, _ = model.features(params, x[None, :], phi[None, :])  # (1, H)
        return model.point_loss_per_row(point, y[None, :], mask[None, :], self.point_loss).sum()

    def _inner_step(self, params: model.Params, phi: Tensor, x: Tensor, y: Tensor,
                    mask: Tensor) -> Tensor:
        """The daemon's ``inner_steps`` Meta-SGD steps on one example: φ (C,) → φ (C,)."""
        for _ in range(self.inner_steps):
            g = grad(self._support_loss)(phi, params, x, y, mask)
            if self.config.algorithm != "maml":
                g = g.detach()  # first order: the support gradient is a constant
            phi = model.meta_sgd_step(params, phi, g)
        return phi

    def _adapt(self, params: model.Params, phi: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """A mature task's inner loop: the daemon's step on each support window in time
        order (each window's targets "arrive" after the previous one)."""
        for j in range(x.shape[0]):
            phi = self._inner_step(params, phi, x[j], y[j], torch.ones_like(y[j]))
        return phi

    def _query_loss(self, params: model.Params, phi: Tensor, xq: Tensor, yq: Tensor,
                    wq: Tensor) -> Tensor:
        """Weighted query loss (point + pinball) of one task; φ (C,) or one per window."""
        out = model.forward(params, xq, phi.expand(xq.shape[0], -1), self.z)  # (Q, 1+Q', H)
        loss = model.loss_per_row(out, yq, torch.ones_like(yq), self.levels, self.point_loss)
        return (loss * wq).mean()

    def _task_loss(self, params: model.Params, xs: Tensor, ys: Tensor, xq: Tensor,
                   yq: Tensor, wq: Tensor) -> tuple[Tensor, Tensor]:
        """A mature task adapts φ₀ on its support windows, then forecasts its query."""
        adapted = self._adapt(params, params["phi0"], xs, ys)
        return self._query_loss(params, adapted, xq, yq, wq), adapted

    def _young_contexts(self, params: model.Params, x: Tensor, y: Tensor, anchor: Tensor,
                        mask: Tensor) -> Tensor:
        """φ as the engine has it at each of a new entity's first K+1 forecasts (K+1, C):
        φ₀ + ``anchor`` (the memory's initialisation; 0 without) at the first, then one
        online step per new value on the first forecast's window x (L,), y (H,) with the
        targets arrived by then (``mask`` (K, H)), each followed by the daemon's shrink
        back towards that start."""
        start = params["phi0"] + anchor
        phi, phis = start, [start]
        for k in range(mask.shape[0]):
            phi = self._inner_step(params, phi, x, y, mask[k])
            phi = model.shrink(phi, start, self.shrink)
            phis.append(phi)
        return torch.stack(phis)

    def _young_loss(self, params: model.Params, xq: Tensor, yq: Tensor, wq: Tensor,
                    anchor: Tensor, mask: Tensor) -> Tensor:
        """A young task: the loss of each of the entity's first forecasts after it turns
        warm, made with the context the engine has then."""
        phis = self._young_contexts(params, xq[0], yq[0], anchor, mask)
        return self._query_loss(params, phis, xq, yq, wq)

    def _meta_loss(self, params: model.Params, batch: TaskBatch) -> tuple[Tensor, Tensor]:
        """→ the mean loss over all tasks, and the mature tasks' adapted φ (n, C)."""
        losses, phis = [], params["phi0"].expand(0, -1)
        if len(batch.mature[0]):
            loss, phis = vmap(self._task_loss, in_dims=(None, 0, 0, 0, 0, 0))(params,
                                                                              *batch.mature)
            losses.append(loss)
        if len(batch.young[0]):
            losses.append(vmap(self._young_loss, in_dims=(None, 0, 0, 0, 0, None))(
                params, *batch.young))
        return torch.cat(losses).mean(), phis

    # -- steps ---------------------------------------------------------------------------
    def young_count(self, n: int) -> int:
        """How many of ``n`` tasks are young (``meta.young_share``)."""
        return round(n * self.config.young_share) if self.layout.young else 0

    def batch(self, histories: Tensor, young: Tensor | None = None,
              anchors: Tensor | None = None) -> TaskBatch:
        """Task histories (n, T ≥ length) and young ones (n', T' ≥ young_length, from the
        entity's birth, with where their φ started less φ₀, ``anchors`` (n', C); default
        0) → their normalised windows and query weights."""
        layout = self.layout
        none: tuple[Tensor, ...] = (torch.zeros(0, device=self.device),)  # no tasks
        mature = none
        if len(histories):
            mature = normalise_task(*layout.split(histories.to(self.device)), layout.season)
        if young is None or not len(young):
            return TaskBatch(mature, none)
        raw, yq, mask = layout.young_split(young.to(self.device))
        xq, yq, scale = standardise(raw, yq)
        # A young entity's scale comes from the values it has seen, not the completion.
        wq = mase_weight(scale, raw[:, 0, -layout.young:], layout.season)
        start = (torch.zeros(len(young), self.params["phi0"].shape[0]) if anchors is None
                 else anchors).to(self.device)
        return TaskBatch(mature, (xq, yq, wq, start, mask))

    def step(self, histories: Tensor, young: Tensor | None = None,
             anchors: Tensor | None = None) -> float:
        """One meta-update on tasks (see :meth:`batch`); returns the meta-loss before it."""
        batch = self.batch(histories, young, anchors)
        if self.graphs is None:
            return float(self._update(batch))
        inputs = [*batch.mature, *batch.young]
        key = (len(batch.mature), *((t.shape, t.dtype) for t in inputs))
        if key not in self.graphs:
            if len(self.graphs) >= MAX_GRAPHS:  # shapes of a still-filling buffer
                return float(self._update(batch))
            return self._record(key, batch)
        graph, static, loss = self.graphs[key]
        for target, value in zip(static, inputs, strict=True):
            target.copy_(value)
        graph.replay()
        return float(loss)

    def _update(self, batch: TaskBatch) -> Tensor:
        """The meta-update itself, without a host-device synchronisation; → the loss."""
        grads, (loss, phis) = grad_and_value(self._meta_loss, has_aux=True)(self.params, batch)
        if self.config.algorithm == "reptile" and len(phis):
            # φ₀ moves towards the mature tasks' adapted contexts (the Reptile rule).
            grads["phi0"] = self.params["phi0"] - phis.mean(dim=0).detach()
        for name, tensor in self.params.items():
            tensor.grad = grads[name]
        self.optimiser.step()
        self.optimiser.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, origin in self.origin.items():  # meta.pull
                self.params[name].sub_(self.config.pull * (self.params[name] - origin))
            self.params["alpha"].clamp_(min=0.0)
            for name, mean in self.average.items():
                mean.lerp_(self.params[name], 1.0 - self.config.average)
        return loss.detach()

    def _record(self, key: tuple[Any, ...], batch: TaskBatch) -> float:
        """The first step of a batch shape on CUDA: a plain step on a side stream (which
        also creates Adam's state), then the same step recorded as a CUDA graph, not run.
        A recording that fails leaves the learner on plain steps."""
        assert self.graphs is not None
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            loss = float(self._update(batch))
        torch.cuda.current_stream(self.device).wait_stream(side)
        n = len(batch.mature)
        static = [t.clone() for t in (*batch.mature, *batch.young)]
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                recorded = self._update(TaskBatch(tuple(static[:n]), tuple(static[n:])))
        except RuntimeError:
            log.exception("outer loop: recording a CUDA graph failed; plain steps from now")
            self.graphs = None
            return loss
        self.graphs[key] = (graph, static, recorded)
        return loss

    def evaluate(self, params: model.Params, histories: Tensor,
                 young: Tensor | None = None, anchors: Tensor | None = None) -> float:
        """Meta-loss of ``params`` on tasks (n, T) without updating anything."""
        moved = {k: v.detach().to(self.device) for k, v in params.items()}
        loss, _ = self._meta_loss(moved, self.batch(histories, young, anchors))
        return float(loss)

    def snapshot(self) -> model.Params:
        """The candidate: θ, or its moving average (``meta.average``)."""
        return {k: v.detach().clone().cpu() for k, v in (self.average or self.params).items()}

    def load(self, params: model.Params) -> None:
        with torch.no_grad():
            for name, tensor in (*self.params.items(), *self.average.items()):
                tensor.copy_(params[name].to(self.device))


class Plan(NamedTuple):
    """What one trigger of the outer loop trains and judges on: task buffer rows."""

    train: Tensor  # whole-window tasks are drawn from these rows
    held: Tensor  # rows whose newest whole-window task judges the candidate
    young_train: Tensor
    young_held: Tensor
    skip: int  # newest values of a training row that its stretches leave out
    per_step: int  # tasks per meta-step


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
                 seed: int = 0) -> None:
        self.buffer = buffer
        self.learner = learner
        self.config = config
        self.serving = serving
        self.publish = publish
        self.on_result = on_result
        self.generator = torch.Generator().manual_seed(seed)
        self.version = serving()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observed_at_last = 0
        self.results: list[OuterResult] = []
        # Training stops this many values short of the newest: promotion is decided on
        # held-out entities' newest windows, later in time than anything trained on.
        self._recent = learner.layout.horizon
        # The version the learner's parameters were trained from (None: not loaded yet).
        self._descends_from: int | None = None

    def _split_rows(self, span: int, born: bool = False) -> tuple[Tensor, Tensor]:
        """Rows with ``span`` values: training entities, and held-out entities (a fixed
        share of rows, chosen by row number, never trained on). ``born``: only rows that
        still hold their entity's first value, when there are enough."""
        rows = self.buffer.full_rows(span)
        if born:
            new = self.buffer.born_rows(span)
            rows = new if len(new) >= 16 else rows
        holdout = held_out(rows, self.config.holdout)
        return rows[~holdout], rows[holdout]

    def _tasks(self) -> Plan | None:
        """What the next trigger trains and judges on. By entity once 8 + 2 entities
        have a whole task of history: held-out entities' newest windows judge. Before
        that, young tasks alone, when 8 + 2 new entities have theirs. Failing both, a
        population too small to hold entities out (a few long-lived series) is split in
        time: every entity trains on stretches that end before the query targets of its
        newest task, and that task judges. None until one of these can run."""
        layout, per_step = self.learner.layout, self.config.tasks_per_step
        train, held = self._split_rows(layout.length + self._recent)
        # Young tasks start at the oldest value a row holds: the entity's birth while it
        # is young, so the newest arrivals teach θ too.
        young_train, young_held = self._split_rows(layout.young_length, born=True)
        if len(train) >= 8 and len(held) >= 2:
            return Plan(train, held, young_train, young_held, self._recent,
                        min(per_step, len(train)))
        if (self.learner.young_count(per_step)
                and len(young_train) >= 8 and len(young_held) >= 2):
            return Plan(train[:0], held[:0], young_train, young_held, self._recent,
                        min(per_step, len(young_train)))
        rows = self.buffer.full_rows(layout.length + layout.query_span)
        if not len(rows):
            return None
        # A few rows, many stretches: a whole batch of tasks at random points of them.
        return Plan(rows, rows, rows[:0], rows[:0], layout.query_span, per_step)

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

    def due(self) -> bool:
        return self.buffer.observed - self._observed_at_last >= self.config.every_observations

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
        last = time.monotonic()
        while not self._stop.is_set():
            if self.due() or time.monotonic() - last >= self.config.every_s:
                self._observed_at_last = self.buffer.observed
                last = time.monotonic()
                try:
                    self.run_once()
                except Exception:  # a failed meta-step must not take down ingestion
                    log.exception("outer loop step failed")
            self._stop.wait(0.5)


def attach(config: Config, engine: Engine, publish: Callable[[model.Params, int], None],
           on_result: Callable[[OuterResult], None] | None = None) -> OuterLoop:
    """An outer loop fed by ``engine`` (a task buffer is attached to it) that meta-learns
    from the serving parameters and hands promoted versions to ``publish``."""
    config = config.resolved()
    m = config.meta
    layout = TaskLayout(window=config.model.window, horizon=config.series.horizon,
                        support=m.support_windows, query=m.query_windows,
                        stride=m.window_stride, season=config.series.season,
                        young=engine.warm_at)
    # Longer than one task: tasks start at random points of the last few days, and a
    # small population's training stretches end before its newest query targets.
    spare = max(4 * config.series.season, layout.query_span + config.series.season)
    engine.task_buffer = TaskBuffer(m.buffer_entities, layout.length + spare,
                                    config.engine.max_entities, config.model.context_dim)
    learner = MetaLearner(engine.params, layout, m, config.adaptation, config.series.quantiles,
                          device=resolve_device(m.device))
    return OuterLoop(engine.task_buffer, learner, m, lambda: (engine.params, engine.version),
                     publish, on_result, seed=config.model.seed)
