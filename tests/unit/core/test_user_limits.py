"""Users' own risk limits (docs/engine.md, "User risk limits"): USER_LIMIT sets a
user's max_order_amount (lots) or max_notional (money units) in one market; orders of
that user there are held to them right after the market's risk limits, amount before
value, wherever those are (PUT_LIMIT, PUT_MARKET, REPLACE, each QUOTE level). They
only tighten. Both engines.

BTC_USDT in the test config: lots of 0.000001 BTC, prices of 0.01 USDT, USDT units of
10**-8; an order's value is price x amount USDT.
"""

from __future__ import annotations

import pytest

from core import commands
from core.schema import (
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    EventKind,
    Result,
    RiskLimit,
    TimeInForce,
)
from tests.support.engines import EngineClass
from tests.support.scenario import (
    ALICE,
    ASK,
    BID,
    BOB,
    BTC,
    BTC_USDT,
    CAROL,
    DAVE,
    ETH,
    ETH_BTC,
    FEE,
    USDT,
    Scenario,
    Step,
)

AMOUNT, NOTIONAL = RiskLimit.MAX_ORDER_AMOUNT, RiskLimit.MAX_NOTIONAL
USER_AMOUNT, USER_NOTIONAL = Result.USER_AMOUNT_TOO_LARGE, Result.USER_NOTIONAL_TOO_LARGE


def funded(engine_cls: EngineClass, btc_usdt: str = "", **limits: int) -> Scenario:
    s = Scenario(engine_cls, btc_usdt, **limits)
    for user in (ALICE, BOB, CAROL):
        s.deposit(user, BTC, "10")
        s.deposit(user, ETH, "100")
        s.deposit(user, USDT, "100000")
    return s


def usdt(s: Scenario, text: str) -> int:
    """``text`` USDT in units: the unit of BTC_USDT's max_notional."""
    return s.units(text, USDT)


def limited(engine_cls: EngineClass, btc_usdt: str = "", **limits: int) -> Scenario:
    """Funded users; ALICE may place orders of at most 0.5 BTC and 1,000 USDT."""
    s = funded(engine_cls, btc_usdt, **limits)
    assert s.user_limit(ALICE, AMOUNT, s.lots("0.5")).ok
    assert s.user_limit(ALICE, NOTIONAL, usdt(s, "1000")).ok
    return s


def refused(steps: list[Step], code: Result) -> None:
    """Every record of a quote has ``code``, no seq and no event."""
    assert [step.code for step in steps] == [code] * len(steps)
    assert all(step.seq == 0 and len(step.events) == 0 for step in steps)


# --------------------------------------------------------------------------- USER_LIMIT


