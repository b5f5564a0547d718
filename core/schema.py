"""Every record layout, enum and result code of the engine, in one place.

Units used throughout (see docs/engine.md):

* ``units`` -- an amount of an asset, in 10**-asset.prec (balances, fees, deal money).
* ``ticks`` -- a price, in 10**-market.money_prec of the money asset per whole stock.
* ``lots``  -- an order quantity of stock, in 10**-market.stock_prec.

All integers are int64 (ids, money) or narrower signed types (enums); no uint64 and no
floats. Every dtype is little-endian and packed; a golden test pins sizes and offsets.
Changing a layout means bumping ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

SCHEMA_VERSION = 2

INT64_MAX = 2**63 - 1
#: The largest total of one asset over all accounts (available + frozen). Deposits
#: that would exceed it are refused, so no balance and no sum of balances can overflow.
MAX_SUPPLY_UNITS = 2**62
#: Largest user id (ViaBTC reads user ids as uint32; larger values are refused, not wrapped).
MAX_USER_ID = 2**32 - 1
#: Source tags (ViaBTC's ``source``) are at most this many bytes of UTF-8, without NUL.
SOURCE_LENGTH = 30
#: Only this many bytes of a balance.update business name count (ViaBTC compatible).
BUSINESS_KEY_LENGTH = 32
ASSET_NAME_LENGTH = 15
#: Fee rates are integers over 10**fee_prec; fee_prec <= 9 keeps rate*rate < 2**63,
#: which the exact multiply-divide in kernels relies on.
MAX_FEE_PREC = 9
#: A market's price band is a fraction in millionths (exact at 6 places).
PRICE_BAND_PLACES = 6
PRICE_BAND_DEN = 10**PRICE_BAND_PLACES
MAX_PREC = 18


class Side(IntEnum):
    ASK = 1  #: sell stock
    BID = 2  #: buy stock


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2


class TimeInForce(IntEnum):
    GTC = 0  #: rests until filled or cancelled (ViaBTC's only kind)
    IOC = 1  #: takes what it can, the rest is cancelled
    FOK = 2  #: fills completely at once, or is rejected with nothing changed


class StpMode(IntEnum):
    """Self-trade prevention, chosen by the taker order."""

    NONE = 0  #: ViaBTC behaviour: a user's orders may trade with each other
    CANCEL_TAKER = 1  #: meeting an own resting order cancels the taker's remainder
    CANCEL_MAKER = 2  #: an own resting order met is cancelled; matching goes on
    CANCEL_BOTH = 3  #: both are cancelled


class OrderFlag(IntEnum):
    POST_ONLY = 1  #: rejected if it would take on entry or on replace
    QUOTE = 2  #: a level of its user's mass quote (only QUOTE sets it; always POST_ONLY)


#: Levels a side of a mass quote may have (QUOTE's ``amount`` is at most twice this).
MAX_QUOTE_LEVELS = 32


class QuoteAction(IntEnum):
    """What a QUOTE did to one of its levels (the level's result ``value``)."""

    KEPT = 0  #: its order rests as it was
    SHRUNK = 1  #: its order has less left at the same price and kept its priority
    GROWN = 2  #: its order has more left at the same price and went to the tail
    NEW = 3  #: a new order


class CommandKind(IntEnum):
    PUT_LIMIT = 1
    PUT_MARKET = 2
    CANCEL = 3
    REPLACE = 4
    CANCEL_ALL = 5
    BALANCE_UPDATE = 6  #: handled outside the batch kernel (carries strings)
    #: Market operations (docs/engine.md, "Market and user status"); an admin key's.
    MARKET_STATUS = 7  #: set the market's status to ``amount`` (MarketStatus)
    USER_STATUS = 8  #: set the user's status to ``amount`` (UserStatus): the kill switch
    CANCEL_MARKET = 9  #: cancel up to max_matches resting orders of the market, any user's
    MARKET_LIMIT = 10  #: set the market's risk limit ``side`` (RiskLimit) to ``amount``
    #: A mass quote (docs/engine.md, "QUOTE"): ``amount`` = k, the QUOTE_LEVEL records
    #: that follow it in the batch; together they are one command.
    QUOTE = 11
    QUOTE_LEVEL = 12  #: one level of the QUOTE before it: ``side``, ``price``, ``amount``
    #: Set the user's risk limit ``side`` (RiskLimit MAX_NOTIONAL or MAX_ORDER_AMOUNT)
    #: in ``market`` to ``amount`` (docs/engine.md, "User risk limits"); an admin key's.
    USER_LIMIT = 13


class EventKind(IntEnum):
    ORDER_PUT = 1  #: a new order rests (ViaBTC's orders event 1)
    ORDER_UPDATE = 2  #: a resting order changed (partly filled, or replaced)
    ORDER_FINISH = 3  #: an order left the book or never rested
    DEAL = 4  #: one fill between a taker and a maker
    BALANCE = 5  #: a balance changed
    MARKET_STATUS = 6  #: a market's status changed (``reason`` new, ``amount`` old)
    USER_STATUS = 7  #: a user's status changed (``reason`` new, ``amount`` old)
    MARKET_LIMIT = 8  #: a market's risk limit changed (``reason`` which, ``amount`` old,
    #: ``left`` new)
    USER_LIMIT = 9  #: a user's risk limit in a market changed (``user``, ``market``,
    #: ``reason`` which, ``amount`` old, ``left`` new)


class MarketStatus(IntEnum):
    """What a market takes (MARKET_STATUS; docs/engine.md, "Market and user status")."""

    OPEN = 0  #: everything
    HALTED = 1  #: cancel-only: new orders and replaces are refused; resting orders stay
    DELISTED = 2  #: cancel-only, for good unless opened again; its orders are cancelled


class RiskLimit(IntEnum):
    """A market's risk limits, as MARKET_LIMIT names them (docs/engine.md, "Market risk
    limits"), each in engine units: the value that means "none" is 1 for the steps and
    0 for the others."""

    PRICE_STEP = 1  #: ticks
    AMOUNT_STEP = 2  #: lots
    MIN_NOTIONAL = 3  #: money units
    MAX_NOTIONAL = 4  #: money units
    MAX_OPEN_ORDERS = 5  #: resting orders per user
    PRICE_BAND = 6  #: millionths of the last deal price
    MAX_ORDER_AMOUNT = 7  #: lots


class UserStatus(IntEnum):
    """What a user may do (USER_STATUS)."""

    ACTIVE = 0
    BLOCKED = 1  #: the kill switch: new orders and replaces are refused; cancels go on


class FinishReason(IntEnum):
    NONE = 0
    FILLED = 1  #: nothing left
    CANCELED = 2  #: cancelled by its owner (cancel or cancel-all)
    EXPIRED = 3  #: IOC remainder, or a market order that ran out of book
    SELF_TRADE = 4  #: cancelled by self-trade prevention


class Business(IntEnum):
    """Reason of a BALANCE event (``reason`` field)."""

    UPDATE = 1  #: balance.update (deposit or withdrawal); asset history row
    TRADE = 2  #: a trade leg (asset given or received); history row "trade"
    FEE = 3  #: a trade fee paid; history row "trade"
    FEE_INCOME = 4  #: a trade fee credited to the fee account
    FREEZE = 5  #: available -> frozen when an order rests; no ViaBTC history row
    UNFREEZE = 6  #: frozen -> available when an order leaves the book; no row


class Result(IntEnum):
    """Outcome of a command or query, grouped by layer.

    1xxx gateway validation (including authorisation and rate limits), 2xxx balance
    and risk, 3xxx matching, 4xxx the catalog (admin), 9xxx system.
    ViaBTC's per-method numbers are in ``VIABTC_CODES``.
    """

    OK = 0
    INVALID_ARGUMENT = 1001
    UNKNOWN_MARKET = 1002
    UNKNOWN_ASSET = 1003
    FEE_ACCOUNT_CANNOT_TRADE = 1004
    FORBIDDEN = 1005  #: the client's key may not do this (daemon/auth.py)
    TOO_MANY_REQUESTS = 1006  #: the client's key is over its rate limit
    BALANCE_NOT_ENOUGH = 2001
    REPEAT_UPDATE = 2002
    SUPPLY_LIMIT = 2003
    #: PUT_*: the user already placed an order with this client id (the result's
    #: ``order_id`` is that order's)
    REPEAT_ORDER = 2004
    #: The market's pre-trade risk limits (docs/engine.md, "Market risk limits").
    PRICE_NOT_ON_STEP = 2005
    AMOUNT_NOT_ON_STEP = 2006
    NOTIONAL_TOO_SMALL = 2007
    NOTIONAL_TOO_LARGE = 2008
    TOO_MANY_OPEN_ORDERS = 2009
    #: The market's or the user's status (docs/engine.md, "Market and user status").
    MARKET_HALTED = 2010
    MARKET_DELISTED = 2011
    USER_BLOCKED = 2012
    #: A limit price too far from the market's last price (its ``price_band``).
    PRICE_OUTSIDE_BAND = 2013
    #: An order of more lots than the market's ``max_order_amount``.
    AMOUNT_TOO_LARGE = 2014
    #: The user's own risk limits in the market (docs/engine.md, "User risk limits").
    USER_AMOUNT_TOO_LARGE = 2015
    USER_NOTIONAL_TOO_LARGE = 2016
    AMOUNT_TOO_SMALL = 3001
    NO_ENOUGH_TRADER = 3002
    ORDER_NOT_FOUND = 3003
    USER_NOT_MATCH = 3004
    POST_ONLY_WOULD_TAKE = 3005
    FOK_NOT_FILLED = 3006
    BOOK_FULL = 3007
    ORDER_NOT_REPLACEABLE = 3008
    TOO_MANY_MATCHES = 3009
    #: The catalog's commands (docs/engine.md, "Adding assets and markets").
    MARKET_EXISTS = 4001
    ASSET_EXISTS = 4002
    INTERNAL_ERROR = 9001
    SERVICE_UNAVAILABLE = 9002
    USER_TABLE_FULL = 9003
    KEY_TABLE_FULL = 9004
    NOT_PRIMARY = 9005  #: this engine is a standby (or a deposed primary): it takes no writes
    TOO_FEW_REPLICAS = 9006  #: sync replication: fewer replicas than it needs are following
    CLIENT_ID_TABLE_FULL = 9007  #: the table of client order ids holds ``max_client_ids``
    #: USER_LIMIT: the user risk limit table holds ``max_user_limits`` (user, market) pairs
    USER_LIMIT_TABLE_FULL = 9008
    MARKET_TABLE_FULL = 9009  #: ADD_MARKET: the catalog holds ``max_markets``
    ASSET_TABLE_FULL = 9010  #: ADD_ASSET: the catalog holds ``max_assets``


MESSAGES: dict[Result, str] = {
    Result.OK: "ok",
    Result.INVALID_ARGUMENT: "invalid argument",
    Result.UNKNOWN_MARKET: "invalid argument: unknown market",
    Result.UNKNOWN_ASSET: "invalid argument: unknown asset",
    Result.FEE_ACCOUNT_CANNOT_TRADE: "invalid argument: the fee account cannot trade",
    Result.FORBIDDEN: "forbidden",
    Result.TOO_MANY_REQUESTS: "too many requests",
    Result.BALANCE_NOT_ENOUGH: "balance not enough",
    Result.REPEAT_UPDATE: "repeat update",
    Result.SUPPLY_LIMIT: "invalid argument: total supply of the asset would exceed its limit",
    Result.REPEAT_ORDER: "repeat order: the client id names an order already placed",
    Result.PRICE_NOT_ON_STEP: "invalid argument: price is not a multiple of price_step",
    Result.AMOUNT_NOT_ON_STEP: "invalid argument: amount is not a multiple of amount_step",
    Result.NOTIONAL_TOO_SMALL: "invalid argument: order value below min_notional",
    Result.NOTIONAL_TOO_LARGE: "invalid argument: order value above max_notional",
    Result.TOO_MANY_OPEN_ORDERS: "too many open orders: the user has max_open_orders resting",
    Result.MARKET_HALTED: "market halted: only cancels are taken",
    Result.MARKET_DELISTED: "market delisted: only cancels are taken",
    Result.USER_BLOCKED: "user blocked: only cancels are taken",
    Result.PRICE_OUTSIDE_BAND: "invalid argument: price outside the price band around the "
    "last price (before the first deal, the mid)",
    Result.AMOUNT_TOO_LARGE: "invalid argument: amount above max_order_amount",
    Result.USER_AMOUNT_TOO_LARGE: "invalid argument: amount above the user's max_order_amount",
    Result.USER_NOTIONAL_TOO_LARGE: "invalid argument: order value above the user's max_notional",
    Result.AMOUNT_TOO_SMALL: "amount too small",
    Result.NO_ENOUGH_TRADER: "no enough trader",
    Result.ORDER_NOT_FOUND: "order not found",
    Result.USER_NOT_MATCH: "user not match",
    Result.POST_ONLY_WOULD_TAKE: "post-only order would take liquidity",
    Result.FOK_NOT_FILLED: "fill-or-kill order cannot be filled completely",
    Result.BOOK_FULL: "book full",
    Result.ORDER_NOT_REPLACEABLE: "order cannot be replaced",
    Result.TOO_MANY_MATCHES: "order would reach too many resting orders",
    Result.INTERNAL_ERROR: "internal error",
    Result.SERVICE_UNAVAILABLE: "service unavailable",
    Result.USER_TABLE_FULL: "service unavailable: user table full",
    Result.KEY_TABLE_FULL: "service unavailable: idempotency key table full",
    Result.NOT_PRIMARY: "service unavailable: this engine is not the primary",
    Result.TOO_FEW_REPLICAS: "service unavailable: too few replicas are following",
    Result.CLIENT_ID_TABLE_FULL: "service unavailable: client order id table full",
    Result.USER_LIMIT_TABLE_FULL: "service unavailable: user risk limit table full",
    Result.MARKET_EXISTS: "invalid argument: a market of that name exists",
    Result.ASSET_EXISTS: "invalid argument: an asset of that name exists",
    Result.MARKET_TABLE_FULL: "service unavailable: the catalog holds max_markets markets",
    Result.ASSET_TABLE_FULL: "service unavailable: the catalog holds max_assets assets",
}

#: ViaBTC's generic codes.
VIABTC_INVALID_ARGUMENT = 1
VIABTC_INTERNAL_ERROR = 2
VIABTC_SERVICE_UNAVAILABLE = 3

#: Results that say "not now, try again" (ViaBTC's 3, service unavailable).
UNAVAILABLE: tuple[Result, ...] = (
    Result.SERVICE_UNAVAILABLE,
    Result.USER_TABLE_FULL,
    Result.KEY_TABLE_FULL,
    Result.NOT_PRIMARY,
    Result.TOO_FEW_REPLICAS,
    Result.CLIENT_ID_TABLE_FULL,
    Result.USER_LIMIT_TABLE_FULL,
    Result.MARKET_TABLE_FULL,
    Result.ASSET_TABLE_FULL,
)

#: (ViaBTC method, Result) -> ViaBTC error code, where ViaBTC has the case.
VIABTC_CODES: dict[tuple[str, Result], int] = {
    ("balance.update", Result.REPEAT_UPDATE): 10,
    ("balance.update", Result.BALANCE_NOT_ENOUGH): 11,
    ("order.put_limit", Result.BALANCE_NOT_ENOUGH): 10,
    ("order.put_limit", Result.AMOUNT_TOO_SMALL): 11,
    ("order.put_market", Result.BALANCE_NOT_ENOUGH): 10,
    ("order.put_market", Result.AMOUNT_TOO_SMALL): 11,
    ("order.put_market", Result.NO_ENOUGH_TRADER): 12,
    # matchd's client order ids (an extension: ViaBTC has none)
    ("order.put_limit", Result.REPEAT_ORDER): 13,
    ("order.put_market", Result.REPEAT_ORDER): 13,
    ("order.cancel", Result.ORDER_NOT_FOUND): 10,
    ("order.cancel", Result.USER_NOT_MATCH): 11,
}


def viabtc_code(method: str, result: Result) -> int:
    """Map an engine result to the code a ViaBTC client expects for ``method``.

    Codes ViaBTC does not have map to the generic class: 1xxx/2xxx/3xxx to 1
    (invalid argument) unless listed, 9002-9010 to 3, anything else in 9xxx to 2.
    """
    if result == Result.OK:
        return 0
    code = VIABTC_CODES.get((method, result))
    if code is not None:
        return code
    if result in UNAVAILABLE:
        return VIABTC_SERVICE_UNAVAILABLE
    if result >= 9000:
        return VIABTC_INTERNAL_ERROR
    return VIABTC_INVALID_ARGUMENT


# --------------------------------------------------------------------------- records

#: One command for the batch kernel (``Engine.execute``). 88 bytes.
#:
#: ====== ============= ====== =================================================
#: offset field         type   meaning
#: ====== ============= ====== =================================================
#: 0      ts_ns         i8     command time, Unix ns (from the caller; core has no clock)
#: 8      user          i8     user id, 0..MAX_USER_ID
#: 16     price         i8     ticks; limit price (PUT_LIMIT, REPLACE)
#: 24     amount        i8     lots; market buy: units of money; REPLACE: new ``left``;
#:                              MARKET_STATUS, USER_STATUS, *_LIMIT: the new
#:                              status or value
#: 32     order_id      i8     CANCEL, REPLACE: the order; PUT_*: the client's id of
#:                              the new order (``client_id``, 1..2**63-1; 0 = none)
#: 40     taker_rate    i4     taker fee rate, over 10**fee_prec
#: 44     maker_rate    i4     maker fee rate, over 10**fee_prec
#: 48     market        i2     market index (config order)
#: 50     kind          i1     CommandKind
#: 51     side          i1     Side; CANCEL_ALL, CANCEL_MARKET: 0 = both sides;
#:                              *_LIMIT: the RiskLimit
#: 52     tif           i1     TimeInForce
#: 53     stp           i1     StpMode
#: 54     flags         i1     OrderFlag bits
#: 55     source_len    i1     bytes used in ``source``
#: 56     source        u1[32] UTF-8, zero padded, at most SOURCE_LENGTH bytes
#: ====== ============= ====== =================================================
COMMAND_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("user", "<i8"),
        ("price", "<i8"),
        ("amount", "<i8"),
        ("order_id", "<i8"),
        ("taker_rate", "<i4"),
        ("maker_rate", "<i4"),
        ("market", "<i2"),
        ("kind", "i1"),
        ("side", "i1"),
        ("tif", "i1"),
        ("stp", "i1"),
        ("flags", "i1"),
        ("source_len", "i1"),
        ("source", "u1", (32,)),
    ]
)

