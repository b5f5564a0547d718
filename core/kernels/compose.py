"""Moving one market's book from one set of book arrays into another.

In the multi-process daemon every pair worker runs the book half on a full-size book
of its own and touches only its markets (docs/daemon.md, "Sequencer and pair
workers"). To see the whole state as one engine (snapshots, the state hash, a
recovery) the markets' books are merged into one fresh book, market by market.

A market's own ranges move as they are: its pool slots and their info records, its
levels, its two sorted level arrays and its ``mstate`` row hold only absolute indexes
into those same ranges (order and level links, free lists, bump pointers), and both
books have the same layout, so the indexes stay valid. What all markets share is
rebuilt in the destination: the order id index, the per-(market, account) index and
the interned source tags (an order's tag id is the destination's).

Free pool slots have id 0 (``free_slot``) and slots at or above the bump pointer were
never used, so the live orders are the slots of ``[MP_OBASE, MS_ORDER_BUMP)`` with a
non-zero id; the levels in use are below ``MS_LEVEL_BUMP``, and each sorted array's
entries below its ``MS_NLEVELS`` count (the entries beyond are stale and never read).
Only those are copied: a large pool stays unmapped where it was never touched.
"""

from __future__ import annotations

from core.kernels import book as bk
from core.kernels import hashmap, tags
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    B_SKEYS,
    B_SLEVELS,
    B_SRC_DATA,
    B_U_COUNT,
    B_U_HEAD,
    B_U_KEYS,
    MP_LBASE,
    MP_LENGTH,
    MP_MAX_LEVELS,
    MP_OBASE,
    MP_SBASE,
    MS_FREE_LEVEL,
    MS_FREE_ORDER,
    MS_LAST_PRICE,
    MS_LENGTH,
    MS_LEVEL_BUMP,
    MS_NDEAD,
    MS_NLEVELS,
    MS_NORDERS,
    MS_ORDER_BUMP,
    NIL,
    SRC_LEN,
)

# Codes returned by merge_market (0 = merged). On any other code nothing was written.
MERGE_OK = 0
#: The two books' arrays or market ``m``'s parameters (its ranges) differ.
MERGE_BAD_LAYOUT = 1
#: The destination's market ``m`` is not as ``init_market`` left it (it was used), or
#: the destination's account index already has an entry of the market.
MERGE_NOT_EMPTY = 2
#: An order id of the source's market already rests in the destination.
MERGE_DUPLICATE_ID = 3


@inline
def _layout_differs(dst, src, m: int) -> bool:
    """True if the books' arrays or market ``m``'s parameters differ (the market's
    ranges would not line up)."""
    if (
        dst[B_ORDERS].shape[0] != src[B_ORDERS].shape[0]
        or dst[B_INFO].shape[0] != src[B_INFO].shape[0]
        or dst[B_LEVELS].shape[0] != src[B_LEVELS].shape[0]
        or dst[B_SKEYS].shape[0] != src[B_SKEYS].shape[0]
        or dst[B_SLEVELS].shape[0] != src[B_SLEVELS].shape[0]
        or not 0 <= m < min(dst[B_MPARAMS].shape[0], src[B_MPARAMS].shape[0])
        or not 0 <= m < min(dst[B_MSTATE].shape[0], src[B_MSTATE].shape[0])
    ):
        return True
    for j in range(MP_LENGTH):  # noqa: SIM110 (numba compiles no generator into any())
        if dst[B_MPARAMS][m, j] != src[B_MPARAMS][m, j]:
            return True
    return False


@inline
def _is_fresh(book, m: int) -> bool:
    """True if market ``m`` is as ``init_market`` left it."""
    mp = book[B_MPARAMS]
    ms = book[B_MSTATE]
    return (
        ms[m, MS_FREE_ORDER] == NIL
        and ms[m, MS_ORDER_BUMP] == mp[m, MP_OBASE]
        and ms[m, MS_FREE_LEVEL] == NIL
        and ms[m, MS_LEVEL_BUMP] == mp[m, MP_LBASE]
        and ms[m, MS_NLEVELS] == 0
        and ms[m, MS_NLEVELS + 1] == 0
        and ms[m, MS_NORDERS] == 0
        and ms[m, MS_NORDERS + 1] == 0
        and ms[m, MS_NDEAD] == 0
        and ms[m, MS_NDEAD + 1] == 0
        and ms[m, MS_LAST_PRICE] == 0
    )


