"""One running process per checkpoint.member in a local checkpoint directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streammeta.errors import ConfigError
from streammeta.persistence.claim import claim_member
from streammeta.persistence.store import LocalStore

HOLD = ("import sys; from streammeta.persistence.claim import claim_member; "
        "from streammeta.persistence.store import LocalStore; "
        "c = claim_member(LocalStore(sys.argv[1]), 'host-a'); print('held', flush=True); "
        "sys.stdin.read()")


def test_a_member_name_held_by_another_process_is_refused_until_it_dies(
        tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"held\n"
            with pytest.raises(ConfigError, match=rf"process {child.pid} on .* holds it"):
                claim_member(LocalStore(tmp_path), "host-a")
            other = claim_member(LocalStore(tmp_path), "host-b")  # another name: free
            assert other is not None
            other.release()
        finally:
            child.kill()  # a crash: nothing removes the lock file, the OS drops the lock
            child.wait(timeout=30)
    assert (tmp_path / "members" / "host-a.lock").exists()
    mine = claim_member(LocalStore(tmp_path), "host-a")  # the restart after the crash
    assert mine is not None
    with pytest.raises(ConfigError, match=r"checkpoint\.member"):
        claim_member(LocalStore(tmp_path), "host-a")
    mine.release()
    again = claim_member(LocalStore(tmp_path), "host-a")
    assert again is not None
    again.release()
