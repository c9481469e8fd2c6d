"""The engine the daemon, the demo and evaluate run: θ and the task memory from the
configuration (``Engine(config)`` alone has neither a parameter file nor a memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import STEP

from streammeta import assemble
from streammeta.config import Config
from streammeta.errors import ConfigError
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.persistence import params as params_io


def feed(engine: Engine, entities: int, steps: int) -> None:
    names = [f"e{i}" for i in range(entities)]
    for t in range(steps):
        engine.process(names, np.full(entities, t * STEP, dtype=np.int64),
                       np.sin(np.arange(entities) + t * 0.5) + 10.0)


def test_the_task_memory_is_built_and_filled_when_enabled(small: Config) -> None:
    on = assemble.engine(small.replace("memory", enabled=True, mature_after=4))
    assert on.memory_entries == 0
    feed(on, entities=3, steps=small.model.window + 6)
    assert on.memory_entries == 3  # each entity stored once it matured
    assert assemble.engine(small.replace("memory", enabled=False)).memory_entries is None


def test_theta_comes_from_model_init_else_from_the_given_params(small: Config,
                                                                 tmp_path: Path) -> None:
    shape = model.ModelShape.of(small)
    saved = model.init_params(shape, seed=7, inner_lr=0.1)
    path = params_io.save(tmp_path / "theta.smck", saved, version=5, shape=shape)
    from_file = assemble.engine(small.replace("model", init=str(path)))
    params, version = from_file.serving()
    assert version == 5
    for name, value in saved.items():
        torch.testing.assert_close(params[name], value)
    given = model.init_params(shape, seed=8, inner_lr=0.1)
    assert assemble.engine(small, params=given, version=2).serving() == (given, 2)


def test_state_too_large_to_reserve_names_engine_max_entities(small: Config) -> None:
    """Every entity's state is reserved at start: a configuration whose
    ``engine.max_entities`` slots do not fit (a long season or horizon times a million
    entities) stopped ``run`` with the allocator's RuntimeError traceback; it is now a
    configuration error naming the key and the bytes asked for."""


    huge = small.replace("engine", max_entities=50_000_000).replace("series", season=10000)
    with pytest.raises(ConfigError, match=r"'engine.max_entities': got 50000000, expected "
                       r"fewer entities .*\d+ bytes"):
        assemble.engine(huge)
