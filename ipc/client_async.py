"""The asyncio client of the ZeroMQ order entry: ``ipc.client.Client``'s API with
``await`` (docs/protocol.md, "Client SDK").

One reader task receives every reply and resolves the future of its request (keyed
by request id), so any number of tasks may share one client, each awaiting its own
requests. Runs on the default event loop or on uvloop (``uvloop.run(main())``); it
needs neither. The reader starts with the first request and stops at ``aclose``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import numpy as np
import zmq
import zmq.asyncio

from core.errors import BrokenError, ClosedError, MatchdError
from core.schema import MarketStatus, RiskLimit, UserStatus
from ipc import market_ops as ops
from ipc.client_common import (
    DEFAULT_ENDPOINT,
    DEFAULT_LIMITS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TIMEOUT_S,
    Answer,
    ClientStats,
    CurveKeys,
    Outcome,
    Request,
    Requests,
    RequestTimeout,
    check_timeout,
    replies_of,
    results_events,
    timeout_message,
    unwrap,
)
from ipc.wire import (
    AssetAdd,
    AssetInfo,
    AssetList,
    Balance,
    BalanceQuery,
    BalanceUpdate,
    Call,
    Cancel,
    CancelAll,
    CommandDone,
    Depth,
    MarketAdd,
    MarketCancelOrders,
    MarketInfo,
    MarketList,
    Order,
    OrderBook,
    OrderDepth,
    OrderDetail,
    OrderPending,
    Page,
    Promoted,
    PutLimit,
    PutMarket,
    QuoteDone,
    Replace,
    Reply,
    ServerPromote,
    ServerSnapshot,
    ServerStatus,
    SnapshotDone,
    Status,
    UserLimits,
    UserLimitsCall,
    WireLimits,
    quote_call,
)

T = TypeVar("T")

__all__ = ["AsyncClient"]


def _timeout(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds


class AsyncClient:
    """An asyncio client of the ZeroMQ order entry; the arguments are ``Client``'s
    (``context`` defaults to ``zmq.asyncio.Context.instance()``)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        limits: WireLimits = DEFAULT_LIMITS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        context: zmq.asyncio.Context | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = check_timeout(timeout_s, DEFAULT_TIMEOUT_S)
        self._requests = Requests(endpoint, limits, max_in_flight)
        self._futures: dict[int, asyncio.Future[Outcome]] = {}
        #: Requests whose reply arrived and was not yet collected, in arrival order.
        self._arrived: dict[int, None] = {}
        self._arrival = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._broken: BrokenError | None = None
        self._closed = False
        ctx = context or zmq.asyncio.Context.instance()
        self._socket: zmq.asyncio.Socket = ctx.socket(zmq.DEALER)
        try:
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.RCVHWM, max_in_flight + 1)
            self._socket.setsockopt(zmq.SNDHWM, max_in_flight + 1)
            if curve is not None:
                curve.apply(self._socket)
            self._socket.connect(endpoint)
        except zmq.ZMQError:
            self._socket.close(linger=0)
            raise

    # ---------------------------------------------------------------- pipelining

    async def send_commands(self, commands: np.ndarray, *, events: bool = False) -> int:
        """As ``Client.send_commands``."""
        self._check_usable()
        rid, frame, request = self._requests.commands_frame(commands, events)
        return await self._send(rid, frame, request)

    async def send_calls(self, *calls: Call, events: bool = False) -> int:
        """As ``Client.send_calls``."""
        self._check_usable()
        rid, frame, request = self._requests.calls_frame(calls, events)
        return await self._send(rid, frame, request)

    async def receive(self, timeout_s: float | None = None) -> tuple[int, Answer]:
        """As ``Client.receive``: the next reply to arrive, ``(request_id, frame)``."""
        self._check_open()
        if not self._futures:
            raise ValueError(f"receive(): no request is in flight to {self.endpoint}")
        timeout = check_timeout(timeout_s, self.timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._arrived:
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), _timeout(deadline - loop.time()))
            except TimeoutError:
                raise RequestTimeout(timeout_message(self.endpoint, timeout, None)) from None
        rid = next(iter(self._arrived))
        return rid, self._collect(rid)

    async def wait(self, request_id: int, timeout_s: float | None = None) -> Answer:
        """As ``Client.wait``: the reply to ``request_id``; on a timeout the request
        stays in flight."""
        self._check_open()
        future = self._futures.get(request_id)
        if future is None:
            raise ValueError(f"request {request_id} is not in flight")
        timeout = check_timeout(timeout_s, self.timeout_s)
        done, _ = await asyncio.wait((future,), timeout=_timeout(timeout))
        if not done:
            raise RequestTimeout(timeout_message(self.endpoint, timeout, request_id), request_id)
        return self._collect(request_id)

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    def statistics(self) -> ClientStats:
        return self._requests.stats()

    # ---------------------------------------------------------------- one at a time

    async def submit(
        self, commands: np.ndarray, *, events: bool = False, timeout_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``Client.submit``."""
        check_timeout(timeout_s, self.timeout_s)
        rid = await self.send_commands(commands, events=events)
        return results_events(await self._wait_or_forget(rid, timeout_s))

    async def call(
        self, *calls: Call, events: bool = False, timeout_s: float | None = None
    ) -> list[Reply]:
        """As ``Client.call``."""
        check_timeout(timeout_s, self.timeout_s)
        rid = await self.send_calls(*calls, events=events)
        return replies_of(await self._wait_or_forget(rid, timeout_s))

    async def _one(self, call: Call) -> Any:
        (reply,) = await self.call(call)
        return unwrap(call, reply)

    # ---------------------------------------------------------------- operations

    async def put_limit(
        self, user: int, market: int, side: int, amount: int, price: int, *,
        taker_rate: int = 0, maker_rate: int = 0, tif: int = 0, stp: int = 0,
        flags: int = 0, source: str = "", client_id: int = 0,
    ) -> CommandDone:  # fmt: skip
        return cast(CommandDone, await self._one(PutLimit(
            user, market, side, amount, price, taker_rate, maker_rate, tif, stp, flags, source,
            client_id,
        )))  # fmt: skip

    async def put_market(
        self, user: int, market: int, side: int, amount: int, *,
        taker_rate: int = 0, stp: int = 0, source: str = "", client_id: int = 0,
    ) -> CommandDone:  # fmt: skip
        call = PutMarket(user, market, side, amount, taker_rate, stp, source, client_id)
        return cast(CommandDone, await self._one(call))

    async def cancel(self, user: int, market: int, order_id: int) -> CommandDone:
        return cast(CommandDone, await self._one(Cancel(user, market, order_id)))

    async def replace(
        self, user: int, market: int, order_id: int, price: int, left: int
    ) -> CommandDone:
        return cast(CommandDone, await self._one(Replace(user, market, order_id, price, left)))

    async def quote(
        self, user: int, market: int, bids: Iterable[Sequence[int]] = (),
        asks: Iterable[Sequence[int]] = (), *, taker_rate: int = 0, maker_rate: int = 0,
        source: str = "",
    ) -> QuoteDone:  # fmt: skip
        """A mass quote (docs/protocol.md, "Mass quotes"): make ``user``'s quote orders
        on ``market`` exactly the ladder ``bids`` and ``asks``, ``(price ticks, amount
        lots)`` pairs, at most 32 a side, all or nothing; no level removes the quote.
        The rates and ``source`` are those of the orders it adds. ``.levels`` says what
        became of each level (bids first, then asks): its order and its ``action``
        (``QuoteAction``: KEPT, SHRUNK, GROWN, NEW); ``.cancelled`` counts the stale
        quote orders cancelled; ``.seq`` is 0 if nothing changed. A refusal raises
        ``ApiError`` (nothing changed); malformed levels ``ValueError`` (nothing sent).
        """
        call = quote_call(user, market, bids, asks, taker_rate, maker_rate, source)
        return cast(QuoteDone, await self._one(call))

    async def cancel_quote(self, user: int, market: int) -> QuoteDone:
        """Remove ``user``'s quote on ``market`` (a quote of no level; also when the
        market is halted or the user blocked): ``.cancelled`` counts its orders."""
        return await self.quote(user, market)

    async def cancel_all(self, user: int, market: int, side: int = 0) -> CommandDone:
        return cast(CommandDone, await self._one(CancelAll(user, market, side)))

    async def balance_update(
        self, user: int, asset: int, business: str, business_id: int, change: int,
        detail: dict[str, Any] | None = None,
    ) -> CommandDone:  # fmt: skip
        call = BalanceUpdate(user, asset, business, business_id, change, detail or {})
        return cast(CommandDone, await self._one(call))

    async def balance_query(self, user: int, *assets: int) -> list[Balance]:
        return cast(list[Balance], await self._one(BalanceQuery(user, list(assets))))

    async def pending(self, user: int, market: int, offset: int = 0, limit: int = 101) -> Page:
        return cast(Page, await self._one(OrderPending(user, market, offset, limit)))

    async def pending_detail(self, market: int, order_id: int) -> Order | None:
        return cast(Order | None, await self._one(OrderDetail(market, order_id)))

    async def book(self, market: int, side: int, offset: int = 0, limit: int = 101) -> Page:
        return cast(Page, await self._one(OrderBook(market, side, offset, limit)))

    async def depth(self, market: int, limit: int = 101, interval: int = 0) -> Depth:
        return cast(Depth, await self._one(OrderDepth(market, limit, interval)))

    async def markets(self) -> list[MarketInfo]:
        return cast(list[MarketInfo], await self._one(MarketList()))

    async def assets(self) -> list[AssetInfo]:
        return cast(list[AssetInfo], await self._one(AssetList()))

    async def status(self) -> Status:
        return cast(Status, await self._one(ServerStatus()))

    async def snapshot(self) -> SnapshotDone:
        return cast(SnapshotDone, await self._one(ServerSnapshot()))

    async def promote(self) -> Promoted:
        """Make this standby the primary of a new epoch (admin)."""
        return cast(Promoted, await self._one(ServerPromote()))

    # ---------------------------------------------------------------- market operations

    async def set_market_status(self, market: int, status: MarketStatus | int | str) -> CommandDone:
        """Set ``market``'s status (admin): "open", "halted" or "delisted" (or a
        ``MarketStatus``); ``seq`` is 0 if it already was."""
        return await self._run(ops.set_market_status(market, status))

    async def set_user_status(self, user: int, status: UserStatus | int | str) -> CommandDone:
        """Set ``user``'s status (admin): "active" or "blocked" (or a ``UserStatus``)."""
        return await self._run(ops.set_user_status(user, status))

    async def set_market_limit(
        self, market: int, limit: RiskLimit | int | str, value: int
    ) -> CommandDone:
        """Set ``market``'s risk limit ``limit`` (admin; a ``RiskLimit`` or its name,
        e.g. "price_step") to ``value`` in engine units: ticks, lots, money units,
        orders, or millionths of the last price (1 for the steps, 0 for the others: no
        limit); ``seq`` is 0 if it already was. ``ipc.market_limits.limit_value``
        converts decimal text."""
        return await self._run(ops.set_market_limit(market, limit, value))

    async def set_user_limit(
        self, user: int, market: int, limit: RiskLimit | int | str, value: int
    ) -> CommandDone:
        """Set ``user``'s own risk limit ``limit`` in ``market`` (admin;
        "max_order_amount" in lots or "max_notional" in money units, or their
        ``RiskLimit``) to ``value``, 0 for none; ``seq`` is 0 if it already was. The
        user's limits tighten the market's (docs/engine.md, "User risk limits")."""
        return await self._run(ops.set_user_limit(user, market, limit, value))

    async def user_limits(self, user: int, market: int) -> UserLimits:
        """``user``'s own risk limits in ``market`` as they are now (all 0: none)."""
        return cast(UserLimits, await self._one(UserLimitsCall(user, market)))

    async def cancel_market_orders(self, market: int, side: int = 0) -> CommandDone:
        """Cancel resting orders of every user in ``market`` (admin; side 0 both, 1
        asks, 2 bids): at most the engine's ``max_matches``, ``.value`` of them."""
        return cast(CommandDone, await self._one(MarketCancelOrders(market, side)))

    async def halt_market(self, market: int) -> CommandDone:
        """Make ``market`` cancel-only (admin); its resting orders stay."""
        return await self.set_market_status(market, MarketStatus.HALTED)

    async def resume_market(self, market: int) -> CommandDone:
        """Open a halted (or delisted) market again (admin)."""
        return await self.set_market_status(market, MarketStatus.OPEN)

    async def delist_market(self, market: int) -> int:
        """Delist ``market`` and cancel all its resting orders (admin; many commands,
        see ``ipc.market_ops``: run it again after a failure); the number cancelled."""
        return await self._run(ops.delist(market))

    async def block_user(self, user: int) -> int:
        """The kill switch (admin): block ``user`` and cancel the user's orders in
        every market (run it again after a failure); the number cancelled."""
        return await self._run(ops.block(user, self._requests.limits.max_calls))

    async def unblock_user(self, user: int) -> CommandDone:
        """Let a blocked user trade again (admin)."""
        return await self.set_user_status(user, UserStatus.ACTIVE)

    # ---------------------------------------------------------------- the catalog

    async def add_asset(self, name: str, prec: int, prec_show: int | None = None) -> CommandDone:
        """Add an asset to the catalog (admin; docs/protocol.md, "Adding assets and
        markets"): ``prec`` its internal scale, ``prec_show`` that of shown balances
        (None: ``prec``). ``.value`` is its index. A refusal (the name taken, the
        catalog full, a rule of the config broken) raises ``ApiError`` with the
        catalog's message."""
        return cast(CommandDone, await self._one(AssetAdd(name, prec, prec_show)))

    async def add_market(
        self, name: str, stock: str, money: str, stock_prec: int, money_prec: int,
        **settings: Any,
    ) -> CommandDone:  # fmt: skip
        """Add a market to the catalog (admin): ``stock`` and ``money`` are asset
        names; ``settings`` any other key of a ``[[markets]]`` table (``fee_prec``,
        ``min_amount="0.001"``, ``max_orders``, ``price_step``, ...; decimals as text,
        as the config writes them). Left out: the config's default, and for
        ``max_orders`` and ``max_levels`` the room the engine reserves for an added
        market. ``.value`` is its index; it is open, with empty books. A refusal
        raises ``ApiError`` with the catalog's message; an unknown setting
        ``TypeError`` (nothing sent)."""
        call = MarketAdd(name, stock, money, stock_prec, money_prec, **settings)
        return cast(CommandDone, await self._one(call))

    async def _run(self, operation: ops.Operation[T]) -> T:
        return await ops.arun(operation, self._call_list)

    async def _call_list(self, calls: list[Call]) -> list[Reply]:
        return await self.call(*calls)

    # ---------------------------------------------------------------- lifetime

    async def aclose(self) -> None:
        """Stop the reader and close the socket (linger 0); requests in flight fail
        with ``ClosedError``."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self.close()

    def close(self) -> None:
        """As ``aclose``, without waiting for the reader to finish its cancellation."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        self._socket.close(linger=0)
        self._fail_all(ClosedError(f"the client of {self.endpoint} was closed"))
        self._requests.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ---------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the client of {self.endpoint} is closed")

    def _check_usable(self) -> None:
        self._check_open()
        if self._broken is not None:
            raise self._broken

    async def _send(self, rid: int, frame: bytes, request: Request) -> int:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._futures[rid] = future
        self._requests.sent(rid, request)
        sending = cast("asyncio.Future[Any]", self._socket.send(frame, copy=False))
        try:
            if sending.done():  # the usual case: ZeroMQ queued it at once
                sending.result()
            else:
                await asyncio.wait_for(sending, _timeout(self.timeout_s))
        except TimeoutError:
            self._forget(rid)
            raise RequestTimeout(
                f"could not send request {rid} to {self.endpoint} within "
                f"{self.timeout_s:g} s (send queue full)",
                rid,
            ) from None
        except BaseException:
            self._forget(rid)
            raise
        return rid

    async def _read(self) -> None:
        """The reader task: resolve the future of every reply that arrives."""
        try:
            while True:
                parts = await self._socket.recv_multipart()
                matched = self._requests.match(parts[-1])
                if matched is None:
                    continue
                rid, outcome = matched
                future = self._futures.get(rid)
                if future is not None and not future.done():
                    future.set_result(outcome)
                    self._arrived[rid] = None
                    self._arrival.set()
        except Exception as exc:  # the socket or the loop failed: fail every waiter
            if self._closed:
                return
            broken = BrokenError(f"the reader of {self.endpoint} failed: {exc!r}")
            broken.__cause__ = exc
            self._broken = broken
            self._fail_all(broken)

    def _fail_all(self, error: MatchdError) -> None:
        for rid, future in self._futures.items():
            if not future.done():
                future.set_result(error)
                self._arrived[rid] = None
        self._arrival.set()

    def _collect(self, rid: int) -> Answer:
        outcome = self._futures[rid].result()
        self._forget(rid)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _forget(self, rid: int) -> None:
        future = self._futures.pop(rid, None)
        if future is not None and not future.done():
            future.cancel()
        self._arrived.pop(rid, None)
        self._requests.forget(rid)

    async def _wait_or_forget(self, rid: int, timeout_s: float | None) -> Answer:
        try:
            return await self.wait(rid, timeout_s)
        except RequestTimeout:
            self._forget(rid)
            raise
