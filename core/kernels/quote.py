"""The mass quote (docs/engine.md, "QUOTE"): a market maker's whole ladder on one
market, set atomically.

A QUOTE record is followed by its k QUOTE_LEVEL records (``group_levels`` finds the
group); the group is one command. Its **account half** (``pre_quote``) checks the
form, the fee account, the statuses, and each level's risk limits and minimum
amount. Its **book half** (``book_quote``) finds the maker's quote orders (the
orders with the QUOTE flag in its list for the market), matches them to the levels
by side and price, checks the band of the new prices, the funds, that no level
crosses the other orders, the room in the book and the open-order limit, and only
then applies the ladder: the stale quote orders are cancelled, then the levels that
shrink, then those that grow or are new, so funds are released before they are
taken. A refused quote changes nothing.

The book half keeps its scratch in the level records, whose fields beyond side, price
and amount are unused: ``new_id`` is the slot of the level's quote order (NIL for a
new one), and ``avail_stock`` and ``avail_money`` hold a hash table of the levels by
(side, price), so that matching the maker's quote orders to levels is linear. A user
has at most ``2 * MAX_QUOTE_LEVELS`` quote orders in a market: only QUOTE makes them,
and each QUOTE leaves exactly its levels.

``pre_quote`` and ``book_quote`` are kernels of their own, not inlined into the batch
loops: a quote is one call among up to 65 records, and inlining them into every loop
that runs commands multiplied the compile time.
"""

from __future__ import annotations

from core.kernels import book as bk
from core.kernels import events as evw
from core.kernels.admin import check_status
from core.kernels.arith import mul3_le, mul_le
from core.kernels.book_side import init_order, rest_order
from core.kernels.checks import outside_band, valid_source
from core.kernels.codes import (
    AMOUNT_TOO_SMALL,
    ASK,
    BALANCE_NOT_ENOUGH,
    BID,
    BOOK_FULL,
    CANCELED,
    FEE_ACCOUNT_CANNOT_TRADE,
    GTC,
    INVALID_ARGUMENT,
    OK,
    POST_ONLY,
    POST_ONLY_WOULD_TAKE,
    PRICE_OUTSIDE_BAND,
    QUOTE,
    QUOTE_FLAG,
    QUOTE_GROWN,
    QUOTE_KEPT,
    QUOTE_LEVEL,
    QUOTE_NEW,
    QUOTE_SHRUNK,
    STP_NONE,
    TOO_MANY_OPEN_ORDERS,
    UNKNOWN_MARKET,
)
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    MP_DEAL_SCALE,
    MP_FEE_DEN,
    MP_MAX_AMOUNT,
    MP_MAX_LEVELS,
    MP_MAX_OPEN_ORDERS,
    MP_MAX_ORDERS,
    MP_MAX_PRICE,
    MP_MIN_AMOUNT,
    MP_STOCK_SCALE,
    MS_NDEAD,
    MS_NLEVELS,
    MS_NORDERS,
    NIL,
)
from core.kernels.settlement import cancel_resting, reserve_move, reserve_of
from core.kernels.user_limits import check_order_risk
from core.schema import MAX_QUOTE_LEVELS, MAX_USER_ID

#: Most records a QUOTE's group holds after its header.
MAX_GROUP_LEVELS = 2 * MAX_QUOTE_LEVELS


@inline
def group_levels(cmds, i: int) -> int:
    """k if ``cmds[i]`` is a QUOTE whose k (0..2 x MAX_QUOTE_LEVELS) QUOTE_LEVEL
    records follow it in ``cmds``; else -1 (not a whole group)."""
    if cmds[i]["kind"] != QUOTE:
        return -1
    k = cmds[i]["amount"]
    if k < 0 or k > MAX_GROUP_LEVELS or k >= cmds.shape[0] - i:
        return -1
    for j in range(i + 1, i + k + 1):
        if cmds[j]["kind"] != QUOTE_LEVEL:
            return -1
    return k


@inline
def _has_twice(cmds, i: int, k: int) -> bool:
    """True if two levels of a side have one price (quadratic: the slow path)."""
    for j in range(i + 2, i + k + 1):
        for j2 in range(i + 1, j):
            if cmds[j2]["side"] == cmds[j]["side"] and cmds[j2]["price"] == cmds[j]["price"]:
                return True
    return False


