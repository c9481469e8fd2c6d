"""Checkpoints: everything the daemon's state depends on, written atomically.

A checkpoint file holds the parameters and their version, the state rows of the
entities of each input partition the writer owned, the next input offset of each
of those partitions, the external memory of tasks and the experts' population
record, in the checksummed container of ``streammeta.persistence.container``. Files
live in a store (``streammeta.persistence.store``: a directory or object storage) that
publishes each atomically, so a crash leaves either the old or the new file,
never half of one; a damaged file fails its checksum and the previous good one is
used. File names sort by time (``ckpt-<written_at_ms>-<member>.smck``), several
replicas can share one store, and each keeps its own last ``keep`` files. Each
partition's state carries the fencing epoch of the ownership that wrote it.

Periodic checkpoints do not stop the loop for the write: the loop thread takes a
snapshot (copies of the owned partitions' rows, their positions and θ) and a
thread writes it; revocation and shutdown write synchronously, after any write
in flight (``docs/recovery.md``).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from streammeta.config import CheckpointConfig
from streammeta.errors import ParameterFileError
from streammeta.io.frequency import Frequency
from streammeta.meta.versions import coherent
from streammeta.online.model import ModelShape, Params
from streammeta.persistence import steps
from streammeta.persistence.container import FORMAT, Payload, pack, unpack
from streammeta.persistence.manifest import Entry, Index, encode, manifest_name
from streammeta.persistence.params import checked
from streammeta.persistence.store import FileStore, open_store
from streammeta.persistence.width import params_width

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """A checkpoint file written: where (path or URL), how big, how long it took."""

    path: str
    size: int
    seconds: float


class CheckpointStore:
    """Checkpoints in a :class:`~streammeta.persistence.store.FileStore` (a directory
    or an object-store prefix), possibly shared by several replicas.

    Beside each data file a small manifest (``streammeta.persistence.manifest``)
    names the partitions it holds and their fencing epochs. For each partition a
    restore takes the file with the highest epoch, the newest of those: a stale
    owner's later file never wins over the new owner's (``docs/recovery.md``).
    """

    def __init__(self, directory: str | os.PathLike[str] | FileStore, member: str,
                 keep: int = 3, options: dict[str, Any] | None = None) -> None:
        self.files = (open_store(os.fspath(directory), options)
                      if isinstance(directory, str | os.PathLike) else directory)
        self.member = re.sub(r"[^A-Za-z0-9_.-]", "_", member) or "member"
        self.keep = keep
        self.corrupt_seen = 0
        self.fenced_seen = 0  # partitions left out of a save: a newer owner published them
        self._damaged: set[str] = set()
        self._index = Index(self.files, self._load)

    def save(self, payload: Payload) -> Written:
        """Write ``payload``; named by its ``written_at`` (ms) if it has one (a
        snapshot's time, when the write comes later), else by the time now.

        A partition for which another file holds a higher epoch is left out: its
        ownership moved on, and this writer must not publish state for it."""
        started = time.perf_counter()
        index = self._index.entries()
        written_at = int(payload.get("written_at") or time.time() * 1000)
        if index:  # names must keep growing even if the clock steps back
            written_at = max(written_at, index[0].written_at + 1)
        partitions = dict(payload.get("partitions", {}))
        newest_epoch: dict[int, int] = {}
        for entry in index:
            for p, epoch in entry.epochs.items():
                newest_epoch[p] = max(epoch, newest_epoch.get(p, -1))
        fenced = sorted(p for p, state in partitions.items()
                        if newest_epoch.get(p, -1) > int(state.get("epoch", -1)))
        if fenced:
            self.fenced_seen += len(fenced)
            log.warning("not publishing partitions %s: a newer owner has published them "
                        "(epochs %s); this replica lost them", fenced,
                        {p: (partitions[p].get("epoch", -1), newest_epoch[p]) for p in fenced})
            partitions = {p: s for p, s in partitions.items() if p not in fenced}
        name = f"ckpt-{written_at:013d}-{self.member}.smck"
        data = pack({**payload, "partitions": partitions, "format": FORMAT,
                     "written_at": written_at, "member": self.member})
        self.files.write_atomic(name, data)
        self.files.write_atomic(manifest_name(name), encode(
            name, len(data), hashlib.sha256(data).hexdigest(), partitions))
        self._index.add(name, {p: int(s.get("epoch", -1)) for p, s in partitions.items()})
        self._prune()
        return Written(self.files.locate(name), len(data), time.perf_counter() - started)

    def newest(self, member: str | None = None) -> Iterator[tuple[str, Payload]]:
        """Valid checkpoints (of ``member`` only, if given), newest first; damaged ones
        are logged and skipped."""
        for entry in self._index.entries():
            if member is not None and entry.member != member:
                continue
            payload = self._load(entry.name)
            if payload is not None:
                yield entry.name, payload

    def latest_for(self, partition: int) -> tuple[str, Payload] | None:
        """The valid checkpoint a restore of ``partition`` uses."""
        for _, name, payload in self.holders([partition]):
            return name, payload
        return None

    def holders(self, partitions: list[int]) -> Iterator[tuple[int, str, Payload]]:
        """(partition, file, payload) for each partition's best valid checkpoint:
        highest epoch, then newest. Consecutive partitions of one file read it once."""
        index = self._index.entries()
        def best_first(p: int) -> list[Entry]:
            return sorted((e for e in index if p in e.epochs),
                          key=lambda e: (e.epochs[p], e.written_at), reverse=True)

        choices = {p: best_first(p) for p in partitions}
        loaded: tuple[str, Payload | None] = ("", None)
        for p in sorted(choices, key=lambda p: choices[p][0].name if choices[p] else ""):
            for entry in choices[p]:
                if loaded[0] != entry.name:
                    loaded = ("", None)  # let the previous payload go before reading
                    loaded = (entry.name, self._load(entry.name))
                payload = loaded[1]
                if payload is not None and p in payload.get("partitions", {}):
                    yield p, entry.name, payload
                    break

    def oldest_own_s(self) -> float | None:
        """Write time (Unix seconds) of this member's oldest kept checkpoint."""
        mine = [e.written_at for e in self._index.entries() if e.member == self.member]
        return min(mine) / 1000 if mine else None

    def _load(self, name: str) -> Payload | None:
        if name in self._damaged:
            return None
        try:
            return unpack(self.files.read(name), self.files.locate(name))
        except FileNotFoundError:  # pruned since it was listed: a newer one exists
            log.info("checkpoint %s was removed meanwhile", name)
            return None
        except ParameterFileError as exc:  # a store that cannot be read raises instead
            self.corrupt_seen += 1
            self._damaged.add(name)
            log.warning("skipping damaged checkpoint: %s", exc)
            return None

    def _prune(self) -> None:
        """Keep this member's newest ``keep`` files, and beyond them every file that
        is the member's newest holder of some partition: a replica that waits long
        for its assignment writes checkpoints holding no partition, and they must
        not push out the files its previous run left for those partitions."""
        covered: set[int] = set()
        mine = [e for e in self._index.entries() if e.member == self.member]
        for i, entry in enumerate(mine):
            held = set(entry.epochs)
            if i < self.keep or not held <= covered:
                covered |= held
            else:  # the manifest first: a data file without one is still found
                self.files.delete(manifest_name(entry.name))
                self.files.delete(entry.name)
                self._index.forget(entry.name)


class Checkpointed(Protocol):
    """What a checkpoint holds the state of (``streammeta.online.engine.Engine``)."""

    shape: ModelShape  # the configured model's
    automatic_width: bool  # model.hidden = 0
    def serving(self) -> tuple[Params, int]: ...
    def swap(self, params: Params, version: int) -> None: ...
    def export_partition(self, partition: int) -> dict[str, Any]: ...
    def restore_partition(self, partition: int, state: dict[str, Any]) -> int: ...
    def drop_partitions(self, partitions: list[int], spilled: bool = True) -> None: ...
    def checkpointed(self, oldest_kept_s: Callable[[], float | None]) -> None: ...
    def export_memory(self) -> dict[str, object] | None: ...
    def restore_memory(self, state: dict[str, object]) -> int | None: ...
    def export_experts(self) -> dict[str, object] | None: ...
    def restore_experts(self, state: dict[str, object]) -> bool: ...


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
                 clock: Callable[[], float] = time.monotonic, *,
                 frequency: Frequency | None = None) -> None:  # series.freq: persistence/steps
        self.store, self.engine, self.frequency = store, engine, frequency
        self.every_s, self.every_records = config.every_s, config.every_records
        self.clock = clock
        self.positions: dict[int, int] = {}
        self.epochs: dict[int, int] = {}  # partition -> fencing epoch of this ownership
        self.published: set[int] = set()  # owned partitions some checkpoint file holds
        self.line = f"local:{store.member}"  # θ's line (meta/versions.py): φ of others reset
        self.restores_params = True
        self._since_records = 0
        self._last = clock()
        self._writer: threading.Thread | None = None
        self._outcomes: list[Written | Exception] = []  # of background writes, not yet taken

    def restore_model(self) -> int | None:
        """Serve the parameters of the newest checkpoint (this member's own first: its
        line); its version, or None if none. Without :attr:`restores_params` (role
        ingest, which serves the versions topic's θ): only the memory and the experts'
        record."""
        for path, payload in itertools.chain(self.store.newest(self.store.member),
                                             self.store.newest()):
            model = payload.get("model")
            if model:
                if self.restores_params:
                    _serve(path, payload, self.engine)
                if "memory" in payload:
                    try:
                        entries = self.engine.restore_memory(payload["memory"])
                    except ValueError as exc:
                        raise ParameterFileError(f"{path}: {exc}") from None
                    if entries is not None:
                        log.info("restored %d memory entries", entries)
                if "experts" in payload and not self.engine.restore_experts(payload["experts"]):
                    log.warning("%s: the experts' population record does not fit this "
                                "configuration; it starts again", path)
                return int(model["version"])
        return None

    def restore_partitions(self, partitions: list[int], generation: int = 0) -> dict[int, int]:
        """Load the state of each partition; → the offsets to resume from.

        Resident state of a partition with no checkpoint is dropped: it cannot be
        matched to the committed offset the consumer will resume from. This
        ownership's epoch is above both the consumer-group ``generation`` that
        assigned the partition and the restored state's epoch, so a previous owner
        that still writes (a zombie) can never be preferred over this one.
        """
        self.wait()  # a write in flight may hold the newest state of these partitions
        resume: dict[int, int] = {}
        self.engine.drop_partitions(partitions, spilled=False)
        for p in partitions:
            self.positions.pop(p, None)
            self.epochs[p] = max(generation, 0)
            self.published.discard(p)
        for p, path, payload in self.store.holders(partitions):
            steps.check(path, p, payload, self.frequency, self.engine.shape.quantiles)
            state = payload["partitions"][p]
            written = payload.get("model") or {}
            if not coherent(written.get("line"), int(written.get("version", 0)), self.line):
                _reset_phi(state, self.engine.serving()[0]["phi0"])
                log.info("partition %d: φ were adapted under version %s of another line "
                         "(%r): reset to the served φ₀", p, written.get("version"),
                         written.get("line"))
            try:
                entities = self.engine.restore_partition(p, state)
            except ParameterFileError as exc:
                raise ParameterFileError(f"{path}: {exc}") from None
            resume[p] = self.positions[p] = int(state["offset"])
            self.published.add(p)
            self.epochs[p] = max(generation, int(state.get("epoch", -1)) + 1)
            log.info("partition %d: restored %d entities from %s (epoch %d), resuming at "
                     "offset %d", p, entities, path, self.epochs[p], resume[p])
        return resume

    def expire(self, partition: int, earliest: int, keep_state: bool) -> None:
        """The restored offset of ``partition`` is below the earliest one the topic
        still holds: continue from ``earliest``, with the state kept (its entities
        then see a gap) or dropped (they start cold)."""
        if not keep_state:
            self.engine.drop_partitions([partition])
        self.positions[partition] = earliest

    def advance(self, offsets: dict[int, int], records: int) -> None:
        """Records up to these next offsets are now applied to state."""
        self.positions.update(offsets)
        self._since_records += records

    def unpublished(self, partitions: Iterable[int]) -> bool:
        """Whether one of ``partitions`` has no checkpoint file yet: once its offsets
        are committed, a restart would resume there without its entities' state."""
        return any(p not in self.published for p in partitions)

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
            "model": {"version": version, "line": self.line,
                      "params": {k: v.detach().clone() for k, v in params.items()}},
            # Rows, and which spill file holds each evicted entity.
            "partitions": {p: {"offset": self.positions[p], "epoch": self.epochs.get(p, 0),
                               **self.engine.export_partition(p)} for p in owned},
        }
        payload.update(steps.record(self.frequency, self.engine.shape.quantiles))  # units, levels
        memory = self.engine.export_memory()
        if memory is not None:
            payload["memory"] = memory
        record = self.engine.export_experts()
        if record is not None:
            payload["experts"] = record
        self._since_records = 0
        self._last = self.clock()
        return payload

    def save(self, partitions: list[int] | None = None) -> Written:
        """Write a checkpoint now, on this thread, after any write in flight."""
        self.wait()
        payload = self.snapshot(partitions)
        written = self.store.save(payload)
        self.published.update(payload["partitions"])
        self._written()
        return written

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
        try:
            outcome: Written | Exception = self.store.save(payload)
            self.published.update(payload["partitions"])  # set.update: atomic under the GIL
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
                self.epochs.pop(p, None)
                self.published.discard(p)


