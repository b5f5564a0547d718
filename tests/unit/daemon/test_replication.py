"""Hot standbys (docs/operations.md): engines in threads of this process, talking over
ipc sockets: a standby holds the primary's log and state, takes no writes, checks
state hashes at the primary's snapshots, catches up from a snapshot, and takes over
on promotion; sync mode acknowledges only what a standby holds; a deposed primary
and a diverged log are handled."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from core import commands as C
from core.engine import Engine
from core.errors import ConfigError
from core.schema import MarketStatus, Result, RiskLimit, Side, UserStatus
from daemon.auth import load_registry
from daemon.replication import Replication
from daemon.replication_config import ReplicationConfig
from daemon.replication_standby import StandbyDiverged
from ipc import replication_wire as rw
from ipc.client_common import ApiError, results_events
from persistence.epochs import load_epochs
from persistence.journal import Journal, JournalConfig
from persistence.log_reader import LogReader, read_committed_seq
from persistence.replay import replay
from tests.support.keys import Entry, Keys
from tests.support.replicas import Node, engine_config, wait_for
from tests.support.scenario import make_config

pytestmark = pytest.mark.integration

BTC, USDT = 0, 2


def fund(node: Node, users: range = range(1, 5)) -> None:
    for user in users:
        for asset in (BTC, USDT):
            node.client.balance_update(user, asset, "deposit", user * 10 + asset, 10**14)


def trade(node: Node, n: int, start: int = 0) -> None:
    """``n`` crossing orders (half rest, half take), one call each."""
    for i in range(start, start + n):
        side = Side.ASK if i % 2 else Side.BID
        node.client.put_limit(1 + i % 4, 0, side, 1000 + i % 7 * 10, 10_000 + i % 3)


def caught_up(standby: Node, primary: Node) -> bool:
    return (
        standby.durable_seq == primary.durable_seq
        and standby.journal.engine.counters()[0] == primary.durable_seq
    )


def same_log(a: Node, b: Node) -> None:
    """Both logs hold the same records (payloads byte for byte) under the same seqs."""
    with LogReader(a.path / "data" / "log") as ra, LogReader(b.path / "data" / "log") as rb:
        first = max(ra.first_seq() or 1, rb.first_seq() or 1)
        assert [(r.seq, r.rtype, r.payload) for r in ra.read(first)] == [
            (r.seq, r.rtype, r.payload) for r in rb.read(first)
        ]


@pytest.fixture
def nodes(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[Node] = []

    def start(name: str, role: str, **kwargs: object) -> Node:
        node = Node(tmp_path / name, role, **kwargs)  # type: ignore[arg-type]
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()
    for node in started:
        assert node.error is None, f"{node.path.name}: {node.error!r}"


def test_a_standby_holds_the_primarys_log_and_state(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary")
    fund(primary)
    trade(primary, 20)
    standby = nodes("b", "standby", primary=primary)
    trade(primary, 20, start=20)
    wait_for(lambda: caught_up(standby, primary), what="the standby to catch up")
    assert standby.journal.engine.state_hash() == primary.journal.engine.state_hash()
    same_log(primary, standby)
    status = standby.client.status()
    assert (status.role, status.epoch, status.seq) == ("standby", 0, primary.durable_seq)
    assert primary.client.status().replication == {"b": primary.durable_seq}


def test_a_standby_refuses_writes_and_answers_queries(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary")
    standby = nodes("b", "standby", primary=primary)
    fund(primary)
    wait_for(lambda: caught_up(standby, primary))
    before = standby.journal.engine.state_hash()
    with pytest.raises(ApiError) as refused:
        standby.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert refused.value.code == Result.NOT_PRIMARY
    with pytest.raises(ApiError) as refused:
        standby.client.balance_update(1, BTC, "deposit", 999, 5)
    assert refused.value.code == Result.NOT_PRIMARY
    rid = standby.client.send_commands(C.batch(C.put_limit(1, 0, Side.ASK, 1000, 10_000)))
    results, _ = results_events(standby.client.wait(rid))
    assert results["code"].tolist() == [Result.NOT_PRIMARY]
    assert standby.journal.engine.state_hash() == before
    assert standby.client.balance_query(1, BTC)[0].available == 10**14


def test_hashes_are_compared_at_the_primarys_snapshots(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary", check_every_records=20)
    standby = nodes("b", "standby", primary=primary)
    follower = standby.replication.standby
    assert follower is not None
    fund(primary)
    trade(primary, 20)  # a check every 20 records
    wait_for(lambda: follower.checked == 1, what="the first hash check")
    trade(primary, 20, start=20)
    wait_for(lambda: follower.checked == 2, what="the second hash check")
    wait_for(lambda: not primary.journal.snapshot_running)
    done = primary.client.snapshot()  # asked for: checked too
    wait_for(lambda: follower.checked == 3, what="the third hash check")
    snaps = sorted(p.name for p in (standby.path / "data" / "snapshots").glob("*.snap"))
    assert snaps[-1] == f"snapshot-{done.seq:020d}.snap"


def test_a_standby_whose_state_differs_stops(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary")
    standby = nodes("b", "standby", primary=primary)
    fund(primary)
    wait_for(lambda: caught_up(standby, primary))
    standby.journal.engine.state_arrays()["balances"][1, BTC, 0] += 1  # a flipped bit
    primary.client.snapshot()
    wait_for(lambda: not standby.thread.is_alive(), what="the standby to stop")
    assert isinstance(standby.error, StandbyDiverged)
    standby.error = None  # expected


def test_a_late_standby_catches_up_from_a_snapshot(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary", segment_bytes=64 << 10)
    fund(primary)
    trade(primary, 300)
    primary.client.snapshot()
    trade(primary, 300, start=300)
    primary.client.snapshot()
    trade(primary, 300, start=600)
    # The genesis snapshot (seq 0) goes, and the log before the oldest snapshot kept
    # with it (whole segments).
    primary.client.snapshot()
    with LogReader(primary.path / "data" / "log") as reader:
        assert (reader.first_seq() or 0) > 1
    standby = nodes("b", "standby", primary=primary)
    trade(primary, 10, start=900)
    wait_for(lambda: caught_up(standby, primary), what="catch-up from the snapshot")
    assert standby.journal.engine.state_hash() == primary.journal.engine.state_hash()
    assert standby.journal.recovery is not None
    assert standby.journal.recovery.snapshot_seq > 0
    assert not list(standby.path.glob("data/replaced-*"))  # the old, empty state went


def test_sync_mode_acknowledges_only_what_a_standby_holds(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary", mode="sync", lease_s=0.3)
    with pytest.raises(ApiError) as refused:  # no standby: nothing runs
        primary.client.balance_update(1, BTC, "deposit", 1, 10**14)
    assert refused.value.code == Result.TOO_FEW_REPLICAS
    assert primary.durable_seq == 0
    standby = nodes("b", "standby", primary=primary)
    wait_for(lambda: primary.replication.refusal() is None, what="a fresh standby")
    fund(primary)
    visible = primary.path / "data" / "log"
    for i in range(30):
        done = primary.client.put_limit(1 + i % 4, 0, Side.ASK if i % 2 else Side.BID, 1000, 10_000)
        assert standby.durable_seq >= done.seq  # acknowledged: durable on the standby
        # The drainer and the feed never see what a failover could take back.
        assert read_committed_seq(visible) <= standby.durable_seq
    wait_for(lambda: read_committed_seq(visible) == primary.durable_seq)
    standby.stop()
    wait_for(lambda: primary.replication.refusal() == Result.TOO_FEW_REPLICAS)
    with pytest.raises(ApiError) as refused:
        primary.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert refused.value.code == Result.TOO_FEW_REPLICAS


def test_promotion_deposes_the_old_primary(nodes) -> None:  # type: ignore[no-untyped-def]
    a = nodes("a", "primary")
    b = nodes("b", "standby", primary=a)
    fund(a)
    trade(a, 10)
    wait_for(lambda: caught_up(b, a))
    promoted = b.client.promote()
    assert (promoted.epoch, promoted.seq) == (1, a.durable_seq)
    assert load_epochs(b.path / "data").entries == ((1, a.durable_seq + 1),)
    wait_for(lambda: a.replication.refusal() == Result.NOT_PRIMARY, what="a to be deposed")
    with pytest.raises(ApiError) as refused:
        a.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert refused.value.code == Result.NOT_PRIMARY
    assert load_epochs(a.path / "data").known == 1  # a restart stays deposed
    done = b.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert done.seq == promoted.seq + 1
    assert b.client.status().role == "primary"


def test_a_deposed_primary_with_an_unreplicated_tail_rejoins(nodes) -> None:  # type: ignore[no-untyped-def]
    a = nodes("a", "primary")
    b = nodes("b", "standby", primary=a)
    fund(a)
    trade(a, 10)
    wait_for(lambda: caught_up(b, a))
    common = a.durable_seq
    b.stop()  # cut off: a acknowledges more (async mode) that b never gets
    trade(a, 5, start=10)
    assert a.durable_seq == common + 5
    a.stop()
    b = nodes("b", "standby", primary=a)
    assert b.client.promote().epoch == 1
    trade(b, 3, start=100)  # other records under the same seqs
    a = nodes("a", "standby", primary=b)
    wait_for(lambda: caught_up(a, b), what="the old primary to follow the new one")
    assert a.journal.engine.state_hash() == b.journal.engine.state_hash()
    same_log(a, b)
    (aside,) = a.path.glob("data/diverged-*")
    with LogReader(aside / "log") as reader:  # the unreplicated tail is kept
        assert [r.seq for r in reader.read(common + 1)] == list(range(common + 1, common + 6))
    assert load_epochs(a.path / "data").entries == ((1, common + 1),)


def test_a_restarted_standby_resumes_where_it_stopped(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary")
    fund(primary)
    standby = nodes("b", "standby", primary=primary)
    trade(primary, 10)
    wait_for(lambda: caught_up(standby, primary))
    standby.stop()
    trade(primary, 10, start=10)
    again = nodes("b", "standby", primary=primary)
    wait_for(lambda: caught_up(again, primary))
    assert again.journal.engine.state_hash() == primary.journal.engine.state_hash()
    assert np.array_equal(
        np.array(again.journal.engine.counters()), np.array(primary.journal.engine.counters())
    )


def test_a_standby_promotes_itself_when_its_primary_falls_silent(nodes) -> None:  # type: ignore[no-untyped-def]
    a = nodes("a", "primary", mode="sync")
    b = nodes("b", "standby", primary=a, mode="sync", failover_after_s=0.3)
    wait_for(lambda: a.replication.refusal() is None, what="a fresh standby")
    fund(a)
    acked = a.durable_seq
    a.stop()
    wait_for(lambda: b.replication.role == "primary", what="the standby to promote itself")
    assert b.replication.epoch == 1
    assert b.durable_seq == acked  # nothing acknowledged is missing
    with pytest.raises(ApiError) as refused:  # sync: it waits for a standby of its own
        b.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert refused.value.code == Result.TOO_FEW_REPLICAS
    a = nodes("a", "standby", primary=b, mode="sync")
    wait_for(lambda: b.replication.refusal() is None, what="the old primary to follow")
    done = b.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert a.durable_seq >= done.seq


def test_standbys_find_the_new_primary_among_the_engines(nodes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cluster = ",".join(f"ipc://{tmp_path}/{n}/repl.sock" for n in "abc")
    a = nodes("a", "primary")
    b = nodes("b", "standby", primary=cluster)
    c = nodes("c", "standby", primary=cluster)
    fund(a)
    wait_for(lambda: caught_up(b, a) and caught_up(c, a), what="both standbys")
    a.stop()
    assert b.client.promote().epoch == 1
    trade(b, 10)
    wait_for(lambda: caught_up(c, b), 30, what="c to find and follow b")
    assert c.client.status().replication == {"b": b.durable_seq}
    assert c.journal.engine.state_hash() == b.journal.engine.state_hash()
    a = nodes("a", "standby", primary=cluster)  # the old primary too
    wait_for(lambda: caught_up(a, b), 30, what="a to find and follow b")
    assert sorted(b.client.status().replication) == ["a", "c"]


def test_a_standby_that_has_not_caught_up_is_never_promoted(nodes) -> None:  # type: ignore[no-untyped-def]
    primary = nodes("a", "primary")
    fund(primary)
    standby = nodes("b", "standby", primary=primary)
    wait_for(lambda: caught_up(standby, primary))
    primary.stop()
    # What a standby leaves while its state is moved aside and the primary's snapshot
    # not yet installed (it survives a restart).
    marker = standby.path / "data" / "replication" / "incomplete"
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    with pytest.raises(ApiError) as refused:
        standby.client.promote()
    assert refused.value.code == Result.NOT_PRIMARY
    assert "not caught up" in refused.value.message
    assert standby.replication.role == "standby"
    marker.unlink()
    assert standby.client.promote().epoch == 1


def test_without_keys_the_link_stays_on_this_machine(tmp_path: Path) -> None:
    config = engine_config()
    journal = Journal.open(config, JournalConfig(data_dir=tmp_path / "data"))
    try:
        with pytest.raises(ConfigError, match="reachable from other machines"):
            Replication(journal, ReplicationConfig(listen="tcp://0.0.0.0:7516"), role="primary")
        with pytest.raises(ConfigError, match=r"tcp://10\.0\.0\.1:7516"):
            Replication(
                journal,
                ReplicationConfig(),
                role="standby",
                primary="tcp://127.0.0.1:7516,tcp://10.0.0.1:7516",
            )
    finally:
        journal.close()


def test_over_curve_only_the_clusters_server_key_replicates(tmp_path: Path) -> None:
    keys = Keys(tmp_path / "keys")
    keys.add("ops", Entry("admin"))
    registry = load_registry(keys.write_registry())
    ops = keys.curve("ops")
    listen = "tcp://127.0.0.1:{}"
    a = Node(tmp_path / "a", "primary", auth=registry, client_keys=ops, listen=listen.format(0))
    b = None
    try:
        assert a.replication.primary is not None
        endpoint = a.replication.primary.endpoint  # the port bound
        b = Node(tmp_path / "b", "standby", primary=endpoint, auth=registry, client_keys=ops)
        fund(a)
        wait_for(lambda: caught_up(b, a), what="the standby over CURVE")
        # An admin client key is no engine: its hello of a higher epoch deposes nothing.
        rogue = zmq.Context()
        sock = rogue.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.CURVE_SERVERKEY, ops.server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, ops.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, ops.secret_key)
        sock.connect(endpoint)
        sock.send(rw.encode(rw.Hello(99, "rogue", rw.REPLICATION_VERSION, "x", 0, [])))
        assert sock.poll(10_000)
        refusal = rw.decode(sock.recv())
        assert isinstance(refusal, rw.Refuse)
        assert "server key" in refusal.reason
        sock.close(0)
        rogue.term()
        assert a.replication.refusal() is None
        assert a.replication.epoch == 0
        done = a.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
        wait_for(lambda: b.durable_seq == done.seq)
    finally:
        if b is not None:
            b.stop()
        a.stop()


def test_a_primary_with_pair_workers_in_sync_mode(nodes) -> None:  # type: ignore[no-untyped-def]
    """The pipelined server (the sequencer and a worker per market) as the primary:
    the same log and state on the standby, every acknowledgement durable there, and a
    hash check at a snapshot composed from the workers' books."""
    primary = nodes("a", "primary", mode="sync", workers=True, check_every_records=25)
    standby = nodes("b", "standby", primary=primary, mode="sync")
    wait_for(lambda: primary.replication.refusal() is None, what="a fresh standby")
    fund(primary)
    for user in range(1, 5):  # the second market's stock
        primary.client.balance_update(user, 1, "deposit", user * 10 + 1, 10**14)
    for i in range(40):
        side = Side.ASK if i % 2 else Side.BID
        rid = primary.client.send_commands(
            C.batch(*(C.put_limit(1 + (i + k) % 4, k % 2, side, 1000, 10_000) for k in range(4)))
        )
        results, _ = results_events(primary.client.wait(rid))
        assert (results["code"] == Result.OK).all()
        assert standby.durable_seq >= int(results["seq"].max())
    follower = standby.replication.standby
    assert follower is not None
    wait_for(lambda: follower.checked >= 2, what="hash checks against composed books")
    wait_for(lambda: caught_up(standby, primary))
    same_log(primary, standby)
    # The primary's state is its workers' (driven by its own thread): its log replayed.
    replayed = Engine(engine_config())
    replay(replayed, primary.path / "data" / "log", 1)
    assert replayed.state_hash() == standby.journal.engine.state_hash()


