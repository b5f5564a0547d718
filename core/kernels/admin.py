"""Market and user status (docs/engine.md, "Market and user status").

A market's status (``A_MSTATUS``) and a user's (``A_USTATUS``, by account) live with
the accounts: the account half checks them before any funds move, and in the daemon
they are the sequencer's (docs/daemon.md). MARKET_STATUS and USER_STATUS change them
and need no book: ``set_status`` is the whole command, writing one event when the
status changes (the ledger then numbers it) and nothing when it is already so.
``check_status`` is the check of an order command that would add to a book.
"""

from __future__ import annotations

from core.kernels import events as evw
from core.kernels.balance import account_of, add_account
from core.kernels.codes import (
    FEE_ACCOUNT_CANNOT_TRADE,
    INVALID_ARGUMENT,
    MARKET_DELISTED,
    MARKET_DELISTED_STATUS,
    MARKET_HALTED,
    MARKET_OPEN,
    MARKET_STATUS,
    OK,
    UNKNOWN_MARKET,
    USER_ACTIVE,
    USER_BLOCKED,
    USER_BLOCKED_STATUS,
    USER_TABLE_FULL,
)
from core.kernels.jit import inline, kernel
from core.kernels.layout import A_MSTATUS, A_USERS, A_USTATUS, NIL
from core.schema import COUNTER_ACCOUNTS, MAX_USER_ID


@inline
def check_status(accounts, m: int, acct: int) -> int:
    """OK if market ``m`` is open and account ``acct`` (NIL: none) is not blocked, else
    the refusal: the market's first."""
    status = accounts[A_MSTATUS][m]
    if status != MARKET_OPEN:
        return MARKET_DELISTED if status == MARKET_DELISTED_STATUS else MARKET_HALTED
    if acct != NIL and accounts[A_USTATUS][acct] == USER_BLOCKED_STATUS:
        return USER_BLOCKED
    return OK


@inline
def _set_market(accounts, ev, ne: int, cmd, n_markets: int) -> tuple[int, int]:
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET, ne
    new = cmd["amount"]
    if new < MARKET_OPEN or new > MARKET_DELISTED_STATUS:
        return INVALID_ARGUMENT, ne
    old = accounts[A_MSTATUS][m]
    if new == old:
        return OK, ne
    accounts[A_MSTATUS][m] = new
    return OK, evw.emit_status(ev, ne, evw.MARKET_STATUS, cmd["ts_ns"], m, 0, new, old)


@inline
def _set_user(accounts, counters, ev, ne: int, cmd, fee_user: int) -> tuple[int, int]:
    user = cmd["user"]
    new = cmd["amount"]
    if user < 0 or user > MAX_USER_ID or new < USER_ACTIVE or new > USER_BLOCKED_STATUS:
        return INVALID_ARGUMENT, ne
    if user == fee_user:
        return FEE_ACCOUNT_CANNOT_TRADE, ne
    acct = account_of(accounts, user)
    old = USER_ACTIVE if acct == NIL else accounts[A_USTATUS][acct]
    if new == old:
        return OK, ne
    if acct == NIL:  # only blocking gets here: a user without an account is active
        if counters[COUNTER_ACCOUNTS] >= accounts[A_USERS].shape[0]:
            return USER_TABLE_FULL, ne
        acct = add_account(accounts, counters, user)
    accounts[A_USTATUS][acct] = new
    return OK, evw.emit_status(ev, ne, evw.USER_STATUS, cmd["ts_ns"], -1, acct, new, old)


@inline
def set_status(accounts, counters, ev, ne: int, cmd, n_markets: int, fee_user: int):
    """MARKET_STATUS or USER_STATUS ``cmd``: (OK or the refusal, the next event index).
    The status changes at once; its event (if it changed) waits for the ledger."""
    if cmd["kind"] == MARKET_STATUS:
        return _set_market(accounts, ev, ne, cmd, n_markets)
    return _set_user(accounts, counters, ev, ne, cmd, fee_user)


@kernel
def status_command(accounts, counters, cmds, ev, n_markets: int, fee_user: int):
    """``set_status`` for ``cmds[0]``, events from ``ev[0]``: (code, events written).
    The sequencer's way in (docs/daemon.md); ``settle`` follows."""
    return set_status(accounts, counters, ev, 0, cmds[0], n_markets, fee_user)
