"""matchd's ``user.set_limit`` over JSON-RPC (docs/gateways.md, "Market operations"):
the params checked and converted exactly into the USER_LIMIT command's call.

``user.set_limit [user_id, market, limit, value]`` sets one of the user's own risk
limits in the market (docs/engine.md, "User risk limits"): ``limit`` is
"max_order_amount" (an amount, exact at the market's stock_prec) or "max_notional"
(money, exact at the money asset's prec), ``value`` decimal text as in the config,
or "none" (the user has none of that limit, as "0"). The text is converted once,
here, exactly (``ipc.market_limits.limit_value``, as for ``market.set_limit``): too
many decimal places, a negative value or one out of range is refused with the reason
before anything reaches the engine, which checks again (and refuses the fee account,
or a new pair when its table is full). The result is ``{"status": "success"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from core.arguments import ArgumentError, str_arg
from core.errors import ParseError
from core.viabtc_codec import ViabtcCodec
from ipc import market_ops as ops
from ipc import wire
from ipc.market_limits import limit_value, user_limit_name

METHOD: Final = "user.set_limit"
#: user.set_limit's params: user_id, market, limit, value.
PARAMS: Final = 4


def user_limit_call(codec: ViabtcCodec, params: Sequence[Any]) -> wire.UserSetLimit:
    """user.set_limit's ``params`` (``PARAMS`` of them) as the call that sets the
    limit, its value in engine units; ``ArgumentError`` naming the param and why."""
    user_id, market, limit, value = params
    user = codec.user(user_id)
    m = codec.market(market)
    name = str_arg(limit, "limit")
    text = str_arg(value, "value")
    try:
        which = user_limit_name(name)
        info = wire.MarketInfo.from_market(m)  # its precisions and ranges
        units = limit_value(info, which, text, notional_prec=m.money.prec, max_orders=m.max_orders)
    except ParseError as exc:
        raise ArgumentError(str(exc)) from None
    return wire.UserSetLimit(user, m.index, which, units)


def set_user_limit(codec: ViabtcCodec, params: Sequence[Any]) -> ops.Operation[wire.CommandDone]:
    """The operation of user.set_limit ``params``: its one call (``ArgumentError``
    before anything is sent)."""
    call = user_limit_call(codec, params)
    return ops.set_user_limit(call.user, call.market, call.limit, call.value)


__all__ = ["METHOD", "PARAMS", "set_user_limit", "user_limit_call"]
