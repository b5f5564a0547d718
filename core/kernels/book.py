"""Order book structure: pools, sorted price levels, FIFOs and per-user lists.

Nothing here moves money; ``settlement.py`` does. Every function takes the ``book``
tuple described in ``layout.py`` and a market index ``m``.

Each side keeps its levels in a sorted array, best price last. A level that empties
below the best stays in the array, dead (count 0), so that an order arriving at its
price revives it in place instead of shifting the array twice; the best entry is
always live (an emptied best is popped, with the dead entries under it). Dead
entries are compacted away when the array is full, or when they outnumber the live
ones by more than ``DEAD_RATIO`` to one (plus ``DEAD_SLACK``), which keeps walks
short and costs O(1) amortised per level emptied.
"""

from __future__ import annotations

import numpy as np

from core.kernels import hashmap
from core.kernels.jit import inline, kernel, move_items
from core.kernels.layout import (
    B_IDX,
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    B_SKEYS,
    B_SLEVELS,
    B_U_COUNT,
    B_U_HEAD,
    B_U_KEYS,
    MP_LBASE,
    MP_MAX_LEVELS,
    MP_MAX_ORDERS,
    MP_OBASE,
    MP_SBASE,
    MS_FREE_LEVEL,
    MS_FREE_ORDER,
    MS_LEVEL_BUMP,
    MS_NDEAD,
    MS_NLEVELS,
    MS_NORDERS,
    MS_ORDER_BUMP,
    NIL,
)

ASK = 1
BID = 2

DEAD_RATIO = 4
DEAD_SLACK = 64


@kernel
def init_market(book, m: int) -> None:
    """Set market ``m``'s pools empty (slots are handed out lazily, from a bump index)."""
    mp = book[B_MPARAMS]
    ms = book[B_MSTATE]
    ms[m, MS_FREE_ORDER] = NIL
    ms[m, MS_ORDER_BUMP] = mp[m, MP_OBASE]
    ms[m, MS_FREE_LEVEL] = NIL
    ms[m, MS_LEVEL_BUMP] = mp[m, MP_LBASE]
    ms[m, MS_NLEVELS] = 0
    ms[m, MS_NLEVELS + 1] = 0
    ms[m, MS_NORDERS] = 0
    ms[m, MS_NORDERS + 1] = 0
    ms[m, MS_NDEAD] = 0
    ms[m, MS_NDEAD + 1] = 0


@inline
def side_base(book, m: int, side: int) -> int:
    """Start of the sorted key array of (m, side)."""
    mp = book[B_MPARAMS]
    return mp[m, MP_SBASE] + (side - 1) * mp[m, MP_MAX_LEVELS]


@inline
def level_key(side: int, price: int) -> int:
    """Sort key of a price: ascending keys put the best price last on both sides."""
    return -price if side == ASK else price


@inline
def best_level(book, m: int, side: int) -> int:
    """Level index of the best price of (m, side), or NIL."""
    n = book[B_MSTATE][m, MS_NLEVELS + side - 1]
    if n == 0:
        return NIL
    return book[B_SLEVELS][side_base(book, m, side) + n - 1]


@inline
def next_live(book, m: int, side: int, k: int) -> tuple[int, int]:
    """The first live level at or after the k-th entry from the best (k = 0 is the
    best), as (its k, its level index); (entries, NIL) when there is none.

    Walk a side with ``k = 0`` and, after each level, ``k + 1``.
    """
    n = book[B_MSTATE][m, MS_NLEVELS + side - 1]
    slv = book[B_SLEVELS]
    levels = book[B_LEVELS]
    top = side_base(book, m, side) + n - 1
    while k < n:
        lv = slv[top - k]
        if levels[lv]["count"] > 0:
            return k, lv
        k += 1
    return n, NIL


@inline
def _bisect(keys: np.ndarray, lo: int, hi: int, key: int) -> int:
    """First position in keys[lo:hi] whose key is >= ``key``."""
    # Most activity is near the best price (the end): look there first.
    if hi > lo and keys[hi - 1] < key:
        return hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@inline
def find_level(book, m: int, side: int, price: int) -> int:
    """Live level index at ``price`` on (m, side), or NIL."""
    keys = book[B_SKEYS]
    base = side_base(book, m, side)
    n = book[B_MSTATE][m, MS_NLEVELS + side - 1]
    key = level_key(side, price)
    pos = _bisect(keys, base, base + n, key)
    if pos < base + n and keys[pos] == key:
        lv = book[B_SLEVELS][pos]
        if book[B_LEVELS][lv]["count"] > 0:
            return lv
    return NIL


@inline
def can_add_level(book, m: int, side: int) -> bool:
    """True if (m, side) has room for one more live level."""
    ms = book[B_MSTATE]
    live = ms[m, MS_NLEVELS + side - 1] - ms[m, MS_NDEAD + side - 1]
    return live < book[B_MPARAMS][m, MP_MAX_LEVELS]


