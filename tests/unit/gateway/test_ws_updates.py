"""The WebSocket gateway's notifications from a running ``matchd run``, driven by
orders put through the HTTP gateway: ``order.update`` and ``asset.update`` of the
authenticated user (and of nobody else after re-authentication), ``depth.update``
in full and then as diffs, ``deals.update`` (the recent ones at once, then each new
deal), ``price.update``, ``today.update``, ``state.update`` and ``kline.update``
after a trade."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.support.gateway_daemon import Daemon, running_daemon
from tests.unit.gateway.test_ws_methods import (
    AuthService,
    connect,
    run,
    wait_for_ws,
    ws_settings,
)
from tests.unit.gateway.test_ws_methods import auth_service as auth_service

pytestmark = [pytest.mark.integration]

FEES = ("0.002", "0.001")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, auth_service: AuthService) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("wsu")
    extra = f'auth_url = "{auth_service.auth_url}"\ndepth_merge = ["0", "0.01"]\n'
    with running_daemon(tmp, ws=ws_settings(tmp, extra), feed='depth_merge = ["0", "0.01"]\n') as d:
        wait_for_ws(d)
        wait_for_feed(d)
        yield d


def wait_for_feed(daemon: Daemon) -> None:
    """Return once the feed's user topics reach the WebSocket worker (the feed may
    start after the worker, whose subscriptions then wait for it)."""

    async def probe() -> None:
        async with connect(daemon.ws_url) as c:
            await c.ok("server.auth", "good-999", "web")
            await c.ok("asset.subscribe", "USDT")
            for i in range(1, 100):
                daemon.ok("balance.update", 999, "USDT", "probe", i, "1", {})
                if [m for m in await c.quiet(0.1) if m["method"] == "asset.update"]:
                    return
            raise AssertionError("the feed's user topics never reached the worker")

    run(probe())


def fund(daemon: Daemon, user: int, asset: str, amount: str) -> None:
    daemon.ok("balance.update", user, asset, "deposit", abs(hash((user, asset))), amount, {})


def put(daemon: Daemon, user: int, market: str, side: int, amount: str, price: str) -> Any:
    return daemon.ok("order.put_limit", user, market, side, amount, price, *FEES, "ws-test")


def test_order_and_asset_updates_follow_the_users_orders(daemon: Daemon) -> None:
    fund(daemon, 31, "USDT", "10000")
    fund(daemon, 31, "ETH", "10")
    fund(daemon, 32, "BTC", "1")

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            await c.ok("server.auth", "good-31", "web")
            await c.ok("order.subscribe", "BTC_USDT")
            await c.ok("asset.subscribe", "USDT")
            order = put(daemon, 31, "BTC_USDT", 2, "0.5", "5000")
            assert await c.push("order.update") == [1, order]
            usdt = daemon.ok("balance.query", 31, "USDT")
            assert usdt["USDT"]["freeze"] == "2500"
            assert await c.push("asset.update", where=lambda p: p == [usdt]) == [usdt]
            # a maker partly filled by another user: UPDATE, with its own balances
            put(daemon, 32, "BTC_USDT", 1, "0.2", "5000")
            event, updated = await c.push("order.update")
            assert (event, updated["id"], updated["deal_stock"], updated["left"]) == (
                2, order["id"], "0.2", "0.3",
            )  # fmt: skip
            usdt = daemon.ok("balance.query", 31, "USDT")
            assert await c.push("asset.update", where=lambda p: p == [usdt]) == [usdt]
            # another market (not subscribed): no order.update; ETH is not subscribed
            put(daemon, 31, "ETH_BTC", 1, "1", "0.05")
            cancelled = daemon.ok("order.cancel", 31, "BTC_USDT", order["id"])
            event, finished = await c.push("order.update")
            assert (event, finished["id"]) == (3, cancelled["id"])
            assert finished["left"] == cancelled["left"] == "0.3"
            usdt = daemon.ok("balance.query", 31, "USDT")
            assert usdt["USDT"]["freeze"] == "0"
            assert await c.push("asset.update", where=lambda p: p == [usdt]) == [usdt]
            rest = await c.quiet(0.5)
            assert not [m for m in rest if m["method"] == "order.update"]
            assert all(list(m["params"][0]) == ["USDT"] for m in rest)
            await c.ok("order.unsubscribe")
            await c.ok("asset.unsubscribe")
            put(daemon, 31, "BTC_USDT", 2, "0.1", "4000")
            assert await c.quiet(0.5) == []

    run(main())


def test_another_user_does_not_get_the_first_users_updates(daemon: Daemon) -> None:
    """Re-authenticating as another user drops the order and asset subscriptions; the
    same user again keeps them."""
    for user in (41, 42):
        fund(daemon, user, "USDT", "1000")

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            await c.ok("server.auth", "good-41", "web")
            await c.ok("order.subscribe", "BTC_USDT")
            await c.ok("asset.subscribe")
            await c.ok("server.auth", "good-42", "web")
            await c.ok("server.auth", "good-42", "web")  # the same user: nothing dropped
            await c.ok("order.subscribe", "BTC_USDT")
            put(daemon, 41, "BTC_USDT", 2, "0.01", "100")
            mine = put(daemon, 42, "BTC_USDT", 2, "0.01", "100")
            assert await c.push("order.update") == [1, mine]
            assert not [m for m in await c.quiet(0.3) if m["method"] == "asset.update"]

    run(main())


def test_depth_updates_come_in_full_then_as_diffs(daemon: Daemon) -> None:
    """Bids below every ask of ETH_BTC (other tests may leave asks there)."""
    fund(daemon, 51, "BTC", "10")

    async def main() -> None:
        async with connect(daemon.ws_url) as c, connect(daemon.ws_url) as top:
            await c.ok("depth.subscribe", "ETH_BTC", 10, "0")
            book = daemon.ok("order.depth", "ETH_BTC", 10, "0")
            assert await c.push("depth.update") == [True, book, "ETH_BTC"]
            assert book["bids"] == []
            first = put(daemon, 51, "ETH_BTC", 2, "1", "0.02")
            assert await c.push("depth.update") == [False, {"bids": [["0.02", "1"]]}, "ETH_BTC"]
            put(daemon, 51, "ETH_BTC", 2, "2", "0.019")
            assert await c.push("depth.update") == [False, {"bids": [["0.019", "2"]]}, "ETH_BTC"]
            await top.ok("depth.subscribe", "ETH_BTC", 1, "0")
            best = daemon.ok("order.depth", "ETH_BTC", 1, "0")
            assert best["bids"] == [["0.02", "1"]]
            assert await top.push("depth.update") == [True, best, "ETH_BTC"]
            daemon.ok("order.cancel", 51, "ETH_BTC", first["id"])
            assert await c.push("depth.update") == [False, {"bids": [["0.02", "0"]]}, "ETH_BTC"]
            assert await top.push("depth.update") == [
                False, {"bids": [["0.02", "0"], ["0.019", "2"]]}, "ETH_BTC",
            ]  # fmt: skip
            put(daemon, 51, "ETH_BTC", 2, "1", "0.018")  # below the top: not for limit 1
            assert await c.push("depth.update") == [False, {"bids": [["0.018", "1"]]}, "ETH_BTC"]
            assert [m for m in await top.quiet(0.3) if m["method"] == "depth.update"] == []
            # merged to 0.01: the engine's answer
            await c.ok("depth.subscribe", "ETH_BTC", 10, "0.01")
            clean, depth, market = await c.push("depth.update")
            assert (clean, market) == (True, "ETH_BTC")
            assert depth == daemon.ok("order.depth", "ETH_BTC", 10, "0.01")
            assert depth["bids"] == [["0.01", "3"]]

    run(main())


def test_a_trade_updates_deals_price_today_state_and_kline(daemon: Daemon) -> None:
    fund(daemon, 61, "USDT", "100000")
    fund(daemon, 62, "BTC", "10")

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            for kind in ("deals", "price", "today", "state"):
                await c.ok(f"{kind}.subscribe", "BTC_USDT")
            await c.ok("kline.subscribe", "BTC_USDT", 60)
            put(daemon, 61, "BTC_USDT", 2, "1", "7123.45")
            put(daemon, 62, "BTC_USDT", 1, "0.3", "7123.45")
            market, deals = await c.push(
                "deals.update", where=lambda p: p[1][0]["price"] == "7123.45"
            )
            assert market == "BTC_USDT"
            assert {k: deals[0][k] for k in ("price", "amount", "type")} == {
                "price": "7123.45", "amount": "0.3", "type": "sell",
            }  # fmt: skip
            assert await c.push("price.update", where=lambda p: p[1] == "7123.45") == [
                "BTC_USDT", "7123.45",
            ]  # fmt: skip
            _, today = await c.push("today.update", where=lambda p: p[1]["last"] == "7123.45")
            assert today == daemon.ok("market.status_today", "BTC_USDT")
            _, state = await c.push("state.update", where=lambda p: p[1]["last"] == "7123.45")
            assert state == daemon.ok("market.status", "BTC_USDT", 86400)
            (row,) = await c.push("kline.update", where=lambda p: p[0][2] == "7123.45")
            assert row[-1] == "BTC_USDT"
            assert Decimal(row[5]) >= Decimal("0.3")
            assert row == daemon.ok("market.kline", "BTC_USDT", row[0], row[0], 60)[-1]
            await c.ok("deals.unsubscribe")
            put(daemon, 62, "BTC_USDT", 1, "0.1", "7123.45")
            assert not [m for m in await c.quiet(0.5) if m["method"] == "deals.update"]

    run(main())


def test_a_new_deals_subscriber_gets_the_recent_deals_at_once(daemon: Daemon) -> None:
    fund(daemon, 71, "USDT", "100000")
    fund(daemon, 72, "BTC", "10")
    before = daemon.ok("market.deals", "BTC_USDT", 1, 0)
    newest = before[0]["id"] if before else 0
    put(daemon, 71, "BTC_USDT", 2, "1", "9000")  # above every ask left by other tests
    for _ in range(3):
        put(daemon, 72, "BTC_USDT", 1, "0.01", "9000")

    async def main() -> None:
        for _ in range(100):  # the feed follows the log
            recent = daemon.ok("market.deals", "BTC_USDT", 100, 0)
            if len([d for d in recent if d["id"] > newest]) == 3:
                break
            await asyncio.sleep(0.02)
        assert [d["price"] for d in recent[:3]] == ["9000"] * 3
        async with connect(daemon.ws_url) as c:
            await c.ok("deals.subscribe", "BTC_USDT", "ETH_BTC")
            market, deals = await c.push("deals.update")
            assert market == "BTC_USDT"
            assert deals == recent
            assert [d["id"] for d in deals] == sorted((d["id"] for d in deals), reverse=True)
            put(daemon, 72, "BTC_USDT", 1, "0.02", "9000")
            _, new = await c.push("deals.update")
            assert [d["amount"] for d in new] == ["0.02"]
            assert new[0]["id"] > deals[0]["id"]

    run(main())
