"""The server with a key registry, over real CURVE on loopback TCP: only registered
keys connect, each key does only what its role and users allow, a refused frame
changes nothing (the engine's state hash), and rate limits answer "too many
requests" and recover. TESTING.md, scenario 11."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from core import commands as C
from core.config import EngineConfig
from core.errors import ConfigError
from core.schema import Result, Side
from daemon.auth import load_registry
from daemon.pipeline import Pipeline, plan_workers
from daemon.server import Server, ServerConfig
from daemon.server_pipeline import PipelinedServer
from ipc import wire
from ipc.client import ApiError, Client, RequestRefused, RequestTimeout
from ipc.client_common import CurveKeys
from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.support.keys import Entry, Keys
from tests.support.scenario import make_config
from tools import matchctl

pytestmark = pytest.mark.integration

TS = 1_700_000_000_000_000_000
S = 1_000_000_000
BTC, USDT = 0, 2
ALICE, BOB = 1, 2
#: A first engine call may compile kernels; a refused handshake is meant to time out.
SLOW_S, SHORT_S = 120.0, 0.3
_INSTANCES = itertools.count()


class FakeClock:
    """The rate limits' monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now_ns = 10 * S

    def __call__(self) -> int:
        return self.now_ns


class Secured:
    """A server with a key registry on its own thread; clients by key name. ``config``:
    the engine's (default: the test config); ``workers``: that many pair workers (the
    pipelined server; 0: one process)."""

    def __init__(self, path: Path, config: EngineConfig | None = None, workers: int = 0) -> None:
        self.keys = Keys(path / "keys")
        self.keys.add("ops", Entry("admin"))
        self.keys.add("alice", Entry("trade", [ALICE]))
        self.keys.add("bob", Entry("trade", [BOB]))
        self.keys.add("gateway", Entry("trade", "*"))
        self.keys.add("viewer", Entry("read", [ALICE]))
        self.keys.add("slow", Entry("trade", [ALICE], rate_per_s=10, burst=5))
        self.keys.add("stranger")  # a key pair the registry does not list
        self.registry = load_registry(self.keys.write_registry())
        engine_config = config or make_config(max_orders=1000, max_levels=200)
        self.journal = Journal.open(
            engine_config, JournalConfig(data_dir=path / "data", log=journal_log_config())
        )
        self.clock = FakeClock()
        sconfig = ServerConfig(endpoint="tcp://127.0.0.1:0", auth=self.registry)
        self.pipeline: Pipeline | None = None
        self.server: Server
        if workers:
            markets, slots = len(engine_config.markets), engine_config.market_slots
            plan = plan_workers(markets, workers, slots=slots)
            instance = f"auth{os.getpid()}n{next(_INSTANCES)}"
            self.pipeline = Pipeline(self.journal.engine, plan, instance)
            self.server = PipelinedServer(
                self.journal, self.pipeline, sconfig, clock=lambda: TS, auth_clock=self.clock
            )
        else:
            self.server = Server(self.journal, sconfig, clock=lambda: TS, auth_clock=self.clock)
        self.endpoint = self.server.endpoint
        self.stop = False
        self.thread = threading.Thread(target=self.server.serve, args=(lambda: self.stop, 10))
        self.thread.start()
        self.context: zmq.Context[Any] = zmq.Context()
        self._clients: dict[str, Client] = {}

    def client(self, name: str, timeout_s: float = SLOW_S) -> Client:
        if name not in self._clients:
            curve = self.keys.curve(name)
            self._clients[name] = Client(
                self.endpoint, timeout_s=timeout_s, curve=curve, context=self.context
            )
        return self._clients[name]

    def state_hash(self) -> str:
        return self.journal.engine.state_hash()

    def close(self) -> None:
        self.stop = True
        self.thread.join(120)
        for c in self._clients.values():
            c.close()
        self.context.term()
        self.server.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.journal.close()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    s = Secured(tmp_path)
    yield s
    s.close()


def fund(s: Secured) -> None:
    ops = s.client("ops")
    for user in (ALICE, BOB):
        ops.balance_update(user, BTC, "deposit", user, 10**14)
        ops.balance_update(user, USDT, "deposit", user, 10**14)


def refused(code: Result, action: Callable[[], object]) -> str:
    """``action`` is refused whole with ``code``; the ERROR frame's message."""
    with pytest.raises(RequestRefused) as info:
        action()
    assert info.value.code == code
    return info.value.message


def handshake_events(monitor: zmq.Socket[bytes]) -> set[int]:
    events: set[int] = set()
    while monitor.poll(int(SHORT_S * 1000)):
        events.add(recv_monitor_message(monitor)["event"])
    return events


