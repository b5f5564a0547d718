"""Halting, delisting and the kill switch: compositions of journaled commands, done by
the client (docs/protocol.md, "Market operations"; docs/operations.md).

The engine has five admin commands (``ipc.wire_calls.AdminCall``): set a market's
status, set a user's status, cancel some of a market's resting orders, set one of a
market's risk limits and set one of a user's own in a market (one command each:
``set_market_limit``, ``set_user_limit``). The operations an operator wants are
sequences of them and of ``order.cancel_all``:

* halt: the market's status to "halted"; resume: back to "open";
* delist: the status to "delisted", then ``market.cancel_orders`` until it cancels
  nothing (no order can rest on a delisted market, so this ends);
* block (the kill switch): the user's status to "blocked", then, in every market,
  ``order.cancel_all`` for the user until it cancels nothing (a blocked user can
  place nothing, so this ends too); unblock: back to "active".

Each step is its own journaled command, so a crash half way leaves a consistent
state (a halted market with some orders left, a blocked user with some orders left),
and running the same operation again finishes it: setting a status it already has
changes nothing (OK, seq 0) and the cancels go on from what is left.

The operations are written once, without I/O, as generators: each yields the calls
of its next frame and is sent their replies, and returns its result. The sync and
asyncio clients (``run`` / ``arun``) and the HTTP gateway drive the same code. A
refused call ends the operation with ``ApiError`` (what ran before it stays done).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Final, TypeVar

from core.schema import MarketStatus, RiskLimit, UserStatus
from ipc.client_common import ApiError
from ipc.market_limits import limit_name, user_limit_name
from ipc.wire import (
    DEFAULT_LIMITS,
    Call,
    CancelAll,
    CommandDone,
    MarketCancelOrders,
    MarketInfo,
    MarketList,
    MarketSetLimit,
    MarketSetStatus,
    Reply,
    UserSetLimit,
    UserSetStatus,
    market_status_name,
    op_of,
    user_status_name,
)

T = TypeVar("T")
#: An operation: yields the calls of a frame, is sent their replies (one each, in
#: order), returns its result.
Operation = Generator[list[Call], list[Reply], T]

#: Calls in one frame at most (the wire's default ``max_calls``).
MAX_CALLS: Final = DEFAULT_LIMITS.max_calls


def done(call: Call, reply: Reply) -> CommandDone:
    """The CommandDone of an accepted command call, or ``ApiError``."""
    if not reply.ok:
        raise ApiError(op_of(call), reply.code, reply.viabtc, reply.message, reply.order_id)
    result: CommandDone = reply.result_as(call)
    return result


def set_market_status(market: int, status: MarketStatus | int | str) -> Operation[CommandDone]:
    """One ``market.set_status`` (halt: "halted", resume: "open"); a status that is
    no market status raises ``ValueError`` before anything is sent."""
    call = MarketSetStatus(market, market_status_name(status))
    (reply,) = yield [call]
    return done(call, reply)


def set_user_status(user: int, status: UserStatus | int | str) -> Operation[CommandDone]:
    """One ``user.set_status`` (unblock: "active"); as ``set_market_status``."""
    call = UserSetStatus(user, user_status_name(status))
    (reply,) = yield [call]
    return done(call, reply)


def set_market_limit(
    market: int, limit: RiskLimit | int | str, value: int
) -> Operation[CommandDone]:
    """One ``market.set_limit``: ``market``'s risk limit ``limit`` (a ``RiskLimit`` or
    its name, e.g. "price_step") to ``value`` in engine units (``seq`` 0: it already
    was); an unknown limit or a negative value raises ``ValueError`` before anything
    is sent (``ipc.market_limits.limit_value`` converts decimal text)."""
    call = MarketSetLimit(market, limit_name(limit), value)
    (reply,) = yield [call]
    return done(call, reply)


def set_user_limit(
    user: int, market: int, limit: RiskLimit | int | str, value: int
) -> Operation[CommandDone]:
    """One ``user.set_limit``: ``user``'s own risk limit ``limit`` in ``market``
    ("max_order_amount", lots, or "max_notional", money units; or their
    ``RiskLimit``) to ``value`` in engine units, 0 for none (``seq`` 0: it already
    was); another limit or a negative value raises ``ValueError`` before anything is
    sent (``ipc.market_limits.limit_value`` converts decimal text)."""
    call = UserSetLimit(user, market, user_limit_name(limit), value)
    (reply,) = yield [call]
    return done(call, reply)


def delist(market: int) -> Operation[int]:
    """Delist ``market`` and cancel every resting order in it; the number cancelled."""
    yield from set_market_status(market, "delisted")
    cancelled = 0
    while True:
        call = MarketCancelOrders(market, 0)
        (reply,) = yield [call]
        count = done(call, reply).value
        if not count:
            return cancelled
        cancelled += count


def block(user: int, max_calls: int = MAX_CALLS) -> Operation[int]:
    """The kill switch: block ``user``, then cancel the user's orders in every market
    (one frame of ``order.cancel_all`` calls per round, at most ``max_calls`` each,
    for the markets where the last one cancelled something); the number cancelled."""
    status = UserSetStatus(user, "blocked")
    listing = MarketList()
    replies = yield [status, listing]
    done(status, replies[0])
    if not replies[1].ok:
        done(listing, replies[1])  # raises: the reply is an error
    markets: list[MarketInfo] = replies[1].result_as(listing)
    waiting = [m.index for m in markets]
    cancelled = 0
    while waiting:
        calls = [CancelAll(user, m, 0) for m in waiting[:max_calls]]
        replies = yield list(calls)
        again = []
        for call, reply in zip(calls, replies, strict=True):
            count = done(call, reply).value
            cancelled += count
            if count:
                again.append(call.market)
        waiting = waiting[max_calls:] + again  # every market before any a second time
    return cancelled


def run(operation: Operation[T], call: Callable[[list[Call]], list[Reply]]) -> T:
    """Drive ``operation`` with ``call`` (one frame of calls -> their replies)."""
    try:
        calls = next(operation)
        while True:
            calls = operation.send(call(calls))
    except StopIteration as stop:
        result: T = stop.value
        return result


async def arun(operation: Operation[T], call: Callable[[list[Call]], Awaitable[list[Reply]]]) -> T:
    """``run`` with an asynchronous ``call``."""
    try:
        calls = next(operation)
        while True:
            calls = operation.send(await call(calls))
    except StopIteration as stop:
        result: T = stop.value
        return result


__all__ = [
    "MAX_CALLS",
    "Operation",
    "arun",
    "block",
    "delist",
    "done",
    "run",
    "set_market_limit",
    "set_market_status",
    "set_user_limit",
    "set_user_status",
]
