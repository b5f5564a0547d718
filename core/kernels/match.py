"""The order commands of docs/engine.md, and the batch loop that runs them.

Each ``cmd_*`` function validates one command (``checks.py``), and if it is accepted
applies it (``settlement.py``), writes its events and returns
``(code, order_id, value, ne)``. A rejected command changes nothing. Balances live in
the ``accounts`` tuple, books in ``book``. ``execute_batch`` stops before a command
whose events might not fit (``bounds.py``).
"""

from __future__ import annotations

from core.kernels import book as bk
from core.kernels import events as evw
from core.kernels import tags
from core.kernels.arith import mul3_le, mul_le
from core.kernels.balance import account_of, available
from core.kernels.bounds import events_bound, reach
from core.kernels.checks import check_order_common, check_target, crosses, fok_fillable, lookup
from core.kernels.codes import (
    AMOUNT_TOO_SMALL,
    ASK,
    BALANCE_NOT_ENOUGH,
    BID,
    BOOK_FULL,
    CANCEL,
    CANCEL_ALL,
    CANCELED,
    EXPIRED,
    FEE_ACCOUNT_CANNOT_TRADE,
    FILLED,
    FOK,
    FOK_NOT_FILLED,
    GTC,
    INVALID_ARGUMENT,
    IOC,
    NO_ENOUGH_TRADER,
    OK,
    POST_ONLY,
    POST_ONLY_WOULD_TAKE,
    PUT_LIMIT,
    PUT_MARKET,
    REPLACE,
    SELF_TRADE,
    TOO_MANY_MATCHES,
)
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    A_BALANCES,
    A_USERS,
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_ORDERS,
    MP_DEAL_SCALE,
    MP_FEE_DEN,
    MP_MAX_AMOUNT,
    MP_MAX_PRICE,
    MP_MIN_AMOUNT,
    MP_MONEY,
    MP_STOCK,
    MP_STOCK_SCALE,
    NIL,
)
from core.kernels.settlement import (
    cancel_resting,
    match_taker,
    order_asset,
    remove_resting,
    reserve_move,
    reserve_of,
)
from core.schema import (
    COUNTER_ORDER_ID,
    COUNTER_SEQ,
    MAX_SUPPLY_UNITS,
    ORDER_FLAG_MARKET,
)


@inline
def _load_taker(book, cmd, slot, oid, acct, price, maker_rate, tif, flags):
    """Write a new order from ``cmd`` into ``slot``; it holds its source tag from now on."""
    o = book[B_ORDERS][slot]
    o["id"] = oid
    o["price"] = price
    o["left"] = cmd["amount"]
    o["deal_money"] = 0
    o["deal_fee"] = 0
    o["next"] = NIL
    o["prev"] = NIL
    o["level"] = NIL
    o["acct"] = acct
    o["maker_rate"] = maker_rate
    o["side"] = cmd["side"]
    o["stp"] = cmd["stp"]
    o["flags"] = flags
    o["tif"] = tif
    c = book[B_INFO][slot]
    c["amount"] = cmd["amount"]
    c["ctime_ns"] = cmd["ts_ns"]
    c["mtime_ns"] = cmd["ts_ns"]
    c["taker_rate"] = cmd["taker_rate"]
    c["unext"] = NIL
    c["uprev"] = NIL
    c["source"] = tags.acquire(book, cmd["source"], cmd["source_len"])


@inline
def _finish_taker(book, accounts, ev, ne, seq, ts, m, slot, reason, deal_stock) -> int:
    """Report a taker that does not rest, and let go of its source tag."""
    ne = evw.emit_order(
        ev, ne, evw.ORDER_FINISH, reason, seq, ts, book, accounts[A_USERS], slot, m, deal_stock
    )
    tags.release(book, book[B_INFO][slot]["source"])
    return ne


@inline
def _rest(book, accounts, ev, ne, seq, ts, m, slot, kind) -> int:
    """Freeze the reserve of the order at ``slot`` and put it on its level."""
    orders = book[B_ORDERS]
    mp = book[B_MPARAMS]
    o = orders[slot]
    r = reserve_of(mp, m, o["side"], o["price"], o["left"])
    ne = reserve_move(accounts, ev, ne, seq, ts, mp, m, o, r)
    bk.level_push(book, m, slot)
    deal_stock = book[B_INFO][slot]["amount"] - o["left"]
    return evw.emit_order(ev, ne, kind, 0, seq, ts, book, accounts[A_USERS], slot, m, deal_stock)


