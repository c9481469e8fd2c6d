"""`streammeta demo` end to end: its own embedded broker, the bundled data, the daemon
and the outer loop, whose promoted versions must reach the forecasts it serves."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streammeta import config as config_mod
from streammeta.serve.demo import run_demo

pytestmark = pytest.mark.integration


def test_the_demo_serves_versions_the_outer_loop_promotes(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Smaller meta-steps than the defaults, so that a 2-core machine runs many of them
    # within the replay, and a tolerance that promotes all but a much worse candidate:
    # this test is about the way promoted versions take, not the verdicts' rule.
    config = config_mod.load(None, env={}).replace(
        "meta", steps=4, tasks_per_step=32, every_s=1.0, tolerance=1.0).replace(
        "metrics", port=0)

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
    assert runs == promoted + rejected and promoted >= 1, out
    # The live progress shows the version the daemon serves advancing from v0 (every
    # run numbers a version, rejected ones too) and ends on the one it served last.
    lines = re.findall(r"model v(\d+)  online error|outer loop: v(\d+) (promoted|rejected)",
                       out)
    shown = [int(v) for v, _, _ in lines if v]
    assert shown[0] == 0 and shown == sorted(shown) and shown[-1] == served, out
    # A version promoted while the daemon ran is served from its next loop on: of the
    # progress lines after the verdict's, the first may come from the loop that was
    # under way, the second from the next one (the last line, printed after the loop,
    # does not count: a verdict in the last loop is never served).
    reached = [int(k) for i, (_, k, verdict) in enumerate(lines) if verdict == "promoted"
               and sum(1 for v, _, _ in lines[i + 1:] if v) >= 3]
    assert reached and served >= max(reached), out
    assert served <= runs


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_stops_the_demos_broker(signum: int, tmp_path: Path) -> None:
    # `timeout 5 streammeta demo`, or a kill while it starts: the broker runs in a
    # session of its own (a terminal's Ctrl-C must not stop it before the daemon), so
    # the demo must stop it on its way out. SIGTERM before the daemon's handlers left
    # it running, orphaned, holding its port; Ctrl-C there printed a traceback.
    env = {**os.environ, "STREAMMETA_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1"}
    # Ctrl-C raises KeyboardInterrupt, as in a terminal (a test worker may ignore SIGINT,
    # which a child inherits). Set in the child, not by preexec_fn: that forks the whole
    # worker, which fails with ENOMEM once it holds large reservations.
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)"
             "; sys.argv = ['streammeta', 'demo', '--duration', '60']"
             "; runpy.run_module('streammeta', run_name='__main__')")
    demo = subprocess.Popen([sys.executable, "-c", start], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert demo.stdout is not None
    port = None
    for line in demo.stdout:  # the signal as soon as the broker is up
        found = re.search(r"embedded Tansu broker on 127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            demo.send_signal(signum)
            break
    out, err = demo.communicate(timeout=60)
    assert port is not None, out + err
    listening = _listening(port, within_s=5.0)
    if listening:  # the test's own leftover: found by its unique port, stopped
        found = subprocess.run(["pgrep", "-f", f"listener-url tcp://127.0.0.1:{port} "],
                               capture_output=True, text=True, check=False).stdout.split()
        for pid in found:
            os.kill(int(pid), signal.SIGINT)
    assert not listening, f"the broker on port {port} outlived the demo\n{err}"
    assert demo.returncode in (0, 130), (demo.returncode, err)
    assert "Traceback" not in err, err


def _listening(port: int, within_s: float) -> bool:
    """Whether something still accepts connections on ``port`` after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.2)
