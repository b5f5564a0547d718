"""Halting, delisting, the kill switch and risk limits (a market's and a user's own)
against a running server over real ZeroMQ sockets, through the SDK (sync and
asyncio) and ``matchctl``: what each status refuses and takes, the compositions'
rounds of cancels (``max_matches`` is 2 here), and that a half-done operation
survives a restart and is finished by running it again (docs/operations.md,
"Halting, delisting and the kill switch")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from core import commands as C
from core.config import EngineConfig
from core.schema import (
    EVENT_DTYPE,
    MAX_USER_ID,
    CommandKind,
    EventKind,
    MarketStatus,
    Result,
    RiskLimit,
    Side,
    UserStatus,
)
from ipc import wire
from ipc.client import ApiError, AsyncClient, Client
from ipc.market_limits import LIMIT_NAMES
from tests.support.scenario import make_config
from tests.support.served import SLOW_S, Served
from tools import matchctl

pytestmark = pytest.mark.integration

BTC, ETH, USDT = 0, 1, 2
BTC_USDT, ETH_BTC = 0, 1
FEE, ALICE, BOB = 0, 1, 2


def config() -> EngineConfig:
    """The test config with ``max_matches`` 2: a cancel-all or a cancel of a market's
    orders cancels at most 2 orders a command, so the compositions take rounds."""
    return make_config(max_orders=1000, max_levels=200, max_matches=2)


@pytest.fixture(params=["one-process", "workers"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(tmp_path, str(request.param), config())
    fund(s.client)
    yield s
    s.close()


def fund(c: Client) -> None:
    for user in (ALICE, BOB):
        for asset in (BTC, ETH, USDT):
            c.balance_update(user, asset, "deposit", user, 10**14)


def rest(c: Client, user: int, market: int, side: int, n: int) -> list[int]:
    """``n`` resting orders of ``user`` that do not cross (asks high, bids low)."""
    ids = []
    for i in range(n):
        if market == BTC_USDT:
            price = 30_000 + i if side == Side.ASK else 20_000 - i
            done = c.put_limit(user, market, side, 1000, price)
        else:
            price = 200_000 + i if side == Side.ASK else 100_000 - i
            done = c.put_limit(user, market, side, 100, price)
        assert done.order is not None
        ids.append(done.order_id)
    return ids


def status_of(c: Client, market: int) -> str:
    return next(m.status for m in c.markets() if m.index == market)


def refused(code: Result, action: object) -> ApiError:
    assert callable(action)
    with pytest.raises(ApiError) as info:
        action()
    assert info.value.code == code
    assert info.value.viabtc in (1, 3)
    return info.value


def frozen(c: Client, user: int) -> dict[int, int]:
    return {b.asset: b.freeze for b in c.balance_query(user)}


# --------------------------------------------------------------------------- halt


def test_a_halted_market_takes_cancels_only_until_it_is_resumed(served: Served) -> None:
    c = served.client
    (ask,) = rest(c, ALICE, BTC_USDT, Side.ASK, 1)
    other = rest(c, ALICE, ETH_BTC, Side.BID, 1)
    assert [m.status for m in c.markets()] == ["open", "open"]
    done = c.halt_market(BTC_USDT)
    assert done.seq > 0
    assert [m.status for m in c.markets()] == ["halted", "open"]
    assert c.halt_market(BTC_USDT).seq == 0  # already halted: nothing changes
    error = refused(
        Result.MARKET_HALTED, lambda: c.put_limit(BOB, BTC_USDT, Side.BID, 1000, 30_000)
    )
    assert (error.viabtc, error.message) == (1, "market halted: only cancels are taken")
    refused(Result.MARKET_HALTED, lambda: c.put_market(BOB, BTC_USDT, Side.BID, 10**8))
    refused(Result.MARKET_HALTED, lambda: c.replace(ALICE, BTC_USDT, ask, 30_001, 500))
    results, _ = c.submit(C.put_limit(BOB, BTC_USDT, Side.BID, 1000, 30_000))  # binary too
    assert results["code"].tolist() == [Result.MARKET_HALTED]
    assert c.pending(ALICE, BTC_USDT).total == 1  # resting orders stay
    assert c.put_limit(BOB, ETH_BTC, Side.ASK, 100, 300_000).order is not None  # other market
    assert c.cancel(ALICE, BTC_USDT, ask).order_id == ask  # cancels go on
    assert c.resume_market(BTC_USDT).seq > 0
    assert status_of(c, BTC_USDT) == "open"
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 1000, 20_000).order is not None
    assert c.pending_detail(ETH_BTC, other[0]) is not None


def test_a_status_change_is_one_event_with_the_new_and_the_old_status(served: Served) -> None:
    c = served.client
    call = wire.MarketSetStatus(ETH_BTC, "delisted")
    (reply,) = c.call(call, events=True)
    done = reply.result_as(call)
    events = np.frombuffer(done.events, dtype=EVENT_DTYPE)
    assert len(events) == 1
    ev = events[0]
    assert int(ev["kind"]) == EventKind.MARKET_STATUS
    assert (int(ev["market"]), int(ev["seq"])) == (ETH_BTC, done.seq)
    assert (int(ev["reason"]), int(ev["amount"])) == (MarketStatus.DELISTED, MarketStatus.OPEN)
    block = wire.UserSetStatus(BOB, "blocked")
    (reply,) = c.call(block, events=True)
    (ev,) = np.frombuffer(reply.result_as(block).events, dtype=EVENT_DTYPE)
    assert int(ev["kind"]) == EventKind.USER_STATUS
    assert (int(ev["user"]), int(ev["reason"]), int(ev["amount"])) == (BOB, 1, 0)
    (reply,) = c.call(block, events=True)  # again: no change, no event
    assert (reply.result_as(block).seq, reply.result_as(block).events) == (0, b"")


# --------------------------------------------------------------------------- delist


def test_delist_cancels_every_order_in_rounds_and_unfreezes_the_funds(served: Served) -> None:
    c = served.client
    rest(c, ALICE, BTC_USDT, Side.ASK, 3)
    rest(c, BOB, BTC_USDT, Side.BID, 2)
    kept = rest(c, BOB, ETH_BTC, Side.BID, 1)
    before = c.status().seq
    assert c.delist_market(BTC_USDT) == 5
    # the status, then 2 + 2 + 1 + a last cancel that found nothing
    assert c.status().seq - before >= 4
    assert status_of(c, BTC_USDT) == "delisted"
    assert c.book(BTC_USDT, Side.ASK).total == c.book(BTC_USDT, Side.BID).total == 0
    assert frozen(c, ALICE)[BTC] == 0
    assert frozen(c, BOB)[USDT] == 0
    assert c.pending_detail(ETH_BTC, kept[0]) is not None  # another market: untouched
    error = refused(Result.MARKET_DELISTED, lambda: c.put_limit(BOB, 0, Side.BID, 1000, 10_000))
    assert error.message == "market delisted: only cancels are taken"
    # Running it again changes nothing and cancels nothing.
    state = served.state_hash()
    assert c.delist_market(BTC_USDT) == 0
    assert c.set_market_status(BTC_USDT, "delisted").seq == 0
    assert served.state_hash() == state
    # A delisted market can be opened again, with an empty book.
    c.resume_market(BTC_USDT)
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 1000, 10_000).order is not None


def test_one_cancel_market_orders_call_cancels_at_most_max_matches(served: Served) -> None:
    c = served.client
    rest(c, ALICE, BTC_USDT, Side.ASK, 3)
    rest(c, BOB, BTC_USDT, Side.BID, 1)
    assert c.cancel_market_orders(BTC_USDT, Side.BID).value == 1  # bids only
    assert c.cancel_market_orders(BTC_USDT, Side.BID).value == 0
    assert c.cancel_market_orders(BTC_USDT).value == 2  # max_matches
    assert c.cancel_market_orders(BTC_USDT).value == 1
    assert c.cancel_market_orders(BTC_USDT).value == 0
    assert status_of(c, BTC_USDT) == "open"  # cancelling does not delist


def test_a_half_done_delist_survives_a_restart_and_running_it_again_finishes_it(
    served: Served,
) -> None:
    c = served.client
    rest(c, ALICE, BTC_USDT, Side.ASK, 3)
    rest(c, BOB, BTC_USDT, Side.BID, 2)
    # The first two steps of a delist, then the operator's tool dies.
    c.set_market_status(BTC_USDT, MarketStatus.DELISTED)
    assert c.cancel_market_orders(BTC_USDT).value == 2
    state = served.state_hash()
    served.restart()
    c = served.client
    assert served.state_hash() == state  # the log holds every step
    assert status_of(c, BTC_USDT) == "delisted"
    assert c.book(BTC_USDT, Side.ASK).total + c.book(BTC_USDT, Side.BID).total == 3
    assert c.delist_market(BTC_USDT) == 3
    assert c.book(BTC_USDT, Side.ASK).total + c.book(BTC_USDT, Side.BID).total == 0


# --------------------------------------------------------------------------- kill switch


def test_the_kill_switch_blocks_the_user_and_cancels_in_every_market(served: Served) -> None:
    c = served.client
    rest(c, ALICE, BTC_USDT, Side.ASK, 3)
    rest(c, ALICE, ETH_BTC, Side.BID, 2)
    bobs = rest(c, BOB, BTC_USDT, Side.BID, 2)
    assert c.block_user(ALICE) == 5
    for market in (BTC_USDT, ETH_BTC):
        assert c.pending(ALICE, market).total == 0
    assert frozen(c, ALICE) == {BTC: 0, ETH: 0, USDT: 0}
    assert [o.id for o in c.pending(BOB, BTC_USDT).orders] == sorted(bobs, reverse=True)
    error = refused(Result.USER_BLOCKED, lambda: c.put_limit(ALICE, 0, Side.ASK, 1000, 30_000))
    assert error.message == "user blocked: only cancels are taken"
    refused(Result.USER_BLOCKED, lambda: c.put_market(ALICE, ETH_BTC, Side.ASK, 100))
    results, _ = c.submit(C.put_limit(ALICE, 0, Side.ASK, 1000, 30_000))
    assert results["code"].tolist() == [Result.USER_BLOCKED]
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 1000, 10_000).order is not None  # others trade
    # Balances still move (a withdrawal of a blocked account is the point of it).
    assert c.balance_update(ALICE, USDT, "withdraw", 99, -(10**8)).seq > 0
    assert c.block_user(ALICE) == 0  # again: nothing left, nothing changes
    assert c.set_user_status(ALICE, UserStatus.BLOCKED).seq == 0
    assert c.unblock_user(ALICE).seq > 0
    assert c.unblock_user(ALICE).seq == 0
    assert c.put_limit(ALICE, BTC_USDT, Side.ASK, 1000, 30_000).order is not None


def test_refusals_of_the_admin_commands(served: Served) -> None:
    c = served.client
    refused(Result.UNKNOWN_MARKET, lambda: c.halt_market(2))
    refused(Result.UNKNOWN_MARKET, lambda: c.delist_market(7))
    refused(Result.UNKNOWN_MARKET, lambda: c.cancel_market_orders(-1))
    refused(Result.FEE_ACCOUNT_CANNOT_TRADE, lambda: c.block_user(FEE))
    # What a call's decoder refuses reaches the engine as a binary record: refused too.
    bad = C.batch(
        C.market_status(BTC_USDT, 3),
        C.market_status(BTC_USDT, -1),
        C.user_status(ALICE, 2),
        C.user_status(MAX_USER_ID + 1, 1),
        C.cancel_market(BTC_USDT, 3),
        C.market_status(9, 1),
    )
    results, events = c.submit(bad)
    assert results["code"].tolist() == [Result.INVALID_ARGUMENT] * 5 + [Result.UNKNOWN_MARKET]
    assert (results["seq"] == 0).all()
    assert len(events) == 0
    assert [m.status for m in c.markets()] == ["open", "open"]


def test_binary_admin_records_do_what_the_calls_do(served: Served) -> None:
    c = served.client
    rest(c, ALICE, BTC_USDT, Side.ASK, 3)
    batch = C.batch(
        C.market_status(ETH_BTC, MarketStatus.HALTED),
        C.user_status(BOB, UserStatus.BLOCKED),
        C.cancel_market(BTC_USDT),
        C.put_limit(BOB, BTC_USDT, Side.BID, 1000, 10_000),
    )
    results, events = c.submit(batch, events=True)
    assert results["code"].tolist() == [0, 0, 0, Result.USER_BLOCKED]
    assert results["value"].tolist() == [0, 0, 2, 0]
    kinds = set(events["kind"].tolist())
    assert {EventKind.MARKET_STATUS, EventKind.USER_STATUS} <= kinds
    assert int(batch["kind"][0]) == CommandKind.MARKET_STATUS
    assert status_of(c, ETH_BTC) == "halted"


# --------------------------------------------------------------------------- risk limits


def limits_of(c: Client, market: int) -> dict[str, int]:
    info = c.markets()[market]
    return {name: getattr(info, name) for name in LIMIT_NAMES}


def test_a_risk_limit_set_at_run_time_holds_and_shows_in_market_list(served: Served) -> None:
    c = served.client
    assert limits_of(c, BTC_USDT)["price_step"] == 1
    done = c.set_market_limit(BTC_USDT, "price_step", 100)  # 1.00 USDT
    assert done.seq > 0
    assert limits_of(c, BTC_USDT)["price_step"] == 100
    assert limits_of(c, ETH_BTC)["price_step"] == 1  # another market: untouched
    assert c.set_market_limit(BTC_USDT, RiskLimit.PRICE_STEP, 100).seq == 0  # already so
    error = refused(
        Result.PRICE_NOT_ON_STEP, lambda: c.put_limit(BOB, BTC_USDT, Side.BID, 1000, 20_001)
    )
    assert error.message == "invalid argument: price is not a multiple of price_step"
    results, _ = c.submit(C.put_limit(BOB, BTC_USDT, Side.BID, 1000, 20_001))  # binary too
    assert results["code"].tolist() == [Result.PRICE_NOT_ON_STEP]
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 1000, 20_000).order is not None
    # One event: the limit, the old value and the new one.
    call = wire.MarketSetLimit(BTC_USDT, "price_step", 1)
    (reply,) = c.call(call, events=True)
    done = reply.result_as(call)
    (ev,) = np.frombuffer(done.events, dtype=EVENT_DTYPE)
    assert int(ev["kind"]) == EventKind.MARKET_LIMIT
    assert (int(ev["market"]), int(ev["seq"])) == (BTC_USDT, done.seq)
    assert (int(ev["reason"]), int(ev["amount"]), int(ev["left"])) == (RiskLimit.PRICE_STEP, 100, 1)
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 1000, 20_001).order is not None  # none again


def test_max_order_amount_refuses_larger_orders_of_every_kind(served: Served) -> None:
    c = served.client
    (ask,) = rest(c, ALICE, BTC_USDT, Side.ASK, 1)
    assert c.set_market_limit(BTC_USDT, "max_order_amount", 2000).seq > 0  # 0.002 BTC
    assert limits_of(c, BTC_USDT)["max_order_amount"] == 2000
    error = refused(
        Result.AMOUNT_TOO_LARGE, lambda: c.put_limit(BOB, BTC_USDT, Side.BID, 2001, 20_000)
    )
    assert error.message == "invalid argument: amount above max_order_amount"
    refused(Result.AMOUNT_TOO_LARGE, lambda: c.put_market(ALICE, BTC_USDT, Side.ASK, 2001))
    refused(Result.AMOUNT_TOO_LARGE, lambda: c.replace(ALICE, BTC_USDT, ask, 30_000, 2001))
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 2000, 20_000).order is not None
    assert c.put_limit(BOB, ETH_BTC, Side.BID, 5000, 100_000).order is not None  # other market
    assert c.set_market_limit(BTC_USDT, "max_order_amount", 0).seq > 0  # none
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 2001, 20_000).order is not None


def test_risk_limits_survive_a_restart(served: Served) -> None:
    c = served.client
    rest(c, ALICE, BTC_USDT, Side.ASK, 1)
    c.set_market_limit(BTC_USDT, "max_open_orders", 1)
    c.set_market_limit(BTC_USDT, "price_band", 100_000)
    c.set_market_limit(ETH_BTC, "amount_step", 10)
    state, before = served.state_hash(), c.markets()
    served.restart()
    c = served.client
    assert served.state_hash() == state
    assert c.markets() == before
    assert (before[BTC_USDT].max_open_orders, before[ETH_BTC].amount_step) == (1, 10)
    refused(
        Result.TOO_MANY_OPEN_ORDERS, lambda: c.put_limit(ALICE, BTC_USDT, Side.ASK, 1000, 30_100)
    )
    refused(Result.AMOUNT_NOT_ON_STEP, lambda: c.put_limit(BOB, ETH_BTC, Side.BID, 105, 100_000))


def test_refusals_of_a_risk_limit(served: Served) -> None:
    c = served.client
    refused(Result.UNKNOWN_MARKET, lambda: c.set_market_limit(2, "price_step", 5))
    refused(Result.UNKNOWN_MARKET, lambda: c.set_market_limit(-1, "price_band", 5))
    for limit, value in (
        ("price_step", 0),
        ("amount_step", 0),
        ("price_step", c.markets()[BTC_USDT].max_price + 1),
        ("max_open_orders", 1001),  # max_orders is 1000
        ("price_band", 10**6),
        ("min_notional", 2**62 + 1),
        ("max_order_amount", c.markets()[BTC_USDT].max_amount + 1),
    ):
        refused(Result.INVALID_ARGUMENT, partial(c.set_market_limit, BTC_USDT, limit, value))
    assert c.set_market_limit(BTC_USDT, "max_notional", 1000).seq > 0
    refused(Result.INVALID_ARGUMENT, lambda: c.set_market_limit(BTC_USDT, "min_notional", 1001))
    assert c.set_market_limit(BTC_USDT, "min_notional", 1000).seq > 0  # equal: fine
    refused(Result.INVALID_ARGUMENT, lambda: c.set_market_limit(BTC_USDT, "max_notional", 999))
    # What a call's decoder refuses reaches the engine as a binary record: refused too.
    bad = C.batch(
        C.market_limit(BTC_USDT, 0, 5),
        C.market_limit(BTC_USDT, 8, 5),
        C.market_limit(BTC_USDT, RiskLimit.PRICE_STEP, -1),
        C.market_limit(BTC_USDT, RiskLimit.MAX_OPEN_ORDERS, -1),
        C.market_limit(9, RiskLimit.PRICE_STEP, 5),
    )
    state = served.state_hash()
    results, events = c.submit(bad)
    assert results["code"].tolist() == [Result.INVALID_ARGUMENT] * 4 + [Result.UNKNOWN_MARKET]
    assert (results["seq"] == 0).all()
    assert len(events) == 0
    assert served.state_hash() == state
    assert limits_of(c, BTC_USDT)["min_notional"] == limits_of(c, BTC_USDT)["max_notional"] == 1000


# --------------------------------------------------------------------------- user risk limits


def test_a_users_own_limits_hold_for_that_user_in_that_market(served: Served) -> None:
    c = served.client
    assert c.user_limits(BOB, BTC_USDT) == wire.UserLimits(BOB, BTC_USDT, 0, 0)
    assert c.set_user_limit(BOB, BTC_USDT, "max_order_amount", 2000).seq > 0
    assert c.set_user_limit(BOB, BTC_USDT, RiskLimit.MAX_ORDER_AMOUNT, 2000).seq == 0
    # 2000 lots at 20_000 ticks: 4 * 10**7 USDT units (deal_scale 1)
    assert c.set_user_limit(BOB, BTC_USDT, "max_notional", 4 * 10**7).seq > 0
    assert c.user_limits(BOB, BTC_USDT) == wire.UserLimits(BOB, BTC_USDT, 2000, 4 * 10**7)
    assert c.user_limits(BOB, ETH_BTC) == wire.UserLimits(BOB, ETH_BTC, 0, 0)
    assert c.user_limits(ALICE, BTC_USDT) == wire.UserLimits(ALICE, BTC_USDT, 0, 0)
    error = refused(
        Result.USER_AMOUNT_TOO_LARGE, lambda: c.put_limit(BOB, BTC_USDT, Side.BID, 2001, 10_000)
    )
    assert error.message == "invalid argument: amount above the user's max_order_amount"
    error = refused(
        Result.USER_NOTIONAL_TOO_LARGE, lambda: c.put_limit(BOB, BTC_USDT, Side.BID, 2000, 20_001)
    )
    assert error.message == "invalid argument: order value above the user's max_notional"
    # a market bid's amount is money: held to the notional
    refused(
        Result.USER_NOTIONAL_TOO_LARGE, lambda: c.put_market(BOB, BTC_USDT, Side.BID, 4 * 10**7 + 1)
    )
    results, _ = c.submit(C.put_limit(BOB, BTC_USDT, Side.BID, 2001, 10_000))  # binary too
    assert results["code"].tolist() == [Result.USER_AMOUNT_TOO_LARGE]
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 2000, 20_000).order is not None
    assert c.put_limit(ALICE, BTC_USDT, Side.ASK, 5000, 30_000).order is not None  # others
    assert c.put_limit(BOB, ETH_BTC, Side.BID, 5000, 100_000).order is not None  # elsewhere
    # One event: the user, the market, the limit, the old value and the new one.
    call = wire.UserSetLimit(BOB, BTC_USDT, "max_notional", 0)
    (reply,) = c.call(call, events=True)
    done = reply.result_as(call)
    (ev,) = np.frombuffer(done.events, dtype=EVENT_DTYPE)
    assert int(ev["kind"]) == EventKind.USER_LIMIT
    assert (int(ev["user"]), int(ev["market"]), int(ev["seq"])) == (BOB, BTC_USDT, done.seq)
    assert (int(ev["reason"]), int(ev["amount"]), int(ev["left"])) == (
        RiskLimit.MAX_NOTIONAL, 4 * 10**7, 0,
    )  # fmt: skip
    assert c.put_limit(BOB, BTC_USDT, Side.BID, 2000, 20_001).order is not None  # none again


def test_user_limits_survive_a_restart(served: Served) -> None:
    c = served.client
    c.set_user_limit(ALICE, BTC_USDT, "max_order_amount", 3000)
    c.set_user_limit(BOB, ETH_BTC, "max_notional", 10**9)
    c.set_user_limit(BOB, ETH_BTC, "max_notional", 10**10)
    state = served.state_hash()
    served.restart()
    c = served.client
    assert served.state_hash() == state
    assert c.user_limits(ALICE, BTC_USDT) == wire.UserLimits(ALICE, BTC_USDT, 3000, 0)
    assert c.user_limits(BOB, ETH_BTC) == wire.UserLimits(BOB, ETH_BTC, 0, 10**10)
    refused(
        Result.USER_AMOUNT_TOO_LARGE, lambda: c.put_limit(ALICE, BTC_USDT, Side.ASK, 3001, 30_000)
    )


def test_refusals_of_a_user_limit(served: Served) -> None:
    c = served.client
    state = served.state_hash()
    refused(Result.UNKNOWN_MARKET, lambda: c.set_user_limit(BOB, 2, "max_notional", 5))
    refused(Result.UNKNOWN_MARKET, lambda: c.set_user_limit(BOB, -1, "max_notional", 5))
    refused(Result.FEE_ACCOUNT_CANNOT_TRADE, lambda: c.set_user_limit(FEE, 0, "max_notional", 5))
    max_amount = c.markets()[BTC_USDT].max_amount
    for limit, value in (("max_order_amount", max_amount + 1), ("max_notional", 2**62 + 1)):
        refused(Result.INVALID_ARGUMENT, partial(c.set_user_limit, BOB, BTC_USDT, limit, value))
    # What a call's decoder refuses reaches the engine as a binary record: refused too.
    bad = C.batch(
        C.user_limit(BOB, BTC_USDT, RiskLimit.PRICE_STEP, 5),
        C.user_limit(BOB, BTC_USDT, 0, 5),
        C.user_limit(BOB, BTC_USDT, 8, 5),
        C.user_limit(BOB, BTC_USDT, RiskLimit.MAX_NOTIONAL, -1),
        C.user_limit(MAX_USER_ID + 1, BTC_USDT, RiskLimit.MAX_NOTIONAL, 5),
        C.user_limit(BOB, 9, RiskLimit.MAX_NOTIONAL, 5),
    )
    results, events = c.submit(bad)
    assert results["code"].tolist() == [Result.INVALID_ARGUMENT] * 5 + [Result.UNKNOWN_MARKET]
    assert (results["seq"] == 0).all()
    assert len(events) == 0
    assert served.state_hash() == state
    assert c.user_limits(BOB, BTC_USDT) == wire.UserLimits(BOB, BTC_USDT, 0, 0)


# --------------------------------------------------------------------------- asyncio


def test_the_async_client_runs_the_same_operations(served: Served) -> None:
    rest(served.client, ALICE, BTC_USDT, Side.ASK, 3)
    rest(served.client, ALICE, ETH_BTC, Side.BID, 1)

    async def main() -> tuple[int, int, list[str]]:
        async with AsyncClient(served.endpoint, timeout_s=SLOW_S) as c:
            assert (await c.halt_market(ETH_BTC)).seq > 0
            blocked = await c.block_user(ALICE)
            delisted = await c.delist_market(BTC_USDT)
            statuses = [m.status for m in await c.markets()]
            await c.resume_market(ETH_BTC)
            await c.unblock_user(ALICE)
            assert (await c.set_user_status(ALICE, "active")).seq == 0
            assert (await c.cancel_market_orders(ETH_BTC)).value == 0
            with pytest.raises(ApiError) as info:
                await c.set_market_status(5, "halted")
            assert info.value.code == Result.UNKNOWN_MARKET
            assert (await c.set_market_limit(ETH_BTC, "min_notional", 500)).seq > 0
            assert (await c.set_market_limit(ETH_BTC, RiskLimit.MIN_NOTIONAL, 500)).seq == 0
            with pytest.raises(ApiError) as info:
                await c.set_market_limit(ETH_BTC, "price_band", 10**6)
            assert info.value.code == Result.INVALID_ARGUMENT
            assert (await c.set_user_limit(BOB, ETH_BTC, "max_notional", 700)).seq > 0
            assert (await c.set_user_limit(BOB, ETH_BTC, RiskLimit.MAX_NOTIONAL, 700)).seq == 0
            assert (await c.user_limits(BOB, ETH_BTC)).max_notional == 700
            with pytest.raises(ApiError) as info:
                await c.set_user_limit(FEE, ETH_BTC, "max_order_amount", 1)
            assert info.value.code == Result.FEE_ACCOUNT_CANNOT_TRADE
            return blocked, delisted, statuses

    assert asyncio.run(main()) == (4, 0, ["delisted", "halted"])
    assert [m.status for m in served.client.markets()] == ["delisted", "open"]
    assert served.client.markets()[ETH_BTC].min_notional == 500


# --------------------------------------------------------------------------- matchctl


def ctl(served: Served, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = matchctl.main([*argv, "--endpoint", served.endpoint, "--timeout", str(SLOW_S)])
    out, err = capsys.readouterr()
    return code, out, err


def test_matchctl_halts_delists_and_blocks(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    rest(served.client, ALICE, BTC_USDT, Side.ASK, 3)
    rest(served.client, BOB, ETH_BTC, Side.BID, 1)
    code, out, _ = ctl(served, capsys, "market", "halt", "BTC_USDT")
    assert code == 0
    halted = json.loads(out)
    assert (halted["market"], halted["status"]) == ("BTC_USDT", "halted")
    assert halted["seq"] > 0
    assert json.loads(ctl(served, capsys, "market", "halt", "0")[1])["seq"] == 0
    code, out, _ = ctl(served, capsys, "markets")
    assert [(m["name"], m["status"]) for m in json.loads(out)] == [
        ("BTC_USDT", "halted"),
        ("ETH_BTC", "open"),
    ]
    assert json.loads(ctl(served, capsys, "market", "resume", "BTC_USDT")[1])["status"] == "open"
    code, out, _ = ctl(served, capsys, "market", "delist", "BTC_USDT")
    assert json.loads(out) == {"market": "BTC_USDT", "status": "delisted", "cancelled": 3}
    code, out, _ = ctl(served, capsys, "user", "block", str(BOB))
    assert json.loads(out) == {"user": BOB, "status": "blocked", "cancelled": 1}
    code, out, _ = ctl(served, capsys, "user", "unblock", str(BOB))
    assert json.loads(out)["status"] == "active"
    # The daemon's refusals are exit 1 with the error; usage errors exit 2.
    code, out, err = ctl(served, capsys, "market", "halt", "NOPE_USDT")
    assert (code, out) == (1, "")
    assert json.loads(err)["code"] == Result.UNKNOWN_MARKET
    code, out, err = ctl(served, capsys, "user", "block", str(FEE))
    assert (code, json.loads(err)["code"]) == (1, Result.FEE_ACCOUNT_CANNOT_TRADE)
    with pytest.raises(SystemExit) as info:
        ctl(served, capsys, "market", "close", "BTC_USDT")
    assert info.value.code == 2
    assert "invalid choice: 'close'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ctl(served, capsys, "user", "block", str(MAX_USER_ID + 1))
    assert "is not in 0..4294967295" in capsys.readouterr().err


def test_matchctl_sets_risk_limits_from_decimal_text(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = ctl(served, capsys, "market", "limit", "BTC_USDT", "price_step", "0.050")
    assert code == 0
    done = json.loads(out)
    assert done.pop("seq") > 0
    assert done == {"market": "BTC_USDT", "limit": "price_step", "value": "0.05", "units": 5}
    again = json.loads(ctl(served, capsys, "market", "limit", "0", "price_step", "0.05")[1])
    assert again["seq"] == 0  # it already was
    for argv, units in (
        (("ETH_BTC", "amount_step", "0.05"), 500),  # stock_prec 4: lots
        (("BTC_USDT", "max_notional", "1000"), 1000 * 10**8),  # USDT prec 8: units
        (("BTC_USDT", "min_notional", "10.5"), 1_050_000_000),
        (("BTC_USDT", "max_open_orders", "3"), 3),
        (("BTC_USDT", "price_band", "0.1"), 100_000),
        (("BTC_USDT", "max_order_amount", "2.5"), 2_500_000),  # stock_prec 6: lots
    ):
        code, out, err = ctl(served, capsys, "market", "limit", *argv)
        assert (code, err) == (0, "")
        assert json.loads(out)["units"] == units
    code, out, _ = ctl(served, capsys, "markets")
    btc, eth = json.loads(out)
    assert btc["limits"] == {
        "price_step": "0.05",
        "amount_step": "none",
        "min_notional": "10.5",
        "max_notional": "1000",
        "max_open_orders": "3",
        "price_band": "0.1",
        "max_order_amount": "2.5",
    }
    assert (btc["price_step"], btc["min_notional"], btc["status"]) == (5, 1_050_000_000, "open")
    assert btc["max_order_amount"] == 2_500_000
    assert eth["limits"]["amount_step"] == "0.05"
    code, out, _ = ctl(served, capsys, "market", "limit", "BTC_USDT", "price_band", "none")
    assert json.loads(out)["value"] == "none"
    assert json.loads(out)["units"] == 0
    assert served.client.markets()[BTC_USDT].price_band == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("price_step", "0.001"), "price_step '0.001' has more decimal places than the 2 of "
         "market BTC_USDT's prices (money_prec), so it cannot be represented exactly"),
        (("amount_step", "-1"), "amount_step '-1' is negative"),
        (("max_open_orders", "1.5"), "max_open_orders '1.5' is not a whole number"),
        (("price_band", "1"), "price_band '1' is out of range: 0..0.999999, or none"),
        (("price_step", "0"), "price_step '0' is out of range: 0.01.."),
        (("min_notional", "ten"), "min_notional 'ten': not a decimal number: 'ten'"),
        (("min_notional", "2000"),
         "min_notional 2000 is above market BTC_USDT's max_notional 1000"),
        (("max_order_amount", "0.0000001"), "max_order_amount '0.0000001' has more decimal "
         "places than the 6 of market BTC_USDT's amounts (stock_prec)"),
    ],
)  # fmt: skip
def test_matchctl_refuses_a_limit_it_cannot_convert_before_sending_it(
    served: Served, capsys: pytest.CaptureFixture[str], argv: tuple[str, str], message: str
) -> None:
    served.client.set_market_limit(BTC_USDT, "max_notional", 1000 * 10**8)
    state = served.state_hash()
    code, out, err = ctl(served, capsys, "market", "limit", "BTC_USDT", *argv)
    assert (code, out) == (2, "")
    assert err.startswith("matchctl: market: ")
    assert message in err
    assert served.state_hash() == state  # nothing was sent


def test_matchctl_market_limit_usage(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (("limit", "BTC_USDT"), "limit needs LIMIT (price_step, amount_step, min_notional"),
        (("limit", "BTC_USDT", "price_step"), "limit needs LIMIT"),
        (("halt", "BTC_USDT", "price_step"), "halt takes only MARKET"),
        (("delist", "BTC_USDT", "price_step", "1"), "delist takes only MARKET"),
    ):
        code, out, err = ctl(served, capsys, "market", *argv)
        assert (code, out) == (2, "")
        assert message in err
    with pytest.raises(SystemExit) as info:
        ctl(served, capsys, "market", "limit", "BTC_USDT", "tick", "1")
    assert info.value.code == 2
    assert "invalid choice: 'tick'" in capsys.readouterr().err
    code, out, err = ctl(served, capsys, "market", "limit", "NOPE", "price_step", "1")
    assert (code, json.loads(err)["code"]) == (1, Result.UNKNOWN_MARKET)
    assert [m.price_step for m in served.client.markets()] == [1, 1]


def test_matchctl_sets_and_shows_a_users_own_limits(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = ctl(served, capsys, "user", "limit", str(BOB), "BTC_USDT", "max_order_amount",
                       "0.0020")  # fmt: skip
    assert code == 0
    done = json.loads(out)
    assert done.pop("seq") > 0
    assert done == {
        "user": BOB, "market": "BTC_USDT", "limit": "max_order_amount", "value": "0.002",
        "units": 2000,
    }  # fmt: skip
    again = ctl(served, capsys, "user", "limit", str(BOB), "0", "max_order_amount", "0.002")
    assert json.loads(again[1])["seq"] == 0  # it already was
    code, out, err = ctl(served, capsys, "user", "limit", str(BOB), "BTC_USDT", "max_notional",
                         "400.5")  # fmt: skip
    assert (code, err) == (0, "")
    assert json.loads(out)["units"] == 40_050_000_000  # USDT prec 8
    code, out, _ = ctl(served, capsys, "user", "limits", str(BOB), "BTC_USDT")
    assert code == 0
    assert json.loads(out) == {
        "user": BOB, "market": "BTC_USDT", "max_order_amount": 2000,
        "max_notional": 40_050_000_000,
        "limits": {"max_order_amount": "0.002", "max_notional": "400.5"},
    }  # fmt: skip
    shown = json.loads(ctl(served, capsys, "user", "limits", str(BOB), "ETH_BTC")[1])
    assert shown["limits"] == {"max_order_amount": "none", "max_notional": "none"}
    refused(
        Result.USER_AMOUNT_TOO_LARGE, lambda: served.client.put_limit(BOB, 0, Side.BID, 2001, 10)
    )
    code, out, _ = ctl(served, capsys, "user", "limit", str(BOB), "BTC_USDT", "max_order_amount",
                       "none")  # fmt: skip
    assert (json.loads(out)["value"], json.loads(out)["units"]) == ("none", 0)
    assert served.client.user_limits(BOB, BTC_USDT).max_order_amount == 0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("limit", "BTC_USDT", "max_order_amount", "0.0000001"), 2,
         "max_order_amount '0.0000001' has more decimal places than the 6 of market "
         "BTC_USDT's amounts (stock_prec), so it cannot be represented exactly"),
        (("limit", "BTC_USDT", "max_notional", "-1"), 2, "max_notional '-1' is negative"),
        (("limit", "BTC_USDT", "max_notional", "ten"), 2,
         "max_notional 'ten': not a decimal number: 'ten'"),
        (("limit", "BTC_USDT", "max_order_amount"), 2,
         "limit needs MARKET, LIMIT (max_order_amount, max_notional) and VALUE"),
        (("limit",), 2, "limit needs MARKET, LIMIT"),
        (("limits",), 2, "limits takes USER and MARKET"),
        (("limits", "BTC_USDT", "max_notional"), 2, "limits takes USER and MARKET"),
        (("block", "BTC_USDT"), 2, "block takes only USER"),
        (("limit", "NOPE", "max_notional", "1"), 1, "unknown market 'NOPE'"),
    ],
)  # fmt: skip
def test_matchctl_user_limit_usage_and_refusals(
    served: Served, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], code: int,
    message: str,
) -> None:  # fmt: skip
    state = served.state_hash()
    action, *rest_of = argv
    got, out, err = ctl(served, capsys, "user", action, str(BOB), *rest_of)
    assert (got, out) == (code, "")
    assert message in err
    assert served.state_hash() == state  # nothing was sent, or nothing changed


def test_matchctl_user_limit_choices_and_engine_refusals(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        ctl(served, capsys, "user", "limit", str(BOB), "BTC_USDT", "price_step", "1")
    assert info.value.code == 2
    assert "invalid choice: 'price_step'" in capsys.readouterr().err
    code, out, err = ctl(served, capsys, "user", "limit", str(FEE), "BTC_USDT", "max_notional", "1")
    assert (code, out) == (1, "")
    assert json.loads(err)["code"] == Result.FEE_ACCOUNT_CANNOT_TRADE
