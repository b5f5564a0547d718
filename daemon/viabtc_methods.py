"""ViaBTC's 23 JSON-RPC methods (and matchd's order.replace, order.cancel_all and
order.quote, the mass quote of ``daemon.viabtc_quote``) over matchd's backends: the
engine (ZeroMQ calls), the feed (market.*) and the MySQL history (readhistory's
methods). The HTTP and WebSocket gateways share it. The HTTP
gateway also serves matchd's market operations (``ADMIN_METHODS``: halt, resume and
delist a market, block and unblock a user, set a market's risk limit or a user's own,
the latter in ``daemon.viabtc_user_limit``; docs/gateways.md), compositions of the
engine's admin calls (``ipc.market_ops``), and adds assets and markets at run time
(``daemon.viabtc_catalog``). The assets and markets it knows are the catalog's
(``daemon.gateway_catalog``): a param naming one it does not know makes it ask the
engine for the catalog once more.

``ViabtcMethods.call(method, params)`` checks the parameters as ViaBTC does
(``core.viabtc_codec``, ``persistence.history_queries``; the feed checks its own),
asks the backend and returns an ``Answer``: ViaBTC's ``error`` and ``result``. A
parameter is never trusted: the engine and the feed check again what they get.
Backend failures raise ``daemon.gateway_links.BackendError``; the gateways map them
to ViaBTC's transport rules (HTTP 500, 504).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec
import numpy as np

from core.arguments import ArgumentError, str_arg
from core.config import EngineConfig
from core.errors import ParseError
from core.schema import COMMAND_DTYPE, MESSAGES, CommandKind, Result, RiskLimit
from core.viabtc_codec import ViabtcCodec, argument_failure, fail
from core.views import AssetSummary, MarketSummary, OrderView
from daemon import viabtc_catalog as catalog_calls
from daemon import viabtc_quote as quote
from daemon import viabtc_user_limit as user_limit
from daemon.gateway_catalog import DEFAULT_REFRESH_S, CatalogMismatch, GatewayCatalog, check_prefix
from daemon.gateway_links import (
    BackendBusy,
    BackendError,
    BackendTimeout,
    EngineLink,
    FeedLink,
)
from daemon.gateway_primary import PrimaryLink
from ipc import market_ops as ops
from ipc import wire
from ipc.client_common import ApiError
from ipc.market_limits import (
    check_notionals,
    limit_value,
    risk_limit,
)
from persistence.history_pool import HistoryError
from persistence.history_queries import HistoryReader

logger = logging.getLogger("matchd.gateway")

CODE_INVALID_ARGUMENT: Final = 1
CODE_INTERNAL_ERROR: Final = 2
CODE_SERVICE_UNAVAILABLE: Final = 3
CODE_METHOD_NOT_FOUND: Final = 4
CODE_SERVICE_TIMEOUT: Final = 5


@dataclass(frozen=True, slots=True)
class Answer:
    """ViaBTC's ``error`` (None or ``{"code", "message"}``, plus ``"order_id"`` for a
    put refused as a repeat of a client order id) and ``result``; ``raw`` is the
    result as JSON text instead (passed through from the feed)."""

    error: dict[str, Any] | None
    result: Any = None
    raw: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def result_value(self) -> Any:
        """The result as a Python value (decoding ``raw``)."""
        return msgspec.json.decode(self.raw) if self.raw is not None else self.result


def error_answer(code: int, message: str) -> Answer:
    return Answer({"code": code, "message": message})


NOT_FOUND: Final = error_answer(CODE_METHOD_NOT_FOUND, "method not found")


class _FeedReply(msgspec.Struct):
    error: Any = None
    result: msgspec.Raw = msgspec.Raw(b"null")


_decode_feed = msgspec.json.Decoder(_FeedReply)

_Handler = Callable[["ViabtcMethods", list[Any]], Awaitable[Answer]]
_T = TypeVar("_T")

#: Each method's parameter count: exact (an int) or (least, most); None ignores them.
_ARITY: Final[dict[str, int | tuple[int, int] | None]] = {
    "balance.query": (1, 1 << 16),
    "balance.update": 6,
    "balance.history": 7,
    "asset.list": None,
    "asset.summary": (0, 1 << 16),
    "order.put_limit": (8, 9),  # ViaBTC's 8, then matchd's optional client_id
    "order.put_market": (6, 7),
    "order.cancel": 3,
    "order.replace": 5,
    "order.cancel_all": (2, 3),
    "order.quote": quote.PARAMS,  # matchd's mass quote (daemon.viabtc_quote)
    "order.book": 4,
    "order.depth": 3,
    "order.pending": 4,
    "order.pending_detail": 2,
    "order.deals": 3,
    "order.finished": (6, 7),
    "order.finished_detail": 1,
    "market.last": 1,
    "market.deals": 3,
    "market.kline": 4,
    "market.status": 2,
    "market.status_today": 1,
    "market.user_deals": 4,
    "market.list": None,
    "market.summary": (0, 1 << 16),
    # matchd's market operations (ADMIN_METHODS)
    "market.halt": 1,
    "market.resume": 1,
    "market.delist": 1,
    "user.block": 1,
    "user.unblock": 1,
    "market.set_limit": 3,
    "user.set_limit": user_limit.PARAMS,  # daemon.viabtc_user_limit
    "asset.add": catalog_calls.ASSET_PARAMS,  # daemon.viabtc_catalog
    "market.add": catalog_calls.MARKET_PARAMS,
}
#: matchd's market operations: each changes what a whole market or a user may do
#: (docs/gateways.md, "Market operations"), and the additions to the catalog
#: (asset.add, market.add: "Adding assets and markets"). Only the HTTP gateway serves
#: them; the engine takes them from an admin key only.
ADMIN_METHODS: Final = frozenset(
    (
        "market.halt",
        "market.resume",
        "market.delist",
        "user.block",
        "user.unblock",
        "market.set_limit",
        "user.set_limit",
        "asset.add",
        "market.add",
    )
)
#: ViaBTC's methods (the 23 of accesshttp) and matchd's additions (order.replace,
#: order.cancel_all, order.quote).
METHODS: Final = frozenset(_ARITY) - ADMIN_METHODS
FEED_METHODS: Final = frozenset(
    ("market.last", "market.deals", "market.kline", "market.status", "market.status_today")
)
_ORDER_METHODS: Final = {
    "order.put_limit": CommandKind.PUT_LIMIT,
    "order.put_market": CommandKind.PUT_MARKET,
    "order.cancel": CommandKind.CANCEL,
    "order.replace": CommandKind.REPLACE,
    "order.cancel_all": CommandKind.CANCEL_ALL,
}
_NOTIONALS: Final = (RiskLimit.MIN_NOTIONAL, RiskLimit.MAX_NOTIONAL)
#: The order commands (``ViabtcMethods.order_batch`` takes batches of them).
ORDER_METHODS: Final = frozenset(_ORDER_METHODS)


def arity_error(method: str, count: int) -> Answer | None:
    """The error for ``count`` params of ``method``, or None if the count is right."""
    arity = _ARITY[method]
    if arity is None:
        return None
    low, high = (arity, arity) if isinstance(arity, int) else arity
    if low <= count <= high:
        return None
    want = str(low) if low == high else f"{low} to {high}"
    if high == low + 1:
        want = f"{low} or {high}"
    if high == 1 << 16:
        want = f"at least {low}"
    return error_answer(
        CODE_INVALID_ARGUMENT, f"invalid argument: {method} takes {want} params, not {count}"
    )


def _view(order: wire.Order) -> OrderView:
    return OrderView(**msgspec.structs.asdict(order))


class ViabtcMethods:
    """The methods over the given backends (see the module docstring).

    Parameters
    ----------
    config
        The engine's config (markets and assets: the gateway checks and formats with
        them, and with those added at run time, learnt from the engine:
        ``catalog``; ``check_engine`` verifies that the engine runs the same).
    engine
        The link to the engine's order entry.
    feed
        The link to the feed's market.* ROUTER, or None (market.* answer code 3).
    history
        The readhistory methods (``HistoryNotConfigured`` answers code 3).
    executor
        Where the blocking history queries run.
    catalog_refresh_s
        Least time between two refreshes of the catalog (``[http]``/``[ws]``
        ``catalog_refresh_s``).
    """

    def __init__(
        self,
        config: EngineConfig,
        engine: EngineLink | PrimaryLink,
        feed: FeedLink | None,
        history: HistoryReader,
        executor: Executor,
        *,
        catalog_refresh_s: float = DEFAULT_REFRESH_S,
    ) -> None:
        self.codec = ViabtcCodec(config)
        self.catalog = GatewayCatalog(self.codec, engine, catalog_refresh_s)
        self.catalog.listeners.append(self._history_catalog)
        self.engine = engine
        self.feed = feed
        self.history = history
        self.executor = executor
        codec = self.codec
        self._builders: dict[str, Callable[..., np.ndarray]] = {
            "order.put_limit": codec.put_limit,
            "order.put_market": codec.put_market,
            "order.cancel": codec.cancel,
            "order.replace": codec.replace,
            "order.cancel_all": codec.cancel_all,
        }

    @property
    def config(self) -> EngineConfig:
        """The catalog now: the config's assets and markets and those added since
        (``daemon.gateway_catalog``)."""
        return self.codec.config

    async def check_engine(self) -> str | None:
        """None if the engine's markets and assets begin with the config's (the
        engine's catalog is then taken: those added at run time), else why not."""
        markets_call, assets_call = wire.MarketList(), wire.AssetList()
        replies = await asyncio.gather(
            self.engine.call(markets_call), self.engine.call(assets_call)
        )
        for reply in replies:
            if not reply.ok:
                return f"the engine refused to list its catalog: {reply.message or reply.code}"
        markets = replies[0].result_as(markets_call)
        assets = replies[1].result_as(assets_call)
        try:
            check_prefix(self.config, assets, markets)
        except CatalogMismatch as exc:
            return str(exc)
        self.catalog.learn(assets, markets)
        return None

    async def call(self, method: str, params: list[Any]) -> Answer:
        """ViaBTC's answer to ``method(*params)``; ``NOT_FOUND`` for an unknown method.

        Raises ``BackendDown`` or ``BackendTimeout`` when a backend cannot answer
        (``BackendBusy`` is answered as code 3).
        """
        if method not in _ARITY:
            return NOT_FOUND
        bad = arity_error(method, len(params))
        if bad is not None:
            return bad
        try:
            return await self._checked(method, params)
        except BackendError:
            raise  # the gateway's transport rules (500, 504)
        except Exception:  # a bug must not take the worker's answer down with it
            logger.exception("%s failed on params %.200r", method, params)
            return error_answer(CODE_INTERNAL_ERROR, "internal error")

    async def _checked(self, method: str, params: list[Any]) -> Answer:
        """``method``'s answer, a bad argument's error; an asset or a market the
        catalog does not know makes it ask the engine for its catalog and try once
        more (``_learnt``)."""
        before = self.config
        try:
            return await self._run(method, params)
        except (ArgumentError, HistoryError) as exc:
            if not await self._learnt(exc, before):
                return _refusal(method, exc)
        try:
            return await self._run(method, params)
        except (ArgumentError, HistoryError) as exc:
            return _refusal(method, exc)

    async def _learnt(self, exc: ArgumentError | HistoryError, before: EngineConfig) -> bool:
        """True if ``exc`` refuses a name the catalog did not know (``before``) and
        knows now (``GatewayCatalog.learnt``)."""
        code = exc.result if isinstance(exc, ArgumentError) else exc.result_code
        return await self.catalog.learnt(code, before)

    async def _run(self, method: str, params: list[Any]) -> Answer:
        """``method``'s answer; a bad argument raises (``ArgumentError``, ``HistoryError``)."""
        try:
            if method in FEED_METHODS:
                return await self._feed(method, params)
            return await _HANDLERS[method](self, params)
        except BackendBusy as exc:
            return error_answer(CODE_SERVICE_UNAVAILABLE, f"service unavailable: {exc}")

    # ------------------------------------------------------------ backends

    async def _engine(self, call: wire.Call) -> wire.Reply:
        return await self.engine.call(call)

    async def _feed(self, method: str, params: list[Any]) -> Answer:
        if self.feed is None:
            return error_answer(
                CODE_SERVICE_UNAVAILABLE,
                "service unavailable: market data is not configured (no [feed] in the config)",
            )
        body = await self.feed.call(method, params)
        try:
            reply = _decode_feed.decode(body)
        except msgspec.MsgspecError:
            raise BackendError("feed", "the feed answered something that is not JSON-RPC") from None
        if reply.error is not None:
            return Answer(reply.error)
        return Answer(None, raw=bytes(reply.result))

    async def _history(self, fn: Callable[..., Any], *args: Any) -> Answer:
        """``fn(*args)`` on a history thread; ``BackendTimeout`` after the engine link's
        ``timeout_s`` (the query goes on, bounded by the pool's own time-outs)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.engine.timeout_s):
                return Answer(None, await loop.run_in_executor(self.executor, fn, *args))
        except TimeoutError:
            raise BackendTimeout("history", "the history database did not answer in time") from None

    async def order_batch(self, requests: list[tuple[str, list[Any]]]) -> list[Answer]:
        """The answers to a batch of order commands (``ORDER_METHODS`` only), as
        ``call`` would give them one by one, with one request to the engine: the
        accepted ones go in one COMMANDS frame, in order. Raises as ``call``."""
        answers: list[Answer | None] = [None] * len(requests)
        records: list[bytes] = []
        placed: list[int] = []
        for i, (method, params) in enumerate(requests):
            bad = arity_error(method, len(params))
            if bad is not None:
                answers[i] = bad
                continue
            try:
                records.append((await self._record(method, params)).tobytes())
            except ArgumentError as exc:
                answers[i] = _reply(argument_failure(method, exc))
                continue
            placed.append(i)
        if placed:
            batch = np.frombuffer(b"".join(records), dtype=COMMAND_DTYPE)
            try:
                outcomes = await self.engine.commands(batch)
            except BackendBusy as exc:
                busy = error_answer(CODE_SERVICE_UNAVAILABLE, f"service unavailable: {exc}")
                outcomes = []
                for i in placed:
                    answers[i] = busy
            for i, outcome in zip(placed, outcomes, strict=False):
                answers[i] = _reply(self.codec.outcome_reply(requests[i][0], outcome))
        return [a for a in answers if a is not None]

    async def _record(self, method: str, params: list[Any]) -> np.ndarray:
        """The command record of an order method, the catalog refreshed and the params
        checked again if they name a market it does not know."""
        before = self.config
        try:
            return self._builders[method](tuple(params), 0)
        except ArgumentError as exc:
            if not await self._learnt(exc, before):
                raise
        return self._builders[method](tuple(params), 0)

    def _history_catalog(self, config: EngineConfig) -> None:
        """The history checks the names of its params too: it follows the catalog
        (``HistoryQueries.use_catalog``)."""
        self.history.use_catalog(config)

    # ------------------------------------------------------------ engine methods

    async def order_command(self, method: str, params: list[Any]) -> Answer:
        """An order command, as a binary record (group-committed with the commands of
        its frame); the order object from the command's events, as in process."""
        record = self._builders[method](tuple(params), 0)  # the server sets ts_ns
        outcome = await self.engine.command(record)
        return _reply(self.codec.outcome_reply(method, outcome))

    async def order_quote(self, params: list[Any]) -> Answer:
        """matchd's order.quote (``daemon.viabtc_quote``): a mass quote, its k + 1
        records sent as binary records like the other order commands."""
        request = quote.quote_request(self.codec, params)
        outcomes = await self.engine.commands(request.records)
        return _reply(quote.quote_reply(request.market, request.records, outcomes))

    async def balance_update(self, params: list[Any]) -> Answer:
        c = self.codec.balance_change(tuple(params))
        try:
            call = wire.BalanceUpdate(
                c.user, c.asset.index, c.business.decode(), c.business_id, c.change, c.detail
            )
        except ValueError as exc:  # the detail is not plain JSON, or nested too deep
            raise ArgumentError(str(exc)) from None
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error("balance.update", reply)
        return Answer(None, {"status": "success"})

    async def balance_query(self, params: list[Any]) -> Answer:
        user = self.codec.user(params[0], low=1)
        chosen = self.codec.assets(tuple(params[1:]))
        call = wire.BalanceQuery(user, [a.index for a in chosen])
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error("balance.query", reply)
        balances: list[wire.Balance] = reply.result_as(call)
        by_index = {b.asset: b for b in balances}
        result = {}
        for a in chosen:
            b = by_index[a.index]
            result[a.name] = self.codec.balance(a, b.available, b.freeze)
        return Answer(None, result)

    async def asset_list(self, params: list[Any]) -> Answer:
        """ViaBTC's asset.list: the catalog's assets, those added at run time too (the
        engine's list is learnt); an engine that cannot answer: the assets the
        gateway knows."""
        call = wire.AssetList()
        try:
            reply = await self._engine(call)
        except BackendError:
            return Answer(None, self.codec.asset_list())
        if reply.ok:
            self.catalog.learn(reply.result_as(call), None)
        return Answer(None, self.codec.asset_list())

    async def asset_summary(self, params: list[Any]) -> Answer:
        chosen = self.codec.assets(tuple(params))
        call = wire.AssetSummaryCall([a.index for a in chosen])
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error("asset.summary", reply)
        rows: list[wire.AssetSummary] = reply.result_as(call)
        return Answer(
            None,
            [
                self.codec.asset_summary(
                    a,
                    AssetSummary(
                        s.total_balance,
                        s.available_count,
                        s.available_balance,
                        s.freeze_count,
                        s.freeze_balance,
                    ),
                )
                for a, s in zip(chosen, rows, strict=True)
            ],
        )

    async def market_list(self, params: list[Any]) -> Answer:
        """ViaBTC's market.list: the catalog's markets, those added at run time too
        (the engine's list is learnt; a market of an asset the gateway does not know
        yet makes it refresh its catalog), each with its ``status`` from the engine
        ("open", "halted", "delisted"); an engine that cannot answer: the markets the
        gateway knows, without ``status``, so the list stays available
        (docs/compat.md)."""
        call = wire.MarketList()
        try:
            reply = await self._engine(call)
        except BackendError:
            return Answer(None, self.codec.market_list())
        if not reply.ok:
            return Answer(None, self.codec.market_list())
        listed: list[wire.MarketInfo] = reply.result_as(call)
        self.catalog.learn(None, listed)
        if len(listed) > len(self.config.markets):
            await self.catalog.refresh()
        status = {m.name: m.status for m in listed}
        markets = self.codec.market_list()
        return Answer(None, [{**m, "status": status.get(m["name"], "open")} for m in markets])

    async def market_summary(self, params: list[Any]) -> Answer:
        chosen = [self.codec.market(n) for n in params] or list(self.config.markets)
        call = wire.MarketSummaryCall([m.index for m in chosen])
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error("market.summary", reply)
        rows: list[wire.MarketSummary] = reply.result_as(call)
        return Answer(
            None,
            [
                self.codec.market_summary(
                    m, MarketSummary(s.ask_count, s.ask_amount, s.bid_count, s.bid_amount)
                )
                for m, s in zip(chosen, rows, strict=True)
            ],
        )

    async def order_book(self, params: list[Any]) -> Answer:
        market, side, offset, limit = params
        m = self.codec.market(market)
        s = self.codec.side(side)
        off, lim = self.codec.page(offset, limit)
        return await self._page("order.book", wire.OrderBook(m.index, s, off, lim), "orders")

    async def order_pending(self, params: list[Any]) -> Answer:
        user_id, market, offset, limit = params
        user = self.codec.user(user_id)
        m = self.codec.market(market)
        off, lim = self.codec.page(offset, limit)
        call = wire.OrderPending(user, m.index, off, lim)
        return await self._page("order.pending", call, "records")

    async def _page(
        self, method: str, call: wire.OrderBook | wire.OrderPending, key: str
    ) -> Answer:
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error(method, reply)
        page: wire.Page = reply.result_as(call)
        orders = [_view(o) for o in page.orders]
        return Answer(None, self.codec.paged(page.offset, page.limit, page.total, key, orders))

    async def order_pending_detail(self, params: list[Any]) -> Answer:
        m = self.codec.market(params[0])
        call = wire.OrderDetail(m.index, self.codec.order_id(params[1]))
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error("order.pending_detail", reply)
        order: wire.Order | None = reply.result_as(call)
        return Answer(None, None if order is None else self.codec.order_object(_view(order)))

    async def order_depth(self, params: list[Any]) -> Answer:
        m, lim, step = self.codec.depth_args(*params)
        call = wire.OrderDepth(m.index, lim, step)
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error("order.depth", reply)
        depth: wire.Depth = reply.result_as(call)
        return Answer(None, self.codec.depth(m, list(depth.asks), list(depth.bids)))

    # ------------------------------------------------------------ market operations

    async def market_operation(self, method: str, params: list[Any]) -> Answer:
        """market.halt, market.resume, market.delist ``[market]``: ``{"status":
        "success"}``, and for delist ``"cancelled"``, the number of orders cancelled."""
        m = self.codec.market(params[0])
        if method == "market.delist":
            return await self._operate(method, ops.delist(m.index), "cancelled")
        status = "halted" if method == "market.halt" else "open"
        return await self._operate(method, ops.set_market_status(m.index, status))

    async def user_operation(self, method: str, params: list[Any]) -> Answer:
        """user.block (the kill switch: also cancels the user's orders in every
        market; ``"cancelled"`` counts them) and user.unblock ``[user_id]``."""
        user = self.codec.user(params[0])
        if method == "user.block":
            return await self._operate(method, ops.block(user), "cancelled")
        return await self._operate(method, ops.set_user_status(user, "active"))

    async def market_set_limit(self, params: list[Any]) -> Answer:
        """market.set_limit ``[market, limit, value]``: set one of the market's risk
        limits (``limit`` a name of ``ipc.market_limits.LIMIT_NAMES``) to ``value``,
        decimal text as in the config (a price, an amount, money, a whole number or a
        fraction) or "none"; ``{"status": "success"}``. The text is converted exactly
        at the market's precisions before anything is sent; the command is the first
        engine call (a batch keeps its order). A notional the engine refuses is
        explained from the other one the market has (``market.list``)."""
        m = self.codec.market(params[0])
        name = str_arg(params[1], "limit")
        text = str_arg(params[2], "value")
        try:
            which = risk_limit(name)
            info = wire.MarketInfo.from_market(m)  # its precisions and ranges
            units = limit_value(
                info, which, text, notional_prec=m.money.prec, max_orders=m.max_orders
            )
        except ParseError as exc:
            raise ArgumentError(str(exc)) from None
        try:
            await ops.arun(ops.set_market_limit(m.index, which, units), self._engine_calls)
        except ApiError as exc:
            if exc.code == Result.INVALID_ARGUMENT and which in _NOTIONALS:
                why = await self._notional_conflict(m.index, which, units, m.money.prec)
                if why is not None:
                    return error_answer(CODE_INVALID_ARGUMENT, f"invalid argument: {why}")
            return _engine_error("market.set_limit", wire.Reply(exc.code, exc.message))
        return Answer(None, {"status": "success"})

    async def user_set_limit(self, params: list[Any]) -> Answer:
        """user.set_limit ``[user_id, market, limit, value]`` (``daemon.viabtc_user_limit``):
        set one of the user's own risk limits in the market; ``{"status": "success"}``."""
        return await self._operate(user_limit.METHOD, user_limit.set_user_limit(self.codec, params))

    async def catalog_add(self, method: str, params: list[Any]) -> Answer:
        """asset.add ``[name, prec, prec_show?]`` and market.add ``[settings]``
        (``daemon.viabtc_catalog``): ``{"status": "success", "index": N}``. What the
        catalog refuses is answered as the engine answers it, without asking it (an
        asset it does not know: after a refresh). The catalog is learnt again at once,
        so that the next request may name the new entry."""
        call = (
            catalog_calls.asset_add_call(params)
            if method == catalog_calls.ASSET_METHOD
            else catalog_calls.market_add_call(params)
        )
        refused = catalog_calls.refusal(self.config, call)
        if refused is not None and await self.catalog.learnt(refused.code, self.config):
            refused = catalog_calls.refusal(self.config, call)
        if refused is not None:
            return _engine_error(method, wire.Reply(refused.code, refused.message))
        reply = await self._engine(call)
        if not reply.ok:
            return _engine_error(method, reply)
        done: wire.CommandDone = reply.result_as(call)
        await self.catalog.fetch()
        return Answer(None, {"status": "success", "index": done.value})

    async def _notional_conflict(
        self, market: int, which: RiskLimit, units: int, prec: int
    ) -> str | None:
        """Why the engine refused ``units`` as ``market``'s notional ``which``: the
        other notional it has now (None if that does not explain it)."""
        listing = wire.MarketList()
        try:
            reply = await self._engine(listing)
        except BackendError:
            return None
        if not reply.ok:
            return None
        for now in reply.result_as(listing):
            if now.index == market:
                try:
                    check_notionals(now, which, units, notional_prec=prec)
                except ParseError as exc:
                    return str(exc)
        return None

    async def _operate(
        self, method: str, operation: ops.Operation[_T], count: str | None = None
    ) -> Answer:
        """Run ``operation`` (each round of its calls in one frame); a refused step
        ends it with the engine's error (what ran before stays done: running the
        method again finishes it)."""
        try:
            result = await ops.arun(operation, self._engine_calls)
        except ApiError as exc:
            return _engine_error(method, wire.Reply(exc.code, exc.message))
        if count is None:
            return Answer(None, {"status": "success"})
        return Answer(None, {"status": "success", count: result})

    async def _engine_calls(self, calls: list[wire.Call]) -> list[wire.Reply]:
        """The replies to ``calls``, asked in order. The first is queued at once, in
        this task's step, so that it reaches the engine in its place among the
        requests of a batch (``market.halt`` then ``order.put_limit``: the put is
        refused); the others as tasks, in the next loop turn, together."""
        later = asyncio.gather(*(self._engine(c) for c in calls[1:]))
        try:
            first = await self._engine(calls[0])
        except BaseException:
            later.cancel()
            await asyncio.wait([later])
            if not later.cancelled():
                later.exception()  # retrieved: asyncio does not log it
            raise
        return [first, *await later]

    # ------------------------------------------------------------ history methods

    async def balance_history(self, params: list[Any]) -> Answer:
        return await self._history(self.history.balance_history, *params)

    async def order_deals(self, params: list[Any]) -> Answer:
        return await self._history(self.history.order_deals, *params)

    async def order_finished(self, params: list[Any]) -> Answer:
        return await self._history(self.history.order_finished, *params)

    async def order_finished_detail(self, params: list[Any]) -> Answer:
        return await self._history(self.history.order_finished_detail, *params)

    async def market_user_deals(self, params: list[Any]) -> Answer:
        return await self._history(self.history.market_user_deals, *params)


def _reply(reply: Any) -> Answer:
    return Answer(reply.error(), reply.result)


def _refusal(method: str, exc: ArgumentError | HistoryError) -> Answer:
    """The answer to a bad argument of ``method``."""
    if isinstance(exc, ArgumentError):
        return _reply(argument_failure(method, exc))
    return Answer(exc.error())


def _engine_error(method: str, reply: wire.Reply) -> Answer:
    """ViaBTC's error for an engine's refusal: the engine's precise message where it
    gives one (a 1xxx check), else ViaBTC's text for the code."""
    try:
        code = Result(reply.code)
    except ValueError:
        return error_answer(
            CODE_INTERNAL_ERROR, f"internal error: unknown engine code {reply.code}"
        )
    expected = fail(method, code)
    message = reply.message if reply.message and reply.message != MESSAGES[code] else ""
    if message and not message.startswith(expected.message):
        message = f"{expected.message}: {message}"
    return error_answer(expected.code, message or expected.message)


def _order(method: str) -> _Handler:
    async def handler(self: ViabtcMethods, params: list[Any]) -> Answer:
        return await self.order_command(method, params)

    return handler


def _operation(method: str) -> _Handler:
    async def handler(self: ViabtcMethods, params: list[Any]) -> Answer:
        if method.startswith("market."):
            return await self.market_operation(method, params)
        return await self.user_operation(method, params)

    return handler


def _catalog(method: str) -> _Handler:
    async def handler(self: ViabtcMethods, params: list[Any]) -> Answer:
        return await self.catalog_add(method, params)

    return handler


#: The admin methods with handlers of their own (the others are ``_operation``'s).
_LIMIT_METHODS: Final = frozenset(("market.set_limit", "user.set_limit"))
_CATALOG_METHODS: Final = frozenset((catalog_calls.ASSET_METHOD, catalog_calls.MARKET_METHOD))
_HANDLERS: Final[dict[str, _Handler]] = {
    "balance.query": ViabtcMethods.balance_query,
    "balance.update": ViabtcMethods.balance_update,
    "balance.history": ViabtcMethods.balance_history,
    "asset.list": ViabtcMethods.asset_list,
    "asset.summary": ViabtcMethods.asset_summary,
    **{method: _order(method) for method in _ORDER_METHODS},
    "order.quote": ViabtcMethods.order_quote,
    "order.book": ViabtcMethods.order_book,
    "order.depth": ViabtcMethods.order_depth,
    "order.pending": ViabtcMethods.order_pending,
    "order.pending_detail": ViabtcMethods.order_pending_detail,
    "order.deals": ViabtcMethods.order_deals,
    "order.finished": ViabtcMethods.order_finished,
    "order.finished_detail": ViabtcMethods.order_finished_detail,
    "market.user_deals": ViabtcMethods.market_user_deals,
    "market.list": ViabtcMethods.market_list,
    "market.summary": ViabtcMethods.market_summary,
    **{method: _operation(method) for method in ADMIN_METHODS - _LIMIT_METHODS - _CATALOG_METHODS},
    **{method: _catalog(method) for method in _CATALOG_METHODS},
    "market.set_limit": ViabtcMethods.market_set_limit,
    "user.set_limit": ViabtcMethods.user_set_limit,
}


__all__ = [
    "ADMIN_METHODS",
    "FEED_METHODS",
    "METHODS",
    "NOT_FOUND",
    "Answer",
    "BackendError",
    "ViabtcMethods",
    "error_answer",
]