#: The outcome of one command. 40 bytes.
#:
#: ====== ============ ==== ====================================================
#: 0      seq          i8   sequence number given to the command; 0 if rejected
#: 8      order_id     i8   the order created or addressed; 0 if none
#: 16     value        i8   CANCEL_ALL, CANCEL_MARKET: orders cancelled
#: 24     code         i4   Result
#: 28     event_start  i4   index of the command's first event in the batch's events
#: 32     event_count  i4   number of events of the command
#: 36     _pad         i4
#: ====== ============ ==== ====================================================
RESULT_DTYPE = np.dtype(
    [
        ("seq", "<i8"),
        ("order_id", "<i8"),
        ("value", "<i8"),
        ("code", "<i4"),
        ("event_start", "<i4"),
        ("event_count", "<i4"),
        ("_pad", "<i4"),
    ]
)

#: Work for the book half of the engine (a pair worker, docs/daemon.md): a command
#: whose account checks passed, with what the book half needs from the accounts; or,
#: with ``op`` WORK_RENAME, the real id of an order resting under a provisional id.
#: 128 bytes. Offsets 0..87 are the COMMAND_DTYPE fields of the same names.
#:
#: ====== ============= ====== =================================================
#: 0      ts_ns .. source       COMMAND_DTYPE (88 bytes); WORK_RENAME: ``market``
#:                              and ``order_id`` (the provisional id)
#: 88     dispatch      i8     the sequencer's number of this work, in dispatch order
#: 96     new_id        i8     PUT_*: the id the order gets if the book accepts it;
#:                              WORK_RENAME: the order's real id
#: 104    avail_stock   i8     REPLACE: the user's available stock units
#: 112    avail_money   i8     REPLACE: the user's available money units
#: 120    acct          i4     the user's account index (-1: the user has none)
#: 124    op            i1     WORK_COMMAND, WORK_RENAME or WORK_LIMIT
#: 125    _pad          u1[3]
#: ====== ============= ====== =================================================
WORK_DTYPE = np.dtype(
    [
        *COMMAND_DTYPE.descr,
        ("dispatch", "<i8"),
        ("new_id", "<i8"),
        ("avail_stock", "<i8"),
        ("avail_money", "<i8"),
        ("acct", "<i4"),
        ("op", "i1"),
        ("_pad", "u1", (3,)),
    ]
)
WORK_COMMAND = 0
WORK_RENAME = 1
#: A market's risk limit changed (MARKET_LIMIT, run by the sequencer): ``market``,
#: ``side`` the RiskLimit, ``amount`` the value; answered with a DONE of dispatch 0.
WORK_LIMIT = 2

