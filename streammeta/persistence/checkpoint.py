"""Checkpoints: everything the daemon's state depends on, written atomically.

A checkpoint file holds the parameters and their version, the state rows of the
entities of each input partition the writer owned, the next input offset of each
of those partitions, and the external memory of tasks, in the checksummed,
atomically written container of ``streammeta.persistence.container``; a damaged
file is skipped and the previous good one is used. File names sort by
time (``ckpt-<written_at_ms>-<member>.smck``), several replicas can share one
directory, and each keeps its own last ``keep`` files.

Periodic checkpoints do not stop the loop for the write: the loop thread takes a
snapshot (copies of the owned partitions' rows, their positions and θ) and a
thread writes it; revocation and shutdown write synchronously, after any write
in flight (``docs/recovery.md``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from streammeta.config import CheckpointConfig
from streammeta.errors import ParameterFileError
from streammeta.online.model import Params
from streammeta.persistence.container import FORMAT, Payload, read_file, write_file

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{13,})-([A-Za-z0-9_.-]+)\.smck$")


class CheckpointStore:
    """A directory of checkpoints, possibly shared by several replicas."""

    def __init__(self, directory: str | os.PathLike[str], member: str, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.member = re.sub(r"[^A-Za-z0-9_.-]", "_", member) or "member"
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)
        self.corrupt_seen = 0
        self._held: dict[str, frozenset[int]] = {}  # file name -> partitions it holds

    def save(self, payload: Payload) -> Path:
        """Write ``payload``; named by its ``written_at`` (ms) if it has one (a
        snapshot's time, when the write comes later), else by the time now."""
        written_at = int(payload.get("written_at") or time.time() * 1000)
        files = self._files()
        if files:  # names must keep growing even if the clock steps back
            written_at = max(written_at, _parts(files[0])[0] + 1)
        path = self.directory / f"ckpt-{written_at:013d}-{self.member}.smck"
        write_file(path, {**payload, "format": FORMAT, "written_at": written_at,
                          "member": self.member})
        self._held[path.name] = frozenset(payload.get("partitions", {}))
        self._prune()
        return path

    def newest(self) -> Iterator[tuple[Path, Payload]]:
        """Valid checkpoints, newest first; damaged ones are logged and skipped."""
        for path in self._files():
            try:
                yield path, read_file(path)
            except ParameterFileError as exc:
                self.corrupt_seen += 1
                log.warning("skipping damaged checkpoint: %s", exc)

    def latest_for(self, partition: int) -> tuple[Path, Payload] | None:
        """The newest valid checkpoint that holds ``partition``'s state."""
        for _, path, payload in self.holders([partition]):
            return path, payload
        return None

    def holders(self, partitions: list[int]) -> Iterator[tuple[int, Path, Payload]]:
        """(partition, file, payload) for each partition's newest valid checkpoint
        that holds it, reading each file at most once, newest first."""
        missing = set(partitions)
        for path, payload in self.newest():
            if not missing:
                return
            for p in sorted(missing & set(payload.get("partitions", {}))):
                missing.discard(p)
                yield p, path, payload

    def oldest_own_s(self) -> float | None:
        """Write time (Unix seconds) of this member's oldest kept checkpoint."""
        mine = [_parts(p)[0] for p in self._files() if _parts(p)[1] == self.member]
        return min(mine) / 1000 if mine else None

    def _files(self) -> list[Path]:
        files = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(files, key=lambda p: p.name, reverse=True)

    def _prune(self) -> None:
        """Keep this member's newest ``keep`` files, and beyond them every file that
        is the member's newest holder of some partition: a replica that waits long
        for its assignment writes checkpoints holding no partition, and they must
        not push out the files its previous run left for those partitions."""
        covered: set[int] = set()
        mine = [p for p in self._files() if _parts(p)[1] == self.member]
        for i, path in enumerate(mine):
            held = self._partitions_held(path)
            if i < self.keep or not held <= covered:
                covered |= held
            else:
                path.unlink(missing_ok=True)
                self._held.pop(path.name, None)
        for stale in self.directory.glob("*.smck.tmp"):  # left by a crash mid-write
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)


    def _partitions_held(self, path: Path) -> frozenset[int]:
        """The partitions a file holds (read once; a damaged file holds none)."""
        if path.name not in self._held:
            try:
                self._held[path.name] = frozenset(read_file(path).get("partitions", {}))
            except ParameterFileError:
                self._held[path.name] = frozenset()
        return self._held[path.name]


def _parts(path: Path) -> tuple[int, str]:
    """(written_at ms, member) of a checkpoint file name."""
    match = _NAME.match(path.name)
    assert match is not None
    return int(match.group(1)), match.group(2)


class Checkpointed(Protocol):
    """What a checkpoint holds the state of (``streammeta.online.engine.Engine``)."""

    def serving(self) -> tuple[Params, int]: ...
    def swap(self, params: Params, version: int) -> None: ...
    def export_partition(self, partition: int) -> dict[str, Any]: ...
    def restore_partition(self, partition: int, state: dict[str, Any]) -> int: ...
    def drop_partitions(self, partitions: list[int], spilled: bool = True) -> None: ...
    def checkpointed(self, oldest_kept_s: Callable[[], float | None]) -> None: ...
    def export_memory(self) -> dict[str, object] | None: ...
    def restore_memory(self, state: dict[str, object]) -> int | None: ...


@dataclass(frozen=True)
class Written:
    """A checkpoint file written: where, how big, how long the write took."""

    path: Path
    size: int
    seconds: float


