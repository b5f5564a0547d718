"""ViaBTC's matchengine methods over an engine: decimal strings in, ViaBTC shapes out.

``Exchange`` takes the parameters of ViaBTC's JSON-RPC methods (the same order, names
and types, decimals as strings; shared/reference/viabtc-api.md §4.3), validates them
as ViaBTC does, turns them into integer commands, runs them on an ``EngineAPI`` and
returns ViaBTC's result objects. Decimals in results are plain strings without
trailing zeros (never "1e-8"). It is the in-process way to use matchd, and the
gateways build on it.

Deliberate differences from ViaBTC (docs/compat.md lists them all): a user id above
2**32-1 is refused instead of wrapping around; balance.update keys are permanent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import commands
from core.api import EngineAPI
from core.arguments import ArgumentError, int_arg, str_arg
from core.config import Asset, Market
from core.errors import ParseError
from core.fixed import format_units, parse_units
from core.schema import (
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    MESSAGES,
    SOURCE_LENGTH,
    VIABTC_INVALID_ARGUMENT,
    EventKind,
    OrderType,
    Result,
    Side,
    StpMode,
    TimeInForce,
    viabtc_code,
)
from core.views import OrderView

#: order.book, order.depth and order.pending take at most this many.
MAX_QUERY_LIMIT = 101
_TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
_STP = {
    "none": StpMode.NONE,
    "cancel_taker": StpMode.CANCEL_TAKER,
    "cancel_maker": StpMode.CANCEL_MAKER,
    "cancel_both": StpMode.CANCEL_BOTH,
}


@dataclass(frozen=True)
class Reply:
    """The outcome of one method: ViaBTC's ``error`` and ``result``, plus the events.

    ``code`` is ViaBTC's error code (0 = success) and ``result_code`` the engine's
    precise ``Result``.
    """

    code: int
    message: str
    result: Any
    result_code: Result = Result.OK
    events: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True on success."""
        return self.code == 0

    def error(self) -> dict[str, Any] | None:
        """ViaBTC's ``error`` member: None or ``{"code", "message"}``."""
        return None if self.ok else {"code": self.code, "message": self.message}


def _fail(method: str, result: Result, detail: str = "") -> Reply:
    """ViaBTC's code for ``method``; the message is ViaBTC's text, then the detail."""
    code = viabtc_code(method, result)
    message = MESSAGES[result]
    if detail:
        base = "invalid argument" if code == VIABTC_INVALID_ARGUMENT else message
        message = f"{base}: {detail}"
    return Reply(code=code, message=message, result=None, result_code=result)


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


