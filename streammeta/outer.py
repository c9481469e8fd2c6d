"""The outer loop: meta-learning θ, φ₀ and the inner step sizes from replayed tasks.

A task is one entity's recent history (``streammeta.tasks``) split in time into
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

A share of the tasks (``meta.young_share``) are *young*: the stretch's first value
is taken as the entity's first, the windows are completed with its first season
exactly as the engine completes a young entity's window, and the query windows are
the entity's first forecasts, made with φ₀ before any adaptation. Without them θ
only learns from entities with a whole window of history, and a meta-learned θ
forecast new entities worse than the initial one did (docs/meta-learning.md).

Each trigger runs some meta-steps and yields a numbered candidate version; it is
promoted (served) only if its meta-loss on held-out tasks is not worse than the
serving version's — on held-out entities' newest windows, later in time than any
training task (training stretches end a horizon before the newest value).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, vmap

from streammeta import model
from streammeta.config import Config, MetaConfig, resolve_device
from streammeta.engine import Engine
from streammeta.tasks import TaskBuffer

log = logging.getLogger(__name__)


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
        return self.young + (self.query - 1) * self.stride + self.horizon

    @property
    def length(self) -> int:
        S, Q, d, L, H = self.support, self.query, self.stride, self.window, self.horizon
        # Query inputs may overlap support targets, query targets may not: the first
        # query window starts H after the last support window.
        return (S - 1) * d + H + (Q - 1) * d + L + H

    def split(self, history: Tensor, young: bool = False
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(n, T) histories → support x (n, S, L), y (n, S, H), query x (n, Q, L), y.

        ``young``: the query windows are a new entity's first forecasts instead (the
        support windows then precede its birth and must not be used).
        """
        L, S = self.window, self.support
        examples = history[:, self._index(young)]  # (n, S+Q, L+H)
        return examples[:, :S, :L], examples[:, :S, L:], examples[:, S:, :L], examples[:, S:, L:]

    def _index(self, young: bool) -> Tensor:
        """(S+Q, L+H): where each support, then query, example's values sit in a history."""
        L, H, d = self.window, self.horizon, self.stride
        first_query = (self.support - 1) * d + H
        starts = torch.tensor([j * d for j in range(self.support)]
                              + [first_query + k * d for k in range(self.query)])
        index = starts[:, None] + torch.arange(L + H)[None, :]
        if young:
            # The first query window's newest input is the entity's young-th value; older
            # inputs read the same phase of its first season, as state.window does.
            index = index - first_query - (L - self.young)
            index = torch.where(index < 0, index % self.season, index)
        return index


def normalise_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor,
                   season: int = 1, known: Tensor | None = None) -> tuple[Tensor, ...]:
    """Each window standardised by its own inputs, as the engine does; and a weight
    per query window that turns its loss from window units into units of the task's
    mean absolute seasonal difference (from the support inputs only), as MASE scores
    it. Without it, the loss of a flat window (a small standard deviation) is blown
    up, and meta-learning favours those windows over the ones MASE counts.

    ``known`` (n, K): the values the scale is taken from (default: the first
    support window's inputs)."""
    out = []
    scales = []
    for x, y in ((xs, ys), (xq, yq)):
        n, w, L = x.shape
        xn, mean, scale = model.normalise(x.reshape(n * w, L))
        out += [xn.reshape(n, w, L), ((y.reshape(n * w, -1) - mean) / scale).reshape(y.shape)]
        scales.append(scale.reshape(n, w))
    first = xs[:, 0] if known is None else known  # (n, K)
    lag = min(season, first.shape[1] - 1)
    task_scale = (first[:, lag:] - first[:, :-lag]).abs().mean(dim=1, keepdim=True)  # (n, 1)
    weight = scales[1] / torch.maximum(task_scale, 1e-3 * first.abs().mean(dim=1,
                                                                            keepdim=True) + 1e-6)
    return (*out, weight.clamp(max=10.0))


