"""The markets' pre-trade risk limits (docs/engine.md, "Market risk limits"): price and
amount steps, the largest order, minimum and maximum order value, resting orders per
user. Each refusal has its own code, comes in the documented order and changes nothing;
a replace is held to the first five at its new price and left. Both engines."""

from __future__ import annotations

import pytest

from core.config import ConfigError, parse_config
from core.schema import Result, RiskLimit, TimeInForce
from tests.support.engines import EngineClass
from tests.support.scenario import (
    ALICE,
    ASK,
    BID,
    BOB,
    BTC,
    BTC_USDT,
    CAROL,
    ETH_BTC,
    USDT,
    Scenario,
    config_text,
)

#: BTC_USDT (stock_prec 6, money_prec 2, USDT prec 8): prices in steps of 0.05, amounts
#: in steps of 0.001, values (USDT) from 10 to 1,000.
RISK = """price_step = "0.05"
amount_step = "0.001"
min_notional = "10"
max_notional = "1000"
"""


def funded(engine_cls: EngineClass) -> Scenario:
    s = Scenario(engine_cls, btc_usdt=RISK)
    s.deposit(ALICE, BTC, "10")
    s.deposit(BOB, USDT, "100000")
    return s


def test_each_limit_refuses_with_its_own_code_and_changes_nothing(
    engine_cls: EngineClass,
) -> None:
    s = funded(engine_cls)
    assert s.limit(ALICE, ASK, "0.01", "100.01").code == Result.PRICE_NOT_ON_STEP
    assert s.limit(ALICE, ASK, "0.0105", "100").code == Result.AMOUNT_NOT_ON_STEP
    assert s.limit(ALICE, ASK, "0.009", "1000").code == Result.NOTIONAL_TOO_SMALL  # 9 USDT
    assert s.limit(BOB, BID, "0.011", "100000").code == Result.NOTIONAL_TOO_LARGE  # 1,100
    assert s.engine.counters() == (2, 0, 0)  # the two deposits only
    # The edges are in: 10 and 1,000 USDT, on the steps.
    assert s.limit(ALICE, ASK, "0.01", "1000").ok
    assert s.limit(BOB, BID, "0.01", "100000").ok


