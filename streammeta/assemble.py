"""Builds the engine from the configuration: the one place that hands the online
loop what it must not import itself (``streammeta.online.ports``) — θ from
``model.init``, the task memory (``memory.enabled``) and the spill store.
"""

from __future__ import annotations

import re

from streammeta.config import Config
from streammeta.errors import ConfigError
from streammeta.meta.memory import store_for
from streammeta.online import model
from streammeta.online.engine import Engine
from streammeta.online.ports import EvictionStore
from streammeta.persistence import params as params_io


def engine(config: Config, spill: EvictionStore | None = None,
           params: model.Params | None = None, version: int = 0) -> Engine:
    """The engine ``run``, ``demo`` and ``evaluate`` serve with: θ ``params`` if given,
    else from the parameter file ``model.init`` (else seeded), and the task memory
    if ``memory.enabled``."""
    if params is None:
        params, version = params_io.initial(config)
    try:
        return Engine(config, params, version, memory=store_for(config), spill=spill)
    except RuntimeError as exc:  # the state of engine.max_entities slots, reserved at start
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        if asked is None:
            raise
        raise ConfigError("engine.max_entities", config.engine.max_entities,
                          f"fewer entities (or a shorter series.season, series.horizon, "
                          f"model.window): their state, reserved at start, needs "
                          f"{asked.group(1)} bytes here, which this machine cannot "
                          f"reserve") from None
