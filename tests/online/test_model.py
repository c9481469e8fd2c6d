"""The forecaster f_θ(window, φ) and the rules the whole package shares."""

from __future__ import annotations

import pytest
import torch
from support import small_config

from streammeta.online import model

SHAPE = model.ModelShape(window=12, horizon=6, season=4, context_dim=3, hidden=16,
                         quantiles=(0.1, 0.5, 0.9))


def test_seasonal_back_points_into_the_last_season() -> None:
    # m = 4: targets 1..6 repeat the values 3, 2, 1, 0, 3, 2 steps before the origin.
    assert [model.seasonal_back(h, 4) for h in range(1, 7)] == [3, 2, 1, 0, 3, 2]
    assert model.seasonal_back(5, 1) == 0  # no season: the last value


def test_scale_floor_grows_with_the_level() -> None:
    floor = model.scale_floor(torch.tensor([0.0, 100.0, -100.0]))
    assert floor.tolist() == torch.tensor([1e-6, 0.1 + 1e-6, 0.1 + 1e-6]).tolist()


def test_shrink_moves_back_towards_the_start() -> None:
    phi, start = torch.tensor([2.0, -2.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(model.shrink(phi, start, 0.25), torch.tensor([1.5, -1.25]))
    assert model.shrink(phi, start, 0.0) is phi


def test_a_meta_sgd_step_uses_nonnegative_step_sizes() -> None:
    params = {"alpha": torch.tensor([0.5, -1.0])}
    step = model.meta_sgd_step(params, torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0]))
    assert step.tolist() == [0.0, 1.0]  # a negative α takes no step


def test_an_untrained_model_forecasts_seasonal_naive() -> None:
    params = model.init_params(SHAPE, seed=0)
    history = torch.tensor([[5.0, 1.0, 3.0, 2.0] * 3])  # (1, 12), m = 4
    x, mean, scale = model.normalise(history)
    point, _ = model.point_and_spread(params, x, params["phi0"][None, :])
    expected = torch.tensor([[5.0, 1.0, 3.0, 2.0, 5.0, 1.0]])
    torch.testing.assert_close(point * scale + mean, expected, atol=0.05, rtol=0)


def test_initialisation_is_seeded() -> None:
    a, b = model.init_params(SHAPE, seed=1), model.init_params(SHAPE, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["w1"], model.init_params(SHAPE, seed=2)["w1"])


def test_the_inner_loop_lowers_the_loss_of_its_rows() -> None:
    params = model.init_params(SHAPE, seed=0, inner_lr=0.5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 12, generator=gen)
    y = torch.randn(5, 6, generator=gen) + 2.0
    mask = torch.ones(5, 6)
    phi = params["phi0"].expand(5, -1).clone()

    def loss(phi: torch.Tensor) -> torch.Tensor:
        point, _ = model.features(params, x, phi)
        return model.point_loss_per_row(point, y, mask, "mse")

    adapted = model.adapt(params, phi, x, y, mask, "mse", steps=3)
    assert not adapted.requires_grad
    assert bool((loss(adapted) < loss(phi)).all())


@pytest.mark.parametrize("kind", ["mae", "mse"])
def test_the_inner_loops_gradient_is_autograds(kind: str) -> None:
    """``adapt`` writes the gradient by φ out; it is what autograd takes of the loss,
    with targets partly arrived and errors beyond the Huber threshold."""
    params = model.init_params(SHAPE, seed=0, inner_lr=0.3)
    gen = torch.Generator().manual_seed(1)
    params = {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in params.items()}
    x = torch.randn(8, 12, generator=gen)
    y = 4.0 * torch.randn(8, 6, generator=gen)
    mask = (torch.arange(6)[None, :] < torch.arange(8)[:, None]).to(torch.float32)
    phi = torch.randn(8, 3, generator=gen)
    expected = phi
    for _ in range(2):
        start = expected.detach().requires_grad_(True)
        point, _ = model.features(params, x, start)
        loss = model.point_loss_per_row(point, y, mask, kind).sum()
        (grad,) = torch.autograd.grad(loss, start)
        expected = model.meta_sgd_step(params, start.detach(), grad)
    adapted = model.adapt(params, phi, x, y, mask, kind, steps=2)
    torch.testing.assert_close(adapted, expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(adapted, phi)


def test_normalise_floors_the_scale_of_a_flat_window() -> None:
    x, mean, scale = model.normalise(torch.full((1, 12), 50.0))
    assert float(scale) > 0 and bool(torch.isfinite(x).all()) and float(mean) == 50.0


def test_units_round_trip_and_the_shape_follows_the_config() -> None:
    values = torch.tensor([-1e4, -1.0, 0.0, 3.0, 1e4])
    back = model.from_model_units(model.to_model_units(values, "asinh"), "asinh")
    torch.testing.assert_close(back, values, rtol=1e-5, atol=1e-5)
    shape = model.ModelShape.of(small_config())
    assert (shape.window, shape.horizon, shape.season, shape.hidden) == (12, 6, 4, 16)