# --------------------------------------------------------------------------- handshake


def test_an_unknown_key_is_refused_at_the_handshake(secured: Secured) -> None:
    socket: zmq.Socket[bytes] = secured.context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    secured.keys.curve("stranger").apply(socket)
    monitor = socket.get_monitor_socket()
    socket.connect(secured.endpoint)
    try:
        socket.send(wire.encode_calls([wire.ServerStatus()], 1))
        assert not socket.poll(int(SHORT_S * 1000))  # no reply, ever
        assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in handshake_events(monitor)
    finally:
        socket.disable_monitor()
        monitor.close(0)
        socket.close(0)
    stats = secured.server.auth_statistics()
    assert stats is not None
    assert stats.handshakes_refused >= 1
    assert stats.keys["ops"].admitted == 0  # nothing of the stranger's ran


def test_a_client_without_curve_or_with_the_wrong_server_key_gets_nothing(
    secured: Secured,
) -> None:
    alice = secured.keys.curve("alice")
    wrong = CurveKeys(alice.public_key, alice.secret_key, alice.public_key)
    for curve in (None, wrong, secured.keys.curve("stranger")):
        client = Client(secured.endpoint, timeout_s=SHORT_S, curve=curve, context=secured.context)
        try:
            with pytest.raises(RequestTimeout):
                client.status()
        finally:
            client.close()
    assert secured.client("viewer").status().seq == 0  # the server is fine


def test_the_server_key_may_ask_for_status_only(secured: Secured) -> None:
    curve = secured.registry.server_keys()
    with Client(secured.endpoint, timeout_s=SLOW_S, curve=curve, context=secured.context) as c:
        assert c.status().seq == 0
        refused(Result.FORBIDDEN, lambda: c.balance_query(ALICE))
        refused(Result.FORBIDDEN, c.snapshot)


# --------------------------------------------------------------------------- permissions


def test_a_trade_key_trades_for_its_users_and_nobody_else(secured: Secured) -> None:
    fund(secured)
    alice, bob = secured.client("alice"), secured.client("bob")
    mine = alice.put_limit(ALICE, 0, Side.ASK, 1000, 20_000)
    theirs = bob.put_limit(BOB, 0, Side.BID, 1000, 10_000)
    assert mine.order is not None
    assert theirs.order is not None
    before = secured.state_hash()
    attacks: list[Callable[[], object]] = [
        lambda: alice.put_limit(BOB, 0, Side.ASK, 1000, 10_000),
        lambda: alice.put_market(BOB, 0, Side.ASK, 1000),
        lambda: alice.cancel(BOB, 0, theirs.order_id),
        lambda: alice.replace(BOB, 0, theirs.order_id, 10_001, 500),
        lambda: alice.cancel_all(BOB, 0),
        lambda: alice.balance_query(BOB),
        lambda: alice.pending(BOB, 0),
        lambda: alice.balance_update(BOB, USDT, "withdraw", 7, -1),
        lambda: alice.balance_update(ALICE, USDT, "deposit", 7, 1),
        alice.snapshot,
        # Binary: one command for another user refuses the whole frame.
        lambda: alice.submit(C.batch(C.cancel(ALICE, 0, mine.order_id), C.cancel(BOB, 0, 1))),
        lambda: alice.submit(C.cancel_all(BOB, 0)),
        # Calls: so does one call.
        lambda: alice.call(wire.Cancel(ALICE, 0, mine.order_id), wire.BalanceQuery(BOB)),
    ]
    messages = [refused(Result.FORBIDDEN, attack) for attack in attacks]
    assert messages[0] == (
        "forbidden: key 'alice' (trade) may not act for user 2 (call 0, order.put_limit)"
    )
    assert messages[8] == (
        "forbidden: key 'alice' (trade) may not call balance.update (call 0): it needs an admin key"
    )
    assert "may not act for user 2 (command 1, CANCEL)" in messages[10]
    assert secured.state_hash() == before
    # Alice's own user id on Bob's order: the engine refuses it, as before auth.
    with pytest.raises(ApiError) as info:
        alice.cancel(ALICE, 0, theirs.order_id)
    assert info.value.code == Result.USER_NOT_MATCH
    assert bob.pending_detail(0, theirs.order_id) is not None
    # Alice's own orders and balances work, binary and calls.
    results, _ = alice.submit(C.batch(C.cancel(ALICE, 0, mine.order_id)))
    assert results["code"].tolist() == [Result.OK]
    assert {b.asset for b in alice.balance_query(ALICE)} >= {BTC, USDT}


