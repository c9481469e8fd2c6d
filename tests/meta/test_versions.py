from __future__ import annotations

import pytest
import torch
from support import small_config

from streammeta.errors import ParameterFileError
from streammeta.meta.versions import Version, VersionFollower, coherent, decode, encode
from streammeta.online import model
from streammeta.persistence import params as params_mod


class ListTail:
    """A :class:`streammeta.io.tail.Tail` over records given by the test."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.closed = False

    def poll(self, timeout_s: float) -> list[tuple[bytes | None, bytes | None]]:
        taken, self.records = self.records, []
        return taken

    def at_end(self) -> bool:
        return not self.records

    def close(self) -> None:
        self.closed = True


def version(n: int, parent: int, shift: float = 0.0, line: str = "L") -> Version:
    config = small_config().resolved()
    theta, _ = params_mod.initial(config)
    return Version(n, parent, line, "inc", 1_000 + n,
                   {k: v + shift for k, v in theta.items()})


def shape() -> model.ModelShape:
    return model.ModelShape.of(small_config().resolved())


def test_a_record_holds_theta_and_its_lineage() -> None:
    v = version(7, 6, shift=0.5)
    back = decode(encode(v), shape())
    assert (back.version, back.parent, back.line, back.incarnation, back.published_at_ms) == (
        7, 6, "L", "inc", 1_007)
    for name, tensor in v.params.items():
        torch.testing.assert_close(back.params[name], tensor)


def test_damaged_and_foreign_records_are_refused() -> None:
    data = bytearray(encode(version(1, 0)))
    data[-3] ^= 0xFF
    with pytest.raises(ParameterFileError, match="checksum"):
        decode(bytes(data), shape())
    other = model.ModelShape.of(small_config().replace("model", context_dim=3).resolved())
    with pytest.raises(ParameterFileError, match="this configuration needs"):
        decode(encode(version(1, 0)), other)


def test_a_version_of_another_width_is_served_in_its_width() -> None:
    """A trainer started from a 256-wide parameter file, replicas with model.hidden = 0
    and no file (128): the replicas serve the trainer's θ, as a checkpoint's."""
    narrow = model.ModelShape.of(small_config().replace("model", hidden=8).resolved())
    assert shape().hidden != 8
    tail = ListTail()
    follower = VersionFollower(tail, narrow)
    tail.records = [(b"1", encode(version(1, 0)))]
    got = follower.poll()
    assert got is not None and got.params["w1"].shape[1] == shape().hidden
    assert follower.width == shape().hidden and follower.invalid == 0


def test_the_follower_keeps_the_highest_and_the_first_record_of_each_number() -> None:
    tail = ListTail()
    follower = VersionFollower(tail, shape())
    assert follower.catch_up(1.0) is None
    tail.records = [(b"1", encode(version(1, 0, 0.1))), (b"2", encode(version(2, 1, 0.2)))]
    got = follower.poll()
    assert got is not None and got.version == 2
    # A stale writer's record of a number already read changes nothing.
    tail.records = [(b"2", encode(version(2, 1, 9.0))), (b"x", b"not a version")]
    assert follower.poll() is None
    assert follower.newest is not None
    torch.testing.assert_close(follower.newest.params["phi0"],
                               version(2, 1, 0.2).params["phi0"])
    assert follower.invalid == 1 and follower.numbers == [1, 2, 2]


def test_coherence_rule() -> None:
    assert coherent("L", 5, "L")
    assert coherent("M", 0, "L")  # version 0, the initial θ, is every line's root
    assert coherent(None, 5, "L")  # written before lines were recorded: kept, as before
    assert not coherent("M", 5, "L")
