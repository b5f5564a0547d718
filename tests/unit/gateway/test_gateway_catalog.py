"""Assets and markets added at run time, through in-process HTTP gateways in front of
a real server over ZeroMQ (docs/gateways.md, "Assets and markets added at run
time"): a gateway started before the add learns it from the engine when a request
names it (and shows it in market.list and asset.list) without a restart; a flood of
unknown names asks the engine at most once per ``catalog_refresh_s`` (the calls the
gateway sends are counted); asset.add and market.add check their params, add, and
are refused to a gateway whose key is not an admin's, as every market operation
(user.set_limit ...)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from core.catalog import new_asset, new_market, with_asset, with_market
from core.config import AssetConfig, EngineConfig, MarketConfig
from daemon.auth import load_registry
from daemon.gateway_catalog import CatalogMismatch, grown_catalog
from daemon.gateway_config import HttpConfig
from daemon.gateway_links import EngineLink
from daemon.http_gateway import HttpGateway, listening_socket, start_http
from daemon.server import Server, ServerConfig
from daemon.viabtc_methods import ViabtcMethods
from ipc import wire
from ipc.client import Client
from ipc.client_common import CurveKeys
from persistence.history_queries import HistoryNotConfigured
from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.support.keys import Entry, Keys
from tests.support.scenario import make_config
from tests.unit.gateway.test_http_market_ops import VIABTC_MARKET_KEYS, Rpc
from tests.unit.gateway.test_http_transport import call, post

pytestmark = pytest.mark.integration

TS = 1_700_000_000_000_000_000
ALICE, BOB = 1, 2
BTC, ETH, USDT = 0, 1, 2
#: Room for two more assets (5 in all) and two more markets (4 in all).
ROOM = {"max_assets": 5, "max_markets": 4, "added_market_orders": 64, "added_market_levels": 16}
SOL_USDT = {
    "name": "SOL_USDT", "stock": "SOL", "money": "USDT", "stock_prec": 4, "money_prec": 3,
    "min_amount": "0.001",
}  # fmt: skip
FEES = ("0.002", "0.001")


def config() -> EngineConfig:
    """The config file's catalog (the genesis one): BTC_USDT and ETH_BTC."""
    return make_config(max_orders=1000, max_levels=200, **ROOM)


class CatalogServer:
    """A server over a journal in ``path`` on its own thread (with a key registry when
    ``keys`` is given: its "ops" key is an admin's), and an admin SDK client."""

    def __init__(self, path: Path, keys: Keys | None = None) -> None:
        self.keys = keys
        self.journal = Journal.open(
            config(), JournalConfig(data_dir=path / "data", log=journal_log_config())
        )
        registry = load_registry(keys.write_registry()) if keys is not None else None
        sconfig = ServerConfig(endpoint="tcp://127.0.0.1:0", auth=registry)
        self.server = Server(self.journal, sconfig, clock=lambda: TS)
        self.endpoint = self.server.endpoint
        self.stop = False
        self.thread = threading.Thread(target=self.server.serve, args=(lambda: self.stop, 20))
        self.thread.start()
        self.admin = Client(self.endpoint, timeout_s=60, curve=self.curve("ops"))
        for user in (ALICE, BOB):
            for asset in (BTC, ETH, USDT):
                self.admin.balance_update(user, asset, "deposit", user, 10**14)

    def curve(self, name: str) -> CurveKeys | None:
        return None if self.keys is None else self.keys.curve(name)

    def catalog(self) -> tuple[list[str], list[str]]:
        """The engine's asset and market names."""
        return [a.name for a in self.admin.assets()], [m.name for m in self.admin.markets()]

    def close(self) -> None:
        self.admin.close()
        self.stop = True
        self.thread.join(120)
        self.server.close()
        self.journal.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[CatalogServer]:
    s = CatalogServer(tmp_path)
    yield s
    s.close()