#: What the book half made of one WORK_DTYPE record. 32 bytes.
#:
#: ====== ============ ==== ====================================================
#: 0      dispatch     i8   the work's ``dispatch``
#: 8      order_id     i8   the order created (its ``new_id``) or addressed; 0 if none
#: 16     value        i8   CANCEL_ALL, CANCEL_MARKET: orders cancelled
#: 24     code         i4   Result
#: 28     event_count  i4   events written (in the worker's event buffer, in order)
#: ====== ============ ==== ====================================================
DONE_DTYPE = np.dtype(
    [
        ("dispatch", "<i8"),
        ("order_id", "<i8"),
        ("value", "<i8"),
        ("code", "<i4"),
        ("event_count", "<i4"),
    ]
)

#: Order ids from here up are provisional: a pair worker rests a new order under
#: ``PROVISIONAL_ID_BASE + dispatch`` until the sequencer tells it the real id.
#: Never a real id (they count orders from 1), never accepted from a client.
PROVISIONAL_ID_BASE = 1 << 61

#: One event. A union: which fields a kind uses is listed below; unused ones are 0.
#:
#: ====== ============ ====== ===================================================
#: 0      seq          i8     sequence of the command that caused it
#: 8      ts_ns        i8     that command's time
#: 16     order_id     i8     ORDER_*: the order; DEAL: taker order; BALANCE: order or 0
#: 24     user         i8     ORDER_*: owner; DEAL: taker user; BALANCE: account user;
#:                            USER_STATUS, USER_LIMIT: the user (MARKET_*: 0)
#: 32     price        i8     ORDER_*: limit price (0 for market); DEAL: deal price
#: 40     amount       i8     ORDER_*: amount (lots; market buy: money units); DEAL: lots;
#:                            *_STATUS, *_LIMIT: the status or value before
#: 48     left         i8     ORDER_*: lots left (market buy: money); BALANCE: available after;
#:                            *_LIMIT: the value after
#: 56     deal_stock   i8     ORDER_*: lots filled; BALANCE: frozen after
#: 64     deal_money   i8     ORDER_*: money units filled; DEAL: deal money; BALANCE: change
#:                            of available
#: 72     deal_fee     i8     ORDER_*: fee paid (units of its fee asset); DEAL: taker fee;
#:                            BALANCE: change of frozen
#: 80     ctime_ns     i8     ORDER_*: creation time; BALANCE: business_id (UPDATE)
#: 88     deal_id      i8     DEAL: deal id; BALANCE: deal id for TRADE/FEE/FEE_INCOME
#: 96     maker_order  i8     DEAL: maker order id
#: 104    maker_user   i8     DEAL: maker user
#: 112    maker_fee    i8     DEAL: maker fee (units of the maker's fee asset)
#: 120    taker_rate   i4     ORDER_*: taker fee rate
#: 124    maker_rate   i4     ORDER_*: maker fee rate
#: 128    market       i2     market index; -1 for balance.update and USER_STATUS
#: 130    asset        i2     BALANCE: asset index
#: 132    kind         i1     EventKind
#: 133    reason       i1     ORDER_FINISH: FinishReason; BALANCE: Business; *_STATUS:
#:                            the new status; *_LIMIT: the RiskLimit
#: 134    side         i1     ORDER_*: side; DEAL: taker side
#: 135    otype        i1     ORDER_*: OrderType
#: 136    tif          i1     ORDER_*: TimeInForce
#: 137    stp          i1     ORDER_*: StpMode
#: 138    flags        i1     ORDER_*: OrderFlag bits
#: 139    source_len   i1     ORDER_*: bytes used in source
#: 140    source       u1[32] ORDER_*: source tag
#: ====== ============ ====== ===================================================
#:
#: 172    mtime_ns     i8     ORDER_*: the order's mtime as reported (a cancelled order
#:                            is reported as it stood, so its mtime is not the cancel's)
#:
#: 180    _pad         u4     0
#:
#: Size 184 bytes: whole 8-byte words, so that the log packs an event as words
#: (persistence/frames.py) and every int64 field of an event array stays aligned.
EVENT_DTYPE = np.dtype(
    [
        ("seq", "<i8"),
        ("ts_ns", "<i8"),
        ("order_id", "<i8"),
        ("user", "<i8"),
        ("price", "<i8"),
        ("amount", "<i8"),
        ("left", "<i8"),
        ("deal_stock", "<i8"),
        ("deal_money", "<i8"),
        ("deal_fee", "<i8"),
        ("ctime_ns", "<i8"),
        ("deal_id", "<i8"),
        ("maker_order", "<i8"),
        ("maker_user", "<i8"),
        ("maker_fee", "<i8"),
        ("taker_rate", "<i4"),
        ("maker_rate", "<i4"),
        ("market", "<i2"),
        ("asset", "<i2"),
        ("kind", "i1"),
        ("reason", "i1"),
        ("side", "i1"),
        ("otype", "i1"),
        ("tif", "i1"),
        ("stp", "i1"),
        ("flags", "i1"),
        ("source_len", "i1"),
        ("source", "u1", (32,)),
        ("mtime_ns", "<i8"),
        ("_pad", "<u4"),
    ]
)

