"""Plain-Python pieces of the reference engine: exact decimals, orders and books.

Everything here is deliberately simple: values are ``decimal.Decimal`` amounts of real
assets (a price is money per whole stock, an amount is stock, a balance is the asset
itself), books are Python lists kept sorted, levels are FIFO lists. ``core.reference``
builds the engine on top. Nothing here knows about events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import (
    ROUND_DOWN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
)

from core.config import Market
from core.errors import InternalError
from core.schema import OrderType, Side

#: Arithmetic context of the reference engine. Precision is far beyond any int64
#: product, and every inexact or rounded result raises: an operation that is meant to
#: truncate does so explicitly (``truncate``, ``Decimal.__floordiv__``).
EXACT = Context(
    prec=120,
    rounding=ROUND_DOWN,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact, Rounded],
)
ZERO = Decimal(0)


def dec(units: int, places: int) -> Decimal:
    """``units`` * 10**-places, exactly."""
    return Decimal(int(units)).scaleb(-places, EXACT)


def exact_units(value: Decimal, places: int) -> int:
    """``value`` * 10**places as an int; raises ``InternalError`` if it is not whole."""
    scaled = value.scaleb(places, EXACT)
    if scaled != scaled.to_integral_value(rounding=ROUND_DOWN, context=EXACT):
        raise InternalError(f"{value} is not a whole number of 10**-{places}")
    return int(scaled)


def truncate(value: Decimal, places: int) -> Decimal:
    """``value`` truncated toward zero to ``places`` decimal places."""
    scaled = value.scaleb(places, EXACT).to_integral_value(rounding=ROUND_DOWN, context=EXACT)
    return scaled.scaleb(-places, EXACT)


class Scales:
    """Conversions between a market's integer fields and Decimal values."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.lot = dec(1, market.stock_prec)
        self.min_amount = dec(market.min_amount, market.stock_prec)

    def price(self, ticks: int) -> Decimal:
        return dec(ticks, self.market.money_prec)

    def lots(self, lots: int) -> Decimal:
        return dec(lots, self.market.stock_prec)

    def money(self, units: int) -> Decimal:
        return dec(units, self.market.money.prec)

    def rate(self, rate: int) -> Decimal:
        return dec(rate, self.market.fee_prec)

    def ticks_of(self, price: Decimal) -> int:
        return exact_units(price, self.market.money_prec)

    def lots_of(self, amount: Decimal) -> int:
        return exact_units(amount, self.market.stock_prec)

    def money_units_of(self, money: Decimal) -> int:
        return exact_units(money, self.market.money.prec)

    def stock_units_of(self, stock: Decimal) -> int:
        return exact_units(stock, self.market.stock.prec)

    def rate_of(self, rate: Decimal) -> int:
        return exact_units(rate, self.market.fee_prec)


@dataclass(eq=False, slots=True)
class RefOrder:
    """An order, live or resting, in Decimal values.

    ``price`` is money per whole stock (0 for market orders); ``amount`` and ``left`` are
    stock, except for a market bid (money); ``deal_fee`` is in the order's fee asset
    (money for an ask, stock for a bid); rates are fractions (0.002).
    """

    id: int
    market: int
    user: int
    side: int
    otype: int
    price: Decimal
    amount: Decimal
    left: Decimal
    taker_rate: Decimal
    maker_rate: Decimal
    ctime_ns: int
    mtime_ns: int
    tif: int
    stp: int
    flags: int
    source: bytes
    deal_stock: Decimal = ZERO
    deal_money: Decimal = ZERO
    deal_fee: Decimal = ZERO

    @property
    def counts_money(self) -> bool:
        """True for a market bid, whose ``amount`` and ``left`` are money."""
        return self.otype == OrderType.MARKET and self.side == Side.BID

    def reserve(self) -> Decimal:
        """Frozen funds of the order while it rests: stock (ask) or money (bid)."""
        if self.side == Side.ASK:
            return self.left
        return self.price * self.left