class CountingLink(EngineLink):
    """The engine link, counting the calls it sends by kind."""

    def __init__(self, endpoint: str, **kw: Any) -> None:
        super().__init__(endpoint, **kw)
        self.calls: Counter[str] = Counter()

    async def call(self, call: wire.Call) -> wire.Reply:
        self.calls[type(call).__name__] += 1
        return await super().call(call)


@asynccontextmanager
async def gateway(
    endpoint: str, refresh_s: float, curve: CurveKeys | None = None
) -> AsyncIterator[tuple[Rpc, ViabtcMethods, CountingLink]]:
    """An HTTP gateway on a free port over the engine at ``endpoint``, started as
    ``matchd http`` starts (its catalog checked against the engine's)."""
    settings = HttpConfig(bind="127.0.0.1:0", timeout_s=10, catalog_refresh_s=refresh_s)
    link = CountingLink(endpoint, timeout_s=settings.timeout_s, curve=curve)
    executor = ThreadPoolExecutor(1)
    methods = ViabtcMethods(
        config(), link, None, HistoryNotConfigured(), executor, catalog_refresh_s=refresh_s
    )
    await link.start()
    sock = listening_socket(settings.bind, reuse_port=False)
    server, http = await start_http(HttpGateway(settings, methods), sock)
    try:
        assert await link.watch.wait_connected(10)
        assert await methods.check_engine() is None
        link.calls.clear()
        async with aiohttp.ClientSession() as session:
            yield Rpc(session, f"http://127.0.0.1:{sock.getsockname()[1]}/"), methods, link
    finally:
        server.close()
        await http.shutdown(1)
        await link.aclose()
        executor.shutdown()


def serve(
    served: CatalogServer,
    test: Callable[[Rpc, ViabtcMethods, CountingLink], Awaitable[None]],
    refresh_s: float = 1.0,
    key: str = "ops",
) -> None:
    async def main() -> None:
        async with gateway(served.endpoint, refresh_s, served.curve(key)) as parts:
            await test(*parts)

    asyncio.run(main())


def test_markets_added_at_run_time_are_usable_over_http(served: CatalogServer) -> None:
    async def test(rpc: Rpc, methods: ViabtcMethods, link: CountingLink) -> None:
        assert [m["name"] for m in await rpc.ok("market.list")] == ["BTC_USDT", "ETH_BTC"]
        served.admin.add_asset("SOL", 8)
        served.admin.add_market(**SOL_USDT)
        # an unknown asset, then the market: the gateway asks the engine, once
        for user in (ALICE, BOB):
            done = await rpc.ok("balance.update", user, "SOL", "deposit", 1, "100", {})
            assert done == {"status": "success"}
        assert methods.catalog.refreshes == 1
        assert link.calls["AssetList"] == 1  # market.list asks for markets only
        ask = await rpc.ok("order.put_limit", ALICE, "SOL_USDT", 1, "0.5", "25.5", *FEES, "t")
        assert (ask["market"], ask["price"], ask["left"]) == ("SOL_USDT", "25.5", "0.5")
        depth = await rpc.ok("order.depth", "SOL_USDT", 10, "0")
        assert depth == {"asks": [["25.5", "0.5"]], "bids": []}
        bid = await rpc.ok("order.put_limit", BOB, "SOL_USDT", 2, "0.2", "26", *FEES, "t")
        assert (bid["deal_stock"], bid["deal_money"]) == ("0.2", "5.1")
        assert (await rpc.ok("order.depth", "SOL_USDT", 10, "0"))["asks"] == [["25.5", "0.3"]]
        pending = await rpc.ok("order.pending", ALICE, "SOL_USDT", 0, 10)
        assert [o["left"] for o in pending["records"]] == ["0.3"]
        balances = await rpc.ok("balance.query", BOB, "SOL", "USDT")
        assert balances["SOL"]["available"] == "100.1996"  # 0.2 less the 0.002 fee
        summary = await rpc.ok("market.summary", "SOL_USDT")
        assert summary == [
            {"name": "SOL_USDT", "ask_count": 1, "ask_amount": "0.3", "bid_count": 0,
             "bid_amount": "0"},
        ]  # fmt: skip
        # a market operation on it
        assert await rpc.ok("market.set_limit", "SOL_USDT", "price_step", "0.5") == {
            "status": "success"
        }
        assert await rpc.ok("market.halt", "SOL_USDT") == {"status": "success"}
        # market.list and asset.list show them (learnt from the engine's lists)
        listed = await rpc.ok("market.list")
        assert [m["name"] for m in listed] == ["BTC_USDT", "ETH_BTC", "SOL_USDT"]
        assert listed[2] == {
            "name": "SOL_USDT", "stock": "SOL", "money": "USDT", "fee_prec": 4,
            "stock_prec": 4, "money_prec": 3, "min_amount": "0.001", "status": "halted",
        }  # fmt: skip
        assert set(listed[2]) == VIABTC_MARKET_KEYS | {"status"}
        # added meanwhile, listed at once: market.list and asset.list ask the engine
        served.admin.add_market("SOL_BTC", "SOL", "BTC", 4, 6)
        assert [m["name"] for m in await rpc.ok("market.list")][3] == "SOL_BTC"
        served.admin.add_asset("AVAX", 9, 4)
        assets = await rpc.ok("asset.list")
        assert assets[3:] == [{"name": "SOL", "prec": 8}, {"name": "AVAX", "prec": 4}]
        assert methods.config.asset("AVAX") is not None

    serve(served, test)