@inline
def cmd_put_limit(
    book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, scratch, max_matches
):
    """PUT_LIMIT; returns (code, order_id, value, ne)."""
    code = check_order_common(cmd, n_markets, fee_user, True)
    if code != OK:
        return code, 0, 0, ne
    m = cmd["market"]
    mp = book[B_MPARAMS]
    side = cmd["side"]
    amount = cmd["amount"]
    price = cmd["price"]
    den = mp[m, MP_FEE_DEN]
    if amount < 1 or amount > mp[m, MP_MAX_AMOUNT] or price < 1 or price > mp[m, MP_MAX_PRICE]:
        return INVALID_ARGUMENT, 0, 0, ne
    if (
        cmd["taker_rate"] < 0
        or cmd["taker_rate"] >= den
        or cmd["maker_rate"] < 0
        or cmd["maker_rate"] >= den
    ):
        return INVALID_ARGUMENT, 0, 0, ne
    acct = account_of(accounts, cmd["user"])
    if side == ASK:
        ok = mul_le(amount, mp[m, MP_STOCK_SCALE], available(accounts, acct, mp[m, MP_STOCK]))
    else:
        avail = available(accounts, acct, mp[m, MP_MONEY])
        ok = mul3_le(price, amount, mp[m, MP_DEAL_SCALE], avail)
    if not ok:
        return BALANCE_NOT_ENOUGH, 0, 0, ne
    if amount < mp[m, MP_MIN_AMOUNT]:
        return AMOUNT_TOO_SMALL, 0, 0, ne
    if (cmd["flags"] & POST_ONLY) != 0 and crosses(book, m, side, price):
        return POST_ONLY_WOULD_TAKE, 0, 0, ne
    if reach(book, m, side, price, amount, False, acct, cmd["stp"], max_matches) > max_matches:
        return TOO_MANY_MATCHES, 0, 0, ne
    if cmd["tif"] == FOK and not fok_fillable(book, m, side, price, acct, cmd["stp"], amount):
        return FOK_NOT_FILLED, 0, 0, ne
    if cmd["tif"] == GTC:
        if not bk.has_free_slot(book, m):
            return BOOK_FULL, 0, 0, ne
        if bk.find_level(book, m, side, price) == NIL and not bk.can_add_level(book, m, side):
            return BOOK_FULL, 0, 0, ne
    counters[COUNTER_SEQ] += 1
    counters[COUNTER_ORDER_ID] += 1
    seq = counters[COUNTER_SEQ]
    oid = counters[COUNTER_ORDER_ID]
    ts = cmd["ts_ns"]
    # A GTC order may rest: it is matched in the pool slot it will rest in (checked free
    # above), so resting copies nothing; other orders use the scratch slot.
    t = bk.alloc_slot(book, m) if cmd["tif"] == GTC else scratch
    _load_taker(book, cmd, t, oid, acct, price, cmd["maker_rate"], cmd["tif"], cmd["flags"])
    ne, _, stopped = match_taker(
        book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, t, price, False
    )
    o = book[B_ORDERS][t]
    if o["left"] > 0 and not stopped and cmd["tif"] == GTC:
        bk.user_link(book, m, t)
        bk.index_put(book, oid, t)
        ne = _rest(book, accounts, ev, ne, seq, ts, m, t, evw.ORDER_PUT)
        return OK, oid, 0, ne
    reason = FILLED if o["left"] == 0 else SELF_TRADE if stopped else EXPIRED
    ne = _finish_taker(
        book, accounts, ev, ne, seq, ts, m, t, reason, book[B_INFO][t]["amount"] - o["left"]
    )
    if t != scratch:
        bk.free_slot(book, m, t)
    return OK, oid, 0, ne


