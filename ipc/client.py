"""The Python client SDK of the ZeroMQ order entry (docs/protocol.md, "Client SDK").

``Client`` is the blocking client; ``ipc.client_async.AsyncClient`` has the same API
on asyncio. Both speak wire version 4 over one DEALER socket:

- ``submit(commands)`` sends a numpy batch of ``COMMAND_DTYPE`` records as one
  COMMANDS frame and returns ``(results, events)``; ``call(*calls)`` sends msgpack
  calls (``ipc.wire.PutLimit``, ``BalanceQuery``, ...) as one CALLS frame and returns
  their ``Reply`` list. Batching is the caller's: one frame carries many commands.
- Pipelining: ``send_commands`` / ``send_calls`` return a request id at once;
  ``receive`` returns the next reply of any request, ``wait`` the reply of one.
  Replies are matched by id, so their order does not matter. At most
  ``max_in_flight`` requests are in flight; one more raises ``TooManyInFlight``.
- Operation methods (``put_limit``, ``balance_query``, ``depth``, ...) make one call
  each, in integer units as the wire carries them, and return its typed result, or
  raise ``ApiError`` with the engine's and ViaBTC's codes.

Authentication: ``curve=CurveKeys.from_files(...)`` makes the socket a CURVE client;
a server that does not know the key refuses the handshake, so requests time out.

Errors: ``RequestTimeout`` (a ``TimeoutError``), ``RequestRefused`` (an ERROR
frame, e.g. FORBIDDEN or TOO_MANY_REQUESTS; a ``WireError``), ``ApiError``,
``TooManyInFlight``, ``WireError`` for a request that cannot be encoded (nothing
sent), ``BrokenError`` for a reply that breaks the protocol, ``ClosedError`` after
``close``. A client is not thread-safe.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import numpy as np
import zmq

from core.errors import ClosedError
from core.schema import MarketStatus, RiskLimit, UserStatus
from ipc import market_ops as ops
from ipc.client_async import AsyncClient
from ipc.client_common import (
    DEFAULT_ENDPOINT,
    DEFAULT_LIMITS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TIMEOUT_S,
    Answer,
    ApiError,
    ClientStats,
    CurveKeys,
    Outcome,
    Request,
    RequestRefused,
    Requests,
    RequestTimeout,
    TooManyInFlight,
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

__all__ = [
    "DEFAULT_ENDPOINT",
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientStats",
    "CurveKeys",
    "RequestRefused",
    "RequestTimeout",
    "TooManyInFlight",
]


class Client:
    """A blocking client of the ZeroMQ order entry (see the module docstring).

    ``timeout_s`` is the default of every wait (``math.inf``: wait forever);
    ``limits`` bound the frames both ways, as on the server; ``context`` defaults to
    the process's shared ``zmq.Context.instance()``, which ``close`` leaves open.
    ``curve``: connect as a CURVE client with these keys (a server with a key
    registry refuses any other; docs/protocol.md, "Authentication and limits").
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        limits: WireLimits = DEFAULT_LIMITS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = check_timeout(timeout_s, DEFAULT_TIMEOUT_S)
        self._requests = Requests(endpoint, limits, max_in_flight)
        #: Replies received for requests in flight, not yet collected, in arrival order.
        self._ready: dict[int, Outcome] = {}
        self._closed = False
        self._socket: zmq.Socket[bytes] = (context or zmq.Context.instance()).socket(zmq.DEALER)
        try:
            self._socket.setsockopt(zmq.LINGER, 0)
            # Every reply answers a request in flight, so this bound never drops one.
            self._socket.setsockopt(zmq.RCVHWM, max_in_flight + 1)
            self._socket.setsockopt(zmq.SNDHWM, max_in_flight + 1)
            if curve is not None:
                curve.apply(self._socket)
            self._socket.connect(endpoint)
        except zmq.ZMQError:
            self._socket.close(linger=0)
            raise

    # ---------------------------------------------------------------- pipelining

    def send_commands(self, commands: np.ndarray, *, events: bool = False) -> int:
        """Send a COMMANDS frame of ``commands`` (``COMMAND_DTYPE``); its request id.

        ``events``: the reply carries the batch's events too.
        """
        self._check_open()
        rid, frame, request = self._requests.commands_frame(commands, events)
        return self._send(rid, frame, request)

    def send_calls(self, *calls: Call, events: bool = False) -> int:
        """Send a CALLS frame of ``calls``; its request id."""
        self._check_open()
        rid, frame, request = self._requests.calls_frame(calls, events)
        return self._send(rid, frame, request)

    def receive(self, timeout_s: float | None = None) -> tuple[int, Answer]:
        """The next reply to arrive for any request in flight: ``(request_id, frame)``,
        a ``ResultsFrame`` for commands or a ``RepliesFrame`` for calls (whose arrays
        are read-only views of the received frame).

        Raises ``RequestRefused`` (with the ``request_id``) for an ERROR frame, and
        ``RequestTimeout`` if nothing arrives in time; ``ValueError`` if nothing is in
        flight.
        """
        self._check_open()
        if not self._requests:
            raise ValueError(f"receive(): no request is in flight to {self.endpoint}")
        timeout = check_timeout(timeout_s, self.timeout_s)
        deadline = time.monotonic() + timeout
        while not self._ready:
            self._receive_one(deadline, timeout, None)
        rid = next(iter(self._ready))
        return rid, self._collect(rid)

    def wait(self, request_id: int, timeout_s: float | None = None) -> Answer:
        """The reply to ``request_id`` (replies to other requests arriving meanwhile are
        kept for ``receive`` and ``wait``); raises as ``receive``. On a timeout the
        request stays in flight."""
        self._check_open()
        if request_id not in self._requests:
            raise ValueError(f"request {request_id} is not in flight")
        timeout = check_timeout(timeout_s, self.timeout_s)
        deadline = time.monotonic() + timeout
        while request_id not in self._ready:
            self._receive_one(deadline, timeout, request_id)
        return self._collect(request_id)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet collected."""
        return len(self._requests)

    def statistics(self) -> ClientStats:
        return self._requests.stats()

    # ---------------------------------------------------------------- one at a time

    def submit(
        self, commands: np.ndarray, *, events: bool = False, timeout_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run a batch of ``COMMAND_DTYPE`` records: ``(results, events)``, one
        ``RESULT_DTYPE`` per command, by position, and (with ``events``) the batch's
        ``EVENT_DTYPE`` records, else none. On a timeout the request is forgotten."""
        check_timeout(timeout_s, self.timeout_s)
        rid = self.send_commands(commands, events=events)
        return results_events(self._wait_or_forget(rid, timeout_s))

    def call(
        self, *calls: Call, events: bool = False, timeout_s: float | None = None
    ) -> list[Reply]:
        """Make ``calls`` in one frame: one ``Reply`` each, by position (a failed call
        is a reply with a non-zero ``code``; ``reply.result_as(call)`` types a result).
        On a timeout the request is forgotten."""
        check_timeout(timeout_s, self.timeout_s)
        rid = self.send_calls(*calls, events=events)
        return replies_of(self._wait_or_forget(rid, timeout_s))

    def _one(self, call: Call) -> Any:
        (reply,) = self.call(call)
        return unwrap(call, reply)

    # ---------------------------------------------------------------- operations

    def put_limit(
        self, user: int, market: int, side: int, amount: int, price: int, *,
        taker_rate: int = 0, maker_rate: int = 0, tif: int = 0, stp: int = 0,
        flags: int = 0, source: str = "", client_id: int = 0,
    ) -> CommandDone:  # fmt: skip
        """A limit order: ``amount`` lots at ``price`` ticks; ``.order`` is the order.

        ``client_id`` (1..2**63-1; 0 = none) is the caller's own id for the order and
        makes a retry safe: once an order of ``user`` was placed with it, a put with
        the same id raises ``ApiError`` REPEAT_ORDER whose ``order_id`` is that order.
        """
        return cast(CommandDone, self._one(PutLimit(
            user, market, side, amount, price, taker_rate, maker_rate, tif, stp, flags, source,
            client_id,
        )))  # fmt: skip

    def put_market(
        self, user: int, market: int, side: int, amount: int, *,
        taker_rate: int = 0, stp: int = 0, source: str = "", client_id: int = 0,
    ) -> CommandDone:  # fmt: skip
        """A market order: an ask sells ``amount`` lots, a bid spends ``amount`` money
        units; ``client_id`` as for ``put_limit``."""
        call = PutMarket(user, market, side, amount, taker_rate, stp, source, client_id)
        return cast(CommandDone, self._one(call))

    def cancel(self, user: int, market: int, order_id: int) -> CommandDone:
        return cast(CommandDone, self._one(Cancel(user, market, order_id)))

    def replace(self, user: int, market: int, order_id: int, price: int, left: int) -> CommandDone:
        return cast(CommandDone, self._one(Replace(user, market, order_id, price, left)))

    def quote(
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
        return cast(QuoteDone, self._one(call))

    def cancel_quote(self, user: int, market: int) -> QuoteDone:
        """Remove ``user``'s quote on ``market`` (a quote of no level; also when the
        market is halted or the user blocked): ``.cancelled`` counts its orders."""
        return self.quote(user, market)

    def cancel_all(self, user: int, market: int, side: int = 0) -> CommandDone:
        """Cancel the user's orders on one side (0: both); ``.value`` counts them."""
        return cast(CommandDone, self._one(CancelAll(user, market, side)))

    def balance_update(
        self, user: int, asset: int, business: str, business_id: int, change: int,
        detail: dict[str, Any] | None = None,
    ) -> CommandDone:  # fmt: skip
        """Deposit (``change`` > 0) or withdraw, in units of the asset."""
        call = BalanceUpdate(user, asset, business, business_id, change, detail or {})
        return cast(CommandDone, self._one(call))

    def balance_query(self, user: int, *assets: int) -> list[Balance]:
        """The user's balances of ``assets`` (none given: every asset)."""
        return cast(list[Balance], self._one(BalanceQuery(user, list(assets))))

    def pending(self, user: int, market: int, offset: int = 0, limit: int = 101) -> Page:
        """The user's open orders on ``market``, newest first."""
        return cast(Page, self._one(OrderPending(user, market, offset, limit)))

    def pending_detail(self, market: int, order_id: int) -> Order | None:
        return cast(Order | None, self._one(OrderDetail(market, order_id)))

    def book(self, market: int, side: int, offset: int = 0, limit: int = 101) -> Page:
        """One side of the book, in priority order."""
        return cast(Page, self._one(OrderBook(market, side, offset, limit)))

    def depth(self, market: int, limit: int = 101, interval: int = 0) -> Depth:
        return cast(Depth, self._one(OrderDepth(market, limit, interval)))

    def markets(self) -> list[MarketInfo]:
        return cast(list[MarketInfo], self._one(MarketList()))

    def assets(self) -> list[AssetInfo]:
        return cast(list[AssetInfo], self._one(AssetList()))

    def status(self) -> Status:
        return cast(Status, self._one(ServerStatus()))

    def snapshot(self) -> SnapshotDone:
        return cast(SnapshotDone, self._one(ServerSnapshot()))

    def promote(self) -> Promoted:
        """Make this standby the primary of a new epoch (admin)."""
        return cast(Promoted, self._one(ServerPromote()))

    # ---------------------------------------------------------------- market operations

    def set_market_status(self, market: int, status: MarketStatus | int | str) -> CommandDone:
        """Set ``market``'s status (admin): "open", "halted" or "delisted" (or a
        ``MarketStatus``); ``seq`` is 0 if it already was."""
        return self._run(ops.set_market_status(market, status))

    def set_user_status(self, user: int, status: UserStatus | int | str) -> CommandDone:
        """Set ``user``'s status (admin): "active" or "blocked" (or a ``UserStatus``)."""
        return self._run(ops.set_user_status(user, status))

    def set_market_limit(
        self, market: int, limit: RiskLimit | int | str, value: int
    ) -> CommandDone:
        """Set ``market``'s risk limit ``limit`` (admin; a ``RiskLimit`` or its name,
        e.g. "price_step") to ``value`` in engine units: ticks, lots, money units,
        orders, or millionths of the last price (1 for the steps, 0 for the others: no
        limit); ``seq`` is 0 if it already was. ``ipc.market_limits.limit_value``
        converts decimal text."""
        return self._run(ops.set_market_limit(market, limit, value))

    def set_user_limit(
        self, user: int, market: int, limit: RiskLimit | int | str, value: int
    ) -> CommandDone:
        """Set ``user``'s own risk limit ``limit`` in ``market`` (admin;
        "max_order_amount" in lots or "max_notional" in money units, or their
        ``RiskLimit``) to ``value``, 0 for none; ``seq`` is 0 if it already was. The
        user's limits tighten the market's (docs/engine.md, "User risk limits")."""
        return self._run(ops.set_user_limit(user, market, limit, value))

    def user_limits(self, user: int, market: int) -> UserLimits:
        """``user``'s own risk limits in ``market`` as they are now (all 0: none)."""
        return cast(UserLimits, self._one(UserLimitsCall(user, market)))

    def cancel_market_orders(self, market: int, side: int = 0) -> CommandDone:
        """Cancel resting orders of every user in ``market`` (admin; side 0 both, 1
        asks, 2 bids): at most the engine's ``max_matches``, ``.value`` of them."""
        return cast(CommandDone, self._one(MarketCancelOrders(market, side)))

    def halt_market(self, market: int) -> CommandDone:
        """Make ``market`` cancel-only (admin); its resting orders stay."""
        return self.set_market_status(market, MarketStatus.HALTED)

    def resume_market(self, market: int) -> CommandDone:
        """Open a halted (or delisted) market again (admin)."""
        return self.set_market_status(market, MarketStatus.OPEN)

    def delist_market(self, market: int) -> int:
        """Delist ``market`` and cancel all its resting orders (admin; many commands,
        see ``ipc.market_ops``: run it again after a failure); the number cancelled."""
        return self._run(ops.delist(market))

    def block_user(self, user: int) -> int:
        """The kill switch (admin): block ``user`` and cancel the user's orders in
        every market (run it again after a failure); the number cancelled."""
        return self._run(ops.block(user, self._requests.limits.max_calls))

    def unblock_user(self, user: int) -> CommandDone:
        """Let a blocked user trade again (admin)."""
        return self.set_user_status(user, UserStatus.ACTIVE)

    # ---------------------------------------------------------------- the catalog

    def add_asset(self, name: str, prec: int, prec_show: int | None = None) -> CommandDone:
        """Add an asset to the catalog (admin; docs/protocol.md, "Adding assets and
        markets"): ``prec`` its internal scale, ``prec_show`` that of shown balances
        (None: ``prec``). ``.value`` is its index. A refusal (the name taken, the
        catalog full, a rule of the config broken) raises ``ApiError`` with the
        catalog's message."""
        return cast(CommandDone, self._one(AssetAdd(name, prec, prec_show)))

    def add_market(
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
        return cast(CommandDone, self._one(call))

    def _run(self, operation: ops.Operation[T]) -> T:
        return ops.run(operation, lambda calls: self.call(*calls))

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close the socket at once (linger 0); requests in flight are forgotten."""
        if not self._closed:
            self._closed = True
            self._socket.close(linger=0)
            self._requests.clear()
            self._ready.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the client of {self.endpoint} is closed")

    def _send(self, rid: int, frame: bytes, request: Request) -> int:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self._socket.send(frame, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                if not self._poll(zmq.POLLOUT, deadline):
                    raise RequestTimeout(
                        f"could not send request {rid} to {self.endpoint} within "
                        f"{self.timeout_s:g} s (send queue full)",
                        rid,
                    ) from None
                continue
            self._requests.sent(rid, request)
            return rid

    def _poll(self, event: int, deadline: float) -> bool:
        """Whether ``event`` is ready on the socket before ``deadline``."""
        if math.isinf(deadline):
            return bool(self._socket.poll(None, event))
        remaining_ms = math.ceil((deadline - time.monotonic()) * 1000)
        return remaining_ms > 0 and bool(self._socket.poll(remaining_ms, event))

    def _receive_one(self, deadline: float, timeout_s: float, rid: int | None) -> None:
        """Receive the next frame into ``_ready`` (or drop it), or ``RequestTimeout``."""
        while True:
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if not self._poll(zmq.POLLIN, deadline):
                    raise RequestTimeout(
                        timeout_message(self.endpoint, timeout_s, rid), rid
                    ) from None
                continue
            matched = self._requests.match(parts[-1])
            if matched is not None and matched[0] not in self._ready:
                self._ready[matched[0]] = matched[1]
            return

    def _collect(self, rid: int) -> Answer:
        outcome = self._ready.pop(rid)
        self._requests.forget(rid)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _wait_or_forget(self, rid: int, timeout_s: float | None) -> Answer:
        try:
            return self.wait(rid, timeout_s)
        except RequestTimeout:
            self._requests.forget(rid)
            raise
