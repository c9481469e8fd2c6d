"""The step a checkpoint's entity state was kept at (``series.freq``).

An entity's last timestamp is kept in the frequency's units (milliseconds, or months
for a calendar frequency) and its ring holds values one step apart: restored under
another step, hourly state read as monthly made every record "late" for ever, and
read as half-hourly continued hourly histories as if they were half-hourly. Each
checkpoint records the step; state kept at another one is refused at restore.
"""

from __future__ import annotations

from typing import Any

from streammeta.errors import ParameterFileError
from streammeta.io.frequency import Frequency


def record(frequency: Frequency | None) -> dict[str, Any]:
    """What a checkpoint payload holds of ``frequency`` (nothing without one)."""
    if frequency is None:
        return {}
    return {"series": {"freq": frequency.name, "unit": frequency.unit, "step": frequency.step}}


def check(path: object, partition: int, payload: dict[str, Any],
          frequency: Frequency | None) -> None:
    """ParameterFileError if ``payload`` kept ``partition``'s state at another step
    than ``frequency``'s (the same step spelt otherwise, "h" or step_ms 3600000, is
    the same); files written before steps were recorded pass."""
    written = payload.get("series")
    if written is None or frequency is None:
        return
    if (written["unit"], int(written["step"])) != (frequency.unit, frequency.step):
        raise ParameterFileError(
            f"{path}: partition {partition}'s state was kept at series.freq "
            f"{written['freq']!r} (steps of {written['step']} {written['unit']}), this "
            f"configuration has {frequency.name!r} ({frequency.step} {frequency.unit}); "
            "move checkpoint.dir away to start its entities afresh")