class Checkpointer:
    """Saves and restores the engine's state per input partition, with its offsets.

    ``positions[p]`` is the next offset of partition p whose record has *not* yet
    been applied to state. A checkpoint stores it beside p's entity rows; a replica
    that restores p seeks to it, so every record is applied to state exactly once.

    :meth:`save_in_background` (periodic checkpoints) snapshots on the calling
    thread and writes on another; at most one write is in flight, and a save that
    comes due meanwhile waits for the next call instead of queueing. :meth:`save`,
    :meth:`release` and :meth:`restore_partitions` first wait for that write, so
    files appear in the order their snapshots were taken and a restore never misses
    one. Only the loop thread calls these methods.
    """

    def __init__(self, store: CheckpointStore, engine: Checkpointed, config: CheckpointConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.engine = engine
        self.every_s = config.every_s
        self.every_records = config.every_records
        self.clock = clock
        self.positions: dict[int, int] = {}
        self._since_records = 0
        self._last = clock()
        self._writer: threading.Thread | None = None
        self._outcomes: list[Written | Exception] = []  # of background writes, not yet taken

    def restore_model(self) -> int | None:
        """Serve the parameters of the newest checkpoint; its version, or None if none."""
        for path, payload in self.store.newest():
            model = payload.get("model")
            if model:
                self.engine.swap(model["params"], int(model["version"]))
                log.info("restored model version %d from %s", model["version"], path.name)
                if "memory" in payload:
                    try:
                        entries = self.engine.restore_memory(payload["memory"])
                    except ValueError as exc:
                        raise ParameterFileError(f"{path}: {exc}") from None
                    if entries is not None:
                        log.info("restored %d memory entries", entries)
                return int(model["version"])
        return None

    def restore_partitions(self, partitions: list[int]) -> dict[int, int]:
        """Load the newest state of each partition; → the offsets to resume from.

        Resident state of a partition with no checkpoint is dropped: it cannot be
        matched to the committed offset the consumer will resume from.
        """
        self.wait()  # a write in flight may hold the newest state of these partitions
        resume: dict[int, int] = {}
        self.engine.drop_partitions(partitions, spilled=False)
        for p in partitions:
            self.positions.pop(p, None)
        for p, path, payload in self.store.holders(partitions):
            state = payload["partitions"][p]
            try:
                entities = self.engine.restore_partition(p, state)
            except ParameterFileError as exc:
                raise ParameterFileError(f"{path}: {exc}") from None
            resume[p] = self.positions[p] = int(state["offset"])
            log.info("partition %d: restored %d entities from %s, resuming at offset %d",
                     p, entities, path.name, resume[p])
        return resume

    def advance(self, offsets: dict[int, int], records: int) -> None:
        """Records up to these next offsets are now applied to state."""
        self.positions.update(offsets)
        self._since_records += records

    def due(self) -> bool:
        return (self._since_records >= self.every_records
                or self.clock() - self._last >= self.every_s)

    def snapshot(self, partitions: list[int] | None = None) -> Payload:
        """A copy of the state of the owned ``partitions`` (all owned if None) and of
        θ, taken now: later processing does not change it."""
        owned = sorted(self.positions if partitions is None else
                       [p for p in partitions if p in self.positions])
        params, version = self.engine.serving()
        payload: dict[str, Any] = {
            "written_at": int(time.time() * 1000),  # the file's name: the state's time
            "model": {"version": version,
                      "params": {k: v.detach().clone() for k, v in params.items()}},
            # Rows, and which spill file holds each evicted entity.
            "partitions": {p: {"offset": self.positions[p], **self.engine.export_partition(p)}
                           for p in owned},
        }
        memory = self.engine.export_memory()
        if memory is not None:
            payload["memory"] = memory
        self._since_records = 0
        self._last = self.clock()
        return payload

    def save(self, partitions: list[int] | None = None) -> Path:
        """Write a checkpoint now, on this thread, after any write in flight."""
        self.wait()
        path = self.store.save(self.snapshot(partitions))
        self._written()
        return path

    def save_in_background(self) -> bool:
        """Snapshot every owned partition now and write it on a thread; False (and
        nothing done) while the previous write is still running."""
        if self.writing:
            return False
        payload = self.snapshot()
        self._writer = threading.Thread(target=self._write, args=(payload,),
                                        name="checkpoint-writer", daemon=True)
        self._writer.start()
        return True

    @property
    def writing(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    def wait(self) -> None:
        """Until the write in flight (if any) is on disk or failed."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def outcomes(self) -> list[Written | Exception]:
        """What background writes finished since the last call: files or errors."""
        done, self._outcomes = self._outcomes, []
        if any(isinstance(outcome, Written) for outcome in done):
            self._written()
        return done

    def _written(self) -> None:
        """After a file is on disk, on the loop thread (the spill store is not shared)."""
        self.engine.checkpointed(self.store.oldest_own_s)

    def _write(self, payload: Payload) -> None:
        started = time.perf_counter()
        try:
            path = self.store.save(payload)
            outcome: Written | Exception = Written(path, path.stat().st_size,
                                                   time.perf_counter() - started)
        except Exception as exc:  # reported to the loop by outcomes()
            outcome = exc
        self._outcomes.append(outcome)  # list.append is atomic under the GIL

    def release(self, partitions: list[int]) -> None:
        """Partitions leave this replica: save their state, then forget it (even if
        the save failed: the new owner then restores an older checkpoint and
        replays from its offset)."""
        try:
            if any(p in self.positions for p in partitions):
                self.save(partitions)
        finally:
            self.engine.drop_partitions(partitions)
            for p in partitions:
                self.positions.pop(p, None)
