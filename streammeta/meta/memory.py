"""The external memory of tasks: which fast weights worked for which kind of series.

Keys are task embeddings computed from an entity's early history (:func:`task_key`);
values are the entity's fast weights φ once it has adapted for a while. A new
entity (when it turns warm) or a drifted one starts from a similarity-weighted
blend of its k nearest neighbours' φ instead of the global φ₀.

* **Key.** The autocorrelation of the z-normalised window at lags 1..m (its
  seasonal and short-memory shape) and its normalised trend, scaled to unit
  length, so the dot product is the cosine similarity. Like the model's input, it
  is invariant to level and scale (and to the phase of the season); it does not
  depend on θ, so keys stay valid across model versions.
* **Retrieval.** One matrix product of the queries against every key, ``topk``,
  and a softmax of similarity / temperature over the neighbours above
  ``min_similarity``; queries with no such neighbour keep φ₀.
* **Capacity and eviction.** At most ``capacity`` entries, one per entity (a
  newer entry of the same entity replaces the older). When full, the least
  recently *used* entry goes: retrieval as a neighbour or insertion refreshes
  an entry, so entries that keep helping new entities stay.
* **Persistence and sharing.** :meth:`export` / :meth:`restore` give plain
  tensors and names (a checkpoint's ``extra`` state); :func:`encode_entry` /
  :func:`decode_entry` are the record format of the shared memory topic that
  every replica publishes its new entries to and reads everyone's from
  (``streammeta.memory_topic``; see docs/memory.md).
"""

from __future__ import annotations

import struct
from typing import Protocol

import torch
from torch import Tensor

from streammeta.config import Config
from streammeta.online import model
from streammeta.online.ports import Entry, Retrieval

_ENTRY = struct.Struct("<4sHHI")  # magic, key dim, value dim, model version
_MAGIC = b"SMM1"


def key_dim(season: int) -> int:
    return season + 1


def task_key(values: Tensor, season: int) -> Tensor:
    """values (B, T) oldest first, T > season → unit-length keys (B, season + 1)."""
    T = values.shape[1]
    mean = values.mean(dim=1, keepdim=True)
    centred = values - mean
    std = centred.square().mean(dim=1, keepdim=True).sqrt()
    x = centred / torch.maximum(std, model.scale_floor(mean))
    acf = torch.stack([(x[:, lag:] * x[:, :-lag]).mean(dim=1) for lag in range(1, season + 1)],
                      dim=1)  # (B, m)
    t = torch.linspace(-1.0, 1.0, T)
    trend = (x * t).mean(dim=1) / t.square().mean()  # least-squares slope per half-span
    key = torch.cat([acf, trend[:, None].clamp(-2.0, 2.0) / 2.0], dim=1)
    return key / key.norm(dim=1, keepdim=True).clamp(min=1e-6)


class MemoryLink(Protocol):
    """How replicas share entries (``streammeta.io.kafka.KafkaMemoryLink``)."""

    def publish(self, entries: list[Entry]) -> None: ...
    def receive(self) -> list[Entry]: ...
    def close(self) -> None: ...


def store_for(config: Config) -> MemoryStore | None:
    """The memory the configuration asks for (None: ``memory.enabled`` is off)."""
    mem = config.memory
    if not mem.enabled:
        return None
    return MemoryStore(mem.capacity, key_dim(config.series.resolved_season),
                       config.model.context_dim, mem.k, mem.temperature, mem.min_similarity)


