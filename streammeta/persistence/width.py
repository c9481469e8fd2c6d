"""The trunk width (model.hidden) of θ, and the width and units of a parameter file.

Apart from ``params`` so that ``Config.resolved`` can read a file's width
(``model.hidden = 0``) and units (``series.transform = "auto"``) without importing
what imports the configuration.
"""

from __future__ import annotations

import functools
from pathlib import Path

from streammeta.errors import ParameterFileError
from streammeta.persistence.container import read_file


def width(path: str | Path) -> int:
    """The trunk width (model.hidden) of the θ in the parameter file ``path``."""
    return _described(path)[0]


def units(path: str | Path) -> str:
    """The ``series.transform`` the parameter file ``path`` was learned in (files that
    do not record it: "none", as ``params.load`` reads them)."""
    return _described(path)[1]


def _described(path: str | Path) -> tuple[int, str]:
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ParameterFileError(f"{path}: {exc.strerror or exc}") from exc
    return _read(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int) -> tuple[int, str]:
    """Read once per file version: a configuration is resolved in several places."""
    payload = read_file(Path(path))
    if payload.get("kind") != "params":
        raise ParameterFileError(f"{path}: not a parameter file (kind {payload.get('kind')!r})")
    shape = payload.get("shape") or {}
    return params_width(path, payload.get("params")), str(shape.get("transform", "none"))


def params_width(where: str, params: object) -> int:
    """The width of θ ``params`` (the columns of its first layer)."""
    try:
        return int(params["w1"].shape[1])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ParameterFileError(f"{where}: not θ of this model (no first layer w1)") from exc
