"""Adding assets and markets at run time (docs/engine.md, "Adding assets and
markets"): ADD_ASSET and ADD_MARKET on both engines, and ``core.catalog`` itself.

The test config (tests/support/scenario.py) has BTC, ETH, USDT (indexes 0..2) and
BTC_USDT, ETH_BTC (0, 1); ``ROOM`` gives it room for two more assets and two more
markets of 64 orders and 16 levels a side. The engine tests run the engine under test
beside the reference (``Twin``): after every step both have the same result, events
and state hash.

SOL (prec 9) is the first added asset (index 3); SOL_USDT the first added market
(index 2): lots of 0.001 SOL, prices of 0.01 USDT, fees at 3 places.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from core import commands
from core.catalog import (
    MAX_PAYLOAD_BYTES,
    CatalogRefused,
    canonical_catalog,
    catalog_payload,
    decode_catalog,
    new_asset,
    new_market,
    with_asset,
    with_market,
)
from core.config import LIMIT_NAMES, AssetConfig, MarketConfig
from core.engine import Engine
from core.errors import ConfigError
from core.reference import ReferenceEngine
from core.schema import (
    MAX_SUPPLY_UNITS,
    MarketStatus,
    Result,
    RiskLimit,
    TimeInForce,
    viabtc_code,
)
from core.statehash import CANON_ASSET_DTYPE, CANON_MARKET_DTYPE
from core.views import AssetSummary, MarketSummary
from tests.support.engines import EngineClass
from tests.support.scenario import (
    ALICE,
    ASK,
    BID,
    BOB,
    BTC,
    BTC_USDT,
    ETH,
    ETH_BTC,
    FEE,
    USDT,
    Scenario,
    Step,
    make_config,
)

SOL, DOGE = 3, 4  #: the added assets' indexes
SOL_USDT, DOGE_SOL = 2, 3  #: the added markets' indexes
INVALID = Result.INVALID_ARGUMENT
ROOM = {"max_assets": 5, "max_markets": 4, "added_market_orders": 64, "added_market_levels": 16}

SOL_ASSET = AssetConfig("SOL", 9)
SOL_MARKET = MarketConfig(
    name="SOL_USDT", stock="SOL", money="USDT", stock_prec=3, money_prec=2, fee_prec=3,
    min_amount="0.01", max_orders=64, max_levels=16,
)  # fmt: skip
#: A market of genesis assets that the test config does not have.
ETH_USDT = MarketConfig(
    name="ETH_USDT", stock="ETH", money="USDT", stock_prec=4, money_prec=2, fee_prec=3,
    max_orders=64, max_levels=16,
)  # fmt: skip


class Twin:
    """The engine under test and the reference, fed the same steps.

    Any method of ``Scenario`` called on a twin runs on both; a step must come out the
    same (code, seq, order id, value, events), anything else equal, and the state
    hashes must agree after it. The engine under test's answer is returned.
    """

    def __init__(self, engine_cls: EngineClass, btc_usdt: str = "", **limits: int) -> None:
        limits = {**ROOM, **limits}
        self.ref = Scenario(ReferenceEngine, btc_usdt, **limits)
        self.dut = Scenario(engine_cls, btc_usdt, **limits)

    @property
    def engine(self) -> Any:
        return self.dut.engine

    @property
    def config(self) -> Any:
        return self.dut.config

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def both(*args: Any, **kwargs: Any) -> Any:
            want = getattr(self.ref, name)(*args, **kwargs)
            got = getattr(self.dut, name)(*args, **kwargs)
            if isinstance(got, Step):
                _same_step(got, want)
            elif isinstance(got, list) and got and isinstance(got[0], Step):
                for g, w in zip(got, want, strict=True):
                    _same_step(g, w)
            else:
                assert got == want, name
            assert self.dut.engine.state_hash() == self.ref.engine.state_hash(), name
            return got

        return both


def _same_step(got: Step, want: Step) -> None:
    assert (got.code, got.seq, got.order_id, got.value) == (
        want.code, want.seq, want.order_id, want.value,
    )  # fmt: skip
    assert got.events.tobytes() == want.events.tobytes(), (got.brief(), want.brief())


def with_sol(engine_cls: EngineClass, market: MarketConfig = SOL_MARKET, **limits: int) -> Twin:
    """SOL and ``market`` added; ALICE and BOB hold 100 SOL and 100,000 USDT."""
    t = Twin(engine_cls, **limits)
    assert t.add_asset(SOL_ASSET).value == SOL
    assert t.add_market(market).value == SOL_USDT
    for user in (ALICE, BOB):
        t.deposit(user, SOL, "100")
        t.deposit(user, USDT, "100000")
    return t


def codes(t: Twin, add: Callable[[Any], Step], cases: list[tuple[Any, Result]]) -> None:
    """Each case refused with its code, and nothing changed."""
    before = t.engine.state_hash(), t.engine.counters()
    for raw, code in cases:
        step = add(raw)
        assert (step.code, step.seq) == (code, 0), raw
    assert (t.engine.state_hash(), t.engine.counters()) == before


# --------------------------------------------------------------------------- accepted


def test_an_added_asset_and_market_trade_like_configured_ones(engine_cls: EngineClass) -> None:
    t = Twin(engine_cls)
    t.deposit(ALICE, USDT, "1000")

    asset = t.add_asset(SOL_ASSET)
    assert (asset.code, asset.seq, asset.value) == (Result.OK, 2, SOL)
    assert t.engine.asset_summary(SOL) == AssetSummary(0, 0, 0, 0, 0)
    t.deposit(ALICE, SOL, "10")  # balance.update with the new index
    assert t.balance(ALICE, SOL) == ("10", "0")

    market = t.add_market(SOL_MARKET)
    assert (market.code, market.seq, market.value) == (Result.OK, 4, SOL_USDT)
    assert t.engine.market_status(SOL_USDT) == MarketStatus.OPEN
    assert t.engine.current_market(SOL_USDT) == t.config.markets[SOL_USDT]
    t.deposit(BOB, USDT, "1000")

    ask = t.limit(ALICE, ASK, "4", "150", market=SOL_USDT, maker="0.002")
    assert ask.brief() == [("BAL", ALICE, "SOL", "FREEZE", "-4", "4"), ("PUT", 1)]
    bid = t.limit(BOB, BID, "1.5", "151", market=SOL_USDT, taker="0.001")
    assert bid.brief() == [
        ("DEAL", 2, 1, "150", "1.5"),
        ("BAL", BOB, "USDT", "TRADE", "-225", "0"),
        ("BAL", BOB, "SOL", "TRADE", "1.5", "0"),
        ("BAL", BOB, "SOL", "FEE", "-0.0015", "0"),
        ("BAL", ALICE, "SOL", "TRADE", "0", "-1.5"),
        ("BAL", ALICE, "USDT", "TRADE", "225", "0"),
        ("BAL", ALICE, "USDT", "FEE", "-0.45", "0"),
        ("BAL", FEE, "SOL", "FEE_INCOME", "0.0015", "0"),
        ("BAL", FEE, "USDT", "FEE_INCOME", "0.45", "0"),
        ("UPDATE", 1),
        ("FINISH", 2, "FILLED"),
    ]
    cancel = t.cancel(ALICE, 1, market=SOL_USDT)
    assert cancel.brief() == [
        ("BAL", ALICE, "SOL", "UNFREEZE", "2.5", "-2.5"),
        ("FINISH", 1, "CANCELED"),
    ]
    assert t.engine.market_summary(SOL_USDT) == MarketSummary(0, 0, 0, 0)
    assert t.balance(ALICE, SOL) == ("8.5", "0")
    assert t.balance(ALICE, USDT) == ("1224.55", "0")
    assert t.balance(BOB, SOL) == ("1.4985", "0")
    assert t.balance(FEE, SOL) == ("0.0015", "0")
    # The genesis markets go on as ever.
    t.deposit(BOB, BTC, "1")
    assert t.limit(BOB, ASK, "0.5", "30000").ok
    assert t.limit(ALICE, BID, "0.01", "30000").deals() == [(4, 3, "30000", "0.01")]


def test_added_entries_take_the_next_indexes_and_an_added_asset_can_be_money(
    engine_cls: EngineClass,
) -> None:
    t = with_sol(engine_cls)
    assert t.limit(ALICE, ASK, "1", "100", market=SOL_USDT).ok  # order 1 rests
    seq = t.engine.counters()[0]
    doge = t.add_asset(AssetConfig("DOGE", 8, 2))
    assert (doge.seq, doge.value) == (seq + 1, DOGE)
    table = MarketConfig("DOGE_SOL", "DOGE", "SOL", stock_prec=0, money_prec=4, fee_prec=3)
    market = t.add_market(replace(table, max_orders=8, max_levels=4, min_amount="1"))
    assert (market.seq, market.value) == (seq + 2, DOGE_SOL)
    assert [a.name for a in t.config.assets] == ["BTC", "ETH", "USDT", "SOL", "DOGE"]
    assert [m.name for m in t.config.markets] == ["BTC_USDT", "ETH_BTC", "SOL_USDT", "DOGE_SOL"]
    assert t.config.assets[DOGE].prec_show == 2
    assert t.engine.counters() == (seq + 2, 1, 0)  # no order or deal id taken

    t.deposit(BOB, DOGE, "1000")
    assert t.limit(BOB, ASK, "300", "0.0125", market=DOGE_SOL).order_id == 2
    step = t.limit(ALICE, BID, "100", "0.013", market=DOGE_SOL)
    assert step.deals() == [(3, 2, "0.0125", "100")]
    assert t.balance(ALICE, DOGE) == ("100", "0")
    assert t.balance(BOB, SOL) == ("101.25", "0")
    assert t.cancel_all(BOB, market=DOGE_SOL).value == 1
    assert t.engine.order(SOL_USDT, 1) is not None  # the other added market is untouched


def test_an_index_beyond_the_catalog_is_unknown_until_it_is_added(
    engine_cls: EngineClass,
) -> None:
    t = Twin(engine_cls)
    t.deposit(ALICE, USDT, "100")

    def unknown_then(expected: list[Result], market: int) -> None:
        ts = t.ref.ts_ns  # the time of the last step: these take no time of their own
        cases = [
            commands.put_limit(ALICE, market, BID, 100, 100, 0, 0, ts_ns=ts),
            commands.put_market(ALICE, market, BID, 100, 0, ts_ns=ts),
            commands.cancel(ALICE, market, 1, ts_ns=ts),
            commands.cancel_all(ALICE, market, ts_ns=ts),
            commands.replace(ALICE, market, 1, 100, 100, ts_ns=ts),
            commands.market_status(market, MarketStatus.HALTED, ts_ns=ts),
            commands.market_limit(market, RiskLimit.PRICE_STEP, 2, ts_ns=ts),
            commands.user_limit(ALICE, market, RiskLimit.MAX_NOTIONAL, 1, ts_ns=ts),
            commands.cancel_market(market, ts_ns=ts),
            commands.quote(ALICE, market, [(BID, 100, 100)], ts_ns=ts),
        ]
        assert [t.run1(cmd).code for cmd in cases] == expected

    unknown_then([Result.UNKNOWN_MARKET] * 10, SOL_USDT)
    assert t.update_units(ALICE, SOL, 1, b"deposit", 99).code == Result.UNKNOWN_ASSET
    assert t.engine.asset_summary(SOL) == AssetSummary(0, 0, 0, 0, 0)
    assert t.engine.current_market(SOL_USDT) is None
    assert t.engine.book(SOL_USDT, ASK, 0, 10) == (0, [])
    assert t.engine.balance(ALICE, SOL) == (0, 0)

    assert t.add_asset(SOL_ASSET).ok
    assert t.add_market(SOL_MARKET).ok
    unknown_then(
        [
            Result.OK, Result.NO_ENOUGH_TRADER, Result.OK, Result.OK,
            Result.ORDER_NOT_FOUND, Result.OK, Result.OK, Result.OK, Result.OK,
            Result.MARKET_HALTED,
        ],
        SOL_USDT,
    )  # fmt: skip
    assert t.engine.market_status(SOL_USDT) == MarketStatus.HALTED
    assert t.engine.current_market(SOL_USDT).price_step == 2
    assert t.engine.user_limits(ALICE, SOL_USDT) == (0, 1)
    assert t.update(ALICE, SOL, "1").ok
    # The next indexes are still beyond it.
    unknown_then([Result.UNKNOWN_MARKET] * 10, DOGE_SOL)
    assert t.update_units(ALICE, DOGE, 1, b"deposit", 99).code == Result.UNKNOWN_ASSET


def test_an_added_market_has_the_risk_limits_of_its_table(engine_cls: EngineClass) -> None:
    market = replace(
        SOL_MARKET, price_step="0.05", amount_step="0.01", min_notional="1",
        max_notional="1000", max_open_orders=2, price_band="0.1", max_order_amount="5",
    )  # fmt: skip
    t = with_sol(engine_cls, market)
    now = t.engine.current_market(SOL_USDT)
    limits = [getattr(now, name) for name in LIMIT_NAMES]
    assert limits == [5, 10, 10**8, 10**11, 2, 100_000, 5000]
    cases = [
        # (amount, price): each breaks one limit
        ("1", "150.01", Result.PRICE_NOT_ON_STEP),
        ("1.005", "150", Result.AMOUNT_NOT_ON_STEP),
        ("6", "150", Result.AMOUNT_TOO_LARGE),
        ("0.01", "50", Result.NOTIONAL_TOO_SMALL),
        ("5", "250", Result.NOTIONAL_TOO_LARGE),
    ]
    for amount, price, code in cases:
        assert t.limit(ALICE, ASK, amount, price, market=SOL_USDT).code == code, (amount, price)
    assert t.limit(ALICE, ASK, "1", "150", market=SOL_USDT).ok
    assert t.limit(ALICE, ASK, "1", "155", market=SOL_USDT).ok
    full = t.limit(ALICE, ASK, "1", "160", market=SOL_USDT)
    assert full.code == Result.TOO_MANY_OPEN_ORDERS
    assert t.limit(BOB, BID, "0.5", "150", market=SOL_USDT).deals() == [(3, 1, "150", "0.5")]
    assert t.limit(BOB, BID, "1", "135", market=SOL_USDT).ok  # within 10% of 150
    assert t.limit(BOB, BID, "1", "134.95", market=SOL_USDT).code == Result.PRICE_OUTSIDE_BAND
    # MARKET_LIMIT changes them like any market's.
    step = t.market_limit(RiskLimit.MAX_OPEN_ORDERS, 3, market=SOL_USDT)
    assert step.brief() == [("LIMIT", SOL_USDT, "MAX_OPEN_ORDERS", 2, 3)]
    assert t.limit(ALICE, ASK, "1", "160", market=SOL_USDT).ok
    assert t.engine.current_market(SOL_USDT).max_open_orders == 3
    # SPEC (reading): the catalog (Engine.config) keeps the market's table, as it
    # keeps a configured market's; current_market has the limits it has now.
    assert t.engine.config.markets[SOL_USDT].max_open_orders == 2
    if engine_cls is Engine:  # a state read back (a snapshot) gives the same catalog
        state = {k: v.copy() for k, v in t.engine.state_arrays().items()}
        restored = Engine(t.engine.config.genesis(), state=state)
        assert restored.config == t.engine.config
        assert restored.current_market(SOL_USDT) == t.engine.current_market(SOL_USDT)
        assert restored.state_hash() == t.engine.state_hash()


def test_an_added_market_takes_status_and_user_limits(engine_cls: EngineClass) -> None:
    t = with_sol(engine_cls)
    assert t.limit(ALICE, ASK, "2", "100", market=SOL_USDT).ok
    halted = t.market_status(MarketStatus.HALTED, market=SOL_USDT)
    assert halted.brief() == [("MARKET", SOL_USDT, "OPEN", "HALTED")]
    assert t.limit(BOB, BID, "1", "100", market=SOL_USDT).code == Result.MARKET_HALTED
    assert t.market_status(MarketStatus.OPEN, market=SOL_USDT).ok
    assert t.user_limit(BOB, RiskLimit.MAX_ORDER_AMOUNT, 1000, market=SOL_USDT).ok  # 1 SOL
    step = t.limit(BOB, BID, "1.5", "100", market=SOL_USDT)
    assert step.code == Result.USER_AMOUNT_TOO_LARGE
    assert t.limit(BOB, BID, "1", "100", market=SOL_USDT).deals() == [(2, 1, "100", "1")]
    assert t.market_status(MarketStatus.DELISTED, market=SOL_USDT).ok
    delisting = t.cancel_market(market=SOL_USDT)
    assert delisting.brief(balances=False) == [("FINISH", 1, "CANCELED")]
    assert t.engine.market_summary(SOL_USDT) == MarketSummary(0, 0, 0, 0)


def test_an_added_market_takes_quotes_replaces_and_market_orders(engine_cls: EngineClass) -> None:
    t = with_sol(engine_cls)
    quote = t.quote(ALICE, bids=[("99", "1")], asks=[("101", "2"), ("102", "1")], market=SOL_USDT)
    assert [step.code for step in quote] == [Result.OK] * 4
    assert t.engine.depth(SOL_USDT, 10, 0) == ([(10100, 2000), (10200, 1000)], [(9900, 1000)])
    assert t.limit(BOB, ASK, "1", "105", market=SOL_USDT).order_id == 4
    assert t.replace(BOB, 4, "103", "0.5", market=SOL_USDT).ok
    assert t.book_ids(ASK, market=SOL_USDT) == [2, 3, 4]
    spent = t.market_order(BOB, BID, "303", market=SOL_USDT, taker="0.001")  # USDT
    assert spent.deals() == [(5, 2, "101", "2"), (5, 3, "102", "0.99")]
    assert t.balance(BOB, SOL) == ("102.48701", "0.5")  # + 2.99 less 0.00299 of fees


def test_an_added_market_has_its_own_pool_and_levels(engine_cls: EngineClass) -> None:
    """The whole reserved room: 16 levels a side, 64 orders."""
    t = with_sol(engine_cls)
    for i in range(16):
        assert t.limit(ALICE, ASK, "0.01", f"{200 + i}", market=SOL_USDT).ok
    assert t.limit(ALICE, ASK, "0.01", "300", market=SOL_USDT).code == Result.BOOK_FULL
    for i in range(48):
        assert t.limit(ALICE, ASK, "0.01", f"{200 + i % 16}", market=SOL_USDT).ok
    assert t.limit(ALICE, ASK, "0.01", "200", market=SOL_USDT).code == Result.BOOK_FULL
    ioc = t.limit(BOB, BID, "0.01", "100", market=SOL_USDT, tif=TimeInForce.IOC)
    assert ioc.brief(balances=False) == [("FINISH", 65, "EXPIRED")]  # needs no slot
    # A GTC order needs a slot even if it would fill at once; an IOC takes all 64.
    assert t.limit(BOB, BID, "0.64", "250", market=SOL_USDT).code == Result.BOOK_FULL
    deals = t.limit(BOB, BID, "0.64", "250", market=SOL_USDT, tif=TimeInForce.IOC).deals()
    assert len(deals) == 64
    assert t.engine.market_summary(SOL_USDT) == MarketSummary(0, 0, 0, 0)
    # The genesis market's pool is its own.
    t.deposit(ALICE, BTC, "1")
    assert t.limit(ALICE, ASK, "0.01", "30000").ok


def test_a_smaller_market_than_the_room_is_held_to_its_own_capacities(
    engine_cls: EngineClass,
) -> None:
    t = with_sol(engine_cls, replace(SOL_MARKET, max_orders=3, max_levels=2))
    assert t.limit(ALICE, ASK, "1", "100", market=SOL_USDT).ok
    assert t.limit(ALICE, ASK, "1", "101", market=SOL_USDT).ok
    assert t.limit(ALICE, ASK, "1", "102", market=SOL_USDT).code == Result.BOOK_FULL
    assert t.limit(ALICE, ASK, "1", "101", market=SOL_USDT).ok
    assert t.limit(ALICE, ASK, "1", "100", market=SOL_USDT).code == Result.BOOK_FULL


# --------------------------------------------------------------------------- refused


def test_add_asset_refusals_come_in_order_and_change_nothing(engine_cls: EngineClass) -> None:
    t = Twin(engine_cls)
    t.deposit(ALICE, USDT, "1")
    codes(
        t,
        t.add_asset,
        [
            # the form (the config's rules), also of a name that exists
            (AssetConfig("", 8), INVALID),
            (AssetConfig("_SOL", 8), INVALID),
            (AssetConfig(".SOL", 8), INVALID),
            (AssetConfig("-SOL", 8), INVALID),
            (AssetConfig("SO L", 8), INVALID),
            (AssetConfig("SOL/USD", 8), INVALID),
            (AssetConfig("SÖL", 8), INVALID),
            (AssetConfig("S" * 16, 8), INVALID),  # 16 bytes
            (AssetConfig("SOL", -1), INVALID),
            (AssetConfig("SOL", 19), INVALID),
            (AssetConfig("SOL", 8, 9), INVALID),  # prec_show above prec
            (AssetConfig("SOL", 8, -1), INVALID),
            (AssetConfig("SOL", True), INVALID),  # not an integer
            (AssetConfig("SOL", "8"), INVALID),
            (AssetConfig(7, 8), INVALID),
            (SOL_MARKET, INVALID),  # not an asset's table
            (AssetConfig("BTC", 19), INVALID),
            # then the name
            (AssetConfig("BTC", 10), Result.ASSET_EXISTS),
            (AssetConfig("USDT", 6, 2), Result.ASSET_EXISTS),
        ],
    )
    # The edges are in: 15 bytes, prec 18 shown at 0, and prec 0.
    assert t.add_asset(AssetConfig("S" * 15, 18, 0)).value == 3
    assert t.add_asset(AssetConfig("9.a-_", 0)).value == 4
    # max_assets = 5: the table is full, after the form and the name.
    codes(
        t,
        t.add_asset,
        [
            (SOL_ASSET, Result.ASSET_TABLE_FULL),
            (AssetConfig("SOL", 19), INVALID),
            (AssetConfig("9.a-_", 2), Result.ASSET_EXISTS),
        ],
    )


def test_add_market_refusals_come_in_order_and_change_nothing(engine_cls: EngineClass) -> None:
    t = Twin(engine_cls)
    t.deposit(ALICE, USDT, "1")
    e = ETH_USDT  # ETH prec 10, USDT prec 8; stock_prec 4, money_prec 2, fee_prec 3
    codes(
        t,
        t.add_market,
        [
            # the name's form
            (replace(e, name=""), INVALID),
            (replace(e, name="_ETH"), INVALID),
            (replace(e, name="ETH USDT"), INVALID),
            (replace(e, name="E" * 33), INVALID),
            (replace(e, name="ETH/USDT", stock="SOL"), INVALID),
            # then the name taken, also with the rest wrong
            (replace(e, name="BTC_USDT"), Result.MARKET_EXISTS),
            (replace(e, name="ETH_BTC", stock="SOL", stock_prec=99), Result.MARKET_EXISTS),
            # then the assets, before any other rule
            (replace(e, stock="SOL"), Result.UNKNOWN_ASSET),
            (replace(e, money="SOL"), Result.UNKNOWN_ASSET),
            (replace(e, stock="eth"), Result.UNKNOWN_ASSET),
            (replace(e, money="SOL", max_orders=65, fee_prec=99), Result.UNKNOWN_ASSET),
            # then every other rule of the config
            (replace(e, stock="USDT"), INVALID),
            (replace(e, stock_prec=11), INVALID),
            (replace(e, stock_prec=-1), INVALID),
            (replace(e, money_prec=9), INVALID),
            (replace(e, stock_prec=4, money_prec=5), INVALID),  # 9 places > USDT's 8
            (replace(e, stock_prec=8, money_prec=0), INVALID),  # + fee_prec: 11 > ETH's 10
            (replace(e, stock_prec=2, money_prec=2, fee_prec=7), INVALID),  # 9 > USDT's 8
            (replace(e, fee_prec=10), INVALID),
            (replace(e, min_amount="0.00001"), INVALID),  # finer than a lot
            (replace(e, min_amount="0"), INVALID),
            (replace(e, min_amount="abc"), INVALID),
            (replace(e, max_amount="0.001", min_amount="0.01"), INVALID),
            (replace(e, max_amount="1000000000"), INVALID),  # beyond the supply limit
            (replace(e, max_price="0.001"), INVALID),
            (replace(e, max_price="1000000000000000"), INVALID),
            (replace(e, price_step="0.001"), INVALID),
            (replace(e, max_price="10", price_step="11"), INVALID),
            (replace(e, max_amount="1", amount_step="2"), INVALID),
            (replace(e, min_notional="1", max_notional="0.5"), INVALID),
            (replace(e, min_notional="0.000000001"), INVALID),
            (replace(e, max_open_orders=0), INVALID),
            (replace(e, max_open_orders=65), INVALID),  # above its max_orders
            (replace(e, price_band="1"), INVALID),
            (replace(e, price_band="0.0000001"), INVALID),
            (replace(e, max_amount="1", max_order_amount="2"), INVALID),
            (replace(e, max_orders=0), INVALID),
            (replace(e, max_levels=0), INVALID),
            (replace(e, max_orders="64"), INVALID),  # not an integer
            (replace(e, stock_prec=True), INVALID),
            (replace(e, min_amount=0.01), INVALID),  # not a decimal string
            (SOL_ASSET, INVALID),  # not a market's table
            # and the room reserved for an added market
            (replace(e, max_orders=65), INVALID),
            (replace(e, max_levels=17), INVALID),
            (replace(e, max_orders=1_000_000), INVALID),  # MarketConfig's default
        ],
    )
    # The room's edges are in; then max_markets = 4 is reached.
    assert t.add_market(e).value == 2
    assert t.add_market(replace(e, name="BTC_ETH", stock="BTC", money="ETH")).value == 3
    codes(
        t,
        t.add_market,
        [
            (replace(e, name="X"), Result.MARKET_TABLE_FULL),
            (replace(e, name="X", max_orders=65), INVALID),
            (replace(e, name="X", stock="SOL"), Result.UNKNOWN_ASSET),
            (replace(e, name="ETH_USDT"), Result.MARKET_EXISTS),
            (replace(e, name=""), INVALID),
        ],
    )


def test_the_room_defaults_to_the_configured_catalog(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    assert (s.config.asset_slots, s.config.market_slots) == (3, 2)
    assert s.add_asset(SOL_ASSET).code == Result.ASSET_TABLE_FULL
    assert s.add_market(ETH_USDT).code == Result.MARKET_TABLE_FULL
    assert s.add_market(replace(ETH_USDT, max_orders=0)).code == INVALID
    assert s.engine.counters() == (0, 0, 0)


def test_catalog_refusals_are_viabtc_service_unavailable() -> None:
    assert viabtc_code("matchengine.add_asset", Result.ASSET_TABLE_FULL) == 3
    assert viabtc_code("matchengine.add_market", Result.MARKET_TABLE_FULL) == 3
    assert viabtc_code("matchengine.add_market", Result.MARKET_EXISTS) == 1


# --------------------------------------------------------------------------- state hash


def test_the_state_hash_holds_the_catalog(engine_cls: EngineClass) -> None:
    a, b = Twin(engine_cls), Twin(engine_cls)
    empty = a.engine.state_hash()
    assert a.add_asset(SOL_ASSET).ok
    assert b.add_asset(AssetConfig("SOL", 9, 4)).ok  # differs in prec_show alone
    assert len({empty, a.engine.state_hash(), b.engine.state_hash()}) == 3
    assert a.add_market(SOL_MARKET).ok
    assert b.add_market(SOL_MARKET).ok
    assert a.engine.state_hash() != b.engine.state_hash()
    sections = a.engine.canonical_state()
    assert len(sections) == 13
    assets, markets = canonical_catalog(a.config)
    assert sections[-2].tobytes() == assets.tobytes()
    assert sections[-1].tobytes() == markets.tobytes()
    # A market's risk limits are their own section, not the catalog's.
    assert a.market_limit(RiskLimit.PRICE_STEP, 2, market=SOL_USDT).ok
    assert a.engine.canonical_state()[-1].tobytes() == markets.tobytes()


def test_the_same_adds_give_the_same_state(engine_cls: EngineClass) -> None:
    a, b = Twin(engine_cls), Twin(engine_cls)
    for t in (a, b):
        assert t.add_asset(SOL_ASSET).ok
        assert t.add_market(SOL_MARKET).ok
    assert a.engine.state_hash() == b.engine.state_hash()
    # Refusals leave no trace either.
    assert b.add_asset(SOL_ASSET).code == Result.ASSET_EXISTS
    assert b.add_market(replace(SOL_MARKET, name="X", max_levels=17)).code == INVALID
    assert a.engine.state_hash() == b.engine.state_hash()


# --------------------------------------------------------------------------- core.catalog


def test_a_catalog_command_travels_as_the_json_of_its_table() -> None:
    assert catalog_payload(AssetConfig("SOL", 9, 4)) == (
        b'{"asset":{"name":"SOL","prec":9,"prec_show":4}}'
    )
    assert json.loads(catalog_payload(SOL_MARKET))["market"]["stock"] == "SOL"
    full = replace(
        ETH_USDT, max_amount="100", max_price="5000", price_step="0.05", amount_step="0.01",
        min_notional="1", max_notional="1000", max_open_orders=3, price_band="0.1",
        max_order_amount="5",
    )  # fmt: skip
    for raw in (SOL_ASSET, AssetConfig("SOL", 9, 0), SOL_MARKET, ETH_USDT, full):
        assert decode_catalog(catalog_payload(raw)) == raw
    # Keys in any order, optional ones left out.
    assert decode_catalog(b'{"asset": {"prec": 9, "name": "SOL"}}') == SOL_ASSET


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b'{"asset": "\xff"}', "not JSON"),
        (b"[]", "is {"),
        (b'"asset"', "is {"),
        (b"{}", "is {"),
        (b'{"asset": {"name": "A", "prec": 1}, "market": {}}', "is {"),
        (b'{"coin": {"name": "A", "prec": 1}}', "unknown catalog command 'coin'"),
        (b'{"asset": 5}', "must be a table"),
        (b'{"asset": {"name": "A"}}', "missing setting 'prec'"),
        (b'{"asset": {"name": "A", "prec": 1, "scale": 2}}', "unknown setting 'scale'"),
        (b'{"asset": {"name": "A", "prec": "1"}}', "prec must be int"),
        (b'{"asset": {"name": "A", "prec": true}}', "prec must be int"),
        (b'{"asset": {"name": "A", "prec": 1.0}}', "prec must be int"),
        (b'{"market": {"name": "M", "stock": "A"}}', "missing setting"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), f"at most {MAX_PAYLOAD_BYTES} bytes"),
    ],
)
def test_a_payload_that_is_no_catalog_command_is_refused(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        decode_catalog(payload)


def test_a_payload_may_take_every_byte_allowed() -> None:
    text = catalog_payload(SOL_ASSET)
    assert decode_catalog(text.ljust(MAX_PAYLOAD_BYTES)) == SOL_ASSET


def test_a_payload_is_not_checked_against_a_catalog() -> None:
    raw = decode_catalog(b'{"asset": {"name": "_", "prec": 99}}')
    assert raw == AssetConfig("_", 99)
    with pytest.raises(CatalogRefused) as refused:
        new_asset(make_config(**ROOM), raw)
    assert refused.value.code == INVALID


def test_refusals_name_the_setting() -> None:
    config = make_config(**ROOM)
    cases: list[tuple[Callable[[], object], Result, str]] = [
        (lambda: new_asset(config, AssetConfig("SOL", 9, 10)), INVALID, "prec_show"),
        (lambda: new_asset(config, AssetConfig("BTC", 9)), Result.ASSET_EXISTS, "'BTC' exists"),
        (lambda: new_asset(make_config(), SOL_ASSET), Result.ASSET_TABLE_FULL, "max_assets = 3"),
        (lambda: new_market(config, replace(ETH_USDT, max_orders=65)), INVALID,
         "engine.added_market_orders = 64"),
        (lambda: new_market(config, replace(ETH_USDT, max_levels=17)), INVALID,
         "engine.added_market_levels = 16"),
        (lambda: new_market(config, replace(ETH_USDT, money="SOL")), Result.UNKNOWN_ASSET,
         "'SOL'"),
        (lambda: new_market(config, replace(ETH_USDT, fee_prec=7)), INVALID, "fee_prec"),
        (lambda: new_market(make_config(), ETH_USDT), Result.MARKET_TABLE_FULL,
         "max_markets = 2"),
    ]  # fmt: skip
    for call, code, words in cases:
        with pytest.raises(CatalogRefused) as refused:
            call()
        assert refused.value.code == code
        assert words in refused.value.message
        assert str(refused.value) == refused.value.message


def test_with_asset_and_with_market_append_to_a_new_config() -> None:
    config = make_config(**ROOM)
    grown = with_asset(config, new_asset(config, SOL_ASSET))
    market = new_market(grown, SOL_MARKET)
    assert (market.index, market.stock.index, market.money.index) == (SOL_USDT, SOL, USDT)
    assert (market.stock_scale, market.deal_scale, market.fee_den) == (10**6, 10**3, 1000)
    last = with_market(grown, market)
    assert len(config.assets) == 3  # frozen: the old config is as it was
    assert last.assets[SOL].name == "SOL"
    assert last.assets[SOL].prec_show == 9  # defaults to prec
    assert last.markets[SOL_USDT] is market
    assert (last.asset_slots, last.market_slots) == (5, 4)
    assert (last.added_market_orders, last.added_market_levels) == (64, 16)


def test_the_catalog_sections_list_every_entry_in_index_order() -> None:
    config = make_config(**ROOM)
    assets, markets = canonical_catalog(config)
    assert assets.dtype == CANON_ASSET_DTYPE
    assert markets.dtype == CANON_MARKET_DTYPE
    assert assets.tolist() == [(b"BTC", 10, 10), (b"ETH", 10, 10), (b"USDT", 8, 8)]
    top = MAX_SUPPLY_UNITS // 10**4
    assert markets[BTC_USDT].tolist() == (
        b"BTC_USDT",
        BTC,
        USDT,
        6,
        2,
        4,
        1000,
        top,
        MAX_SUPPLY_UNITS,
        1000,
        100,
    )
    assert markets[ETH_BTC]["name"] == b"ETH_BTC"
    assert (markets[ETH_BTC]["stock"], markets[ETH_BTC]["money"]) == (ETH, BTC)
    grown = with_asset(config, new_asset(config, SOL_ASSET))
    grown = with_market(grown, new_market(grown, SOL_MARKET))
    more_assets, more_markets = canonical_catalog(grown)
    assert more_assets[:3].tobytes() == assets.tobytes()
    assert more_assets[SOL].tolist() == (b"SOL", 9, 9)
    assert more_markets[SOL_USDT].tolist()[:6] == (b"SOL_USDT", SOL, USDT, 3, 2, 3)


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("max_assets = 2", "engine.max_assets = 2 is outside 3..1024"),
        ("max_assets = 1025", "engine.max_assets = 1025 is outside 3..1024"),
        ("max_markets = 1", "engine.max_markets = 1 is outside 2..32767"),
        ("max_markets = 32768", "outside 2..32767"),
        ("added_market_orders = 0", "engine.added_market_orders = 0 is outside"),
        ("added_market_levels = 0", "engine.added_market_levels = 0 is outside"),
    ],
)
def test_the_room_settings_are_checked(engine: str, message: str) -> None:
    key, value = engine.split(" = ")
    with pytest.raises(ConfigError, match=message):
        make_config(**{key: int(value)})


def test_the_room_settings_are_read() -> None:
    config = make_config(**ROOM)
    assert (config.max_assets, config.max_markets) == (5, 4)
    assert (config.asset_slots, config.market_slots) == (5, 4)
    assert np.array_equal(canonical_catalog(config)[0]["prec"], [10, 10, 8])