class MemoryStore:
    """The engine's task memory (``streammeta.online.ports.TaskMemory``)."""

    def __init__(self, capacity: int, key_dim: int, value_dim: int, k: int = 8,
                 temperature: float = 0.05, min_similarity: float = 0.5) -> None:
        if capacity < 1 or k < 1 or temperature <= 0:
            raise ValueError("memory capacity and k must be >= 1, temperature > 0")
        self.season = key_dim - 1  # a key: the lags 1..m and a trend (:func:`key_dim`)
        self.capacity, self.k = capacity, k
        self.temperature, self.min_similarity = temperature, min_similarity
        self.keys = torch.zeros(capacity, key_dim)
        self.values = torch.zeros(capacity, value_dim)
        self.versions = torch.zeros(capacity, dtype=torch.int64)
        self.used_at = torch.full((capacity,), -1, dtype=torch.int64)  # -1: empty
        self.names: list[str | None] = [None] * capacity
        self.row_of: dict[str, int] = {}
        self.tick = 0
        self.retrievals = 0  # queries answered from memory
        self.evicted = 0
        # Entries inserted here, for the replicas (None: not shared). The daemon's
        # memory link publishes and empties it between batches.
        self.outbox: list[Entry] | None = None

    def __len__(self) -> int:
        return len(self.row_of)

    # -- what the engine calls ----------------------------------------------------------
    def recall(self, names: list[str], windows: Tensor) -> Retrieval:
        """The blend of the neighbours' φ - φ₀ for windows (B, L) of new entities;
        0 where none is similar enough."""
        return self.retrieve(task_key(windows, self.season), torch.zeros(self.values.shape[1]))

    def remember(self, names: list[str], windows: Tensor, offsets: Tensor,
                 version: int) -> None:
        """Store φ - φ₀ (``offsets`` (B, C)) keyed by each entity's first values."""
        self.insert(names, task_key(windows, self.season), offsets, version)

    def share(self) -> None:
        """Keep entries inserted here in :attr:`outbox` for the other replicas."""
        if self.outbox is None:
            self.outbox = []

    def take_outbox(self) -> list[Entry]:
        """The entries kept for the other replicas since the last call."""
        taken, self.outbox = self.outbox or [], [] if self.outbox is not None else None
        return taken

    def receive(self, entries: list[Entry]) -> None:
        """Entries the other replicas stored (not shared again)."""
        if entries:
            names, keys, values, versions = zip(*entries, strict=True)
            self.insert(list(names), torch.stack(keys), torch.stack(values),
                        torch.tensor(versions), share=False)

    def insert(self, names: list[str], keys: Tensor, values: Tensor,
               version: int | Tensor = 0, share: bool = True) -> None:
        """Add entries (one per name; a name already present is overwritten).
        ``version`` is the model version of the values, one for all or one each;
        ``share=False`` for entries that came from other replicas."""
        if not names:
            return
        latest = {name: i for i, name in enumerate(names)}  # last wins within a batch
        order = list(latest.values())
        rows = self._rows_for([names[i] for i in order])
        index = torch.tensor(order)
        self.keys[rows] = keys[index].to(self.keys.dtype)
        self.values[rows] = values[index].to(self.values.dtype)
        self.versions[rows] = torch.as_tensor(version, dtype=torch.int64).expand(
            len(names))[index]
        if share and self.outbox is not None:
            self.outbox += [(names[i], self.keys[r].clone(), self.values[r].clone(),
                             int(self.versions[r])) for i, r in zip(order, rows.tolist(),
                                                                    strict=True)]
        self.tick += 1
        self.used_at[rows] = self.tick

    def _rows_for(self, names: list[str]) -> Tensor:
        rows = [self.row_of.get(n, -1) for n in names]
        new = [i for i, r in enumerate(rows) if r < 0]
        if new:
            empty = torch.nonzero(self.used_at < 0).flatten()
            taken = set(rows)
            free = [r for r in empty.tolist() if r not in taken][: len(new)]
            short = len(new) - len(free)
            if short > 0:  # least recently used first, never a row this batch writes
                busy = torch.tensor([r for r in rows if r >= 0] + free, dtype=torch.int64)
                age = self.used_at.clone()
                age[busy] = torch.iinfo(torch.int64).max
                victims = torch.argsort(age)[:short].tolist()
                for r in victims:
                    old = self.names[r]
                    if old is not None:
                        del self.row_of[old]
                        self.evicted += 1
                free += victims
            for i, r in zip(new, free, strict=True):
                rows[i] = r
                self.names[r] = names[i]
                self.row_of[names[i]] = r
        return torch.tensor(rows, dtype=torch.int64)

    def retrieve(self, keys: Tensor, phi0: Tensor) -> Retrieval:
        """keys (B, D) → the neighbours' blend of φ, (B, C)."""
        B = len(keys)
        phi = phi0.expand(B, -1).clone()
        similarity = torch.full((B,), float("nan"))
        found = torch.zeros(B, dtype=torch.bool)
        live = torch.nonzero(self.used_at >= 0).flatten()
        if B == 0 or len(live) == 0:
            return Retrieval(phi, found, similarity)
        sims = keys.to(self.keys.dtype) @ self.keys[live].T  # (B, n)
        top, where = sims.topk(min(self.k, len(live)), dim=1)  # (B, k)
        usable = top >= self.min_similarity
        found = usable.any(dim=1)
        if not bool(found.any()):
            return Retrieval(phi, found, similarity)
        weights = torch.softmax(top.masked_fill(~usable, float("-inf")) / self.temperature,
                                dim=1)[found]  # (F, k)
        neighbours = live[where[found]]  # (F, k) rows
        phi[found] = (weights[:, :, None] * self.values[neighbours]).sum(dim=1)
        similarity[found] = (top[found] * usable[found]).sum(dim=1) / usable[found].sum(dim=1)
        self.tick += 1
        self.used_at[neighbours[usable[found]]] = self.tick
        self.retrievals += int(found.sum())
        return Retrieval(phi, found, similarity)

    # -- persistence ------------------------------------------------------------------
    def export(self) -> dict[str, object]:
        rows = torch.tensor(sorted(self.row_of.values()), dtype=torch.int64)
        return {"names": [self.names[r] for r in rows.tolist()], "keys": self.keys[rows].clone(),
                "values": self.values[rows].clone(), "versions": self.versions[rows].clone(),
                "used_at": self.used_at[rows].clone()}

    def restore(self, state: dict[str, object]) -> None:
        """Load exported entries (replacing entries of the same names)."""
        names, keys, values = state["names"], state["keys"], state["values"]
        versions, used_at = state["versions"], state["used_at"]
        assert isinstance(names, list) and isinstance(keys, Tensor)
        assert isinstance(values, Tensor) and isinstance(versions, Tensor)
        assert isinstance(used_at, Tensor)
        if keys.shape[1:] != self.keys.shape[1:] or values.shape[1:] != self.values.shape[1:]:
            raise ValueError(f"memory entries of shape {tuple(keys.shape[1:])}/"
                             f"{tuple(values.shape[1:])} do not fit this configuration's "
                             f"{tuple(self.keys.shape[1:])}/{tuple(self.values.shape[1:])}")
        order = torch.argsort(used_at)[-self.capacity:]  # the most recently used fit
        kept = [names[i] for i in order.tolist()]
        rows = self._rows_for(kept)
        self.keys[rows], self.values[rows] = keys[order], values[order]
        self.versions[rows] = versions[order]
        self.tick = max(self.tick, int(used_at.max()) if len(used_at) else 0)
        self.used_at[rows] = used_at[order]


