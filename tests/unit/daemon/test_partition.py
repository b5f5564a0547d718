"""Partitions of the replication link (TESTING.md scenario 9) through a TCP proxy that
stalls or cuts it: a sync primary stops acknowledging once its standby is cut off
and takes writes again when the link heals; a reset link is rebuilt; and a standby
that promotes itself during a partition never shares an epoch's acknowledgements
with the primary it left: the old primary acknowledges nothing the new one lacks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from core.schema import Result, Side
from ipc.client import Client
from ipc.client_common import ApiError, RequestTimeout
from tests.support.replicas import Node, wait_for
from tests.support.tcp_proxy import FaultyProxy, free_port
from tests.unit.daemon.test_replication import caught_up, fund, same_log, trade

pytestmark = pytest.mark.integration

SYNC = {"mode": "sync", "lease_s": 0.3}


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A sync primary on tcp, and a proxy in front of its replication endpoint."""
    port = free_port()
    primary = Node(tmp_path / "a", "primary", listen=f"tcp://127.0.0.1:{port}", **SYNC)
    with FaultyProxy(port) as proxy:
        started = [primary]
        yield primary, proxy, started
        for node in reversed(started):
            node.stop()
    for node in started:
        assert node.error is None, f"{node.path.name}: {node.error!r}"


@pytest.mark.parametrize("fault", ["stall", "cut"])
def test_a_cut_off_standby_stops_sync_writes_until_the_link_heals(cluster, fault: str) -> None:  # type: ignore[no-untyped-def]
    primary, proxy, started = cluster
    standby = Node(primary.path.parent / "b", "standby", primary=proxy.endpoint, **SYNC)
    started.append(standby)
    wait_for(lambda: primary.replication.refusal() is None, what="the standby to follow")
    fund(primary)
    trade(primary, 10)
    wait_for(lambda: caught_up(standby, primary))
    getattr(proxy, fault)()
    wait_for(lambda: primary.replication.refusal() == Result.TOO_FEW_REPLICAS, 10.0)
    with pytest.raises(ApiError) as refused:
        primary.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert refused.value.code == Result.TOO_FEW_REPLICAS
    proxy.heal()
    wait_for(lambda: primary.replication.refusal() is None, 20.0, "the link to heal")
    trade(primary, 10, start=10)
    wait_for(lambda: caught_up(standby, primary))
    same_log(primary, standby)
    assert standby.journal.engine.state_hash() == primary.journal.engine.state_hash()


def test_a_primary_cut_off_by_a_promotion_acknowledges_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    primary, proxy, started = cluster
    root = primary.path.parent
    standby = Node(root / "b", "standby", primary=proxy.endpoint, failover_after_s=0.5, **SYNC)
    started.append(standby)
    wait_for(lambda: primary.replication.refusal() is None, what="the standby to follow")
    fund(primary)
    wait_for(lambda: caught_up(standby, primary))
    acked: list[tuple[float, int]] = []  # (when, seq) acknowledged by the old primary
    stop = threading.Event()

    def write() -> None:  # a client that keeps writing to the old primary
        with Client(primary.endpoint, timeout_s=0.5) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    done = client.put_limit(1 + i % 4, 0, Side.ASK, 1000, 10_000 + i)
                except (ApiError, RequestTimeout):
                    time.sleep(0.01)
                    continue
                acked.append((time.monotonic(), done.seq))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    wait_for(lambda: len(acked) >= 20, what="acknowledgements before the partition")
    proxy.stall()
    cut_at = time.monotonic()
    wait_for(lambda: standby.replication.role == "primary", 10.0, "the standby to promote itself")
    promoted_at = time.monotonic()
    new_epoch_first_seq = standby.replication.history.entries[-1][1]
    time.sleep(1.0)  # the old primary goes on being asked
    stop.set()
    writer.join(10)
    # Nothing the old primary acknowledged is missing from the new primary's log...
    assert max(seq for _, seq in acked) < new_epoch_first_seq
    # ...and once the new epoch began it acknowledged nothing at all (fenced by its
    # standby's silence, before the promotion: the lease is shorter than the failover).
    assert [seq for t, seq in acked if t >= promoted_at] == []
    assert primary.replication.refusal() == Result.TOO_FEW_REPLICAS
    late = [seq for t, seq in acked if t >= cut_at]
    assert all(seq <= standby.durable_seq for seq in late)
    # The new primary takes writes once a standby follows it.
    third = Node(root / "c", "standby", primary=standby, **SYNC)
    started.append(third)
    wait_for(lambda: standby.replication.refusal() is None, what="a standby for the new primary")
    done = standby.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert done.seq == new_epoch_first_seq
    proxy.heal()
