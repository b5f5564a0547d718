"""Mass quotes (docs/engine.md, "QUOTE"): a maker's ladder set, replaced and removed
in one command, all of it or nothing; kept levels keep their priority. Both engines.

BTC_USDT in the test config: lots of 0.000001 BTC (min_amount 0.001), prices of 0.01
USDT; a bid's reserve is price x amount USDT, an ask's its amount of BTC.
"""

from __future__ import annotations

import numpy as np
import pytest

from core import commands
from core.schema import (
    MAX_QUOTE_LEVELS,
    CommandKind,
    MarketStatus,
    OrderFlag,
    QuoteAction,
    Result,
    RiskLimit,
    UserStatus,
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
    FEE,
    USDT,
    Scenario,
    Step,
)

KEPT, SHRUNK, GROWN, NEW = QuoteAction.KEPT, QuoteAction.SHRUNK, QuoteAction.GROWN, QuoteAction.NEW
QUOTE_FLAGS = OrderFlag.POST_ONLY | OrderFlag.QUOTE

LADDER_BIDS = [("99", "1"), ("98", "2")]
LADDER_ASKS = [("101", "1"), ("102", "0.5")]


def funded(engine_cls: EngineClass, btc_usdt: str = "", **limits: int) -> Scenario:
    s = Scenario(engine_cls, btc_usdt, **limits)
    for user in (ALICE, BOB, CAROL):
        s.deposit(user, BTC, "10")
        s.deposit(user, USDT, "100000")
    return s


def actions(steps: list[Step]) -> list[tuple[int, QuoteAction]]:
    return [(step.order_id, QuoteAction(step.value)) for step in steps[1:]]


def refused(s: Scenario, steps: list[Step], code: Result) -> None:
    """Every record of the quote has ``code``, no seq, no order, no event."""
    assert [step.code for step in steps] == [code] * len(steps)
    assert all(step.seq == 0 and step.order_id == 0 and len(step.events) == 0 for step in steps)