def test_a_user_limit_is_accepted_with_a_seq_and_one_event(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    lots = s.lots("0.5", ETH_BTC)
    step = s.user_limit(ALICE, AMOUNT, lots, market=ETH_BTC)
    assert step.ok
    assert step.seq > 0
    assert step.event(0) == {
        "seq": step.seq, "ts_ns": s.ts_ns, "kind": EventKind.USER_LIMIT, "user": ALICE,
        "market": ETH_BTC, "reason": AMOUNT, "left": lots,
    }  # fmt: skip
    assert len(step.events) == 1
    # amount: the value before; left: the value after.
    changed = s.user_limit(ALICE, AMOUNT, 7000, market=ETH_BTC)
    assert changed.brief() == [("ULIMIT", ALICE, ETH_BTC, "MAX_ORDER_AMOUNT", lots, 7000)]
    value = s.user_limit(ALICE, NOTIONAL, 10**8, market=ETH_BTC)
    assert value.brief() == [("ULIMIT", ALICE, ETH_BTC, "MAX_NOTIONAL", 0, 10**8)]
    assert s.engine.user_limits(ALICE, ETH_BTC) == (7000, 10**8)
    # Per user and market.
    assert s.engine.user_limits(ALICE, BTC_USDT) == (0, 0)
    assert s.engine.user_limits(BOB, ETH_BTC) == (0, 0)
    # Back to none: an event too.
    off = s.user_limit(ALICE, AMOUNT, 0, market=ETH_BTC)
    assert off.brief() == [("ULIMIT", ALICE, ETH_BTC, "MAX_ORDER_AMOUNT", 7000, 0)]
    assert s.engine.user_limits(ALICE, ETH_BTC) == (0, 10**8)


def test_the_value_a_limit_has_is_ok_without_a_seq(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    for limit in (AMOUNT, NOTIONAL):
        none = s.user_limit(ALICE, limit, 0)  # no limits yet: both are 0
        assert (none.code, none.seq, len(none.events)) == (Result.OK, 0, 0)
    assert s.user_limit(ALICE, NOTIONAL, 5).ok
    same = s.user_limit(ALICE, NOTIONAL, 5)
    assert (same.code, same.seq, len(same.events)) == (Result.OK, 0, 0)
    assert s.user_limit(ALICE, AMOUNT, 0).seq == 0  # the other one is still none


def test_user_limit_refusals_come_in_order_and_change_nothing(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    before = s.engine.state_hash()
    top = s.market(BTC_USDT).max_amount
    cases = [
        # user, market, limit, value: the user first, then the market, the fee account
        (-1, BTC_USDT, AMOUNT, 1, Result.INVALID_ARGUMENT),
        (MAX_USER_ID + 1, 9, 0, -1, Result.INVALID_ARGUMENT),
        (ALICE, 2, AMOUNT, 1, Result.UNKNOWN_MARKET),
        (ALICE, -1, 0, -1, Result.UNKNOWN_MARKET),
        (FEE, 9, 0, -1, Result.UNKNOWN_MARKET),
        (FEE, BTC_USDT, 0, -1, Result.FEE_ACCOUNT_CANNOT_TRADE),
        (FEE, BTC_USDT, AMOUNT, 1, Result.FEE_ACCOUNT_CANNOT_TRADE),
        # only the two limits a user may have
        *[(ALICE, BTC_USDT, limit, 1, Result.INVALID_ARGUMENT) for limit in (0, 1, 2, 3, 5, 6)],
        (ALICE, BTC_USDT, 8, 1, Result.INVALID_ARGUMENT),
        (ALICE, BTC_USDT, -1, 1, Result.INVALID_ARGUMENT),
        # values outside 0..max_amount (lots) and 0..2^62 (money units)
        (ALICE, BTC_USDT, AMOUNT, -1, Result.INVALID_ARGUMENT),
        (ALICE, BTC_USDT, AMOUNT, top + 1, Result.INVALID_ARGUMENT),
        (ALICE, ETH_BTC, AMOUNT, s.market(ETH_BTC).max_amount + 1, Result.INVALID_ARGUMENT),
        (ALICE, BTC_USDT, NOTIONAL, -1, Result.INVALID_ARGUMENT),
        (ALICE, BTC_USDT, NOTIONAL, MAX_SUPPLY_UNITS + 1, Result.INVALID_ARGUMENT),
    ]
    for user, market, limit, value, code in cases:
        step = s.run1(commands.user_limit(user, market, limit, value, ts_ns=s.next_ts()))
        assert (step.code, step.seq) == (code, 0), (user, market, limit, value)
    assert s.engine.state_hash() == before
    # The edges are in; the user needs no account.
    assert s.user_limit(ALICE, AMOUNT, top).ok
    assert s.user_limit(ALICE, NOTIONAL, MAX_SUPPLY_UNITS).ok
    assert s.user_limit(MAX_USER_ID, AMOUNT, 1).ok
    assert s.engine.user_limits(MAX_USER_ID, BTC_USDT) == (1, 0)


def test_a_user_limit_makes_no_account(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls, max_users=3)  # the fee account and two more
    s.deposit(ALICE, USDT, "1")
    assert s.user_limit(CAROL, NOTIONAL, 100).ok
    assert s.engine.balance(CAROL, USDT) == (0, 0)
    s.deposit(BOB, USDT, "1")  # the last account: CAROL's limit took none
    assert s.update(CAROL, USDT, "1").code == Result.USER_TABLE_FULL
    assert s.engine.user_limits(CAROL, BTC_USDT) == (0, 100)


def test_the_table_holds_max_user_limits_pairs_for_good(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, max_user_limits=2)
    assert s.user_limit(ALICE, AMOUNT, 100).ok
    assert s.user_limit(ALICE, NOTIONAL, 100).ok  # the same pair
    assert s.user_limit(ALICE, AMOUNT, 100, market=ETH_BTC).ok  # a second pair: full
    full = s.user_limit(BOB, AMOUNT, 100)
    assert (full.code, full.seq) == (Result.USER_LIMIT_TABLE_FULL, 0)
    assert s.user_limit(BOB, NOTIONAL, 1, market=ETH_BTC).code == Result.USER_LIMIT_TABLE_FULL
    # The checks before it still answer first; setting none takes no place.
    assert s.user_limit(BOB, 5, 100).code == Result.INVALID_ARGUMENT
    assert s.user_limit(BOB, AMOUNT, -1).code == Result.INVALID_ARGUMENT
    assert s.user_limit(FEE, AMOUNT, 100).code == Result.FEE_ACCOUNT_CANNOT_TRADE
    assert (s.user_limit(BOB, AMOUNT, 0).code, s.engine.counters()[0]) == (Result.OK, 9 + 3)
    # A pair stays once set, also with both limits back to none.
    assert s.user_limit(ALICE, AMOUNT, 0).ok
    assert s.user_limit(ALICE, NOTIONAL, 0).ok
    assert s.engine.user_limits(ALICE, BTC_USDT) == (0, 0)
    assert s.user_limit(BOB, AMOUNT, 100).code == Result.USER_LIMIT_TABLE_FULL
    # The pairs in it may change as they like.
    assert s.user_limit(ALICE, NOTIONAL, 7).ok
    assert s.user_limit(ALICE, NOTIONAL, 8, market=ETH_BTC).ok
    assert s.engine.user_limits(ALICE, ETH_BTC) == (100, 8)
    # Orders of users without limits go on as ever.
    assert s.limit(BOB, ASK, "1", "100").ok


def test_the_state_hash_holds_the_table(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    empty = s.engine.state_hash()
    assert s.user_limit(BOB, AMOUNT, 100).ok
    one = s.engine.state_hash()
    assert one != empty
    assert s.user_limit(BOB, AMOUNT, 0).ok  # the pair stays: (BOB, 0, 0) is in the hash
    again = s.engine.state_hash()
    assert again not in (empty, one)
    # Sorted by user and market: the order the pairs came in does not show.
    a, b = funded(engine_cls), funded(engine_cls)
    for user, market in ((BOB, ETH_BTC), (ALICE, ETH_BTC), (BOB, BTC_USDT)):
        assert a.user_limit(user, NOTIONAL, 10 * user + market, market=market).ok
    for user, market in ((BOB, BTC_USDT), (ALICE, ETH_BTC), (BOB, ETH_BTC)):
        assert b.user_limit(user, NOTIONAL, 10 * user + market, market=market).ok
    assert a.engine.state_hash() == b.engine.state_hash()
    # ... and the values do.
    assert b.user_limit(ALICE, NOTIONAL, 1, market=ETH_BTC).ok
    assert a.engine.state_hash() != b.engine.state_hash()


# --------------------------------------------------------------------------- PUT_LIMIT


def test_a_limit_order_is_held_to_both_amount_before_value(engine_cls: EngineClass) -> None:
    s = limited(engine_cls)  # ALICE: at most 0.5 BTC and 1,000 USDT an order
    assert s.limit(ALICE, ASK, "0.500001", "100").code == USER_AMOUNT
    assert s.limit(ALICE, BID, "0.500001", "100").code == USER_AMOUNT
    assert s.limit(ALICE, ASK, "0.4", "2500.01").code == USER_NOTIONAL  # 1,000.004
    assert s.limit(ALICE, BID, "0.6", "5000").code == USER_AMOUNT  # both: amount first
    for tif in TimeInForce:
        assert s.limit(ALICE, BID, "0.6", "1", tif=tif).code == USER_AMOUNT
    # Before funds and before the minimum amount: the account half's checks.
    assert s.user_limit(DAVE, NOTIONAL, usdt(s, "1")).ok
    assert s.limit(DAVE, BID, "0.5", "10").code == USER_NOTIONAL  # no funds at all
    assert s.limit(ALICE, ASK, "0.0009", "2000000").code == USER_NOTIONAL  # 1,800 USDT
    assert s.limit(ALICE, ASK, "0", "100").code == Result.INVALID_ARGUMENT  # ranges first
    # The edges are in.
    assert s.limit(ALICE, ASK, "0.5", "2000").ok  # exactly 1,000 USDT
    assert s.limit(ALICE, BID, "0.5", "1000", tif=TimeInForce.IOC).ok


def test_the_market_limits_come_first(engine_cls: EngineClass) -> None:
    risk = 'price_step = "0.05"\namount_step = "0.001"\nmin_notional = "10"\n'
    s = limited(engine_cls, risk + 'max_notional = "5000"\nmax_order_amount = "2"\n')
    assert s.limit(ALICE, ASK, "0.6", "100.01").code == Result.PRICE_NOT_ON_STEP
    assert s.limit(ALICE, ASK, "0.6005", "100").code == Result.AMOUNT_NOT_ON_STEP
    assert s.limit(ALICE, ASK, "2.001", "100").code == Result.AMOUNT_TOO_LARGE
    assert s.limit(ALICE, ASK, "0.6", "10").code == Result.NOTIONAL_TOO_SMALL
    assert s.limit(ALICE, ASK, "0.6", "10000").code == Result.NOTIONAL_TOO_LARGE
    assert s.limit(ALICE, ASK, "0.6", "100").code == USER_AMOUNT  # within the market's
    assert s.limit(ALICE, ASK, "0.4", "4000").code == USER_NOTIONAL


def test_user_limits_only_tighten(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, 'max_notional = "1000"\nmax_order_amount = "1"\n')
    assert s.user_limit(ALICE, AMOUNT, s.lots("5")).ok
    assert s.user_limit(ALICE, NOTIONAL, usdt(s, "50000")).ok
    # Looser than the market's: the market's still hold.
    assert s.limit(ALICE, ASK, "2", "100").code == Result.AMOUNT_TOO_LARGE
    assert s.limit(ALICE, ASK, "0.5", "3000").code == Result.NOTIONAL_TOO_LARGE
    assert s.market_order(ALICE, BID, "2000").code == Result.NOTIONAL_TOO_LARGE
    # Tighter than the market's: the user's.
    assert s.user_limit(ALICE, AMOUNT, s.lots("0.5")).ok
    assert s.user_limit(ALICE, NOTIONAL, usdt(s, "100")).ok
    assert s.limit(ALICE, ASK, "0.6", "100").code == USER_AMOUNT
    assert s.limit(ALICE, ASK, "0.5", "300").code == USER_NOTIONAL
    # Others are held to the market's alone.
    assert s.limit(BOB, ASK, "1", "300").ok
    assert s.limit(BOB, ASK, "2", "100").code == Result.AMOUNT_TOO_LARGE


def test_other_users_and_markets_are_unaffected(engine_cls: EngineClass) -> None:
    s = limited(engine_cls)
    assert s.limit(ALICE, ASK, "1", "100").code == USER_AMOUNT
    assert s.limit(BOB, ASK, "1", "100").ok
    assert s.limit(BOB, BID, "20", "90").ok  # 1,800 USDT
    assert s.limit(ALICE, ASK, "50", "0.1", market=ETH_BTC).ok  # none in ETH_BTC
    assert s.market_order(BOB, BID, "5000").ok  # takes BOB's own ask


def test_a_limit_holds_from_its_seq_on_within_a_batch(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    lots, ticks = s.lots("1"), s.ticks("100")
    before, set_it, after = s.run(
        commands.put_limit(ALICE, BTC_USDT, ASK, lots, ticks, 0, 0, ts_ns=s.next_ts()),
        commands.user_limit(ALICE, BTC_USDT, AMOUNT, lots - 1, ts_ns=s.next_ts()),
        commands.put_limit(ALICE, BTC_USDT, ASK, lots, ticks, 0, 0, ts_ns=s.next_ts()),
    )
    assert (before.code, set_it.code, after.code) == (Result.OK, Result.OK, USER_AMOUNT)
    assert set_it.seq == before.seq + 1
    # Orders resting from before stay: the limits are pre-trade.
    assert s.engine.order(BTC_USDT, before.order_id) is not None
    assert s.limit(BOB, BID, "1", "100").ok  # fills ALICE's whole order
    assert s.engine.order(BTC_USDT, before.order_id) is None
    # None again: any amount.
    assert s.user_limit(ALICE, AMOUNT, 0).ok
    assert s.limit(ALICE, ASK, "1", "100").ok


# --------------------------------------------------------------------------- PUT_MARKET


def test_a_market_ask_is_held_to_the_amount_limit(engine_cls: EngineClass) -> None:
    s = limited(engine_cls, 'amount_step = "0.001"\n')
    s.limit(BOB, BID, "10", "5000")  # 50,000 USDT to sell into
    assert s.market_order(ALICE, ASK, "0.5005").code == Result.AMOUNT_NOT_ON_STEP  # first
    assert s.market_order(ALICE, ASK, "0.501").code == USER_AMOUNT
    assert s.user_limit(DAVE, AMOUNT, 1).ok
    assert s.market_order(DAVE, ASK, "0.001").code == USER_AMOUNT  # before funds
    # Its value is not known before it runs: 2,500 USDT, above ALICE's max_notional.
    assert s.market_order(ALICE, ASK, "0.5").ok


def test_a_market_bid_spends_at_most_the_notional_limit(engine_cls: EngineClass) -> None:
    s = limited(engine_cls, 'min_notional = "10"\n')
    s.limit(BOB, ASK, "10", "100")  # 1,000 USDT of asks
    assert s.market_order(ALICE, BID, "9.99").code == Result.NOTIONAL_TOO_SMALL  # first
    assert s.market_order(ALICE, BID, "1000.00000001").code == USER_NOTIONAL
    assert s.user_limit(DAVE, NOTIONAL, usdt(s, "10")).ok
    assert s.market_order(DAVE, BID, "11").code == USER_NOTIONAL  # before funds
    # Its amount is money, not lots: the amount limit (0.5 BTC) does not hold it.
    step = s.market_order(ALICE, BID, "1000")
    assert step.ok
    assert [d[-1] for d in step.deals()] == ["10"]  # 10 BTC bought
    # ... nor its book checks: no asks left.
    assert s.market_order(ALICE, BID, "1000.01").code == USER_NOTIONAL
    assert s.market_order(ALICE, BID, "1000").code == Result.NO_ENOUGH_TRADER


# --------------------------------------------------------------------------- REPLACE


def test_a_replace_is_held_at_its_new_price_and_left(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    order = s.limit(ALICE, ASK, "1", "1000").order_id  # 1,000 USDT
    assert s.user_limit(ALICE, AMOUNT, s.lots("0.5")).ok
    assert s.user_limit(ALICE, NOTIONAL, usdt(s, "400")).ok
    # A shrink in place too, before the order is looked up.
    assert s.replace(ALICE, order, "1000", "0.8").code == USER_AMOUNT
    assert s.replace(ALICE, 999, "1000", "0.8").code == USER_AMOUNT
    assert s.replace(ALICE, order, "1000", "0.5").code == USER_NOTIONAL  # 500 USDT
    assert s.replace(ALICE, order, "1000", "0.9").code == USER_AMOUNT  # both: amount first
    assert s.replace(ALICE, order, "1000", "0.4").ok  # exactly 400 USDT: keeps priority
    assert s.replace(ALICE, order, "1000.01", "0.4").code == USER_NOTIONAL
    assert s.replace(ALICE, order, "800", "0.5").ok  # exactly 400 USDT at a new price
    assert s.replace(ALICE, order, "800", "0.500001").code == USER_AMOUNT
    # The command's user's limits: BOB has none, so the order is looked up.
    assert s.replace(BOB, order, "1000", "0.8").code == Result.USER_NOT_MATCH
    assert s.user_limit(BOB, AMOUNT, s.lots("0.1")).ok
    assert s.replace(BOB, order, "1000", "0.8").code == USER_AMOUNT


def test_the_market_limits_come_first_in_a_replace(engine_cls: EngineClass) -> None:
    s = limited(engine_cls, 'price_step = "0.05"\nmax_order_amount = "0.7"\n')
    order = s.limit(ALICE, ASK, "0.5", "100").order_id
    assert s.replace(ALICE, order, "100.01", "0.6").code == Result.PRICE_NOT_ON_STEP
    assert s.replace(ALICE, order, "100", "0.8").code == Result.AMOUNT_TOO_LARGE
    assert s.replace(ALICE, order, "100", "0.6").code == USER_AMOUNT


# --------------------------------------------------------------------------- QUOTE


def test_each_quote_level_is_held_to_them(engine_cls: EngineClass) -> None:
    s = limited(engine_cls)  # ALICE: 0.5 BTC and 1,000 USDT an order
    bids, asks = [("99", "0.5"), ("98", "0.5")], [("101", "0.5"), ("102", "0.5")]
    refused(s.quote(ALICE, bids, [*asks, ("103", "0.500001")]), USER_AMOUNT)
    refused(s.quote(ALICE, [("2001", "0.5")], asks[:0]), USER_NOTIONAL)
    # Record order: the first level that fails gives the code.
    refused(s.quote(ALICE, [("2001", "0.5")], [("2002", "0.6")]), USER_NOTIONAL)
    refused(s.quote(ALICE, [("2001", "0.5")], [("2002", "0.6")], asks_first=True), USER_AMOUNT)
    # Within a level: before its minimum amount (0.001).
    refused(s.quote(ALICE, [("2000000", "0.0009")], []), USER_NOTIONAL)
    # The edges are in; another user is not held to them.
    ladder = [("2000", "0.5"), ("101", "0.5")]
    assert s.quote(ALICE, bids, ladder)[0].ok
    assert s.quote(BOB, [("90", "1")], [("110", "2")])[0].ok
    # A level kept or shrunk is held to them too; removing the quote never is.
    assert s.user_limit(ALICE, AMOUNT, s.lots("0.4")).ok
    refused(s.quote(ALICE, bids, ladder), USER_AMOUNT)
    assert s.quote(ALICE, [("99", "0.4")], [("2000", "0.4"), ("101", "0.4")])[0].ok
    assert s.user_limit(ALICE, AMOUNT, 1).ok
    assert s.quote(ALICE, [], [])[0].value == 3


def test_the_market_limits_come_first_in_a_quote(engine_cls: EngineClass) -> None:
    s = limited(engine_cls, 'max_order_amount = "0.7"\nmax_notional = "1500"\n')
    refused(s.quote(ALICE, [("99", "0.6")], [("101", "0.8")]), USER_AMOUNT)
    refused(
        s.quote(ALICE, [("99", "0.6")], [("101", "0.8")], asks_first=True),
        (Result.AMOUNT_TOO_LARGE),
    )
    refused(s.quote(ALICE, [("4000", "0.4")], []), Result.NOTIONAL_TOO_LARGE)
    refused(s.quote(ALICE, [("3000", "0.4")], []), USER_NOTIONAL)


@pytest.mark.parametrize("limit", [AMOUNT, NOTIONAL])
def test_the_fee_account_has_none(engine_cls: EngineClass, limit: RiskLimit) -> None:
    s = funded(engine_cls)
    assert s.user_limit(FEE, limit, 1).code == Result.FEE_ACCOUNT_CANNOT_TRADE
    assert s.engine.user_limits(FEE, BTC_USDT) == (0, 0)


def test_the_query_answers_zeros_out_of_range(engine_cls: EngineClass) -> None:
    s = limited(engine_cls)
    assert s.engine.user_limits(ALICE, BTC_USDT) == (s.lots("0.5"), usdt(s, "1000"))
    for user, market in ((ALICE, 2), (ALICE, -1), (-1, BTC_USDT), (MAX_USER_ID + 1, 0)):
        assert s.engine.user_limits(user, market) == (0, 0)
