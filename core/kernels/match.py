"""Matching and settlement: the order commands of docs/engine.md.

Each ``cmd_*`` function validates one command, and if it is accepted applies it,
writes its events and returns ``(code, order_id, value, ne)``. A rejected command
changes nothing. Balances live in the ``accounts`` tuple, books in ``book``.
"""

from __future__ import annotations

import numpy as np

from core.kernels import book as bk
from core.kernels import events as evw
from core.kernels import hashmap, tags
from core.kernels.arith import fee_of, mul3_le, mul_le
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    A_BALANCES,
    A_KEYS,
    A_USERS,
    A_VALS,
    AVAILABLE,
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    FROZEN,
    MP_DEAL_SCALE,
    MP_FEE_DEN,
    MP_MAX_AMOUNT,
    MP_MAX_ORDERS,
    MP_MAX_PRICE,
    MP_MIN_AMOUNT,
    MP_MONEY,
    MP_OBASE,
    MP_STOCK,
    MP_STOCK_SCALE,
    MS_NORDERS,
    NIL,
)
from core.schema import (
    COUNTER_DEAL_ID,
    COUNTER_ORDER_ID,
    COUNTER_SEQ,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    ORDER_FLAG_MARKET,
    SOURCE_LENGTH,
    CommandKind,
    FinishReason,
    OrderFlag,
    Result,
    StpMode,
    TimeInForce,
)

ASK = 1
BID = 2
GTC = int(TimeInForce.GTC)
IOC = int(TimeInForce.IOC)
FOK = int(TimeInForce.FOK)
STP_NONE = int(StpMode.NONE)
STP_CANCEL_TAKER = int(StpMode.CANCEL_TAKER)
STP_CANCEL_MAKER = int(StpMode.CANCEL_MAKER)
STP_CANCEL_BOTH = int(StpMode.CANCEL_BOTH)
POST_ONLY = int(OrderFlag.POST_ONLY)
FILLED = int(FinishReason.FILLED)
CANCELED = int(FinishReason.CANCELED)
EXPIRED = int(FinishReason.EXPIRED)
SELF_TRADE = int(FinishReason.SELF_TRADE)

OK = int(Result.OK)
INVALID_ARGUMENT = int(Result.INVALID_ARGUMENT)
UNKNOWN_MARKET = int(Result.UNKNOWN_MARKET)
FEE_ACCOUNT_CANNOT_TRADE = int(Result.FEE_ACCOUNT_CANNOT_TRADE)
BALANCE_NOT_ENOUGH = int(Result.BALANCE_NOT_ENOUGH)
AMOUNT_TOO_SMALL = int(Result.AMOUNT_TOO_SMALL)
NO_ENOUGH_TRADER = int(Result.NO_ENOUGH_TRADER)
ORDER_NOT_FOUND = int(Result.ORDER_NOT_FOUND)
USER_NOT_MATCH = int(Result.USER_NOT_MATCH)
POST_ONLY_WOULD_TAKE = int(Result.POST_ONLY_WOULD_TAKE)
FOK_NOT_FILLED = int(Result.FOK_NOT_FILLED)
BOOK_FULL = int(Result.BOOK_FULL)

PUT_LIMIT = int(CommandKind.PUT_LIMIT)
PUT_MARKET = int(CommandKind.PUT_MARKET)
CANCEL = int(CommandKind.CANCEL)
REPLACE = int(CommandKind.REPLACE)
CANCEL_ALL = int(CommandKind.CANCEL_ALL)

#: Events a single fill can write (deal, 6 trade/fee legs, 2 fee incomes, maker).
EVENTS_PER_FILL = 10


# ------------------------------------------------------------------ accounts


@inline
def account_of(accounts, user: int) -> int:
    """Account index of ``user``, or NIL if the user never held anything."""
    i = hashmap.find(accounts[A_KEYS], user)
    if i < 0:
        return NIL
    return accounts[A_VALS][i]


