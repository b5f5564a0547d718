"""ViaBTC's matchengine methods as data: parameters in, integer commands out; integer
answers in, ViaBTC's result objects out.

``ViabtcCodec`` holds no engine. It checks the parameters of ViaBTC's JSON-RPC
methods as ViaBTC does (the same order, names and types, decimals as strings;
shared/reference/viabtc-api.md §4.3), turns them into ``COMMAND_DTYPE`` records or
integer query arguments, and formats what an engine answers (``OrderView``s,
balances, depth levels, summaries) as ViaBTC's results, decimals in plain notation
without trailing zeros (never "1e-8"). ``core.viabtc.Exchange`` runs it over an
in-process engine; the HTTP and WebSocket gateways run it over the ZeroMQ wire, so
both give the same answers.

A bad parameter raises ``ArgumentError`` (its message names the parameter);
``fail`` turns it, or an engine ``Result``, into ViaBTC's error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, cast

import numpy as np

from core import commands
from core.arguments import ArgumentError, int_arg, str_arg
from core.config import Asset, EngineConfig, Market
from core.errors import ParseError
from core.fixed import format_units, parse_units
from core.schema import (
    EVENT_DTYPE,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    MESSAGES,
    RESULT_DTYPE,
    SOURCE_LENGTH,
    VIABTC_INVALID_ARGUMENT,
    CommandKind,
    EventKind,
    OrderType,
    Result,
    Side,
    StpMode,
    TimeInForce,
    viabtc_code,
)
from core.views import AssetSummary, MarketSummary, OrderView

#: order.book, order.depth and order.pending take at most this many.
MAX_QUERY_LIMIT = 101
#: Largest ``offset`` of order.book and order.pending.
MAX_OFFSET = 2**31
MAX_ORDER_ID = 2**63 - 1
#: A client order id: 1..MAX_CLIENT_ID, 0 = none (the optional last param of the puts).
MAX_CLIENT_ID = 2**63 - 1
TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
STP = {
    "none": StpMode.NONE,
    "cancel_taker": StpMode.CANCEL_TAKER,
    "cancel_maker": StpMode.CANCEL_MAKER,
    "cancel_both": StpMode.CANCEL_BOTH,
}


@dataclass(frozen=True)
class Reply:
    """The outcome of one method: ViaBTC's ``error`` and ``result``, plus the events.

    ``code`` is ViaBTC's error code (0 = success) and ``result_code`` the engine's
    precise ``Result``. ``order_id`` is, for a REPEAT_ORDER refusal, the order the
    put's client id names (placed before); 0 otherwise.
    """

    code: int
    message: str
    result: Any
    result_code: Result = Result.OK
    events: np.ndarray | None = field(default=None, repr=False)
    order_id: int = 0

    @property
    def ok(self) -> bool:
        """True on success."""
        return self.code == 0

    def error(self) -> dict[str, Any] | None:
        """ViaBTC's ``error`` member: None or ``{"code", "message"}``, and for
        REPEAT_ORDER the original order's ``order_id`` as a third key (matchd's
        extension; ViaBTC clients ignore keys they do not know)."""
        if self.ok:
            return None
        if self.result_code == Result.REPEAT_ORDER:
            return {"code": self.code, "message": self.message, "order_id": self.order_id}
        return {"code": self.code, "message": self.message}


def success(result: Any, events: np.ndarray | None = None) -> Reply:
    """A successful reply."""
    return Reply(code=0, message="", result=result, events=events)


def fail(method: str, result: Result, detail: str = "", *, order_id: int = 0) -> Reply:
    """ViaBTC's code for ``method``; the message is ViaBTC's text, then the detail.
    ``order_id``: REPEAT_ORDER's original order (kept for that result only)."""
    code = viabtc_code(method, result)
    message = MESSAGES[result]
    if detail:
        base = "invalid argument" if code == VIABTC_INVALID_ARGUMENT else message
        message = f"{base}: {detail}"
    original = order_id if result == Result.REPEAT_ORDER else 0
    return Reply(code=code, message=message, result=None, result_code=result, order_id=original)


def argument_failure(method: str, exc: ArgumentError) -> Reply:
    """The reply to a bad argument of ``method``."""
    return fail(method, exc.result, str(exc))


def _units(value: object, what: str, places: int, **kw: Any) -> int:
    try:
        return parse_units(str_arg(value, what), places, **kw)
    except ParseError as exc:
        raise ArgumentError(f"{what}: {exc}") from exc