def test_a_flood_of_unknown_names_asks_the_engine_once_per_interval(
    served: CatalogServer,
) -> None:
    async def test(rpc: Rpc, methods: ViabtcMethods, link: CountingLink) -> None:
        flood = [
            call("order.put_limit", ALICE, f"NOPE_{i}", 1, "1", "1", *FEES, "t", rid=i)
            for i in range(100)
        ]
        flood += [call("balance.query", ALICE, f"DOGE{i}", rid=100 + i) for i in range(100)]
        status, body = await post(rpc.session, rpc.url, flood)
        assert status == 200
        answers = json.loads(body)
        assert [a["error"]["code"] for a in answers] == [1] * 200
        assert answers[7]["error"]["message"] == "invalid argument: unknown market 'NOPE_7'"
        assert answers[107]["error"]["message"] == "invalid argument: unknown asset 'DOGE7'"
        singles = await asyncio.gather(
            *(rpc.error("order.depth", f"NOPE_{i}", 10, "0") for i in range(50))
        )
        assert {code for code, _ in singles} == {1}
        assert (link.calls["MarketList"], link.calls["AssetList"]) == (1, 1)
        assert methods.catalog.refreshes == 1
        # added now, within the interval: unknown, as before, and nothing asked
        served.admin.add_asset("SOL", 8)
        served.admin.add_market(**SOL_USDT)
        assert await rpc.error("order.depth", "SOL_USDT", 10, "0") == (
            1, "invalid argument: unknown market 'SOL_USDT'",
        )  # fmt: skip
        assert link.calls["MarketList"] == 1
        # after the interval: asked again, and known
        await asyncio.sleep(2.1)
        assert await rpc.ok("order.depth", "SOL_USDT", 10, "0") == {"asks": [], "bids": []}
        assert (link.calls["MarketList"], link.calls["AssetList"]) == (2, 2)
        assert methods.catalog.skipped >= 50  # the batch waited for the one refresh in flight

    serve(served, test, refresh_s=2.0)


