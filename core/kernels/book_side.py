"""The book half of the order commands (docs/daemon.md, "Sequencer and pair workers").

Each ``book_*`` function takes a command whose account checks (``account_side.py``)
passed, makes the checks that need the book in the order docs/engine.md lists them,
and when the book accepts the command changes the book and writes its events. It
never reads or writes a balance: balance moves are BALANCE events holding only their
change, and the ledger (``ledger.py``) applies them. What it needs from the accounts
comes with the call: the user's account index, the id a new order gets, and for
REPLACE the user's available balances of the market's two assets. A refused command
changes nothing.
"""

from __future__ import annotations

from core.kernels import book as bk
from core.kernels import events as evw
from core.kernels import tags
from core.kernels.arith import mul3_le, mul_le
from core.kernels.bounds import reach
from core.kernels.checks import crosses, fok_fillable, lookup, outside_band
from core.kernels.codes import (
    AMOUNT_TOO_SMALL,
    ASK,
    BALANCE_NOT_ENOUGH,
    BID,
    BOOK_FULL,
    CANCEL,
    CANCEL_ALL,
    CANCEL_MARKET,
    CANCELED,
    EXPIRED,
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
    PRICE_OUTSIDE_BAND,
    PUT_LIMIT,
    PUT_MARKET,
    REPLACE,
    SELF_TRADE,
    TOO_MANY_MATCHES,
    TOO_MANY_OPEN_ORDERS,
)
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_ORDERS,
    MP_DEAL_SCALE,
    MP_MAX_OPEN_ORDERS,
    MP_MIN_AMOUNT,
    MP_STOCK_SCALE,
    NIL,
)
from core.kernels.settlement import (
    cancel_resting,
    match_taker,
    remove_resting,
    reserve_move,
    reserve_of,
)
from core.schema import ORDER_FLAG_MARKET


@inline
def init_order(book, slot, oid, acct, side, price, amount, maker_rate, stp, flags, tif, src):
    """Write a new order into ``slot``: ``src`` (a command) gives its time, taker rate
    and source tag, which it holds from now on."""
    o = book[B_ORDERS][slot]
    o["id"] = oid
    o["price"] = price
    o["left"] = amount
    o["deal_money"] = 0
    o["deal_fee"] = 0
    o["next"] = NIL
    o["prev"] = NIL
    o["level"] = NIL
    o["acct"] = acct
    o["maker_rate"] = maker_rate
    o["side"] = side
    o["stp"] = stp
    o["flags"] = flags
    o["tif"] = tif
    c = book[B_INFO][slot]
    c["amount"] = amount
    c["ctime_ns"] = src["ts_ns"]
    c["mtime_ns"] = src["ts_ns"]
    c["taker_rate"] = src["taker_rate"]
    c["unext"] = NIL
    c["uprev"] = NIL
    c["source"] = tags.acquire(book, src["source"], src["source_len"])


@inline
def _load_taker(book, cmd, slot, oid, acct, price, maker_rate, tif, flags):
    """Write a new order from ``cmd`` into ``slot``."""
    init_order(
        book, slot, oid, acct, cmd["side"], price, cmd["amount"], maker_rate, cmd["stp"], flags,
        tif, cmd,
    )  # fmt: skip


@inline
def _finish_taker(book, ev, ne, ts, m, slot, reason, deal_stock) -> int:
    """Report a taker that does not rest, and let go of its source tag."""
    ne = evw.emit_order(ev, ne, evw.ORDER_FINISH, reason, ts, book, slot, m, deal_stock)
    tags.release(book, book[B_INFO][slot]["source"])
    return ne