@pytest.mark.parametrize("workers", [False, True], ids=["one-process", "pair-workers"])
def test_a_put_retried_after_a_failover_is_placed_once(nodes, workers: bool) -> None:  # type: ignore[no-untyped-def]
    """Issue 9: a client whose reply was lost in a failover sends the same puts again
    to the new primary; their client ids name the orders placed the first time, so
    nothing is placed twice (sync mode: acknowledged = held by the standby)."""
    a = nodes("a", "primary", mode="sync", workers=workers)
    b = nodes("b", "standby", primary=a, mode="sync")
    wait_for(lambda: a.replication.refusal() is None, what="a fresh standby")
    fund(a)
    trade(a, 6)
    a.client.put_limit(3, 0, Side.ASK, 1000, 11_000)
    rests = a.client.put_limit(1, 0, Side.BID, 1000, 9_000, client_id=41)
    takes = a.client.put_market(2, 0, Side.BID, 10**12, client_id=41)  # another user's 41
    assert takes.order is not None
    assert takes.order.deal_stock > 0
    a.stop()  # the replies were lost with it; the client cannot tell what happened
    b.client.promote()
    nodes("a2", "standby", primary=b, mode="sync")  # sync writes need a standby again
    wait_for(lambda: b.replication.refusal() is None, what="a standby of the new primary")
    for retry, placed in (
        (lambda: b.client.put_limit(1, 0, Side.BID, 1000, 9_000, client_id=41), rests),
        (lambda: b.client.put_market(2, 0, Side.BID, 10**12, client_id=41), takes),
    ):
        with pytest.raises(ApiError) as repeat:
            retry()
        assert (repeat.value.code, repeat.value.order_id) == (Result.REPEAT_ORDER, placed.order_id)
    assert b.client.pending_detail(0, rests.order_id) is not None  # it rests, once
    fresh = b.client.put_limit(1, 0, Side.BID, 1000, 9_000, client_id=42)
    assert fresh.order_id > takes.order_id
    replayed = Engine(engine_config())
    replay(replayed, b.path / "data" / "log", 1)
    assert replayed.state_hash() == b.journal.engine.state_hash()


