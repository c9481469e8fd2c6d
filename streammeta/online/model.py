"""The global forecaster f_θ(window, φ_e) and its batched inner loop.

θ is a plain dict of tensors so that the same function serves the daemon (batched
autograd over entities) and the outer loop (``torch.func`` over tasks). Each
entity owns a small context vector φ_e (CAVIA-style fast weights) that the inner
loop adapts with meta-learned per-dimension step sizes α (Meta-SGD).

φ_e enters twice: as a FiLM modulation of the last hidden layer, and through a
basis straight onto the output (a per-entity correction of level and shape).

Output per entity: 1 + Q rows of H values — the point forecast, then one row
per quantile level — in the window's normalised units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from streammeta.config import Config

Params = dict[str, Tensor]


@dataclass(frozen=True)
class ModelShape:
    window: int  # L
    horizon: int  # H
    season: int  # m
    context_dim: int  # C
    hidden: int  # D
    quantiles: tuple[float, ...]  # Q levels
    transform: str = "none"  # the units θ was learned in (series.transform)

    @classmethod
    def of(cls, config: Config) -> ModelShape:
        """The shape the configuration's model has (automatic window resolved)."""
        config = config.resolved()
        s, m = config.series, config.model
        return cls(window=m.window, horizon=s.horizon, season=s.season,
                   context_dim=m.context_dim, hidden=m.hidden, quantiles=s.quantiles,
                   transform=s.transform)


def seasonal_back(h: int, season: int) -> int:
    """How far before the origin the seasonal-naive value of step h lies:
    y[t+h] ≈ y[t-back], 0 <= back < season."""
    return season * math.ceil(h / season) - h


def scale_floor(level: Tensor) -> Tensor:
    """The smallest scale a series of this level is given: flat stretches would
    otherwise be divided by ~0."""
    return 1e-3 * level.abs() + 1e-6


def shrink(phi: Tensor, start: Tensor, rate: float) -> Tensor:
    """φ moved back ``rate`` of the way to the entity's start (``adaptation.shrink``)."""
    return start + (1.0 - rate) * (phi - start) if rate else phi


def meta_sgd_step(params: Params, phi: Tensor, grad: Tensor) -> Tensor:
    """One Meta-SGD step: φ − α ⊙ ∇φ with the meta-learned step sizes α ≥ 0."""
    return phi - params["alpha"].clamp(min=0.0) * grad


def init_params(shape: ModelShape, seed: int = 0, inner_lr: float = 0.05) -> Params:
    """Initial θ: the linear path starts as seasonal naive, the MLP near zero.

    Starting from seasonal naive means an untrained model is already a sane
    forecaster; learning only has to improve on it.
    """
    gen = torch.Generator().manual_seed(seed)
    L, H, m, C, D = shape.window, shape.horizon, shape.season, shape.context_dim, shape.hidden
    naive = torch.zeros(L, H)
    for h in range(1, H + 1):
        back = seasonal_back(h, m)
        naive[L - 1 - back if back < L else L - 1, h - 1] = 1.0  # window < season: last value
    return {
        "lin_w": naive,  # (L, H)
        "lin_b": torch.zeros(H),
        "w1": torch.randn(L, D, generator=gen) / math.sqrt(L),
        "b1": torch.zeros(D),
        "w2": torch.randn(D, D, generator=gen) / math.sqrt(D),
        "b2": torch.zeros(D),
        # Small, not zero: φ reaches the output through these for its gradient to exist.
        "w_point": 0.01 * torch.randn(D, H, generator=gen) / math.sqrt(D),
        "b_point": torch.zeros(H),
        "w_spread": 0.01 * torch.randn(D, H, generator=gen) / math.sqrt(D),
        # softplus(-0.433) = 0.5: an initial spread of half a window standard deviation.
        "b_spread": torch.full((H,), -0.433),
        "film": 0.1 * torch.randn(C, D, generator=gen) / math.sqrt(C),
        "basis": _correction_basis(C, H),
        "phi0": torch.zeros(C),
        "alpha": torch.full((C,), inner_lr),
    }