@inline
def _available(accounts, acct: int, asset: int) -> int:
    if acct == NIL:
        return 0
    return accounts[A_BALANCES][acct, asset, AVAILABLE]


# ------------------------------------------------------------------ validation


@inline
def valid_source(cmd) -> bool:
    """source_len in 0..30, the used bytes are UTF-8 without NUL."""
    n = cmd["source_len"]
    if n < 0 or n > SOURCE_LENGTH:
        return False
    src = cmd["source"]
    i = 0
    while i < n:
        c = src[i]
        if c == 0:
            return False
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need = 1
            lo = 0x80
            hi = 0xBF
        elif 0xE0 <= c <= 0xEF:
            need = 2
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            need = 3
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
        else:
            return False
        if i + need >= n:
            return False
        c1 = src[i + 1]
        if c1 < lo or c1 > hi:
            return False
        for j in range(2, need + 1):
            cj = src[i + j]
            if cj < 0x80 or cj > 0xBF:
                return False
        i += need + 1
    return True


@inline
def _check_order_common(cmd, n_markets: int, fee_user: int, is_limit: bool) -> int:
    """Common checks 1 and 2 of docs/engine.md for PUT_LIMIT and PUT_MARKET.

    Each command is validated on the fields it uses: a market order ignores tif and
    flags (it is always IOC without flags).
    """
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET
    if cmd["user"] < 0 or cmd["user"] > MAX_USER_ID:
        return INVALID_ARGUMENT
    if cmd["side"] != ASK and cmd["side"] != BID:
        return INVALID_ARGUMENT
    if is_limit and (cmd["tif"] < GTC or cmd["tif"] > FOK):
        return INVALID_ARGUMENT
    if cmd["stp"] < STP_NONE or cmd["stp"] > STP_CANCEL_BOTH:
        return INVALID_ARGUMENT
    if is_limit and (cmd["flags"] & ~POST_ONLY) != 0:
        return INVALID_ARGUMENT
    if not valid_source(cmd):
        return INVALID_ARGUMENT
    if cmd["user"] == fee_user:
        return FEE_ACCOUNT_CANNOT_TRADE
    return OK


@inline
def _crosses(book, m: int, side: int, price: int) -> bool:
    """True if a limit order at ``price`` on ``side`` would take on entry."""
    lv = bk.best_level(book, m, 3 - side)
    if lv == NIL:
        return False
    best = book[B_LEVELS][lv]["price"]
    if side == ASK:
        return best >= price
    return best <= price


@kernel
def _fok_fillable(book, m: int, side: int, price: int, acct: int, stp: int, amount: int) -> bool:
    """True if ``amount`` lots can be filled at once at ``price`` or better."""
    orders = book[B_ORDERS]
    levels = book[B_LEVELS]
    opp = 3 - side
    total = 0
    k = 0
    while True:
        k, lv = bk.next_live(book, m, opp, k)
        if lv == NIL:
            return False
        p = levels[lv]["price"]
        if (side == ASK and p < price) or (side == BID and p > price):
            return False
        slot = levels[lv]["head"]
        while slot != NIL:
            o = orders[slot]
            if o["acct"] == acct and stp != STP_NONE:
                if stp in (STP_CANCEL_TAKER, STP_CANCEL_BOTH):
                    return False
            else:
                total += o["left"]
                if total >= amount:
                    return True
            slot = o["next"]
        k += 1


# ------------------------------------------------------------------ settlement


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
def _order_asset(mp: np.ndarray, m: int, side: int) -> int:
    """The asset an order of ``side`` freezes: stock for an ask, money for a bid."""
    return mp[m, MP_STOCK] if side == ASK else mp[m, MP_MONEY]


@inline
def _reserve_move(accounts, ev, ne, seq, ts, mp, m, o, amount) -> int:
    """Move ``amount`` of order ``o``'s reserve asset from available to frozen (FREEZE),
    or from frozen back to available when ``amount`` is negative (UNFREEZE)."""
    asset = _order_asset(mp, m, o["side"])
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
def _remove_resting(book, m: int, slot: int) -> None:
    """Forget a resting order entirely (it is already out of its level)."""
    bk.user_unlink(book, m, slot)
    bk.index_remove(book, book[B_ORDERS][slot]["id"])
    tags.release(book, book[B_INFO][slot]["source"])
    bk.free_slot(book, m, slot)


