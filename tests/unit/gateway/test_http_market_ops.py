"""matchd's market operations over HTTP JSON-RPC (docs/gateways.md, "Market
operations"): market.halt, market.resume, market.delist, user.block, user.unblock,
market.set_limit, user.set_limit, and market.list's ``status``, through an in-process
HTTP gateway in front of a real server (docs/compat.md). An engine that is not there:
market.list still answers, without ``status``, and the operations are HTTP 500 as every
engine method."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.config import parse_config
from core.schema import Side
from daemon.gateway_links import EngineLink
from daemon.viabtc_methods import ViabtcMethods
from ipc import wire
from persistence.history_queries import HistoryNotConfigured
from tests.support.scenario import config_text
from tests.support.served import Served
from tests.unit.daemon.test_market_ops import (
    ALICE,
    BOB,
    BTC_USDT,
    ETH_BTC,
    config,
    fund,
    rest,
)
from tests.unit.gateway.test_http_transport import call, gateway, post

#: The keys of a ViaBTC market.list object (shared/reference/viabtc-api.md).
VIABTC_MARKET_KEYS = {
    "name",
    "stock",
    "money",
    "fee_prec",
    "stock_prec",
    "money_prec",
    "min_amount",
}


class Rpc:
    """JSON-RPC over one aiohttp session: ``ok`` is a result, ``error`` an error."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def answer(self, method: str, *params: Any) -> dict[str, Any]:
        status, body = await post(self.session, self.url, call(method, *params))
        assert status == 200, (status, body)
        answer: dict[str, Any] = json.loads(body)
        return answer

    async def ok(self, method: str, *params: Any) -> Any:
        answer = await self.answer(method, *params)
        assert answer["error"] is None, answer
        return answer["result"]

    async def error(self, method: str, *params: Any) -> tuple[int, str]:
        answer = await self.answer(method, *params)
        assert answer["result"] is None, answer
        return answer["error"]["code"], answer["error"]["message"]

    async def statuses(self) -> dict[str, str]:
        return {m["name"]: m["status"] for m in await self.ok("market.list")}


@pytest.fixture
def served(tmp_path: Path) -> Any:
    s = Served(tmp_path, "one-process", config())
    fund(s.client)
    yield s
    s.close()


def http(served: Served, test: Any) -> None:
    """Run ``test(rpc)`` against a gateway in front of ``served``."""

    async def main() -> None:
        async with gateway(served.endpoint) as (url, gw), aiohttp.ClientSession() as s:
            assert await gw.methods.engine.watch.wait_connected(10)
            await test(Rpc(s, url))

    asyncio.run(main())


@pytest.mark.integration
def test_halt_and_resume_over_http(served: Served) -> None:
    rest(served.client, ALICE, BTC_USDT, Side.ASK, 1)
    put = [BOB, "BTC_USDT", 2, "0.001", "300", "0", "0", "web"]

    async def test(rpc: Rpc) -> None:
        listed = await rpc.ok("market.list")
        assert [set(m) for m in listed] == [VIABTC_MARKET_KEYS | {"status"}] * 2
        assert await rpc.statuses() == {"BTC_USDT": "open", "ETH_BTC": "open"}
        assert await rpc.ok("market.halt", "BTC_USDT") == {"status": "success"}
        assert await rpc.ok("market.halt", "BTC_USDT") == {"status": "success"}  # idempotent
        assert await rpc.statuses() == {"BTC_USDT": "halted", "ETH_BTC": "open"}
        assert await rpc.error("order.put_limit", *put) == (
            1, "market halted: only cancels are taken",
        )  # fmt: skip
        (order,) = (await rpc.ok("order.pending", ALICE, "BTC_USDT", 0, 10))["records"]
        assert (await rpc.ok("order.cancel", ALICE, "BTC_USDT", order["id"]))["id"] == order["id"]
        assert await rpc.ok("market.resume", "BTC_USDT") == {"status": "success"}
        assert await rpc.statuses() == {"BTC_USDT": "open", "ETH_BTC": "open"}
        assert (await rpc.ok("order.put_limit", *put))["left"] == "0.001"

    http(served, test)