@dataclass(eq=False, slots=True)
class Level:
    """One price level: a FIFO of orders (oldest first) and their summed ``left``."""

    price: Decimal
    orders: list[RefOrder] = field(default_factory=list)
    total: Decimal = ZERO


class BookSide:
    """The levels of one side, best price first."""

    def __init__(self, side: int) -> None:
        self.side = side
        self.levels: list[Level] = []

    def better(self, a: Decimal, b: Decimal) -> bool:
        """True if price ``a`` comes before ``b`` on this side."""
        return a < b if self.side == Side.ASK else a > b

    def crosses(self, level_price: Decimal, taker_limit: Decimal | None) -> bool:
        """True if a taker of the other side with ``taker_limit`` (None: market)
        may trade at ``level_price``."""
        if taker_limit is None:
            return True
        if self.side == Side.ASK:  # a bid taker buys asks priced at or below its limit
            return level_price <= taker_limit
        return level_price >= taker_limit

    def find(self, price: Decimal) -> Level | None:
        for level in self.levels:
            if level.price == price:
                return level
        return None

    def best(self) -> Level | None:
        return self.levels[0] if self.levels else None

    def head(self) -> RefOrder | None:
        """The order with the highest priority, or None."""
        return self.levels[0].orders[0] if self.levels else None

    def push(self, order: RefOrder) -> None:
        """Append ``order`` at the tail of its price level, creating the level."""
        level = self.find(order.price)
        if level is None:
            level = Level(order.price)
            at = 0
            while at < len(self.levels) and self.better(self.levels[at].price, order.price):
                at += 1
            self.levels.insert(at, level)
        level.orders.append(order)
        level.total += order.left

    def remove(self, order: RefOrder) -> None:
        """Take ``order`` out of its level; an emptied level is dropped."""
        level = self.find(order.price)
        if level is None or order not in level.orders:
            raise InternalError(f"order {order.id} is not on its level")
        level.orders.remove(order)
        level.total -= order.left
        if not level.orders:
            self.levels.remove(level)

    def set_left(self, order: RefOrder, left: Decimal) -> None:
        """Change a resting order's ``left`` and its level's total."""
        level = self.find(order.price)
        if level is None:
            raise InternalError(f"order {order.id} has no level")
        level.total += left - order.left
        order.left = left

    def orders(self) -> Iterator[RefOrder]:
        """Every order in priority order."""
        for level in self.levels:
            yield from level.orders

    def count(self) -> int:
        return sum(len(level.orders) for level in self.levels)


class MarketBook:
    """Both sides of a market and the index of its resting orders by id."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.scales = Scales(market)
        self.asks = BookSide(Side.ASK)
        self.bids = BookSide(Side.BID)
        self.index: dict[int, RefOrder] = {}

    def side(self, side: int) -> BookSide:
        return self.asks if side == Side.ASK else self.bids

    def opposite(self, side: int) -> BookSide:
        return self.bids if side == Side.ASK else self.asks

    def add(self, order: RefOrder) -> None:
        self.side(order.side).push(order)
        self.index[order.id] = order

    def remove(self, order: RefOrder) -> None:
        self.side(order.side).remove(order)
        del self.index[order.id]

    def has_free_slot(self) -> bool:
        return len(self.index) < self.market.max_orders

    def lacks_level(self, side: int, price: Decimal, moving: RefOrder | None = None) -> bool:
        """True if resting at ``price`` needs a new level and ``side`` has no room for it.

        ``moving``: an order of this side that leaves the book first (replace); its
        level does not count if it is the only order there.
        """
        book_side = self.side(side)
        if book_side.find(price) is not None:
            return False
        levels = len(book_side.levels)
        if moving is not None:
            own = book_side.find(moving.price)
            if own is not None and len(own.orders) == 1:
                levels -= 1
        return levels >= self.market.max_levels
