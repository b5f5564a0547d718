"""The order commands of docs/engine.md, and the batch loop that runs them.

Every command has two halves and a settlement. The **account half**
(``account_side.py``) makes the checks that need balances and finds the user's
account; the **book half** (``book_side.py``) makes the checks that need the book
and, when the command is accepted, changes the book and writes the command's events
without touching a balance; the **ledger** (``ledger.py``) then applies the events to
the balances and numbers them. A rejected command changes nothing.

``execute_batch`` runs the three for each command in turn. The daemon runs the same
kernels in different processes (docs/daemon.md): the sequencer the account half and
the ledger, the market's pair worker the book half.
"""

from __future__ import annotations

from core.kernels import client_ids
from core.kernels.account_side import fill_level, fill_work, pre_one
from core.kernels.admin import set_status
from core.kernels.balance import account_of
from core.kernels.book_side import book_one
from core.kernels.bounds import events_bound
from core.kernels.codes import (
    MARKET_LIMIT,
    MARKET_STATUS,
    OK,
    PUT_LIMIT,
    PUT_MARKET,
    QUOTE,
    USER_LIMIT,
    USER_STATUS,
)
from core.kernels.jit import inline, kernel
from core.kernels.layout import B_MPARAMS, NIL
from core.kernels.ledger import settle
from core.kernels.limits import set_limit
from core.kernels.quote import book_quote, group_levels, pre_quote, quote_new_orders
from core.kernels.user_limits import user_limit_at
from core.schema import COUNTER_ORDER_ID, MAX_USER_ID


@inline
def execute_one(
    book, accounts, ev, ne, cmd, w, acct, counters, n_markets, fee_user, fee_acct, scratch, mm,
    max_cids, max_uls,
):  # fmt: skip
    """Both halves of ``cmd`` for the account ``acct``, through the work record ``w``
    (scratch); returns (code, order_id, value, ne): for REPEAT_ORDER the order the
    client id names. The ledger has not run yet."""
    kind = cmd["kind"]
    if kind == MARKET_STATUS or kind == USER_STATUS:  # noqa: SIM109 -- numba
        code, ne = set_status(accounts, counters, ev, ne, cmd, n_markets, fee_user)
        return code, 0, 0, ne  # no book half
    mp = book[B_MPARAMS]
    if kind == MARKET_LIMIT:  # the parameters both halves read: here, one array
        code, ne = set_limit(mp, ev, ne, cmd, n_markets)
        return code, 0, 0, ne
    if kind == USER_LIMIT:  # the account half's alone
        code, ne = user_limit_at(
            accounts, counters, mp, ev, ne, cmd, n_markets, fee_user, max_uls
        )  # fmt: skip
        return code, 0, 0, ne
    code, named = pre_one(accounts, counters, mp, cmd, acct, n_markets, fee_user, max_cids)
    if code != OK:
        return code, named, 0, ne
    fill_work(accounts, mp, cmd, acct, w)
    w["new_id"] = counters[COUNTER_ORDER_ID] + 1
    code, oid, value, ne = book_one(book, ev, ne, w, fee_acct, scratch, mm)
    if code == OK and (kind == PUT_LIMIT or kind == PUT_MARKET):  # noqa: SIM109 -- numba
        counters[COUNTER_ORDER_ID] = oid  # the book took the new order
        client_ids.record(accounts, counters, cmd["user"], cmd["order_id"], oid)
    return code, oid, value, ne


@kernel
def execute_quote(
    book, accounts, ev, ne, cmds, i, work, results, acct, counters, n_markets, fee_user
):  # fmt: skip
    """Both halves of the QUOTE at ``cmds[i]`` with its levels, through the work records
    ``work[0 : k + 1]`` (scratch); returns (code, value, k, ne), k the level records
    it took (0 when they do not follow it). Each level's ``results`` row gets its
    order id and action. The ledger has not run yet. A kernel of its own: inlined,
    this rare branch made the batch loop around every other command slower."""
    mp = book[B_MPARAMS]
    k = group_levels(cmds, i)
    code = pre_quote(accounts, counters, mp, cmds, i, k, acct, n_markets, fee_user)
    k = max(k, 0)
    if code != OK:
        for j in range(1, k + 1):
            results[i + j]["order_id"] = 0
            results[i + j]["value"] = 0
        return code, 0, k, ne
    fill_work(accounts, mp, cmds[i], acct, work[0])
    work[0]["new_id"] = counters[COUNTER_ORDER_ID] + 1
    for j in range(1, k + 1):
        fill_level(cmds[i + j], work[j])
    code, value, ne = book_quote(book, ev, ne, work, 0, k, results, i)
    if code == OK:
        counters[COUNTER_ORDER_ID] += quote_new_orders(results, i, k)
    return code, value, k, ne


@inline
def _write_result(results, i, code, oid, value, seq, first, ne) -> None:
    r = results[i]
    r["code"] = code
    r["order_id"] = oid
    r["value"] = value
    r["seq"] = seq
    r["event_start"] = first
    r["event_count"] = ne - first


@kernel
def execute_batch(
    book,
    accounts,
    cmds,
    work,
    results,
    ev,
    start,
    ne0,
    counters,
    n_markets,
    fee_user,
    fee_acct,
    scratch,
    max_matches,
    max_cids,
    max_uls,
) -> tuple[int, int]:
    """Apply ``cmds[start:]``, writing events from ``ev[ne0]`` on, until done or the
    event buffer might overflow.

    Returns (next command index, events in the buffer). Results are written per command.
    ``work`` is WORK_DTYPE scratch, at least 1 + MAX_GROUP_LEVELS records: the book
    half takes its command as a pair worker does (a QUOTE with its levels). A
    command that wrote events changed the state: it gets the next sequence number,
    and the ledger settles its events. ``max_cids`` bounds the
    client order id table (``client_ids.py``), ``max_uls`` the user risk limit table
    (``user_limits.py``).
    """
    ne = ne0
    cap = ev.shape[0]
    n = cmds.shape[0]
    i = start
    while i < n:
        cmd = cmds[i]
        user = cmd["user"]
        acct = account_of(accounts, user) if 0 <= user <= MAX_USER_ID else NIL
        if ne + events_bound(book, acct, cmd, n_markets, cap - ne, max_matches) > cap:
            break  # the caller hands these events on (or grows the buffer) and resumes
        first = ne
        if cmd["kind"] == QUOTE:  # one command of 1 + k records
            code, value, k, ne = execute_quote(
                book, accounts, ev, ne, cmds, i, work, results, acct, counters, n_markets,
                fee_user,
            )  # fmt: skip
            seq = settle(accounts, ev, first, ne, counters)
            _write_result(results, i, code, 0, value, seq, first, ne)
            for j in range(i + 1, i + k + 1):
                oid, value = results[j]["order_id"], results[j]["value"]
                _write_result(results, j, code, oid, value, 0, ne, ne)
            i += k + 1
            continue
        code, oid, value, ne = execute_one(
            book,
            accounts,
            ev,
            ne,
            cmd,
            work[0],
            acct,
            counters,
            n_markets,
            fee_user,
            fee_acct,
            scratch,
            max_matches,
            max_cids,
            max_uls,
        )
        seq = settle(accounts, ev, first, ne, counters)
        _write_result(results, i, code, oid, value, seq, first, ne)
        i += 1
    return i, ne