@pytest.mark.integration
def test_delist_and_the_kill_switch_over_http(served: Served) -> None:
    rest(served.client, ALICE, BTC_USDT, Side.ASK, 3)
    rest(served.client, BOB, BTC_USDT, Side.BID, 2)
    rest(served.client, BOB, ETH_BTC, Side.BID, 3)

    async def test(rpc: Rpc) -> None:
        assert await rpc.ok("market.delist", "BTC_USDT") == {"status": "success", "cancelled": 5}
        assert await rpc.ok("market.delist", "BTC_USDT") == {"status": "success", "cancelled": 0}
        assert (await rpc.statuses())["BTC_USDT"] == "delisted"
        code, message = await rpc.error(
            "order.put_limit", ALICE, "BTC_USDT", 1, "0.001", "300", "0", "0", ""
        )
        assert (code, message) == (1, "market delisted: only cancels are taken")
        assert await rpc.ok("user.block", BOB) == {"status": "success", "cancelled": 3}
        assert await rpc.ok("user.block", BOB) == {"status": "success", "cancelled": 0}
        code, message = await rpc.error(
            "order.put_limit", BOB, "ETH_BTC", 2, "0.01", "1", "0", "0", ""
        )
        assert (code, message) == (1, "user blocked: only cancels are taken")
        assert await rpc.ok("user.unblock", BOB) == {"status": "success"}
        placed = await rpc.ok("order.put_limit", BOB, "ETH_BTC", 2, "0.01", "1", "0", "0", "")
        assert placed["user"] == BOB

    http(served, test)


@pytest.mark.integration
def test_bad_params_and_engine_refusals_over_http(served: Served) -> None:
    async def test(rpc: Rpc) -> None:
        assert await rpc.error("market.halt", "NOPE") == (
            1, "invalid argument: unknown market 'NOPE'",
        )  # fmt: skip
        assert await rpc.error("market.delist", 0) == (
            1,
            "invalid argument: market must be a string",
        )
        assert await rpc.error("market.resume") == (
            1, "invalid argument: market.resume takes 1 params, not 0",
        )  # fmt: skip
        assert await rpc.error("user.block", "7") == (
            1, "invalid argument: user_id must be an integer",
        )  # fmt: skip
        assert await rpc.error("user.unblock", 2**32) == (
            1, "invalid argument: user_id must be in 0..4294967295",
        )  # fmt: skip
        assert await rpc.error("user.block", 0) == (
            1, "invalid argument: the fee account cannot trade",
        )  # fmt: skip
        assert await rpc.statuses() == {"BTC_USDT": "open", "ETH_BTC": "open"}

    http(served, test)


@pytest.mark.integration
def test_a_batch_runs_its_operations_in_order(served: Served) -> None:
    put = {"method": "order.put_limit", "id": 2,
           "params": [BOB, "ETH_BTC", 2, "0.01", "1", "0", "0", ""]}  # fmt: skip

    async def test(rpc: Rpc) -> None:
        batch = [
            {"method": "market.halt", "params": ["ETH_BTC"], "id": 1},
            put,
            {"method": "market.resume", "params": ["ETH_BTC"], "id": 3},
            {**put, "id": 4},
        ]
        status, body = await post(rpc.session, rpc.url, batch)
        assert status == 200
        answers = json.loads(body)
        assert [a["id"] for a in answers] == [1, 2, 3, 4]
        assert answers[0]["result"] == answers[2]["result"] == {"status": "success"}
        assert answers[1]["error"] == {
            "code": 1, "message": "market halted: only cancels are taken",
        }  # fmt: skip
        assert answers[3]["error"] is None
        # The kill switch's first step, then a put of the user: refused.
        block = {"method": "user.block", "params": [BOB], "id": 5}
        status, body = await post(rpc.session, rpc.url, [block, {**put, "id": 6}])
        first, second = json.loads(body)
        assert first["result"] == {"status": "success", "cancelled": 1}  # answer 4's order
        assert second["error"] == {"code": 1, "message": "user blocked: only cancels are taken"}

    http(served, test)