#: A resting order in a market's pool: its hot record, one 64-byte cache line, holding
#: everything the matcher reads or writes while it walks a level and fills a maker.
#:
#: ====== ============ ====== ===================================================
#: 0      id           i8     order id (0 = free slot)
#: 8      price        i8     ticks
#: 16     left         i8     lots still open (a market bid being matched: money units)
#: 24     deal_money   i8     money units filled
#: 32     deal_fee     i8     fee paid, units of the fee asset (ask: money, bid: stock)
#: 40     next         i4     next order in the level's FIFO (-1 none); free list link
#: 44     prev         i4     previous order in the level's FIFO (-1 none)
#: 48     level        i4     index of its price level in the market's level pool
#: 52     acct         i4     the owner's account index (the user id is the account's)
#: 56     maker_rate   i4     maker fee rate, over 10**fee_prec
#: 60     side         i1
#: 61     stp          i1
#: 62     flags        i1     OrderFlag bits, and ORDER_FLAG_MARKET for a market taker
#: 63     tif          i1
#: ====== ============ ====== ===================================================
#:
#: The frozen reserve is not stored: it is ``left * stock_scale`` units of stock for an
#: ask and ``price * left * deal_scale`` units of money for a bid, exactly.
ORDER_DTYPE = np.dtype(
    [
        ("id", "<i8"),
        ("price", "<i8"),
        ("left", "<i8"),
        ("deal_money", "<i8"),
        ("deal_fee", "<i8"),
        ("next", "<i4"),
        ("prev", "<i4"),
        ("level", "<i4"),
        ("acct", "<i4"),
        ("maker_rate", "<i4"),
        ("side", "i1"),
        ("stp", "i1"),
        ("flags", "i1"),
        ("tif", "i1"),
    ]
)

