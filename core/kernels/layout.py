"""Indexes into the state tuples and parameter tables the kernels share.

The numba engine's state is a handful of numpy arrays (so ``ipc`` can later place
them in shared memory). Kernels receive them grouped in two tuples:

``book`` (per group of markets)::

    B_ORDERS   ORDER_DTYPE[n + 1]    order pool (hot records); market m owns
                                     [MP_OBASE, +MP_MAX_ORDERS); the last slot is the
                                     scratch taker
    B_INFO     ORDER_INFO_DTYPE[n + 1]  the rest of each order, slot for slot
    B_LEVELS   LEVEL_DTYPE[l]        level pool; market m owns [MP_LBASE, +2*MP_MAX_LEVELS)
    B_SKEYS    int64[s]              per (market, side) sorted level keys, best last:
                                     key = -price for asks, price for bids
    B_SLEVELS  int32[s]              the level index beside each key
    B_IDX      int32[h]              order id -> pool slot + 1 (0 = free); the id is
                                     the pool record's, so the table holds no keys
    B_U_KEYS   int64[u], B_U_HEAD int32[u], B_U_COUNT int32[u]
                                     (market << 32 | account) -> newest resting order, count
    B_MPARAMS  int64[markets, MP_LENGTH]  constants per market (below)
    B_MSTATE   int64[markets, MS_LENGTH]  variables per market (below)
    B_SRC_DATA uint8[t, 32]          interned source tags: bytes, length in byte 31;
                                     tag 0 is the empty tag
    B_SRC_REFS int32[t]              orders holding each tag; a free tag's next free tag
    B_SRC_IDX  int32[g]              tag hash table: tag id (0 = free)
    B_SRC_STATE int64[SS_LENGTH]     tag allocator (below)

``accounts``::

    A_KEYS int64[h], A_VALS int32[h]  user id -> account index
    A_BALANCES int64[max_users, assets, 2]  (available, frozen)
    A_USERS int64[max_users]          account index -> user id
    A_CIDS int64[c, 3]                client order ids: (user, client id, order id)
                                      rows, zeros free (client_ids.py)
    A_MSTATUS int64[markets]          each market's MarketStatus (admin.py)
    A_USTATUS int8[max_users]         account index -> UserStatus (admin.py)
    A_ULIMITS int64[c, 4]             user risk limits: (user, market + 1,
                                      max_order_amount, max_notional) rows, zeros
                                      free (user_limits.py)
"""

from __future__ import annotations

B_ORDERS = 0
B_INFO = 1
B_LEVELS = 2
B_SKEYS = 3
B_SLEVELS = 4
B_IDX = 5
B_U_KEYS = 6
B_U_HEAD = 7
B_U_COUNT = 8
B_MPARAMS = 9
B_MSTATE = 10
B_SRC_DATA = 11
B_SRC_REFS = 12
B_SRC_IDX = 13
B_SRC_STATE = 14

A_KEYS = 0
A_VALS = 1
A_BALANCES = 2
A_USERS = 3
A_CIDS = 4
A_MSTATUS = 5
A_USTATUS = 6
A_ULIMITS = 7

AVAILABLE = 0
FROZEN = 1

MP_STOCK = 0
MP_MONEY = 1
MP_STOCK_SCALE = 2
MP_DEAL_SCALE = 3
MP_FEE_DEN = 4
MP_MIN_AMOUNT = 5
MP_MAX_AMOUNT = 6
MP_MAX_PRICE = 7
MP_MAX_ORDERS = 8
MP_MAX_LEVELS = 9
MP_OBASE = 10
MP_LBASE = 11
MP_SBASE = 12
MP_PRICE_STEP = 13  #: ticks a price must be a multiple of (1: any)
MP_AMOUNT_STEP = 14  #: lots an amount must be a multiple of (1: any)
MP_MIN_NOTIONAL = 15  #: money units an order's value must reach (0: none)
MP_MAX_NOTIONAL = 16  #: money units an order's value may not exceed (0: none)
MP_MAX_OPEN_ORDERS = 17  #: resting orders per user (0: none)
MP_PRICE_BAND = 18  #: millionths of the last price a limit price may be away (0: none)
MP_MAX_ORDER_AMOUNT = 19  #: lots an order may not exceed (0: none)
MP_LENGTH = 20

MS_NLEVELS = 0  #: + side - 1: entries of the ask (0) and bid (1) sorted arrays
MS_NORDERS = 2  #: + side - 1: resting orders per side
MS_FREE_ORDER = 4  #: head of the list of freed order slots (NIL = none)
MS_FREE_LEVEL = 5  #: head of the list of freed levels (NIL = none)
MS_ORDER_BUMP = 6  #: next never-used order slot (pools are handed out lazily, so an
MS_LEVEL_BUMP = 7  #: untouched pool costs no memory); next never-used level
MS_NDEAD = 8  #: + side - 1: emptied levels kept in the sorted arrays (book.py)
MS_LAST_PRICE = 10  #: ticks: the price of the market's last deal (0: none yet)
MS_LENGTH = 11

SS_BUMP = 0  #: next never-used tag id
SS_FREE = 1  #: head of the list of freed tag ids (NIL = none)
SS_LIVE = 2  #: tags in use, the empty tag excluded
SS_LENGTH = 4

#: Byte of a B_SRC_DATA row that holds the tag's length.
SRC_LEN = 31

NIL = -1
