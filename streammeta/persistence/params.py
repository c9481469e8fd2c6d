"""Parameter files: θ and its version, weights only.

The container of checkpoints (``streammeta.persistence.container``: magic, length,
SHA-256, then a ``torch.save`` of tensors and plain values read with
``weights_only=True``), with ``kind: params``.
A corrupt, truncated, foreign or shape-mismatched file is refused with
:class:`~streammeta.errors.ParameterFileError`; with ``model.hidden = 0`` the file's
width is the model's (``Config.resolved``, :func:`width`). A file records the
frequency of the data it was learned on (``series.freq``, else the data's step); one
of another step is refused where the configuration's frequency is given, and one that
does not record it (written before) is served with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from streammeta.config import Config
from streammeta.errors import ParameterFileError
from streammeta.io.frequency import Frequency
from streammeta.online import model
from streammeta.persistence.container import FORMAT, read_file, write_file
from streammeta.persistence.width import params_width, width

__all__ = ["checked", "initial", "load", "params_width", "save", "width"]

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # files without a frequency, warned about once a process


def save(path: str | Path, params: model.Params, version: int, shape: model.ModelShape,
         note: str = "", frequency: Frequency | None = None) -> Path:
    """Write θ; ``frequency``: the data's it was learned on (None: unknown)."""
    path = Path(path)
    learned_on = {} if frequency is None else {"series": {
        "freq": frequency.name, "unit": frequency.unit, "step": frequency.step}}
    write_file(path, {
        "format": FORMAT, "kind": "params", "version": version, "note": note,
        "shape": {"window": shape.window, "horizon": shape.horizon, "season": shape.season,
                  "context_dim": shape.context_dim, "hidden": shape.hidden,
                  "quantiles": list(shape.quantiles), "transform": shape.transform},
        **learned_on,
        "params": {k: v.detach().cpu().clone() for k, v in params.items()},
    })
    return path


def load(path: str | Path, shape: model.ModelShape,
         frequency: Frequency | None = None) -> tuple[model.Params, int]:
    """θ and version from ``path``; refuses files that do not fit ``shape`` or, given
    ``frequency`` (series.freq, else series.step_ms), were learned at another step."""
    path = Path(path)
    payload = read_file(path)
    if payload.get("kind") != "params":
        raise ParameterFileError(f"{path}: not a parameter file (kind {payload.get('kind')!r})")
    written_for = payload.get("shape") or {}
    if written_for.get("transform", "none") != shape.transform:
        raise ParameterFileError(
            f"{path}: θ was learned on values with series.transform = "
            f"{written_for.get('transform', 'none')!r}, this configuration has "
            f"{shape.transform!r}")
    levels = written_for.get("quantiles")
    if levels is not None and [round(float(q), 9) for q in levels] != [
            round(q, 9) for q in shape.quantiles]:  # as many levels, others: quietly wrong
        raise ParameterFileError(
            f"{path}: θ was learned for series.quantiles = {list(levels)}, this "
            f"configuration has {list(shape.quantiles)}")
    if frequency is not None:  # before the season, which follows it by default
        _check_frequency(path, payload.get("series"), frequency)
    # The season first: the window may be the same. The horizon and the window would
    # be refused by a tensor's shape, which does not say which key differs.
    for key, have in (("series.season", shape.season), ("series.horizon", shape.horizon),
                      ("model.window", shape.window)):
        written = written_for.get(key.split(".")[1])
        if written is not None and int(written) != have:
            raise ParameterFileError(f"{path}: θ was learned for {key} = {written}, this "
                                     f"configuration has {have}")
    params = checked(str(path), payload.get("params"), shape,
                     f" (file written for {payload.get('shape')})")
    return params, int(payload.get("version", 0))


def _check_frequency(path: Path, written: dict[str, Any] | None,
                     frequency: Frequency) -> None:
    """ParameterFileError if θ was learned on data of another step than ``frequency``
    (the same step spelt otherwise, "D" or step_ms 86400000, is the same); a warning,
    once, where the file does not say."""
    if written is None:
        if str(path) not in _WARNED:
            _WARNED.add(str(path))
            log.warning("%s: the file does not record the frequency of the data θ was "
                        "learned on (written before files recorded it, or pretrained on "
                        "steps of 28 days or more without series.freq); it is served at "
                        "series.freq %r: check that it was learned at that step",
                        path, frequency.name)
        return
    if (written["unit"], int(written["step"])) != (frequency.unit, frequency.step):
        raise ParameterFileError(
            f"{path}: θ was learned for series.freq = {written['freq']!r} (steps of "
            f"{written['step']} {written['unit']}), this configuration has "
            f"{frequency.name!r} ({frequency.step} {frequency.unit})")


def checked(where: str, params: object, shape: model.ModelShape, note: str = "",
            any_width: bool = False) -> model.Params:
    """``params`` as float tensors if they are θ of ``shape``; else ParameterFileError.
    ``any_width``: θ of another model.hidden is accepted (it is served in its width)."""
    if any_width:
        shape = dataclasses.replace(shape, hidden=params_width(where, params))
    expected = model.init_params(shape)
    if not isinstance(params, dict) or set(params) != set(expected):
        names = sorted(params) if isinstance(params, dict) else []
        raise ParameterFileError(f"{where}: parameter names {names} do not match "
                                 f"this model's {sorted(expected)}")
    for name, tensor in expected.items():
        if tuple(params[name].shape) != tuple(tensor.shape):
            raise ParameterFileError(
                f"{where}: {name} has shape {tuple(params[name].shape)}, this configuration "
                f"needs {tuple(tensor.shape)}{note}")
    return {k: v.float() for k, v in params.items()}


def initial(config: Config) -> tuple[model.Params, int]:
    """The θ a process starts from, and its version: the parameter file
    ``model.init``, else a seeded initialisation (version 0)."""
    shape = model.ModelShape.of(config)
    if config.model.init:
        return load(config.model.init, shape, config.series.frequency)
    return model.init_params(shape, seed=config.model.seed,
                             inner_lr=config.adaptation.inner_lr), 0