def _source(value: object) -> bytes:
    raw = str_arg(value, "source").encode()
    if len(raw) > SOURCE_LENGTH or b"\0" in raw:
        raise ArgumentError(f"source must be at most {SOURCE_LENGTH} bytes, without NUL")
    return raw


def _seconds(ns: int) -> float:
    return ns / 1e9


@dataclass(frozen=True)
class BalanceChange:
    """balance.update's checked arguments, in units of the asset's ``prec``."""

    user: int
    asset: Asset
    business: bytes
    business_id: int
    change: int
    detail: dict[str, Any]


class ViabtcCodec:
    """ViaBTC's matchengine parameters and results for the markets of ``config``."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    # ------------------------------------------------------------ arguments

    def market(self, name: object) -> Market:
        """The market called ``name``."""
        market = self.config.market(str_arg(name, "market"))
        if market is None:
            raise ArgumentError(f"unknown market {name!r}", Result.UNKNOWN_MARKET)
        return market

    def assets(self, names: tuple[object, ...]) -> list[Asset]:
        """The named assets (all of them, in config order, if none is named)."""
        chosen = []
        for name in names or tuple(a.name for a in self.config.assets):
            asset = self.config.asset(str_arg(name, "asset"))
            if asset is None:
                raise ArgumentError(f"unknown asset {name!r}", Result.UNKNOWN_ASSET)
            chosen.append(asset)
        return chosen

    @staticmethod
    def user(user_id: object, low: int = 0) -> int:
        """A user id in ``low..2**32-1``."""
        return int_arg(user_id, "user_id", low, MAX_USER_ID)

    @staticmethod
    def page(offset: object, limit: object) -> tuple[int, int]:
        """order.book's and order.pending's ``(offset, limit)``."""
        return (
            int_arg(offset, "offset", 0, MAX_OFFSET),
            int_arg(limit, "limit", 0, MAX_QUERY_LIMIT),
        )

    @staticmethod
    def order_id(value: object) -> int:
        """An order id, 0..2**63-1."""
        return int_arg(value, "order_id", 0, MAX_ORDER_ID)

    @staticmethod
    def client_id(value: object) -> int:
        """A client order id, 0..2**63-1 (0 = none)."""
        return int_arg(value, "client_id", 0, MAX_CLIENT_ID)

    @staticmethod
    def _client_id_param(method: str, rest: list[object], fixed: int) -> object:
        """The optional client id after a put's ``fixed`` params (``rest``: what
        follows them), unchecked; 0 if there is none."""
        if len(rest) > 1:
            raise ArgumentError(
                f"{method} takes {fixed} or {fixed + 1} params, not {fixed + len(rest)}"
            )
        return rest[0] if rest else 0

    @staticmethod
    def side(value: object) -> int:
        """A side: 1 ask, 2 bid."""
        return int_arg(value, "side", 1, 2)

    def depth_args(
        self, market: object, limit: object, interval: object
    ) -> tuple[Market, int, int]:
        """order.depth's ``(market, limit, interval ticks)``."""
        m = self.market(market)
        lim = int_arg(limit, "limit", 0, MAX_QUERY_LIMIT)
        step = _units(interval, "interval", m.money_prec, allow_zero=True)
        return m, lim, step

    def rate(self, value: object, what: str, m: Market) -> int:
        """A fee rate: ``fee_prec`` places, 0 <= rate < 1."""
        rate = _units(value, what, m.fee_prec, allow_zero=True)
        if rate >= m.fee_den:
            raise ArgumentError(f"{what} must be below 1")
        return rate

    # ------------------------------------------------------------ commands

    def put_limit(
        self,
        params: tuple[object, ...],
        ts_ns: int,
        *,
        tif: str = "GTC",
        post_only: bool = False,
        stp: str = "none",
    ) -> np.ndarray:
        """order.put_limit ``[user_id, market, side, amount, price, taker_fee_rate,
        maker_fee_rate, source, client_id?]`` as a command record (matchd's optional
        ``client_id`` travels in ``order_id``)."""
        user_id, market, side, amount, price, taker, maker, source, *rest = params
        client_id = self._client_id_param("order.put_limit", rest, 8)
        user = self.user(user_id)
        m = self.market(market)
        if tif not in TIF or stp not in STP:
            raise ArgumentError("tif must be GTC, IOC or FOK; stp one of " + ", ".join(STP))
        return commands.pack(
            CommandKind.PUT_LIMIT,
            user,
            m.index,
            side=self.side(side),
            amount=_units(amount, "amount", m.stock_prec),
            price=_units(price, "price", m.money_prec),
            taker_rate=self.rate(taker, "taker_fee_rate", m),
            maker_rate=self.rate(maker, "maker_fee_rate", m),
            ts_ns=ts_ns,
            tif=TIF[tif],
            stp=STP[stp],
            flags=1 if post_only else 0,
            source=_source(source),
            order_id=self.client_id(client_id),
        )

    def put_market(
        self, params: tuple[object, ...], ts_ns: int, *, stp: str = "none"
    ) -> np.ndarray:
        """order.put_market ``[user_id, market, side, amount, taker_fee_rate, source,
        client_id?]``: a sell gives ``amount`` stock, a buy spends ``amount`` money."""
        user_id, market, side, amount, taker, source, *rest = params
        client_id = self._client_id_param("order.put_market", rest, 6)
        user = self.user(user_id)
        m = self.market(market)
        s = self.side(side)
        if stp not in STP:
            raise ArgumentError("stp must be one of " + ", ".join(STP))
        # ViaBTC cuts the amount to stock_prec places on both sides.
        units = _units(amount, "amount", m.stock_prec)
        if s == Side.BID:
            units *= 10 ** (m.money.prec - m.stock_prec)
        return commands.pack(
            CommandKind.PUT_MARKET,
            user,
            m.index,
            side=s,
            amount=units,
            taker_rate=self.rate(taker, "taker_fee_rate", m),
            ts_ns=ts_ns,
            tif=TimeInForce.IOC,
            stp=STP[stp],
            source=_source(source),
            order_id=self.client_id(client_id),
        )

    def cancel(self, params: tuple[object, ...], ts_ns: int) -> np.ndarray:
        """order.cancel ``[user_id, market, order_id]``."""
        user_id, market, order_id = params
        user = self.user(user_id)
        m = self.market(market)
        oid = self.order_id(order_id)
        return commands.pack(CommandKind.CANCEL, user, m.index, order_id=oid, ts_ns=ts_ns)

    def replace(self, params: tuple[object, ...], ts_ns: int) -> np.ndarray:
        """matchd's order.replace ``[user_id, market, order_id, price, left]``."""
        user_id, market, order_id, price, left = params
        user = self.user(user_id)
        m = self.market(market)
        oid = self.order_id(order_id)
        return commands.replace(
            user,
            m.index,
            oid,
            _units(price, "price", m.money_prec),
            _units(left, "amount", m.stock_prec),
            ts_ns=ts_ns,
        )

    def cancel_all(self, params: tuple[object, ...], ts_ns: int) -> np.ndarray:
        """matchd's order.cancel_all ``[user_id, market, side?]`` (side 0 = both)."""
        user_id, market, *rest = params
        if len(rest) > 1:
            raise ArgumentError("order.cancel_all takes 2 or 3 params")
        user = self.user(user_id)
        m = self.market(market)
        side = int_arg(rest[0] if rest else 0, "side", 0, 2)
        return commands.cancel_all(user, m.index, side, ts_ns=ts_ns)

    def balance_change(self, params: tuple[object, ...]) -> BalanceChange:
        """balance.update ``[user_id, asset, business, business_id, change, detail]``."""
        user_id, asset, business, business_id, change, detail = params
        user = self.user(user_id)
        (spec,) = self.assets((asset,))
        name = str_arg(business, "business").encode()
        bid = int_arg(business_id, "business_id", -(2**63) + 1, 2**63 - 1)
        shown = _units(
            change,
            "change",
            spec.prec_show,
            allow_zero=True,
            allow_negative=True,
            maximum=MAX_SUPPLY_UNITS,
        )
        if not isinstance(detail, dict):
            raise ArgumentError("detail must be a JSON object")
        units = shown * 10 ** (spec.prec - spec.prec_show)
        return BalanceChange(user, spec, name, bid, units, detail)

    def command_reply(
        self, method: str, result: np.void, events: np.ndarray, *, keep_events: bool = True
    ) -> Reply:
        """The reply to an order command from its ``RESULT_DTYPE`` record and the
        events of its batch (``result``'s ``event_start``/``event_count`` index them)."""
        results = np.asarray(result).reshape(1)
        reply = self.outcome_reply(method, command_outcomes(results, events)[0])
        if not reply.ok or not keep_events:
            return reply
        start, count = int(result["event_start"]), int(result["event_count"])
        return success(reply.result, events[start : start + count])

    def outcome_reply(self, method: str, outcome: CommandOutcome) -> Reply:
        """The reply to an order command from its ``CommandOutcome``."""
        if outcome.code != Result.OK:
            return fail(method, Result(outcome.code), order_id=outcome.order_id)
        if method == "order.cancel_all":
            return success({"count": outcome.value})
        if outcome.order is None:  # pragma: no cover - every accepted order command has one
            return fail(method, Result.INTERNAL_ERROR, "the engine reported no order")
        return success(self.order_object(outcome.order))

    # ------------------------------------------------------------ results

    def order_object(self, order: OrderView) -> dict[str, Any]:
        """ViaBTC's order object (§4.2) for ``order``."""
        m = self.config.markets[order.market]
        market_bid = order.otype == OrderType.MARKET and order.side == Side.BID
        amount_places = m.money.prec if market_bid else m.stock_prec
        fee_asset = m.money if order.side == Side.ASK else m.stock
        return {
            "id": order.id,
            "market": m.name,
            "source": order.source,
            "type": order.otype,
            "side": order.side,
            "user": order.user,
            "ctime": _seconds(order.ctime_ns),
            "mtime": _seconds(order.mtime_ns),
            "price": format_units(order.price, m.money_prec),
            "amount": format_units(order.amount, amount_places),
            "taker_fee": format_units(order.taker_rate, m.fee_prec),
            "maker_fee": format_units(order.maker_rate, m.fee_prec),
            "left": format_units(order.left, amount_places),
            "deal_stock": format_units(order.deal_stock, m.stock_prec),
            "deal_money": format_units(order.deal_money, m.money.prec),
            "deal_fee": format_units(order.deal_fee, fee_asset.prec),
        }

    def paged(
        self, offset: int, limit: int, total: int, key: str, orders: list[OrderView]
    ) -> dict[str, Any]:
        """order.book's (``key`` "orders") or order.pending's ("records") result."""
        return {
            "offset": offset,
            "limit": limit,
            "total": total,
            key: [self.order_object(o) for o in orders],
        }

    @staticmethod
    def balance(asset: Asset, available: int, frozen: int) -> dict[str, str]:
        """balance.query's entry for one asset: units cut to ``prec_show``."""
        cut = 10 ** (asset.prec - asset.prec_show)
        return {
            "available": format_units(available // cut, asset.prec_show),
            "freeze": format_units(frozen // cut, asset.prec_show),
        }

    @staticmethod
    def depth(
        m: Market, asks: list[tuple[int, int]], bids: list[tuple[int, int]]
    ) -> dict[str, list[list[str]]]:
        """order.depth's result from (price ticks, lots) levels."""

        def rows(levels: list[tuple[int, int]]) -> list[list[str]]:
            return [
                [format_units(p, m.money_prec), format_units(q, m.stock_prec)] for p, q in levels
            ]

        return {"asks": rows(asks), "bids": rows(bids)}

    def market_list(self) -> list[dict[str, Any]]:
        """market.list's result."""
        return [
            {
                "name": m.name,
                "stock": m.stock.name,
                "money": m.money.name,
                "fee_prec": m.fee_prec,
                "stock_prec": m.stock_prec,
                "money_prec": m.money_prec,
                "min_amount": format_units(m.min_amount, m.stock_prec),
            }
            for m in self.config.markets
        ]

    @staticmethod
    def market_summary(m: Market, s: MarketSummary) -> dict[str, Any]:
        """market.summary's entry for one market."""
        return {
            "name": m.name,
            "ask_count": s.ask_count,
            "ask_amount": format_units(s.ask_lots, m.stock_prec),
            "bid_count": s.bid_count,
            "bid_amount": format_units(s.bid_lots, m.stock_prec),
        }

    def asset_list(self) -> list[dict[str, Any]]:
        """asset.list's result: names and shown precisions."""
        return [{"name": a.name, "prec": a.prec_show} for a in self.config.assets]

    @staticmethod
    def asset_summary(a: Asset, s: AssetSummary) -> dict[str, Any]:
        """asset.summary's entry for one asset."""
        return {
            "name": a.name,
            "total_balance": format_units(s.total, a.prec),
            "available_count": s.available_count,
            "available_balance": format_units(s.available, a.prec),
            "freeze_count": s.frozen_count,
            "freeze_balance": format_units(s.frozen, a.prec),
        }


class CommandOutcome(NamedTuple):
    """What a command did: its ``Result`` code, ``value`` (cancel-all's count), its
    own order as its last ORDER_* event reports it (None if it has none), and the
    RESULT record's ``order_id`` (the order created or addressed; for REPEAT_ORDER,
    the order the put's client id names)."""

    code: int
    value: int
    order: OrderView | None
    order_id: int = 0


_EVENT_FIELDS: Final = tuple(EVENT_DTYPE.names or ())
_ORDER_FIELDS: Final = (
    "order_id", "market", "user", "side", "otype", "price", "amount", "left", "deal_stock",
    "deal_money", "deal_fee", "taker_rate", "maker_rate", "ctime_ns", "mtime_ns", "tif",
    "stp", "flags",
)  # fmt: skip
_ORDER_POSITIONS: Final = tuple(_EVENT_FIELDS.index(f) for f in _ORDER_FIELDS)
_SOURCE_LEN: Final = _EVENT_FIELDS.index("source_len")
_SOURCE: Final = _EVENT_FIELDS.index("source")


def _order_of_row(row: tuple[Any, ...]) -> OrderView:
    """The ``OrderView`` of an ORDER_* event given as ``tolist()``'s tuple."""
    values: list[Any] = [row[i] for i in _ORDER_POSITIONS]
    values.append(bytes(row[_SOURCE][: row[_SOURCE_LEN]]).decode())
    return OrderView(*values)


def command_outcomes(results: np.ndarray, events: np.ndarray) -> list[CommandOutcome]:
    """Each command's ``CommandOutcome`` from its ``RESULT_DTYPE`` record and the events
    of its batch, for a whole batch at once (a few numpy operations, then one
    ``tolist``: no per-field access of a structured record)."""
    if len(results) <= _SMALL_BATCH:
        return _few_outcomes(results, events)
    return _many_outcomes(results, events)


def _many_outcomes(results: np.ndarray, events: np.ndarray) -> list[CommandOutcome]:
    """``command_outcomes`` with numpy, for batches of more than a few commands."""
    n = len(results)
    counts = results["event_count"].astype(np.int64)
    total = int(counts.sum())
    orders: list[OrderView | None] = [None] * n
    if total:
        owner = np.repeat(np.arange(n), counts)
        first = np.cumsum(counts) - counts  # each command's first position in ``owner``
        pos = results["event_start"].astype(np.int64)[owner] + (np.arange(total) - first[owner])
        ev = events[pos]
        mine = (ev["kind"] <= EventKind.ORDER_FINISH) & (
            ev["order_id"] == results["order_id"][owner]
        )
        hits = np.flatnonzero(mine)
        if len(hits):
            hit_owner = owner[hits]
            # the last hit of each owner: where the next hit has another owner
            last = np.append(hit_owner[1:] != hit_owner[:-1], True)
            rows = ev[hits[last]].tolist()
            for who, row in zip(hit_owner[last].tolist(), rows, strict=True):
                orders[who] = _order_of_row(row)
    codes = results["code"].tolist()
    values = results["value"].tolist()
    ids = results["order_id"].tolist()
    return [
        CommandOutcome(c, v, o, i) for c, v, o, i in zip(codes, values, orders, ids, strict=True)
    ]


#: Up to this many commands, ``command_outcomes`` walks plain tuples: cheaper than
#: numpy's fixed cost per operation on tiny arrays.
_SMALL_BATCH: Final = 8
_RESULT_FIELDS: Final = tuple(RESULT_DTYPE.names or ())
_R_ORDER_ID: Final = _RESULT_FIELDS.index("order_id")
_R_VALUE: Final = _RESULT_FIELDS.index("value")
_R_CODE: Final = _RESULT_FIELDS.index("code")
_R_START: Final = _RESULT_FIELDS.index("event_start")
_R_COUNT: Final = _RESULT_FIELDS.index("event_count")
_E_ORDER_ID: Final = _EVENT_FIELDS.index("order_id")
_E_KIND: Final = _EVENT_FIELDS.index("kind")


def _few_outcomes(results: np.ndarray, events: np.ndarray) -> list[CommandOutcome]:
    """``command_outcomes`` of a few commands, over ``tolist()`` tuples."""
    out = []
    for row in results.tolist():
        order = None
        start, count = row[_R_START], row[_R_COUNT]
        for ev in reversed(events[start : start + count].tolist()) if count else ():
            if ev[_E_KIND] <= EventKind.ORDER_FINISH and ev[_E_ORDER_ID] == row[_R_ORDER_ID]:
                order = _order_of_row(ev)
                break
        out.append(CommandOutcome(row[_R_CODE], row[_R_VALUE], order, row[_R_ORDER_ID]))
    return out


def order_from_event(ev: np.void) -> OrderView:
    """The order an ORDER_* event reports."""
    return _order_of_row(cast(tuple[Any, ...], ev.tolist()))
