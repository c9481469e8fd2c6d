"""What one trigger of the outer loop trains and judges on.

By entity once enough entities have a whole task of history: held-out entities'
newest windows, later in time than any training stretch, judge the candidate.
Before that, young tasks alone, once enough new entities have had their first H
forecasts. Failing both, a population too small to hold entities out (a few
long-lived series) is split in time: every entity trains on stretches that end
before the query targets of its newest task, and that task judges
(docs/meta-learning.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor

from streammeta.meta.layout import TaskLayout
from streammeta.meta.tasks import TaskBuffer, held_out

# Training entities before the loop judges by entity: a batch of tasks from fewer
# would repeat the same few series in every meta-step.
MIN_TRAIN_ENTITIES = 8
# Held-out entities that judge a candidate: one entity's windows decide by chance.
MIN_HELD_ENTITIES = 2
# New entities' rows before young tasks are drawn from them alone: fewer would replay
# the same few births over and over; until then every row with enough values serves.
MIN_BORN_ROWS = 16


class Plan(NamedTuple):
    """Task buffer rows a trigger trains and judges on."""

    train: Tensor  # whole-window tasks are drawn from these rows
    held: Tensor  # rows whose newest whole-window task judges the candidate
    young_train: Tensor
    young_held: Tensor
    skip: int  # newest values of a training row that its stretches leave out
    per_step: int  # tasks per meta-step


def split_rows(buffer: TaskBuffer, span: int, holdout: float,
               born: bool = False) -> tuple[Tensor, Tensor]:
    """Rows with ``span`` values: training entities, and held-out entities (a fixed
    share of rows, chosen by row number, never trained on). ``born``: only rows that
    still hold their entity's first value, when there are enough."""
    rows = buffer.full_rows(span)
    if born:
        new = buffer.born_rows(span)
        rows = new if len(new) >= MIN_BORN_ROWS else rows
    holdout_rows = held_out(rows, holdout)
    return rows[~holdout_rows], rows[holdout_rows]


def plan(buffer: TaskBuffer, layout: TaskLayout, tasks_per_step: int, holdout: float,
         recent: int, young_count: Callable[[int], int]) -> Plan | None:
    """The next trigger's tasks; None until one of the three plans can run.
    ``recent``: newest values training stretches leave to the judge;
    ``young_count(n)``: how many of n tasks are young (0: no young tasks)."""
    train, held = split_rows(buffer, layout.length + recent, holdout)
    # Young tasks start at the oldest value a row holds: the entity's birth while it
    # is young, so the newest arrivals teach θ too.
    young_train, young_held = split_rows(buffer, layout.young_length, holdout, born=True)
    if len(train) >= MIN_TRAIN_ENTITIES and len(held) >= MIN_HELD_ENTITIES:
        return Plan(train, held, young_train, young_held, recent,
                    min(tasks_per_step, len(train)))
    if (young_count(tasks_per_step) and len(young_train) >= MIN_TRAIN_ENTITIES
            and len(young_held) >= MIN_HELD_ENTITIES):
        return Plan(train[:0], held[:0], young_train, young_held, recent,
                    min(tasks_per_step, len(young_train)))
    rows = buffer.full_rows(layout.length + layout.query_span)
    if not len(rows):
        return None
    # A few rows, many stretches: a whole batch of tasks at random points of them.
    return Plan(rows, rows, rows[:0], rows[:0], layout.query_span, tasks_per_step)
