"""A replica of the other client joining a running group (a rolling change of
``kafka.client``, or of ``kafka.assignor``): the clients' default assignors differ
(cooperative-sticky with confluent, sticky with kafka-python), so the group refuses
the newcomer as INCONSISTENT_GROUP_PROTOCOL. The confluent member retried that for
ever, never ready, logging the bare error; the kafka-python member stopped after
``kafka.fatal_after_s`` with it. Both now stop, saying what to change."""

from __future__ import annotations

import time

import pytest
from conftest import CLIENTS, config_for

from streammeta.errors import BrokerError
from streammeta.io.edge import make_source

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("first", CLIENTS)
def test_a_member_with_another_assignor_stops_saying_what_to_change(
        broker: str, tmp_path: object, first: str) -> None:
    config = config_for(broker, f"{tmp_path}/checkpoints", first)
    second = next(c for c in CLIENTS if c != first)
    member = make_source(config.kafka)
    owned: list[tuple[str, int]] = []
    member.set_rebalance_listener(owned.extend, lambda tps: None)
    deadline = time.monotonic() + 60
    while not owned and time.monotonic() < deadline:
        member.poll(0.1)
    assert owned, "the first member never joined"
    newcomer = make_source(config.replace("kafka", client=second, fatal_after_s=3.0).kafka)
    try:
        with pytest.raises(BrokerError, match=r"use a partition assignor this member has "
                                              r"not .*kafka\.assignor 'range' or 'roundrobin'"):
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                member.poll(0.1)
                newcomer.poll(0.1)
    finally:
        newcomer.close()
        member.close()