#: Set in a pool record's ``flags`` while a market order is the taker (a resting order
#: is always a limit order); reported as ``otype``, never as a flag.
ORDER_FLAG_MARKET = 0x40

#: The rest of an order, beside the pool slot for slot: what only events, queries and
#: the per-user list read. 40 bytes.
#:
#: ====== ============ ====== ===================================================
#: 0      amount       i8     lots (total, including what is filled)
#: 8      ctime_ns     i8
#: 16     mtime_ns     i8
#: 24     taker_rate   i4     taker fee rate, over 10**fee_prec
#: 28     unext        i4     next (older) order of the same user in this market
#: 32     uprev        i4     previous (newer) order of the same user in this market
#: 36     source       i4     interned source tag (0 = the empty tag)
#: ====== ============ ====== ===================================================
#:
#: With the id index (4 bytes a slot, at most half full) a resting order costs 104 to
#: 120 bytes in all, plus its source tag's 48 bytes only if no other live order shares
#: the tag (docs/engine.md, "Memory").
ORDER_INFO_DTYPE = np.dtype(
    [
        ("amount", "<i8"),
        ("ctime_ns", "<i8"),
        ("mtime_ns", "<i8"),
        ("taker_rate", "<i4"),
        ("unext", "<i4"),
        ("uprev", "<i4"),
        ("source", "<i4"),
    ]
)

