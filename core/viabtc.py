"""ViaBTC's matchengine methods over an engine: decimal strings in, ViaBTC shapes out.

``Exchange`` takes the parameters of ViaBTC's JSON-RPC methods (the same order, names
and types, decimals as strings; shared/reference/viabtc-api.md §4.3), validates them
as ViaBTC does, turns them into integer commands, runs them on an ``EngineAPI`` and
returns ViaBTC's result objects. Decimals in results are plain strings without
trailing zeros (never "1e-8"). It is the in-process way to use matchd; the checks and
the formatting are ``core.viabtc_codec.ViabtcCodec``'s, which the HTTP and WebSocket
gateways use over the wire.

Deliberate differences from ViaBTC (docs/compat.md lists them all): a user id above
2**32-1 is refused instead of wrapping around; balance.update keys are permanent; the
puts take an optional last param, a client order id (refused REPEAT_ORDER, ViaBTC
code 13, when the user already placed an order with it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from core.api import EngineAPI
from core.arguments import ArgumentError
from core.config import EngineConfig
from core.schema import Result
from core.viabtc_codec import (
    MAX_QUERY_LIMIT,
    Reply,
    ViabtcCodec,
    argument_failure,
    fail,
    success,
)
from core.views import OrderView

__all__ = ["MAX_QUERY_LIMIT", "Exchange", "Reply"]


class Exchange:
    """ViaBTC's matchengine methods over ``engine``; ``clock`` gives Unix ns."""

    def __init__(self, engine: EngineAPI, clock: Callable[[], int]) -> None:
        self.engine = engine
        self._codec = ViabtcCodec(engine.config)
        self._clock = clock

    @property
    def config(self) -> EngineConfig:
        """The engine's catalog as it is now (assets and markets added at run time
        included: ``EngineAPI.config``)."""
        return self.engine.config

    @property
    def codec(self) -> ViabtcCodec:
        """The codec, over the engine's catalog as it is now."""
        if self._codec.config is not self.engine.config:
            self._codec.config = self.engine.config
        return self._codec

    def order_object(self, order: OrderView) -> dict[str, object]:
        """ViaBTC's order object (§4.2) for ``order``."""
        return self.codec.order_object(order)

    def _guard(self, method: str, build: Callable[[], np.ndarray]) -> Reply:
        try:
            cmd = build()
        except ArgumentError as exc:
            return argument_failure(method, exc)
        results, events = self.engine.execute(cmd)
        return self.codec.command_reply(method, results[0], events)

    # ------------------------------------------------------------ balances

    def balance_query(self, user_id: object, *assets: object) -> Reply:
        """balance.query: available and frozen per asset, at prec_show."""
        try:
            user = self.codec.user(user_id, low=1)
            chosen = self.codec.assets(assets)
        except ArgumentError as exc:
            return argument_failure("balance.query", exc)
        return success(
            {a.name: self.codec.balance(a, *self.engine.balance(user, a.index)) for a in chosen}
        )

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
            c = self.codec.balance_change((user_id, asset, business, business_id, change, detail))
        except ArgumentError as exc:
            return argument_failure(method, exc)
        results, events = self.engine.balance_update(
            c.user, c.asset.index, c.business, c.business_id, c.change, self._clock()
        )
        code = Result(int(results[0]["code"]))
        if code != Result.OK:
            return fail(method, code)
        return success({"status": "success"}, events)

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
        client_id: object = 0,
        *,
        tif: str = "GTC",
        post_only: bool = False,
        stp: str = "none",
    ) -> Reply:
        """order.put_limit, plus matchd's client order id (0..2**63-1, 0 = none; a
        REPEAT_ORDER reply's ``order_id`` is the order placed with it before) and its
        time-in-force, post-only and STP options."""
        params = (
            user_id, market, side, amount, price, taker_fee_rate, maker_fee_rate, source,
            client_id,
        )  # fmt: skip
        return self._guard(
            "order.put_limit",
            lambda: self.codec.put_limit(
                params, self._clock(), tif=tif, post_only=post_only, stp=stp
            ),
        )

    def put_market(
        self,
        user_id: object,
        market: object,
        side: object,
        amount: object,
        taker_fee_rate: object,
        source: object,
        client_id: object = 0,
        *,
        stp: str = "none",
    ) -> Reply:
        """order.put_market: a sell gives ``amount`` stock, a buy spends ``amount``
        money; ``client_id`` as for ``put_limit``."""
        params = (user_id, market, side, amount, taker_fee_rate, source, client_id)
        return self._guard(
            "order.put_market", lambda: self.codec.put_market(params, self._clock(), stp=stp)
        )

    def cancel(self, user_id: object, market: object, order_id: object) -> Reply:
        """order.cancel: the order as it stood before removal."""
        params = (user_id, market, order_id)
        return self._guard("order.cancel", lambda: self.codec.cancel(params, self._clock()))

    def replace(
        self, user_id: object, market: object, order_id: object, price: object, left: object
    ) -> Reply:
        """matchd's atomic cancel-replace to a new price and remaining amount."""
        params = (user_id, market, order_id, price, left)
        return self._guard("order.replace", lambda: self.codec.replace(params, self._clock()))

    def cancel_all(self, user_id: object, market: object, side: object = 0) -> Reply:
        """matchd's cancel of all the user's orders in a market (side 0 = both)."""
        params = (user_id, market, side)
        return self._guard("order.cancel_all", lambda: self.codec.cancel_all(params, self._clock()))

    # ------------------------------------------------------------ queries

    def order_book(self, market: object, side: object, offset: object, limit: object) -> Reply:
        """order.book: one side in priority order (key ``orders``)."""
        try:
            m = self.codec.market(market)
            s = self.codec.side(side)
            off, lim = self.codec.page(offset, limit)
        except ArgumentError as exc:
            return argument_failure("order.book", exc)
        total, orders = self.engine.book(m.index, s, off, lim)
        return success(self.codec.paged(off, lim, total, "orders", orders))

    def order_pending(
        self, user_id: object, market: object, offset: object, limit: object
    ) -> Reply:
        """order.pending: the user's resting orders, newest first (key ``records``)."""
        try:
            user = self.codec.user(user_id)
            m = self.codec.market(market)
            off, lim = self.codec.page(offset, limit)
        except ArgumentError as exc:
            return argument_failure("order.pending", exc)
        total, orders = self.engine.pending(user, m.index, off, lim)
        return success(self.codec.paged(off, lim, total, "records", orders))

    def order_pending_detail(self, market: object, order_id: object) -> Reply:
        """order.pending_detail: the resting order, or a null result."""
        try:
            m = self.codec.market(market)
            oid = self.codec.order_id(order_id)
        except ArgumentError as exc:
            return argument_failure("order.pending_detail", exc)
        order = self.engine.order(m.index, oid)
        return success(None if order is None else self.codec.order_object(order))

    def order_depth(self, market: object, limit: object, interval: object) -> Reply:
        """order.depth: price levels summed over ``left``, optionally merged."""
        try:
            m, lim, step = self.codec.depth_args(market, limit, interval)
        except ArgumentError as exc:
            return argument_failure("order.depth", exc)
        asks, bids = self.engine.depth(m.index, lim, step)
        return success(self.codec.depth(m, asks, bids))

    def market_list(self) -> Reply:
        """market.list, each market with its ``status`` (matchd's key, as the HTTP
        gateway's: docs/compat.md)."""
        markets = self.codec.market_list()
        for m, row in zip(self.config.markets, markets, strict=True):
            row["status"] = self.engine.market_status(m.index).name.lower()
        return success(markets)

    def market_summary(self, *markets: object) -> Reply:
        """market.summary: counts and summed ``left`` of both sides."""
        try:
            chosen = [self.codec.market(n) for n in markets] or list(self.config.markets)
        except ArgumentError as exc:
            return argument_failure("market.summary", exc)
        return success(
            [self.codec.market_summary(m, self.engine.market_summary(m.index)) for m in chosen]
        )

    def asset_list(self) -> Reply:
        """asset.list: names and shown precisions."""
        return success(self.codec.asset_list())

    def asset_summary(self, *assets: object) -> Reply:
        """asset.summary: totals over all accounts."""
        try:
            chosen = self.codec.assets(assets)
        except ArgumentError as exc:
            return argument_failure("asset.summary", exc)
        return success(
            [self.codec.asset_summary(a, self.engine.asset_summary(a.index)) for a in chosen]
        )