def encode_entry(key: Tensor, value: Tensor, version: int) -> bytes:
    """One entry as a record value of the shared memory topic (the entity id is the key)."""
    k = key.detach().to(torch.float32).contiguous()
    v = value.detach().to(torch.float32).contiguous()
    return (_ENTRY.pack(_MAGIC, len(k), len(v), version) + k.numpy().tobytes()
            + v.numpy().tobytes())


def decode_entry(data: bytes, key_dim: int, value_dim: int) -> tuple[Tensor, Tensor, int]:
    """→ (key, value, version); ValueError if the record is not an entry of these sizes."""
    if len(data) < _ENTRY.size:
        raise ValueError("memory entry: truncated header")
    magic, kd, vd, version = _ENTRY.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("memory entry: bad magic")
    if (kd, vd) != (key_dim, value_dim):
        raise ValueError(f"memory entry of sizes {kd}/{vd}, this configuration needs "
                         f"{key_dim}/{value_dim}")
    if len(data) != _ENTRY.size + 4 * (kd + vd):
        raise ValueError("memory entry: wrong length")
    body = torch.frombuffer(bytearray(data[_ENTRY.size:]), dtype=torch.float32)
    key, value = body[:kd].clone(), body[kd:].clone()
    if not bool(torch.isfinite(body).all()):
        raise ValueError("memory entry: non-finite numbers")
    return key, value, version


def entry_of(key: object, value: object, key_dim: int, value_dim: int) -> Entry | None:
    """A memory topic record (its key and value bytes) → an entry, or None if it is not
    one of this configuration (no key, not UTF-8, other sizes, damaged)."""
    try:
        name = key.decode()  # type: ignore[attr-defined]
        k, v, version = decode_entry(value, key_dim, value_dim)  # type: ignore[arg-type]
    except (AttributeError, UnicodeDecodeError, ValueError, TypeError):
        return None
    return name, k, v, version