#: A price level in a market's level pool. 32 bytes.
#:
#: 0 price i8 (ticks), 8 total i8 (lots left, summed), 16 count i4, 20 head i4,
#: 24 tail i4 (FIFO of orders; head is the oldest), 28 next_free i4.
LEVEL_DTYPE = np.dtype(
    [
        ("price", "<i8"),
        ("total", "<i8"),
        ("count", "<i4"),
        ("head", "<i4"),
        ("tail", "<i4"),
        ("next_free", "<i4"),
    ]
)

#: A kline bucket of one market at one base interval (feed/klines.py). 72 bytes.
#:
#: ====== ============ ====== ===================================================
#: 0      start        i8     Unix seconds: the bucket's first second
#: 8      open         i8     ticks: the price of its first deal (log order)
#: 16     close        i8     ticks: the price of its last deal
#: 24     high         i8     ticks
#: 32     low          i8     ticks
#: 40     volume_hi    i8     volume (lots, summed) = volume_hi * 2**31 + volume_lo:
#: 48     volume_lo    i8     sums of int64 amounts need more than 63 bits
#: 56     deal_hi      i8     deal (money units, summed) = deal_hi * 2**31 + deal_lo
#: 64     deal_lo      i8     (0 <= *_lo < 2**31 between updates)
#: ====== ============ ====== ===================================================
KLINE_DTYPE = np.dtype(
    [
        ("start", "<i8"),
        ("open", "<i8"),
        ("close", "<i8"),
        ("high", "<i8"),
        ("low", "<i8"),
        ("volume_hi", "<i8"),
        ("volume_lo", "<i8"),
        ("deal_hi", "<i8"),
        ("deal_lo", "<i8"),
    ]
)
#: The split of a wide sum: low words hold this many bits.
WIDE_SHIFT = 31

