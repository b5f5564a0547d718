"""The durable server over real ZeroMQ sockets, in one process and with pair workers
(``PipelinedServer``): answers equal the in-process engine's, every answer is durable,
and a restart recovers the same state."""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from core import commands as C
from core.config import EngineConfig
from core.engine import Engine
from core.schema import Result, Side
from daemon.pipeline import Pipeline, plan_workers
from daemon.server import Server, ServerConfig
from daemon.server_pipeline import PipelinedServer
from ipc import wire
from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.support.scenario import make_config
from tests.unit.persistence.helpers import FaultyIO

pytestmark = pytest.mark.integration

TS = 1_700_000_000_000_000_000
BTC, USDT = 0, 2


def config() -> EngineConfig:
    return make_config(max_orders=1000, max_levels=200)


MODES = ["one-process", "workers"]
_INSTANCES = itertools.count()


class Running:
    """A server on its own thread over a journal in ``path``; ``mode`` "workers" runs
    the pipelined server with a pair worker per market."""

    def __init__(self, path: Path, mode: str = "one-process", max_pending: int = 4096) -> None:
        self.journal = Journal.open(
            config(), JournalConfig(data_dir=path / "data", log=journal_log_config())
        )
        endpoint = f"ipc://{path}/orders.sock"
        sconfig = ServerConfig(endpoint=endpoint)
        self.pipeline: Pipeline | None = None
        self.server: Server
        if mode == "workers":
            plan = plan_workers(len(config().markets))
            instance = f"srv{os.getpid()}n{next(_INSTANCES)}"
            self.pipeline = Pipeline(self.journal.engine, plan, instance)
            self.server = PipelinedServer(
                self.journal, self.pipeline, sconfig, clock=lambda: TS, max_pending=max_pending
            )
        else:
            self.server = Server(self.journal, sconfig, clock=lambda: TS)
        self.stop = False
        self.thread = threading.Thread(target=self.server.serve, args=(lambda: self.stop, 20))
        self.thread.start()
        self.context = zmq.Context()
        self.client = self.context.socket(zmq.DEALER)
        self.client.setsockopt(zmq.LINGER, 0)
        self.client.connect(endpoint)
        self.next_id = 0

    def request(self, frame_for: object) -> object:
        self.next_id += 1
        assert callable(frame_for)
        self.client.send(frame_for(self.next_id))
        assert self.client.poll(120_000), "no reply"  # the first call may compile kernels
        reply = wire.decode_reply(self.client.recv())
        # A frame whose header cannot be read is answered with request id 0.
        assert reply.request_id in (self.next_id, 0)
        return reply

    def state_hash(self) -> str:
        """The whole state's hash, through a snapshot (in both modes)."""
        reply = self.request(lambda rid: wire.encode_calls([wire.ServerSnapshot()], rid))
        done = reply.replies[0].result_as(wire.ServerSnapshot)
        return str(done.state_hash)

    def close(self) -> None:
        self.stop = True
        self.thread.join(120)
        self.client.close(0)
        self.context.term()
        self.server.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.journal.close()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def running(tmp_path: Path, mode: str) -> Iterator[Running]:
    r = Running(tmp_path, mode)
    yield r
    r.close()


def deposits() -> list[wire.BalanceUpdate]:
    return [
        wire.BalanceUpdate(user=u, asset=a, business="deposit", business_id=u, change=10**14)
        for u in (1, 2, 3)
        for a in (BTC, USDT)
    ]


def orders() -> np.ndarray:
    return C.batch(
        C.put_limit(1, 0, Side.ASK, 1000, 10_000),
        C.put_limit(2, 0, Side.ASK, 2000, 10_001),
        C.put_limit(3, 0, Side.BID, 2500, 10_001, 20, 10),
        C.cancel(1, 0, 99),  # not found
        C.put_market(3, 0, Side.BID, 10**8, 20),
    )