@pytest.mark.integration
def test_set_limit_over_http(served: Served) -> None:
    c = served.client
    put = [BOB, "BTC_USDT", 2, "0.001", "300.01", "0", "0", ""]

    async def test(rpc: Rpc) -> None:
        done = {"status": "success"}
        assert await rpc.ok("market.set_limit", "BTC_USDT", "price_step", "0.05") == done
        assert c.markets()[BTC_USDT].price_step == 5
        assert await rpc.ok("market.set_limit", "BTC_USDT", "price_step", "0.05") == done  # again
        assert await rpc.error("order.put_limit", *put) == (
            1, "invalid argument: price is not a multiple of price_step",
        )  # fmt: skip
        assert await rpc.ok("market.set_limit", "BTC_USDT", "price_step", "none") == done
        assert (await rpc.ok("order.put_limit", *put))["price"] == "300.01"
        assert await rpc.ok("market.set_limit", "ETH_BTC", "max_notional", "2.5") == done
        assert await rpc.ok("market.set_limit", "ETH_BTC", "min_notional", "0.1") == done
        assert await rpc.ok("market.set_limit", "ETH_BTC", "max_open_orders", "4") == done
        assert await rpc.ok("market.set_limit", "ETH_BTC", "price_band", "0.25") == done
        assert await rpc.ok("market.set_limit", "ETH_BTC", "max_order_amount", "1.5") == done
        eth = c.markets()[ETH_BTC]
        assert (eth.min_notional, eth.max_notional) == (10**9, 25 * 10**9)  # BTC prec 10
        assert (eth.max_open_orders, eth.price_band) == (4, 250_000)
        assert eth.max_order_amount == 15_000  # stock_prec 4
        # In a batch the limit is set in its place: the put after it is held to it.
        batch = [
            {"method": "market.set_limit", "params": ["BTC_USDT", "min_notional", "1"], "id": 1},
            {"method": "order.put_limit", "params": put, "id": 2},  # 0.30001 USDT
        ]
        status, body = await post(rpc.session, rpc.url, batch)
        first, second = json.loads(body)
        assert (status, first["result"]) == (200, {"status": "success"})
        assert second["error"] == {
            "code": 1, "message": "invalid argument: order value below min_notional",
        }  # fmt: skip

    http(served, test)


@pytest.mark.integration
def test_set_limit_refusals_over_http(served: Served) -> None:
    async def test(rpc: Rpc) -> None:
        assert await rpc.ok("market.set_limit", "BTC_USDT", "max_notional", "1000") == {
            "status": "success"
        }
        for params, message in (
            (("BTC_USDT", "price_step", "0.001"),
             "price_step '0.001' has more decimal places than the 2 of market BTC_USDT's "
             "prices (money_prec), so it cannot be represented exactly"),
            (("BTC_USDT", "amount_step", "-0.1"), "amount_step '-0.1' is negative"),
            (("BTC_USDT", "max_open_orders", "1001"),
             "max_open_orders '1001' is out of range: 0..1000, or none"),
            (("BTC_USDT", "price_band", "1"), "price_band '1' is out of range: 0..0.999999"),
            (("BTC_USDT", "min_notional", "1000.00000001"),
             "min_notional 1000.00000001 is above market BTC_USDT's max_notional 1000"),
            (("BTC_USDT", "tick", "1"), "risk limit 'tick' is none of price_step, amount_step"),
            (("BTC_USDT", "price_step", 5), "value must be a string"),
            (("BTC_USDT", 1, "5"), "limit must be a string"),
            (("NOPE", "price_step", "1"), "unknown market 'NOPE'"),
            (("BTC_USDT", "price_step"), "market.set_limit takes 3 params, not 2"),
        ):  # fmt: skip
            code, text = await rpc.error("market.set_limit", *params)
            assert code == 1
            assert text.startswith(f"invalid argument: {message}"), text
        # The engine had the last word before: the min may now equal the max.
        assert await rpc.ok("market.set_limit", "BTC_USDT", "min_notional", "1000") == {
            "status": "success"
        }
        code, text = await rpc.error("market.set_limit", "BTC_USDT", "max_notional", "999")
        assert (code, text) == (
            1, "invalid argument: max_notional 999 is below market BTC_USDT's min_notional 1000",
        )  # fmt: skip

    http(served, test)
    info = served.client.markets()[BTC_USDT]
    assert (info.min_notional, info.max_notional, info.price_step) == (10**11, 10**11, 1)


