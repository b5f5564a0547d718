"""Validation of the order commands: the checks of docs/engine.md that decide whether
a command is accepted, before anything changes.

Each returns a result code (OK or the refusal) or a bool; none writes to the book or
the accounts. The commands in ``match.py`` call them, in the order docs/engine.md
lists the checks.
"""

from __future__ import annotations

from core.kernels import book as bk
from core.kernels.arith import fee_of, mul3_le
from core.kernels.codes import (
    AMOUNT_NOT_ON_STEP,
    AMOUNT_TOO_LARGE,
    ASK,
    BID,
    FEE_ACCOUNT_CANNOT_TRADE,
    FOK,
    GTC,
    INVALID_ARGUMENT,
    NOTIONAL_TOO_LARGE,
    NOTIONAL_TOO_SMALL,
    OK,
    ORDER_NOT_FOUND,
    POST_ONLY,
    PRICE_NOT_ON_STEP,
    STP_CANCEL_BOTH,
    STP_CANCEL_TAKER,
    STP_NONE,
    UNKNOWN_MARKET,
    USER_NOT_MATCH,
)
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    MP_AMOUNT_STEP,
    MP_DEAL_SCALE,
    MP_MAX_NOTIONAL,
    MP_MAX_ORDER_AMOUNT,
    MP_MAX_ORDERS,
    MP_MIN_NOTIONAL,
    MP_OBASE,
    MP_PRICE_BAND,
    MP_PRICE_STEP,
    MS_LAST_PRICE,
    NIL,
)
from core.schema import MAX_USER_ID, PRICE_BAND_DEN, PROVISIONAL_ID_BASE, SOURCE_LENGTH


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
def check_order_common(cmd, n_markets: int, fee_user: int, is_limit: bool) -> int:
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
    if cmd["order_id"] < 0:  # a PUT's client order id (0 = none)
        return INVALID_ARGUMENT
    if cmd["user"] == fee_user:
        return FEE_ACCOUNT_CANNOT_TRADE
    return OK


@inline
def band_reference(book, m: int) -> int:
    """Market ``m``'s reference price for its price band, in ticks: the last deal's
    price; before the first deal, the mid of the best bid and ask rounded down to a
    tick (``bid + (ask - bid) // 2``, which cannot overflow); 0 (none) before the
    first deal while a side is empty."""
    last = book[B_MSTATE][m, MS_LAST_PRICE]
    if last != 0:
        return last
    ask = bk.best_level(book, m, ASK)
    bid = bk.best_level(book, m, BID)
    if ask == NIL or bid == NIL:
        return 0
    low = book[B_LEVELS][bid]["price"]
    return low + (book[B_LEVELS][ask]["price"] - low) // 2


@inline
def outside_band(book, m: int, price: int) -> bool:
    """True if ``price`` is further from market ``m``'s reference price
    (``band_reference``) than its price band allows (docs/engine.md, "Market risk
    limits"); never without a reference. The band is ``floor(ref * band / 10**6)``
    ticks either way, exact: a price ``p`` is out when ``|p - ref| * 10**6 > ref *
    band``."""
    band = book[B_MPARAMS][m, MP_PRICE_BAND]
    if band == 0:
        return False
    ref = band_reference(book, m)
    if ref == 0:
        return False
    room = fee_of(ref, band, PRICE_BAND_DEN)
    return price > ref + room or price < ref - room


@inline
def crosses(book, m: int, side: int, price: int) -> bool:
    """True if a limit order at ``price`` on ``side`` would take on entry."""
    lv = bk.best_level(book, m, 3 - side)
    if lv == NIL:
        return False
    best = book[B_LEVELS][lv]["price"]
    if side == ASK:
        return best >= price
    return best <= price


@kernel
def fok_fillable(book, m: int, side: int, price: int, acct: int, stp: int, amount: int) -> bool:
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


@inline
def check_target(cmd, n_markets: int) -> int:
    """Common checks of CANCEL, CANCEL_ALL and REPLACE: market and user in range."""
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET
    if cmd["user"] < 0 or cmd["user"] > MAX_USER_ID:
        return INVALID_ARGUMENT
    return OK


@inline
def lookup(book, m: int, order_id: int, acct: int) -> tuple[int, int]:
    """(OK, slot) of order ``order_id`` in market ``m`` if account ``acct`` owns it,
    else (ORDER_NOT_FOUND or USER_NOT_MATCH, NIL). ``acct`` is NIL for a user without
    an account, who owns nothing. A provisional id (a pair worker's, docs/daemon.md) is
    never found: only real ids name an order."""
    if order_id < 1 or order_id >= PROVISIONAL_ID_BASE:
        return ORDER_NOT_FOUND, NIL
    slot = bk.index_find(book, order_id)
    mp = book[B_MPARAMS]
    base = mp[m, MP_OBASE]
    if slot == NIL or slot < base or slot >= base + mp[m, MP_MAX_ORDERS]:
        return ORDER_NOT_FOUND, NIL
    if book[B_ORDERS][slot]["acct"] != acct:
        return USER_NOT_MATCH, NIL
    return OK, slot


@inline
def check_risk(mp, m: int, price: int, amount: int) -> int:
    """The market's risk limits for an order of ``amount`` lots at ``price`` ticks
    (docs/engine.md, "Market risk limits"): OK or the refusal."""
    step = mp[m, MP_PRICE_STEP]
    if step != 1 and price % step != 0:  # a step of 1 (none) costs no division
        return PRICE_NOT_ON_STEP
    code = check_lots(mp, m, amount)
    if code != OK:
        return code
    return check_notional(mp, m, price, amount, mp[m, MP_DEAL_SCALE])


@inline
def check_lots(mp, m: int, amount: int) -> int:
    """The market's limits on an order's lots: amount_step, then max_order_amount."""
    step = mp[m, MP_AMOUNT_STEP]
    if step != 1 and amount % step != 0:
        return AMOUNT_NOT_ON_STEP
    most = mp[m, MP_MAX_ORDER_AMOUNT]
    if most > 0 and amount > most:
        return AMOUNT_TOO_LARGE
    return OK


@inline
def check_notional(mp, m: int, a: int, b: int, c: int) -> int:
    """OK if the order's value ``a * b * c`` money units is within the market's
    min_notional..max_notional, else the refusal (computed without overflow)."""
    low = mp[m, MP_MIN_NOTIONAL]
    if low > 0 and mul3_le(a, b, c, low - 1):
        return NOTIONAL_TOO_SMALL
    high = mp[m, MP_MAX_NOTIONAL]
    if high > 0 and not mul3_le(a, b, c, high):
        return NOTIONAL_TOO_LARGE
    return OK
