"""``streammeta.Forecaster``: the daemon's engine and outer loop for notebooks and batch jobs.

No Kafka: observations come as a pandas DataFrame (``unique_id``, ``ds``, ``y``) and
forecasts go back as one (:mod:`streammeta.frames`). Underneath is what ``streammeta
run`` runs: the same :class:`~streammeta.online.engine.Engine` and the same outer loop
(:func:`streammeta.meta.outer.attach`), with the checks of the daemon's input.

A frame's rows are applied in time order (ties in frame order) in batches of
``batch_size`` rows, as ``streammeta evaluate`` replays a data set and the daemon
takes polled batches. Results depend on where batches end (the experts' population
record and the outer loop advance between batches), as the daemon's do: the same
rows in the same batches give the same forecasts as ``evaluate``'s engine.

The outer loop (``outer_loop``):

* ``"inline"`` (default): between batches, once ``meta.every_observations``
  observations have arrived since its last run — ``evaluate``'s schedule, so a
  run is reproducible;
* ``"background"``: the daemon's thread, paced to ``meta.cpu_share``, triggered by
  ``meta.every_observations`` or ``meta.every_s``; promoted versions are swapped in
  between batches. Call :meth:`Forecaster.close` (or use ``with``) to stop it;
* ``"off"``: ``meta.enabled = false`` (a frozen θ, no guard), the ``no-outer-loop``
  ablation of ``evaluate``.

:meth:`Forecaster.save` writes a daemon checkpoint (``streammeta.persistence.checkpoint``)
into a directory; :meth:`Forecaster.load` restores what a daemon restart restores (θ
and its version, every entity's state, the memory) plus the latest forecasts and the
configuration. The outer loop's task buffer starts empty again, as after a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from streammeta import assemble, frames
from streammeta import config as config_io
from streammeta.config import CheckpointConfig, Config, EngineConfig
from streammeta.errors import ConfigError, DataError, ParameterFileError
from streammeta.meta.outer import OuterLoop, OuterResult, attach, period
from streammeta.online import model
from streammeta.online.engine import Engine, Forecasts
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

log = logging.getLogger(__name__)

OuterMode = Literal["inline", "background", "off"]
# The input partition of a Forecaster's entities: none a daemon is ever assigned, so a
# daemon sharing the checkpoint directory never takes them over.
PARTITION = -1
MEMBER = "forecaster"
_NEVER = CheckpointConfig(every_s=float("inf"))  # saves only when asked
_SAVED_SECTIONS = ("series", "model", "adaptation", "meta", "memory", "drift", "experts",
                   "calibration", "engine")


class Forecaster:
    """Online forecasts of many series from DataFrames; see the module docstring.

    ``freq``, ``season`` and ``horizon`` set ``series.freq``, ``series.season`` and
    ``series.horizon`` of ``config`` (a :class:`Config`, a ``config.toml`` path read
    as ``streammeta run`` reads it, or None for the defaults); no season: the frequency's
    (24 for "h", 7 "D", 12 "MS"). An integer ``freq`` is statsforecast's for integer
    ``ds`` (1, 2, 3, … of data sets without dates): ``ds`` are positions ``freq`` apart,
    and the forecasts' ``cutoff`` and ``ds`` positions too (season 1 unless given)."""

    def __init__(self, freq: str | int | None = None, season: int | None = None,
                 horizon: int | None = None, *, config: Config | str | os.PathLike[str] | None
                 = None, outer_loop: OuterMode = "inline", batch_size: int = 5000) -> None:
        if outer_loop not in ("inline", "background", "off"):
            raise ValueError(f"outer_loop must be 'inline', 'background' or 'off', "
                             f"got {outer_loop!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        base = config if isinstance(config, Config) else (
            config_io.load(config) if config is not None else Config())
        changes = _series(freq, season, horizon, base.series.season)
        self.integer = "step_ms" in changes
        cfg = base.replace("series", **changes) if changes else base
        if outer_loop == "off":
            cfg = cfg.replace("meta", enabled=False)
        # series.transform = "auto" without a θ file: decided by the first update's values
        self._auto = cfg if cfg.series.transform == "auto" and not cfg.model.init else None
        self.config = cfg.resolved()
        self.outer_loop: OuterMode = outer_loop if self.config.meta.enabled else "off"
        self.frequency = self.config.series.frequency
        self.levels = self.config.series.quantiles
        self.config, self.engine, self.loop = _machinery(self.config, self.outer_loop,
                                                         self._offer)
        self.batch_size = batch_size
        self.observations = 0  # accepted so far (saved, restored)
        self._offered: tuple[model.Params, int] | None = None
        self._lock = threading.Lock()
        self._started = False
        self._latest = _Latest(self.config.series.horizon, len(self.levels))
        self._tz: Any = None  # the newest update's ds time zone: the forecasts' ds take it

    # -- the stream ---------------------------------------------------------------
    def update(self, frame: Any) -> Any:
        """Apply new observations (a DataFrame with ``unique_id``, ``ds``, ``y``) and
        return the forecasts they caused: one row per entity, origin (``cutoff``) and
        step, with the point forecast, the quantile columns, ``model_version`` and
        ``warm``, rows in the frame's order. A row the daemon would dead-letter (bad
        id, time or value; ``ds`` off the frequency's dates, not after the entity's
        previous one or a fraction of a step after it) raises :class:`DataError`
        naming it and its reason, and nothing is applied."""
        obs = frames.observations(frame, self.frequency, self.config.series.max_entity_id_length,
                                  self._latest.last_units, self.integer)
        new = sum(e not in self._latest.index for e in set(obs.entities))
        if len(self._latest) + new > self.config.engine.max_entities:
            raise DataError(f"{new} new unique_id(s) would exceed engine.max_entities "
                            f"({self.config.engine.max_entities}; the daemon dead-letters "
                            "them as 'capacity'), nothing applied")
        if self._auto is not None and len(obs):  # nothing applied yet: the engine is empty
            decided, self._auto = self._auto.for_values([obs.values]).resolved(), None
            if decided.series != self.config.series:  # "none": a value at or below 0
                self.config, self.engine, self.loop = _machinery(decided, self.outer_loop,
                                                                 self._offer)
        if self.loop is not None and self.outer_loop == "background" and not self._started:
            self.loop.start()
            self._started = True
        self._tz = obs.tz
        parts: list[tuple[Forecasts, int, int]] = []  # forecasts, batch start, version
        size = self.batch_size
        if self.outer_loop == "inline" and self.loop is not None:  # none longer than a period
            size = min(size, period(self.config.meta.every_observations, len(self._latest) + new))
        for lo in range(0, len(obs), size):
            hi = min(lo + size, len(obs))
            self._swap_if_offered()
            result = self.engine.process(obs.entities[lo:hi], obs.units[lo:hi],
                                         obs.values[lo:hi],
                                         np.full(hi - lo, PARTITION, dtype=np.int32))
            if result.rejected:  # the checks above should leave nothing to reject
                i, reason, detail = result.rejected[0]
                row = frames.label(frame.index, int(obs.position[lo + i]))
                raise DataError(f"the engine rejected {len(result.rejected)} row(s), e.g. row "
                                f"{row!r}: {detail} ({reason.value}); rows before it were "
                                "applied")
            parts.append((result.forecasts, lo, self.engine.version))
            self.observations += len(result.forecasts)
            self._run_outer_loop()
        return self._frame(obs, parts)

    def forecast(self) -> Any:
        """The latest forecast of every entity (H rows each) as :meth:`update` gives
        them, entities in the order their first rows were applied (by first ``ds``)."""
        latest = self._latest
        n = len(latest)
        return frames.forecasts(latest.names, self.frequency.to_ms(latest.cutoff[:n]),
                                self.frequency.targets(latest.cutoff[:n], latest.horizon),
                                latest.point[:n].copy(), latest.quantiles[:n].copy(), self.levels,
                                latest.version[:n], latest.warm[:n], self._tz,
                                self.frequency.wall_clock, self.integer)

    @property
    def version(self) -> int:
        """The model version serving now (it rises as the outer loop promotes)."""
        return self.engine.version

    @property
    def outer_results(self) -> list[OuterResult]:
        """Every outer-loop run so far: version, promoted or not, held-out losses."""
        return list(self.loop.results) if self.loop is not None else []

    def _run_outer_loop(self) -> None:
        if self.outer_loop != "inline" or self.loop is None:
            return
        self.loop.run_if_due()

    def _offer(self, params: model.Params, version: int) -> None:
        with self._lock:  # from the background loop's thread
            self._offered = (params, version)

    def _swap_if_offered(self) -> None:
        with self._lock:
            offered, self._offered = self._offered, None
        if offered is not None:
            self.engine.swap(*offered)
            log.info("serving model version %d", offered[1])

    def _frame(self, obs: frames.Observations, parts: list[tuple[Forecasts, int, int]]) -> Any:
        if not parts:
            return frames.empty(self.config.series.horizon, self.levels)
        rows = np.concatenate([lo + f.obs_index for f, lo, _ in parts])  # (B,) in obs order
        origin = np.concatenate([f.origin_ts for f, _, _ in parts])
        point = np.concatenate([f.point for f, _, _ in parts])
        quantiles = np.concatenate([f.quantiles for f, _, _ in parts])
        warm = np.concatenate([f.warm for f, _, _ in parts])
        version = np.concatenate([np.full(len(f), v, dtype=np.int64) for f, _, v in parts])
        entities = [obs.entities[i] for i in rows.tolist()]
        self._latest.update(entities, origin, point, quantiles, version, warm)
        order = np.argsort(obs.position[rows], kind="stable")  # back to the frame's order
        return frames.forecasts([entities[i] for i in order.tolist()],
                                self.frequency.to_ms(origin[order]),
                                self.frequency.targets(origin[order], self.config.series.horizon),
                                point[order], quantiles[order], self.levels, version[order],
                                warm[order], self._tz, self.frequency.wall_clock, self.integer)

    # -- state ----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the state into ``directory`` (created; earlier saves there are pruned)
        as a checkpoint file of the daemon's format; → the file."""
        store = CheckpointStore(directory, member=MEMBER, keep=1)
        checkpointer = Checkpointer(store, self.engine, _NEVER, frequency=self.frequency)
        checkpointer.advance({PARTITION: self.observations}, 0)
        payload = checkpointer.snapshot()
        payload["forecaster"] = {"config": _config_state(self.config),
                                 "observations": self.observations,
                                 "latest": self._latest.export(), "integer": self.integer,
                                 "tz": None if self._tz is None else _zone_name(self._tz)}
        return Path(store.save(payload).path)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, config: Config | None = None,
             outer_loop: OuterMode = "inline", batch_size: int = 5000) -> Forecaster:
        """A Forecaster from the newest state :meth:`save` wrote into ``directory``;
        ``config`` replaces the saved configuration (its shapes must fit the state)."""
        if not Path(directory).is_dir():
            raise ParameterFileError(f"{directory}: no such directory")
        store = CheckpointStore(directory, member=MEMBER, keep=1)
        saved = next(((p, s) for p, s in store.newest() if "forecaster" in s), None)
        if saved is None:
            raise ParameterFileError(f"{directory}: no state saved by Forecaster.save")
        path, state = Path(saved[0]), saved[1]["forecaster"]
        config = _in_saved_units(config, state["config"])
        forecaster = cls(config=config or _config_from(state["config"], path),
                         outer_loop=outer_loop, batch_size=batch_size)
        forecaster._auto = None  # the state's units are the configuration's
        forecaster.integer = bool(state.get("integer", False))
        checkpointer = Checkpointer(store, forecaster.engine, _NEVER,  # at another step:
                                    frequency=forecaster.frequency)  # refused, as by run
        checkpointer.restore_model()
        checkpointer.restore_partitions([PARTITION])
        forecaster._latest.restore(state["latest"], path)
        forecaster.observations, forecaster._tz = int(state["observations"]), state.get("tz")
        return forecaster

    # -- the background loop ----------------------------------------------------------
    def close(self) -> None:
        """Stop the background outer loop (if any); the Forecaster stays usable."""
        if self.loop is not None and self._started:
            self.loop.stop()
            self._started = False

    def __enter__(self) -> Forecaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.config.series
        return (f"Forecaster(freq={s.step_ms if self.integer else self.frequency.name!r}, "
                f"season={s.season}, horizon={s.horizon}, entities={len(self._latest)}, "
                f"observations={self.observations}, version={self.version}, "
                f"outer_loop={self.outer_loop!r})")