def test_asset_add_and_market_add_over_http(served: CatalogServer) -> None:
    async def test(rpc: Rpc, methods: ViabtcMethods, link: CountingLink) -> None:
        done = {"status": "success", "index": 3}
        assert await rpc.ok("asset.add", "SOL", 8) == done
        assert await rpc.ok("market.add", SOL_USDT) == {"status": "success", "index": 2}
        # usable at once: the gateway learnt what it added
        await rpc.ok("balance.update", ALICE, "SOL", "deposit", 1, "10", {})
        order = await rpc.ok("order.put_limit", ALICE, "SOL_USDT", 1, "1", "30", *FEES, "t")
        assert order["market"] == "SOL_USDT"
        assert served.catalog() == (
            ["BTC", "ETH", "USDT", "SOL"], ["BTC_USDT", "ETH_BTC", "SOL_USDT"],
        )  # fmt: skip
        sol_u = {**SOL_USDT, "name": "S_U"}
        exists = "an asset of that name exists: asset 'SOL' exists"
        refusals = [
            (("asset.add", "SOL", 8), exists),
            (("asset.add", "SOL"), "asset.add takes 2 or 3 params, not 1"),
            (("asset.add", 5, 8), "asset: Expected `str`, got `int` - at `$.name`"),
            (("asset.add", "X", True), "asset: Expected `int`, got `bool` - at `$.prec`"),
            (("asset.add", "X", 19), "asset X: prec"),
            (("asset.add", "X", 8, 9), "asset X: prec_show"),
            (("asset.add", "_X", 8), "asset name '_X' must be 1..15 bytes"),
            (("market.add", SOL_USDT), "a market of that name exists: market 'SOL_USDT' exists"),
            (("market.add", "SOL_USDT"), "market.add takes one param: a JSON object"),
            (("market.add", {**sol_u, "x": 1}), "market: Object contains unknown field `x`"),
            (("market.add", {"name": "A_B"}), "market: Object missing required field `stock`"),
            (
                ("market.add", {**sol_u, "stock": "DOGE"}),
                "unknown asset: market S_U: asset 'DOGE' is not in the catalog",
            ),
            (("market.add", {**sol_u, "stock_prec": 9}), "market S_U: stock_prec"),
            (
                ("market.add", {**sol_u, "max_orders": 65}),
                "market S_U: max_orders 65 is above engine.added_market_orders = 64",
            ),
        ]
        for params, message in refusals:
            code, text = await rpc.error(*params)
            assert code == 1, (params, text)
            assert text.startswith("invalid argument: " + message), (params, text)
        # the engine refuses what the gateway's catalog does not know of yet: the same
        served.admin.add_asset("AVAX", 9)
        assert await rpc.error("asset.add", "AVAX", 9) == (
            1, "invalid argument: an asset of that name exists: asset 'AVAX' exists",
        )  # fmt: skip
        # tables full: ViaBTC's code 3
        assert await rpc.error("asset.add", "DOT", 8) == (
            3, "service unavailable: the catalog holds max_assets assets: the catalog holds "
            "engine.max_assets = 5 assets",
        )  # fmt: skip
        assert await rpc.ok("market.add", {**SOL_USDT, "name": "SOL_BTC", "money": "BTC"}) == {
            "status": "success", "index": 3,
        }  # fmt: skip
        avax = {**SOL_USDT, "name": "AVAX_USDT", "stock": "AVAX"}
        assert await rpc.error("market.add", avax) == (
            3, "service unavailable: the catalog holds max_markets markets: the catalog holds "
            "engine.max_markets = 4 markets",
        )  # fmt: skip
        assert served.catalog() == (
            ["BTC", "ETH", "USDT", "SOL", "AVAX"], ["BTC_USDT", "ETH_BTC", "SOL_USDT", "SOL_BTC"],
        )  # fmt: skip

    serve(served, test)