def test_two_users_property_a_never_succeeds_on_b(secured: Secured) -> None:
    """Seeded random operations of every kind by Alice's key on Bob's orders and
    balances, alone or hidden in a frame of Alice's own: every one is refused and
    the state hash does not move."""
    fund(secured)
    alice, bob = secured.client("alice"), secured.client("bob")
    bob_orders = [bob.put_limit(BOB, 0, Side.BID, 1000, 9_000 + i).order_id for i in range(5)]
    alice_order = alice.put_limit(ALICE, 0, Side.ASK, 1000, 30_000).order_id
    rng = np.random.default_rng(11)

    def on_bob(i: int) -> tuple[np.ndarray, wire.Call]:
        oid = int(rng.choice(bob_orders))
        price = int(rng.integers(8_000, 12_000))
        cmds = [
            C.put_limit(BOB, 0, Side.ASK, 100, price),
            C.put_limit(BOB, 0, Side.BID, 100, price),
            C.put_market(BOB, 0, Side.ASK, 100),
            C.cancel(BOB, 0, oid),
            C.replace(BOB, 0, oid, price, 50),
            C.cancel_all(BOB, 0),
        ]
        calls: list[wire.Call] = [
            wire.PutLimit(BOB, 0, Side.ASK, 100, price),
            wire.PutMarket(BOB, 0, Side.BID, 10**6),
            wire.Cancel(BOB, 0, oid),
            wire.Replace(BOB, 0, oid, price, 50),
            wire.CancelAll(BOB, 0, 0),
            wire.BalanceQuery(BOB, [USDT]),
            wire.OrderPending(BOB, 0),
            wire.BalanceUpdate(BOB, USDT, "withdraw", i, -(10**8)),
            wire.BalanceUpdate(ALICE, USDT, "deposit", i, 10**8),
        ]
        return cmds[i % len(cmds)], calls[i % len(calls)]

    before = secured.state_hash()
    for i in range(300):
        cmd, call = on_bob(i)
        own = C.batch(C.cancel(ALICE, 0, alice_order))  # would succeed on its own
        at = int(rng.integers(0, 2))
        batch = np.concatenate([own, cmd] if at else [cmd, own])
        calls = [wire.Cancel(ALICE, 0, alice_order), call] if at else [call]
        refused(Result.FORBIDDEN, lambda b=batch: alice.submit(b))
        refused(Result.FORBIDDEN, lambda c=calls: alice.call(*c))
    assert secured.state_hash() == before
    stats = secured.server.auth_statistics()
    assert stats is not None
    assert stats.keys["alice"].forbidden == 600


def test_a_read_key_only_reads(secured: Secured) -> None:
    fund(secured)
    viewer = secured.client("viewer")
    before = secured.state_hash()
    refused(Result.FORBIDDEN, lambda: viewer.put_limit(ALICE, 0, Side.BID, 10, 10_000))
    refused(Result.FORBIDDEN, lambda: viewer.submit(C.cancel_all(ALICE, 0)))
    refused(Result.FORBIDDEN, lambda: viewer.balance_query(BOB))
    refused(Result.FORBIDDEN, lambda: viewer.balance_update(ALICE, BTC, "deposit", 9, 1))
    assert secured.state_hash() == before
    assert len(viewer.balance_query(ALICE)) == 3
    assert viewer.pending(ALICE, 0).total == 0
    assert viewer.depth(0).asks == []
    assert viewer.book(0, Side.ASK).total == 0
    assert [m.name for m in viewer.markets()][:1] == ["BTC_USDT"]


def test_only_an_admin_key_updates_balances_and_snapshots(secured: Secured) -> None:
    gateway, ops = secured.client("gateway"), secured.client("ops")
    before = secured.state_hash()
    refused(Result.FORBIDDEN, lambda: gateway.balance_update(ALICE, USDT, "deposit", 1, 10**8))
    refused(Result.FORBIDDEN, gateway.snapshot)
    assert secured.state_hash() == before
    ops.balance_update(ALICE, USDT, "deposit", 1, 10**8)
    ops.balance_update(BOB, BTC, "deposit", 1, 10**8)
    # A gateway trades for every user; an admin key too.
    assert gateway.put_limit(ALICE, 0, Side.BID, 1000, 10_000).order is not None
    assert ops.put_limit(BOB, 0, Side.ASK, 1000, 10_000).order is not None
    done = ops.snapshot()
    assert done.state_hash == secured.state_hash()