def _series(freq: str | int | None, season: int | None, horizon: int | None,
            configured_season: int = 0) -> dict[str, Any]:
    """The ``series`` keys of the constructor's arguments; an integer ``freq`` (integer
    ``ds``: positions, read as epoch ms) is a fixed step of that many ms, with a season
    of 1 where none is given (``configured_season`` 0: positions have no frequency to
    take one from)."""
    changes: dict[str, Any] = {k: v for k, v in (("freq", freq), ("season", season),
                                                 ("horizon", horizon)) if v is not None}
    if isinstance(freq, int) and not isinstance(freq, bool):
        if freq < 1:
            raise ValueError(f"an integer freq is the step between integer ds, >= 1; got {freq}")
        changes.update(freq="", step_ms=freq)
        if season is None and not configured_season:
            changes["season"] = 1
    return changes


def _machinery(config: Config, outer_loop: OuterMode,
               offer: Any) -> tuple[Config, Engine, OuterLoop | None]:
    """The daemon's engine (model.init, task memory) and the outer loop beside it, and
    the configuration they hold (:func:`_reservable`)."""
    config, engine = _reservable(config)
    if outer_loop == "inline":
        # evaluate's schedule: no pacing sleeps, promoted versions served at once.
        return config, engine, attach(config.replace("meta", cpu_share=1.0), engine,
                                      engine.swap)
    if outer_loop == "background":
        return config, engine, attach(config, engine, offer)
    return config, engine, None


