"""Market and user status (docs/engine.md, "Market and user status"): halting,
delisting and the kill switch are commands like any other, each refusal has its own
code, and cancels always go on. Both engines."""

from __future__ import annotations

from core.schema import MarketStatus, Result, UserStatus
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
    FEE,
    USDT,
    Scenario,
)

OPEN, HALTED, DELISTED = MarketStatus.OPEN, MarketStatus.HALTED, MarketStatus.DELISTED
ACTIVE, BLOCKED = UserStatus.ACTIVE, UserStatus.BLOCKED


def funded(engine_cls: EngineClass, **limits: int) -> Scenario:
    s = Scenario(engine_cls, **limits)
    for user in (ALICE, BOB, CAROL):
        s.deposit(user, BTC, "10")
        s.deposit(user, USDT, "100000")
    return s


def test_a_halted_market_takes_cancels_only(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    ask = s.limit(ALICE, ASK, "1", "100").order_id
    bid = s.limit(BOB, BID, "1", "90").order_id
    step = s.market_status(HALTED)
    assert step.ok
    assert step.seq > 0
    assert step.brief() == [("MARKET", BTC_USDT, "OPEN", "HALTED")]
    assert s.engine.market_status(BTC_USDT) == HALTED
    before = s.engine.state_hash()
    assert s.limit(CAROL, BID, "1", "100").code == Result.MARKET_HALTED
    assert s.market_order(CAROL, BID, "100").code == Result.MARKET_HALTED
    assert s.replace(ALICE, ask, "95", "1").code == Result.MARKET_HALTED
    assert s.engine.state_hash() == before
    # The resting orders stay, and their owners may take them off.
    assert s.book_ids(ASK) == [ask]
    assert s.cancel(ALICE, ask).ok
    assert s.cancel_all(BOB).value == 1
    assert s.book_ids(BID) == []
    # The other market is not touched.
    assert s.limit(ALICE, BID, "1", "0.5", market=ETH_BTC).ok
    assert bid


def test_resume_opens_the_market_again(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.market_status(HALTED)
    step = s.market_status(OPEN)
    assert step.brief() == [("MARKET", BTC_USDT, "HALTED", "OPEN")]
    assert s.limit(ALICE, ASK, "1", "100").ok


def test_a_status_already_set_is_accepted_and_changes_nothing(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    before = s.engine.counters()
    step = s.market_status(OPEN)
    assert (step.code, step.seq, len(step.events)) == (Result.OK, 0, 0)
    step = s.user_status(ALICE, ACTIVE)
    assert (step.code, step.seq, len(step.events)) == (Result.OK, 0, 0)
    assert s.engine.counters() == before


def test_delisting_refuses_new_orders_and_cancel_market_empties_the_book_in_chunks(
    engine_cls: EngineClass,
) -> None:
    s = funded(engine_cls, max_matches=3)
    asks = [s.limit(ALICE, ASK, "0.1", price).order_id for price in ("101", "100", "100")]
    bids = [s.limit(user, BID, "0.1", "90").order_id for user in (BOB, CAROL)]
    assert s.market_status(DELISTED).ok
    assert s.limit(BOB, BID, "1", "90").code == Result.MARKET_DELISTED
    # Asks first, best price first, oldest first; max_matches (3) a command.
    first = s.cancel_market()
    assert first.value == 3
    assert [e[1] for e in first.brief(balances=False)] == [asks[1], asks[2], asks[0]]
    second = s.cancel_market()
    assert second.value == 2
    assert [e[1] for e in second.brief(balances=False)] == bids
    last = s.cancel_market()
    assert (last.value, last.seq) == (0, 0)
    # Every reserve came back.
    for user in (ALICE, BOB, CAROL):
        assert s.balance(user, BTC) == ("10", "0")
        assert s.balance(user, USDT) == ("100000", "0")


def test_cancel_market_takes_one_side_and_any_status(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")
    bid = s.limit(BOB, BID, "1", "90").order_id
    step = s.cancel_market(ASK)  # an open market: the operator's choice
    assert step.value == 1
    assert s.book_ids(ASK) == []
    assert s.book_ids(BID) == [bid]


def test_the_kill_switch_blocks_new_orders_and_cancels_go_on(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    ask = s.limit(ALICE, ASK, "1", "100").order_id
    s.limit(ALICE, BID, "1", "0.5", market=ETH_BTC)
    step = s.user_status(ALICE, BLOCKED)
    assert step.brief() == [("USER", ALICE, "ACTIVE", "BLOCKED")]
    assert s.engine.user_status(ALICE) == BLOCKED
    assert s.limit(ALICE, ASK, "1", "100").code == Result.USER_BLOCKED
    assert s.market_order(ALICE, ASK, "1").code == Result.USER_BLOCKED
    assert s.replace(ALICE, ask, "99", "1").code == Result.USER_BLOCKED
    # Others trade on; Alice's resting orders can still be taken until cancelled.
    assert s.limit(BOB, BID, "0.5", "100").ok
    assert s.cancel_all(ALICE).value == 1
    assert s.cancel_all(ALICE, market=ETH_BTC).value == 1
    # Deposits and withdrawals are not trading: they go on.
    assert s.update(ALICE, USDT, "-1").ok
    assert s.user_status(ALICE, ACTIVE).ok
    assert s.limit(ALICE, ASK, "1", "100").ok


def test_the_market_status_is_checked_before_the_users(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.user_status(ALICE, BLOCKED)
    s.market_status(HALTED)
    assert s.limit(ALICE, ASK, "1", "100").code == Result.MARKET_HALTED


def test_a_retried_put_names_its_order_even_when_halted(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    first = s.limit(ALICE, ASK, "1", "100", client_id=5)
    s.market_status(HALTED)
    again = s.limit(ALICE, ASK, "1", "100", client_id=5)
    assert again.code == Result.REPEAT_ORDER
    assert s.limit(ALICE, ASK, "1", "100", client_id=6).code == Result.MARKET_HALTED
    assert first.ok


def test_blocking_a_user_without_an_account_makes_one(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, max_users=5)  # the fee account and three users: one place left
    stranger = 77
    assert s.user_status(stranger, BLOCKED).ok
    assert s.engine.user_status(stranger) == BLOCKED
    assert s.user_status(78, BLOCKED).code == Result.USER_TABLE_FULL
    assert s.user_status(78, ACTIVE).ok  # nothing to change: no account needed


def test_bad_status_commands_are_refused_precisely(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    assert s.market_status(3).code == Result.INVALID_ARGUMENT
    assert s.market_status(-1).code == Result.INVALID_ARGUMENT
    assert s.market_status(HALTED, market=9).code == Result.UNKNOWN_MARKET
    assert s.user_status(ALICE, 2).code == Result.INVALID_ARGUMENT
    assert s.user_status(-1, BLOCKED).code == Result.INVALID_ARGUMENT
    assert s.user_status(2**32, BLOCKED).code == Result.INVALID_ARGUMENT
    assert s.user_status(FEE, BLOCKED).code == Result.FEE_ACCOUNT_CANNOT_TRADE
    assert s.cancel_market(3).code == Result.INVALID_ARGUMENT
    assert s.cancel_market(market=-1).code == Result.UNKNOWN_MARKET
    assert s.engine.market_status(BTC_USDT) == OPEN
    assert s.engine.market_status(99) == OPEN
    assert s.engine.user_status(-5) == ACTIVE
