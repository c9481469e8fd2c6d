"""meta.guard: per entity, the served version against the θ the process started from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import STEP, run_until_drained

from streammeta import config as config_mod
from streammeta.config import Config
from streammeta.io.codec import Record, encode_observation
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.online import model
from streammeta.online.arena import GUARD_UNTIL, LOSS_ORIGIN, LOSS_SERVED
from streammeta.online.engine import Engine
from streammeta.serve.daemon import Daemon
from streammeta.serve.metrics import Metrics


@pytest.fixture
def cfg() -> Config:
    config = config_mod.load(None, env={})
    return config.replace("model", window=12, hidden=16, context_dim=4).replace(
        "series", season=4, horizon=6, transform="none").replace("memory", enabled=False).replace(
        "experts", enabled=False)  # the guard alone: what it serves is the blend of two θ


def seasonal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 20 + 3 * np.sin(2 * np.pi * t / 4) + rng.normal(0, 0.2, n)


def run(engine: Engine, values: np.ndarray, entity: str = "e") -> list[np.ndarray]:
    """Feed one value at a time → the point forecast after each."""
    out = []
    for t, v in enumerate(values):
        f = engine.process([entity], np.array([t * STEP]), np.array([v])).forecasts
        out.append(f.point[0])
    return out


def reversed_seasonal(params: model.Params) -> model.Params:
    """A θ that forecasts the seasonal pattern upside down: far worse."""
    bad = {k: v.clone() for k, v in params.items()}
    bad["lin_w"] = -bad["lin_w"]
    return bad


def test_a_worse_version_falls_back_to_the_initial_theta(cfg: Config) -> None:
    values = seasonal(80)
    initial = Engine(cfg)  # serves the θ it started from: no guard
    guarded = Engine(cfg)
    guarded.swap(reversed_seasonal(guarded.serving()[0]), 1)
    expected, got = run(initial, values), run(guarded, values)
    slot = guarded.arena.index["e"]
    # The initial θ's expert inside the guarded engine adapts exactly as the engine that
    # serves it alone ...
    torch.testing.assert_close(guarded.arena.phi_origin[slot], initial.arena.phi[slot])
    loss = guarded.arena.guard[slot]
    assert loss[LOSS_SERVED] > loss[LOSS_ORIGIN] + 30
    # ... and once the worse version's record is clear, its forecasts are served alone.
    np.testing.assert_allclose(got[-10:], expected[-10:], rtol=1e-5)
    # The first warm forecast was an even blend of the two.
    alone = Engine(cfg.replace("meta", guard=False))
    alone.swap(reversed_seasonal(alone.serving()[0]), 1)
    worse = run(alone, values)
    warm = cfg.model.window - 1  # index of the first warm forecast
    np.testing.assert_allclose(got[warm], (expected[warm] + worse[warm]) / 2, rtol=1e-5)


def test_a_better_version_keeps_serving(cfg: Config) -> None:
    values = seasonal(80, seed=1)
    good = Engine(cfg).serving()[0]
    bad = reversed_seasonal(good)
    served = Engine(cfg, params=good)  # serves the better θ from the start
    guarded = Engine(cfg, params=bad)  # started from the worse one, then a better version
    guarded.swap(good, 1)
    expected, got = run(served, values), run(guarded, values)
    np.testing.assert_allclose(got[-10:], expected[-10:], rtol=1e-5)
    slot = guarded.arena.index["e"]
    torch.testing.assert_close(guarded.arena.phi[slot], served.arena.phi[slot])


def test_after_guard_for_values_the_better_expert_is_served_alone(cfg: Config) -> None:
    cfg = cfg.replace("meta", guard_rate=0.001, guard_for=20)  # too slow to saturate
    values = seasonal(60, seed=2)
    initial = Engine(cfg)
    guarded = Engine(cfg)
    guarded.swap(reversed_seasonal(guarded.serving()[0]), 1)
    expected, got = run(initial, values), run(guarded, values)
    warm_at = cfg.model.window
    slot = guarded.arena.index["e"]
    assert float(guarded.arena.guard[slot, GUARD_UNTIL]) == warm_at + 20
    # Still blending before the end of the guard, the initial θ alone after it.
    assert not np.allclose(got[warm_at + 18], expected[warm_at + 18], rtol=1e-3)
    np.testing.assert_allclose(got[warm_at + 20:], expected[warm_at + 20:], rtol=1e-5)


def test_guard_off_serves_the_version_alone(cfg: Config) -> None:
    values = seasonal(40)
    off = cfg.replace("meta", guard=False)
    plain, guarded = Engine(off), Engine(cfg)
    alone = Engine(off)
    bad = reversed_seasonal(plain.serving()[0])
    plain.swap(bad, 1)
    guarded.swap(bad, 1)
    forecasts = run(plain, values)
    assert not np.allclose(run(guarded, values)[-1], forecasts[-1], rtol=1e-3)
    # Without the outer loop there is no guard either: a swapped version serves alone.
    unguarded = Engine(cfg.replace("meta", enabled=False))
    unguarded.swap(bad, 1)
    np.testing.assert_array_equal(run(unguarded, values), forecasts)
    np.testing.assert_allclose(run(alone, values), run(Engine(off), values))


def test_while_the_initial_theta_is_served_both_experts_are_one(cfg: Config) -> None:
    engine = Engine(cfg)
    result = engine.process(["e"] * 30, np.arange(30) * STEP, seasonal(30))
    slot = engine.arena.index["e"]
    torch.testing.assert_close(engine.arena.phi_origin[slot], engine.arena.phi[slot])
    assert result.guarded == 0
    # A checkpoint restored at start hands back the version the process started from.
    engine.swap({k: v.clone() for k, v in engine.serving()[0].items()}, 0)
    result = engine.process(["e"], np.array([30 * STEP]), seasonal(31)[-1:])
    assert result.guarded == 0
    torch.testing.assert_close(engine.arena.phi_origin[slot], engine.arena.phi[slot])
    engine.swap(reversed_seasonal(engine.serving()[0]), 1)
    result = engine.process(["e"], np.array([31 * STEP]), seasonal(32)[-1:])
    assert result.guarded == 1


def test_the_daemon_counts_guarded_forecasts(cfg: Config) -> None:
    values = seasonal(40)
    records = []
    for t, v in enumerate(values):
        key, value = encode_observation("e", t * STEP, float(v))
        records.append(Record("obs", 0, t, key, value))
    source, metrics = MemorySource(records, batch_size=10), Metrics()
    daemon = Daemon(cfg, source, MemorySink(), metrics)
    daemon.offer_params(reversed_seasonal(daemon.engine.serving()[0]), 1)
    run_until_drained(daemon, source)
    # Every warm forecast (the 12th value on) was guarded: the worse version never
    # earned the whole weight.
    warm = len(values) - cfg.model.window + 1
    assert metrics.registry.get_sample_value("streammeta_guarded_forecasts_total") == warm