def test_answers_equal_the_in_process_engine_and_are_durable(running: Running) -> None:
    plain = Engine(config())
    replies = running.request(lambda rid: wire.encode_calls(deposits(), rid))
    assert all(r.ok for r in replies.replies)
    for d in deposits():
        plain.balance_update(d.user, d.asset, d.business.encode(), d.business_id, d.change, TS)
    cmds = orders()
    got = running.request(lambda rid: wire.encode_commands(cmds, rid, events=True))
    want_cmds = cmds.copy()
    want_cmds["ts_ns"] = TS
    want_results, want_events = plain.execute(want_cmds)
    assert np.array_equal(got.results, want_results)
    assert np.array_equal(got.events, want_events)
    assert got.results["code"][3] == Result.ORDER_NOT_FOUND
    # Acknowledged means durable.
    assert running.journal.durable_seq >= int(got.results["seq"].max())
    assert running.state_hash() == plain.state_hash()


def test_queries_and_errors(running: Running) -> None:
    running.request(lambda rid: wire.encode_calls(deposits(), rid))
    running.request(lambda rid: wire.encode_commands(orders(), rid))
    resting = C.put_limit(2, 0, Side.ASK, 3000, 20_000)
    running.request(lambda rid: wire.encode_commands(resting, rid))
    replies = running.request(
        lambda rid: wire.encode_calls(
            [
                wire.MarketList(),
                wire.BalanceQuery(user=1, assets=[BTC]),
                wire.OrderBook(market=0, side=Side.ASK),
                wire.ServerStatus(),
            ],
            rid,
        )
    ).replies
    markets = replies[0].result_as(wire.MarketList)
    assert [m.name for m in markets][:1] == ["BTC_USDT"]
    (balance,) = replies[1].result_as(wire.BalanceQuery)
    assert balance.asset == BTC
    assert balance.available + balance.freeze == 10**14 - 1000 * 10**4  # sold 1000 lots
    book = replies[2].result_as(wire.OrderBook)
    assert book.total == 1
    assert (book.orders[0].price, book.orders[0].left) == (20_000, 3000)
    status = replies[3].result_as(wire.ServerStatus)
    assert status.seq == running.journal.durable_seq
    # Unknown markets read as empty, in both forms of the server.
    for market in (-1, 2, 99, 32767):
        replies = running.request(
            lambda rid, m=market: wire.encode_calls(
                [
                    wire.OrderBook(market=m, side=Side.ASK),
                    wire.OrderDepth(market=m),
                    wire.OrderDetail(market=m, order_id=1),
                    wire.OrderPending(user=1, market=m),
                ],
                rid,
            )
        ).replies
        assert [r.code for r in replies] == [Result.OK] * 4
        assert replies[0].result_as(wire.OrderBook).total == 0
        assert replies[2].result_as(wire.OrderDetail) is None
    # A broken frame is refused whole with a precise error, and changes nothing.
    error = running.request(lambda rid: b"XXXX" + bytes(40))
    assert isinstance(error, wire.ErrorFrame)
    assert (error.code, error.request_id) == (Result.INVALID_ARGUMENT, 0)
    assert running.journal.engine.counters()[0] == status.seq


def test_a_restart_recovers_what_was_acknowledged(tmp_path: Path, mode: str) -> None:
    first = Running(tmp_path, mode)
    first.request(lambda rid: wire.encode_calls(deposits(), rid))
    first.request(lambda rid: wire.encode_commands(orders(), rid))
    expected = first.state_hash()
    first.close()
    second = Running(tmp_path, mode)
    try:
        assert second.state_hash() == expected
        status = second.request(lambda rid: wire.encode_calls([wire.ServerStatus()], rid))
        assert status.replies[0].result_as(wire.ServerStatus).seq == second.journal.durable_seq
    finally:
        second.close()


def test_a_snapshot_call_is_answered_with_the_rest_of_its_frame_when_written(
    running: Running,
) -> None:
    running.request(lambda rid: wire.encode_calls(deposits(), rid))
    reply = running.request(
        lambda rid: wire.encode_calls([wire.ServerStatus(), wire.ServerSnapshot()], rid)
    )
    status, snapshot = reply.replies
    seq = status.result_as(wire.ServerStatus).seq
    done = snapshot.result_as(wire.ServerSnapshot)
    assert done.seq == seq
    plain = Engine(config())
    for d in deposits():
        plain.balance_update(d.user, d.asset, d.business.encode(), d.business_id, d.change, TS)
    assert done.state_hash == plain.state_hash()


