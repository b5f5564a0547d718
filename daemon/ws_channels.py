"""The WebSocket subscriptions over the feed's topics, but depth (ws_depth):
``price``, ``today`` and ``state`` over ``ticker.<market>``, ``deals`` over
``deals.<market>``, ``kline`` over ``kline.<interval>.<market>``, ``order`` and
``asset`` over ``user.<id>.order`` and ``user.<id>.asset`` (docs/websocket.md).

What a new subscriber gets at once comes from the worker's cache of the topic, or
from the methods the first time (market.last, market.status_today, market.status,
market.deals, market.kline); after that every notification comes from the feed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final, cast

from daemon.ws_hub import Channel, Hub
from daemon.ws_session import Key, Session, notification

#: ``state.update`` is asked of the feed at most this often per market.
STATE_INTERVAL_S: Final = 0.5
#: ``state.update`` carries ``market.status`` over this period (ViaBTC's).
STATE_PERIOD_S: Final = 86400
#: Deals pushed to a new ``deals`` subscriber (ViaBTC's).
RECENT_DEALS: Final = 100


def _strip(decimal: str) -> str:
    """A plain decimal without trailing zeros (``"7000.00"`` -> ``"7000"``)."""
    if "." not in decimal:
        return decimal
    return decimal.rstrip("0").rstrip(".")


@dataclass
class _Ticker:
    last: str | None = None  #: market.last
    today: dict[str, Any] | None = None  #: market.status_today
    state: dict[str, Any] | None = None  #: market.status(86400)
    state_busy: bool = False
    state_again: bool = False
    state_asked: float = 0.0
    kinds: set[str] = field(default_factory=set)


class TickerChannel(Channel):
    """``price.update [market, price]``, ``today.update [market, status_today]`` and
    ``state.update [market, status(86400)]``, each when it changes. The feed's ticker
    carries the first two; the state is asked of the feed when the ticker moves, at
    most every ``STATE_INTERVAL_S``."""

    kinds = ("price", "today", "state")

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._tickers: dict[str, _Ticker] = {}

    def topic(self, kind: str, key: Key) -> bytes:
        return b"ticker." + str(key).encode()

    def started(self, kind: str, key: Key) -> None:
        market = str(key)
        ticker = self._tickers.setdefault(market, _Ticker())
        ticker.kinds.add(kind)
        if kind == "price" and ticker.last is None:
            self.hub.spawn(self._first(market, ticker, "price", "market.last", [market]))
        elif kind == "today" and ticker.today is None:
            self.hub.spawn(self._first(market, ticker, "today", "market.status_today", [market]))
        elif kind == "state" and ticker.state is None:
            self._want_state(market, ticker)

    def stopped(self, kind: str, key: Key) -> None:
        ticker = self._tickers.get(str(key))
        if ticker is not None:
            ticker.kinds.discard(kind)
            if not ticker.kinds:
                del self._tickers[str(key)]

    def joined(self, kind: str, key: Key, session: Session) -> None:
        market = str(key)
        ticker = self._tickers[market]
        if kind == "price" and ticker.last is not None and ticker.last.strip("0.") != "":
            session.push(notification("price.update", [market, ticker.last]))
        elif kind == "today" and ticker.today is not None:
            session.push(notification("today.update", [market, ticker.today]))
        elif kind == "state" and ticker.state is not None:
            session.push(notification("state.update", [market, ticker.state]))

    async def _first(
        self, market: str, ticker: _Ticker, kind: str, method: str, params: list[Any]
    ) -> None:
        result = await self.hub.query(method, params)
        if result is None or self._tickers.get(market) is not ticker:
            return
        if kind == "price" and ticker.last is None and isinstance(result, str):
            ticker.last = result
            if result.strip("0.") != "":
                self._push("price", market, [market, result])
        elif kind == "today" and ticker.today is None and isinstance(result, dict):
            ticker.today = result
            self._push("today", market, [market, result])

    def message(self, topic: bytes, body: dict[str, Any], gap: bool) -> None:
        market = body["market"]
        ticker = self._tickers.get(market)
        if ticker is None:
            return
        status = body["ticker"]
        last = status["last"]
        if isinstance(last, str) and last != ticker.last:
            ticker.last = last
            self._push("price", market, [market, last])
        today = {**status, "last": _strip(last)}
        if today != ticker.today:
            ticker.today = today
            self._push("today", market, [market, today])
        if "state" in ticker.kinds:
            self._want_state(market, ticker)

    def _want_state(self, market: str, ticker: _Ticker) -> None:
        if ticker.state_busy:
            ticker.state_again = True
            return
        ticker.state_busy = True
        self.hub.spawn(self._ask_state(market, ticker))

    async def _ask_state(self, market: str, ticker: _Ticker) -> None:
        try:
            while True:
                wait = ticker.state_asked + STATE_INTERVAL_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                ticker.state_again = False
                ticker.state_asked = time.monotonic()
                result = await self.hub.query("market.status", [market, STATE_PERIOD_S])
                if self._tickers.get(market) is not ticker:
                    return
                if isinstance(result, dict) and result != ticker.state:
                    ticker.state = result
                    self._push("state", market, [market, result])
                if not ticker.state_again:
                    return
        finally:
            ticker.state_busy = False

    def _push(self, kind: str, market: str, params: list[Any]) -> None:
        members = self.hub.members(kind, market)
        if members:
            self.hub.push(members, notification(f"{kind}.update", params))


@dataclass
class _Deals:
    recent: list[dict[str, Any]] = field(default_factory=list)  #: newest first
    last_id: int = 0
    fetching: bool = True
    held: list[dict[str, Any]] = field(default_factory=list)  #: come while fetching
    waiting: set[Session] = field(default_factory=set)  #: joined while fetching


class DealsChannel(Channel):
    """``deals.update [market, deals newest first]``: the ``RECENT_DEALS`` newest at
    once, then each deal once (by id) as the feed publishes it. A gap asks
    market.deals for what was missed."""

    kinds = ("deals",)

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._deals: dict[str, _Deals] = {}

    def topic(self, kind: str, key: Key) -> bytes:
        return b"deals." + str(key).encode()

    def started(self, kind: str, key: Key) -> None:
        market = str(key)
        state = self._deals[market] = _Deals()
        self.hub.spawn(self._fetch(market, state))

    def stopped(self, kind: str, key: Key) -> None:
        self._deals.pop(str(key), None)

    def joined(self, kind: str, key: Key, session: Session) -> None:
        state = self._deals[str(key)]
        if state.fetching:
            state.waiting.add(session)
        elif state.recent:
            session.push(notification("deals.update", [str(key), state.recent]))

    async def _fetch(self, market: str, state: _Deals) -> None:
        """market.deals after ``state.last_id``, with the deals held meanwhile."""
        result = await self.hub.query("market.deals", [market, RECENT_DEALS, state.last_id])
        if self._deals.get(market) is not state:
            return
        fetched = result if isinstance(result, list) else []
        held, state.held = state.held, []
        state.fetching = False
        self._add(market, state, fetched + held)
        waiting, state.waiting = state.waiting, set()
        waiting &= self.hub.members("deals", market)
        if waiting and state.recent:
            self.hub.push(waiting, notification("deals.update", [market, state.recent]))

    def message(self, topic: bytes, body: dict[str, Any], gap: bool) -> None:
        market = body["market"]
        state = self._deals.get(market)
        if state is None:
            return
        deals = body["deals"]
        if state.fetching:
            state.held += deals
            return
        if gap:
            state.fetching = True
            state.held = list(deals)
            self.hub.spawn(self._fetch(market, state))
            return
        self._add(market, state, deals)

    def _add(self, market: str, state: _Deals, deals: list[dict[str, Any]]) -> None:
        """Push the deals newer than any pushed, newest first; keep the newest."""
        new = {d["id"]: d for d in deals if d["id"] > state.last_id}
        if not new:
            return
        fresh = [new[i] for i in sorted(new, reverse=True)]
        state.last_id = fresh[0]["id"]
        state.recent = (fresh + state.recent)[:RECENT_DEALS]
        members = self.hub.members("deals", market) - state.waiting
        if members:
            self.hub.push(members, notification("deals.update", [market, fresh]))


class KlineChannel(Channel):
    """``kline.update [row]``, the current candle of ``(market, interval)`` when it
    changes (the feed publishes it every ``kline_interval_s`` for a market that
    traded); the current one (market.kline) at once."""

    kinds = ("kline",)

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._rows: dict[Key, list[Any] | None] = {}

    def topic(self, kind: str, key: Key) -> bytes:
        market, interval = cast(tuple[str, int], key)
        return f"kline.{interval}.{market}".encode()

    def started(self, kind: str, key: Key) -> None:
        self._rows[key] = None
        self.hub.spawn(self._first(key))

    def stopped(self, kind: str, key: Key) -> None:
        self._rows.pop(key, None)

    def joined(self, kind: str, key: Key, session: Session) -> None:
        row = self._rows.get(key)
        if row is not None:
            session.push(notification("kline.update", [row]))

    async def _first(self, key: Key) -> None:
        market, interval = cast(tuple[str, int], key)
        now = int(time.time())
        rows = await self.hub.query("market.kline", [market, now, now, interval])
        if key in self._rows and self._rows[key] is None and isinstance(rows, list) and rows:
            self._update(key, rows[-1])

    def message(self, topic: bytes, body: dict[str, Any], gap: bool) -> None:
        key = (body["market"], body["interval"])
        if key in self._rows:
            self._update(key, body["kline"])

    def _update(self, key: Key, row: list[Any]) -> None:
        if row != self._rows.get(key):
            self._rows[key] = row
            self.hub.push(self.hub.members("kline", key), notification("kline.update", [row]))


class UserChannel(Channel):
    """``order.update [event, order]`` for the subscribed markets and ``asset.update
    [{asset: {available, freeze}}]`` for the subscribed assets of the session's user,
    from the feed's ``user.<id>.order`` and ``user.<id>.asset``. Keys are ``(user,
    market)`` and ``(user, asset)``. A gap in a user's balances pushes a fresh
    balance.query."""

    kinds = ("order", "asset")

    def topic(self, kind: str, key: Key) -> bytes:
        user, _ = cast(tuple[int, str], key)
        return b"user.%d.%s" % (user, kind.encode())

    def message(self, topic: bytes, body: dict[str, Any], gap: bool) -> None:
        user = body["user"]
        if "order" in body:
            members = self.hub.members("order", (user, body["market"]))
            if members:
                params = [body["event"], body["order"]]
                self.hub.push(members, notification("order.update", params))
            return
        self._push_assets(user, body["assets"])
        if gap:
            self.hub.spawn(self._resync(user))

    def _push_assets(self, user: int, assets: dict[str, Any]) -> None:
        chosen: dict[Session, dict[str, Any]] = {}
        for name, balance in assets.items():
            for session in self.hub.members("asset", (user, name)):
                chosen.setdefault(session, {})[name] = balance
        for session, mine in chosen.items():
            self.hub.push([session], notification("asset.update", [mine]))

    async def _resync(self, user: int) -> None:
        names = sorted({a.name for a in self.hub.methods.config.assets})
        wanted = [n for n in names if self.hub.members("asset", (user, n))]
        if wanted:
            result = await self.hub.query("balance.query", [user, *wanted])
            if isinstance(result, dict):
                self._push_assets(user, result)