def test_a_quote_places_every_level_as_a_post_only_quote_order(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    steps = s.quote(ALICE, LADDER_BIDS, LADDER_ASKS, maker="0.001", source=b"mm")
    head = steps[0]
    assert head.ok
    assert head.seq > 0
    assert head.value == 0  # nothing stale
    assert actions(steps) == [(1, NEW), (2, NEW), (3, NEW), (4, NEW)]  # ids in record order
    assert head.brief(balances=False) == [("PUT", 1), ("PUT", 2), ("PUT", 3), ("PUT", 4)]
    # each level freezes its reserve: 99 + 196 USDT, 1.5 BTC
    assert s.balance(ALICE, USDT) == ("99705", "295")
    assert s.balance(ALICE, BTC) == ("8.5", "1.5")
    order = s.engine.order(BTC_USDT, 3)
    assert order is not None
    assert (order.flags, order.source, order.maker_rate) == (QUOTE_FLAGS, "mm", 10)
    assert s.book_ids(ASK) == [3, 4]
    assert s.book_ids(BID) == [1, 2]


def test_a_requote_keeps_shrinks_grows_adds_and_cancels_by_level(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, LADDER_BIDS, LADDER_ASKS)
    behind = s.limit(BOB, BID, "1", "98").order_id  # behind ALICE's 98 level
    ahead = s.limit(BOB, ASK, "1", "101").order_id  # behind ALICE's 101 level
    steps = s.quote(
        ALICE,
        [("99", "1"), ("98", "1")],  # kept, shrunk
        [("101", "3"), ("103", "1")],  # grown, new; 102 is stale
    )
    assert steps[0].ok
    assert steps[0].value == 1
    assert actions(steps) == [(1, KEPT), (2, SHRUNK), (3, GROWN), (7, NEW)]
    assert steps[0].brief(balances=False) == [
        ("FINISH", 4, "CANCELED"),
        ("UPDATE", 2),
        ("UPDATE", 3),
        ("PUT", 7),
    ]
    # the shrunk level kept its place, the grown one went behind BOB's order
    assert s.book_ids(BID) == [1, 2, behind]
    assert s.book_ids(ASK) == [ahead, 3, 7]
    assert s.balance(ALICE, USDT) == ("99803", "197")
    assert s.balance(ALICE, BTC) == ("6", "4")


def test_funds_are_released_before_they_are_taken(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "2")
    assert s.quote(ALICE, [], [("101", "2")])[0].ok  # every BTC frozen
    # moving the whole ask up needs the reserve of the stale level: it is counted
    steps = s.quote(ALICE, [], [("105", "1.5"), ("106", "0.5")])
    assert steps[0].ok
    assert [e[3] for e in steps[0].brief() if e[0] == "BAL"] == ["UNFREEZE", "FREEZE", "FREEZE"]
    assert s.balance(ALICE, BTC) == ("0", "2")
    refused(s, s.quote(ALICE, [], [("105", "1.5"), ("106", "0.6")]), Result.BALANCE_NOT_ENOUGH)


def test_a_quote_that_changes_nothing_has_no_seq(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, LADDER_BIDS, LADDER_ASKS)
    before = s.engine.counters()
    steps = s.quote(ALICE, LADDER_BIDS[::-1], LADDER_ASKS)  # the order of records is free
    assert steps[0].ok
    assert steps[0].seq == 0
    assert {a for _, a in actions(steps)} == {KEPT}
    assert s.engine.counters() == before


def test_an_empty_quote_removes_the_quote_orders_and_nothing_else(
    engine_cls: EngineClass,
) -> None:
    s = funded(engine_cls)
    mine = s.limit(ALICE, BID, "1", "90").order_id
    s.quote(ALICE, LADDER_BIDS, LADDER_ASKS)
    steps = s.quote(ALICE, [], [])
    assert len(steps) == 1
    assert steps[0].ok
    assert steps[0].value == 4
    assert [e[1] for e in steps[0].brief(balances=False)] == [2, 3, 4, 5]  # oldest first
    assert s.book_ids(BID) == [mine]
    assert s.quote(ALICE, [], [])[0].seq == 0  # nothing left to remove


def test_a_filled_level_comes_back_at_the_tail(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, [("99", "1")], [("101", "1")])
    s.limit(BOB, BID, "0.4", "101")  # takes 0.4 of ALICE's ask
    waiting = s.limit(CAROL, ASK, "1", "101").order_id
    steps = s.quote(ALICE, [("99", "1")], [("101", "1")])
    assert actions(steps) == [(1, KEPT), (2, GROWN)]
    assert s.book_ids(ASK) == [waiting, 2]
    s.limit(BOB, BID, "1", "101")  # fills CAROL's order and nothing of ALICE's
    assert s.quote(ALICE, [("99", "1")], [])[0].value == 1
    s.limit(CAROL, ASK, "1", "99")  # fills the whole bid level: it is gone
    assert actions(s.quote(ALICE, [("99", "1")], [])) == [(7, NEW)]


def test_other_commands_may_touch_quote_orders(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, LADDER_BIDS, LADDER_ASKS)
    assert s.cancel(ALICE, 2).ok
    assert s.replace(ALICE, 1, "97", "1").ok  # still a quote order, now at 97
    order = s.engine.order(BTC_USDT, 1)
    assert order is not None
    assert order.flags == QUOTE_FLAGS
    steps = s.quote(ALICE, [("97", "1"), ("99", "1")], LADDER_ASKS)
    assert actions(steps) == [(1, KEPT), (5, NEW), (3, KEPT), (4, KEPT)]
    assert s.cancel_all(ALICE).value == 4


def test_of_two_quote_orders_at_a_level_the_oldest_is_kept(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, [("99", "1"), ("98", "1")], [])
    assert s.replace(ALICE, 2, "99", "1").ok  # both at 99 now
    steps = s.quote(ALICE, [("99", "1")], [])
    assert steps[0].value == 1
    assert actions(steps) == [(1, KEPT)]
    assert steps[0].brief(balances=False) == [("FINISH", 2, "CANCELED")]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        ([("99", "1"), ("99", "2")], []),  # a price twice on a side
        ([("101", "1")], [("101", "1")]),  # a bid at an ask
        ([("102", "1")], [("101", "1")]),  # a bid above an ask
        ([("0", "1")], []),
        ([("99", "0")], []),
        ([(str(100 - n), "0.001") for n in range(MAX_QUOTE_LEVELS + 1)], []),
    ],
    ids=["twice", "bid-at-ask", "crossed", "price-0", "amount-0", "too-many"],
)
def test_a_malformed_ladder_is_invalid(
    engine_cls: EngineClass, bids: list[tuple[str, str]], asks: list[tuple[str, str]]
) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, LADDER_BIDS, LADDER_ASKS)
    before = s.engine.state_hash()
    refused(s, s.quote(ALICE, bids, asks), Result.INVALID_ARGUMENT)
    assert s.engine.state_hash() == before


