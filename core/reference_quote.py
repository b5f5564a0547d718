"""The reference engine's mass quote (docs/engine.md, "QUOTE"), and the two steps it
shares with the other commands: the status check and cancelling a resting order.

``QuoteCommands`` sits between ``core.reference_state.ReferenceState`` (the state,
balance moves and events) and ``core.reference.ReferenceEngine`` (the other
commands). It is written from the contract, independently of the kernels in
``core/kernels/quote.py``: the maker's quote orders are found by scanning the book's
index, and each check is the plain reading of its line in docs/engine.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np

from core.reference_book import MarketBook, RefOrder, give_asset, outside_band
from core.reference_command import SIDES, Outcome, RefCommand, _source_ok
from core.reference_state import ReferenceState
from core.schema import (
    MAX_QUOTE_LEVELS,
    MAX_USER_ID,
    Business,
    CommandKind,
    EventKind,
    FinishReason,
    MarketStatus,
    OrderFlag,
    OrderType,
    QuoteAction,
    Result,
    Side,
    StpMode,
    TimeInForce,
    UserStatus,
)

#: The flags of every quote order.
QUOTE_FLAGS = int(OrderFlag.POST_ONLY | OrderFlag.QUOTE)


@dataclass(frozen=True, slots=True)
class QuoteLevel:
    side: int
    price: int  #: ticks
    amount: int  #: lots


def quote_group(commands: np.ndarray, i: int) -> list[RefCommand] | None:
    """The k level records of the QUOTE at ``commands[i]``, or None if they do not
    follow it (k outside 0..2 x MAX_QUOTE_LEVELS, or a record that is no level)."""
    k = int(commands[i]["amount"])
    if not 0 <= k <= 2 * MAX_QUOTE_LEVELS or i + k >= len(commands):
        return None
    group = [RefCommand.of(commands[j]) for j in range(i + 1, i + k + 1)]
    if any(c.kind != CommandKind.QUOTE_LEVEL for c in group):
        return None
    return group


class QuoteCommands(ReferenceState):
    """QUOTE, plus the status check and the cancel of a resting order."""

    def _status_refusal(self, cmd: RefCommand) -> Result | None:
        """The market's status, then the user's, for a command that would add to a
        book (docs/engine.md, "Market and user status"); None if both allow it."""
        status = self._market_status[cmd.market]
        if status == MarketStatus.HALTED:
            return Result.MARKET_HALTED
        if status == MarketStatus.DELISTED:
            return Result.MARKET_DELISTED
        if self._user_status.get(cmd.user) == UserStatus.BLOCKED:
            return Result.USER_BLOCKED
        return None

    def _take_off(self, book: MarketBook, order: RefOrder, reason: FinishReason) -> None:
        """Cancel a resting order: unfreeze its reserve, remove it, report it as it
        stood (mtime unchanged)."""
        reserve = order.reserve()
        asset = give_asset(book.market, order.side)
        self._change(order.user, asset, reserve, -reserve, order, Business.UNFREEZE)
        book.remove(order)
        self._order_event(EventKind.ORDER_FINISH, order, reason)

    # ------------------------------------------------------------------ QUOTE

    def _quote(
        self, head: RefCommand, group: list[RefCommand] | None
    ) -> tuple[Outcome, list[tuple[int, int]]]:
        """The QUOTE ``head`` with its level records (None: they do not follow):
        its outcome, and each level's (order id, action) -- zeros when refused."""
        levels = [QuoteLevel(c.side, c.price, c.amount) for c in group or []]
        nothing = [(0, 0)] * len(levels)
        code = self._quote_form(head, group, levels)
        if code is None and head.user == self.config.fee_user:
            code = Result.FEE_ACCOUNT_CANNOT_TRADE
        if code is None and levels:
            code = self._status_refusal(head) or self._level_limits(head, levels)
        if code is not None:
            return Outcome(code), nothing
        book = self._books[head.market]
        mine = self._quote_orders(book, head.user)
        matched: dict[int, RefOrder] = {}  # level index -> its order
        for order in mine:  # oldest first: the oldest at a price is the level's
            for n, level in enumerate(levels):
                if n not in matched and (level.side, level.price) == self._at(book, order):
                    matched[n] = order
                    break
        stale = [o for o in mine if o not in matched.values()]
        code = self._quote_refusal(book, head, levels, matched, mine, len(stale))
        if code is not None:
            return Outcome(code), nothing
        return self._apply_quote(book, head, levels, matched, stale)

    def _quote_form(
        self, head: RefCommand, group: list[RefCommand] | None, levels: list[QuoteLevel]
    ) -> Result | None:
        """Check 1: the market, the user and the form of the quote."""
        if not 0 <= head.market < len(self._books):
            return Result.UNKNOWN_MARKET
        market = self._books[head.market].market
        sides = [level.side for level in levels]
        bids = [level.price for level in levels if level.side == Side.BID]
        asks = [level.price for level in levels if level.side == Side.ASK]
        if (
            not 0 <= head.user <= MAX_USER_ID
            or group is None
            or not 0 <= head.taker_rate < market.fee_den
            or not 0 <= head.maker_rate < market.fee_den
            or not _source_ok(head)
            or any(side not in SIDES for side in sides)
            or any(not 1 <= level.price <= market.max_price for level in levels)
            or any(not 1 <= level.amount <= market.max_amount for level in levels)
            or max(len(bids), len(asks)) > MAX_QUOTE_LEVELS
            or len(set(bids)) != len(bids)
            or len(set(asks)) != len(asks)
            or (bids and asks and max(bids) >= min(asks))
        ):
            return Result.INVALID_ARGUMENT
        return None

    def _level_limits(self, head: RefCommand, levels: list[QuoteLevel]) -> Result | None:
        """Check 4: each level's risk limits (the market's, then the user's), then its
        minimum amount."""
        book = self._books[head.market]
        for level in levels:
            price, amount = book.scales.price(level.price), book.scales.lots(level.amount)
            refusal = self._order_refusal(book, head.user, price, amount)
            if refusal is not None:
                return refusal
            if amount < book.scales.min_amount:
                return Result.AMOUNT_TOO_SMALL
        return None

    def _quote_orders(self, book: MarketBook, user: int) -> list[RefOrder]:
        """The user's quote orders in the market, oldest first."""
        mine = [o for o in book.index.values() if o.user == user and o.flags & OrderFlag.QUOTE]
        return sorted(mine, key=lambda o: o.id)

    @staticmethod
    def _at(book: MarketBook, order: RefOrder) -> tuple[int, int]:
        return order.side, book.scales.ticks_of(order.price)

    def _quote_refusal(
        self,
        book: MarketBook,
        head: RefCommand,
        levels: list[QuoteLevel],
        matched: dict[int, RefOrder],
        mine: list[RefOrder],
        stale: int,
    ) -> Result | None:
        """Checks 5 to 9 (band, funds, crossing, room, open orders)."""
        scales = book.scales
        new = [lv for n, lv in enumerate(levels) if n not in matched]
        for level in new:
            if outside_band(book, scales.price(level.price)):
                return Result.PRICE_OUTSIDE_BAND
        for side in SIDES:
            need = sum(
                (self._reserve(book, lv) for lv in levels if lv.side == side), start=Decimal(0)
            )
            held = sum((o.reserve() for o in mine if o.side == side), start=Decimal(0))
            have = self._available(head.user, give_asset(book.market, side)) + held
            if need > have:
                return Result.BALANCE_NOT_ENOUGH
        for level in levels:
            best = self._best_other(book, Side(3 - level.side), head.user)
            price = scales.price(level.price)
            if best is not None and (price >= best if level.side == Side.BID else price <= best):
                return Result.POST_ONLY_WOULD_TAKE
        if len(new) > book.market.max_orders - len(book.index):
            return Result.BOOK_FULL
        for side in SIDES:
            book_side = book.side(side)
            fresh = [lv for lv in new if lv.side == side]
            missing = sum(1 for lv in fresh if book_side.find(scales.price(lv.price)) is None)
            if len(book_side.levels) + missing > book.market.max_levels:
                return Result.BOOK_FULL
        most = book.market.max_open_orders
        resting = sum(1 for o in book.index.values() if o.user == head.user)
        if most and resting - stale + len(new) > most:
            return Result.TOO_MANY_OPEN_ORDERS
        return None

    @staticmethod
    def _reserve(book: MarketBook, level: QuoteLevel) -> Decimal:
        amount = book.scales.lots(level.amount)
        return amount if level.side == Side.ASK else book.scales.price(level.price) * amount

    @staticmethod
    def _best_other(book: MarketBook, side: Side, user: int) -> Decimal | None:
        """The best price on ``side`` among the orders that are not ``user``'s quote
        orders."""
        for order in book.side(side).orders():
            if order.user != user or not order.flags & OrderFlag.QUOTE:
                return order.price
        return None

    def _apply_quote(
        self,
        book: MarketBook,
        head: RefCommand,
        levels: list[QuoteLevel],
        matched: dict[int, RefOrder],
        stale: list[RefOrder],
    ) -> tuple[Outcome, list[tuple[int, int]]]:
        scales = book.scales
        asset = {int(side): give_asset(book.market, side) for side in SIDES}
        start = len(self._events)
        self._seq += 1  # given back below if nothing changed
        for order in stale:
            self._take_off(book, order, FinishReason.CANCELED)
        out: list[tuple[int, int]] = [(0, 0)] * len(levels)
        for n, level in enumerate(levels):  # kept and shrunk
            kept = matched.get(n)
            left = scales.lots(level.amount)
            if kept is None or left > kept.left:
                continue
            order = kept
            if left == order.left:
                out[n] = (order.id, QuoteAction.KEPT)
                continue
            freed = order.reserve()
            order.amount += left - order.left
            book.side(order.side).set_left(order, left)
            order.mtime_ns = self._ts_ns
            freed -= order.reserve()
            self._change(order.user, asset[order.side], freed, -freed, order, Business.UNFREEZE)
            self._order_event(EventKind.ORDER_UPDATE, order)
            out[n] = (order.id, QuoteAction.SHRUNK)
        for n, level in enumerate(levels):  # grown and new
            mine = matched.get(n)
            left = scales.lots(level.amount)
            if mine is None:
                order = self._quote_order(head, level, left, scales.price(level.price))
                kind, action = EventKind.ORDER_PUT, QuoteAction.NEW
            elif left > mine.left:
                order = mine
                reserve = order.reserve()
                self._change(
                    order.user, asset[order.side], reserve, -reserve, order, Business.UNFREEZE
                )
                book.remove(order)
                order.amount += left - order.left
                order.left = left
                order.mtime_ns = self._ts_ns
                kind, action = EventKind.ORDER_UPDATE, QuoteAction.GROWN
            else:
                continue
            reserve = order.reserve()
            self._change(order.user, asset[order.side], -reserve, reserve, order, Business.FREEZE)
            book.add(order)
            self._order_event(kind, order)
            out[n] = (order.id, action)
        if len(self._events) == start:  # every level kept, nothing stale
            self._seq -= 1
        return Outcome(Result.OK, 0, len(stale)), out

    def _quote_order(
        self, head: RefCommand, level: QuoteLevel, left: Decimal, price: Decimal
    ) -> RefOrder:
        """A new quote order of ``level``, with ``head``'s rates, time and source."""
        cmd = replace(head, side=level.side, stp=StpMode.NONE)
        scales = self._books[head.market].scales
        return self._order(
            cmd,
            OrderType.LIMIT,
            price=price,
            amount=left,
            maker_rate=scales.rate(head.maker_rate),
            tif=TimeInForce.GTC,
            flags=QUOTE_FLAGS,
        )

    def _order(
        self,
        cmd: RefCommand,
        otype: OrderType,
        *,
        price: Decimal,
        amount: Decimal,
        maker_rate: Decimal,
        tif: int,
        flags: int,
    ) -> RefOrder:
        """The next order id; a new order of ``cmd`` with left = amount."""
        self._order_id += 1
        scales = self._books[cmd.market].scales
        return RefOrder(
            id=self._order_id,
            market=cmd.market,
            user=cmd.user,
            side=cmd.side,
            otype=otype,
            price=price,
            amount=amount,
            left=amount,
            taker_rate=scales.rate(cmd.taker_rate),
            maker_rate=maker_rate,
            ctime_ns=cmd.ts_ns,
            mtime_ns=cmd.ts_ns,
            tif=tif,
            stp=cmd.stp,
            flags=flags,
            source=cmd.used_source(),
        )