@inline
def _levels_ok(mp, m: int, cmds, i: int, k: int) -> bool:
    """The form of the levels: sides, ranges, at most MAX_QUOTE_LEVELS a side, no
    price twice on a side, every bid below every ask. A side whose prices rise or
    fall strictly in record order (a ladder as clients write it) has no price twice;
    only otherwise are the pairs compared."""
    asks = 0
    bids = 0
    top_bid = 0
    low_ask = 0
    last_ask = 0
    last_bid = 0
    ask_up = ask_down = bid_up = bid_down = True
    for j in range(i + 1, i + k + 1):
        side = cmds[j]["side"]
        price = cmds[j]["price"]
        amount = cmds[j]["amount"]
        if side != ASK and side != BID:
            return False
        if price < 1 or price > mp[m, MP_MAX_PRICE] or amount < 1 or amount > mp[m, MP_MAX_AMOUNT]:
            return False
        if side == ASK:
            if asks > 0:
                ask_up = ask_up and price > last_ask
                ask_down = ask_down and price < last_ask
            asks += 1
            last_ask = price
            if low_ask == 0 or price < low_ask:
                low_ask = price
        else:
            if bids > 0:
                bid_up = bid_up and price > last_bid
                bid_down = bid_down and price < last_bid
            bids += 1
            last_bid = price
            top_bid = max(top_bid, price)
    if asks > MAX_QUOTE_LEVELS or bids > MAX_QUOTE_LEVELS:
        return False
    if low_ask != 0 and top_bid >= low_ask:
        return False
    monotonic = (ask_up or ask_down) and (bid_up or bid_down)
    return monotonic or not _has_twice(cmds, i, k)


