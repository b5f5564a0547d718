"""Settlement on the book: everything that moves money or takes an order off the book.

Reserves (what a resting order keeps frozen), balance moves as BALANCE events, one
fill between a taker and a maker (the deal, the trade and fee legs, the fee income),
the matching loop of a taker against the opposite side, and the removal of a resting
order (cancelled, or filled). The order commands in ``match.py`` call these once their
checks have passed.

None of them touches a balance: a move is only its BALANCE event (the change, with
the account index in ``user``), and the ledger (``ledger.py``) applies the command's
events to the balances afterwards. That is the line between a pair worker (the book)
and the sequencer (the balances) of docs/daemon.md; in one process the two run one
after the other for every command.
"""

from __future__ import annotations

import numpy as np

from core.kernels import book as bk
from core.kernels import events as evw
from core.kernels import tags
from core.kernels.arith import fee_of
from core.kernels.codes import (
    ASK,
    BID,
    FILLED,
    SELF_TRADE,
    STP_CANCEL_BOTH,
    STP_CANCEL_TAKER,
    STP_NONE,
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
    MP_MONEY,
    MP_STOCK,
    MP_STOCK_SCALE,
    MS_LAST_PRICE,
    NIL,
)


@inline
def reserve_of(mp: np.ndarray, m: int, side: int, price: int, left: int) -> int:
    """Frozen funds of a resting order: stock units (ask) or money units (bid)."""
    if side == ASK:
        return left * mp[m, MP_STOCK_SCALE]
    return price * left * mp[m, MP_DEAL_SCALE]


@inline
def _move(ev, ne, ts, m, acct, asset, reason, d_avail, d_frozen, oid, did) -> int:
    """A BALANCE event moving ``d_avail`` and ``d_frozen`` of ``acct``'s ``asset``.

    Only the event: the ledger (``ledger.py``) applies it to the balances, writes the
    balance after it, and turns the account index in ``user`` into the user id.
    """
    return evw.emit_balance(
        ev, ne, 0, ts, m, acct, asset, reason, d_avail, d_frozen, 0, 0, oid, did, 0
    )


@inline
def order_asset(mp: np.ndarray, m: int, side: int) -> int:
    """The asset an order of ``side`` freezes: stock for an ask, money for a bid."""
    return mp[m, MP_STOCK] if side == ASK else mp[m, MP_MONEY]


@inline
def reserve_move(ev, ne, ts, mp, m, o, amount) -> int:
    """Move ``amount`` of order ``o``'s reserve asset from available to frozen (FREEZE),
    or from frozen back to available when ``amount`` is negative (UNFREEZE)."""
    asset = order_asset(mp, m, o["side"])
    reason = evw.FREEZE if amount > 0 else evw.UNFREEZE
    return _move(ev, ne, ts, m, o["acct"], asset, reason, -amount, amount, o["id"], 0)


@inline
def remove_resting(book, m: int, slot: int) -> None:
    """Forget a resting order entirely (it is already out of its level)."""
    bk.user_unlink(book, m, slot)
    bk.index_remove(book, book[B_ORDERS][slot]["id"])
    tags.release(book, book[B_INFO][slot]["source"])
    bk.free_slot(book, m, slot)


@inline
def cancel_resting(book, ev, ne, ts, m, slot, reason) -> int:
    """Unfreeze a resting order's reserve, report it as it stood, and remove it."""
    orders = book[B_ORDERS]
    mp = book[B_MPARAMS]
    o = orders[slot]
    r = reserve_of(mp, m, o["side"], o["price"], o["left"])
    ne = reserve_move(ev, ne, ts, mp, m, o, -r)
    deal_stock = book[B_INFO][slot]["amount"] - o["left"]
    ne = evw.emit_order(ev, ne, evw.ORDER_FINISH, reason, ts, book, slot, m, deal_stock)
    bk.level_unlink(book, m, slot)
    remove_resting(book, m, slot)
    return ne


