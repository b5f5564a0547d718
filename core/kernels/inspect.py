"""Read-only walks over the books: queries, canonical order, self-validation."""

from __future__ import annotations

import numpy as np

from core.kernels import book as bk
from core.kernels.codes import POST_ONLY, QUOTE_FLAG
from core.kernels.jit import kernel
from core.kernels.layout import (
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    B_SKEYS,
    B_SLEVELS,
    B_SRC_DATA,
    B_SRC_IDX,
    B_SRC_REFS,
    B_SRC_STATE,
    MP_DEAL_SCALE,
    MP_MONEY,
    MP_OBASE,
    MP_STOCK,
    MP_STOCK_SCALE,
    MS_NDEAD,
    MS_NLEVELS,
    MS_NORDERS,
    MS_ORDER_BUMP,
    NIL,
    SRC_LEN,
    SS_BUMP,
    SS_FREE,
    SS_LIVE,
)

ASK = 1
BID = 2

# Codes returned by validate_book (0 = sound).
BOOK_OK = 0
BAD_LEVEL_ORDER = 1
BAD_LEVEL_TOTAL = 2
BAD_LINKS = 3
BAD_ORDER = 4
BAD_COUNT = 5
BAD_INDEX = 6
CROSSED = 7
BAD_DEAD_LEVEL = 8


@kernel
def side_slots(book, m: int, side: int, offset: int, limit: int, out: np.ndarray) -> int:
    """Slots of (m, side) in priority order, skipping ``offset``; returns how many."""
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    skipped = 0
    n = 0
    k = 0
    while n < limit:
        k, lv = bk.next_live(book, m, side, k)
        if lv == NIL:
            break
        if skipped + levels[lv]["count"] <= offset:
            skipped += levels[lv]["count"]
            k += 1
            continue
        slot = levels[lv]["head"]
        while slot != NIL and n < limit:
            if skipped >= offset:
                out[n] = slot
                n += 1
            else:
                skipped += 1
            slot = orders[slot]["next"]
        k += 1
    return n


@kernel
def user_slots(book, m: int, acct: int, offset: int, limit: int, out: np.ndarray) -> int:
    """The account's resting slots in market ``m``, newest first; returns how many."""
    info = book[B_INFO]
    slot, _ = bk.user_orders(book, m, acct)
    i = 0
    n = 0
    while slot != NIL and n < limit:
        if i >= offset:
            out[n] = slot
            n += 1
        i += 1
        slot = info[slot]["unext"]
    return n


@kernel
def depth(book, m: int, side: int, limit: int, interval: int, prices, lots) -> int:
    """Merged depth of (m, side): asks rounded up, bids down to ``interval``."""
    levels = book[B_LEVELS]
    n = 0
    k = 0
    while True:
        k, lv = bk.next_live(book, m, side, k)
        if lv == NIL:
            break
        p = levels[lv]["price"]
        if interval > 0:
            q = p // interval
            if side == ASK and q * interval != p:
                q += 1  # round up; cannot overflow: q * interval < p + interval <= 2**63
            p = q * interval
        if n > 0 and prices[n - 1] == p:
            lots[n - 1] += levels[lv]["total"]
        else:
            if n == limit:
                break
            prices[n] = p
            lots[n] = levels[lv]["total"]
            n += 1
        k += 1
    return n


@kernel
def reserves(book, n_markets: int, out: np.ndarray) -> None:
    """Add every resting order's reserve into out[acct, asset]."""
    orders = book[B_ORDERS]
    mp = book[B_MPARAMS]
    for m in range(n_markets):
        base = mp[m, MP_OBASE]
        for slot in range(base, book[B_MSTATE][m, MS_ORDER_BUMP]):
            o = orders[slot]
            if o["id"] == 0:
                continue
            if o["side"] == ASK:
                out[o["acct"], mp[m, MP_STOCK]] += o["left"] * mp[m, MP_STOCK_SCALE]
            else:
                out[o["acct"], mp[m, MP_MONEY]] += o["price"] * o["left"] * mp[m, MP_DEAL_SCALE]