def test_the_catalog_methods_need_an_admin_key(tmp_path: Path) -> None:
    keys = Keys(tmp_path / "keys")
    keys.add("ops", Entry("admin"))
    keys.add("gateway", Entry("trade", "*"))
    served = CatalogServer(tmp_path, keys)
    try:

        async def refused(rpc: Rpc, methods: ViabtcMethods, link: CountingLink) -> None:
            # as every market operation: the engine refuses the frame (HTTP 500)
            adds = [
                call("asset.add", "SOL", 8),
                call("market.add", {**SOL_USDT, "stock": "BTC"}),
                call("user.set_limit", ALICE, "BTC_USDT", "max_notional", "100"),
            ]
            for request in adds:
                assert await post(rpc.session, rpc.url, request) == (500, b"")
            # in a batch (one frame, refused whole), each element's error says why
            status, body = await post(rpc.session, rpc.url, adds)
            assert status == 200
            for answer in json.loads(body):
                assert answer["error"]["code"] == 3
                assert (
                    "forbidden: key 'gateway' (trade) may not call asset.add (call 0): it needs "
                    "an admin key" in answer["error"]["message"]
                )
            assert await rpc.ok("order.depth", "BTC_USDT", 10, "0") == {"asks": [], "bids": []}

        serve(served, refused, key="gateway")
        assert served.catalog() == (["BTC", "ETH", "USDT"], ["BTC_USDT", "ETH_BTC"])

        async def admitted(rpc: Rpc, methods: ViabtcMethods, link: CountingLink) -> None:
            assert await rpc.ok("asset.add", "SOL", 8) == {"status": "success", "index": 3}

        serve(served, admitted, key="ops")
        assert served.catalog()[0] == ["BTC", "ETH", "USDT", "SOL"]
    finally:
        served.close()


def test_a_gateway_started_after_the_adds_knows_them(served: CatalogServer) -> None:
    served.admin.add_asset("SOL", 8)
    served.admin.add_market(**SOL_USDT)

    async def test(rpc: Rpc, methods: ViabtcMethods, link: CountingLink) -> None:
        assert [m.name for m in methods.config.markets] == ["BTC_USDT", "ETH_BTC", "SOL_USDT"]
        assert await rpc.ok("order.depth", "SOL_USDT", 10, "0") == {"asks": [], "bids": []}
        assert link.calls["MarketList"] == 0  # known from the start: nothing asked

    serve(served, test)


def test_the_catalog_grows_from_the_engines_lists_only() -> None:
    """``grown_catalog`` over the lists an engine gives (made here as the engine makes
    them, ``wire.MarketInfo.from_market``): the added entries equal the engine's, a
    market of an asset not listed waits, and lists that do not begin with the
    gateway's are not followed."""
    genesis = config()
    engine = with_asset(genesis, new_asset(genesis, AssetConfig("SOL", 8)))
    market = MarketConfig(**SOL_USDT, price_step="0.5", max_orders=32, max_levels=8)  # type: ignore[arg-type]
    engine = with_market(engine, new_market(engine, market))
    assets = [wire.AssetInfo.from_asset(a) for a in engine.assets]
    markets = [wire.MarketInfo.from_market(m) for m in engine.markets]
    grown = grown_catalog(genesis, assets, markets)
    assert [wire.AssetInfo.from_asset(a) for a in grown.assets] == assets
    assert [wire.MarketInfo.from_market(m) for m in grown.markets] == markets
    sol_usdt = grown.markets[2]
    assert (sol_usdt.stock_scale, sol_usdt.deal_scale, sol_usdt.fee_den) == (10**4, 10, 10**4)
    assert sol_usdt.max_orders == ROOM["added_market_orders"]  # not listed: the room
    # the market of an asset the gateway does not know waits for the asset's list
    assert [m.name for m in grown_catalog(genesis, None, markets).markets] == [
        "BTC_USDT", "ETH_BTC",
    ]  # fmt: skip
    assert grown_catalog(grown, assets, markets) == grown  # nothing new: the same
    with pytest.raises(CatalogMismatch, match="do not begin with the gateway's"):
        grown_catalog(grown, None, markets[:2])  # fewer than the gateway knows
    renamed = [msgspec.structs.replace(markets[1], name="ETH_XBT"), *markets[2:]]
    with pytest.raises(CatalogMismatch, match="do not begin with the gateway's"):
        grown_catalog(genesis, assets, [markets[0], *renamed])
    with pytest.raises(CatalogMismatch, match="assets"):
        grown_catalog(genesis, assets[1:], markets)
    with pytest.raises(CatalogMismatch, match="at 5, not 3"):
        grown_catalog(genesis, [*assets[:3], msgspec.structs.replace(assets[3], index=5)], None)
