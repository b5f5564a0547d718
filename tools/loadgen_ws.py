"""The WebSocket side of ``matchd-loadgen`` (``--ws URL``): market-data readers.

ViaBTC's WebSocket protocol (accessws) has no method that trades: its clients read.
So the model's writes go over ``--transport`` while each generator process also
keeps ``--ws-sessions`` sessions open, as an exchange's browsers and bots do. Each
session subscribes to depth (``WS_DEPTH_LIMIT`` levels, no merging), deals, price,
state and today for every market of the model, and queries one at a time, one every
``--ws-query-interval`` seconds (0: each as soon as the last is answered), cycling
through depth.query, price.query, deals.query, state.query, today.query and
kline.query (recorded as ``ws depth.query`` and so on, from the actual send). Every
notification is counted by kind (``ws depth.update``: count only), and each new deal
of a ``deals.update`` gives the market-data delay from the deal's time on the server
to its arrival here (``ws deal delay``: the same machine's clock on both sides, so
meaningful only when the server runs here too).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from tools.loadgen_latency import NS_PER_S

WS_DEPTH_LIMIT = 20
#: The first deals.update of a subscription is history (the 100 most recent deals).
_HISTORY_DEALS = 100

Record = Callable[[str, int, int, "str | None"], None]


class _Message(msgspec.Struct):
    method: str | None = None
    params: Any = None
    id: Any = None
    error: Any = None
    result: Any = None


_decode = msgspec.json.Decoder(_Message).decode


def queries(markets: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """The queries a session cycles through, for every market."""
    out: list[tuple[str, list[Any]]] = []
    for m in markets:
        out += [
            ("depth.query", [m, WS_DEPTH_LIMIT, "0"]),
            ("price.query", [m]),
            ("deals.query", [m, 10, 0]),
            ("state.query", [m, 86400]),
            ("today.query", [m]),
            ("kline.query", [m, int(time.time()) - 3600, int(time.time()), 60]),
        ]
    return out


class WsSession:
    """One WebSocket session: its subscriptions, its query loop, its reader."""

    def __init__(self, ws: Any, markets: Sequence[str], record: Record) -> None:
        self.ws = ws
        self.markets = list(markets)
        self.record = record
        self.pushes: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[_Message]] = {}
        self._seen_deals: set[str] = set()  # markets whose history deals.update came

    async def call(self, method: str, params: list[Any]) -> _Message:
        rid = next(self._ids)
        future: asyncio.Future[_Message] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        await self.ws.send_str(
            msgspec.json.encode({"method": method, "params": params, "id": rid}).decode()
        )
        try:
            return await future
        finally:
            self._waiting.pop(rid, None)

    async def subscribe(self) -> None:
        """Subscribe to every public channel of the markets; raises on a refusal."""
        channels: list[tuple[str, list[Any]]] = [
            ("depth.subscribe", [self.markets[0], WS_DEPTH_LIMIT, "0"]),
            ("deals.subscribe", self.markets),
            ("price.subscribe", self.markets),
            ("state.subscribe", self.markets),
            ("today.subscribe", self.markets),
        ]
        for method, params in channels:
            answer = await self.call(method, params)
            if answer.error is not None:
                raise RuntimeError(f"{method}{params}: {answer.error}")

    async def query_loop(self, end_ns: int, interval_s: float) -> None:
        """Query until ``end_ns`` (monotonic): one query every ``interval_s`` seconds,
        or the next as soon as the last is answered (0)."""
        for method, params in itertools.cycle(queries(self.markets)):
            sent = time.monotonic_ns()
            if sent >= end_ns:
                return
            answer = await self.call(method, params)
            error = None if answer.error is None else str(answer.error.get("code", "bad error"))
            self.record(f"ws {method}", sent, time.monotonic_ns(), error)
            if interval_s:
                next_ns = min(sent + int(interval_s * NS_PER_S), end_ns)
                await asyncio.sleep(max(0, next_ns - time.monotonic_ns()) / NS_PER_S)

    async def read(self) -> None:
        """Read until the session closes: answers to their callers, pushes counted."""
        import aiohttp

        async for frame in self.ws:
            if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            message = _decode(frame.data)
            if message.method is None:
                future = self._waiting.get(message.id)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            self.pushes[message.method] = self.pushes.get(message.method, 0) + 1
            if message.method == "deals.update":
                self._deal_delays(message.params)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the WebSocket closed"))

    def _deal_delays(self, params: Any) -> None:
        market, deals = params
        if market not in self._seen_deals:  # the history sent on subscribing
            self._seen_deals.add(market)
            return
        now_wall_ns, now_ns = time.time_ns(), time.monotonic_ns()
        for deal in deals:
            delay_ns = now_wall_ns - int(float(deal["time"]) * NS_PER_S)
            self.record("ws deal delay", now_ns - max(delay_ns, 0), now_ns, None)


async def run_sessions(url: str, sessions: int, markets: Sequence[str], record: Record,
                       end_ns: int, interval_s: float) -> dict[str, int]:  # fmt: skip
    """``sessions`` sessions to ``url`` until ``end_ns``; the pushes received, by kind."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        sockets = await asyncio.gather(
            *(http.ws_connect(url, heartbeat=None) for _ in range(sessions))
        )
        all_sessions = [WsSession(ws, markets, record) for ws in sockets]
        readers = [asyncio.create_task(s.read()) for s in all_sessions]
        try:
            await asyncio.gather(*(s.subscribe() for s in all_sessions))
            await asyncio.gather(*(s.query_loop(end_ns, interval_s) for s in all_sessions))
        finally:
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers, return_exceptions=True)
    pushes: dict[str, int] = {}
    for s in all_sessions:
        for kind, n in s.pushes.items():
            pushes[kind] = pushes.get(kind, 0) + n
    return pushes
