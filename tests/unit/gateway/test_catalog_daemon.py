"""Assets and markets added at run time in a running ``matchd run`` (server, drainer,
feed, HTTP and WebSocket gateways), none of them restarted: added over HTTP
(asset.add, market.add), the new market is traded over HTTP, its depth and deals are
streamed over WebSocket (the worker learns the market when a subscription names it),
the feed publishes and answers market.last, market.deals and market.kline for it,
Redis holds its keys, and the history answers for it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from ipc.client import Client
from tests.support.gateway_daemon import REDIS_DB, Daemon, running_daemon
from tests.unit.gateway.test_ws_methods import connect, run, wait_for_ws

pytestmark = [pytest.mark.integration]

ROOM = "max_assets = 5\nmax_markets = 4\nadded_market_orders = 1000\nadded_market_levels = 100\n"
SOL_USDT = {
    "name": "SOL_USDT", "stock": "SOL", "money": "USDT", "stock_prec": 4, "money_prec": 3,
    "min_amount": "0.001",
}  # fmt: skip
FEES = ("0.002", "0.001")
SELLER, BUYER = 81, 82
#: ``[http]`` and ``[ws]`` ``catalog_refresh_s``: a worker asks the engine for its
#: catalog at most this often.
REFRESH_S = 0.2


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("catalog")
    merge = 'depth_merge = ["0", "0.1"]\n'
    ws = merge + f"catalog_refresh_s = {REFRESH_S}\n"
    http = f"catalog_refresh_s = {REFRESH_S}\n"
    with running_daemon(tmp, room=ROOM, http=http, ws=ws, feed=merge) as d:
        wait_for_ws(d)
        yield d


def eventually(probe: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    """``probe()``'s first true answer (the feed and the drainer follow the log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def put(daemon: Daemon, user: int, side: int, amount: str, price: str) -> Any:
    return daemon.ok("order.put_limit", user, "SOL_USDT", side, amount, price, *FEES, "t")


def test_a_market_added_over_http_is_traded_streamed_and_published(daemon: Daemon) -> None:
    assert daemon.ok("asset.add", "SOL", 8) == {"status": "success", "index": 3}
    assert daemon.ok("market.add", SOL_USDT) == {"status": "success", "index": 2}
    for user, asset, amount in ((SELLER, "SOL", "10"), (BUYER, "USDT", "1000")):
        daemon.ok("balance.update", user, asset, "deposit", user, amount, {})

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            # the worker has not seen the market: the subscription makes it learn it
            await c.ok("depth.subscribe", "SOL_USDT", 10, "0")
            assert await c.push("depth.update") == [True, {"asks": [], "bids": []}, "SOL_USDT"]
            await c.ok("deals.subscribe", "SOL_USDT")
            put(daemon, SELLER, 1, "0.5", "25.5")
            assert await c.push("depth.update") == [
                False, {"asks": [["25.5", "0.5"]]}, "SOL_USDT",
            ]  # fmt: skip
            put(daemon, BUYER, 2, "0.2", "26")
            market, deals = await c.push("deals.update", where=lambda p: bool(p[1]))
            assert market == "SOL_USDT"
            assert [(d["price"], d["amount"], d["type"]) for d in deals] == [
                ("25.5", "0.2", "buy"),
            ]  # fmt: skip
            assert await c.push("depth.update") == [
                False, {"asks": [["25.5", "0.3"]]}, "SOL_USDT",
            ]  # fmt: skip
            assert await c.ok("price.query", "SOL_USDT") == "25.500"
            assert (await c.error("asset.add", "X", 8))["code"] == 4  # not over WebSocket

    run(main())
    # the feed: market.* through the HTTP gateway, and Redis
    assert daemon.ok("market.last", "SOL_USDT") == "25.500"
    recent = daemon.ok("market.deals", "SOL_USDT", 10, 0)
    assert [(d["price"], d["amount"]) for d in recent] == [("25.5", "0.2")]
    now = int(time.time())
    (row,) = daemon.ok("market.kline", "SOL_USDT", now - 3600, now + 60, 3600)
    assert (row[1], row[5], row[7]) == ("25.5", "0.2", "SOL_USDT")
    r = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        eventually(lambda: r.get("k:SOL_USDT:last") == b"25.500", "Redis's last price")
        assert r.hget("md:SOL_USDT:status", "status") == b"open"
    finally:
        r.close()
    # the history
    finished = eventually(
        lambda: daemon.ok("order.finished", BUYER, "SOL_USDT", 0, 0, 0, 10)["records"],
        "the history of the filled bid",
    )
    assert [(o["market"], o["deal_stock"]) for o in finished] == [("SOL_USDT", "0.2")]


def test_a_market_added_through_the_sdk_is_learnt_by_both_gateways(daemon: Daemon) -> None:
    with Client(daemon.endpoint, timeout_s=30) as admin:
        usdt = next(a.index for a in admin.assets() if a.name == "USDT")
        assert usdt == 2
        if "SOL" not in [a.name for a in admin.assets()]:
            admin.add_asset("SOL", 8)
        admin.add_market("SOL_ETH", "SOL", "ETH", 4, 4)
    time.sleep(REFRESH_S)  # the last refresh of each worker is older than the interval
    assert "SOL_ETH" in [m["name"] for m in daemon.ok("market.list")]
    assert daemon.ok("order.depth", "SOL_ETH", 10, "0") == {"asks": [], "bids": []}

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            await c.ok("kline.subscribe", "SOL_ETH", 60)
            await c.ok("depth.subscribe", "SOL_ETH", 5, "0.1")
            assert await c.push("depth.update") == [True, {"asks": [], "bids": []}, "SOL_ETH"]
            assert await c.ok("depth.query", "SOL_ETH", 5, "0") == {"asks": [], "bids": []}
            assert (await c.error("depth.subscribe", "NOPE_X", 5, "0"))["message"] == (
                "invalid argument: unknown market 'NOPE_X'"
            )

    run(main())
    last = {"error": None, "result": "0", "id": 1}
    eventually(lambda: daemon.rpc("market.last", "SOL_ETH") == last, "the feed's SOL_ETH")