def _reservable(config: Config) -> tuple[Config, Engine]:
    """The engine, with the default ``engine.max_entities`` (a million) lowered by
    quarters to what this machine can reserve: a notebook's 5-minute data with a day's
    horizon needs 43 GB of state for a million entities, and the ``Forecaster`` refused
    to start. A cap the user set is kept (and refused, as ``run`` refuses it)."""
    default = EngineConfig().max_entities
    lowerable = config.engine.max_entities == default
    while True:
        try:
            engine = assemble.engine(config)
        except ConfigError as exc:
            cap = config.engine.max_entities
            if exc.key != "engine.max_entities" or not lowerable or cap < 16:
                raise
            config = config.replace("engine", max_entities=cap // 4)
            continue
        if lowerable and config.engine.max_entities != default:
            log.warning("engine.max_entities lowered to %d: the state of more entities "
                        "cannot be reserved here (set engine.max_entities to choose)",
                        config.engine.max_entities)
        return config, engine


class _Latest:
    """The newest forecast of every entity, as rows of growing arrays."""

    def __init__(self, horizon: int, levels: int) -> None:
        self.horizon = horizon
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.cutoff = np.zeros(0, dtype=np.int64)  # (E,) origin in the frequency's units
        self.point = np.zeros((0, horizon), dtype=np.float32)  # (E, H)
        self.quantiles = np.zeros((0, levels, horizon), dtype=np.float32)  # (E, Q, H)
        self.version = np.zeros(0, dtype=np.int64)
        self.warm = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self.names)

    def last_units(self, entity: str) -> int | None:
        """The entity's newest timestamp: the origin of its newest forecast (every
        accepted observation makes one); None for an entity not seen."""
        slot = self.index.get(entity)
        return None if slot is None else int(self.cutoff[slot])

    def update(self, entities: list[str], cutoff: np.ndarray, point: np.ndarray,
               quantiles: np.ndarray, version: np.ndarray, warm: np.ndarray) -> None:
        for name in entities:
            if name not in self.index:
                self.index[name] = len(self.names)
                self.names.append(name)
        self._grow(len(self.names))
        slots = np.fromiter((self.index[e] for e in entities), dtype=np.int64,
                            count=len(entities))
        # The last forecast of each entity wins: first occurrences in reversed order.
        _, back = np.unique(slots[::-1], return_index=True)
        keep = len(slots) - 1 - back
        s = slots[keep]
        self.cutoff[s], self.point[s] = cutoff[keep], point[keep]
        self.quantiles[s] = quantiles[keep]
        self.version[s], self.warm[s] = version[keep], warm[keep]

    def _grow(self, n: int) -> None:
        have = len(self.cutoff)
        if n <= have:
            return
        extra = max(n - have, have)  # amortised doubling
        self.cutoff = np.concatenate([self.cutoff, np.zeros(extra, np.int64)])
        self.point = np.concatenate([self.point, np.zeros((extra, *self.point.shape[1:]),
                                                          np.float32)])
        self.quantiles = np.concatenate(
            [self.quantiles, np.zeros((extra, *self.quantiles.shape[1:]), np.float32)])
        self.version = np.concatenate([self.version, np.zeros(extra, np.int64)])
        self.warm = np.concatenate([self.warm, np.zeros(extra, bool)])

    def export(self) -> dict[str, Any]:
        """Plain containers and tensors: a checkpoint loads them with weights_only."""
        n = len(self)
        return {"names": list(self.names), "cutoff": torch.from_numpy(self.cutoff[:n].copy()),
                "point": torch.from_numpy(self.point[:n].copy()),
                "quantiles": torch.from_numpy(self.quantiles[:n].copy()),
                "version": torch.from_numpy(self.version[:n].copy()),
                "warm": torch.from_numpy(self.warm[:n].copy())}

    def restore(self, saved: dict[str, Any], path: Path) -> None:
        point = saved["point"].numpy()
        if point.shape[1:] != self.point.shape[1:]:
            raise ParameterFileError(f"{path}: saved forecasts have shape {point.shape[1:]}, "
                                     f"this configuration makes {self.point.shape[1:]}")
        self.names = list(saved["names"])
        self.index = {name: k for k, name in enumerate(self.names)}
        self.cutoff, self.point = saved["cutoff"].numpy().copy(), point.copy()
        self.quantiles = saved["quantiles"].numpy().copy()
        self.version, self.warm = saved["version"].numpy().copy(), saved["warm"].numpy().copy()


