"""The market operations as written once, without I/O (ipc/market_ops.py): the frames
of calls each operation makes, how it repeats its cancels until none is left, and
how a refusal ends it. A scripted answerer stands for the engine here; the same
operations run against a real server in tests/unit/daemon/test_market_ops.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from core.schema import MarketStatus, Result, RiskLimit, UserStatus
from ipc import market_ops as ops
from ipc import wire
from ipc.client import ApiError
from tests.support.scenario import make_config

MARKETS = [wire.MarketInfo.from_market(m) for m in make_config().markets]  # 2 markets


class Script:
    """Answers each frame of calls: a status call is OK (seq 0 if ``unchanged``), a
    cancel call cancels what ``left`` says is left (at most ``per_call``), or the
    first call of a kind in ``refuse`` gets that code. Records every frame."""

    def __init__(self, left: dict[int, int], per_call: int = 3) -> None:
        self.left = dict(left)
        self.per_call = per_call
        self.frames: list[list[wire.Call]] = []
        self.refuse: dict[type[wire.Call], Result] = {}
        self.seq = 0

    def __call__(self, calls: list[wire.Call]) -> list[wire.Reply]:
        self.frames.append(list(calls))
        return [self._answer(c) for c in calls]

    def _answer(self, call: wire.Call) -> wire.Reply:
        code = self.refuse.pop(type(call), None)
        if code is not None:
            return wire.make_reply(call, code)
        if isinstance(call, wire.MarketList):
            return wire.make_reply(call, Result.OK, MARKETS)
        value = 0
        if isinstance(call, wire.MarketCancelOrders | wire.CancelAll):
            value = min(self.per_call, self.left.get(call.market, 0))
            self.left[call.market] = self.left.get(call.market, 0) - value
        self.seq += 1
        return wire.make_reply(call, Result.OK, wire.CommandDone(self.seq, 0, value))

    def ops(self) -> list[list[str]]:
        return [[wire.op_of(c) for c in frame] for frame in self.frames]


def test_halt_and_resume_are_one_call_each() -> None:
    script = Script({})
    done = ops.run(ops.set_market_status(1, MarketStatus.HALTED), script)
    assert done.seq == 1
    ops.run(ops.set_market_status(1, "open"), script)
    assert script.frames == [[wire.MarketSetStatus(1, "halted")], [wire.MarketSetStatus(1, "open")]]


def test_delist_sets_the_status_then_cancels_until_nothing_is_left() -> None:
    script = Script({1: 7}, per_call=3)
    assert ops.run(ops.delist(1), script) == 7
    assert script.frames == [
        [wire.MarketSetStatus(1, "delisted")],
        *[[wire.MarketCancelOrders(1, 0)]] * 4,  # 3, 3, 1, then 0: none left
    ]
    # Run again (say after a crash): the status changes nothing, one empty cancel.
    again = Script({1: 0})
    assert ops.run(ops.delist(1), again) == 0
    assert again.ops() == [["market.set_status"], ["market.cancel_orders"]]


def test_the_kill_switch_blocks_then_cancels_in_every_market_one_frame_a_round() -> None:
    script = Script({0: 4, 1: 1}, per_call=3)
    assert ops.run(ops.block(7), script) == 5
    assert script.frames == [
        [wire.UserSetStatus(7, "blocked"), wire.MarketList()],
        [wire.CancelAll(7, 0, 0), wire.CancelAll(7, 1, 0)],  # 3 and 1
        [wire.CancelAll(7, 0, 0), wire.CancelAll(7, 1, 0)],  # 1 and 0: market 1 is done
        [wire.CancelAll(7, 0, 0)],  # 0: done
    ]


def test_the_kill_switch_splits_a_round_into_frames_of_max_calls() -> None:
    script = Script({0: 2, 1: 2}, per_call=5)
    assert ops.run(ops.block(7, max_calls=1), script) == 4
    markets = [[c.market for c in f if isinstance(c, wire.CancelAll)] for f in script.frames[1:]]
    assert markets == [[0], [1], [0], [1]]


def test_a_risk_limit_is_one_call_by_name_or_risk_limit() -> None:
    script = Script({})
    assert ops.run(ops.set_market_limit(1, "price_step", 5), script).seq == 1
    ops.run(ops.set_market_limit(0, RiskLimit.PRICE_BAND, 0), script)
    assert script.frames == [
        [wire.MarketSetLimit(1, "price_step", 5)],
        [wire.MarketSetLimit(0, "price_band", 0)],
    ]
    script.refuse[wire.MarketSetLimit] = Result.INVALID_ARGUMENT
    with pytest.raises(ApiError) as info:
        ops.run(ops.set_market_limit(0, "amount_step", 10**18), script)
    assert (info.value.op, info.value.code, info.value.viabtc) == ("market.set_limit", 1001, 1)


def test_a_user_limit_is_one_call_by_name_or_risk_limit() -> None:
    script = Script({})
    assert ops.run(ops.set_user_limit(7, 1, "max_order_amount", 5), script).seq == 1
    ops.run(ops.set_user_limit(7, 0, RiskLimit.MAX_NOTIONAL, 0), script)
    assert script.frames == [
        [wire.UserSetLimit(7, 1, "max_order_amount", 5)],
        [wire.UserSetLimit(7, 0, "max_notional", 0)],
    ]
    script.refuse[wire.UserSetLimit] = Result.USER_LIMIT_TABLE_FULL
    with pytest.raises(ApiError) as info:
        ops.run(ops.set_user_limit(8, 0, "max_notional", 10), script)
    assert (info.value.op, info.value.code, info.value.viabtc) == ("user.set_limit", 9008, 3)


def test_unblock_is_one_call() -> None:
    script = Script({})
    ops.run(ops.set_user_status(7, UserStatus.ACTIVE), script)
    assert script.frames == [[wire.UserSetStatus(7, "active")]]


@pytest.mark.parametrize(
    ("operation", "refused", "code", "frames"),
    [
        (lambda: ops.delist(5), wire.MarketSetStatus, Result.UNKNOWN_MARKET, 1),
        (lambda: ops.delist(1), wire.MarketCancelOrders, Result.NOT_PRIMARY, 2),
        (lambda: ops.block(0), wire.UserSetStatus, Result.FEE_ACCOUNT_CANNOT_TRADE, 1),
        (lambda: ops.block(7), wire.MarketList, Result.INTERNAL_ERROR, 1),
        (lambda: ops.block(7), wire.CancelAll, Result.SERVICE_UNAVAILABLE, 2),
    ],
)
def test_a_refused_step_ends_the_operation_with_api_error(
    operation: Callable[[], ops.Operation[int]], refused: type[wire.Call], code: Result, frames: int
) -> None:
    script = Script({0: 5, 1: 5})
    script.refuse[refused] = code
    with pytest.raises(ApiError) as info:
        ops.run(operation(), script)
    assert (info.value.code, info.value.op) == (code, wire.op_of(refused))
    assert len(script.frames) == frames  # nothing after the refusal


def test_a_bad_status_raises_before_any_call() -> None:
    script = Script({})
    with pytest.raises(ValueError, match="none of open, halted, delisted"):
        ops.run(ops.set_market_status(0, "closed"), script)
    with pytest.raises(ValueError, match="none of active, blocked"):
        ops.run(ops.set_user_status(0, 3), script)
    with pytest.raises(ValueError, match="risk limit 'tick' is none of price_step"):
        ops.run(ops.set_market_limit(0, "tick", 5), script)
    with pytest.raises(ValueError, match="risk limit 8 is none of"):
        ops.run(ops.set_market_limit(0, 8, 5), script)
    with pytest.raises(ValueError, match="user risk limit 'price_step' is none of max_order"):
        ops.run(ops.set_user_limit(7, 0, "price_step", 5), script)
    with pytest.raises(ValueError, match="user risk limit 'min_notional' is none of"):
        ops.run(ops.set_user_limit(7, 0, RiskLimit.MIN_NOTIONAL, 5), script)
    with pytest.raises(ValueError, match="value -5 must be an int >= 0"):
        ops.run(ops.set_user_limit(7, 0, "max_notional", -5), script)
    with pytest.raises(ValueError, match="value -5 must be an int >= 0"):
        ops.run(ops.set_market_limit(0, "price_step", -5), script)
    assert script.frames == []


def test_the_async_driver_runs_the_same_operation() -> None:
    script = Script({0: 4, 1: 2}, per_call=3)

    async def answer(calls: list[wire.Call]) -> list[wire.Reply]:
        await asyncio.sleep(0)
        return script(calls)

    assert asyncio.run(ops.arun(ops.block(7), answer)) == 6
    assert len(script.frames) == 4