@kernel
def _fill(book, ev, ne, ts, fee_acct, m, t, k, q, market_bid):
    """Trade ``q`` lots between taker slot ``t`` and maker slot ``k`` at the maker's price.

    The DEAL event and its balance legs carry the deal id ``DEAL_MARK``; the ledger
    numbers the deals.
    """
    orders = book[B_ORDERS]
    info = book[B_INFO]
    mp = book[B_MPARAMS]
    tk = orders[t]
    mk = orders[k]
    p = mk["price"]
    book[B_MSTATE][m, MS_LAST_PRICE] = p  # the price band's reference (checks.py)
    stock = mp[m, MP_STOCK]
    money = mp[m, MP_MONEY]
    den = mp[m, MP_FEE_DEN]
    units = q * mp[m, MP_STOCK_SCALE]
    deal = p * q * mp[m, MP_DEAL_SCALE]
    did = evw.DEAL_MARK
    if tk["side"] == ASK:
        t_fee = fee_of(deal, info[t]["taker_rate"], den)
        m_fee = fee_of(units, mk["maker_rate"], den)
        t_give_asset, t_give, t_get_asset, t_get = stock, units, money, deal
    else:
        t_fee = fee_of(units, info[t]["taker_rate"], den)
        m_fee = fee_of(deal, mk["maker_rate"], den)
        t_give_asset, t_give, t_get_asset, t_get = money, deal, stock, units
    ta = tk["acct"]
    tid = tk["id"]
    ma = mk["acct"]
    mid = mk["id"]
    ne = evw.emit_deal(
        ev, ne, 0, ts, m, did, tk["side"], tid, ta, mid, ma, p, q, deal, t_fee, m_fee
    )
    ne = _move(ev, ne, ts, m, ta, t_give_asset, evw.TRADE, -t_give, 0, tid, did)
    ne = _move(ev, ne, ts, m, ta, t_get_asset, evw.TRADE, t_get, 0, tid, did)
    if t_fee > 0:
        ne = _move(ev, ne, ts, m, ta, t_get_asset, evw.FEE, -t_fee, 0, tid, did)
    ne = _move(ev, ne, ts, m, ma, t_get_asset, evw.TRADE, 0, -t_get, mid, did)
    ne = _move(ev, ne, ts, m, ma, t_give_asset, evw.TRADE, t_give, 0, mid, did)
    if m_fee > 0:
        ne = _move(ev, ne, ts, m, ma, t_give_asset, evw.FEE, -m_fee, 0, mid, did)
    if t_fee > 0:
        ne = _move(ev, ne, ts, m, fee_acct, t_get_asset, evw.FEE_INCOME, t_fee, 0, tid, did)
    if m_fee > 0:
        ne = _move(ev, ne, ts, m, fee_acct, t_give_asset, evw.FEE_INCOME, m_fee, 0, mid, did)
    if market_bid:
        tk["left"] -= deal
    else:
        tk["left"] -= q
    tk["deal_money"] += deal
    tk["deal_fee"] += t_fee
    info[t]["mtime_ns"] = ts
    mk["left"] -= q
    mk["deal_money"] += deal
    mk["deal_fee"] += m_fee
    info[k]["mtime_ns"] = ts
    book[B_LEVELS][mk["level"]]["total"] -= q
    amount = info[k]["amount"]
    if mk["left"] > 0:
        return evw.emit_order(ev, ne, evw.ORDER_UPDATE, 0, ts, book, k, m, amount - mk["left"])
    ne = evw.emit_order(ev, ne, evw.ORDER_FINISH, FILLED, ts, book, k, m, amount)
    bk.level_unlink(book, m, k)
    remove_resting(book, m, k)
    return ne


@kernel
def match_taker(book, ev, ne, ts, fee_acct, m, t, limit, is_market):
    """Match the taker at slot ``t``; returns (ne, lots filled, stopped by STP)."""
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    side = orders[t]["side"]
    opp = 3 - side
    market_bid = is_market and side == BID
    deal_scale = book[B_MPARAMS][m, MP_DEAL_SCALE]
    filled = 0
    while orders[t]["left"] > 0:
        lv = bk.best_level(book, m, opp)
        if lv == NIL:
            break
        p = levels[lv]["price"]
        if not is_market and ((side == ASK and p < limit) or (side == BID and p > limit)):
            break
        k = levels[lv]["head"]
        stp = orders[t]["stp"]
        if stp != STP_NONE and orders[k]["acct"] == orders[t]["acct"]:
            if stp == STP_CANCEL_TAKER:
                return ne, filled, True
            ne = cancel_resting(book, ev, ne, ts, m, k, SELF_TRADE)
            if stp == STP_CANCEL_BOTH:
                return ne, filled, True
            continue
        if market_bid:
            q = orders[t]["left"] // (p * deal_scale)
            if q > orders[k]["left"]:
                q = orders[k]["left"]
            if q == 0:
                break
        else:
            q = min(orders[t]["left"], orders[k]["left"])
        ne = _fill(book, ev, ne, ts, fee_acct, m, t, k, q, market_bid)
        filled += q
    return ne, filled, False
