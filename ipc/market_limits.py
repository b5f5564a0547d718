"""A market's risk limits, and a user's own, by name, and their decimal text <->
engine units (docs/protocol.md, "Market operations"; docs/engine.md, "Market risk
limits" and "User risk limits").

The engine names a limit by ``core.schema.RiskLimit`` and takes its value in engine
units; the wire (``market.set_limit``, ``user.set_limit``), the SDK, ``matchctl`` and
the HTTP gateway name it as the config does (``LIMIT_NAMES``: "price_step", ...).
People write a value as in the config's ``[[markets]]`` table, and ``limit_value``
converts it exactly, with the market's precisions, before anything is sent:

==================== ========================================== =====================
limit                text                                        engine units
==================== ========================================== =====================
``price_step``       a price, exact at the market's money_prec   ticks, 1..max_price
``amount_step``      an amount, exact at its stock_prec          lots, 1..max_amount
``min_notional``     money, exact at the money asset's prec      units, 0..2**62
``max_notional``     the same; not below a set min_notional      units, 0..2**62
``max_open_orders``  a whole number                              orders, 0..max_orders
``price_band``       a fraction, exact at 6 places (0.1: 10 %)   millionths, 0..999999
``max_order_amount`` an amount, exact at its stock_prec          lots, 0..max_amount
==================== ========================================== =====================

"none" (or "off") is no limit: 1 for the steps, 0 for the others. Text that is not a
decimal, negative, not exact at those places or out of range raises ``ParseError``
with a message naming the limit, the text and why (no rounding, ever);
``check_notionals`` refuses a min_notional above the max_notional the market has now,
or the reverse. The engine checks every value again.

A user's own limits in a market (``USER_LIMIT_NAMES``: "max_order_amount",
"max_notional") are written and converted as the market's limits of the same names;
they only tighten the market's, so no check against the market's other limits
applies (0 or "none": the user has none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, cast

from core.config import LIMIT_NAMES as _CONFIG_NAMES
from core.config import MAX_ORDERS_PER_MARKET, NO_LIMITS
from core.errors import ParseError
from core.fixed import format_units, is_exact, parse_decimal, to_units
from core.schema import MAX_SUPPLY_UNITS, PRICE_BAND_DEN, PRICE_BAND_PLACES, RiskLimit

if TYPE_CHECKING:
    from ipc.wire_calls import MarketInfo

LimitName = Literal[
    "price_step",
    "amount_step",
    "min_notional",
    "max_notional",
    "max_open_orders",
    "price_band",
    "max_order_amount",
]
#: The limits a user may have of their own in a market (``user.set_limit``).
UserLimitName = Literal["max_order_amount", "max_notional"]
#: The limits' names, in ``RiskLimit`` order (``core.config.LIMIT_NAMES``).
LIMIT_NAMES: Final = cast(tuple[LimitName, ...], _CONFIG_NAMES)
#: Each name's ``RiskLimit``, and back.
RISK_LIMITS: Final[dict[str, RiskLimit]] = {name: RiskLimit[name.upper()] for name in LIMIT_NAMES}
RISK_LIMIT_NAMES: Final[dict[RiskLimit, LimitName]] = {
    limit: cast(LimitName, name) for name, limit in RISK_LIMITS.items()
}
#: The value of each limit that means "no limit", in engine units.
NONE_VALUES: Final[dict[RiskLimit, int]] = {
    limit: NO_LIMITS[limit - RiskLimit.PRICE_STEP] for limit in RiskLimit
}
#: The texts that mean "no limit".
NONE_TEXTS: Final = ("none", "off")
#: A user's own limits, in the order ``user.limits`` gives them (docs/engine.md,
#: "User risk limits"); "none" is 0 for both.
USER_LIMIT_NAMES: Final[tuple[UserLimitName, ...]] = ("max_order_amount", "max_notional")


def limit_name(limit: RiskLimit | int | str) -> LimitName:
    """The name of a risk limit given as a ``RiskLimit`` or its name; ``ParseError``
    (a ``ValueError``) for anything else."""
    if isinstance(limit, str):
        if limit in RISK_LIMITS:
            return cast(LimitName, limit)
    elif isinstance(limit, int) and not isinstance(limit, bool) and limit in RISK_LIMIT_NAMES:
        return RISK_LIMIT_NAMES[RiskLimit(limit)]
    raise ParseError(f"risk limit {limit!r} is none of {', '.join(LIMIT_NAMES)}")


def risk_limit(limit: RiskLimit | int | str) -> RiskLimit:
    """The ``RiskLimit`` of a name or value, as ``limit_name`` checks it."""
    return RISK_LIMITS[limit_name(limit)]


def user_limit_name(limit: RiskLimit | int | str) -> UserLimitName:
    """The name of a limit a user may have of their own (``USER_LIMIT_NAMES``), given
    as a ``RiskLimit`` or its name; ``ParseError`` (a ``ValueError``) for anything
    else."""
    try:
        name: LimitName | None = limit_name(limit)
    except ParseError:
        name = None
    for known in USER_LIMIT_NAMES:
        if name == known:
            return known
    shown = limit if name is None else name  # a market's limit by its name
    raise ParseError(f"user risk limit {shown!r} is none of {', '.join(USER_LIMIT_NAMES)}")


def _places(market: MarketInfo, limit: RiskLimit, notional_prec: int) -> tuple[int, str]:
    """The decimal places a limit's text is exact at, and what keeps them."""
    if limit == RiskLimit.PRICE_STEP:
        return market.money_prec, f"of market {market.name}'s prices (money_prec)"
    if limit in (RiskLimit.AMOUNT_STEP, RiskLimit.MAX_ORDER_AMOUNT):
        return market.stock_prec, f"of market {market.name}'s amounts (stock_prec)"
    if limit in (RiskLimit.MIN_NOTIONAL, RiskLimit.MAX_NOTIONAL):
        return notional_prec, f"of market {market.name}'s money asset (prec)"
    if limit == RiskLimit.PRICE_BAND:
        return PRICE_BAND_PLACES, "of a price band"
    return 0, "of a count of orders"


