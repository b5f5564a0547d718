"""Adding assets and markets at run time (``asset.add``, ``market.add``; docs/protocol.md
and docs/operations.md, "Adding assets and markets") against a running server over
real ZeroMQ sockets, in one process and with two pair workers: through the SDK (sync
and asyncio) and ``matchctl``, an added market takes deposits, orders and trades like
a configured one, the lists show it, every refusal is answered with its code and the
catalog's message, and a restart on the same data directory finds it with its orders
(the same state hash)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import commands as C
from core.config import EngineConfig
from core.schema import Result, Side
from ipc import wire
from ipc.client import ApiError, AsyncClient, Client
from tests.support.scenario import make_config
from tests.support.served import SLOW_S, Served
from tools import matchctl

pytestmark = pytest.mark.integration

BTC, ETH, USDT = 0, 1, 2
DOGE = 3  #: the first asset added
DOGE_USDT = 2  #: the first market added
FEE, ALICE, BOB = 0, 1, 2


def config() -> EngineConfig:
    """The test config with room for two assets and two markets more, each added
    market with 500 order slots and 100 price levels a side."""
    return make_config(
        max_orders=1000,
        max_levels=200,
        max_assets=5,
        max_markets=4,
        added_market_orders=500,
        added_market_levels=100,
    )


@pytest.fixture(params=["one-process", "workers"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(tmp_path, str(request.param), config(), workers=2)
    if s.pipeline is not None:
        assert s.pipeline.pconfig.groups == ((0, 2), (1, 3))  # the added markets' slots too
    yield s
    s.close()


def add_doge(c: Client) -> None:
    """DOGE (prec 8) and DOGE_USDT (amounts in 0.01 DOGE, prices in 0.0001 USDT),
    and deposits: ALICE 1000 DOGE, BOB 1000 USDT."""
    done = c.add_asset("DOGE", 8)
    assert (done.value, done.order) == (DOGE, None)
    assert done.seq > 0
    market = c.add_market("DOGE_USDT", "DOGE", "USDT", 2, 4, min_amount="0.1")
    assert market.value == DOGE_USDT
    assert market.seq == done.seq + 1
    c.balance_update(ALICE, DOGE, "deposit", 1, 1000 * 10**8)
    c.balance_update(BOB, USDT, "deposit", 2, 1000 * 10**8)


def balances(c: Client, user: int) -> dict[int, tuple[int, int]]:
    return {b.asset: (b.available, b.freeze) for b in c.balance_query(user)}


def refused(code: Result, action: object, viabtc: int = 1) -> str:
    """``action`` raises ``ApiError`` with ``code`` (and ViaBTC's ``viabtc``); its
    message."""
    assert callable(action)
    with pytest.raises(ApiError) as info:
        action()
    assert (info.value.code, info.value.viabtc) == (code, viabtc)
    return info.value.message


# --------------------------------------------------------------------------- adding


def test_an_added_market_takes_deposits_orders_and_trades(served: Served) -> None:
    c = served.client
    before = C.put_limit(ALICE, DOGE_USDT, Side.ASK, 1000, 1500)
    results, _ = c.submit(before)  # not there yet: an unknown market
    assert results["code"].tolist() == [Result.UNKNOWN_MARKET]
    add_doge(c)
    assert c.assets()[DOGE] == wire.AssetInfo(DOGE, "DOGE", 8, 8)
    assert [m.name for m in c.markets()] == ["BTC_USDT", "ETH_BTC", "DOGE_USDT"]
    info = c.markets()[DOGE_USDT]
    assert (info.index, info.stock, info.money, info.stock_prec, info.money_prec) == (
        DOGE_USDT, DOGE, USDT, 2, 4,
    )  # fmt: skip
    assert (info.fee_prec, info.min_amount, info.status, info.price_step) == (4, 10, "open", 1)
    # Resting orders (a binary record and a call), then a taker that crosses both.
    results, _ = c.submit(before)
    assert results["code"].tolist() == [Result.OK]
    ask = c.put_limit(ALICE, DOGE_USDT, Side.ASK, 1000, 1600).order_id
    assert c.depth(DOGE_USDT).asks == [(1500, 1000), (1600, 1000)]
    assert c.pending(ALICE, DOGE_USDT).total == 2
    taker = c.put_limit(BOB, DOGE_USDT, Side.BID, 1500, 1600)
    assert taker.order is not None
    assert taker.order.left == 0
    # 10 DOGE at 0.15 and 5 at 0.16: 15 DOGE for 2.3 USDT; 5 DOGE still rest at 0.16.
    assert balances(c, BOB)[DOGE] == (15 * 10**8, 0)
    assert balances(c, BOB)[USDT] == (1000 * 10**8 - 230_000_000, 0)
    assert balances(c, ALICE)[DOGE] == (980 * 10**8, 5 * 10**8)
    assert balances(c, ALICE)[USDT] == (230_000_000, 0)
    left = c.pending_detail(DOGE_USDT, ask)
    assert left is not None
    assert left.left == 500
    assert c.book(DOGE_USDT, Side.ASK).total == 1
    (summary,) = c.call(wire.MarketSummaryCall([DOGE_USDT]))
    assert summary.result_as(wire.MarketSummaryCall) == [
        wire.MarketSummary(DOGE_USDT, 1, 500, 0, 0)
    ]
    # A configured market goes on as before.
    c.balance_update(ALICE, BTC, "deposit", 3, 10**12)
    assert c.put_limit(ALICE, 0, Side.ASK, 1000, 30_000).order is not None


def test_a_market_added_in_a_frame_takes_the_calls_after_it(served: Served) -> None:
    c = served.client
    c.add_asset("DOGE", 8)
    c.balance_update(ALICE, DOGE, "deposit", 1, 10**10)
    put = wire.PutLimit(ALICE, DOGE_USDT, Side.ASK, 100, 2000)
    replies = c.call(put, wire.MarketAdd("DOGE_USDT", "DOGE", "USDT", 2, 4), put, wire.MarketList())
    assert replies[0].code == Result.UNKNOWN_MARKET  # before the add, in the same frame
    assert replies[1].result_as(wire.MarketAdd).value == DOGE_USDT
    assert replies[2].result_as(put).order is not None
    assert [m.name for m in replies[3].result_as(wire.MarketList)][-1] == "DOGE_USDT"
    assert c.pending(ALICE, DOGE_USDT).total == 1


def test_refusals_name_the_code_and_the_catalogs_reason(served: Served) -> None:
    c = served.client
    state = served.state_hash()
    message = refused(Result.ASSET_EXISTS, lambda: c.add_asset("BTC", 8))
    assert message == "asset 'BTC' exists"
    message = refused(Result.MARKET_EXISTS, lambda: c.add_market("ETH_BTC", "ETH", "BTC", 4, 5))
    assert message == "market 'ETH_BTC' exists"
    message = refused(Result.UNKNOWN_ASSET, lambda: c.add_market("DOGE_USDT", "DOGE", "USDT", 2, 4))
    assert message == "market DOGE_USDT: asset 'DOGE' is not in the catalog"
    message = refused(Result.INVALID_ARGUMENT, lambda: c.add_asset("DO GE", 8))
    assert message.startswith("asset name 'DO GE' must be 1..15 bytes")
    message = refused(Result.INVALID_ARGUMENT, lambda: c.add_asset("DOGE", 8, 9))
    assert message == "asset DOGE: prec_show = 9 is outside 0..8"
    message = refused(
        Result.INVALID_ARGUMENT,
        lambda: c.add_market("ETH_USDT", "ETH", "USDT", 4, 2, max_orders=501),
    )
    assert message == (
        "market ETH_USDT: max_orders 501 is above engine.added_market_orders = 500, the "
        "room reserved for an added market"
    )
    message = refused(
        Result.INVALID_ARGUMENT,
        lambda: c.add_market("ETH_USDT", "ETH", "USDT", 4, 2, min_amount="0.00001"),
    )
    assert message.startswith("market ETH_USDT: min_amount '0.00001' has more decimal places")
    # A call the decoder refuses: 1001 naming the field, nothing run.
    bad = wire.MarketAdd("ETH_USDT", "ETH", "USDT", 4, 2, price_band=0.1)  # type: ignore[arg-type]
    (reply,) = c.call(bad)
    assert reply.code == Result.INVALID_ARGUMENT
    assert "$.price_band" in reply.message
    with pytest.raises(TypeError):
        c.add_market("ETH_USDT", "ETH", "USDT", 4, 2, tick="0.01")  # nothing sent
    assert served.state_hash() == state  # no refusal changed anything
    assert len(c.markets()) == 2


def test_a_full_catalog_refuses_more(served: Served) -> None:
    c = served.client
    assert [c.add_asset(name, 6).value for name in ("DOGE", "SHIB")] == [3, 4]
    message = refused(Result.ASSET_TABLE_FULL, lambda: c.add_asset("PEPE", 6), viabtc=3)
    assert message == "the catalog holds engine.max_assets = 5 assets"
    added = [c.add_market(f"{a}_USDT", a, "USDT", 2, 4).value for a in ("DOGE", "SHIB")]
    assert added == [2, 3]
    message = refused(
        Result.MARKET_TABLE_FULL, lambda: c.add_market("DOGE_SHIB", "DOGE", "SHIB", 2, 2), viabtc=3
    )
    assert message == "the catalog holds engine.max_markets = 4 markets"
    # Both added markets trade, each in the slot its worker had from the start.
    c.balance_update(ALICE, 4, "deposit", 1, 10**10)
    c.balance_update(BOB, USDT, "deposit", 2, 10**10)
    for market in (2, 3):
        c.put_limit(BOB, market, Side.BID, 100, 50)
    taker = c.put_market(ALICE, 3, Side.ASK, 100)
    assert taker.order is not None
    assert taker.order.deal_money > 0
    assert c.book(2, Side.BID).total == 1


def test_an_added_market_and_its_orders_survive_a_restart(served: Served) -> None:
    c = served.client
    add_doge(c)
    ask = c.put_limit(ALICE, DOGE_USDT, Side.ASK, 1000, 1500).order_id
    c.put_limit(BOB, DOGE_USDT, Side.BID, 300, 1500)
    c.set_market_limit(DOGE_USDT, "price_step", 10)
    state = served.state_hash()
    markets, assets = c.markets(), c.assets()
    served.restart()
    c = served.client
    assert served.state_hash() == state
    assert (c.markets(), c.assets()) == (markets, assets)
    order = c.pending_detail(DOGE_USDT, ask)
    assert order is not None
    assert order.left == 700
    refused(Result.PRICE_NOT_ON_STEP, lambda: c.put_limit(BOB, DOGE_USDT, Side.BID, 100, 1505))
    assert c.put_limit(BOB, DOGE_USDT, Side.BID, 700, 1500).order is not None
    assert c.pending(ALICE, DOGE_USDT).total == 0
    # The catalog goes on growing after a restart.
    assert c.add_market("DOGE_BTC", "DOGE", "BTC", 2, 6).value == 3


def test_the_async_client_adds_them(served: Served) -> None:
    async def main() -> list[str]:
        async with AsyncClient(served.endpoint, timeout_s=SLOW_S) as c:
            assert (await c.add_asset("DOGE", 8, prec_show=4)).value == DOGE
            done = await c.add_market("DOGE_USDT", "DOGE", "USDT", 2, 4, price_step="0.001")
            assert done.value == DOGE_USDT
            with pytest.raises(ApiError) as info:
                await c.add_asset("DOGE", 8)
            assert (info.value.code, info.value.message) == (
                Result.ASSET_EXISTS, "asset 'DOGE' exists",
            )  # fmt: skip
            assert (await c.assets())[DOGE].prec_show == 4
            return [m.name for m in await c.markets()]

    assert asyncio.run(main())[-1] == "DOGE_USDT"
    assert served.client.markets()[DOGE_USDT].price_step == 10  # 0.001 at 4 places


# --------------------------------------------------------------------------- matchctl


def ctl(served: Served, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = matchctl.main([*argv, "--endpoint", served.endpoint, "--timeout", str(SLOW_S)])
    out, err = capsys.readouterr()
    return code, out, err


def test_matchctl_adds_an_asset_and_a_market(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = ctl(served, capsys, "asset", "add", "DOGE", "8", "--prec-show", "2")
    assert (code, err) == (0, "")
    done = json.loads(out)
    assert done.pop("seq") > 0
    assert done == {"asset": "DOGE", "index": DOGE}
    argv = ("market", "add", "DOGE_USDT", "DOGE", "USDT", "2", "4", "--min-amount", "0.5",
            "--max-orders", "200", "--price-step", "0.001", "--max-open-orders", "3")  # fmt: skip
    code, out, err = ctl(served, capsys, *argv)
    assert (code, err) == (0, "")
    assert json.loads(out)["index"] == DOGE_USDT
    code, out, _ = ctl(served, capsys, "markets")
    shown = json.loads(out)[DOGE_USDT]
    assert (shown["name"], shown["min_amount"], shown["max_open_orders"]) == ("DOGE_USDT", 50, 3)
    assert shown["limits"]["price_step"] == "0.001"
    assert served.client.assets()[DOGE].prec_show == 2
    # The daemon's refusals: exit 1 with the code and the catalog's message.
    code, out, err = ctl(served, capsys, *argv)
    assert (code, out) == (1, "")
    failure = json.loads(err)
    assert (failure["op"], failure["code"]) == ("market.add", Result.MARKET_EXISTS)
    assert failure["message"] == "market 'DOGE_USDT' exists"
    code, out, err = ctl(served, capsys, "market", "add", "X_USDT", "X", "USDT", "2", "4")
    assert (code, json.loads(err)["code"]) == (1, Result.UNKNOWN_ASSET)
    code, out, err = ctl(served, capsys, "asset", "add", "PEPE", "19")
    assert (code, json.loads(err)["code"]) == (1, Result.INVALID_ARGUMENT)
    assert json.loads(err)["message"] == "asset PEPE: prec = 19 is outside 0..18"
    # Usage errors: exit 2, nothing sent.
    for usage in (("market", "add", "X_USDT", "X", "USDT"), ("asset", "add", "X", "eight"),
                  ("market", "add", "X_Y", "X", "Y", "2", "2", "--tick", "1")):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            ctl(served, capsys, *usage)
        assert info.value.code == 2
    assert len(served.client.markets()) == 3
