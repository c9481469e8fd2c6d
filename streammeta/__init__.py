"""streammeta: a streaming online meta-learning daemon for time series."""

from __future__ import annotations

__version__ = "0.1.0"