def _reset_phi(state: dict[str, Any], phi0: Any) -> None:
    """φ of a partition's resident rows back to ``phi0`` (evicted ones are paged in as
    they were written: a limit of this rule, docs/recovery.md)."""
    rows = state.get("rows")
    if rows and "phi" in rows and len(rows["phi"]):
        rows["phi"] = phi0.detach().to(rows["phi"].dtype).expand_as(rows["phi"]).clone()
        if "anchor" in rows:
            rows["anchor"] = rows["anchor"].new_zeros(rows["anchor"].shape)


def _serve(path: object, payload: dict[str, Any], engine: Checkpointed) -> None:
    """Serve a checkpoint's θ if it fits the configured model but for its width; else
    ParameterFileError naming the file and the tensor (it would fail in the first batch)
    or the quantile levels it was learned for."""
    steps.check_levels(path, payload, engine.shape.quantiles, "θ was")
    model = payload["model"]
    params = checked(str(path), model["params"], engine.shape, " (the checkpoint was "
                     "written with other series/model settings)", any_width=True)
    engine.swap(params, int(model["version"]))
    _log_restored(path, model, engine)


def _log_restored(path: object, model: dict[str, Any], engine: Checkpointed) -> None:
    """θ restored from a checkpoint is served in the shape it was written with; say so
    where that is not the configured width (e.g. written before the default changed)."""
    log.info("restored model version %d from %s", model["version"], path)
    written, hidden = params_width(str(path), model["params"]), engine.shape.hidden
    if written == hidden:
        return
    if engine.automatic_width:  # model.hidden = 0: the width of the θ there is
        log.info("%s: θ has model.hidden = %d (automatic: %d without it); it is served "
                 "and trained on at %d", path, written, hidden, written)
    else:
        log.warning("%s: θ has model.hidden = %d, the configuration %d; it is served and "
                    "trained on at %d (a parameter file of another width is refused)",
                    path, written, hidden, written)