def _zone_name(tz: Any) -> str:
    """A name pandas reads back as the zone ``tz``: zoneinfo's key, pytz's zone,
    dateutil's file ("dateutil/Europe/Berlin": its str, tzfile('/usr/share/…'), made
    a loaded state's forecast() fail), else its str ("UTC+01:00")."""
    for attribute in ("key", "zone"):
        name = getattr(tz, attribute, None)
        if isinstance(name, str):
            return name
    filename = getattr(tz, "_filename", None)
    if isinstance(filename, str):
        return "dateutil/" + filename.rpartition("zoneinfo/")[2]
    return str(tz)


def _config_state(config: Config) -> dict[str, dict[str, Any]]:
    """The sections that shape the engine, as plain values (no Kafka secrets)."""
    return {name: dataclasses.asdict(getattr(config, name)) for name in _SAVED_SECTIONS}


def _in_saved_units(config: Config | None, state: dict[str, dict[str, Any]]) -> Config | None:
    """``config`` with ``series.transform = "auto"`` set to the units the saved state was
    decided in: "auto" before any data is asinh, which refused state learned on values
    at or below 0 ("none")."""
    if config is None or config.series.transform != "auto" or config.model.init:
        return config
    return config.replace("series", transform=state["series"].get("transform", "auto"))


def _config_from(state: dict[str, dict[str, Any]], path: Path) -> Config:
    sections = config_io.sections()
    built: dict[str, Any] = {}
    for name, values in state.items():
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if name == "model" and values.get("init") and not Path(values["init"]).is_file():
            # θ comes from the state; only the guard's initial θ needs the file.
            log.warning("%s: model.init %s is gone; the guard's initial θ is the seeded one",
                        path, values["init"])
            values["init"] = ""
        built[name] = sections[name](**values)
    return Config(**built)
