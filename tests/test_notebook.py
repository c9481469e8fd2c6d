"""docs/notebook.md runs: M1 monthly through Forecaster.update in chunks gives the same
forecasts as evaluate's engine (issue 23)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.md"


def test_the_notebook_runs_and_its_outputs_hold() -> None:
    pytest.importorskip("pandas")
    failures, tried = doctest.testfile(str(NOTEBOOK), module_relative=False,
                                       optionflags=doctest.ELLIPSIS, report=True)
    assert tried >= 30, f"only {tried} examples found in {NOTEBOOK.name}"
    assert failures == 0, f"{failures} of {tried} examples of {NOTEBOOK.name} failed (above)"