def test_with_two_standbys_a_sync_failover_takes_writes_within_a_second(
    nodes, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The primary dies; one standby is promoted; the other finds it by itself (the
    cluster list), so sync writes go on without waiting for the old primary."""
    cluster = ",".join(f"ipc://{tmp_path}/{n}/repl.sock" for n in "abc")
    sync = {"mode": "sync", "lease_s": 0.3}
    a = nodes("a", "primary", **sync)
    b = nodes("b", "standby", primary=cluster, **sync)
    c = nodes("c", "standby", primary=cluster, **sync)
    wait_for(lambda: len(a.client.status().replication) == 2, what="both standbys")
    fund(a)
    wait_for(lambda: caught_up(b, a) and caught_up(c, a))
    a.stop()
    t0 = time.monotonic()
    assert b.client.promote().epoch == 1
    wait_for(lambda: b.replication.refusal() is None, 10.0, "c to follow b")
    took = time.monotonic() - t0
    print(f"writes taken again {took:.2f} s after the promotion")
    assert took < 1.0
    done = b.client.put_limit(1, 0, Side.ASK, 1000, 10_000)
    assert c.durable_seq >= done.seq


@pytest.mark.parametrize("workers", [False, True], ids=["one-process", "pair-workers"])
def test_market_operations_reach_the_standby(nodes, workers: bool) -> None:  # type: ignore[no-untyped-def]
    """Issue 10: a halt, a kill switch, a delisting, a market's and a user's risk limit
    are commands of the log: the standby holds the same statuses, limits and books, and
    refuses as the primary does once promoted."""
    a = nodes("a", "primary", mode="sync", workers=workers)
    b = nodes("b", "standby", primary=a, mode="sync")
    wait_for(lambda: a.replication.refusal() is None, what="a fresh standby")
    fund(a)
    trade(a, 9)  # some rest
    ops = C.batch(
        C.market_status(1, MarketStatus.HALTED),
        C.user_status(2, UserStatus.BLOCKED),
        C.cancel_all(2, 0),
        C.market_status(0, MarketStatus.DELISTED),
        C.cancel_market(0),
        C.market_limit(0, RiskLimit.PRICE_STEP, 1000),
        C.user_limit(1, 1, RiskLimit.MAX_ORDER_AMOUNT, 999),
    )
    results, _ = results_events(a.client.wait(a.client.send_commands(ops)))
    assert (results["code"] == Result.OK).all()
    assert (results["seq"] > 0).all()
    wait_for(lambda: caught_up(b, a), what="the standby to catch up")
    same_log(a, b)
    # The primary's state (with pair workers, its books are its workers'): its log.
    replayed = Engine(engine_config())
    replay(replayed, a.path / "data" / "log", 1)
    assert replayed.state_hash() == b.journal.engine.state_hash()
    a.stop()
    b.client.promote()
    nodes("a2", "standby", primary=b, mode="sync")
    wait_for(lambda: b.replication.refusal() is None, what="a standby of the new primary")
    for market, code in ((0, Result.MARKET_DELISTED), (1, Result.MARKET_HALTED)):
        with pytest.raises(ApiError) as refused:
            b.client.put_limit(1, market, Side.BID, 1000, 9_000)
        assert refused.value.code == code
    reopened, _ = results_events(
        b.client.wait(b.client.send_commands(C.batch(C.market_status(0, MarketStatus.OPEN))))
    )
    assert reopened["code"][0] == Result.OK
    with pytest.raises(ApiError) as blocked:
        b.client.put_limit(2, 0, Side.BID, 1000, 9_000)
    assert blocked.value.code == Result.USER_BLOCKED
    with pytest.raises(ApiError) as off_step:
        b.client.put_limit(1, 0, Side.BID, 1000, 9_001)  # the limit came with the log
    assert off_step.value.code == Result.PRICE_NOT_ON_STEP
    assert b.client.put_limit(1, 0, Side.BID, 1000, 9_000).order_id > 0
    assert b.journal.engine.user_limits(1, 1) == (999, 0)
    reopened, _ = results_events(
        b.client.wait(b.client.send_commands(C.batch(C.market_status(1, MarketStatus.OPEN))))
    )
    with pytest.raises(ApiError) as too_large:
        b.client.put_limit(1, 1, Side.BID, 1000, 9_000)
    assert too_large.value.code == Result.USER_AMOUNT_TOO_LARGE


@pytest.mark.parametrize("workers", [False, True], ids=["one-process", "pair-workers"])
def test_an_added_asset_and_market_reach_the_standby(nodes, workers: bool) -> None:  # type: ignore[no-untyped-def]
    """ADD_ASSET and ADD_MARKET are commands of the log: the standby's catalog follows
    the primary's, with the new market's book, and trades on it once promoted."""
    config = make_config(
        max_orders=1000, max_levels=200, max_assets=4, max_markets=3, added_market_orders=100,
        added_market_levels=20,
    )  # fmt: skip
    a = nodes("a", "primary", mode="sync", workers=workers, config=config)
    b = nodes("b", "standby", primary=a, mode="sync", config=config)
    wait_for(lambda: a.replication.refusal() is None, what="a fresh standby")
    fund(a)
    assert a.client.add_asset("DOGE", 8).value == 3
    assert a.client.add_market("DOGE_USDT", "DOGE", "USDT", 2, 4).value == 2
    a.client.balance_update(1, 3, "deposit", 1, 10**12)
    ask = a.client.put_limit(1, 2, Side.ASK, 1000, 1500).order_id
    a.client.put_limit(2, 2, Side.BID, 400, 1500)
    wait_for(lambda: caught_up(b, a), what="the standby to catch up")
    same_log(a, b)
    assert b.client.markets() == a.client.markets()
    assert b.client.assets() == a.client.assets()
    replayed = Engine(config)  # the primary's state (with pair workers, in its workers)
    replay(replayed, a.path / "data" / "log", 1)
    assert replayed.config == b.journal.engine.config
    assert replayed.state_hash() == b.journal.engine.state_hash()
    a.stop()
    b.client.promote()
    nodes("a2", "standby", primary=b, mode="sync", config=config)
    wait_for(lambda: b.replication.refusal() is None, what="a standby of the new primary")
    order = b.client.pending_detail(2, ask)
    assert order is not None
    assert order.left == 600
    assert b.client.put_limit(2, 2, Side.BID, 600, 1500).order is not None
    assert b.client.pending(1, 2).total == 0
    with pytest.raises(ApiError) as full:
        b.client.add_market("ETH_USDT", "ETH", "USDT", 4, 2)
    assert full.value.code == Result.MARKET_TABLE_FULL