def test_the_limits_come_after_the_ranges_and_before_funds(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    poor = 7  # no balance at all
    assert s.limit(poor, ASK, "0.01", "100.01").code == Result.PRICE_NOT_ON_STEP
    assert s.limit(poor, ASK, "0.01", "0").code == Result.INVALID_ARGUMENT
    assert s.limit(poor, ASK, "0.01", "1000").code == Result.BALANCE_NOT_ENOUGH


def test_market_orders_meet_the_steps_and_values_they_can(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "0.5", "1000")  # for the bids to take
    s.limit(BOB, BID, "0.5", "20")  # for the asks to take
    # A market ask's amount is held to the step (its value is not known before it runs).
    assert s.market_order(ALICE, ASK, "0.0105").code == Result.AMOUNT_NOT_ON_STEP
    assert s.market_order(ALICE, ASK, "0.011").ok  # 0.22 USDT at 20: no value limit
    # A market bid's amount is what it spends: its value.
    assert s.market_order(BOB, BID, "9.99").code == Result.NOTIONAL_TOO_SMALL
    assert s.market_order(BOB, BID, "1000.01").code == Result.NOTIONAL_TOO_LARGE
    assert s.market_order(BOB, BID, "10").ok


def test_a_replace_is_held_to_them_at_its_new_price_and_left(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    order = s.limit(ALICE, ASK, "0.5", "1000").order_id
    assert s.replace(ALICE, order, "1000.01", "0.5").code == Result.PRICE_NOT_ON_STEP
    assert s.replace(ALICE, order, "1000", "0.4005").code == Result.AMOUNT_NOT_ON_STEP
    # Shrinking in place keeps priority, but not below the minimum value.
    assert s.replace(ALICE, order, "1000", "0.009").code == Result.NOTIONAL_TOO_SMALL
    assert s.replace(ALICE, order, "2500", "0.5").code == Result.NOTIONAL_TOO_LARGE
    # Before the order is looked up: the limits are the account half's.
    assert s.replace(ALICE, 999, "1000.01", "0.5").code == Result.PRICE_NOT_ON_STEP
    assert s.replace(ALICE, order, "1000", "0.4").ok


def test_max_open_orders_counts_each_users_resting_orders(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls, btc_usdt="max_open_orders = 2\n")
    s.deposit(ALICE, BTC, "10")
    s.deposit(BOB, USDT, "100000")
    first = s.limit(ALICE, ASK, "0.01", "1000").order_id
    s.limit(ALICE, ASK, "0.01", "1001")
    assert s.limit(ALICE, ASK, "0.01", "1002").code == Result.TOO_MANY_OPEN_ORDERS
    # Pessimistic, as BOOK_FULL: even a GTC order that would fill at once.
    s.limit(BOB, BID, "0.01", "900")
    assert s.limit(ALICE, ASK, "0.01", "900").code == Result.TOO_MANY_OPEN_ORDERS
    # Orders that never rest are not counted against it; other users have their own.
    assert s.limit(ALICE, ASK, "0.01", "900", tif=TimeInForce.IOC).ok
    assert s.limit(BOB, BID, "0.01", "901").ok
    # A cancelled order frees its place.
    assert s.cancel(ALICE, first).ok
    assert s.limit(ALICE, ASK, "0.01", "1002").ok
    assert s.limit(ALICE, ASK, "0.01", "1003").code == Result.TOO_MANY_OPEN_ORDERS


def test_the_price_band_holds_limit_prices_near_the_last_price(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls, btc_usdt='price_band = "0.1"\n')  # 10 % either way
    s.deposit(ALICE, BTC, "10")
    s.deposit(BOB, USDT, "100000")
    # No deal yet and a side empty: no reference, no band.
    assert s.limit(ALICE, ASK, "0.1", "1000").ok
    assert s.limit(BOB, BID, "0.01", "960").ok
    # Before the first deal, the mid of the book: 980, the band 882..1078.
    assert s.limit(BOB, BID, "0.01", "881.99").code == Result.PRICE_OUTSIDE_BAND
    assert s.limit(ALICE, ASK, "0.01", "1078.01").code == Result.PRICE_OUTSIDE_BAND
    assert s.limit(BOB, BID, "0.01", "1000").ok  # a deal at 1000: the band is 900..1100
    before = s.engine.state_hash()
    assert s.limit(BOB, BID, "0.01", "1100.01").code == Result.PRICE_OUTSIDE_BAND
    assert s.limit(ALICE, ASK, "0.01", "899.99").code == Result.PRICE_OUTSIDE_BAND
    assert s.engine.state_hash() == before
    # The edges are in, on both sides.
    assert s.limit(ALICE, ASK, "0.01", "1100").ok
    assert s.limit(BOB, BID, "0.01", "900").ok
    # A deal moves the reference: the ask at 1000 fills at 1000, then the one at 1100.
    assert s.limit(BOB, BID, "0.1", "1100").ok  # deals at 1000 and 1100: now 990..1210
    assert s.limit(BOB, BID, "0.01", "1210").ok
    assert s.limit(BOB, BID, "0.01", "1210.01").code == Result.PRICE_OUTSIDE_BAND
    # Market orders have no price: they are not held to it.
    assert s.market_order(BOB, BID, "5000").code != Result.PRICE_OUTSIDE_BAND


def test_the_mid_before_the_first_deal_is_rounded_down_to_a_tick(
    engine_cls: EngineClass,
) -> None:
    s = Scenario(engine_cls, btc_usdt='price_band = "0.000999"\n')  # 0.0999 %
    s.deposit(ALICE, BTC, "10")
    s.deposit(BOB, USDT, "100000")
    s.limit(ALICE, ASK, "0.01", "1000.01")
    s.limit(BOB, BID, "0.01", "1000")
    # The mid of 1000.00 and 1000.01 is 1000.00 (down to a tick), and the band there
    # is floor(100000 ticks x 999 / 10**6) = 99 ticks: 999.01..1000.99.
    assert s.limit(BOB, BID, "0.01", "999.01").ok
    assert s.limit(BOB, BID, "0.01", "999").code == Result.PRICE_OUTSIDE_BAND
    assert s.limit(ALICE, ASK, "0.01", "1000.99").ok
    assert s.limit(ALICE, ASK, "0.01", "1001").code == Result.PRICE_OUTSIDE_BAND
    # A replace is held to it as well, and so is a quote's new level.
    order = s.limit(ALICE, ASK, "0.01", "1000.5").order_id
    assert s.replace(ALICE, order, "1001", "0.01").code == Result.PRICE_OUTSIDE_BAND
    s.deposit(CAROL, BTC, "1")
    assert s.quote(CAROL, [], [("1001", "0.01")])[0].code == Result.PRICE_OUTSIDE_BAND
    assert s.quote(CAROL, [], [("1000.9", "0.01")])[0].ok


def test_a_replace_to_a_new_price_is_held_to_the_band(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls, btc_usdt='price_band = "0.1"\n')
    s.deposit(ALICE, BTC, "10")
    s.deposit(BOB, USDT, "100000")
    s.limit(ALICE, ASK, "0.01", "1000")
    s.limit(BOB, BID, "0.01", "1000")  # the last price: 1000
    order = s.limit(ALICE, ASK, "0.5", "1050").order_id
    assert s.replace(ALICE, order, "1100.01", "0.5").code == Result.PRICE_OUTSIDE_BAND
    assert s.replace(ALICE, 999, "1100.01", "0.5").code == Result.ORDER_NOT_FOUND  # after
    assert s.replace(ALICE, order, "1050", "0.4").ok  # in place: the price is its own
    assert s.replace(ALICE, order, "1100", "0.4").ok


def test_a_limit_changed_at_run_time_holds_from_its_seq_on(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)  # RISK: price_step 5 ticks, min_notional 10 USDT
    assert s.limit(ALICE, ASK, "0.01", "1000.01").code == Result.PRICE_NOT_ON_STEP
    step = s.market_limit(RiskLimit.PRICE_STEP, 1)
    assert step.seq > 0
    assert step.brief() == [("LIMIT", BTC_USDT, "PRICE_STEP", 5, 1)]
    assert s.limit(ALICE, ASK, "0.01", "1000.01").ok
    assert s.engine.current_market(BTC_USDT).price_step == 1
    assert s.engine.config.markets[BTC_USDT].price_step == 5  # the config is as it was
    # A band and an open-order limit, set where the config had none.
    assert s.market_limit(RiskLimit.MAX_OPEN_ORDERS, 1).ok
    assert s.limit(ALICE, ASK, "0.01", "1001").code == Result.TOO_MANY_OPEN_ORDERS
    assert s.market_limit(RiskLimit.MAX_OPEN_ORDERS, 0).ok  # none again
    assert s.limit(BOB, BID, "0.01", "1000.01").ok  # a deal at 1000.01
    assert s.market_limit(RiskLimit.PRICE_BAND, 1000).ok  # 0.1 %: 999.01..1001.01
    assert s.limit(BOB, BID, "0.01", "1001.02").code == Result.PRICE_OUTSIDE_BAND
    # Off by default on the other market, and set there alone.
    assert s.engine.current_market(ETH_BTC).price_band == 0


def test_a_limit_that_cannot_hold_is_refused_and_changes_nothing(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)  # RISK: min_notional 10, max_notional 1,000 USDT
    before = s.engine.state_hash()
    usdt = 10**8
    for limit, value in [
        (RiskLimit.PRICE_STEP, 0),
        (RiskLimit.AMOUNT_STEP, -1),
        (RiskLimit.MIN_NOTIONAL, 1001 * usdt),  # above max_notional
        (RiskLimit.MAX_NOTIONAL, 9 * usdt),  # below min_notional
        (RiskLimit.MAX_OPEN_ORDERS, 1001),  # above max_orders
        (RiskLimit.PRICE_BAND, 10**6),
        (RiskLimit.MAX_ORDER_AMOUNT, -1),
        (RiskLimit.MAX_ORDER_AMOUNT, s.market(BTC_USDT).max_amount + 1),
        (0, 1),
        (8, 1),
    ]:
        assert s.market_limit(limit, value).code == Result.INVALID_ARGUMENT, (limit, value)
    assert s.market_limit(RiskLimit.PRICE_STEP, 1, market=9).code == Result.UNKNOWN_MARKET
    same = s.market_limit(RiskLimit.MIN_NOTIONAL, 10 * usdt)  # as it is
    assert (same.code, same.seq) == (Result.OK, 0)
    assert s.engine.state_hash() == before
    # Both notionals off, then any order of them holds.
    assert s.market_limit(RiskLimit.MAX_NOTIONAL, 0).ok
    assert s.market_limit(RiskLimit.MIN_NOTIONAL, 2000 * usdt).ok


#: RISK with orders of at most 0.5 BTC.
BIGGEST = RISK + 'max_order_amount = "0.5"\n'


def test_max_order_amount_comes_after_the_step_and_before_the_values(
    engine_cls: EngineClass,
) -> None:
    s = Scenario(engine_cls, btc_usdt=BIGGEST)
    s.deposit(ALICE, BTC, "10")
    s.deposit(BOB, USDT, "100000")
    assert s.limit(ALICE, ASK, "0.500001", "100").code == Result.AMOUNT_NOT_ON_STEP
    assert s.limit(ALICE, ASK, "0.501", "100").code == Result.AMOUNT_TOO_LARGE  # 50.1 USDT
    assert s.limit(ALICE, ASK, "0.6", "0.05").code == Result.AMOUNT_TOO_LARGE  # 0.03 USDT
    assert s.limit(BOB, BID, "0.6", "5000").code == Result.AMOUNT_TOO_LARGE  # 3,000 USDT
    assert s.limit(ALICE, ASK, "0.6", "100.01").code == Result.PRICE_NOT_ON_STEP
    assert s.limit(7, ASK, "0.6", "100").code == Result.AMOUNT_TOO_LARGE  # before funds
    assert s.engine.counters() == (2, 0, 0)
    # The edge is in, for every time in force.
    assert s.limit(ALICE, ASK, "0.5", "100").ok
    assert s.limit(BOB, BID, "0.5", "100", tif=TimeInForce.IOC).ok  # fills the ask
    assert s.limit(BOB, BID, "0.501", "100", tif=TimeInForce.FOK).code == (Result.AMOUNT_TOO_LARGE)


def test_max_order_amount_holds_market_asks_not_the_money_of_market_bids(
    engine_cls: EngineClass,
) -> None:
    s = Scenario(engine_cls, btc_usdt=BIGGEST)
    s.deposit(ALICE, BTC, "10")
    s.deposit(BOB, USDT, "100000")
    s.limit(ALICE, ASK, "0.5", "1000")  # for the bids to take
    s.limit(BOB, BID, "0.5", "900")  # for the asks to take
    assert s.market_order(ALICE, ASK, "0.5005").code == Result.AMOUNT_NOT_ON_STEP  # first
    assert s.market_order(ALICE, ASK, "0.501").code == Result.AMOUNT_TOO_LARGE
    assert s.market_order(ALICE, ASK, "0.5").ok
    # A bid's amount is money: 600 USDT is far more units than 0.5 BTC is lots.
    assert s.market_order(BOB, BID, "600").ok


def test_max_order_amount_holds_a_replace_and_a_quote_level(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "10")
    s.deposit(ALICE, USDT, "100000")
    big = s.limit(ALICE, ASK, "2", "1000").order_id
    limit = s.market_limit(RiskLimit.MAX_ORDER_AMOUNT, s.lots("1"))
    assert limit.brief() == [("LIMIT", BTC_USDT, "MAX_ORDER_AMOUNT", 0, 10**6)]
    current = s.engine.current_market(BTC_USDT)
    assert current is not None
    assert current.max_order_amount == 10**6
    # The order above it rests on (the limit is pre-trade), but any replace of it,
    # a shrink in place too, is held to it; before the order is looked up.
    assert s.engine.order(BTC_USDT, big) is not None
    assert s.replace(ALICE, big, "1000", "1.5").code == Result.AMOUNT_TOO_LARGE
    assert s.replace(ALICE, 999, "1000", "1.5").code == Result.AMOUNT_TOO_LARGE
    assert s.replace(ALICE, big, "1000", "1").ok
    assert s.replace(ALICE, big, "1001", "1.000001").code == Result.AMOUNT_TOO_LARGE
    # A quote is refused whole for one level above it.
    steps = s.quote(ALICE, [("900", "1"), ("899", "1.1")], [("1100", "0.2")])
    assert [step.code for step in steps] == [Result.AMOUNT_TOO_LARGE] * 4
    assert all(step.seq == 0 for step in steps)
    assert s.quote(ALICE, [("900", "1"), ("899", "1")], [("1100", "0.2")])[0].ok
    # None again: any amount up to max_amount.
    assert s.market_limit(RiskLimit.MAX_ORDER_AMOUNT, 0).ok
    assert s.replace(ALICE, big, "1000", "3").ok
    top = s.market(BTC_USDT).max_amount
    assert s.market_limit(RiskLimit.MAX_ORDER_AMOUNT, top).ok
    same = s.market_limit(RiskLimit.MAX_ORDER_AMOUNT, top)
    assert (same.code, same.seq) == (Result.OK, 0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('price_step = "0.001"', "price_step '0.001' has more decimal places"),
        ('price_step = "0"', "price_step '0' must be positive"),
        ('amount_step = "0.0000001"', "amount_step '0.0000001' has more decimal places"),
        ('min_notional = "0.000000001"', "min_notional '0.000000001' has more decimal places"),
        ('min_notional = "10"\nmax_notional = "5"', "min_notional 10 is above max_notional 5"),
        ('max_notional = "1e20"', "max_notional is above the supply limit"),
        ('price_step = "1e20"', "price_step 1e20 is above max_price"),
        ("max_open_orders = 0", "max_open_orders = 0 is outside 1..1000"),
        ('price_band = "1"', "price_band 1 must be below 1"),
        ('price_band = "0"', "price_band '0' must be positive"),
        ('price_band = "0.0000001"', "price_band '0.0000001' has more decimal places"),
        ('max_order_amount = "0"', "max_order_amount '0' must be positive"),
        (
            'max_order_amount = "0.0000001"',
            "max_order_amount '0.0000001' has more decimal places",
        ),
        ('max_order_amount = "1e20"', "max_order_amount 1e20 is above max_amount"),
    ],
)
def test_limits_that_cannot_hold_are_refused_at_load(lines: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_text(btc_usdt=lines + "\n"))