def _range(market: MarketInfo, limit: RiskLimit, max_orders: int) -> tuple[int, int]:
    """The engine units a limit may take (besides its none value)."""
    if limit == RiskLimit.PRICE_STEP:
        return 1, market.max_price
    if limit == RiskLimit.AMOUNT_STEP:
        return 1, market.max_amount
    if limit in (RiskLimit.MIN_NOTIONAL, RiskLimit.MAX_NOTIONAL):
        return 0, MAX_SUPPLY_UNITS
    if limit == RiskLimit.PRICE_BAND:
        return 0, PRICE_BAND_DEN - 1
    if limit == RiskLimit.MAX_ORDER_AMOUNT:
        return 0, market.max_amount
    return 0, max_orders


def limit_value(
    market: MarketInfo,
    limit: RiskLimit | int | str,
    text: str,
    *,
    notional_prec: int,
    max_orders: int = MAX_ORDERS_PER_MARKET,
) -> int:
    """The engine units of ``text`` as ``market``'s risk limit ``limit`` (see the
    module docstring); ``ParseError`` says why not.

    ``notional_prec`` is the prec of the market's money asset (``AssetInfo.prec``);
    ``max_orders`` the market's (the config's; ``MarketInfo`` does not carry it, and
    the engine refuses a value above it). ``check_notionals`` checks a notional
    against the other one the market has now.
    """
    which = risk_limit(limit)
    name = RISK_LIMIT_NAMES[which]
    if not isinstance(text, str):
        raise ParseError(f"{name}: expected decimal text or none, got {type(text).__name__}")
    if text in NONE_TEXTS:
        return NONE_VALUES[which]
    places, keeper = _places(market, which, notional_prec)
    try:
        value = parse_decimal(text)
    except ParseError as exc:
        raise ParseError(f"{name} {text!r}: {exc} (or none)") from None
    if value < 0:
        raise ParseError(f"{name} {text!r} is negative")
    if not is_exact(value, places):
        if which == RiskLimit.MAX_OPEN_ORDERS:
            raise ParseError(f"{name} {text!r} is not a whole number")
        raise ParseError(
            f"{name} {text!r} has more decimal places than the {places} {keeper}, so it "
            "cannot be represented exactly"
        )
    units = to_units(value, places)
    low, high = _range(market, which, max_orders)
    if not low <= units <= high:
        span = f"{format_units(low, places)}..{format_units(high, places)}"
        raise ParseError(f"{name} {text!r} is out of range: {span}, or none")
    return units


def check_notionals(
    market: MarketInfo, limit: RiskLimit | int | str, units: int, *, notional_prec: int
) -> None:
    """``ParseError`` if ``units`` as ``market``'s limit ``limit`` is a min_notional
    above the max_notional the market has (``market``'s, as ``market.list`` gave it),
    or a max_notional below its min_notional: the engine would refuse it."""
    which = risk_limit(limit)
    low, high = market.min_notional, market.max_notional
    if which == RiskLimit.MIN_NOTIONAL and high and units > high:
        raise ParseError(
            f"min_notional {format_units(units, notional_prec)} is above market "
            f"{market.name}'s max_notional {format_units(high, notional_prec)}"
        )
    if which == RiskLimit.MAX_NOTIONAL and units and units < low:
        raise ParseError(
            f"max_notional {format_units(units, notional_prec)} is below market "
            f"{market.name}'s min_notional {format_units(low, notional_prec)}"
        )


def limit_text(
    market: MarketInfo, limit: RiskLimit | int | str, value: int, *, notional_prec: int
) -> str:
    """``value`` (engine units) of ``market``'s limit ``limit`` as ``limit_value``
    reads it: plain decimal text, a whole number for max_open_orders, or "none"."""
    which = risk_limit(limit)
    if value == NONE_VALUES[which]:
        return "none"
    places, _ = _places(market, which, notional_prec)
    return format_units(value, places)


def limit_texts(market: MarketInfo, *, notional_prec: int) -> dict[LimitName, str]:
    """Every risk limit ``market`` has (its ``market.list`` values), as text."""
    return {
        name: limit_text(market, name, getattr(market, name), notional_prec=notional_prec)
        for name in LIMIT_NAMES
    }


__all__ = [
    "LIMIT_NAMES",
    "NONE_TEXTS",
    "NONE_VALUES",
    "RISK_LIMITS",
    "RISK_LIMIT_NAMES",
    "USER_LIMIT_NAMES",
    "LimitName",
    "UserLimitName",
    "check_notionals",
    "limit_name",
    "limit_text",
    "limit_texts",
    "limit_value",
    "risk_limit",
    "user_limit_name",
]
