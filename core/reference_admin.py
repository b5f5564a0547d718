"""The reference engine's market operations (docs/engine.md, "Market and user status",
"Market risk limits", "User risk limits"): MARKET_STATUS, USER_STATUS, CANCEL_MARKET,
MARKET_LIMIT and USER_LIMIT, as a mixin of ``core.reference.ReferenceEngine``. Like
the rest of the reference, written from the contract, independently of the kernels.
"""

from __future__ import annotations

from core.config import LIMIT_NAMES, with_limits
from core.reference_book import MarketBook
from core.reference_command import SIDES, Outcome, RefCommand
from core.reference_quote import QuoteCommands
from core.schema import (
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    PRICE_BAND_DEN,
    CommandKind,
    EventKind,
    FinishReason,
    MarketStatus,
    Result,
    RiskLimit,
    UserStatus,
)


class AdminCommands(QuoteCommands):
    """The market operations: each changes a status, a limit or cancels a market's
    orders; none trades."""

    def _operation(self, cmd: RefCommand) -> Outcome:
        """A market operation (docs/engine.md, "Market and user status", "Market risk
        limits", "User risk limits"), or INVALID_ARGUMENT for an undefined kind."""
        if cmd.kind == CommandKind.USER_STATUS:  # names no market
            return self._set_user_status(cmd)
        if cmd.kind == CommandKind.USER_LIMIT:  # the user is checked before the market
            return self._set_user_limit(cmd)
        if cmd.kind not in (
            CommandKind.MARKET_STATUS,
            CommandKind.CANCEL_MARKET,
            CommandKind.MARKET_LIMIT,
        ):
            return Outcome(Result.INVALID_ARGUMENT)
        if not 0 <= cmd.market < len(self._books):
            return Outcome(Result.UNKNOWN_MARKET)
        if cmd.kind == CommandKind.MARKET_STATUS:
            return self._set_market_status(cmd)
        if cmd.kind == CommandKind.MARKET_LIMIT:
            return self._set_limit(self._books[cmd.market], cmd)
        return self._cancel_market(self._books[cmd.market], cmd)

    def _set_market_status(self, cmd: RefCommand) -> Outcome:
        if cmd.amount not in tuple(MarketStatus):
            return Outcome(Result.INVALID_ARGUMENT)
        new, old = MarketStatus(cmd.amount), self._market_status[cmd.market]
        if new == old:  # SPEC: no change is accepted without a seq or an event
            return Outcome(Result.OK)
        self._seq += 1
        self._market_status[cmd.market] = new
        self._emit(
            kind=EventKind.MARKET_STATUS, market=cmd.market, reason=int(new), amount=int(old)
        )
        return Outcome(Result.OK)

    def _set_limit(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        market = book.market
        limits = [getattr(market, name) for name in LIMIT_NAMES]
        if cmd.side not in tuple(RiskLimit):
            return Outcome(Result.INVALID_ARGUMENT)
        which, value = RiskLimit(cmd.side), cmd.amount
        # SPEC: the ranges config load enforces, the other limits as they are.
        ok = {
            RiskLimit.PRICE_STEP: 1 <= value <= market.max_price,
            RiskLimit.AMOUNT_STEP: 1 <= value <= market.max_amount,
            RiskLimit.MIN_NOTIONAL: 0 <= value <= MAX_SUPPLY_UNITS
            and (not market.max_notional or value <= market.max_notional),
            RiskLimit.MAX_NOTIONAL: 0 <= value <= MAX_SUPPLY_UNITS
            and (not value or market.min_notional <= value),
            RiskLimit.MAX_OPEN_ORDERS: 0 <= value <= market.max_orders,
            RiskLimit.PRICE_BAND: 0 <= value < PRICE_BAND_DEN,
            RiskLimit.MAX_ORDER_AMOUNT: 0 <= value <= market.max_amount,
        }[which]
        if not ok:
            return Outcome(Result.INVALID_ARGUMENT)
        old = limits[which - 1]
        if value == old:
            return Outcome(Result.OK)
        self._seq += 1
        limits[which - 1] = value
        book.market = with_limits(market, limits)
        self._emit(
            kind=EventKind.MARKET_LIMIT,
            market=cmd.market,
            reason=int(which),
            amount=old,
            left=value,
        )
        return Outcome(Result.OK)

    def _set_user_limit(self, cmd: RefCommand) -> Outcome:
        """USER_LIMIT (docs/engine.md, "User risk limits")."""
        if not 0 <= cmd.user <= MAX_USER_ID:
            return Outcome(Result.INVALID_ARGUMENT)
        if not 0 <= cmd.market < len(self._books):
            return Outcome(Result.UNKNOWN_MARKET)
        if cmd.user == self.config.fee_user:
            return Outcome(Result.FEE_ACCOUNT_CANNOT_TRADE)
        # column in the table's row, and the largest value the limit may take
        ranges = {
            RiskLimit.MAX_ORDER_AMOUNT: (0, self._books[cmd.market].market.max_amount),
            RiskLimit.MAX_NOTIONAL: (1, MAX_SUPPLY_UNITS),
        }
        if cmd.side not in ranges:
            return Outcome(Result.INVALID_ARGUMENT)
        column, top = ranges[RiskLimit(cmd.side)]
        if not 0 <= cmd.amount <= top:
            return Outcome(Result.INVALID_ARGUMENT)
        key = (cmd.user, cmd.market)
        row = self._user_limits.get(key)
        old = 0 if row is None else row[column]
        if cmd.amount == old:  # SPEC: no change: OK without a seq, no pair is added
            return Outcome(Result.OK)
        if row is None and len(self._user_limits) >= self.config.max_user_limits:
            return Outcome(Result.USER_LIMIT_TABLE_FULL)
        self._seq += 1
        self._user_limits.setdefault(key, [0, 0])[column] = cmd.amount
        self._emit(
            kind=EventKind.USER_LIMIT,
            user=cmd.user,
            market=cmd.market,
            reason=cmd.side,
            amount=old,
            left=cmd.amount,
        )
        return Outcome(Result.OK)

    def _set_user_status(self, cmd: RefCommand) -> Outcome:
        if not 0 <= cmd.user <= MAX_USER_ID or cmd.amount not in tuple(UserStatus):
            return Outcome(Result.INVALID_ARGUMENT)
        if cmd.user == self.config.fee_user:
            return Outcome(Result.FEE_ACCOUNT_CANNOT_TRADE)
        new = UserStatus(cmd.amount)
        old = self._user_status.get(cmd.user, UserStatus.ACTIVE)
        if new == old:
            return Outcome(Result.OK)
        # SPEC: blocking a user without an account creates it (its status lives there).
        if cmd.user not in self._accounts and len(self._accounts) >= self.config.max_users:
            return Outcome(Result.USER_TABLE_FULL)
        self._seq += 1
        self._accounts.add(cmd.user)
        if new == UserStatus.ACTIVE:
            del self._user_status[cmd.user]
        else:
            self._user_status[cmd.user] = new
        self._emit(
            kind=EventKind.USER_STATUS, market=-1, user=cmd.user, reason=int(new), amount=int(old)
        )
        return Outcome(Result.OK)

    def _cancel_market(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        if cmd.side not in (0, *SIDES):
            return Outcome(Result.INVALID_ARGUMENT)
        # SPEC: asks before bids, each side in priority order (best price first, then
        # oldest), at most max_matches orders; the caller repeats until none is left.
        sides = [s for s in (book.asks, book.bids) if cmd.side in (0, s.side)]
        victims = [order for side in sides for order in side.orders()]
        victims = victims[: self.config.max_matches]
        if not victims:
            return Outcome(Result.OK)
        self._seq += 1
        for order in victims:
            self._take_off(book, order, FinishReason.CANCELED)
        return Outcome(Result.OK, 0, len(victims))
