"""Plain-Python pieces of the reference engine: exact decimals, orders and books.

Everything here is deliberately simple: values are ``decimal.Decimal`` amounts of real
assets (a price is money per whole stock, an amount is stock, a balance is the asset
itself), books are Python lists kept sorted, levels are FIFO lists. ``core.reference``
builds the engine on top. Nothing here knows about events.
"""

from __future__ import annotations

from collections import Counter
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
from core.schema import (
    MAX_QUOTE_LEVELS,
    PRICE_BAND_DEN,
    OrderFlag,
    OrderType,
    Result,
    Side,
    StpMode,
    TimeInForce,
)

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

    def crosses_best(self, taker_limit: Decimal) -> bool:
        """True if a taker of the other side with ``taker_limit`` would trade with the
        best order of this side."""
        best = self.best()
        return best is not None and self.crosses(best.price, taker_limit)

    def fok_depth(self, user: int, stp: int, limit: Decimal, amount: Decimal) -> Decimal:
        """Makers' ``left`` a FOK taker of ``user`` could fill, walking as matching
        would (stopping once ``amount`` is reached): with stp CANCEL_TAKER or
        CANCEL_BOTH the walk stops at the first own order, with CANCEL_MAKER own orders
        are skipped."""
        total = ZERO
        for maker in self.orders():
            if not self.crosses(maker.price, limit) or total >= amount:
                break
            if maker.user == user and stp != StpMode.NONE:
                if stp == StpMode.CANCEL_MAKER:
                    continue
                break
            total += maker.left
        return total

    def reach(
        self,
        user: int,
        stp: int,
        limit: Decimal | None,
        amount: Decimal,
        counts_money: bool,
        cap: int,
    ) -> int:
        """Resting orders a taker of ``user`` can reach (docs/engine.md, "Reach"):
        levels are walked from the best while they cross ``limit``; each adds all its
        orders; the walk ends after the level at which the makers' ``left`` (a market
        bid: their cost), the taker's own not counted when stp is set, covers
        ``amount``. Stops counting once past ``cap``."""
        rest = amount
        reached = 0
        for level in self.levels:
            if rest <= 0 or not self.crosses(level.price, limit):
                break
            reached += len(level.orders)
            if reached > cap:
                break
            for maker in level.orders:
                if stp != StpMode.NONE and maker.user == user:
                    continue
                rest -= maker.left * level.price if counts_money else maker.left
        return reached

    def depth(self, limit: int, step: Decimal | None) -> list[tuple[Decimal, Decimal]]:
        """(price, summed left) of at most ``limit`` levels, best first; with a
        ``step`` an ask price is rounded up and a bid price down to a multiple of it
        and equal prices are merged."""
        merged: list[tuple[Decimal, Decimal]] = []
        for level in self.levels:
            price = level.price
            if step is not None:
                multiple = (price // step) * step  # rounded down (prices are positive)
                if self.side == Side.ASK and multiple < price:
                    multiple += step
                price = multiple
            if merged and merged[-1][0] == price:
                merged[-1] = (price, merged[-1][1] + level.total)
            elif len(merged) >= limit:
                break
            else:
                merged.append((price, level.total))
        return merged

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
        #: The price of the market's last deal (the price band's reference).
        self.last_price: Decimal | None = None

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


# ---------------------------------------------------------------------- money helpers


def give_asset(market: Market, side: int) -> int:
    """The asset an order of ``side`` pays with (and freezes): stock for an ask."""
    return market.stock.index if side == Side.ASK else market.money.index


def fee_asset(market: Market, side: int) -> int:
    """The asset an order of ``side`` receives, and so pays its fee in."""
    return market.money.index if side == Side.ASK else market.stock.index


def fee_of(market: Market, side: int, rate: Decimal, quantity: Decimal, deal: Decimal) -> Decimal:
    """A fee, truncated toward zero to its asset's precision: the seller pays on the
    deal money, the buyer on the stock received."""
    if side == Side.ASK:
        return truncate(deal * rate, market.money.prec)
    return truncate(quantity * rate, market.stock.prec)


def fee_units(market: Market, side: int, fee: Decimal) -> int:
    """A fee of an order of ``side`` in units of its fee asset."""
    asset = market.money if side == Side.ASK else market.stock
    return exact_units(fee, asset.prec)


@dataclass(frozen=True, slots=True)
class OrderInts:
    """An order in the integer units of events, views and the canonical state."""

    price: int
    amount: int
    left: int
    deal_stock: int
    deal_money: int
    deal_fee: int
    taker_rate: int
    maker_rate: int


def order_ints(scales: Scales, order: RefOrder) -> OrderInts:
    """``order``'s Decimal fields in ticks, lots (money units for a market bid) and
    units; raises ``InternalError`` if one is not exact."""
    if order.counts_money:
        amount, left = scales.money_units_of(order.amount), scales.money_units_of(order.left)
    else:
        amount, left = scales.lots_of(order.amount), scales.lots_of(order.left)
    return OrderInts(
        price=scales.ticks_of(order.price),
        amount=amount,
        left=left,
        deal_stock=scales.lots_of(order.deal_stock),
        deal_money=scales.money_units_of(order.deal_money),
        deal_fee=fee_units(scales.market, order.side, order.deal_fee),
        taker_rate=scales.rate_of(order.taker_rate),
        maker_rate=scales.rate_of(order.maker_rate),
    )


# ---------------------------------------------------------------------- invariants


def check_book(book: MarketBook) -> list[str]:
    """Violations of a market book's structure; empty when sound."""
    name = book.market.name
    problems: list[str] = []
    seen = 0
    for side in (book.asks, book.bids):
        if len(side.levels) > book.market.max_levels:
            problems.append(f"{name}: side {side.side} has more than max_levels levels")
        for before, after in zip(side.levels, side.levels[1:], strict=False):
            if not side.better(before.price, after.price):
                problems.append(f"{name}: side {side.side} levels not strictly sorted")
        for level in side.levels:
            if not level.orders:
                problems.append(f"{name}: empty level at {level.price}")
            if level.total != sum((o.left for o in level.orders), ZERO):
                problems.append(f"{name}: level {level.price} total is wrong")
            for order in level.orders:
                seen += 1
                problems += _check_order(book, side, level.price, order)
    if seen != len(book.index):
        problems.append(f"{name}: {seen} orders on levels, {len(book.index)} in the index")
    if len(book.index) > book.market.max_orders:
        problems.append(f"{name}: more than max_orders resting orders")
    problems += _check_quotes(book)
    best_ask, best_bid = book.asks.best(), book.bids.best()
    if best_ask is not None and best_bid is not None and best_bid.price >= best_ask.price:
        problems.append(f"{name}: book crossed (bid {best_bid.price} >= ask {best_ask.price})")
    return problems


def _check_quotes(book: MarketBook) -> list[str]:
    """A user has at most the quote orders one quote makes (the event bound of QUOTE
    relies on it)."""
    quoting = Counter(o.user for o in book.index.values() if o.flags & OrderFlag.QUOTE)
    if any(n > 2 * MAX_QUOTE_LEVELS for n in quoting.values()):
        return [f"{book.market.name}: a user has more quote orders than a quote has levels"]
    return []


def _check_order(book: MarketBook, side: BookSide, price: Decimal, order: RefOrder) -> list[str]:
    problems = []
    what = f"{book.market.name}: order {order.id}"
    if book.index.get(order.id) is not order:
        problems.append(f"{what} is not in the index")
    if order.side != side.side or order.price != price or order.market != book.market.index:
        problems.append(f"{what} is on the wrong level")
    if not 0 < order.left <= order.amount:
        problems.append(f"{what}: left {order.left} not in (0, amount {order.amount}]")
    if order.deal_stock != order.amount - order.left:
        problems.append(f"{what}: deal_stock is not amount - left")
    if order.otype != OrderType.LIMIT or order.tif != TimeInForce.GTC:
        problems.append(f"{what}: only GTC limit orders may rest")
    if order.flags & OrderFlag.QUOTE and not order.flags & OrderFlag.POST_ONLY:
        problems.append(f"{what}: a quote order that is not post-only")
    return problems


def risk_refusal(book: MarketBook, price: Decimal, amount: Decimal) -> Result | None:
    """The market's risk limits for ``amount`` stock at ``price`` (docs/engine.md,
    "Market risk limits"), in the documented order; None if it is within them."""
    market, scales = book.market, book.scales
    if price % scales.price(market.price_step) != 0:
        return Result.PRICE_NOT_ON_STEP
    refusal = amount_refusal(book, amount)
    if refusal is not None:
        return refusal
    return notional_refusal(book, price * amount)


def amount_refusal(book: MarketBook, amount: Decimal) -> Result | None:
    """``amount`` (stock) against the market's amount_step, then its max_order_amount
    (the limits a market ask is held to as well)."""
    market, scales = book.market, book.scales
    if amount % scales.lots(market.amount_step) != 0:
        return Result.AMOUNT_NOT_ON_STEP
    if market.max_order_amount and amount > scales.lots(market.max_order_amount):
        return Result.AMOUNT_TOO_LARGE
    return None


def band_reference(book: MarketBook) -> Decimal | None:
    """The price the band is measured from: the last deal's; before any deal, the
    middle of the best bid and the best ask, rounded down to a whole tick; None
    before any deal while a side of the book is empty."""
    if book.last_price is not None:
        return book.last_price
    ask, bid = book.asks.best(), book.bids.best()
    if ask is None or bid is None:
        return None
    scales = book.scales
    # SPEC: "rounded down to a tick": whole ticks of (bid + ask) / 2, floored.
    return scales.price((scales.ticks_of(bid.price) + scales.ticks_of(ask.price)) // 2)


def outside_band(book: MarketBook, price: Decimal) -> bool:
    """True if ``price`` is further from the band's reference price than the market's
    price band (a fraction of it) allows; never without a reference."""
    band = book.market.price_band
    ref = band_reference(book) if band else None
    if ref is None:
        return False
    return bool(abs(price - ref) > ref * Decimal(band) / PRICE_BAND_DEN)


def notional_refusal(book: MarketBook, value: Decimal) -> Result | None:
    """``value`` (money) against the market's min_notional and max_notional."""
    market, scales = book.market, book.scales
    if market.min_notional and value < scales.money(market.min_notional):
        return Result.NOTIONAL_TOO_SMALL
    if market.max_notional and value > scales.money(market.max_notional):
        return Result.NOTIONAL_TOO_LARGE
    return None
