"""The most events a command can write, so that ``execute_batch`` (``match.py``) stops
before its event buffer could overflow."""

from __future__ import annotations

from core.kernels import book as bk
from core.kernels.arith import mul3_le
from core.kernels.codes import (
    ASK,
    BID,
    CANCEL,
    CANCEL_ALL,
    CANCEL_MARKET,
    PUT_LIMIT,
    PUT_MARKET,
    QUOTE,
    REPLACE,
    STP_NONE,
)
from core.kernels.jit import inline
from core.kernels.layout import (
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    MP_DEAL_SCALE,
    MS_NORDERS,
    NIL,
)
from core.schema import MAX_QUOTE_LEVELS, MAX_USER_ID

#: Events a single fill can write (deal, 6 trade/fee legs, 2 fee incomes, maker).
EVENTS_PER_FILL = 10


@inline
def _use(rest: int, left: int, p: int, market_bid: bool, deal_scale: int) -> int:
    """``rest`` less ``left`` lots (a market bid: their cost at ``p``), without overflow:
    a cost beyond ``rest`` leaves nothing."""
    if not market_bid:
        return rest - left
    if mul3_le(p, left, deal_scale, rest):
        return rest - p * left * deal_scale
    return 0


@inline
def reach(book, m, side, price, amount, is_market, acct, stp, cap) -> int:
    """Resting orders a taker can reach (docs/engine.md, "Reach"), counted up to just
    past ``cap``: levels from the best while they cross; each adds all its orders; the
    walk ends after the level at which the makers' ``left`` (a market bid: their cost),
    the taker's own not counted when stp is set, covers ``amount``."""
    levels = book[B_LEVELS]
    orders = book[B_ORDERS]
    deal_scale = book[B_MPARAMS][m, MP_DEAL_SCALE]
    market_bid = is_market and side == BID
    opp = 3 - side
    rest = amount
    reached = 0
    k = 0
    while rest > 0:
        k, lv = bk.next_live(book, m, opp, k)
        if lv == NIL:
            break
        p = levels[lv]["price"]
        if not is_market and ((side == ASK and p < price) or (side == BID and p > price)):
            break
        reached += levels[lv]["count"]
        if reached > cap:
            break
        if stp == STP_NONE:
            rest = _use(rest, levels[lv]["total"], p, market_bid, deal_scale)
        else:
            slot = levels[lv]["head"]
            while slot != NIL and rest > 0:
                o = orders[slot]
                if o["acct"] != acct:
                    rest = _use(rest, o["left"], p, market_bid, deal_scale)
                slot = o["next"]
        k += 1
    return reached


@inline
def _taker_bound(book, m, side, price, amount, is_market, acct, stp, max_matches) -> int:
    """Most events a taker can write: every maker it can reach costs at most
    EVENTS_PER_FILL events (a cancelled own maker two), and a taker that reaches more
    than ``max_matches`` is refused with none. The walk is as long as the match."""
    if side != ASK and side != BID:
        return 4
    reached = reach(book, m, side, price, amount, is_market, acct, stp, max_matches)
    return EVENTS_PER_FILL * min(reached, max_matches) + 4


@inline
def _quote_bound(book, m: int, acct: int, k: int) -> int:
    """Most events a QUOTE of ``k`` levels can write: two per stale quote order (at
    most 2 x MAX_QUOTE_LEVELS of them rest), three per level (one that grows)."""
    if k < 0 or k > 2 * MAX_QUOTE_LEVELS:
        return 1
    _, count = bk.user_orders(book, m, acct)
    return 2 * min(count, 2 * MAX_QUOTE_LEVELS) + 3 * k + 1


@inline
def events_bound(book, acct, cmd, n_markets: int, room: int, max_matches: int) -> int:
    """Most events ``cmd`` can write, so the batch loop never overruns its buffer.

    When the whole book would fit in ``room`` that is the answer (cheap); otherwise the
    bound is what the command can reach (never more than ``max_matches`` makers), not
    the size of the book, so the event buffer stays small however deep the book is.
    ``acct`` is the account of ``cmd``'s user (NIL if none).
    """
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return 1
    kind = cmd["kind"]
    if kind == CANCEL:
        return 2
    if kind == QUOTE:  # not bounded by the book: its new orders are not in it yet
        return _quote_bound(book, m, acct, cmd["amount"])
    ms = book[B_MSTATE]
    everything = EVENTS_PER_FILL * (ms[m, MS_NORDERS] + ms[m, MS_NORDERS + 1]) + 4
    if everything <= room:  # the whole book fits: no need to look closer
        return everything
    if kind == CANCEL_MARKET:
        return 2 * min(ms[m, MS_NORDERS] + ms[m, MS_NORDERS + 1], max_matches) + 1
    if cmd["user"] < 0 or cmd["user"] > MAX_USER_ID:
        return 1
    if kind == CANCEL_ALL:
        _, count = bk.user_orders(book, m, acct)
        return 2 * min(count, max_matches) + 1
    if kind == PUT_LIMIT:
        return _taker_bound(
            book, m, cmd["side"], cmd["price"], cmd["amount"], False, acct, cmd["stp"], max_matches
        )
    if kind == PUT_MARKET:
        return _taker_bound(
            book, m, cmd["side"], 0, cmd["amount"], True, acct, cmd["stp"], max_matches
        )
    if kind == REPLACE:
        slot = bk.index_find(book, cmd["order_id"]) if cmd["order_id"] > 0 else NIL
        if slot == NIL:
            return 4
        o = book[B_ORDERS][slot]
        return _taker_bound(
            book,
            m,
            o["side"],
            cmd["price"],
            cmd["amount"],
            False,
            o["acct"],
            o["stp"],
            max_matches,
        )
    return 1
