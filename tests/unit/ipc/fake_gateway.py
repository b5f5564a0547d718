"""A tiny ZeroMQ order-entry server on a background thread, for the client SDK tests.

It decodes each request with ``ipc.wire.decode_request``, runs COMMANDS frames and
order calls on an engine, answers a few query calls, and replies with the wire
encoders. Test knobs (set from the test thread): ``hold()`` keeps replies until
``release()``; ``reverse_batches(n)`` sends replies n at a time in reverse order;
``refuse(code)`` answers every request with an ERROR frame.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import zmq

from core import commands
from core.api import EngineAPI
from core.schema import Result
from ipc import wire

_POLL_MS = 5


class FakeGateway:
    """A ROUTER socket bound to ``endpoint`` answering from ``engine`` (a thread)."""

    def __init__(self, endpoint: str, engine: EngineAPI) -> None:
        self.endpoint = endpoint
        self.engine = engine
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)
        self._lock = threading.Condition()
        self._held: list[list[bytes]] = []
        self._holding = False
        self._release_all = False
        self._batch = 1
        self._reverse = False
        self._refuse: Result | None = None
        self.requests = 0  #: request frames received
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-gateway", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ knobs

    def hold(self) -> None:
        with self._lock:
            self._holding = True

    def release(self) -> None:
        """Send the held replies, in order, and stop holding."""
        with self._lock:
            self._holding = False
            self._release_all = True

    def reverse_batches(self, n: int) -> None:
        with self._lock:
            self._batch, self._reverse = n, True

    def refuse(self, code: Result | None) -> None:
        with self._lock:
            self._refuse = code

    def wait_requests(self, n: int, timeout_s: float = 5.0) -> None:
        """Block until ``n`` request frames have arrived in all."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.requests >= n, timeout_s):
                raise TimeoutError(f"the fake gateway got {self.requests} requests, not {n}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._socket.close(linger=0)
        self._context.term()

    # ------------------------------------------------------------ loop

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(_POLL_MS, zmq.POLLIN):
                parts = self._socket.recv_multipart()
                reply = self._answer(parts[-1])
                with self._lock:
                    self._held.append([*parts[:-1], reply])
                    self.requests += 1
                    self._lock.notify_all()
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if self._holding or not self._held:
                return
            if len(self._held) < self._batch and not self._release_all:
                return
            self._release_all = False
            out, self._held = self._held, []
            if self._reverse:
                out.reverse()
        for message in out:
            self._socket.send_multipart(message)

    def _answer(self, frame: bytes) -> bytes:
        with self._lock:
            refuse = self._refuse
        try:
            request = wire.decode_request(frame)
        except wire.WireError as exc:
            return wire.error_reply(exc)
        if refuse is not None:
            return wire.encode_error(request.request_id, refuse)
        if isinstance(request, wire.CommandsFrame):
            results, events = self.engine.execute(request.commands.copy())
            return wire.encode_results(
                request.request_id, results, events if request.want_events else None
            )
        replies = [self._reply(c, request.want_events) for c in request.calls]
        return wire.encode_replies(request.request_id, replies)

    def _reply(self, call: wire.Call | wire.WireError, want_events: bool) -> wire.Reply:
        if isinstance(call, wire.WireError):
            return wire.make_reply(None, call.code, message=call.message)
        e = self.engine
        match call:
            case wire.OrderCall():
                return self._done(call, *e.execute(call.record()), want_events)
            case wire.BalanceUpdate():
                business = call.business.encode()
                done = e.balance_update(call.user, call.asset, business, call.business_id,
                                        call.change, 0)  # fmt: skip
                return self._done(call, *done, want_events)
            case wire.BalanceQuery():
                assets = call.assets or range(len(e.config.assets))
                balances = [wire.Balance(a, *e.balance(call.user, a)) for a in assets]
                return wire.make_reply(call, Result.OK, balances)
            case wire.MarketList():
                markets = [wire.MarketInfo.from_market(m) for m in e.config.markets]
                return wire.make_reply(call, Result.OK, markets)
            case wire.ServerStatus():
                return wire.make_reply(call, Result.OK, wire.Status(*e.counters()))
            case wire.OrderBook():
                total, views = e.book(call.market, call.side, call.offset, call.limit)
                orders = [wire.Order.from_view(v) for v in views]
                return wire.make_reply(
                    call, Result.OK, wire.Page(call.offset, call.limit, total, orders)
                )
            case wire.OrderPending():
                total, views = e.pending(call.user, call.market, call.offset, call.limit)
                orders = [wire.Order.from_view(v) for v in views]
                return wire.make_reply(
                    call, Result.OK, wire.Page(call.offset, call.limit, total, orders)
                )
            case wire.OrderDetail():
                view = e.order(call.market, call.order_id)
                order = None if view is None else wire.Order.from_view(view)
                return wire.make_reply(call, Result.OK, order)
            case wire.OrderDepth():
                asks, bids = e.depth(call.market, call.limit, call.interval)
                return wire.make_reply(call, Result.OK, wire.Depth(asks, bids))
        return wire.make_reply(call, Result.INVALID_ARGUMENT, message="not in the fake gateway")

    @staticmethod
    def _done(call: wire.Call, results: Any, events: Any, want_events: bool) -> wire.Reply:
        code = Result(int(results[0]["code"]))
        if code != Result.OK:  # as the server: REPEAT_ORDER names the order placed
            return wire.make_reply(call, code, order_id=int(results[0]["order_id"]))
        done = wire.write_done(call, results, events, with_events=want_events)
        return wire.make_reply(call, Result.OK, done)


@contextmanager
def running(endpoint: str, engine: EngineAPI) -> Iterator[FakeGateway]:
    gateway = FakeGateway(endpoint, engine)
    try:
        yield gateway
    finally:
        gateway.close()


# --------------------------------------------------------------------------- workload

BTC, USDT = 0, 2  #: asset indexes of tests.support.scenario's config
BTC_USDT = 0
USERS = (1, 2, 3, 4)


def deposits() -> list[wire.BalanceUpdate]:
    """10 BTC and 100,000 USDT for each of ``USERS``."""
    return [
        wire.BalanceUpdate(user, asset, "deposit", user, change)
        for user in USERS
        for asset, change in ((BTC, 10 * 10**10), (USDT, 100_000 * 10**8))
    ]


def fund(engine: EngineAPI) -> None:
    """Make ``deposits()`` on ``engine`` directly."""
    for d in deposits():
        results, _ = engine.balance_update(
            d.user, d.asset, d.business.encode(), d.business_id, d.change, 0
        )
        assert results[0]["code"] == Result.OK


def random_batch(rng: np.random.Generator, size: int, first_order_id: int = 1) -> np.ndarray:
    """``size`` BTC_USDT commands around 8000 USDT: mostly limit orders that cross
    now and then, some market orders and cancels (of ids that may not rest)."""
    out = []
    for _ in range(size):
        user, side = int(rng.choice(USERS)), int(rng.integers(1, 3))
        roll = rng.random()
        if roll < 0.75:
            price = 800_000 + int(rng.integers(-20, 21))
            amount = 1_000 * int(rng.integers(1, 6))
            out.append(commands.put_limit(user, BTC_USDT, side, amount, price, 10, 5))
        elif roll < 0.85:
            amount = 1_000 if side == 1 else 10 * 10**8  # a bid spends 10 USDT
            out.append(commands.put_market(user, BTC_USDT, side, amount, 10))
        else:
            order_id = first_order_id + int(rng.integers(0, 50))
            out.append(commands.cancel(user, BTC_USDT, order_id))
    return commands.batch(*out)