class MetaLearner:
    """Meta-updates of a parameter dict from batches of task histories."""

    def __init__(self, params: model.Params, layout: TaskLayout, config: MetaConfig,
                 point_loss: str, inner_steps: int, quantiles: tuple[float, ...],
                 device: str = "cpu") -> None:
        self.layout = layout
        self.config = config
        self.point_loss = point_loss
        self.inner_steps = inner_steps
        self.device = torch.device(device)
        self.levels = torch.tensor(quantiles, device=self.device)
        self.z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(quantiles)).to(
            self.device)
        self.params = {k: v.detach().clone().to(self.device) for k, v in params.items()}
        self.optimiser = torch.optim.Adam(list(self.params.values()), lr=config.meta_lr)

    # -- the functional pieces, per task ------------------------------------------------
    def _support_loss(self, phi: Tensor, params: model.Params, x: Tensor, y: Tensor) -> Tensor:
        point, _ = model.features(params, x[None, :], phi[None, :])  # (1, H)
        return model.point_loss_per_row(point, y[None, :], torch.ones_like(y[None, :]),
                                        self.point_loss).sum()

    def _adapt(self, params: model.Params, phi: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """The daemon's inner loop for one task: φ (C,) → adapted φ (C,).

        Like the daemon, one Meta-SGD step per support window, in time order (each
        window's targets "arrive" after the previous one), ``inner_steps`` each.
        """
        alpha = params["alpha"].clamp(min=0.0)
        for j in range(x.shape[0]):
            for _ in range(self.inner_steps):
                g = grad(self._support_loss)(phi, params, x[j], y[j])
                if self.config.algorithm != "maml":
                    g = g.detach()  # first order: the support gradient is a constant
                phi = phi - alpha * g
        return phi

    def _task_loss(self, params: model.Params, xs: Tensor, ys: Tensor, xq: Tensor,
                   yq: Tensor, wq: Tensor, young: Tensor) -> tuple[Tensor, Tensor]:
        """A young task (``young`` = 1) forecasts its query with φ₀; any other adapts
        φ on its support windows first."""
        adapted = self._adapt(params, params["phi0"], xs, ys)
        phi = young * params["phi0"] + (1.0 - young) * adapted  # no data-dependent branch
        out = model.forward(params, xq, phi.expand(xq.shape[0], -1), self.z)  # (Q, 1+Q', H)
        loss = model.loss_per_row(out, yq, torch.ones_like(yq), self.levels, self.point_loss)
        return (loss * wq).mean(), adapted

    def _meta_loss(self, params: model.Params, batch: tuple[Tensor, ...]
                   ) -> tuple[Tensor, Tensor]:
        losses, phis = vmap(self._task_loss, in_dims=(None, 0, 0, 0, 0, 0, 0))(params, *batch)
        return losses.mean(), phis

    # -- steps ---------------------------------------------------------------------------
    def young_count(self, n: int) -> int:
        """How many of ``n`` tasks are young (``meta.young_share``)."""
        return round(n * self.config.young_share) if self.layout.young else 0

    def batch(self, histories: Tensor, young: Tensor | None = None) -> tuple[Tensor, ...]:
        """Task histories (n, T ≥ length) and young ones (n', T' ≥ young_length, from the
        entity's birth) → normalised support and query windows, query weights and the
        young flag (n + n',)."""
        layout, parts = self.layout, []
        young = histories[:0, : layout.young_length] if young is None else young
        if len(histories):
            parts.append(normalise_task(*layout.split(histories.to(self.device)),
                                        layout.season))
        if len(young):
            split = layout.split(young.to(self.device), young=True)
            # A young entity's scale comes from the values it has seen, not the completion.
            parts.append(normalise_task(*split, layout.season,
                                        known=split[2][:, 0, -layout.young:]))
        flag = torch.cat([torch.zeros(len(histories)), torch.ones(len(young))])
        return (*(torch.cat(tensors) for tensors in zip(*parts, strict=True)),
                flag.to(self.device))

    def step(self, histories: Tensor, young: Tensor | None = None) -> float:
        """One meta-update on tasks (see :meth:`batch`); returns the meta-loss before it."""
        batch = self.batch(histories, young)
        grads, (loss, phis) = grad_and_value(self._meta_loss, has_aux=True)(self.params, batch)
        if self.config.algorithm == "reptile":
            # φ₀ moves towards the tasks' adapted contexts (the Reptile rule); young
            # tasks adapt nothing.
            mature = batch[-1] == 0
            if bool(mature.any()):
                grads["phi0"] = self.params["phi0"] - phis[mature].mean(dim=0).detach()
        for name, tensor in self.params.items():
            tensor.grad = grads[name]
        self.optimiser.step()
        self.optimiser.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.params["alpha"].clamp_(min=0.0)
        return float(loss)

    def evaluate(self, params: model.Params, histories: Tensor,
                 young: Tensor | None = None) -> float:
        """Meta-loss of ``params`` on tasks (n, T) without updating anything."""
        moved = {k: v.detach().to(self.device) for k, v in params.items()}
        loss, _ = self._meta_loss(moved, self.batch(histories, young))
        return float(loss)

    def snapshot(self) -> model.Params:
        return {k: v.detach().clone().cpu() for k, v in self.params.items()}

    def load(self, params: model.Params) -> None:
        with torch.no_grad():
            for name, tensor in self.params.items():
                tensor.copy_(params[name].to(self.device))


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

    def _split_rows(self, span: int) -> tuple[Tensor, Tensor]:
        """Rows with ``span`` values: training entities, and held-out entities (a fixed
        share of rows, chosen by row number, never trained on)."""
        rows = self.buffer.full_rows(span)
        holdout = (rows * 2654435761 % 1000) < int(self.config.holdout * 1000)
        return rows[~holdout], rows[holdout]

    def ready(self) -> bool:
        train, held = self._split_rows(self.learner.layout.length + self._recent)
        return len(train) >= 8 and len(held) >= 2

    def run_once(self) -> OuterResult | None:
        """One trigger: meta-steps from the serving version, then promote or reject."""
        if not self.ready():
            return None
        layout, buffer = self.learner.layout, self.buffer
        train, held = self._split_rows(layout.length + self._recent)
        # Young tasks start at the oldest value a row holds: the entity's birth while it
        # is young, so the newest arrivals teach θ too.
        young_train, young_held = self._split_rows(layout.young_length)
        started = time.perf_counter()
        params, serving_version = self.serving()
        self.learner.load(params)
        losses = []
        busy = 0.0
        for _ in range(self.config.steps):
            if self._stop.is_set():
                break
            step_started = time.perf_counter()
            n = min(self.config.tasks_per_step, len(train))
            n_young = self.learner.young_count(n)
            pick = torch.randint(len(train), (n - n_young,), generator=self.generator)
            histories = buffer.histories(train[pick], layout.length, self.generator,
                                         skip_newest=self._recent)
            pick = torch.randint(len(young_train), (n_young,), generator=self.generator)
            young = buffer.histories(young_train[pick], layout.young_length, oldest=True)
            losses.append(self.learner.step(histories, young))
            busy += self._yield_cpu(time.perf_counter() - step_started)
        self.version = max(self.version, serving_version) + 1
        candidate = self.learner.snapshot()
        n = self.config.tasks_per_step * 4
        n_young = self.learner.young_count(n)
        held_histories = buffer.histories(held[: n - n_young], layout.length)
        held_young = buffer.histories(young_held[:n_young], layout.young_length, oldest=True)
        candidate_loss = self.learner.evaluate(candidate, held_histories, held_young)
        serving_loss = self.learner.evaluate(params, held_histories, held_young)
        promoted = candidate_loss <= serving_loss * (1.0 + self.config.tolerance)
        if promoted:
            self.publish(candidate, self.version)
        result = OuterResult(self.version, promoted, sum(losses) / max(1, len(losses)),
                             candidate_loss, serving_loss, time.perf_counter() - started)
        log.info("outer loop: version %d %s (held-out loss %.4f vs serving %.4f)",
                 result.version, "promoted" if promoted else "rejected", candidate_loss,
                 serving_loss)
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _yield_cpu(self, seconds: float) -> float:
        """On the CPU, sleep so that the loop uses at most ``cpu_share`` of wall time."""
        share = self.config.cpu_share
        if self.learner.device.type == "cpu" and share < 1.0:
            self._stop.wait(seconds * (1.0 - share) / share)
        return seconds

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
    m = config.meta
    layout = TaskLayout(window=config.model.window, horizon=config.series.horizon,
                        support=m.support_windows, query=m.query_windows,
                        stride=m.window_stride, season=config.series.season,
                        young=engine.warm_at)
    # Longer than one task: tasks start at random points of the last few days.
    engine.task_buffer = TaskBuffer(m.buffer_entities, layout.length + 4 * config.series.season,
                                    config.engine.max_entities)
    learner = MetaLearner(engine.params, layout, m, config.adaptation.loss,
                          config.adaptation.inner_steps, config.series.quantiles,
                          device=resolve_device(m.device))
    return OuterLoop(engine.task_buffer, learner, m, lambda: (engine.params, engine.version),
                     publish, on_result, seed=config.model.seed)