@inline
def _check_orders(dst, src, m: int) -> int:
    """MERGE_OK if every live order of the source's market can enter the destination."""
    orders = src[B_ORDERS]
    info = src[B_INFO]
    for slot in range(src[B_MPARAMS][m, MP_OBASE], src[B_MSTATE][m, MS_ORDER_BUMP]):
        oid = orders[slot]["id"]
        if oid == 0:
            continue
        if bk.index_find(dst, oid) != NIL:
            return MERGE_DUPLICATE_ID
        if info[slot]["uprev"] == NIL and bk.user_orders(dst, m, orders[slot]["acct"])[1] != 0:
            return MERGE_NOT_EMPTY
    return MERGE_OK


@inline
def _copy_ranges(dst, src, m: int) -> None:
    """Copy market ``m``'s used pool slots, levels, sorted arrays and mstate row."""
    mp = src[B_MPARAMS]
    ms = src[B_MSTATE]
    for slot in range(mp[m, MP_OBASE], ms[m, MS_ORDER_BUMP]):
        dst[B_ORDERS][slot] = src[B_ORDERS][slot]
        dst[B_INFO][slot] = src[B_INFO][slot]
    for lv in range(mp[m, MP_LBASE], ms[m, MS_LEVEL_BUMP]):
        dst[B_LEVELS][lv] = src[B_LEVELS][lv]
    for side in range(2):
        base = mp[m, MP_SBASE] + side * mp[m, MP_MAX_LEVELS]
        for i in range(base, base + ms[m, MS_NLEVELS + side]):
            dst[B_SKEYS][i] = src[B_SKEYS][i]
            dst[B_SLEVELS][i] = src[B_SLEVELS][i]
    for j in range(MS_LENGTH):
        dst[B_MSTATE][m, j] = ms[m, j]


@kernel
def merge_market(dst, src, m: int) -> int:
    """Copy market ``m``'s book from the book tuple ``src`` into ``dst``; returns a
    MERGE_* code.

    ``dst``'s market ``m`` must be empty as ``init_market`` left it, and both books
    must have the same layout (array lengths and market ``m``'s parameters). Every
    live order of the market rests in ``dst`` afterwards at the slot it had in
    ``src``, indexed by its id, linked in its account's list (head and count
    rebuilt), holding its source tag interned in ``dst``. ``src`` is only read.
    A code other than MERGE_OK is returned before anything is written.
    """
    if _layout_differs(dst, src, m):
        return MERGE_BAD_LAYOUT
    if not _is_fresh(dst, m):
        return MERGE_NOT_EMPTY
    code = _check_orders(dst, src, m)
    if code != MERGE_OK:
        return code
    _copy_ranges(dst, src, m)
    orders = dst[B_ORDERS]
    info = dst[B_INFO]
    data = src[B_SRC_DATA]
    for slot in range(dst[B_MPARAMS][m, MP_OBASE], dst[B_MSTATE][m, MS_ORDER_BUMP]):
        oid = orders[slot]["id"]
        if oid == 0:
            continue
        bk.index_put(dst, oid, slot)
        t = info[slot]["source"]
        if t != 0:
            info[slot]["source"] = tags.acquire(dst, data[t], data[t, SRC_LEN])
        if info[slot]["uprev"] == NIL:  # the newest order of its account: the list's head
            count = 0
            s = slot
            while s != NIL:
                count += 1
                s = info[s]["unext"]
            i = hashmap.insert_slot(dst[B_U_KEYS], bk.user_key(m, orders[slot]["acct"]))
            dst[B_U_HEAD][i] = slot
            dst[B_U_COUNT][i] = count
    return MERGE_OK
