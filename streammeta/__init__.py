"""streammeta: a streaming online meta-learning daemon for time series.

``streammeta.Forecaster`` (:mod:`streammeta.forecaster`) runs the daemon's engine and
outer loop on pandas DataFrames, without Kafka; it is imported on first use, so that
the daemon and the command line do not load pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Forecaster", "__version__"]

if TYPE_CHECKING:
    from streammeta.forecaster import Forecaster


def __getattr__(name: str) -> Any:
    if name == "Forecaster":
        from streammeta.forecaster import Forecaster

        return Forecaster
    raise AttributeError(f"module 'streammeta' has no attribute {name!r}")
