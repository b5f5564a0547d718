"""Settlement: everything that moves money or takes an order off the book.

Reserves (what a resting order keeps frozen), balance moves with their BALANCE events,
one fill between a taker and a maker (the deal, the trade and fee legs, the fee
income), the matching loop of a taker against the opposite side, and the removal of a
resting order (cancelled, or filled). The order commands in ``match.py`` call these
once their checks have passed.
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
    A_BALANCES,
    A_USERS,
    AVAILABLE,
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_ORDERS,
    FROZEN,
    MP_DEAL_SCALE,
    MP_FEE_DEN,
    MP_MONEY,
    MP_STOCK,
    MP_STOCK_SCALE,
    NIL,
)
from core.schema import COUNTER_DEAL_ID


@inline
def reserve_of(mp: np.ndarray, m: int, side: int, price: int, left: int) -> int:
    """Frozen funds of a resting order: stock units (ask) or money units (bid)."""
    if side == ASK:
        return left * mp[m, MP_STOCK_SCALE]
    return price * left * mp[m, MP_DEAL_SCALE]


@inline
def _move(
    accounts, ev, ne, seq, ts, m, acct, user, asset, reason, d_avail, d_frozen, oid, did
) -> int:
    bal = accounts[A_BALANCES]
    bal[acct, asset, AVAILABLE] += d_avail
    bal[acct, asset, FROZEN] += d_frozen
    return evw.emit_balance(
        ev,
        ne,
        seq,
        ts,
        m,
        user,
        asset,
        reason,
        d_avail,
        d_frozen,
        bal[acct, asset, AVAILABLE],
        bal[acct, asset, FROZEN],
        oid,
        did,
        0,
    )


@inline
def order_asset(mp: np.ndarray, m: int, side: int) -> int:
    """The asset an order of ``side`` freezes: stock for an ask, money for a bid."""
    return mp[m, MP_STOCK] if side == ASK else mp[m, MP_MONEY]


@inline
def reserve_move(accounts, ev, ne, seq, ts, mp, m, o, amount) -> int:
    """Move ``amount`` of order ``o``'s reserve asset from available to frozen (FREEZE),
    or from frozen back to available when ``amount`` is negative (UNFREEZE)."""
    asset = order_asset(mp, m, o["side"])
    reason = evw.FREEZE if amount > 0 else evw.UNFREEZE
    return _move(
        accounts,
        ev,
        ne,
        seq,
        ts,
        m,
        o["acct"],
        accounts[A_USERS][o["acct"]],
        asset,
        reason,
        -amount,
        amount,
        o["id"],
        0,
    )


@inline
def remove_resting(book, m: int, slot: int) -> None:
    """Forget a resting order entirely (it is already out of its level)."""
    bk.user_unlink(book, m, slot)
    bk.index_remove(book, book[B_ORDERS][slot]["id"])
    tags.release(book, book[B_INFO][slot]["source"])
    bk.free_slot(book, m, slot)


@inline
def cancel_resting(book, accounts, ev, ne, seq, ts, m, slot, reason) -> int:
    """Unfreeze a resting order's reserve, report it as it stood, and remove it."""
    orders = book[B_ORDERS]
    mp = book[B_MPARAMS]
    o = orders[slot]
    r = reserve_of(mp, m, o["side"], o["price"], o["left"])
    ne = reserve_move(accounts, ev, ne, seq, ts, mp, m, o, -r)
    ne = evw.emit_order(
        ev,
        ne,
        evw.ORDER_FINISH,
        reason,
        seq,
        ts,
        book,
        accounts[A_USERS],
        slot,
        m,
        book[B_INFO][slot]["amount"] - o["left"],
    )
    bk.level_unlink(book, m, slot)
    remove_resting(book, m, slot)
    return ne


@kernel
def _fill(book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, t, k, q, market_bid):
    """Trade ``q`` lots between taker slot ``t`` and maker slot ``k`` at the maker's price."""
    orders = book[B_ORDERS]
    info = book[B_INFO]
    users = accounts[A_USERS]
    mp = book[B_MPARAMS]
    tk = orders[t]
    mk = orders[k]
    p = mk["price"]
    stock = mp[m, MP_STOCK]
    money = mp[m, MP_MONEY]
    den = mp[m, MP_FEE_DEN]
    units = q * mp[m, MP_STOCK_SCALE]
    deal = p * q * mp[m, MP_DEAL_SCALE]
    counters[COUNTER_DEAL_ID] += 1
    did = counters[COUNTER_DEAL_ID]
    if tk["side"] == ASK:
        t_fee = fee_of(deal, info[t]["taker_rate"], den)
        m_fee = fee_of(units, mk["maker_rate"], den)
        t_give_asset, t_give, t_get_asset, t_get = stock, units, money, deal
    else:
        t_fee = fee_of(units, info[t]["taker_rate"], den)
        m_fee = fee_of(deal, mk["maker_rate"], den)
        t_give_asset, t_give, t_get_asset, t_get = money, deal, stock, units
    ta = tk["acct"]
    tu = users[ta]
    tid = tk["id"]
    ma = mk["acct"]
    mu = users[ma]
    mid = mk["id"]
    ne = evw.emit_deal(
        ev,
        ne,
        seq,
        ts,
        m,
        did,
        tk["side"],
        tid,
        tu,
        mid,
        mu,
        p,
        q,
        deal,
        t_fee,
        m_fee,
    )
    ne = _move(accounts, ev, ne, seq, ts, m, ta, tu, t_give_asset, evw.TRADE, -t_give, 0, tid, did)
    ne = _move(accounts, ev, ne, seq, ts, m, ta, tu, t_get_asset, evw.TRADE, t_get, 0, tid, did)
    if t_fee > 0:
        ne = _move(accounts, ev, ne, seq, ts, m, ta, tu, t_get_asset, evw.FEE, -t_fee, 0, tid, did)
    ne = _move(accounts, ev, ne, seq, ts, m, ma, mu, t_get_asset, evw.TRADE, 0, -t_get, mid, did)
    ne = _move(accounts, ev, ne, seq, ts, m, ma, mu, t_give_asset, evw.TRADE, t_give, 0, mid, did)
    if m_fee > 0:
        ne = _move(accounts, ev, ne, seq, ts, m, ma, mu, t_give_asset, evw.FEE, -m_fee, 0, mid, did)
    if t_fee > 0:
        ne = _move(
            accounts,
            ev,
            ne,
            seq,
            ts,
            m,
            fee_acct,
            fee_user,
            t_get_asset,
            evw.FEE_INCOME,
            t_fee,
            0,
            tid,
            did,
        )
    if m_fee > 0:
        ne = _move(
            accounts,
            ev,
            ne,
            seq,
            ts,
            m,
            fee_acct,
            fee_user,
            t_give_asset,
            evw.FEE_INCOME,
            m_fee,
            0,
            mid,
            did,
        )
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
        return evw.emit_order(
            ev, ne, evw.ORDER_UPDATE, 0, seq, ts, book, users, k, m, amount - mk["left"]
        )
    ne = evw.emit_order(ev, ne, evw.ORDER_FINISH, FILLED, seq, ts, book, users, k, m, amount)
    bk.level_unlink(book, m, k)
    remove_resting(book, m, k)
    return ne


@kernel
def match_taker(
    book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, t, limit, is_market
):
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
            ne = cancel_resting(book, accounts, ev, ne, seq, ts, m, k, SELF_TRADE)
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
        ne = _fill(
            book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, t, k, q, market_bid
        )
        filled += q
    return ne, filled, False