@inline
def rest_order(book, ev, ne, ts, m, slot, kind) -> int:
    """Freeze the reserve of the order at ``slot`` and put it on its level."""
    orders = book[B_ORDERS]
    mp = book[B_MPARAMS]
    o = orders[slot]
    r = reserve_of(mp, m, o["side"], o["price"], o["left"])
    ne = reserve_move(ev, ne, ts, mp, m, o, r)
    bk.level_push(book, m, slot)
    deal_stock = book[B_INFO][slot]["amount"] - o["left"]
    return evw.emit_order(ev, ne, kind, 0, ts, book, slot, m, deal_stock)


@inline
def book_put_limit(book, ev, ne, cmd, acct, oid, fee_acct, scratch, max_matches):
    """PUT_LIMIT on the book, its account checks passed; returns (code, ne).

    ``oid`` is the id the order gets if the book accepts it.
    """
    m = cmd["market"]
    side = cmd["side"]
    amount = cmd["amount"]
    price = cmd["price"]
    if outside_band(book, m, price):
        return PRICE_OUTSIDE_BAND, ne
    if (cmd["flags"] & POST_ONLY) != 0 and crosses(book, m, side, price):
        return POST_ONLY_WOULD_TAKE, ne
    if reach(book, m, side, price, amount, False, acct, cmd["stp"], max_matches) > max_matches:
        return TOO_MANY_MATCHES, ne
    if cmd["tif"] == FOK and not fok_fillable(book, m, side, price, acct, cmd["stp"], amount):
        return FOK_NOT_FILLED, ne
    if cmd["tif"] == GTC:
        if not bk.has_free_slot(book, m):
            return BOOK_FULL, ne
        if bk.find_level(book, m, side, price) == NIL and not bk.can_add_level(book, m, side):
            return BOOK_FULL, ne
        most = book[B_MPARAMS][m, MP_MAX_OPEN_ORDERS]
        if most > 0 and bk.user_orders(book, m, acct)[1] >= most:
            return TOO_MANY_OPEN_ORDERS, ne
    ts = cmd["ts_ns"]
    # A GTC order may rest: it is matched in the pool slot it will rest in (checked free
    # above), so resting copies nothing; other orders use the scratch slot.
    t = bk.alloc_slot(book, m) if cmd["tif"] == GTC else scratch
    _load_taker(book, cmd, t, oid, acct, price, cmd["maker_rate"], cmd["tif"], cmd["flags"])
    ne, _, stopped = match_taker(book, ev, ne, ts, fee_acct, m, t, price, False)
    o = book[B_ORDERS][t]
    if o["left"] > 0 and not stopped and cmd["tif"] == GTC:
        bk.user_link(book, m, t)
        bk.index_put(book, oid, t)
        return OK, rest_order(book, ev, ne, ts, m, t, evw.ORDER_PUT)
    reason = FILLED if o["left"] == 0 else SELF_TRADE if stopped else EXPIRED
    ne = _finish_taker(book, ev, ne, ts, m, t, reason, book[B_INFO][t]["amount"] - o["left"])
    if t != scratch:
        bk.free_slot(book, m, t)
    return OK, ne


@inline
def book_put_market(book, ev, ne, cmd, acct, oid, fee_acct, scratch, max_matches):
    """PUT_MARKET on the book, its account checks passed; returns (code, ne)."""
    m = cmd["market"]
    mp = book[B_MPARAMS]
    side = cmd["side"]
    amount = cmd["amount"]
    best = bk.best_level(book, m, 3 - side)
    if best == NIL:
        return NO_ENOUGH_TRADER, ne
    if side == ASK:
        small = amount < mp[m, MP_MIN_AMOUNT]
    else:
        best_price = book[B_LEVELS][best]["price"]
        small = not mul3_le(best_price, mp[m, MP_MIN_AMOUNT], mp[m, MP_DEAL_SCALE], amount)
    if small:
        return AMOUNT_TOO_SMALL, ne
    if reach(book, m, side, 0, amount, True, acct, cmd["stp"], max_matches) > max_matches:
        return TOO_MANY_MATCHES, ne
    ts = cmd["ts_ns"]
    _load_taker(book, cmd, scratch, oid, acct, 0, 0, IOC, ORDER_FLAG_MARKET)
    ne, filled, stopped = match_taker(book, ev, ne, ts, fee_acct, m, scratch, 0, True)
    if book[B_ORDERS][scratch]["left"] == 0:
        reason = FILLED
    elif stopped:
        reason = SELF_TRADE
    else:
        reason = EXPIRED
    return OK, _finish_taker(book, ev, ne, ts, m, scratch, reason, filled)