def test_a_full_side_of_levels_is_allowed(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    bids = [(str(100 - n), "0.001") for n in range(MAX_QUOTE_LEVELS)]
    asks = [(str(101 + n), "0.001") for n in range(MAX_QUOTE_LEVELS)]
    steps = s.quote(ALICE, bids, asks)
    assert steps[0].ok
    assert len(steps) == 2 * MAX_QUOTE_LEVELS + 1


def test_levels_that_do_not_follow_their_quote_are_invalid(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    levels = [(BID, 9900, 1000), (ASK, 10100, 1000)]
    short = commands.quote(ALICE, BTC_USDT, levels, k=3, ts_ns=s.next_ts())
    stray = commands.quote(ALICE, BTC_USDT, levels, ts_ns=s.next_ts())[1:]
    interrupted = commands.batch(
        commands.quote(ALICE, BTC_USDT, levels, k=2, ts_ns=s.next_ts())[:2],
        commands.put_limit(BOB, BTC_USDT, BID, 1000, 9000, ts_ns=s.next_ts()),
    )
    steps = s.run(short, stray, interrupted)
    codes = [step.code for step in steps]
    assert codes[:5] == [Result.INVALID_ARGUMENT] * 5  # the header, then stray levels
    assert codes[5:] == [Result.INVALID_ARGUMENT, Result.INVALID_ARGUMENT, Result.OK]


def test_the_fee_account_may_not_quote(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    refused(s, s.quote(FEE, LADDER_BIDS, []), Result.FEE_ACCOUNT_CANNOT_TRADE)


def test_a_halted_market_or_a_blocked_user_may_only_remove_a_quote(
    engine_cls: EngineClass,
) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, LADDER_BIDS, LADDER_ASKS)
    s.market_status(MarketStatus.HALTED)
    refused(s, s.quote(ALICE, LADDER_BIDS, []), Result.MARKET_HALTED)
    assert s.quote(ALICE, [], [])[0].value == 4
    s.market_status(MarketStatus.OPEN)
    s.user_status(BOB, UserStatus.BLOCKED)
    refused(s, s.quote(BOB, LADDER_BIDS, []), Result.USER_BLOCKED)


def test_each_level_is_held_to_the_risk_limits_and_the_minimum_amount(
    engine_cls: EngineClass,
) -> None:
    s = funded(engine_cls)
    s.market_limit(RiskLimit.PRICE_STEP, 100)  # whole USDT
    refused(s, s.quote(ALICE, [("99", "1"), ("98.5", "1")], []), Result.PRICE_NOT_ON_STEP)
    refused(s, s.quote(ALICE, [("99", "1"), ("98", "0.0005")], []), Result.AMOUNT_TOO_SMALL)
    s.market_limit(RiskLimit.MAX_OPEN_ORDERS, 3)
    s.quote(ALICE, [("99", "1"), ("98", "1")], [])
    s.limit(ALICE, BID, "1", "90")
    # the stale level does not count: two quote orders after it, plus the other one
    assert s.quote(ALICE, [("99", "1"), ("97", "1")], [])[0].ok
    refused(
        s, s.quote(ALICE, [("99", "1"), ("97", "1"), ("96", "1")], []), Result.TOO_MANY_OPEN_ORDERS
    )


def test_new_prices_are_held_to_the_band_and_kept_ones_are_not(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, 'price_band = "0.05"')
    s.quote(ALICE, [("90", "1")], [])
    # (asks first would put the band around the book's mid, 95: no bid at 100)
    s.limit(CAROL, BID, "0.1", "100")
    assert s.limit(BOB, ASK, "0.1", "100").ok  # a deal at 100: the band is 95..105
    assert s.quote(ALICE, [("90", "1"), ("96", "1")], [])[0].ok  # 90 is kept
    refused(s, s.quote(ALICE, [("90", "1"), ("94", "1")], []), Result.PRICE_OUTSIDE_BAND)


def test_a_level_that_would_take_refuses_the_quote(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.quote(ALICE, [("99", "1")], [("101", "1")])
    # its own quote orders do not count: the ladder moves down through its old ask
    steps = s.quote(ALICE, [("101", "1")], [("102", "1")])
    assert steps[0].ok
    theirs = s.limit(BOB, ASK, "1", "103").order_id
    refused(s, s.quote(ALICE, [("103", "1")], [("104", "1")]), Result.POST_ONLY_WOULD_TAKE)
    s.cancel(BOB, theirs)
    mine = s.limit(ALICE, ASK, "1", "104").order_id  # its own other orders do count
    refused(s, s.quote(ALICE, [("104", "1")], [("105", "1")]), Result.POST_ONLY_WOULD_TAKE)
    s.cancel(ALICE, mine)
    s.limit(BOB, BID, "1", "99")
    refused(s, s.quote(ALICE, [], [("99", "1")]), Result.POST_ONLY_WOULD_TAKE)


def test_a_quote_needs_room_for_its_new_orders(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, max_orders=4, max_levels=2)
    s.limit(BOB, BID, "1", "90")
    refused(s, s.quote(ALICE, [("99", "1"), ("98", "1")], []), Result.BOOK_FULL)  # 3 levels
    assert s.quote(ALICE, [("99", "1"), ("90", "1")], [])[0].ok  # 90 has a level
    refused(s, s.quote(ALICE, [], [("101", "1"), ("102", "1")]), Result.BOOK_FULL)  # 5 orders


def test_a_batch_of_quotes_runs_each_as_one_command(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    first = commands.quote(ALICE, BTC_USDT, [(BID, 9900, 1000)], ts_ns=s.next_ts())
    second = commands.quote(BOB, BTC_USDT, [(ASK, 10100, 1000)], ts_ns=s.next_ts())
    steps = s.run(first, second)
    assert [step.seq for step in steps] == [steps[0].seq, 0, steps[0].seq + 1, 0]
    assert [step.order_id for step in steps] == [0, 1, 0, 2]
    assert np.all(s.engine.counters()[1] == 2)


def test_quote_kinds_are_in_the_schema() -> None:
    assert (CommandKind.QUOTE, CommandKind.QUOTE_LEVEL) == (11, 12)
    assert MAX_QUOTE_LEVELS == 32