@inline
def _free_level(book, m: int, lv: int) -> None:
    levels = book[B_LEVELS]
    ms = book[B_MSTATE]
    levels[lv]["count"] = 0
    levels[lv]["next_free"] = ms[m, MS_FREE_LEVEL]
    ms[m, MS_FREE_LEVEL] = lv


@kernel
def _compact(book, m: int, side: int) -> None:
    """Drop the dead entries of (m, side), freeing their levels."""
    keys = book[B_SKEYS]
    slv = book[B_SLEVELS]
    levels = book[B_LEVELS]
    ms = book[B_MSTATE]
    base = side_base(book, m, side)
    n = ms[m, MS_NLEVELS + side - 1]
    w = base
    for i in range(base, base + n):
        lv = slv[i]
        if levels[lv]["count"] > 0:
            keys[w] = keys[i]
            slv[w] = lv
            w += 1
        else:
            _free_level(book, m, lv)
    ms[m, MS_NLEVELS + side - 1] = w - base
    ms[m, MS_NDEAD + side - 1] = 0


@inline
def get_or_add_level(book, m: int, side: int, price: int) -> int:
    """Level at ``price``, created or revived if needed (the caller checked
    ``can_add_level`` when ``find_level`` said NIL)."""
    keys = book[B_SKEYS]
    slv = book[B_SLEVELS]
    ms = book[B_MSTATE]
    levels = book[B_LEVELS]
    base = side_base(book, m, side)
    n = ms[m, MS_NLEVELS + side - 1]
    key = level_key(side, price)
    pos = _bisect(keys, base, base + n, key)
    if pos < base + n and keys[pos] == key:
        lv = slv[pos]
        if levels[lv]["count"] == 0:
            ms[m, MS_NDEAD + side - 1] -= 1
        return lv
    if n == book[B_MPARAMS][m, MP_MAX_LEVELS]:  # full of live and dead: drop the dead
        _compact(book, m, side)
        n = ms[m, MS_NLEVELS + side - 1]
        pos = _bisect(keys, base, base + n, key)
    lv = ms[m, MS_FREE_LEVEL]
    if lv == NIL:
        lv = ms[m, MS_LEVEL_BUMP]
        ms[m, MS_LEVEL_BUMP] = lv + 1
    else:
        ms[m, MS_FREE_LEVEL] = levels[lv]["next_free"]
    levels[lv]["price"] = price
    levels[lv]["total"] = 0
    levels[lv]["count"] = 0
    levels[lv]["head"] = NIL
    levels[lv]["tail"] = NIL
    levels[lv]["next_free"] = NIL
    move_items(keys, pos + 1, pos, base + n - pos)
    move_items(slv, pos + 1, pos, base + n - pos)
    keys[pos] = key
    slv[pos] = lv
    ms[m, MS_NLEVELS + side - 1] = n + 1
    return lv


@inline
def _drop_level(book, m: int, side: int, lv: int) -> None:
    """The level ``lv`` of (m, side) has emptied: pop it if it is the best (with the
    dead entries under it), else leave it dead in place."""
    slv = book[B_SLEVELS]
    ms = book[B_MSTATE]
    levels = book[B_LEVELS]
    base = side_base(book, m, side)
    n = ms[m, MS_NLEVELS + side - 1]
    if slv[base + n - 1] != lv:
        dead = ms[m, MS_NDEAD + side - 1] + 1
        ms[m, MS_NDEAD + side - 1] = dead
        if dead > DEAD_RATIO * (n - dead) + DEAD_SLACK:
            _compact(book, m, side)
        return
    _free_level(book, m, lv)
    n -= 1
    while n > 0 and levels[slv[base + n - 1]]["count"] == 0:
        _free_level(book, m, slv[base + n - 1])
        ms[m, MS_NDEAD + side - 1] -= 1
        n -= 1
    ms[m, MS_NLEVELS + side - 1] = n


@inline
def has_free_slot(book, m: int) -> bool:
    """True if market ``m`` can take one more resting order."""
    mp = book[B_MPARAMS]
    ms = book[B_MSTATE]
    return (
        ms[m, MS_FREE_ORDER] != NIL or ms[m, MS_ORDER_BUMP] < mp[m, MP_OBASE] + mp[m, MP_MAX_ORDERS]
    )


@inline
def alloc_slot(book, m: int) -> int:
    """Take a free order slot of market ``m`` (the caller checked ``has_free_slot``)."""
    ms = book[B_MSTATE]
    slot = ms[m, MS_FREE_ORDER]
    if slot == NIL:
        slot = ms[m, MS_ORDER_BUMP]
        ms[m, MS_ORDER_BUMP] = slot + 1
    else:
        ms[m, MS_FREE_ORDER] = book[B_ORDERS][slot]["next"]
    return slot