@inline
def book_cancel(book, ev, ne, cmd, acct):
    """CANCEL on the book; returns (code, order_id, ne)."""
    m = cmd["market"]
    code, slot = lookup(book, m, cmd["order_id"], acct)
    if code != OK:
        return code, 0, ne
    oid = book[B_ORDERS][slot]["id"]
    return OK, oid, cancel_resting(book, ev, ne, cmd["ts_ns"], m, slot, CANCELED)


@inline
def book_cancel_all(book, ev, ne, cmd, acct, max_matches):
    """CANCEL_ALL on the book; returns (code, cancelled, ne)."""
    m = cmd["market"]
    orders = book[B_ORDERS]
    info = book[B_INFO]
    head, count = bk.user_orders(book, m, acct)
    if count == 0:
        return OK, 0, ne
    slot = head
    while info[slot]["unext"] != NIL:  # walk to the oldest
        slot = info[slot]["unext"]
    n = 0
    while slot != NIL and n < max_matches:  # at most max_matches: the caller repeats
        newer = info[slot]["uprev"]
        if cmd["side"] == 0 or orders[slot]["side"] == cmd["side"]:
            ne = cancel_resting(book, ev, ne, cmd["ts_ns"], m, slot, CANCELED)
            n += 1
        slot = newer
    return OK, n, ne


@inline
def book_cancel_market(book, ev, ne, cmd, max_matches):
    """CANCEL_MARKET on the book: up to ``max_matches`` resting orders of the market,
    any user's, asks before bids (side 0), each side from its best level and each
    level oldest first; returns (code, cancelled, ne)."""
    m = cmd["market"]
    n = 0
    for side in (ASK, BID):
        if cmd["side"] != 0 and cmd["side"] != side:
            continue
        while n < max_matches:  # at most max_matches: the caller repeats
            lv = bk.best_level(book, m, side)
            if lv == NIL:
                break
            slot = book[B_LEVELS][lv]["head"]
            ne = cancel_resting(book, ev, ne, cmd["ts_ns"], m, slot, CANCELED)
            n += 1
    return OK, n, ne