@inline
def _cancel_resting(book, accounts, ev, ne, seq, ts, m, slot, reason) -> int:
    """Unfreeze a resting order's reserve, report it as it stood, and remove it."""
    orders = book[B_ORDERS]
    mp = book[B_MPARAMS]
    o = orders[slot]
    r = reserve_of(mp, m, o["side"], o["price"], o["left"])
    ne = _reserve_move(accounts, ev, ne, seq, ts, mp, m, o, -r)
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
    _remove_resting(book, m, slot)
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
    _remove_resting(book, m, k)
    return ne


@kernel
def _match(book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, t, limit, is_market):
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
            ne = _cancel_resting(book, accounts, ev, ne, seq, ts, m, k, SELF_TRADE)
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


# ------------------------------------------------------------------ commands


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
    ne = _reserve_move(accounts, ev, ne, seq, ts, mp, m, o, r)
    bk.level_push(book, m, slot)
    deal_stock = book[B_INFO][slot]["amount"] - o["left"]
    return evw.emit_order(ev, ne, kind, 0, seq, ts, book, accounts[A_USERS], slot, m, deal_stock)


@inline
def cmd_put_limit(book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, scratch):
    """PUT_LIMIT; returns (code, order_id, value, ne)."""
    code = _check_order_common(cmd, n_markets, fee_user, True)
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
        ok = mul_le(amount, mp[m, MP_STOCK_SCALE], _available(accounts, acct, mp[m, MP_STOCK]))
    else:
        avail = _available(accounts, acct, mp[m, MP_MONEY])
        ok = mul3_le(price, amount, mp[m, MP_DEAL_SCALE], avail)
    if not ok:
        return BALANCE_NOT_ENOUGH, 0, 0, ne
    if amount < mp[m, MP_MIN_AMOUNT]:
        return AMOUNT_TOO_SMALL, 0, 0, ne
    if (cmd["flags"] & POST_ONLY) != 0 and _crosses(book, m, side, price):
        return POST_ONLY_WOULD_TAKE, 0, 0, ne
    if cmd["tif"] == FOK and not _fok_fillable(book, m, side, price, acct, cmd["stp"], amount):
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
    ne, _, stopped = _match(
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
def cmd_put_market(book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, scratch):
    """PUT_MARKET; returns (code, order_id, value, ne)."""
    code = _check_order_common(cmd, n_markets, fee_user, False)
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
        ok = mul_le(amount, mp[m, MP_STOCK_SCALE], _available(accounts, acct, mp[m, MP_STOCK]))
    else:
        ok = amount <= _available(accounts, acct, mp[m, MP_MONEY])
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
    counters[COUNTER_SEQ] += 1
    counters[COUNTER_ORDER_ID] += 1
    seq = counters[COUNTER_SEQ]
    oid = counters[COUNTER_ORDER_ID]
    ts = cmd["ts_ns"]
    _load_taker(book, cmd, scratch, oid, acct, 0, 0, IOC, ORDER_FLAG_MARKET)
    ne, filled, stopped = _match(
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
def _check_target(cmd, n_markets: int) -> int:
    """Common checks of CANCEL, CANCEL_ALL and REPLACE: market and user in range."""
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET
    if cmd["user"] < 0 or cmd["user"] > MAX_USER_ID:
        return INVALID_ARGUMENT
    return OK


@inline
def _lookup(book, accounts, m: int, order_id: int, user: int) -> tuple[int, int]:
    if order_id < 1:
        return ORDER_NOT_FOUND, NIL
    slot = bk.index_find(book, order_id)
    mp = book[B_MPARAMS]
    base = mp[m, MP_OBASE]
    if slot == NIL or slot < base or slot >= base + mp[m, MP_MAX_ORDERS]:
        return ORDER_NOT_FOUND, NIL
    if accounts[A_USERS][book[B_ORDERS][slot]["acct"]] != user:
        return USER_NOT_MATCH, NIL
    return OK, slot


@inline
def cmd_cancel(book, accounts, ev, ne, cmd, counters, n_markets):
    """CANCEL; returns (code, order_id, value, ne)."""
    code = _check_target(cmd, n_markets)
    if code != OK:
        return code, 0, 0, ne
    m = cmd["market"]
    code, slot = _lookup(book, accounts, m, cmd["order_id"], cmd["user"])
    if code != OK:
        return code, 0, 0, ne
    counters[COUNTER_SEQ] += 1
    seq = counters[COUNTER_SEQ]
    oid = book[B_ORDERS][slot]["id"]
    ne = _cancel_resting(book, accounts, ev, ne, seq, cmd["ts_ns"], m, slot, CANCELED)
    return OK, oid, 0, ne


@inline
def cmd_cancel_all(book, accounts, ev, ne, cmd, counters, n_markets):
    """CANCEL_ALL; returns (code, 0, cancelled, ne)."""
    code = _check_target(cmd, n_markets)
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
    while slot != NIL:
        newer = info[slot]["uprev"]
        if cmd["side"] == 0 or orders[slot]["side"] == cmd["side"]:
            if seq == 0:
                counters[COUNTER_SEQ] += 1
                seq = counters[COUNTER_SEQ]
            ne = _cancel_resting(book, accounts, ev, ne, seq, cmd["ts_ns"], m, slot, CANCELED)
            n += 1
        slot = newer
    return OK, 0, n, ne


@inline
def cmd_replace(book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct):
    """REPLACE; returns (code, order_id, value, ne)."""
    code = _check_target(cmd, n_markets)
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
    code, slot = _lookup(book, accounts, m, cmd["order_id"], cmd["user"])
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
    asset = _order_asset(mp, m, side)
    if price == o["price"] and new_left <= o["left"]:
        counters[COUNTER_SEQ] += 1
        seq = counters[COUNTER_SEQ]
        diff = old_reserve - reserve_of(mp, m, side, price, new_left)
        if diff > 0:
            ne = _reserve_move(accounts, ev, ne, seq, ts, mp, m, o, -diff)
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
    if (o["flags"] & POST_ONLY) != 0 and _crosses(book, m, side, price):
        return POST_ONLY_WOULD_TAKE, 0, 0, ne
    needs_level = bk.find_level(book, m, side, price) == NIL
    frees_level = levels[o["level"]]["count"] == 1
    if needs_level and not frees_level and not bk.can_add_level(book, m, side):
        return BOOK_FULL, 0, 0, ne
    counters[COUNTER_SEQ] += 1
    seq = counters[COUNTER_SEQ]
    oid = o["id"]
    ne = _reserve_move(accounts, ev, ne, seq, ts, mp, m, o, -old_reserve)
    bk.level_unlink(book, m, slot)
    o["price"] = price
    c["amount"] = c["amount"] - o["left"] + new_left
    o["left"] = new_left
    c["mtime_ns"] = ts
    ne, _, stopped = _match(
        book, accounts, ev, ne, seq, ts, counters, fee_acct, fee_user, m, slot, price, False
    )
    if o["left"] == 0 or stopped:
        reason = FILLED if o["left"] == 0 else SELF_TRADE
        deal_stock = c["amount"] - o["left"]
        ne = evw.emit_order(
            ev, ne, evw.ORDER_FINISH, reason, seq, ts, book, users, slot, m, deal_stock
        )
        _remove_resting(book, m, slot)
    else:
        ne = _rest(book, accounts, ev, ne, seq, ts, m, slot, evw.ORDER_UPDATE)
    return OK, oid, 0, ne


@inline
def _taker_bound(book, m, side, price, amount, is_market, stp) -> int:
    """Most events a taker can write: walk the levels it could reach.

    Every maker reached costs at most EVENTS_PER_FILL events; a level whose makers
    all fill uses up their ``left`` (or their cost, for a market bid). With stp
    CANCEL_MAKER own makers are skipped without using anything, so the walk counts the
    whole crossing side. The walk is as long as the match itself, and a taker that
    does not cross costs one look at the best level.
    """
    if side != ASK and side != BID:
        return 4
    levels = book[B_LEVELS]
    deal_scale = book[B_MPARAMS][m, MP_DEAL_SCALE]
    market_bid = is_market and side == BID
    opp = 3 - side
    remaining = amount
    makers = 0
    k = 0
    while remaining > 0:
        k, lv = bk.next_live(book, m, opp, k)
        if lv == NIL:
            break
        p = levels[lv]["price"]
        if not is_market and ((side == ASK and p < price) or (side == BID and p > price)):
            break
        makers += levels[lv]["count"]
        if stp != STP_CANCEL_MAKER:
            used = levels[lv]["total"]
            if market_bid:
                if mul3_le(p, used, deal_scale, remaining):
                    used = p * used * deal_scale
                else:
                    used = remaining
            remaining -= used
        k += 1
    return EVENTS_PER_FILL * makers + 4


@inline
def events_bound(book, accounts, cmd, n_markets: int, room: int) -> int:
    """Most events ``cmd`` can write, so the batch loop never overruns its buffer.

    When the whole book would fit in ``room`` that is the answer (cheap); otherwise the
    bound is what the command can reach, not the size of the book, so the event buffer
    stays small however deep the book is.
    """
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return 1
    kind = cmd["kind"]
    if kind == CANCEL:
        return 2
    ms = book[B_MSTATE]
    everything = EVENTS_PER_FILL * (ms[m, MS_NORDERS] + ms[m, MS_NORDERS + 1]) + 4
    if everything <= room:  # the whole book fits: no need to look closer
        return everything
    if kind == CANCEL_ALL:
        if cmd["user"] < 0 or cmd["user"] > MAX_USER_ID:
            return 1
        _, count = bk.user_orders(book, m, account_of(accounts, cmd["user"]))
        return 2 * count + 1
    if kind == PUT_LIMIT:
        return _taker_bound(book, m, cmd["side"], cmd["price"], cmd["amount"], False, cmd["stp"])
    if kind == PUT_MARKET:
        return _taker_bound(book, m, cmd["side"], 0, cmd["amount"], True, cmd["stp"])
    if kind == REPLACE:
        slot = bk.index_find(book, cmd["order_id"]) if cmd["order_id"] > 0 else NIL
        if slot == NIL:
            return 4
        o = book[B_ORDERS][slot]
        return _taker_bound(book, m, o["side"], cmd["price"], cmd["amount"], False, o["stp"])
    return 1


@kernel
def execute_batch(
    book, accounts, cmds, results, ev, start, ne0, counters, n_markets, fee_user, fee_acct, scratch
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
        if ne + events_bound(book, accounts, cmd, n_markets, cap - ne) > cap:
            break  # the caller hands these events on (or grows the buffer) and resumes
        first = ne
        seq_before = counters[COUNTER_SEQ]
        kind = cmd["kind"]
        if kind == PUT_LIMIT:
            code, oid, value, ne = cmd_put_limit(
                book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, scratch
            )
        elif kind == REPLACE:
            code, oid, value, ne = cmd_replace(
                book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct
            )
        elif kind == CANCEL:
            code, oid, value, ne = cmd_cancel(book, accounts, ev, ne, cmd, counters, n_markets)
        elif kind == PUT_MARKET:
            code, oid, value, ne = cmd_put_market(
                book, accounts, ev, ne, cmd, counters, n_markets, fee_user, fee_acct, scratch
            )
        elif kind == CANCEL_ALL:
            code, oid, value, ne = cmd_cancel_all(book, accounts, ev, ne, cmd, counters, n_markets)
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
