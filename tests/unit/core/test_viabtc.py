"""ViaBTC's matchengine methods through core.viabtc.Exchange: strings in, ViaBTC shapes out."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import count

import pytest

from core.arguments import ArgumentError
from core.config import AssetConfig, MarketConfig, parse_config
from core.engine import Engine
from core.schema import Result
from core.viabtc import Exchange
from tests.support.engines import IMPLEMENTATIONS, EngineClass

CONFIG = """
[engine]
fee_user = 0
max_users = 100
max_update_keys = 100

[[assets]]
name = "BTC"
prec = 10
prec_show = 8

[[assets]]
name = "USDT"
prec = 8

[[markets]]
name = "BTC_USDT"
stock = "BTC"
money = "USDT"
stock_prec = 6
money_prec = 2
fee_prec = 4
min_amount = "0.001"
max_orders = 100
max_levels = 100
"""


@pytest.fixture
def ex() -> Iterator[Exchange]:
    ticks = count(1_700_000_000_000_000_000, 1_000)
    return Exchange(Engine(parse_config(CONFIG)), lambda: next(ticks))


def fund(ex: Exchange, user: int, asset: str, amount: str) -> None:
    assert ex.balance_update(user, asset, "deposit", user, amount, {}).ok


def test_worked_fee_example(ex: Exchange) -> None:
    """shared/reference/viabtc-api.md §5.3: maker bids 1 @ 8000, taker sells 1 @ 7900."""
    fund(ex, 1, "USDT", "8000")
    fund(ex, 2, "BTC", "1")
    bid = ex.put_limit(1, "BTC_USDT", 2, "1", "8000", "0.002", "0.001", "web")
    ask = ex.put_limit(2, "BTC_USDT", 1, "1", "7900", "0.002", "0.001", "api")
    assert bid.ok
    assert ask.ok
    assert ask.result["deal_money"] == "8000"  # at the maker's price
    assert ask.result["deal_fee"] == "16"  # seller pays 0.002 in money
    assert ask.result["left"] == "0"
    assert ex.balance_query(2).result["USDT"] == {"available": "7984", "freeze": "0"}
    assert ex.balance_query(1).result["BTC"] == {"available": "0.999", "freeze": "0"}
    assert ex.engine.balance(0, 1) == (16 * 10**8, 0)  # the fee account got both fees
    assert ex.engine.balance(0, 0) == (10**7, 0)
    assert ex.engine.check_invariants() == []


def test_order_object_shape(ex: Exchange) -> None:
    fund(ex, 1, "USDT", "100")
    r = ex.put_limit(1, "BTC_USDT", 2, "0.5", "100.10", "0.002", "0.001", "web")
    assert set(r.result) == {
        "id", "market", "source", "type", "side", "user", "ctime", "mtime", "price",
        "amount", "taker_fee", "maker_fee", "left", "deal_stock", "deal_money", "deal_fee",
    }  # fmt: skip
    assert r.result["price"] == "100.1"
    assert r.result["amount"] == "0.5"
    assert r.result["deal_stock"] == "0"
    assert isinstance(r.result["ctime"], float)
    assert ex.balance_query(1).result["USDT"] == {"available": "49.95", "freeze": "50.05"}


def test_limit_error_precedence_balance_before_amount(ex: Exchange) -> None:
    r = ex.put_limit(1, "BTC_USDT", 1, "0.0001", "100", "0", "0", "")
    assert (r.code, r.message) == (10, "balance not enough")
    fund(ex, 1, "BTC", "1")
    r = ex.put_limit(1, "BTC_USDT", 1, "0.0001", "100", "0", "0", "")
    assert (r.code, r.message) == (11, "amount too small")


def test_market_error_precedence_balance_trader_amount(ex: Exchange) -> None:
    assert ex.put_market(1, "BTC_USDT", 2, "10", "0", "").code == 10
    fund(ex, 1, "USDT", "1000")
    assert ex.put_market(1, "BTC_USDT", 2, "10", "0", "").code == 12
    fund(ex, 2, "BTC", "1")
    assert ex.put_limit(2, "BTC_USDT", 1, "1", "100", "0", "0", "").ok
    # a market buy must spend at least best ask x min_amount = 100 x 0.001 = 0.1 USDT
    assert ex.put_market(1, "BTC_USDT", 2, "0.09", "0", "").code == 11
    r = ex.put_market(1, "BTC_USDT", 2, "50.0000019", "0", "")  # cut to stock_prec 6
    assert r.ok
    assert r.result["amount"] == "50.000001"
    assert r.result["deal_stock"] == "0.5"
    assert r.result["left"] == "0.000001"  # money left, below one lot's price
    assert r.result["price"] == "0"


def test_invalid_arguments_change_nothing(ex: Exchange) -> None:
    fund(ex, 1, "USDT", "1000")
    before = ex.engine.state_hash()
    bad = [
        ex.put_limit(1, "BTC_USDT", 2, 1, "100", "0", "0", ""),  # number, not string
        ex.put_limit(1, "NOPE", 2, "1", "100", "0", "0", ""),
        ex.put_limit(1, "BTC_USDT", 3, "1", "100", "0", "0", ""),
        ex.put_limit(1, "BTC_USDT", 2, "1", "0.001", "0", "0", ""),  # price truncates to 0
        ex.put_limit(1, "BTC_USDT", 2, "1", "100", "1", "0", ""),  # rate must be < 1
        ex.put_limit(1, "BTC_USDT", 2, "1", "100", "0", "0", "x" * 31),
        ex.put_limit(2**32, "BTC_USDT", 2, "1", "100", "0", "0", ""),  # no uint32 wrap
        ex.put_limit(True, "BTC_USDT", 2, "1", "100", "0", "0", ""),
        ex.put_limit(1, "BTC_USDT", 2, "NaN", "100", "0", "0", ""),
        ex.balance_update(1, "USDT", "deposit", 9, "1", None),  # detail must be an object
        ex.balance_update(1, "DOGE", "deposit", 9, "1", {}),
        ex.cancel(1, "BTC_USDT", -1),
    ]
    assert all(r.code == 1 for r in bad), [r for r in bad if r.code != 1]
    assert all(r.message.startswith("invalid argument") for r in bad)
    assert ex.engine.state_hash() == before


def test_a_retried_put_is_refused_with_the_order_placed_first(ex: Exchange) -> None:
    fund(ex, 1, "USDT", "1000")
    first = ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", 7)
    assert first.ok
    before = ex.engine.state_hash()
    again = ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", 7)
    market = ex.put_market(1, "BTC_USDT", 2, "5", "0", "", 7)
    for r in (again, market):
        assert r.error() == {
            "code": 13,
            "message": "repeat order: the client id names an order already placed",
            "order_id": first.result["id"],
        }
        assert r.result is None
    assert ex.engine.state_hash() == before  # refused: nothing changed, no sequence used
    assert ex.order_pending(1, "BTC_USDT", 0, 10).result["total"] == 1
    assert ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", 8).ok  # another id
    fund(ex, 2, "USDT", "1000")
    assert ex.put_limit(2, "BTC_USDT", 2, "1", "10", "0", "0", "", 7).ok  # another user's


def test_a_refused_put_leaves_its_client_id_free(ex: Exchange) -> None:
    poor = ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", 7)
    assert (poor.code, poor.error()) == (10, {"code": 10, "message": "balance not enough"})
    fund(ex, 1, "USDT", "1000")
    assert ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", 7).ok


@pytest.mark.parametrize(
    ("client_id", "message"),
    [
        (-1, "invalid argument: client_id must be in 0..9223372036854775807"),
        (2**63, "invalid argument: client_id must be in 0..9223372036854775807"),
        (True, "invalid argument: client_id must be an integer"),
        (7.0, "invalid argument: client_id must be an integer"),
        ("7", "invalid argument: client_id must be an integer"),
        (None, "invalid argument: client_id must be an integer"),
    ],
)
def test_a_bad_client_id_is_refused_precisely(
    ex: Exchange, client_id: object, message: str
) -> None:
    fund(ex, 1, "USDT", "1000")
    before = ex.engine.state_hash()
    limit = ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", client_id)
    market = ex.put_market(1, "BTC_USDT", 2, "5", "0", "", client_id)
    assert (limit.code, limit.message) == (market.code, market.message) == (1, message)
    assert limit.error() == {"code": 1, "message": message}
    assert ex.engine.state_hash() == before


def test_the_codec_puts_the_client_id_in_order_id_and_counts_params(ex: Exchange) -> None:
    codec = ex.codec
    limit = (1, "BTC_USDT", 2, "1", "10", "0", "0", "")
    market = (1, "BTC_USDT", 2, "5", "0", "")
    assert codec.put_limit(limit, 0)["order_id"][0] == 0
    assert codec.put_limit((*limit, 2**63 - 1), 0)["order_id"][0] == 2**63 - 1
    assert codec.put_market(market, 0)["order_id"][0] == 0
    assert codec.put_market((*market, 0), 0)["order_id"][0] == 0
    assert codec.put_market((*market, 9), 0)["order_id"][0] == 9
    with pytest.raises(ArgumentError, match=r"^order.put_limit takes 8 or 9 params, not 10$"):
        codec.put_limit((*limit, 1, 2), 0)
    with pytest.raises(ArgumentError, match=r"^order.put_market takes 6 or 7 params, not 8$"):
        codec.put_market((*market, 1, 2), 0)


def test_balance_update_is_idempotent_forever(ex: Exchange) -> None:
    assert ex.balance_update(1, "USDT", "deposit", 7, "5", {}).result == {"status": "success"}
    again = ex.balance_update(1, "USDT", "deposit", 7, "5", {})
    assert (again.code, again.message) == (10, "repeat update")
    short = ex.balance_update(1, "USDT", "withdraw", 8, "-6", {})
    assert (short.code, short.message) == (11, "balance not enough")
    assert ex.balance_update(1, "USDT", "withdraw", 8, "-5", {}).ok  # failed key can be retried
    assert ex.balance_query(1, "USDT").result == {"USDT": {"available": "0", "freeze": "0"}}


def test_change_is_cut_to_prec_show(ex: Exchange) -> None:
    assert ex.balance_update(1, "BTC", "deposit", 1, "0.123456789", {}).ok
    assert ex.engine.balance(1, 0) == (1_234_567_800, 0)


def test_queries(ex: Exchange) -> None:
    fund(ex, 1, "USDT", "1000")
    fund(ex, 2, "BTC", "10")
    for price in ("10.01", "10.04", "10.05"):
        assert ex.put_limit(1, "BTC_USDT", 2, "1", price, "0", "0", "").ok
    for price in ("11.01", "11.06"):
        assert ex.put_limit(2, "BTC_USDT", 1, "2", price, "0", "0", "").ok
    depth = ex.order_depth("BTC_USDT", 10, "0.1").result
    assert depth == {
        "asks": [["11.1", "4"]],
        "bids": [["10", "3"]],
    }
    pending = ex.order_pending(1, "BTC_USDT", 0, 10).result
    assert [o["id"] for o in pending["records"]] == [3, 2, 1]
    assert pending["total"] == 3
    book = ex.order_book("BTC_USDT", 2, 1, 1).result
    assert [o["price"] for o in book["orders"]] == ["10.04"]
    assert ex.order_pending_detail("BTC_USDT", 4).result["price"] == "11.01"
    assert ex.order_pending_detail("BTC_USDT", 99).result is None
    summary = ex.market_summary().result
    assert summary == [
        {"name": "BTC_USDT", "ask_count": 2, "ask_amount": "4", "bid_count": 3, "bid_amount": "3"}
    ]
    assets = {a["name"]: a for a in ex.asset_summary().result}
    assert Decimal(assets["USDT"]["freeze_balance"]) == Decimal("30.1")
    assert ex.asset_list().result == [{"name": "BTC", "prec": 8}, {"name": "USDT", "prec": 8}]
    assert ex.market_list().result[0]["min_amount"] == "0.001"
    assert ex.order_book("BTC_USDT", 1, 0, 102).code == 1  # limit <= 101


def test_cancel_replace_cancel_all(ex: Exchange) -> None:
    fund(ex, 1, "USDT", "1000")
    a = ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "").result["id"]
    b = ex.put_limit(1, "BTC_USDT", 2, "1", "11", "0", "0", "").result["id"]
    assert ex.cancel(2, "BTC_USDT", a).code == 11  # user not match
    assert ex.cancel(1, "BTC_USDT", 999).code == 10  # order not found
    moved = ex.replace(1, "BTC_USDT", a, "12", "2")
    assert moved.ok
    assert moved.result["price"] == "12"
    assert moved.result["amount"] == "2"
    assert ex.balance_query(1, "USDT").result["USDT"]["freeze"] == "35"
    assert ex.cancel(1, "BTC_USDT", b).result["left"] == "1"
    assert ex.cancel_all(1, "BTC_USDT").result == {"count": 1}
    assert ex.balance_query(1, "USDT").result["USDT"] == {"available": "1000", "freeze": "0"}


def test_time_in_force_post_only_and_stp(ex: Exchange) -> None:
    fund(ex, 1, "USDT", "1000")
    fund(ex, 1, "BTC", "10")
    assert ex.put_limit(1, "BTC_USDT", 1, "1", "10", "0", "0", "").ok
    post = ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", post_only=True)
    assert (post.code, post.message) == (1, "post-only order would take liquidity")
    fok = ex.put_limit(1, "BTC_USDT", 2, "2", "10", "0", "0", "", tif="FOK")
    assert fok.code == 1
    assert "fill-or-kill" in fok.message
    stp = ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", stp="cancel_taker")
    assert stp.ok
    assert stp.result["deal_stock"] == "0"
    ioc = ex.put_limit(1, "BTC_USDT", 2, "2", "10", "0", "0", "", tif="IOC")
    assert ioc.ok
    assert ioc.result["deal_stock"] == "1"
    assert ioc.result["left"] == "1"
    assert ex.put_limit(1, "BTC_USDT", 2, "1", "10", "0", "0", "", tif="DAY").code == 1
    assert ex.engine.check_invariants() == []


@pytest.mark.parametrize("engine_class", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_assets_and_markets_added_at_run_time(engine_class: EngineClass) -> None:
    """The Exchange follows the engine's catalog (``EngineAPI.config``): what was added
    after it was made is known at once."""
    room = "max_assets = 3\nmax_markets = 2\nadded_market_orders = 10\nadded_market_levels = 10\n"
    engine = engine_class(parse_config(CONFIG.replace("[engine]\n", "[engine]\n" + room)))
    ticks = count(1_700_000_000_000_000_000, 1_000)
    ex = Exchange(engine, lambda: next(ticks))
    assert not ex.put_limit(1, "SOL_USDT", 1, "1", "20", "0", "0", "web").ok
    assert int(engine.add_asset(AssetConfig("SOL", 8))[0][0]["code"]) == Result.OK
    sol_usdt = MarketConfig("SOL_USDT", "SOL", "USDT", 4, 3, max_orders=10, max_levels=10)
    assert int(engine.add_market(sol_usdt)[0][0]["code"]) == Result.OK
    assert ex.config is engine.config
    fund(ex, 1, "SOL", "2")
    ask = ex.put_limit(1, "SOL_USDT", 1, "1.5", "20.25", "0", "0", "web")
    assert ask.ok
    assert (ask.result["market"], ask.result["price"]) == ("SOL_USDT", "20.25")
    assert ex.order_depth("SOL_USDT", 10, "0").result == {"asks": [["20.25", "1.5"]], "bids": []}
    assert [m["name"] for m in ex.market_list().result] == ["BTC_USDT", "SOL_USDT"]
    assert ex.asset_list().result[-1] == {"name": "SOL", "prec": 8}
    assert ex.balance_query(1, "SOL").result == {"SOL": {"available": "0.5", "freeze": "1.5"}}
