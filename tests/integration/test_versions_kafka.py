"""The pieces of the trainer role on a real broker, with each client: the versions
topic read to its end (Tail: partition EOF / high watermark, not the broken end
offsets), and the lease (one member of the trainers' group holds the 1-partition
topic; when it leaves, the other takes it)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import pytest
from test_daemon_kafka import wait_for

from streammeta.config import Config
from streammeta.errors import BrokerError
from streammeta.io.edge import ensure_topics, make_lease, make_tail, make_writer, role_topics
from streammeta.io.streams import TopicPartition
from streammeta.meta.versions import Version, VersionFollower, encode
from streammeta.online import model
from streammeta.persistence import params as params_mod
from streammeta.serve.service import Service

pytestmark = pytest.mark.integration


def topics(config: Config) -> Config:
    run = config.kafka.input_topic
    config = config.replace("meta", versions_topic=f"{run}.versions",
                            samples_topic=f"{run}.samples", lease_topic=f"{run}.lease")
    ensure_topics(config.kafka, 4, extra=role_topics(config.meta))
    return config


def test_the_versions_topic_is_read_to_its_end(each_client: Config) -> None:
    config = topics(each_client)
    shape = model.ModelShape.of(config.resolved())
    empty = VersionFollower(make_tail(config.kafka, config.meta.versions_topic), shape)
    try:
        assert empty.catch_up(20) is None and empty.tail.at_end()  # an empty topic ends too
    finally:
        empty.close()
    writer = make_writer(dataclasses.replace(config.kafka, input_topic=config.meta.versions_topic))
    theta, _ = params_mod.initial(config.resolved())
    for n in (1, 2, 3):
        writer.send(str(n).encode(), encode(Version(n, n - 1, "L", "i", 0, theta)))
    writer.flush()
    writer.close()
    follower = VersionFollower(make_tail(config.kafka, config.meta.versions_topic), shape)
    try:
        newest = follower.catch_up(20)
        assert newest is not None and newest.version == 3 and follower.numbers == [1, 2, 3]
    finally:
        follower.close()


def test_one_member_holds_the_lease_and_hands_it_over(each_client: Config) -> None:
    config = topics(each_client)
    held: dict[str, bool] = {"a": False, "b": False}

    def member(name: str):  # type: ignore[no-untyped-def]
        lease = make_lease(config.kafka, config.meta)

        def assigned(partitions: list[TopicPartition]) -> None:
            held[name] = held[name] or bool(partitions)

        def revoked(partitions: list[TopicPartition]) -> None:
            held[name] = held[name] and not partitions

        lease.set_rebalance_listener(assigned, revoked)
        return lease

    a, b = member("a"), member("b")
    closed: set[str] = set()

    def poll() -> None:
        for name, lease in (("a", a), ("b", b)):
            if name not in closed:
                lease.poll(0.05)

    def waiting(condition) -> bool:  # type: ignore[no-untyped-def]
        poll()
        return bool(condition())

    try:
        wait_for(lambda: waiting(lambda: held["a"] or held["b"]), timeout_s=60,
                 what="a lease holder")
        deadline = time.monotonic() + 3  # and only one, for a while
        while time.monotonic() < deadline:
            poll()
            assert not (held["a"] and held["b"])
        holder = "a" if held["a"] else "b"
        other = "b" if holder == "a" else "a"
        (a if holder == "a" else b).close()
        closed.add(holder)
        wait_for(lambda: waiting(lambda: held[other]), timeout_s=60,
                 what="the other member taking the lease over")
    finally:
        for name, lease in (("a", a), ("b", b)):
            if name not in closed:
                lease.close()


def _open_sockets(port: int) -> tuple[set[str], set[str]]:
    """This process's TCP sockets (their inodes): (listening, connected to ``port``)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                mine.add(target[8:-1])
    listening, connected = set(), set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                remote, state, inode = fields[2], fields[3], fields[9]
                if inode not in mine:
                    continue
                if state == "0A":  # listening
                    listening.add(inode)
                elif int(remote.rsplit(":", 1)[1], 16) == port:
                    connected.add(inode)
    return listening, connected


def test_an_ingest_start_that_fails_leaves_no_client_open(each_client: Config) -> None:
    """The versions topic does not exist (topics are not created by reading them): the
    start fails, and the metrics server and the Kafka clients it opened before are
    closed, though the half-built service is still referenced (as by a caller holding
    the error). A closed librdkafka producer keeps its connections until it is
    collected, so connections are checked with kafka-python only."""
    config = topics(each_client).replace(
        "meta", role="ingest", versions_topic=f"{each_client.kafka.input_topic}.missing")
    port = int(config.kafka.bootstrap_servers.rsplit(":", 1)[1])
    listening, connected = _open_sockets(port)
    service = Service.__new__(Service)
    with pytest.raises(BrokerError):
        service.__init__(config)  # type: ignore[misc]
    assert service.server is not None and service.edge is not None  # opened, then failed
    deadline = time.monotonic() + 5  # a client's sockets close as its close returns
    while True:
        now_listening, now_connected = _open_sockets(port)
        left = now_listening - listening
        if config.kafka.client == "kafka-python":
            left |= now_connected - connected
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, "sockets left open by the failed start"
    del service