def _correction_basis(C: int, H: int) -> Tensor:
    """φ's direct path to the point forecast, (C, H): a level and a trend.

    With an untrained θ these let the inner loop correct an entity's bias at once;
    the outer loop reshapes them (the remaining rows start at zero).
    """
    basis = torch.zeros(C, H)
    basis[0] = 1.0  # level
    if C > 1:
        basis[1] = torch.linspace(0.0, 1.0, H)  # trend
    return basis


def trunk(params: Params, x: Tensor) -> Tensor:
    """x (B, L) → the hidden layers before φ's modulation (B, D): φ never reaches them."""
    h = F.gelu(x @ params["w1"] + params["b1"])  # (B, D)
    return F.gelu(h @ params["w2"] + params["b2"])  # (B, D)


def head(params: Params, x: Tensor, h: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
    """The trunk's output h (B, D) and φ (B, C) → (point (B, H), modulated hidden (B, D))."""
    h = h * (1.0 + phi @ params["film"])  # (B, D) per-entity modulation (FiLM)
    point = (x @ params["lin_w"] + params["lin_b"] + h @ params["w_point"] + params["b_point"]
             + phi @ params["basis"])  # (B, H)
    return point, h


def features(params: Params, x: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
    """x (B, L) normalised window, phi (B, C) → (point (B, H), modulated hidden (B, D)).

    Only the last hidden layer and the output see φ, so the inner loop's gradient
    is two small matrix products, not the whole network.
    """
    return head(params, x, trunk(params, x), phi)


def _trunk_and_linear(params: Params, x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`trunk` and the linear path x @ lin_w (B, H), from one product with the
    weights side by side: each column of a product is the same product alone (the same
    sums, measured bit-identical), and x is read once (10,000 rows: 13.6 -> 11.5 ms)."""
    D = params["w1"].shape[1]
    both = x @ torch.cat([params["w1"], params["lin_w"]], dim=1)  # (B, D + H)
    h = F.gelu(both[:, :D] + params["b1"])
    return F.gelu(h @ params["w2"] + params["b2"]), both[:, D:]


def _head(params: Params, linear: Tensor, h: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`head` with x @ lin_w given (``linear``)."""
    h = h * (1.0 + phi @ params["film"])
    point = (linear + params["lin_b"] + h @ params["w_point"] + params["b_point"]
             + phi @ params["basis"])
    return point, h


def point_and_spread(params: Params, x: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
    """→ point (B, H) and spread (B, H) > 0; quantile q is point + spread · Φ⁻¹(q),
    so quantiles never cross. The values of :func:`features` and the spread's head,
    with the products that share an input made as one (see :func:`_trunk_and_linear`)."""
    h, linear = _trunk_and_linear(params, x)
    h = h * (1.0 + phi @ params["film"])  # (B, D) as head
    H = params["w_point"].shape[1]
    out = h @ torch.cat([params["w_point"], params["w_spread"]], dim=1)  # (B, 2H)
    point = linear + params["lin_b"] + out[:, :H] + params["b_point"] + phi @ params["basis"]
    return point, F.softplus(out[:, H:] + params["b_spread"])


def forward(params: Params, x: Tensor, phi: Tensor, z: Tensor) -> Tensor:
    """x (B, L), phi (B, C), z (Q,) standard normal quantiles of the levels
    → (B, 1+Q, H) in normalised units: the point forecast, then the quantiles."""
    point, spread = point_and_spread(params, x, phi)
    quantiles = point[:, None, :] + spread[:, None, :] * z[None, :, None]  # (B, Q, H)
    return torch.cat([point[:, None, :], quantiles], dim=1)


# "mse": squared errors up to this many window standard deviations, linear beyond
# (Huber). Pure squared errors let one spike's gradient throw φ off: on ETTh2 the
# online steps diverged (MSE 7,888 at H = 24, docs/evaluation.md).
HUBER_DELTA = 3.0


def point_loss_per_row(point: Tensor, y: Tensor, mask: Tensor, kind: str) -> Tensor:
    """Masked mean over horizons of the point loss: (B,)."""
    err = (y - point).abs()
    if kind == "mse":
        err = torch.where(err <= HUBER_DELTA, err.square(),
                          2 * HUBER_DELTA * err - HUBER_DELTA**2)
    return (err * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def point_loss_grad(point: Tensor, y: Tensor, mask: Tensor, kind: str) -> Tensor:
    """The gradient of ``point_loss_per_row(point, y, mask, kind).sum()`` by point, (B, H)."""
    diff = point - y
    grad = diff.sign()  # of |y - point|, 0 where it is 0 (as autograd's)
    if kind == "mse":
        grad = torch.where(diff.abs() <= HUBER_DELTA, 2.0 * diff, 2.0 * HUBER_DELTA * grad)
    return grad * mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def loss_per_row(
    out: Tensor, y: Tensor, mask: Tensor, quantiles: Tensor, point_loss: str
) -> Tensor:
    """Masked mean over horizons of the point loss plus the pinball loss: (B,).

    out (B, K, H), y (B, H), mask (B, H) with 1 where the target has arrived.
    """
    qerr = y[:, None, :] - out[:, 1:]  # (B, Q, H)
    below = (qerr < 0).to(qerr.dtype)  # a constant factor: cheaper to differentiate than max
    pinball = (qerr * (quantiles[None, :, None] - below)).mean(dim=1)  # (B, H)
    pinball = (pinball * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return point_loss_per_row(out[:, 0], y, mask, point_loss) + pinball


def to_model_units(values: Tensor, transform: str) -> Tensor:
    """Observed values → the values the model and the entity state hold."""
    return torch.asinh(values) if _asinh(transform) else values


def from_model_units(values: Tensor, transform: str) -> Tensor:
    return torch.sinh(values) if _asinh(transform) else values


def _asinh(transform: str) -> bool:
    """Whether ``transform`` (resolved: ``Config.resolved``) is asinh; "auto" is refused."""
    if transform not in ("asinh", "none"):
        raise ValueError(f"series.transform {transform!r} used unresolved")
    return transform == "asinh"


def normalise(window: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row standardisation of a window (B, L) → (x, mean (B,1), scale (B,1))."""
    mean = window.mean(dim=1, keepdim=True)
    centred = window - mean
    scale = centred.square().mean(dim=1, keepdim=True).sqrt()
    scale = torch.maximum(scale, scale_floor(mean))
    return centred / scale, mean, scale


def adapt(
    params: Params,
    phi: Tensor,  # (B, C)
    x: Tensor,  # (B, L) normalised inputs
    y: Tensor,  # (B, H) normalised targets
    mask: Tensor,  # (B, H)
    point_loss: str,
    steps: int,
) -> Tensor:
    """Inner loop: ``steps`` Meta-SGD steps on every row's φ at once → adapted φ (B, C).

    The rows' losses are independent, so the gradient of their sum with respect
    to the (B, C) context matrix is every entity's own gradient. It is written out
    rather than taken by autograd (which the outer loop's ``torch.func`` keeps): the
    trunk, which φ does not reach, is computed once for all steps, and no graph is
    recorded. The inner loop fits the point forecast only; the quantiles move with
    it, and their spread is learned by the outer loop.
    """
    h, linear = _trunk_and_linear(params, x)  # (B, D), and x @ lin_w
    for _ in range(steps):
        point, _ = _head(params, linear, h, phi)
        g = point_loss_grad(point, y, mask, point_loss)  # (B, H)
        # point = ... + (h ⊙ (1 + φ·film))·w_point + φ·basis
        grad = ((g @ params["w_point"].T) * h) @ params["film"].T + g @ params["basis"].T
        phi = meta_sgd_step(params, phi, grad)
    return phi