@inline
def cmd_put_market(
    book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, scratch, max_matches
):
    """PUT_MARKET; returns (code, order_id, value, ne)."""
    code = check_order_common(cmd, n_markets, fee_user, False)
    if code != OK:
        return code, 0, 0, ne
    m = cmd["market"]
    mp = book[B_MPARAMS]
    side = cmd["side"]
    amount = cmd["amount"]
    max_amount = mp[m, MP_MAX_AMOUNT] if side == ASK else MAX_SUPPLY_UNITS
    if amount < 1 or amount > max_amount:
        return INVALID_ARGUMENT, 0, 0, ne
    if cmd["taker_rate"] < 0 or cmd["taker_rate"] >= mp[m, MP_FEE_DEN]:
        return INVALID_ARGUMENT, 0, 0, ne
    acct = account_of(accounts, cmd["user"])
    if side == ASK:
        ok = mul_le(amount, mp[m, MP_STOCK_SCALE], available(accounts, acct, mp[m, MP_STOCK]))
    else:
        ok = amount <= available(accounts, acct, mp[m, MP_MONEY])
    if not ok:
        return BALANCE_NOT_ENOUGH, 0, 0, ne
    best = bk.best_level(book, m, 3 - side)
    if best == NIL:
        return NO_ENOUGH_TRADER, 0, 0, ne
    if side == ASK:
        small = amount < mp[m, MP_MIN_AMOUNT]
    else:
        best_price = book[B_LEVELS][best]["price"]
        small = not mul3_le(best_price, mp[m, MP_MIN_AMOUNT], mp[m, MP_DEAL_SCALE], amount)
    if small:
        return AMOUNT_TOO_SMALL, 0, 0, ne
    if reach(book, m, side, 0, amount, True, acct, cmd["stp"], max_matches) > max_matches:
        return TOO_MANY_MATCHES, 0, 0, ne
    counters[COUNTER_SEQ] += 1
    counters[COUNTER_ORDER_ID] += 1
    seq = counters[COUNTER_SEQ]
    oid = counters[COUNTER_ORDER_ID]
    ts = cmd["ts_ns"]
    _load_taker(book, cmd, scratch, oid, acct, 0, 0, IOC, ORDER_FLAG_MARKET)
    ne, filled, stopped = match_taker(
        book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, scratch, 0, True
    )
    if book[B_ORDERS][scratch]["left"] == 0:
        reason = FILLED
    elif stopped:
        reason = SELF_TRADE
    else:
        reason = EXPIRED
    ne = _finish_taker(book, accounts, ev, ne, seq, ts, m, scratch, reason, filled)
    return OK, oid, 0, ne


@inline
def cmd_cancel(book, accounts, ev, ne, cmd, counters, n_markets):
    """CANCEL; returns (code, order_id, value, ne)."""
    code = check_target(cmd, n_markets)
    if code != OK:
        return code, 0, 0, ne
    m = cmd["market"]
    code, slot = lookup(book, accounts, m, cmd["order_id"], cmd["user"])
    if code != OK:
        return code, 0, 0, ne
    counters[COUNTER_SEQ] += 1
    seq = counters[COUNTER_SEQ]
    oid = book[B_ORDERS][slot]["id"]
    ne = cancel_resting(book, accounts, ev, ne, seq, cmd["ts_ns"], m, slot, CANCELED)
    return OK, oid, 0, ne


@inline
def cmd_cancel_all(book, accounts, ev, ne, cmd, counters, n_markets, max_matches):
    """CANCEL_ALL; returns (code, 0, cancelled, ne)."""
    code = check_target(cmd, n_markets)
    if code != OK:
        return code, 0, 0, ne
    if cmd["side"] < 0 or cmd["side"] > BID:
        return INVALID_ARGUMENT, 0, 0, ne
    m = cmd["market"]
    orders = book[B_ORDERS]
    info = book[B_INFO]
    head, count = bk.user_orders(book, m, account_of(accounts, cmd["user"]))
    if count == 0:
        return OK, 0, 0, ne
    slot = head
    while info[slot]["unext"] != NIL:  # walk to the oldest
        slot = info[slot]["unext"]
    seq = 0
    n = 0
    while slot != NIL and n < max_matches:  # at most max_matches: the caller repeats
        newer = info[slot]["uprev"]
        if cmd["side"] == 0 or orders[slot]["side"] == cmd["side"]:
            if seq == 0:
                counters[COUNTER_SEQ] += 1
                seq = counters[COUNTER_SEQ]
            ne = cancel_resting(book, accounts, ev, ne, seq, cmd["ts_ns"], m, slot, CANCELED)
            n += 1
        slot = newer
    return OK, 0, n, ne


