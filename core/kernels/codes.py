"""The schema's enums as plain ints, the form the matching kernels compare against.

numba freezes module globals into the compiled code, so these are compile-time
constants. Sides are ASK = 1 and BID = 2, which makes ``3 - side`` the opposite side.
"""

from __future__ import annotations

from core.schema import (
    CommandKind,
    FinishReason,
    MarketStatus,
    OrderFlag,
    QuoteAction,
    Result,
    StpMode,
    TimeInForce,
    UserStatus,
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
QUOTE_FLAG = int(OrderFlag.QUOTE)
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
TOO_MANY_MATCHES = int(Result.TOO_MANY_MATCHES)
FOK_NOT_FILLED = int(Result.FOK_NOT_FILLED)
BOOK_FULL = int(Result.BOOK_FULL)
PRICE_NOT_ON_STEP = int(Result.PRICE_NOT_ON_STEP)
AMOUNT_NOT_ON_STEP = int(Result.AMOUNT_NOT_ON_STEP)
NOTIONAL_TOO_SMALL = int(Result.NOTIONAL_TOO_SMALL)
NOTIONAL_TOO_LARGE = int(Result.NOTIONAL_TOO_LARGE)
TOO_MANY_OPEN_ORDERS = int(Result.TOO_MANY_OPEN_ORDERS)
MARKET_HALTED = int(Result.MARKET_HALTED)
MARKET_DELISTED = int(Result.MARKET_DELISTED)
USER_BLOCKED = int(Result.USER_BLOCKED)
PRICE_OUTSIDE_BAND = int(Result.PRICE_OUTSIDE_BAND)
AMOUNT_TOO_LARGE = int(Result.AMOUNT_TOO_LARGE)
USER_TABLE_FULL = int(Result.USER_TABLE_FULL)

PUT_LIMIT = int(CommandKind.PUT_LIMIT)
PUT_MARKET = int(CommandKind.PUT_MARKET)
CANCEL = int(CommandKind.CANCEL)
REPLACE = int(CommandKind.REPLACE)
CANCEL_ALL = int(CommandKind.CANCEL_ALL)
MARKET_STATUS = int(CommandKind.MARKET_STATUS)
USER_STATUS = int(CommandKind.USER_STATUS)
CANCEL_MARKET = int(CommandKind.CANCEL_MARKET)
MARKET_LIMIT = int(CommandKind.MARKET_LIMIT)
USER_LIMIT = int(CommandKind.USER_LIMIT)
QUOTE = int(CommandKind.QUOTE)
QUOTE_LEVEL = int(CommandKind.QUOTE_LEVEL)

QUOTE_KEPT = int(QuoteAction.KEPT)
QUOTE_SHRUNK = int(QuoteAction.SHRUNK)
QUOTE_GROWN = int(QuoteAction.GROWN)
QUOTE_NEW = int(QuoteAction.NEW)

MARKET_OPEN = int(MarketStatus.OPEN)
MARKET_HALTED_STATUS = int(MarketStatus.HALTED)
MARKET_DELISTED_STATUS = int(MarketStatus.DELISTED)
USER_ACTIVE = int(UserStatus.ACTIVE)
USER_BLOCKED_STATUS = int(UserStatus.BLOCKED)
