"""A user's own risk limits in a market (USER_LIMIT; docs/engine.md, "User risk limits").

The table is ``accounts[A_ULIMITS]``, int64[capacity, 4] rows of (user, market + 1,
max_order_amount lots, max_notional money units), a row whose market word is 0 free;
open addressing with linear probing over the (user, market) pair, kept at most half
full (capacity is a power of two at least twice ``max_user_limits``). Rows are never
removed: a pair set back to (0, 0) keeps its row. ``counters[COUNTER_USER_LIMITS]``
counts the rows in use, so an engine whose table is empty pays one load per order
(``check_user``).

The limits are the account half's: only the sequencer reads and writes them, and a
USER_LIMIT needs no book half (the daemon runs it alone, with nothing in flight,
like the status commands).
"""

from __future__ import annotations

import numpy as np

from core.kernels import events as evw
from core.kernels import hashmap
from core.kernels.arith import mul3_le
from core.kernels.checks import check_risk
from core.kernels.codes import FEE_ACCOUNT_CANNOT_TRADE, INVALID_ARGUMENT, OK, UNKNOWN_MARKET
from core.kernels.jit import inline, kernel
from core.kernels.layout import A_ULIMITS, MP_DEAL_SCALE, MP_MAX_AMOUNT
from core.schema import (
    COUNTER_USER_LIMITS,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    Result,
    RiskLimit,
)

USER_AMOUNT_TOO_LARGE = int(Result.USER_AMOUNT_TOO_LARGE)
USER_NOTIONAL_TOO_LARGE = int(Result.USER_NOTIONAL_TOO_LARGE)
USER_LIMIT_TABLE_FULL = int(Result.USER_LIMIT_TABLE_FULL)
MAX_ORDER_AMOUNT = int(RiskLimit.MAX_ORDER_AMOUNT)
MAX_NOTIONAL = int(RiskLimit.MAX_NOTIONAL)

UL_USER = 0
UL_MARKET = 1  #: the market + 1 (0: a free row)
UL_AMOUNT = 2  #: lots (0: none)
UL_NOTIONAL = 3  #: money units (0: none)


@inline
def find_row(table: np.ndarray, user: int, m: int) -> int:
    """The row of (user, market ``m``), or -1."""
    mask = table.shape[0] - 1
    i = hashmap.slot_of((user << 16) | m, mask)
    while True:
        key = table[i, UL_MARKET]
        if key == 0:
            return -1
        if key == m + 1 and table[i, UL_USER] == user:
            return i
        i = (i + 1) & mask


@inline
def check_user(accounts, counters, user: int, m: int, lots: int, a: int, b: int, c: int) -> int:
    """The user's own limits in market ``m`` for an order of ``lots`` (0: not held to
    an amount, a market bid) whose value is ``a * b * c`` money units: OK or the
    refusal, amount first. Changes nothing. Without any user limit this is one load:
    the lookup is a kernel of its own, so its loop stays out of the order path."""
    if counters[COUNTER_USER_LIMITS] == 0:
        return OK
    return user_refusal(accounts[A_ULIMITS], user, m, lots, a, b, c)


@kernel
def user_refusal(table, user: int, m: int, lots: int, a: int, b: int, c: int) -> int:
    """``check_user``'s lookup in the table."""
    i = find_row(table, user, m)
    if i < 0:
        return OK
    most = table[i, UL_AMOUNT]
    if most > 0 and lots > most:
        return USER_AMOUNT_TOO_LARGE
    high = table[i, UL_NOTIONAL]
    if high > 0 and not mul3_le(a, b, c, high):
        return USER_NOTIONAL_TOO_LARGE
    return OK


@inline
def check_order_risk(accounts, counters, mp, m: int, user: int, price: int, amount: int) -> int:
    """The market's risk limits, then the user's, for a limit order of ``amount`` lots
    at ``price`` ticks: OK or the refusal."""
    code = check_risk(mp, m, price, amount)
    if code != OK:
        return code
    return check_user(accounts, counters, user, m, amount, price, amount, mp[m, MP_DEAL_SCALE])


@inline
def _value_ok(mp, m: int, which: int, value: int) -> bool:
    if which == MAX_ORDER_AMOUNT:
        return 0 <= value <= mp[m, MP_MAX_AMOUNT]
    if which == MAX_NOTIONAL:
        return 0 <= value <= MAX_SUPPLY_UNITS
    return False


@inline
def set_user_limit(
    accounts, counters, mp, ev, ne: int, cmd, n_markets: int, fee_user: int, max_rows: int
) -> tuple[int, int]:
    """USER_LIMIT ``cmd``: (OK or the refusal, the next event index). The limit
    changes at once; its event (if it changed) waits for the ledger, which leaves its
    ``user`` as it is (a user id: the user needs no account)."""
    user = cmd["user"]
    if user < 0 or user > MAX_USER_ID:
        return INVALID_ARGUMENT, ne
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET, ne
    if user == fee_user:
        return FEE_ACCOUNT_CANNOT_TRADE, ne
    which = cmd["side"]
    value = cmd["amount"]
    if not _value_ok(mp, m, which, value):
        return INVALID_ARGUMENT, ne
    col = UL_AMOUNT if which == MAX_ORDER_AMOUNT else UL_NOTIONAL
    table = accounts[A_ULIMITS]
    i = find_row(table, user, m)
    old = 0 if i < 0 else table[i, col]
    if value == old:
        return OK, ne
    if i < 0:
        if counters[COUNTER_USER_LIMITS] >= max_rows:
            return USER_LIMIT_TABLE_FULL, ne
        mask = table.shape[0] - 1
        i = hashmap.slot_of((user << 16) | m, mask)
        while table[i, UL_MARKET] != 0:
            i = (i + 1) & mask
        table[i, UL_USER] = user
        table[i, UL_MARKET] = m + 1
        counters[COUNTER_USER_LIMITS] += 1
    table[i, col] = value
    ne = evw.emit_status(ev, ne, evw.USER_LIMIT, cmd["ts_ns"], m, user, which, old)
    ev[ne - 1]["left"] = value
    return OK, ne


@kernel
def user_limit_command(accounts, counters, mp, cmds, ev, n_markets: int, fee_user: int, max_rows):
    """``set_user_limit`` for ``cmds[0]``, events from ``ev[0]``: (code, events
    written). The sequencer's way in; ``settle`` follows, and no worker is told."""
    return set_user_limit(accounts, counters, mp, ev, 0, cmds[0], n_markets, fee_user, max_rows)


@kernel
def user_limit_at(accounts, counters, mp, ev, ne: int, cmd, n_markets: int, fee_user, max_rows):
    """``set_user_limit`` as the batch loop calls it: a kernel of its own, so that
    this rare command's loops do not weigh on the loop around every other one."""
    return set_user_limit(accounts, counters, mp, ev, ne, cmd, n_markets, fee_user, max_rows)
