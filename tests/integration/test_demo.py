"""`streammeta demo` end to end: its own embedded broker, the bundled data, the daemon
and the outer loop, whose promoted versions must reach the forecasts it serves."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from streammeta import config as config_mod
from streammeta.serve.demo import run_demo

pytestmark = pytest.mark.integration


def test_the_demo_serves_versions_the_outer_loop_promotes(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Smaller meta-steps than the defaults, so that a 2-core machine runs many of them
    # within the replay; everything else is what `make demo` runs.
    config = config_mod.load(None, env={}).replace(
        "meta", steps=4, tasks_per_step=32, every_s=1.0).replace("metrics", port=0)

    def no_handlers(stop: Callable[[], None]) -> None:
        del stop

    assert run_demo(config, data=None, fmt="m4", rate=2500.0, duration=120.0,
                    install_handlers=no_handlers) == 0
    out = capsys.readouterr().out
    done = re.search(r"done: (\d+) observations → (\d+) forecasts, (\d+) dead letters", out)
    assert done is not None, out
    assert done.groups() == ("51100", "51100", "0")  # the bundled data, all of it
    tally = re.search(r"outer loop: (\d+) runs, (\d+) promoted, (\d+) rejected; "
                      r"forecasts ended on model v(\d+)", out)
    assert tally is not None, out
    runs, promoted, rejected, served = map(int, tally.groups())
    assert runs == promoted + rejected and promoted >= 1
    # The live progress shows the version the daemon serves advancing from v0 (every
    # run numbers a version, rejected ones too).
    shown = [int(v) for v in re.findall(r"model v(\d+)  online error", out)]
    assert shown[0] == 0 and shown == sorted(shown) and shown[-1] >= 1
    assert 1 <= served <= runs and shown[-1] <= served
