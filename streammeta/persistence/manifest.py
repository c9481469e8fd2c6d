"""The small index beside each checkpoint file: which partitions, which epochs.

A checkpoint data file ``ckpt-<ms>-<member>.smck`` can be a gigabyte; its manifest
``ckpt-<ms>-<member>.json`` names the partitions it holds, the fencing epoch and
the offset of each, its size and SHA-256. Choosing a file for a partition and
pruning read manifests only. A data file without a manifest (a crash between the
two writes, or a file of an older version) is read whole, once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streammeta.persistence.store import FileStore

log = logging.getLogger(__name__)

NAME = re.compile(r"^ckpt-(\d{13,})-([A-Za-z0-9_.-]+)\.smck$")


@dataclass(frozen=True)
class Entry:
    """A published checkpoint as its manifest describes it."""

    name: str
    written_at: int
    member: str
    epochs: dict[int, int]  # partition -> fencing epoch of the state it holds


def manifest_name(name: str) -> str:
    return name.removesuffix(".smck") + ".json"


def encode(name: str, size: int, sha256: str, partitions: dict[int, dict[str, Any]]) -> bytes:
    return json.dumps({"format": 1, "file": name, "bytes": size, "sha256": sha256,
                       "partitions": {str(p): {"epoch": int(s.get("epoch", -1)),
                                               "offset": int(s["offset"])}
                                      for p, s in partitions.items()}}).encode()


class Index:
    """The published checkpoints of a store, read through a cache: files never change."""

    def __init__(self, files: FileStore, load: Callable[[str], dict[str, Any] | None]) -> None:
        self.files = files
        self.load = load  # a data file's payload, or None if it is damaged or gone
        self._epochs: dict[str, dict[int, int]] = {}

    def add(self, name: str, epochs: dict[int, int]) -> None:
        self._epochs[name] = epochs

    def forget(self, name: str) -> None:
        self._epochs.pop(name, None)

    def entries(self) -> list[Entry]:
        """Every checkpoint in the store, newest first."""
        names = set(self.files.list())
        entries = []
        for name in names:
            match = NAME.match(name)
            if match is None:
                continue
            if name not in self._epochs:
                self._epochs[name] = self._read(name, manifest_name(name) in names)
            entries.append(Entry(name, int(match.group(1)), match.group(2), self._epochs[name]))
        for gone in set(self._epochs) - names:  # pruned by their writer
            del self._epochs[gone]
        return sorted(entries, key=lambda e: e.name, reverse=True)

    def _read(self, name: str, has_manifest: bool) -> dict[int, int]:
        if has_manifest:
            try:
                manifest = json.loads(self.files.read(manifest_name(name)))
                return {int(p): int(s["epoch"]) for p, s in manifest["partitions"].items()}
            except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("%s: unreadable manifest (%s); reading the file", name, exc)
        payload = self.load(name)
        if payload is None:
            return {}
        return {int(p): int(s.get("epoch", -1)) for p, s in payload.get("partitions", {}).items()}