# --------------------------------------------------------------------------- limits


def test_a_key_over_its_rate_limit_gets_too_many_requests_then_recovers(
    secured: Secured,
) -> None:
    fund(secured)
    slow = secured.client("slow")  # 10/s, bursts of 5
    for _ in range(5):
        slow.status()
    before = secured.state_hash()
    message = refused(
        Result.TOO_MANY_REQUESTS, lambda: slow.put_limit(ALICE, 0, Side.BID, 1000, 10_000)
    )
    assert message == (
        "too many requests: key 'slow' (trade) may send 10 commands/s with bursts of 5; "
        "retry in 0.100 s"
    )
    refused(Result.TOO_MANY_REQUESTS, lambda: slow.submit(C.cancel_all(ALICE, 0)))
    assert secured.state_hash() == before  # a limited frame changes nothing
    assert secured.client("alice").status().seq > 0  # other keys are not limited
    secured.clock.now_ns += S // 10  # one token
    assert slow.put_limit(ALICE, 0, Side.BID, 1000, 10_000).order is not None
    refused(Result.TOO_MANY_REQUESTS, slow.status)
    secured.clock.now_ns += 10 * S
    six = C.batch(*(C.cancel_all(ALICE, 0) for _ in range(6)))
    assert "never accepted: split it" in refused(Result.TOO_MANY_REQUESTS, lambda: slow.submit(six))
    results, _ = slow.submit(six[:5])
    assert (results["code"] == Result.OK).all()
    stats = secured.server.auth_statistics()
    assert stats is not None
    assert stats.keys["slow"].limited == 4
    # A malformed frame costs a token and is answered, never crashes anything.
    secured.clock.now_ns += 10 * S
    sock: zmq.Socket[bytes] = secured.context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    secured.keys.curve("slow").apply(sock)
    sock.connect(secured.endpoint)
    try:
        for _ in range(7):
            sock.send(b"MDWP" + bytes(10))
        codes = []
        for _ in range(7):
            assert sock.poll(int(SLOW_S * 1000))
            reply = wire.decode_reply(sock.recv())
            assert isinstance(reply, wire.ErrorFrame)
            codes.append(reply.code)
    finally:
        sock.close(0)
    assert codes == [Result.INVALID_ARGUMENT] * 5 + [Result.TOO_MANY_REQUESTS] * 2
    assert secured.client("ops").status().seq > 0


# --------------------------------------------------------------------------- start-up


def test_without_keys_only_a_local_endpoint_binds(tmp_path: Path) -> None:
    journal = Journal.open(
        make_config(max_orders=10, max_levels=10),
        JournalConfig(data_dir=tmp_path / "data", log=journal_log_config()),
    )
    try:
        for endpoint in ("tcp://0.0.0.0:0", "tcp://*:0", "tcp://[::]:0"):
            with pytest.raises(ConfigError, match="reachable from other machines"):
                Server(journal, ServerConfig(endpoint=endpoint))
        server = Server(journal, ServerConfig(endpoint="tcp://127.0.0.1:0"))
        server.close()
        server = Server(journal, ServerConfig(endpoint=f"ipc://{tmp_path}/o.sock"))
        server.close()
    finally:
        journal.close()


def test_the_async_client_speaks_curve_too(secured: Secured) -> None:
    import asyncio

    import zmq.asyncio

    from ipc.client import AsyncClient

    async def main() -> tuple[int, Result]:
        context = zmq.asyncio.Context()
        try:
            curve = secured.keys.curve("viewer")
            async with AsyncClient(
                secured.endpoint, timeout_s=SLOW_S, curve=curve, context=context
            ) as client:
                status = await client.status()
                with pytest.raises(RequestRefused) as info:
                    await client.balance_query(BOB)
                return status.seq, info.value.code
        finally:
            context.term()

    assert asyncio.run(main()) == (0, Result.FORBIDDEN)


def test_matchctl_speaks_curve_with_its_key_files(
    secured: Secured, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = secured.keys.directory
    base = ["--endpoint", secured.endpoint, "--timeout", "30"]
    alice = ["--key", str(keys / "alice.key_secret"), "--server-key", str(keys / "server.key")]
    assert matchctl.main(["status", *base, *alice]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == secured.journal.durable_seq
    assert matchctl.main(["balance", str(BOB), *base, *alice]) == 1  # not alice's user
    assert json.loads(capsys.readouterr().err)["code"] == Result.FORBIDDEN
    assert matchctl.main(["status", *base, "--key", str(keys / "alice.key_secret")]) == 2
    assert "go together" in capsys.readouterr().err
