"""Writers of EVENT_DTYPE records into the caller's preallocated buffer.

Every writer sets every field of the record (the buffer is reused), and returns the
next free index.
"""

from __future__ import annotations

import numpy as np

from core.kernels import tags
from core.kernels.jit import inline
from core.kernels.layout import B_INFO, B_ORDERS
from core.schema import ORDER_FLAG_MARKET, Business, EventKind, OrderType

ORDER_PUT = int(EventKind.ORDER_PUT)
ORDER_UPDATE = int(EventKind.ORDER_UPDATE)
ORDER_FINISH = int(EventKind.ORDER_FINISH)
DEAL = int(EventKind.DEAL)
BALANCE = int(EventKind.BALANCE)
MARKET_STATUS = int(EventKind.MARKET_STATUS)
USER_STATUS = int(EventKind.USER_STATUS)
MARKET_LIMIT = int(EventKind.MARKET_LIMIT)
USER_LIMIT = int(EventKind.USER_LIMIT)
LIMIT = int(OrderType.LIMIT)
MARKET = int(OrderType.MARKET)

TRADE = int(Business.TRADE)
FEE = int(Business.FEE)
FEE_INCOME = int(Business.FEE_INCOME)
FREEZE = int(Business.FREEZE)
UNFREEZE = int(Business.UNFREEZE)
UPDATE = int(Business.UPDATE)

#: The deal id that the book writes into a DEAL event and its balance legs; the ledger
#: replaces it with the deal's number.
DEAL_MARK = 1


@inline
def _clear_source(e) -> None:
    src = e["source"]
    for i in range(32):
        src[i] = 0


@inline
def emit_order(
    ev: np.ndarray,
    ne: int,
    kind: int,
    reason: int,
    ts: int,
    book,
    slot: int,
    m: int,
    deal_stock: int,
) -> int:
    """An ORDER_* event with the full state of the order at ``slot``; ``seq`` 0 and the
    owner's account index in ``user`` until the ledger fills them in."""
    e = ev[ne]
    o = book[B_ORDERS][slot]
    c = book[B_INFO][slot]
    flags = o["flags"]
    e["seq"] = 0
    e["ts_ns"] = ts
    e["order_id"] = o["id"]
    e["user"] = o["acct"]
    e["price"] = o["price"]
    e["amount"] = c["amount"]
    e["left"] = o["left"]
    e["deal_stock"] = deal_stock
    e["deal_money"] = o["deal_money"]
    e["deal_fee"] = o["deal_fee"]
    e["ctime_ns"] = c["ctime_ns"]
    e["deal_id"] = 0
    e["maker_order"] = 0
    e["maker_user"] = 0
    e["maker_fee"] = 0
    e["taker_rate"] = c["taker_rate"]
    e["maker_rate"] = o["maker_rate"]
    e["market"] = m
    e["asset"] = 0
    e["kind"] = kind
    e["reason"] = reason
    e["side"] = o["side"]
    e["otype"] = MARKET if (flags & ORDER_FLAG_MARKET) != 0 else LIMIT
    e["tif"] = o["tif"]
    e["stp"] = o["stp"]
    e["flags"] = flags & ~ORDER_FLAG_MARKET
    e["source_len"] = tags.copy_to(book, c["source"], e["source"])
    e["mtime_ns"] = c["mtime_ns"]
    e["_pad"] = 0
    return ne + 1


@inline
def emit_balance(
    ev: np.ndarray,
    ne: int,
    seq: int,
    ts: int,
    m: int,
    user: int,
    asset: int,
    reason: int,
    d_available: int,
    d_frozen: int,
    available: int,
    frozen: int,
    order_id: int,
    deal_id: int,
    business_id: int,
) -> int:
    """A BALANCE event: the change and the balance after it."""
    e = ev[ne]
    e["seq"] = seq
    e["ts_ns"] = ts
    e["order_id"] = order_id
    e["user"] = user
    e["price"] = 0
    e["amount"] = 0
    e["left"] = available
    e["deal_stock"] = frozen
    e["deal_money"] = d_available
    e["deal_fee"] = d_frozen
    e["ctime_ns"] = business_id
    e["deal_id"] = deal_id
    e["maker_order"] = 0
    e["maker_user"] = 0
    e["maker_fee"] = 0
    e["taker_rate"] = 0
    e["maker_rate"] = 0
    e["market"] = m
    e["asset"] = asset
    e["kind"] = BALANCE
    e["reason"] = reason
    e["side"] = 0
    e["otype"] = 0
    e["tif"] = 0
    e["stp"] = 0
    e["flags"] = 0
    e["source_len"] = 0
    _clear_source(e)
    e["mtime_ns"] = 0
    e["_pad"] = 0
    return ne + 1


@inline
def emit_deal(
    ev: np.ndarray,
    ne: int,
    seq: int,
    ts: int,
    m: int,
    deal_id: int,
    taker_side: int,
    taker_order: int,
    taker_user: int,
    maker_order: int,
    maker_user: int,
    price: int,
    lots: int,
    money: int,
    taker_fee: int,
    maker_fee: int,
) -> int:
    """A DEAL event."""
    e = ev[ne]
    e["seq"] = seq
    e["ts_ns"] = ts
    e["order_id"] = taker_order
    e["user"] = taker_user
    e["price"] = price
    e["amount"] = lots
    e["left"] = 0
    e["deal_stock"] = 0
    e["deal_money"] = money
    e["deal_fee"] = taker_fee
    e["ctime_ns"] = 0
    e["deal_id"] = deal_id
    e["maker_order"] = maker_order
    e["maker_user"] = maker_user
    e["maker_fee"] = maker_fee
    e["taker_rate"] = 0
    e["maker_rate"] = 0
    e["market"] = m
    e["asset"] = 0
    e["kind"] = DEAL
    e["reason"] = 0
    e["side"] = taker_side
    e["otype"] = 0
    e["tif"] = 0
    e["stp"] = 0
    e["flags"] = 0
    e["source_len"] = 0
    _clear_source(e)
    e["mtime_ns"] = 0
    e["_pad"] = 0
    return ne + 1


@inline
def emit_status(ev: np.ndarray, ne: int, kind: int, ts: int, m: int, acct: int, new: int, old: int):
    """A MARKET_STATUS (``m`` the market, ``acct`` 0) or USER_STATUS (``m`` -1, the
    user's account index in ``user`` until the ledger names the user) event."""
    e = ev[ne]
    e["seq"] = 0
    e["ts_ns"] = ts
    e["order_id"] = 0
    e["user"] = acct
    e["price"] = 0
    e["amount"] = old
    e["left"] = 0
    e["deal_stock"] = 0
    e["deal_money"] = 0
    e["deal_fee"] = 0
    e["ctime_ns"] = 0
    e["deal_id"] = 0
    e["maker_order"] = 0
    e["maker_user"] = 0
    e["maker_fee"] = 0
    e["taker_rate"] = 0
    e["maker_rate"] = 0
    e["market"] = m
    e["asset"] = 0
    e["kind"] = kind
    e["reason"] = new
    e["side"] = 0
    e["otype"] = 0
    e["tif"] = 0
    e["stp"] = 0
    e["flags"] = 0
    e["source_len"] = 0
    _clear_source(e)
    e["mtime_ns"] = 0
    e["_pad"] = 0
    return ne + 1
