"""A market's risk limits changed at run time (MARKET_LIMIT; docs/engine.md, "Market risk
limits").

The limits are the columns ``MP_PRICE_STEP .. MP_MAX_ORDER_AMOUNT`` of the market parameters
(``layout.py``), in the order of ``RiskLimit``: both halves read them, so a change is
written to the sequencer's parameters and to the market's worker's (a WORK_LIMIT
record, ``apply_limit``), with nothing in flight (docs/daemon.md). ``set_limit`` is the
whole command in one process: the checks, the change and its event.
"""

from __future__ import annotations

from core.kernels import events as evw
from core.kernels.codes import INVALID_ARGUMENT, OK, UNKNOWN_MARKET
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    MP_MAX_AMOUNT,
    MP_MAX_NOTIONAL,
    MP_MAX_ORDERS,
    MP_MAX_PRICE,
    MP_MIN_NOTIONAL,
    MP_PRICE_STEP,
)
from core.schema import MAX_SUPPLY_UNITS, PRICE_BAND_DEN, RiskLimit

PRICE_STEP = int(RiskLimit.PRICE_STEP)
AMOUNT_STEP = int(RiskLimit.AMOUNT_STEP)
MIN_NOTIONAL = int(RiskLimit.MIN_NOTIONAL)
MAX_NOTIONAL = int(RiskLimit.MAX_NOTIONAL)
MAX_OPEN_ORDERS = int(RiskLimit.MAX_OPEN_ORDERS)
PRICE_BAND = int(RiskLimit.PRICE_BAND)
MAX_ORDER_AMOUNT = int(RiskLimit.MAX_ORDER_AMOUNT)


@inline
def limit_ok(mp, m: int, which: int, value: int) -> bool:
    """True if ``value`` can be market ``m``'s limit ``which`` (a RiskLimit), the other
    limits as they are: the ranges config load enforces (core/config.py)."""
    if which == PRICE_STEP:
        return 1 <= value <= mp[m, MP_MAX_PRICE]
    if which == AMOUNT_STEP:
        return 1 <= value <= mp[m, MP_MAX_AMOUNT]
    if which == MIN_NOTIONAL:
        high = mp[m, MP_MAX_NOTIONAL]
        return 0 <= value <= MAX_SUPPLY_UNITS and (high == 0 or value <= high)
    if which == MAX_NOTIONAL:
        low = mp[m, MP_MIN_NOTIONAL]
        return 0 <= value <= MAX_SUPPLY_UNITS and (value == 0 or low <= value)
    if which == MAX_OPEN_ORDERS:
        return 0 <= value <= mp[m, MP_MAX_ORDERS]
    if which == PRICE_BAND:
        return 0 <= value < PRICE_BAND_DEN
    if which == MAX_ORDER_AMOUNT:
        return 0 <= value <= mp[m, MP_MAX_AMOUNT]
    return False


@inline
def apply_limit(mp, m: int, which: int, value: int) -> None:
    """Write market ``m``'s limit ``which`` (checked by ``limit_ok``)."""
    mp[m, MP_PRICE_STEP + which - PRICE_STEP] = value


@inline
def set_limit(mp, ev, ne: int, cmd, n_markets: int) -> tuple[int, int]:
    """MARKET_LIMIT ``cmd``: (OK or the refusal, the next event index). The limit
    changes at once; its event (if it changed) waits for the ledger."""
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET, ne
    which = cmd["side"]
    value = cmd["amount"]
    if not limit_ok(mp, m, which, value):
        return INVALID_ARGUMENT, ne
    old = mp[m, MP_PRICE_STEP + which - PRICE_STEP]
    if value == old:
        return OK, ne
    apply_limit(mp, m, which, value)
    ne = evw.emit_status(ev, ne, evw.MARKET_LIMIT, cmd["ts_ns"], m, 0, which, old)
    ev[ne - 1]["left"] = value
    return OK, ne


@kernel
def limit_command(mp, cmds, ev, n_markets: int):
    """``set_limit`` for ``cmds[0]``, events from ``ev[0]``: (code, events written).
    The sequencer's way in; ``settle`` follows, and the worker gets a WORK_LIMIT."""
    return set_limit(mp, ev, 0, cmds[0], n_markets)