@inline
def cmd_replace(book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, max_matches):
    """REPLACE; returns (code, order_id, value, ne)."""
    code = check_target(cmd, n_markets)
    if code != OK:
        return code, 0, 0, ne
    if cmd["user"] == fee_user:
        return FEE_ACCOUNT_CANNOT_TRADE, 0, 0, ne
    m = cmd["market"]
    mp = book[B_MPARAMS]
    price = cmd["price"]
    new_left = cmd["amount"]
    if price < 1 or price > mp[m, MP_MAX_PRICE] or new_left < 1 or new_left > mp[m, MP_MAX_AMOUNT]:
        return INVALID_ARGUMENT, 0, 0, ne
    code, slot = lookup(book, accounts, m, cmd["order_id"], cmd["user"])
    if code != OK:
        return code, 0, 0, ne
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    users = accounts[A_USERS]
    o = orders[slot]
    c = book[B_INFO][slot]
    side = o["side"]
    ts = cmd["ts_ns"]
    old_reserve = reserve_of(mp, m, side, o["price"], o["left"])
    asset = order_asset(mp, m, side)
    if price == o["price"] and new_left <= o["left"]:
        counters[COUNTER_SEQ] += 1
        seq = counters[COUNTER_SEQ]
        diff = old_reserve - reserve_of(mp, m, side, price, new_left)
        if diff > 0:
            ne = reserve_move(accounts, ev, ne, seq, ts, mp, m, o, -diff)
        levels[o["level"]]["total"] -= o["left"] - new_left
        c["amount"] -= o["left"] - new_left
        o["left"] = new_left
        c["mtime_ns"] = ts
        deal_stock = c["amount"] - o["left"]
        ne = evw.emit_order(ev, ne, evw.ORDER_UPDATE, 0, seq, ts, book, users, slot, m, deal_stock)
        return OK, o["id"], 0, ne
    avail = accounts[A_BALANCES][o["acct"], asset, 0] + old_reserve
    if side == ASK:
        ok = mul_le(new_left, mp[m, MP_STOCK_SCALE], avail)
    else:
        ok = mul3_le(price, new_left, mp[m, MP_DEAL_SCALE], avail)
    if not ok:
        return BALANCE_NOT_ENOUGH, 0, 0, ne
    if new_left > o["left"] and new_left < mp[m, MP_MIN_AMOUNT]:
        return AMOUNT_TOO_SMALL, 0, 0, ne
    if (o["flags"] & POST_ONLY) != 0 and crosses(book, m, side, price):
        return POST_ONLY_WOULD_TAKE, 0, 0, ne
    if reach(book, m, side, price, new_left, False, o["acct"], o["stp"], max_matches) > max_matches:
        return TOO_MANY_MATCHES, 0, 0, ne
    needs_level = bk.find_level(book, m, side, price) == NIL
    frees_level = levels[o["level"]]["count"] == 1
    if needs_level and not frees_level and not bk.can_add_level(book, m, side):
        return BOOK_FULL, 0, 0, ne
    counters[COUNTER_SEQ] += 1
    seq = counters[COUNTER_SEQ]
    oid = o["id"]
    ne = reserve_move(accounts, ev, ne, seq, ts, mp, m, o, -old_reserve)
    bk.level_unlink(book, m, slot)
    o["price"] = price
    c["amount"] = c["amount"] - o["left"] + new_left
    o["left"] = new_left
    c["mtime_ns"] = ts
    ne, _, stopped = match_taker(
        book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, slot, price, False
    )
    if o["left"] == 0 or stopped:
        reason = FILLED if o["left"] == 0 else SELF_TRADE
        deal_stock = c["amount"] - o["left"]
        ne = evw.emit_order(
            ev, ne, evw.ORDER_FINISH, reason, seq, ts, book, users, slot, m, deal_stock
        )
        remove_resting(book, m, slot)
    else:
        ne = _rest(book, accounts, ev, ne, seq, ts, m, slot, evw.ORDER_UPDATE)
    return OK, oid, 0, ne


@kernel
def execute_batch(
    book,
    accounts,
    cmds,
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
) -> tuple[int, int]:
    """Apply ``cmds[start:]``, writing events from ``ev[ne0]`` on, until done or the
    event buffer might overflow.

    Returns (next command index, events in the buffer). Results are written per command.
    """
    ne = ne0
    cap = ev.shape[0]
    n = cmds.shape[0]
    i = start
    while i < n:
        cmd = cmds[i]
        if ne + events_bound(book, accounts, cmd, n_markets, cap - ne, max_matches) > cap:
            break  # the caller hands these events on (or grows the buffer) and resumes
        first = ne
        seq_before = counters[COUNTER_SEQ]
        kind = cmd["kind"]
        if kind == PUT_LIMIT:
            code, oid, value, ne = cmd_put_limit(
                book,
                accounts,
                ev,
                ne,
                cmd,
                counters,
                n_markets,
                fee_user,
                fee_acct,
                scratch,
                max_matches,
            )
        elif kind == REPLACE:
            code, oid, value, ne = cmd_replace(
                book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, max_matches
            )
        elif kind == CANCEL:
            code, oid, value, ne = cmd_cancel(book, accounts, ev, ne, cmd, counters, n_markets)
        elif kind == PUT_MARKET:
            code, oid, value, ne = cmd_put_market(
                book,
                accounts,
                ev,
                ne,
                cmd,
                counters,
                n_markets,
                fee_user,
                fee_acct,
                scratch,
                max_matches,
            )
        elif kind == CANCEL_ALL:
            code, oid, value, ne = cmd_cancel_all(
                book, accounts, ev, ne, cmd, counters, n_markets, max_matches
            )
        else:
            code, oid, value = INVALID_ARGUMENT, 0, 0
        r = results[i]
        r["code"] = code
        r["order_id"] = oid
        r["value"] = value
        r["seq"] = counters[COUNTER_SEQ] if counters[COUNTER_SEQ] != seq_before else 0
        r["event_start"] = first
        r["event_count"] = ne - first
        i += 1
    return i, ne