@pytest.mark.integration
def test_set_user_limit_over_http(served: Served) -> None:
    c = served.client
    big = [BOB, "BTC_USDT", 2, "0.5", "300", "0", "0", ""]  # 150 USDT
    small = [BOB, "BTC_USDT", 2, "0.001", "300", "0", "0", ""]

    async def test(rpc: Rpc) -> None:
        done = {"status": "success"}
        assert await rpc.ok("user.set_limit", BOB, "BTC_USDT", "max_notional", "100") == done
        assert c.user_limits(BOB, BTC_USDT).max_notional == 100 * 10**8  # USDT prec 8
        assert await rpc.ok("user.set_limit", BOB, "BTC_USDT", "max_notional", "100") == done
        assert await rpc.error("order.put_limit", *big) == (
            1, "invalid argument: order value above the user's max_notional",
        )  # fmt: skip
        assert (await rpc.ok("order.put_limit", *small))["left"] == "0.001"
        # another user, another market: not held to it
        assert (await rpc.ok("order.put_limit", ALICE, *big[1:]))["left"] == "0.5"
        assert await rpc.ok("user.set_limit", BOB, "BTC_USDT", "max_notional", "none") == done
        assert await rpc.ok("user.set_limit", BOB, "BTC_USDT", "max_order_amount", "0.1") == done
        assert c.user_limits(BOB, BTC_USDT).max_order_amount == 100_000  # stock_prec 6
        assert await rpc.error("order.put_limit", *big) == (
            1, "invalid argument: amount above the user's max_order_amount",
        )  # fmt: skip
        assert await rpc.ok("user.set_limit", BOB, "BTC_USDT", "max_order_amount", "0") == done
        assert (await rpc.ok("order.put_limit", *big))["amount"] == "0.5"
        assert c.user_limits(BOB, BTC_USDT) == wire.UserLimits(BOB, BTC_USDT, 0, 0)  # none

    http(served, test)


