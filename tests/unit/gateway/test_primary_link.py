"""A gateway's link to a primary and its standby (``PrimaryLink``): requests go to
the primary; after a promotion the first request to the deposed engine is refused
NOT_PRIMARY (never sent twice), and the link follows the new primary."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core import commands as C
from core.schema import Result, Side
from daemon.gateway_primary import PrimaryLink
from ipc import wire
from tests.support.replicas import Node, wait_for

pytestmark = pytest.mark.integration


def test_requests_follow_the_primary(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", "primary")
    b = Node(tmp_path / "b", "standby", primary=a)
    try:
        for user in (1, 2):
            a.client.balance_update(user, 0, "deposit", user, 10**14)
        wait_for(lambda: b.durable_seq == a.durable_seq)
        asyncio.run(_follow(a, b))
    finally:
        b.stop()
        a.stop()


async def _follow(a: Node, b: Node) -> None:
    link = PrimaryLink([b.endpoint, a.endpoint], timeout_s=5.0, probe_interval_s=0.05)
    await link.start()
    try:
        assert await link.wait_connected(10.0)
        assert link.current is link.links[1]  # a, though listed second
        sell = C.batch(C.put_limit(1, 0, Side.ASK, 1000, 10_000))
        assert (await link.command(sell)).code == Result.OK
        seq = a.durable_seq
        # Async mode: promote once b holds it (else a failover loses it, as documented).
        await asyncio.to_thread(wait_for, lambda: b.durable_seq == seq, 10.0, "b to hold it")
        await asyncio.to_thread(b.client.promote)
        await asyncio.to_thread(
            wait_for, lambda: a.replication.role == "deposed", 10.0, "a to be deposed"
        )
        outcome = await link.command(sell)  # still to a: refused, not run anywhere
        assert outcome.code == Result.NOT_PRIMARY
        assert (a.durable_seq, b.durable_seq) == (seq, seq)
        for _ in range(200):
            if link.current is link.links[0]:
                break
            await asyncio.sleep(0.01)
        assert link.current is link.links[0]
        assert (await link.command(sell)).code == Result.OK
        assert b.durable_seq == seq + 1
        reply = await link.call(wire.BalanceQuery(1, [0]))
        assert reply.code == Result.OK
    finally:
        await link.aclose()
