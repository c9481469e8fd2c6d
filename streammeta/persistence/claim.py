"""One running process per ``checkpoint.member`` in a checkpoint directory.

Files are named, pruned and θ's line kept by member name (``checkpoint.member``, else
``kafka.group_instance_id``, else the host name), so two processes writing under one
name prune each other's files and restore each other's θ: two replicas on one host
without either setting did. The name must stay what it was across restarts (a
restarted replica finds its own θ line and files by it), so instead of a name unique
per process (a PID) the daemon holds a lock on ``members/<member>.lock`` in a local
checkpoint directory while it runs: a second process of the same name is refused at
start naming the key and the holder. The lock is the operating system's (``flock``),
so a process that dies for any reason releases it; a file left behind blocks nothing.
Object stores have no such lock: there each replica needs its own name (docs/recovery.md).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from streammeta.errors import ConfigError
from streammeta.persistence.store import FileStore, LocalStore

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]


class MemberClaim:
    """The lock held on a member name; :meth:`release` (or the process's end) frees it."""

    def __init__(self, handle: int) -> None:
        self._handle: int | None = handle

    def release(self) -> None:
        if self._handle is not None:
            os.close(self._handle)  # closing the descriptor drops the flock
            self._handle = None


def claim_member(files: FileStore, member: str) -> MemberClaim | None:
    """Lock ``member`` in a local store's directory; ConfigError naming
    ``checkpoint.member`` if a running process holds it. None where no lock can be
    taken (object storage, a file system without locks: logged)."""
    if not isinstance(files, LocalStore) or fcntl is None:
        return None
    path = Path(files.root) / "members" / f"{member}.lock"
    try:
        path.parent.mkdir(exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        log.warning("%s: cannot open the member lock (%s); two processes named %r would "
                    "share their checkpoint files", path, exc, member)
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(handle)
        os.close(handle)
        raise ConfigError("checkpoint.member", member,
                          f"a name no running process uses in checkpoint.dir {files.url}: "
                          f"{holder} holds it (a replica's files and θ are kept by this name, "
                          "by default kafka.group_instance_id, else the host name): give "
                          "each replica its own checkpoint.member or kafka.group_instance_id"
                          ) from None
    except OSError as exc:  # e.g. ENOLCK on a network file system without locks
        os.close(handle)
        log.warning("%s: cannot lock (%s); two processes named %r would share their "
                    "checkpoint files", path, exc, member)
        return None
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.ftruncate(handle, 0)
    os.pwrite(handle, json.dumps(me).encode(), 0)
    return MemberClaim(handle)


def _describe(handle: int) -> str:
    """Who holds the lock, as its holder wrote it."""
    try:
        holder = json.loads(os.pread(handle, 4096, 0) or b"{}")
        return (f"process {holder['pid']} on {holder['host']} (since {holder['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
