"""Global parameter versions: what the trainer publishes and every replica serves.

One record per promoted version on the versions topic (one partition, so every
reader sees the same order), holding θ inline in the checksummed container of
``streammeta.persistence.container``: about 0.25 MB at model.hidden 128 and 0.6 MB
at 256, under Kafka's default 1 MB message limit. Each record names its version, the version it
was trained from (``parent``), the trainer incarnation that wrote it and the
*line*: the θ history it belongs to, fixed by the first trainer of a deployment
and inherited by every later incarnation (which continues from the newest
version it reads).

Readers keep the highest version they have read; a record whose number is not
higher than that is ignored, so the first record of each number on the topic wins
for every reader alike (a stale trainer cannot change what a number means).

φ coherence (``docs/recovery.md``): φ adapted under a version of one line stay
valid under later versions of the same line (as within one process, where φ are
kept across promotions); φ from another line are reset to the served φ₀.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from streammeta.errors import ParameterFileError
from streammeta.io.tail import Tail
from streammeta.online import model
from streammeta.persistence.container import FORMAT, pack, unpack
from streammeta.persistence.params import checked, params_width

log = logging.getLogger(__name__)

ROOT_LINE = ""  # the line of version 0: the configured initial θ, shared by every line


@dataclass(frozen=True)
class Version:
    version: int
    parent: int
    line: str
    incarnation: str
    published_at_ms: int
    params: model.Params


def encode(v: Version) -> bytes:
    return pack({"format": FORMAT, "kind": "version", "version": v.version,
                 "parent": v.parent, "line": v.line, "incarnation": v.incarnation,
                 "published_at_ms": v.published_at_ms,
                 "params": {k: t.detach().cpu().float().clone() for k, t in v.params.items()}})


def decode(data: bytes, shape: model.ModelShape) -> Version:
    """A versions-topic record → :class:`Version`; ParameterFileError if it is damaged,
    not a version or does not fit ``shape`` in anything but the width: θ of another
    model.hidden is served in its own width, as from a checkpoint (a trainer started
    from a 256-wide parameter file, replicas with model.hidden = 0 and no file)."""
    payload = unpack(data, "versions topic record")
    if payload.get("kind") != "version":
        raise ParameterFileError(f"versions topic record of kind {payload.get('kind')!r}")
    params = checked("versions topic record", payload.get("params"), shape, any_width=True)
    return Version(int(payload["version"]), int(payload["parent"]), str(payload["line"]),
                   str(payload["incarnation"]), int(payload["published_at_ms"]), params)


def coherent(written_line: str | None, written_version: int, line: str) -> bool:
    """May φ adapted under version ``written_version`` of ``written_line`` be served with
    a θ of ``line``? Yes on the same line, and from version 0 (the initial θ, the root
    of every line); None (state written before lines were recorded) keeps today's
    behaviour: kept."""
    return written_line is None or written_version == 0 or written_line == line


class VersionFollower:
    """Follows the versions topic: the newest version read so far."""

    def __init__(self, tail: Tail, shape: model.ModelShape) -> None:
        self.tail, self.shape = tail, shape
        self.newest: Version | None = None
        self.width = shape.hidden  # of the newest version read (logged where it changes)
        self.invalid = 0  # records that are not versions of this configuration
        self.numbers: list[int] = []  # every number read, in topic order

    def poll(self, timeout_s: float = 0.0) -> Version | None:
        """The newest version if a newer one arrived since the last call, else None."""
        changed = False
        for _key, value in self.tail.poll(timeout_s):
            try:
                v = decode(value or b"", self.shape)
            except ParameterFileError as exc:
                self.invalid += 1
                log.warning("ignoring a versions topic record: %s", exc)
                continue
            self.numbers.append(v.version)
            if self.newest is None or v.version > self.newest.version:
                self.newest, changed = v, True
                wide = params_width("versions topic record", v.params)
                if wide != self.shape.hidden and wide != self.width:
                    log.info("version %d has model.hidden = %d (the configuration %d): "
                             "served in its width", v.version, wide, self.shape.hidden)
                self.width = wide
        return self.newest if changed else None

    def catch_up(self, timeout_s: float) -> Version | None:
        """Read to the end of the topic (at most ``timeout_s``); → the newest version."""
        deadline = time.monotonic() + timeout_s
        while not self.tail.at_end() and time.monotonic() < deadline:
            self.poll(0.2)
        if not self.tail.at_end():
            log.warning("the versions topic was not read to its end within %.0f s", timeout_s)
        return self.newest

    def close(self) -> None:
        self.tail.close()