@kernel
def _validate_side(book, m: int, side: int) -> int:
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    keys = book[B_SKEYS]
    slv = book[B_SLEVELS]
    base = bk.side_base(book, m, side)
    nlev = book[B_MSTATE][m, MS_NLEVELS + side - 1]
    norders = 0
    dead = 0
    for i in range(base, base + nlev):
        if i > base and keys[i - 1] >= keys[i]:
            return BAD_LEVEL_ORDER
        lv = slv[i]
        if bk.level_key(side, levels[lv]["price"]) != keys[i] or levels[lv]["count"] < 0:
            return BAD_LEVEL_ORDER
        if levels[lv]["count"] == 0:  # dead: empty, and never the best
            if (
                i == base + nlev - 1
                or levels[lv]["total"] != 0
                or levels[lv]["head"] != NIL
                or levels[lv]["tail"] != NIL
            ):
                return BAD_DEAD_LEVEL
            dead += 1
            continue
        total = 0
        count = 0
        prev = NIL
        slot = levels[lv]["head"]
        while slot != NIL:
            o = orders[slot]
            if (
                o["prev"] != prev
                or o["level"] != lv
                or o["price"] != levels[lv]["price"]
                or o["side"] != side
            ):
                return BAD_LINKS
            if o["left"] <= 0 or o["left"] > book[B_INFO][slot]["amount"] or o["id"] <= 0:
                return BAD_ORDER
            if (o["flags"] & QUOTE_FLAG) != 0 and (o["flags"] & POST_ONLY) == 0:
                return BAD_ORDER  # a quote order never takes
            if bk.index_find(book, o["id"]) != slot:
                return BAD_INDEX
            total += o["left"]
            count += 1
            prev = slot
            slot = o["next"]
        if levels[lv]["tail"] != prev:
            return BAD_LINKS
        if total != levels[lv]["total"] or count != levels[lv]["count"]:
            return BAD_LEVEL_TOTAL
        norders += count
    if norders != book[B_MSTATE][m, MS_NORDERS + side - 1]:
        return BAD_COUNT
    if dead != book[B_MSTATE][m, MS_NDEAD + side - 1]:
        return BAD_DEAD_LEVEL
    return BOOK_OK


@kernel
def validate_book(book, m: int) -> int:
    """Check market ``m``'s books; returns BOOK_OK or the first problem's code."""
    for side in range(ASK, BID + 1):
        code = _validate_side(book, m, side)
        if code != BOOK_OK:
            return code
    ask = bk.best_level(book, m, ASK)
    bid = bk.best_level(book, m, BID)
    if ask != NIL and bid != NIL:
        levels = book[B_LEVELS]
        if levels[bid]["price"] >= levels[ask]["price"]:
            return CROSSED
    return BOOK_OK


@kernel
def validate_tags(book, n_markets: int, held: np.ndarray, free: np.ndarray) -> int:
    """Check the source tag table against the orders that hold tags.

    ``held`` (int64) and ``free`` (bool) are zeroed scratch arrays of at least the
    tag allocator's bump length.

    Returns 0 when every live tag is indexed once, is held by exactly as many resting
    orders as its count says, and no resting order holds a free tag; else the first
    bad tag id (or -1 if the counts of live tags disagree).
    """
    refs = book[B_SRC_REFS]
    data = book[B_SRC_DATA]
    idx = book[B_SRC_IDX]
    state = book[B_SRC_STATE]
    mp = book[B_MPARAMS]
    bump = state[SS_BUMP]
    v = state[SS_FREE]
    while v != NIL:
        if v <= 0 or v >= bump or free[v]:
            return -1
        free[v] = True
        v = refs[v]
    for m in range(n_markets):
        base = mp[m, MP_OBASE]
        for slot in range(base, book[B_MSTATE][m, MS_ORDER_BUMP]):
            if book[B_ORDERS][slot]["id"] != 0:
                t = book[B_INFO][slot]["source"]
                if t < 0 or t >= bump:
                    return -1
                held[t] += 1
    indexed = 0
    for i in range(idx.shape[0]):
        t = idx[i]
        if t != 0:
            if t >= bump or free[t] or data[t, SRC_LEN] == 0:
                return -1
            indexed += 1
    live = 0
    for t in range(1, bump):
        if free[t]:
            if held[t] != 0:
                return t
        else:
            live += 1
            if refs[t] != held[t]:
                return t
    if live != state[SS_LIVE] or indexed != live:
        return -1
    return 0