#: Global counters, one int64 each, at these indexes of the ``counters`` array.
COUNTER_SEQ = 0
COUNTER_ORDER_ID = 1
COUNTER_DEAL_ID = 2
COUNTER_ACCOUNTS = 3  #: accounts in use (numba engine)
COUNTER_KEYS = 4  #: update keys in use (numba engine)
COUNTER_CLIENT_IDS = 5  #: client order ids in use (numba engine)
COUNTER_USER_LIMITS = 6  #: (user, market) pairs in the user risk limit table (numba engine)
COUNTER_ASSETS = 7  #: assets in the catalog (numba engine)
COUNTER_MARKETS = 8  #: markets in the catalog (numba engine)
COUNTERS_LENGTH = 16


#: One asset of the catalog, as the engine's state holds it (``asset_table``). 32 bytes.
#: The name's bytes, NUL-padded; the scales as in ``core.config.Asset``.
ASSET_ROW_DTYPE = np.dtype([("name", "S16"), ("prec", "<i8"), ("prec_show", "<i8")])
#: One market of the catalog (``market_table``), beside its parameter row: what the
#: parameters do not hold, and the risk limits its table set (RiskLimit order; the
#: parameter row holds those it has now). 128 bytes.
MARKET_ROW_DTYPE = np.dtype(
    [
        ("name", "S32"),
        ("stock_prec", "<i8"),
        ("money_prec", "<i8"),
        ("fee_prec", "<i8"),
        ("table_limits", "<i8", (7,)),
        ("reserved", "<i8", (2,)),
    ]
)