@inline
def book_replace(book, ev, ne, cmd, acct, avail_stock, avail_money, fee_acct, max_matches):
    """REPLACE on the book, its account checks passed; returns (code, order_id, ne).

    ``avail_stock`` and ``avail_money`` are the user's available balances of the
    market's two assets (the funds check needs the order's reserve, which only the
    book knows).
    """
    m = cmd["market"]
    mp = book[B_MPARAMS]
    price = cmd["price"]
    new_left = cmd["amount"]
    code, slot = lookup(book, m, cmd["order_id"], acct)
    if code != OK:
        return code, 0, ne
    levels = book[B_LEVELS]
    o = book[B_ORDERS][slot]
    c = book[B_INFO][slot]
    side = o["side"]
    ts = cmd["ts_ns"]
    old_reserve = reserve_of(mp, m, side, o["price"], o["left"])
    if price == o["price"] and new_left <= o["left"]:
        diff = old_reserve - reserve_of(mp, m, side, price, new_left)
        if diff > 0:
            ne = reserve_move(ev, ne, ts, mp, m, o, -diff)
        levels[o["level"]]["total"] -= o["left"] - new_left
        c["amount"] -= o["left"] - new_left
        o["left"] = new_left
        c["mtime_ns"] = ts
        deal_stock = c["amount"] - o["left"]
        ne = evw.emit_order(ev, ne, evw.ORDER_UPDATE, 0, ts, book, slot, m, deal_stock)
        return OK, o["id"], ne
    if price != o["price"] and outside_band(book, m, price):
        return PRICE_OUTSIDE_BAND, 0, ne
    avail = (avail_stock if side == ASK else avail_money) + old_reserve
    if side == ASK:
        ok = mul_le(new_left, mp[m, MP_STOCK_SCALE], avail)
    else:
        ok = mul3_le(price, new_left, mp[m, MP_DEAL_SCALE], avail)
    if not ok:
        return BALANCE_NOT_ENOUGH, 0, ne
    if new_left > o["left"] and new_left < mp[m, MP_MIN_AMOUNT]:
        return AMOUNT_TOO_SMALL, 0, ne
    if (o["flags"] & POST_ONLY) != 0 and crosses(book, m, side, price):
        return POST_ONLY_WOULD_TAKE, 0, ne
    if reach(book, m, side, price, new_left, False, o["acct"], o["stp"], max_matches) > max_matches:
        return TOO_MANY_MATCHES, 0, ne
    needs_level = bk.find_level(book, m, side, price) == NIL
    frees_level = levels[o["level"]]["count"] == 1
    if needs_level and not frees_level and not bk.can_add_level(book, m, side):
        return BOOK_FULL, 0, ne
    oid = o["id"]
    ne = reserve_move(ev, ne, ts, mp, m, o, -old_reserve)
    bk.level_unlink(book, m, slot)
    o["price"] = price
    c["amount"] = c["amount"] - o["left"] + new_left
    o["left"] = new_left
    c["mtime_ns"] = ts
    ne, _, stopped = match_taker(book, ev, ne, ts, fee_acct, m, slot, price, False)
    if o["left"] == 0 or stopped:
        reason = FILLED if o["left"] == 0 else SELF_TRADE
        deal_stock = c["amount"] - o["left"]
        ne = evw.emit_order(ev, ne, evw.ORDER_FINISH, reason, ts, book, slot, m, deal_stock)
        remove_resting(book, m, slot)
    else:
        ne = rest_order(book, ev, ne, ts, m, slot, evw.ORDER_UPDATE)
    return OK, oid, ne


@kernel
def book_one(book, ev, ne, w, fee_acct, scratch, max_matches):
    """The book half of the command in work record ``w`` (WORK_DTYPE), by its kind;
    returns (code, order_id, value, ne).

    ``w`` carries what the book half needs from the accounts: the user's account, the
    id a new order gets (PUT_*), the user's available balances of the market's assets
    (REPLACE).
    """
    kind = w["kind"]
    acct = w["acct"]
    if kind == PUT_LIMIT:
        code, ne = book_put_limit(
            book, ev, ne, w, acct, w["new_id"], fee_acct, scratch, max_matches
        )
        return code, w["new_id"] if code == OK else 0, 0, ne
    if kind == PUT_MARKET:
        code, ne = book_put_market(
            book, ev, ne, w, acct, w["new_id"], fee_acct, scratch, max_matches
        )
        return code, w["new_id"] if code == OK else 0, 0, ne
    if kind == CANCEL:
        code, oid, ne = book_cancel(book, ev, ne, w, acct)
        return code, oid, 0, ne
    if kind == REPLACE:
        code, oid, ne = book_replace(
            book, ev, ne, w, acct, w["avail_stock"], w["avail_money"], fee_acct, max_matches
        )
        return code, oid, 0, ne
    if kind == CANCEL_ALL:
        code, value, ne = book_cancel_all(book, ev, ne, w, acct, max_matches)
        return code, 0, value, ne
    if kind == CANCEL_MARKET:
        code, value, ne = book_cancel_market(book, ev, ne, w, max_matches)
        return code, 0, value, ne
    return INVALID_ARGUMENT, 0, 0, ne