def test_a_failing_disk_holds_answers_and_refuses_new_commands(running: Running) -> None:
    running.request(lambda rid: wire.encode_calls(deposits(), rid))
    io = FaultyIO()
    running.journal._writer._io = io  # the writer's system calls, for fault tests
    io.fail("fdatasync", errno.EIO, times=-1)
    held = C.batch(C.put_limit(1, 0, Side.ASK, 1000, 10_000))
    running.client.send(wire.encode_commands(held, 101))
    assert not running.client.poll(500), "answered while its batch was not durable"
    running.client.send(wire.encode_commands(C.batch(C.put_limit(2, 0, Side.BID, 10, 1)), 102))
    assert running.client.poll(10_000)
    refused = wire.decode_reply(running.client.recv())
    assert refused.request_id == 102
    assert (refused.results["code"] == Result.SERVICE_UNAVAILABLE).all()
    io.clear()
    assert running.client.poll(10_000)
    released = wire.decode_reply(running.client.recv())
    assert released.request_id == 101
    assert released.results["code"][0] == Result.OK
    assert running.journal.durable_seq == released.results["seq"][0]


def test_calls_whose_log_write_fails_are_answered_once_durable_with_their_results(
    running: Running,
) -> None:
    running.request(lambda rid: wire.encode_calls(deposits(), rid))
    io = FaultyIO()
    running.journal._writer._io = io  # the writer's system calls, for fault tests
    io.fail("fdatasync", errno.EIO, times=-1)
    calls = [
        wire.BalanceUpdate(user=1, asset=1, business="deposit", business_id=77, change=5),
        wire.PutLimit(user=1, market=0, side=Side.ASK, amount=1000, price=10_000),
        wire.ServerStatus(),
    ]
    running.client.send(wire.encode_calls(calls, 201))
    assert not running.client.poll(500), "answered while its calls were not durable"
    late = wire.BalanceUpdate(user=1, asset=1, business="deposit", business_id=78, change=5)
    running.client.send(wire.encode_calls([late], 202))
    assert running.client.poll(10_000)
    refused = wire.decode_reply(running.client.recv())
    assert refused.request_id == 202  # the log is failing: refused, not run
    assert refused.replies[0].code == Result.SERVICE_UNAVAILABLE
    io.clear()
    assert running.client.poll(10_000)
    released = wire.decode_reply(running.client.recv())
    assert released.request_id == 201
    deposit, order, status = released.replies
    assert deposit.code == Result.OK
    assert order.code == Result.OK
    assert order.result_as(wire.PutLimit).order_id > 0
    assert status.code == Result.OK
    bid = C.batch(C.put_limit(2, 0, Side.BID, 1000, 9_000))
    after = running.request(lambda rid: wire.encode_commands(bid, rid))
    assert (after.results["code"] == Result.OK).all()
    assert running.journal.durable_seq == after.results["seq"][0]


def test_the_write_calls_of_a_frame_share_one_fsync(running: Running) -> None:
    running.request(lambda rid: wire.encode_calls(deposits(), rid))
    syncs = running.journal.writer.stats().syncs
    calls = [
        wire.BalanceUpdate(user=1, asset=1, business="deposit", business_id=100 + i, change=5)
        for i in range(20)
    ]
    reply = running.request(lambda rid: wire.encode_calls(calls, rid))
    assert [r.code for r in reply.replies] == [Result.OK] * 20
    assert running.journal.writer.stats().syncs == syncs + 1


def test_the_pipelined_server_refuses_what_would_overfill_it(tmp_path: Path) -> None:
    running = Running(tmp_path, "workers", max_pending=8)
    try:
        running.request(lambda rid: wire.encode_calls(deposits(), rid))
        before = running.state_hash()
        many = C.batch(*[C.put_limit(1, 0, Side.ASK, 1000, 10_000 + i) for i in range(9)])
        refused = running.request(lambda rid: wire.encode_commands(many, rid))
        assert (refused.results["code"] == Result.SERVICE_UNAVAILABLE).all()
        assert running.state_hash() == before  # nothing ran
        fits = many[:8]
        done = running.request(lambda rid: wire.encode_commands(fits, rid))
        assert (done.results["code"] == Result.OK).all()
    finally:
        running.close()
