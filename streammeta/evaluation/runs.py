"""What an evaluation produced: one run per method on a task, and their aggregate
(``streammeta.evaluation.evaluate`` makes them, ``streammeta.evaluation.report``
writes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streammeta.evaluation import scores as M
from streammeta.evaluation.protocols import Task


@dataclass
class MethodRun:
    name: str
    seconds: float
    errors: M.ForecastErrors
    plot_point: np.ndarray  # (P, H) at Task plot rows
    plot_quantiles: np.ndarray | None  # (P, Q, H), engine methods only
    point: np.ndarray | None = None  # (N, H), kept only for --forecasts-out
    outer_runs: int = 0  # outer-loop runs during the stream
    promoted: int = 0  # of which promoted
    slices: tuple[str, ...] | None = None  # where it is scored; None: every slice


@dataclass
class Evaluation:
    task: Task
    runs: list[MethodRun]
    results: list[dict[str, Any]]
    plot_rows: np.ndarray