@pytest.mark.integration
def test_set_user_limit_refusals_over_http(served: Served) -> None:
    async def test(rpc: Rpc) -> None:
        for params, message in (
            ((BOB, "BTC_USDT", "max_order_amount", "0.0000001"),
             "max_order_amount '0.0000001' has more decimal places than the 6 of market "
             "BTC_USDT's amounts (stock_prec), so it cannot be represented exactly"),
            ((BOB, "BTC_USDT", "max_notional", "0.000000001"),
             "max_notional '0.000000001' has more decimal places than the 8 of market "
             "BTC_USDT's money asset (prec)"),
            ((BOB, "BTC_USDT", "max_notional", "-1"), "max_notional '-1' is negative"),
            ((BOB, "BTC_USDT", "max_order_amount", "1e30"),
             "max_order_amount '1e30' is out of range: 0.."),
            ((BOB, "BTC_USDT", "price_step", "1"),
             "user risk limit 'price_step' is none of max_order_amount, max_notional"),
            ((BOB, "BTC_USDT", "tick", "1"),
             "user risk limit 'tick' is none of max_order_amount, max_notional"),
            ((BOB, "BTC_USDT", "max_notional", 5), "value must be a string"),
            ((BOB, "BTC_USDT", 4, "5"), "limit must be a string"),
            ((BOB, "NOPE", "max_notional", "1"), "unknown market 'NOPE'"),
            (("2", "BTC_USDT", "max_notional", "1"), "user_id must be an integer"),
            ((2**32, "BTC_USDT", "max_notional", "1"), "user_id must be in 0..4294967295"),
            ((0, "BTC_USDT", "max_notional", "1"), "the fee account cannot trade"),
            ((BOB, "BTC_USDT", "max_notional"), "user.set_limit takes 4 params, not 3"),
        ):  # fmt: skip
            code, text = await rpc.error("user.set_limit", *params)
            assert code == 1
            assert text.startswith(f"invalid argument: {message}"), text

    state = served.state_hash()
    http(served, test)
    assert served.state_hash() == state
    assert served.client.user_limits(BOB, BTC_USDT) == wire.UserLimits(BOB, BTC_USDT, 0, 0)


@pytest.mark.integration
def test_the_gateway_accepts_an_engine_whose_limits_and_status_changed(served: Served) -> None:
    # The gateway checks at start that the engine runs its config; a risk limit (and
    # a status) are the engine's to change: they make no difference.
    async def main() -> None:
        executor = ThreadPoolExecutor(1)
        for text, same in ((None, True), (config_text(btc_usdt='max_amount = "100"\n'), False)):
            engine_config = config() if text is None else parse_config(text)
            link = EngineLink(served.endpoint, timeout_s=30)
            methods = ViabtcMethods(engine_config, link, None, HistoryNotConfigured(), executor)
            await link.start()
            try:
                assert await link.watch.wait_connected(10)
                assert (await methods.check_engine() is None) is same
            finally:
                await link.aclose()
        executor.shutdown()

    asyncio.run(main())
    served.client.set_market_limit(BTC_USDT, "price_band", 50_000)
    served.client.halt_market(ETH_BTC)
    asyncio.run(main())


def test_without_the_engine_market_list_answers_without_status(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            gateway(f"ipc://{tmp_path}/nobody.sock") as (url, _),
            aiohttp.ClientSession() as s,
        ):
            status, body = await post(s, url, call("market.list"))
            assert status == 200
            listed = json.loads(body)["result"]
            assert [set(m) for m in listed] == [VIABTC_MARKET_KEYS] * 2
            for method, param in (("market.halt", "BTC_USDT"), ("user.block", 7)):
                assert await post(s, url, call(method, param)) == (500, b"")
            limit = call("market.set_limit", "BTC_USDT", "max_notional", "10")
            assert await post(s, url, limit) == (500, b"")
            mine = call("user.set_limit", 7, "BTC_USDT", "max_order_amount", "0.5")
            assert await post(s, url, mine) == (500, b"")
            # a bad value is answered without the engine
            status, body = await post(s, url, call("market.set_limit", "BTC_USDT", "x", "1"))
            assert json.loads(body)["error"]["code"] == 1
            bad = call("user.set_limit", 7, "BTC_USDT", "max_order_amount", "0.0000001")
            status, body = await post(s, url, bad)
            assert json.loads(body)["error"] == {
                "code": 1,
                "message": "invalid argument: max_order_amount '0.0000001' has more decimal "
                "places than the 6 of market BTC_USDT's amounts (stock_prec), so it cannot be "
                "represented exactly",
            }
            # a bad param is still answered without the engine
            status, body = await post(s, url, call("market.delist", "NOPE"))
            assert json.loads(body)["error"]["code"] == 1

    asyncio.run(main())