@kernel
def pre_quote(
    accounts, counters, mp, cmds, i: int, k: int, acct: int, n_markets: int, fee_user: int
) -> int:  # fmt: skip
    """The account half of the QUOTE at ``cmds[i]`` with ``k`` levels (-1: its levels
    do not follow): checks 1 to 4 of docs/engine.md; OK or the refusal."""
    h = cmds[i]
    m = h["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET
    if h["user"] < 0 or h["user"] > MAX_USER_ID or k < 0:
        return INVALID_ARGUMENT
    den = mp[m, MP_FEE_DEN]
    if h["taker_rate"] < 0 or h["taker_rate"] >= den or h["maker_rate"] < 0:
        return INVALID_ARGUMENT
    if h["maker_rate"] >= den or not valid_source(h) or not _levels_ok(mp, m, cmds, i, k):
        return INVALID_ARGUMENT
    if h["user"] == fee_user:
        return FEE_ACCOUNT_CANNOT_TRADE
    if k == 0:  # removing the quote is a cancel: any status
        return OK
    code = check_status(accounts, m, acct)
    if code != OK:
        return code
    for j in range(i + 1, i + k + 1):
        code = check_order_risk(
            accounts, counters, mp, m, h["user"], cmds[j]["price"], cmds[j]["amount"]
        )
        if code != OK:
            return code
        if cmds[j]["amount"] < mp[m, MP_MIN_AMOUNT]:
            return AMOUNT_TOO_SMALL
    return OK


@inline
def _is_quote_of(o, acct: int) -> bool:
    return o["acct"] == acct and (o["flags"] & QUOTE_FLAG) != 0


@inline
def _oldest(book, m: int, acct: int) -> int:
    """The slot of the account's oldest resting order in market ``m``, or NIL."""
    slot, _ = bk.user_orders(book, m, acct)
    if slot == NIL:
        return NIL
    info = book[B_INFO]
    while info[slot]["unext"] != NIL:
        slot = info[slot]["unext"]
    return slot


@inline
def _table_size(k: int) -> int:
    """Slots of the level table: the largest power of two <= 2k (more than k)."""
    size = 1
    while size * 2 <= 2 * k:
        size *= 2
    return size


@inline
def _slot_of(size: int, side: int, price: int) -> int:
    """A ladder's prices are mostly consecutive ticks: their low bits spread them.
    (No multiplication: it could overflow, which NUMBA_DISABLE_JIT reports.)"""
    return (price ^ (price >> 16) ^ (side << 3)) & (size - 1)


@inline
def _table_at(work, i: int, t: int) -> int:
    """Entry ``t`` of the level table: the level records' ``avail_stock`` and
    ``avail_money`` (unused in a level), two a record."""
    w = work[i + 1 + t // 2]
    return w["avail_stock"] if t % 2 == 0 else w["avail_money"]


@inline
def _table_set(work, i: int, t: int, j: int) -> None:
    if t % 2 == 0:
        work[i + 1 + t // 2]["avail_stock"] = j
    else:
        work[i + 1 + t // 2]["avail_money"] = j


@inline
def _build_table(work, i: int, k: int) -> int:
    """Index the k levels by (side, price) in an open-addressing table kept in their
    own records (no allocation: a kernel has no scratch of its own); returns its size.
    Entries are level indexes j (1..k), 0 for none; prices are distinct per side."""
    size = _table_size(k)
    for t in range(size):
        _table_set(work, i, t, 0)
    for j in range(1, k + 1):
        t = _slot_of(size, work[i + j]["side"], work[i + j]["price"])
        while _table_at(work, i, t) != 0:
            t = (t + 1) & (size - 1)
        _table_set(work, i, t, j)
    return size


@inline
def _level_of(work, i: int, size: int, side: int, price: int) -> int:
    """The index j (1..k) of the level at (side, price), or 0."""
    if size == 0:
        return 0
    t = _slot_of(size, side, price)
    while True:
        j = _table_at(work, i, t)
        if j == 0:
            return 0
        if work[i + j]["side"] == side and work[i + j]["price"] == price:
            return j
        t = (t + 1) & (size - 1)


@inline
def _match_levels(book, m: int, acct: int, work, i: int, k: int) -> tuple[int, int, int, int]:
    """Mark each level's quote order (oldest first wins a price); returns (the level
    table's size, stale quote orders, reserve of all quote orders on the ask side, and
    on the bid side)."""
    size = _build_table(work, i, k) if k > 0 else 0
    for j in range(i + 1, i + k + 1):
        work[j]["new_id"] = NIL
    orders = book[B_ORDERS]
    info = book[B_INFO]
    mp = book[B_MPARAMS]
    stale = 0
    held_ask = 0
    held_bid = 0
    slot = _oldest(book, m, acct)
    while slot != NIL:
        o = orders[slot]
        if _is_quote_of(o, acct):
            r = reserve_of(mp, m, o["side"], o["price"], o["left"])
            if o["side"] == ASK:
                held_ask += r
            else:
                held_bid += r
            j = _level_of(work, i, size, o["side"], o["price"])
            if j == 0 or work[i + j]["new_id"] != NIL:
                stale += 1
            else:
                work[i + j]["new_id"] = slot
        slot = info[slot]["uprev"]
    return size, stale, held_ask, held_bid


@inline
def _funds_ok(mp, m: int, work, i: int, k: int, room_ask: int, room_bid: int) -> bool:
    """True if the ladder's reserves fit ``room_ask`` stock and ``room_bid`` money
    units (no product or sum can overflow: each is checked against what is left)."""
    for j in range(i + 1, i + k + 1):
        w = work[j]
        if w["side"] == ASK:
            if not mul_le(w["amount"], mp[m, MP_STOCK_SCALE], room_ask):
                return False
            room_ask -= w["amount"] * mp[m, MP_STOCK_SCALE]
        else:
            if not mul3_le(w["price"], w["amount"], mp[m, MP_DEAL_SCALE], room_bid):
                return False
            room_bid -= w["price"] * w["amount"] * mp[m, MP_DEAL_SCALE]
    return True


@inline
def _best_other(book, m: int, side: int, acct: int) -> int:
    """The best price on (m, side) of an order that is not ``acct``'s quote order, or
    0 when there is none."""
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    at, lv = bk.next_live(book, m, side, 0)
    while lv != NIL:
        slot = levels[lv]["head"]
        while slot != NIL:
            if not _is_quote_of(orders[slot], acct):
                return levels[lv]["price"]
            slot = orders[slot]["next"]
        at, lv = bk.next_live(book, m, side, at + 1)
    return 0


@inline
def _crosses(book, m: int, acct: int, work, i: int, k: int) -> bool:
    """True if a level would meet an order that is not the maker's quote order."""
    top_bid = 0
    low_ask = 0
    for j in range(i + 1, i + k + 1):
        price = work[j]["price"]
        if work[j]["side"] == BID:
            top_bid = max(top_bid, price)
        elif low_ask == 0 or price < low_ask:
            low_ask = price
    if top_bid > 0:
        best_ask = _best_other(book, m, ASK, acct)
        if best_ask > 0 and best_ask <= top_bid:
            return True
    if low_ask > 0:
        best_bid = _best_other(book, m, BID, acct)
        if best_bid >= low_ask:
            return True
    return False


@inline
def _room_refusal(book, m: int, acct: int, work, i: int, k: int, stale: int) -> int:
    """Checks 8 and 9 (BOOK_FULL, TOO_MANY_OPEN_ORDERS) for the NEW levels; OK or the
    refusal."""
    mp = book[B_MPARAMS]
    ms = book[B_MSTATE]
    new = 0
    new_ask_levels = 0
    new_bid_levels = 0
    for j in range(i + 1, i + k + 1):
        w = work[j]
        if w["new_id"] != NIL:
            continue
        new += 1
        if bk.find_level(book, m, w["side"], w["price"]) == NIL:
            if w["side"] == ASK:
                new_ask_levels += 1
            else:
                new_bid_levels += 1
    free = mp[m, MP_MAX_ORDERS] - ms[m, MS_NORDERS] - ms[m, MS_NORDERS + 1]
    live_ask = ms[m, MS_NLEVELS] - ms[m, MS_NDEAD]
    live_bid = ms[m, MS_NLEVELS + 1] - ms[m, MS_NDEAD + 1]
    if (
        new > free
        or live_ask + new_ask_levels > mp[m, MP_MAX_LEVELS]
        or live_bid + new_bid_levels > mp[m, MP_MAX_LEVELS]
    ):
        return BOOK_FULL
    most = mp[m, MP_MAX_OPEN_ORDERS]
    if most > 0 and bk.user_orders(book, m, acct)[1] - stale + new > most:
        return TOO_MANY_OPEN_ORDERS
    return OK


@inline
def _book_refusal(book, m: int, acct: int, h, work, i: int, k: int) -> tuple[int, int, int]:
    """Checks 5 to 9 of the quote, marking each level's order; (OK or the refusal,
    the stale quote orders, the level table's size)."""
    size, stale, held_ask, held_bid = _match_levels(book, m, acct, work, i, k)
    for j in range(i + 1, i + k + 1):
        if work[j]["new_id"] == NIL and outside_band(book, m, work[j]["price"]):
            return PRICE_OUTSIDE_BAND, stale, size
    if not _funds_ok(
        book[B_MPARAMS], m, work, i, k, h["avail_stock"] + held_ask, h["avail_money"] + held_bid
    ):
        return BALANCE_NOT_ENOUGH, stale, size
    if _crosses(book, m, acct, work, i, k):
        return POST_ONLY_WOULD_TAKE, stale, size
    return _room_refusal(book, m, acct, work, i, k, stale), stale, size


@inline
def _cancel_stale(book, ev, ne: int, m: int, acct: int, ts: int, work, i: int, size: int) -> int:
    """Cancel the quote orders that are no level, oldest first."""
    orders = book[B_ORDERS]
    info = book[B_INFO]
    slot = _oldest(book, m, acct)
    while slot != NIL:
        newer = info[slot]["uprev"]
        o = orders[slot]
        if _is_quote_of(o, acct):
            j = _level_of(work, i, size, o["side"], o["price"])
            if j == 0 or work[i + j]["new_id"] != slot:
                ne = cancel_resting(book, ev, ne, ts, m, slot, CANCELED)
        slot = newer
    return ne


@inline
def _shrink(book, ev, ne: int, m: int, ts: int, slot: int, left: int) -> int:
    """Less left at the same price, priority kept (REPLACE in place)."""
    mp = book[B_MPARAMS]
    o = book[B_ORDERS][slot]
    c = book[B_INFO][slot]
    diff = reserve_of(mp, m, o["side"], o["price"], o["left"]) - reserve_of(
        mp, m, o["side"], o["price"], left
    )
    if diff > 0:
        ne = reserve_move(ev, ne, ts, mp, m, o, -diff)
    book[B_LEVELS][o["level"]]["total"] -= o["left"] - left
    c["amount"] -= o["left"] - left
    o["left"] = left
    c["mtime_ns"] = ts
    return evw.emit_order(ev, ne, evw.ORDER_UPDATE, 0, ts, book, slot, m, c["amount"] - left)


@inline
def _grow(book, ev, ne: int, m: int, ts: int, slot: int, left: int) -> int:
    """More left at the same price: to the tail of the level (REPLACE that moves)."""
    mp = book[B_MPARAMS]
    o = book[B_ORDERS][slot]
    c = book[B_INFO][slot]
    ne = reserve_move(ev, ne, ts, mp, m, o, -reserve_of(mp, m, o["side"], o["price"], o["left"]))
    bk.level_unlink(book, m, slot)
    c["amount"] += left - o["left"]
    o["left"] = left
    c["mtime_ns"] = ts
    return rest_order(book, ev, ne, ts, m, slot, evw.ORDER_UPDATE)


@inline
def _place(book, ev, ne: int, m: int, acct: int, h, lvl, oid: int) -> int:
    """A new quote order of level ``lvl`` with the header ``h``'s rates and source."""
    slot = bk.alloc_slot(book, m)
    side, price, amount = lvl["side"], lvl["price"], lvl["amount"]
    flags = POST_ONLY | QUOTE_FLAG
    init_order(book, slot, oid, acct, side, price, amount, h["maker_rate"], STP_NONE, flags, GTC, h)
    bk.user_link(book, m, slot)
    bk.index_put(book, oid, slot)
    return rest_order(book, ev, ne, h["ts_ns"], m, slot, evw.ORDER_PUT)


@inline
def _apply(book, ev, ne, m, acct, h, work, i, k, size, out, o0) -> int:
    """Apply the checked ladder; writes each level's order id and action to
    ``out[o0 + j]`` (j = 1..k)."""
    orders = book[B_ORDERS]
    ts = h["ts_ns"]
    ne = _cancel_stale(book, ev, ne, m, acct, ts, work, i, size)
    for j in range(1, k + 1):  # kept and shrunk: priority stays, funds come back
        slot = work[i + j]["new_id"]
        if slot == NIL or work[i + j]["amount"] > orders[slot]["left"]:
            continue
        out[o0 + j]["order_id"] = orders[slot]["id"]
        if work[i + j]["amount"] == orders[slot]["left"]:
            out[o0 + j]["value"] = QUOTE_KEPT
        else:
            out[o0 + j]["value"] = QUOTE_SHRUNK
            ne = _shrink(book, ev, ne, m, ts, slot, work[i + j]["amount"])
    oid = h["new_id"]
    for j in range(1, k + 1):  # grown and new, in record order
        slot = work[i + j]["new_id"]
        if slot == NIL:
            ne = _place(book, ev, ne, m, acct, h, work[i + j], oid)
            out[o0 + j]["order_id"] = oid
            out[o0 + j]["value"] = QUOTE_NEW
            oid += 1
        elif work[i + j]["amount"] > orders[slot]["left"]:
            out[o0 + j]["order_id"] = orders[slot]["id"]
            out[o0 + j]["value"] = QUOTE_GROWN
            ne = _grow(book, ev, ne, m, ts, slot, work[i + j]["amount"])
    return ne


@kernel
def book_quote(book, ev, ne: int, work, i: int, k: int, out, o0: int) -> tuple[int, int, int]:
    """The book half of the QUOTE in ``work[i]`` (its account half passed) with its
    levels in ``work[i + 1 : i + k + 1]``; returns (code, stale orders cancelled, ne).

    The header carries the user's account, the first id for the new orders
    (``new_id``) and the available balances of the market's assets. Each level's
    result, ``out[o0 + j]``, gets its order id and its QuoteAction (0 and 0 when
    refused); the caller writes the codes.
    """
    h = work[i]
    m = h["market"]
    acct = h["acct"]
    for j in range(1, k + 1):
        out[o0 + j]["order_id"] = 0
        out[o0 + j]["value"] = 0
    code, stale, size = _book_refusal(book, m, acct, h, work, i, k)
    if code != OK:
        return code, 0, ne
    return OK, stale, _apply(book, ev, ne, m, acct, h, work, i, k, size, out, o0)


@inline
def quote_new_orders(out, o0: int, k: int) -> int:
    """How many of a quote's levels (``out[o0 + 1 : o0 + k + 1]``) are new orders."""
    n = 0
    for j in range(1, k + 1):
        if out[o0 + j]["value"] == QUOTE_NEW:
            n += 1
    return n
