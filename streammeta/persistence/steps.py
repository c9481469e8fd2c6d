"""The step a checkpoint's entity state was kept at (``series.freq``).

An entity's last timestamp is kept in the frequency's units (milliseconds, or months
for a calendar frequency) and its ring holds values one step apart: restored under
another step, hourly state read as monthly made every record "late" for ever, and
read as half-hourly continued hourly histories as if they were half-hourly. Each
checkpoint records the step; state kept at another one is refused at restore.

The quantile levels too (``series.quantiles``): θ's quantile outputs and each
entity's calibration offsets were learned for them, and as many other levels fit
every tensor, so a checkpoint of 0.1/0.5/0.9 restored under 0.05/0.5/0.95 served
the old intervals under the new labels (a parameter file is refused the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streammeta.errors import ParameterFileError
from streammeta.io.frequency import Frequency


def record(frequency: Frequency | None, quantiles: Sequence[float] = ()) -> dict[str, Any]:
    """What a checkpoint payload holds of ``frequency`` (nothing without one) and of the
    quantile levels its θ and state were learned for."""
    out: dict[str, Any] = {"quantiles": [float(q) for q in quantiles]} if quantiles else {}
    if frequency is not None:
        out["series"] = {"freq": frequency.name, "unit": frequency.unit,
                         "step": frequency.step}
    return out


def check_levels(path: object, payload: dict[str, Any], quantiles: Sequence[float],
                 what: str) -> None:
    """ParameterFileError if ``payload`` was learned for other quantile levels (files
    written before the levels were recorded pass)."""
    written = payload.get("quantiles")
    if written is None or [round(float(q), 9) for q in written] == [
            round(float(q), 9) for q in quantiles]:
        return
    raise ParameterFileError(
        f"{path}: {what} learned for series.quantiles = {[float(q) for q in written]}, "
        f"this configuration has {[float(q) for q in quantiles]}; move checkpoint.dir away "
        "to start afresh, or keep the levels")


def check(path: object, partition: int, payload: dict[str, Any],
          frequency: Frequency | None, quantiles: Sequence[float] = ()) -> None:
    """ParameterFileError if ``payload`` kept ``partition``'s state at another step
    than ``frequency``'s (the same step spelt otherwise, "h" or step_ms 3600000, is
    the same) or for other quantile levels; files written before steps were recorded
    pass."""
    if quantiles:
        check_levels(path, payload, quantiles, f"partition {partition}'s state was")
    written = payload.get("series")
    if written is None or frequency is None:
        return
    if (written["unit"], int(written["step"])) != (frequency.unit, frequency.step):
        raise ParameterFileError(
            f"{path}: partition {partition}'s state was kept at series.freq "
            f"{written['freq']!r} (steps of {written['step']} {written['unit']}), this "
            f"configuration has {frequency.name!r} ({frequency.step} {frequency.unit}); "
            "move checkpoint.dir away to start its entities afresh")