@inline
def free_slot(book, m: int, slot: int) -> None:
    """Return ``slot`` to market ``m``'s free list."""
    orders = book[B_ORDERS]
    ms = book[B_MSTATE]
    orders[slot]["id"] = 0
    orders[slot]["next"] = ms[m, MS_FREE_ORDER]
    ms[m, MS_FREE_ORDER] = slot


@inline
def level_push(book, m: int, slot: int) -> None:
    """Append the order at ``slot`` to the tail of its price level (created if needed)."""
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    o = orders[slot]
    lv = get_or_add_level(book, m, o["side"], o["price"])
    o["level"] = lv
    o["next"] = NIL
    o["prev"] = levels[lv]["tail"]
    if levels[lv]["tail"] == NIL:
        levels[lv]["head"] = slot
    else:
        orders[levels[lv]["tail"]]["next"] = slot
    levels[lv]["tail"] = slot
    levels[lv]["count"] += 1
    levels[lv]["total"] += o["left"]
    book[B_MSTATE][m, MS_NORDERS + o["side"] - 1] += 1


@inline
def level_unlink(book, m: int, slot: int) -> None:
    """Take the order at ``slot`` out of its level; drop the level if it empties."""
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    o = orders[slot]
    lv = o["level"]
    if o["prev"] == NIL:
        levels[lv]["head"] = o["next"]
    else:
        orders[o["prev"]]["next"] = o["next"]
    if o["next"] == NIL:
        levels[lv]["tail"] = o["prev"]
    else:
        orders[o["next"]]["prev"] = o["prev"]
    levels[lv]["count"] -= 1
    levels[lv]["total"] -= o["left"]
    o["level"] = NIL
    book[B_MSTATE][m, MS_NORDERS + o["side"] - 1] -= 1
    if levels[lv]["count"] == 0:
        _drop_level(book, m, o["side"], lv)


@inline
def user_key(m, acct):
    """Key of (market, account) in the per-user index (m may be a narrow int16)."""
    return (np.int64(m) << 32) | acct


@inline
def user_link(book, m: int, slot: int) -> None:
    """Put a newly resting order at the head (newest end) of its user's list."""
    info = book[B_INFO]
    ukeys = book[B_U_KEYS]
    uhead = book[B_U_HEAD]
    ucount = book[B_U_COUNT]
    key = user_key(m, book[B_ORDERS][slot]["acct"])
    i = hashmap.find(ukeys, key)
    if i < 0:
        i = hashmap.insert_slot(ukeys, key)
        uhead[i] = NIL
        ucount[i] = 0
    head = uhead[i]
    info[slot]["unext"] = head
    info[slot]["uprev"] = NIL
    if head != NIL:
        info[head]["uprev"] = slot
    uhead[i] = slot
    ucount[i] += 1


@inline
def user_unlink(book, m: int, slot: int) -> None:
    """Take the order at ``slot`` out of its user's list."""
    info = book[B_INFO]
    ukeys = book[B_U_KEYS]
    uhead = book[B_U_HEAD]
    ucount = book[B_U_COUNT]
    c = info[slot]
    i = hashmap.find(ukeys, user_key(m, book[B_ORDERS][slot]["acct"]))
    if c["uprev"] == NIL:
        uhead[i] = c["unext"]
    else:
        info[c["uprev"]]["unext"] = c["unext"]
    if c["unext"] != NIL:
        info[c["unext"]]["uprev"] = c["uprev"]
    ucount[i] -= 1
    if ucount[i] == 0:
        hashmap.remove_2(ukeys, uhead, ucount, i)


@inline
def user_orders(book, m: int, acct: int) -> tuple[int, int]:
    """(newest slot or NIL, count) of the account's resting orders in market ``m``."""
    if acct < 0:
        return NIL, 0
    i = hashmap.find(book[B_U_KEYS], user_key(m, acct))
    if i < 0:
        return NIL, 0
    return book[B_U_HEAD][i], book[B_U_COUNT][i]


@inline
def index_put(book, order_id: int, slot: int) -> None:
    """Record that ``order_id`` rests at ``slot`` (whose record carries the id)."""
    hashmap.record_insert(book[B_IDX], order_id, slot)


@inline
def index_find(book, order_id: int) -> int:
    """Pool slot of resting ``order_id``, or NIL."""
    table = book[B_IDX]
    i = hashmap.record_find(table, book[B_ORDERS], order_id)
    if i < 0:
        return NIL
    return table[i] - 1


@inline
def index_remove(book, order_id: int) -> None:
    """Forget ``order_id`` (it must be present, its record still carrying the id)."""
    table = book[B_IDX]
    orders = book[B_ORDERS]
    hashmap.record_remove(table, orders, hashmap.record_find(table, orders, order_id))
