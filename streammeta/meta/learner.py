"""The meta-learner: batched meta-updates of θ, φ₀ and the inner step sizes.

Per task, φ starts at φ₀ and takes the daemon's inner step(s) on the support
windows — the same Meta-SGD rule as ``model.adapt`` — then the query loss (point
+ pinball) of the adapted model is the meta-loss. Everything is batched over
tasks with ``torch.func`` (``vmap`` of ``grad``), no Python loop per task.
Algorithms:

* ``fomaml`` — first order: the support gradient is a constant, so θ, φ₀ and α
  get exact first-order gradients without second derivatives;
* ``maml`` — second order: differentiates through the support gradient;
* ``reptile`` — φ₀ moves towards the mean adapted φ; θ and α follow the
  first-order query gradient (θ itself is shared, not adapted per task).

A share of the tasks (``meta.young_share``) are *young*: they replay what the
engine does for a new entity in the H steps after it turns warm — φ₀ (plus the
memory's initialisation, when the entity got one) at the first forecast, then one
online step per new value on the first forecast's partly arrived targets, shrunk
back towards that start after each (``adaptation.shrink``). Without them θ only
learns from entities with a whole window of history; with young tasks that
forecast from φ₀ alone, the meta-learned step sizes went to zero and the engine's
cold-start adaptation was lost (docs/meta-learning.md).

Candidates are the learner's θ averaged over its recent meta-steps (an
exponential moving average, ``meta.average``), less noisy than the last step's.
On CUDA a meta-step is thousands of tiny kernels; with ``meta.cuda_graphs`` each
batch shape's step is recorded once as a CUDA graph and replayed
(docs/meta-learning.md, "Speed and the GPU").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, vmap

from streammeta.config import AdaptationConfig, MetaConfig
from streammeta.meta.layout import TaskLayout, mase_weight, normalise_task, standardise
from streammeta.online import model

log = logging.getLogger("streammeta.meta.outer")  # the outer loop's log, as before the split
MAX_GRAPHS = 8  # recorded batch shapes per learner; each keeps its own GPU memory
# Per batch shape: the recorded step, its input tensors and its loss.
Graphs = dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, list[Tensor], Tensor]]


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
        self.z = torch.distributions.Normal(0.0, 1.0).icdf(self.levels.cpu()).to(self.device)
        self._start(params)

    def _start(self, params: model.Params) -> None:
        """θ, its optimiser and recorded steps, all new from ``params``."""
        config, cuda = self.config, self.device.type == "cuda"
        self.params = {k: v.detach().clone().to(self.device) for k, v in params.items()}
        # Where θ started, for ``meta.pull``.
        self.origin = {k: v.clone() for k, v in self.params.items()} if config.pull else {}
        # The moving average of θ that candidates are taken from, for ``meta.average``.
        self.average = {k: v.clone() for k, v in self.params.items()} if config.average else {}
        self.optimiser = torch.optim.Adam(list(self.params.values()), lr=config.meta_lr,
                                          capturable=cuda)
        self.graphs: Graphs | None = {} if cuda and config.cuda_graphs else None

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
        if any(params[k].shape != v.shape for k, v in self.params.items()):
            self._start(params)  # θ of another width (a checkpoint of another model.hidden)
            return
        with torch.no_grad():
            for name, tensor in (*self.params.items(), *self.average.items()):
                tensor.copy_(params[name].to(self.device))