class Exchange:
    """ViaBTC's matchengine methods over ``engine``; ``clock`` gives Unix ns."""

    def __init__(self, engine: EngineAPI, clock: Callable[[], int]) -> None:
        self.engine = engine
        self.config = engine.config
        self._clock = clock

    # ------------------------------------------------------------ helpers

    def _market(self, name: object) -> Market:
        market = self.config.market(str_arg(name, "market"))
        if market is None:
            raise ArgumentError(f"unknown market {name!r}", Result.UNKNOWN_MARKET)
        return market

    def _assets(self, names: tuple[object, ...]) -> list[Asset]:
        """The named assets (all of them, in config order, if none is named)."""
        chosen = []
        for name in names or tuple(a.name for a in self.config.assets):
            asset = self.config.asset(str_arg(name, "asset"))
            if asset is None:
                raise ArgumentError(f"unknown asset {name!r}", Result.UNKNOWN_ASSET)
            chosen.append(asset)
        return chosen

    def _user(self, user: object) -> int:
        return int_arg(user, "user_id", 0, MAX_USER_ID)

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

    def _order_from_event(self, ev: np.void) -> OrderView:
        n = int(ev["source_len"])
        return OrderView(
            id=int(ev["order_id"]),
            market=int(ev["market"]),
            user=int(ev["user"]),
            side=int(ev["side"]),
            otype=int(ev["otype"]),
            price=int(ev["price"]),
            amount=int(ev["amount"]),
            left=int(ev["left"]),
            deal_stock=int(ev["deal_stock"]),
            deal_money=int(ev["deal_money"]),
            deal_fee=int(ev["deal_fee"]),
            taker_rate=int(ev["taker_rate"]),
            maker_rate=int(ev["maker_rate"]),
            ctime_ns=int(ev["ctime_ns"]),
            mtime_ns=int(ev["mtime_ns"]),
            tif=int(ev["tif"]),
            stp=int(ev["stp"]),
            flags=int(ev["flags"]),
            source=bytes(ev["source"][:n]).decode(),
        )

    def _run(self, method: str, cmd: np.ndarray) -> Reply:
        results, events = self.engine.execute(cmd)
        res = results[0]
        code = Result(int(res["code"]))
        if code != Result.OK:
            return _fail(method, code)
        start, count = int(res["event_start"]), int(res["event_count"])
        own = events[start : start + count]
        order_events = own[own["kind"] <= EventKind.ORDER_FINISH]
        mine = order_events[order_events["order_id"] == res["order_id"]]
        result: Any
        if method == "order.cancel_all":
            result = {"count": int(res["value"])}
        else:
            result = self.order_object(self._order_from_event(mine[-1]))
        return Reply(code=0, message="", result=result, events=own)

    def _guard(self, method: str, build: Callable[[], np.ndarray]) -> Reply:
        try:
            cmd = build()
        except ArgumentError as exc:
            return _fail(method, exc.result, str(exc))
        return self._run(method, cmd)

    # ------------------------------------------------------------ balances

    def balance_query(self, user_id: object, *assets: object) -> Reply:
        """balance.query: available and frozen per asset, at prec_show."""
        try:
            user = int_arg(user_id, "user_id", 1, MAX_USER_ID)
            chosen = self._assets(assets)
        except ArgumentError as exc:
            return _fail("balance.query", exc.result, str(exc))
        result = {}
        for asset in chosen:
            avail, frozen = self.engine.balance(user, asset.index)
            cut = 10 ** (asset.prec - asset.prec_show)
            result[asset.name] = {
                "available": format_units(avail // cut, asset.prec_show),
                "freeze": format_units(frozen // cut, asset.prec_show),
            }
        return Reply(code=0, message="", result=result)

    def balance_update(
        self,
        user_id: object,
        asset: object,
        business: object,
        business_id: object,
        change: object,
        detail: object,
    ) -> Reply:
        """balance.update: deposit (positive) or withdraw (negative) available funds."""
        method = "balance.update"
        try:
            user = self._user(user_id)
            (spec,) = self._assets((asset,))
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
        except ArgumentError as exc:
            return _fail(method, exc.result, str(exc))
        units = shown * 10 ** (spec.prec - spec.prec_show)
        results, events = self.engine.balance_update(
            user, spec.index, name, bid, units, self._clock()
        )
        code = Result(int(results[0]["code"]))
        if code != Result.OK:
            return _fail(method, code)
        return Reply(code=0, message="", result={"status": "success"}, events=events)

    # ------------------------------------------------------------ orders

    def put_limit(
        self,
        user_id: object,
        market: object,
        side: object,
        amount: object,
        price: object,
        taker_fee_rate: object,
        maker_fee_rate: object,
        source: object,
        *,
        tif: str = "GTC",
        post_only: bool = False,
        stp: str = "none",
    ) -> Reply:
        """order.put_limit, plus matchd's time-in-force, post-only and STP options."""

        def build() -> np.ndarray:
            user = self._user(user_id)
            m = self._market(market)
            if tif not in _TIF or stp not in _STP:
                raise ArgumentError("tif must be GTC, IOC or FOK; stp one of " + ", ".join(_STP))
            return commands.put_limit(
                user,
                m.index,
                int_arg(side, "side", 1, 2),
                _units(amount, "amount", m.stock_prec),
                _units(price, "price", m.money_prec),
                self._rate(taker_fee_rate, "taker_fee_rate", m),
                self._rate(maker_fee_rate, "maker_fee_rate", m),
                ts_ns=self._clock(),
                tif=_TIF[tif],
                stp=_STP[stp],
                flags=1 if post_only else 0,
                source=_source(source),
            )

        return self._guard("order.put_limit", build)

    def _rate(self, value: object, what: str, m: Market) -> int:
        rate = _units(value, what, m.fee_prec, allow_zero=True)
        if rate >= m.fee_den:
            raise ArgumentError(f"{what} must be below 1")
        return rate

    def put_market(
        self,
        user_id: object,
        market: object,
        side: object,
        amount: object,
        taker_fee_rate: object,
        source: object,
        *,
        stp: str = "none",
    ) -> Reply:
        """order.put_market: a sell gives ``amount`` stock, a buy spends ``amount`` money."""

        def build() -> np.ndarray:
            user = self._user(user_id)
            m = self._market(market)
            s = int_arg(side, "side", 1, 2)
            if stp not in _STP:
                raise ArgumentError("stp must be one of " + ", ".join(_STP))
            # ViaBTC cuts the amount to stock_prec places on both sides.
            units = _units(amount, "amount", m.stock_prec)
            if s == Side.BID:
                units *= 10 ** (m.money.prec - m.stock_prec)
            return commands.put_market(
                user,
                m.index,
                s,
                units,
                self._rate(taker_fee_rate, "taker_fee_rate", m),
                ts_ns=self._clock(),
                stp=_STP[stp],
                source=_source(source),
            )

        return self._guard("order.put_market", build)

    def cancel(self, user_id: object, market: object, order_id: object) -> Reply:
        """order.cancel: the order as it stood before removal."""

        def build() -> np.ndarray:
            user = self._user(user_id)
            m = self._market(market)
            oid = int_arg(order_id, "order_id", 0, 2**63 - 1)
            return commands.cancel(user, m.index, oid, ts_ns=self._clock())

        return self._guard("order.cancel", build)

    def replace(
        self, user_id: object, market: object, order_id: object, price: object, left: object
    ) -> Reply:
        """matchd's atomic cancel-replace to a new price and remaining amount."""

        def build() -> np.ndarray:
            user = self._user(user_id)
            m = self._market(market)
            oid = int_arg(order_id, "order_id", 0, 2**63 - 1)
            return commands.replace(
                user,
                m.index,
                oid,
                _units(price, "price", m.money_prec),
                _units(left, "amount", m.stock_prec),
                ts_ns=self._clock(),
            )

        return self._guard("order.replace", build)

    def cancel_all(self, user_id: object, market: object, side: object = 0) -> Reply:
        """matchd's cancel of all the user's orders in a market (side 0 = both)."""

        def build() -> np.ndarray:
            user = self._user(user_id)
            m = self._market(market)
            return commands.cancel_all(
                user, m.index, int_arg(side, "side", 0, 2), ts_ns=self._clock()
            )

        return self._guard("order.cancel_all", build)

    # ------------------------------------------------------------ queries

    def _paged(
        self, method: str, fn: Callable[[], tuple[int, int, int, list[OrderView]]], key: str
    ) -> Reply:
        try:
            offset, limit, total, orders = fn()
        except ArgumentError as exc:
            return _fail(method, exc.result, str(exc))
        return Reply(
            code=0,
            message="",
            result={
                "offset": offset,
                "limit": limit,
                "total": total,
                key: [self.order_object(o) for o in orders],
            },
        )

    def order_book(self, market: object, side: object, offset: object, limit: object) -> Reply:
        """order.book: one side in priority order (key ``orders``)."""

        def fn() -> tuple[int, int, int, list[OrderView]]:
            m = self._market(market)
            s = int_arg(side, "side", 1, 2)
            off = int_arg(offset, "offset", 0, 2**31)
            lim = int_arg(limit, "limit", 0, MAX_QUERY_LIMIT)
            total, orders = self.engine.book(m.index, s, off, lim)
            return off, lim, total, orders

        return self._paged("order.book", fn, "orders")

    def order_pending(
        self, user_id: object, market: object, offset: object, limit: object
    ) -> Reply:
        """order.pending: the user's resting orders, newest first (key ``records``)."""

        def fn() -> tuple[int, int, int, list[OrderView]]:
            user = self._user(user_id)
            m = self._market(market)
            off = int_arg(offset, "offset", 0, 2**31)
            lim = int_arg(limit, "limit", 0, MAX_QUERY_LIMIT)
            total, orders = self.engine.pending(user, m.index, off, lim)
            return off, lim, total, orders

        return self._paged("order.pending", fn, "records")

    def order_pending_detail(self, market: object, order_id: object) -> Reply:
        """order.pending_detail: the resting order, or a null result."""
        try:
            m = self._market(market)
            oid = int_arg(order_id, "order_id", 0, 2**63 - 1)
        except ArgumentError as exc:
            return _fail("order.pending_detail", exc.result, str(exc))
        order = self.engine.order(m.index, oid)
        return Reply(code=0, message="", result=None if order is None else self.order_object(order))

    def order_depth(self, market: object, limit: object, interval: object) -> Reply:
        """order.depth: price levels summed over ``left``, optionally merged."""
        try:
            m = self._market(market)
            lim = int_arg(limit, "limit", 0, MAX_QUERY_LIMIT)
            step = _units(interval, "interval", m.money_prec, allow_zero=True)
        except ArgumentError as exc:
            return _fail("order.depth", exc.result, str(exc))
        asks, bids = self.engine.depth(m.index, lim, step)

        def rows(levels: list[tuple[int, int]]) -> list[list[str]]:
            return [
                [format_units(p, m.money_prec), format_units(q, m.stock_prec)] for p, q in levels
            ]

        return Reply(code=0, message="", result={"asks": rows(asks), "bids": rows(bids)})

    def market_list(self) -> Reply:
        """market.list."""
        return Reply(
            code=0,
            message="",
            result=[
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
            ],
        )

    def market_summary(self, *markets: object) -> Reply:
        """market.summary: counts and summed ``left`` of both sides."""
        try:
            chosen = [self._market(n) for n in markets] or list(self.config.markets)
        except ArgumentError as exc:
            return _fail("market.summary", exc.result, str(exc))
        out = []
        for m in chosen:
            s = self.engine.market_summary(m.index)
            out.append(
                {
                    "name": m.name,
                    "ask_count": s.ask_count,
                    "ask_amount": format_units(s.ask_lots, m.stock_prec),
                    "bid_count": s.bid_count,
                    "bid_amount": format_units(s.bid_lots, m.stock_prec),
                }
            )
        return Reply(code=0, message="", result=out)

    def asset_list(self) -> Reply:
        """asset.list: names and shown precisions."""
        return Reply(
            code=0,
            message="",
            result=[{"name": a.name, "prec": a.prec_show} for a in self.config.assets],
        )

    def asset_summary(self, *assets: object) -> Reply:
        """asset.summary: totals over all accounts."""
        try:
            chosen = self._assets(assets)
        except ArgumentError as exc:
            return _fail("asset.summary", exc.result, str(exc))
        out = []
        for a in chosen:
            s = self.engine.asset_summary(a.index)
            out.append(
                {
                    "name": a.name,
                    "total_balance": format_units(s.total, a.prec),
                    "available_count": s.available_count,
                    "available_balance": format_units(s.available, a.prec),
                    "freeze_count": s.frozen_count,
                    "freeze_balance": format_units(s.frozen, a.prec),
                }
            )
        return Reply(code=0, message="", result=out)
