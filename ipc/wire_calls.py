"""The msgpack calls of the wire format (docs/protocol.md): one typed msgspec Struct
per operation, tagged by its ``op`` (the JSON-RPC method name), and the result
Structs that replies carry. The mass quote's call and result are in
``ipc.wire_quote``, the catalog's calls (``asset.add``, ``market.add``) in
``ipc.wire_catalog``; the reply envelope, and which result each call gets, in
``ipc.wire_replies``."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, cast

import msgspec
import numpy as np

from core import commands as build
from core.config import Asset, Market
from core.schema import (
    INT64_MAX,
    MAX_USER_ID,
    SCHEMA_VERSION,
    SOURCE_LENGTH,
    MarketStatus,
    UserStatus,
)
from core.viabtc import MAX_QUERY_LIMIT
from core.views import OrderView
from ipc.market_limits import RISK_LIMITS, LimitName, UserLimitName, limit_name, user_limit_name
from ipc.wire_header import WIRE_VERSION

# --------------------------------------------------------------------------- calls

I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=INT64_MAX)]
I32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
I16 = Annotated[int, msgspec.Meta(ge=-(2**15), le=2**15 - 1)]
I8 = Annotated[int, msgspec.Meta(ge=-128, le=127)]
UserId = Annotated[int, msgspec.Meta(ge=0, le=MAX_USER_ID)]
Index = Annotated[int, msgspec.Meta(ge=0, le=2**15 - 1)]
OrderId = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
#: A risk limit's value in engine units (docs/engine.md, "Market risk limits").
LimitValue = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
#: A client's own id for a new order: 1..2**63-1, 0 = none (docs/protocol.md).
ClientId = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=2**31)]
Limit = Annotated[int, msgspec.Meta(ge=0, le=MAX_QUERY_LIMIT)]
Side12 = Annotated[int, msgspec.Meta(ge=1, le=2)]
#: A side or both: 0 both, 1 asks, 2 bids.
Side012 = Annotated[int, msgspec.Meta(ge=0, le=2)]
Business = Annotated[str, msgspec.Meta(max_length=255)]
_DETAIL_DEPTH = 16


class Call(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="op"):
    """One operation in a CALLS frame; ``op`` (the tag) is its JSON-RPC method name."""


class OrderCall(Call, frozen=True):
    """A journaled engine command: ``record()`` is its COMMAND_DTYPE record (a mass
    quote's: its k + 1 records, one command), which the server runs as it runs binary
    records. An order call's fields are the record's fields of the same name (a put's
    ``client_id`` travels in ``order_id``); an ``AdminCall``'s are named in its
    docstring."""

    def record(self) -> np.ndarray:
        """The COMMAND_DTYPE records of this call (``ts_ns`` 0): one element, or a
        mass quote's k + 1."""
        raise NotImplementedError

    def _check_source(self, source: str) -> None:
        if len(source.encode()) > SOURCE_LENGTH:
            raise ValueError(f"source must be at most {SOURCE_LENGTH} bytes of UTF-8")


class PutLimit(OrderCall, frozen=True, tag="order.put_limit"):
    """A limit order; ``client_id`` (0 = none) is the client's own id for it: once an
    order of the user was placed with it, a later put of the user with the same id is
    refused REPEAT_ORDER, naming that order (a safe retry)."""

    user: I64
    market: I16
    side: I8
    amount: I64
    price: I64
    taker_rate: I32 = 0
    maker_rate: I32 = 0
    tif: I8 = 0
    stp: I8 = 0
    flags: I8 = 0
    source: str = ""
    client_id: ClientId = 0

    def __post_init__(self) -> None:
        self._check_source(self.source)

    def record(self) -> np.ndarray:
        return build.put_limit(
            self.user, self.market, self.side, self.amount, self.price, self.taker_rate,
            self.maker_rate, tif=self.tif, stp=self.stp, flags=self.flags,
            source=self.source.encode(), client_id=self.client_id,
        )  # fmt: skip


class PutMarket(OrderCall, frozen=True, tag="order.put_market"):
    """A market order; ``client_id`` as for ``PutLimit``."""

    user: I64
    market: I16
    side: I8
    amount: I64
    taker_rate: I32 = 0
    stp: I8 = 0
    source: str = ""
    client_id: ClientId = 0

    def __post_init__(self) -> None:
        self._check_source(self.source)

    def record(self) -> np.ndarray:
        return build.put_market(
            self.user, self.market, self.side, self.amount, self.taker_rate, stp=self.stp,
            source=self.source.encode(), client_id=self.client_id,
        )  # fmt: skip


class Cancel(OrderCall, frozen=True, tag="order.cancel"):
    user: I64
    market: I16
    order_id: I64

    def record(self) -> np.ndarray:
        return build.cancel(self.user, self.market, self.order_id)


class Replace(OrderCall, frozen=True, tag="order.replace"):
    user: I64
    market: I16
    order_id: I64
    price: I64
    left: I64

    def record(self) -> np.ndarray:
        return build.replace(self.user, self.market, self.order_id, self.price, self.left)


class CancelAll(OrderCall, frozen=True, tag="order.cancel_all"):
    user: I64
    market: I16
    side: I8 = 0

    def record(self) -> np.ndarray:
        return build.cancel_all(self.user, self.market, self.side)


# --------------------------------------------------------------------------- admin calls

#: The wire's names of the market statuses (``core.schema.MarketStatus``) and the
#: user statuses (``UserStatus``), and back.
MARKET_STATUS_NAMES: Final = {
    MarketStatus.OPEN: "open",
    MarketStatus.HALTED: "halted",
    MarketStatus.DELISTED: "delisted",
}
USER_STATUS_NAMES: Final = {UserStatus.ACTIVE: "active", UserStatus.BLOCKED: "blocked"}
MARKET_STATUSES: Final = {name: status for status, name in MARKET_STATUS_NAMES.items()}
USER_STATUSES: Final = {name: status for status, name in USER_STATUS_NAMES.items()}
MarketStatusName = Literal["open", "halted", "delisted"]
UserStatusName = Literal["active", "blocked"]


def market_status_name(status: MarketStatus | int | str) -> MarketStatusName:
    """The wire's name of a market status given as a ``MarketStatus`` or its name;
    ``ValueError`` for anything else."""
    if isinstance(status, str):
        if status in MARKET_STATUSES:
            return cast(MarketStatusName, status)
    elif not isinstance(status, bool) and status in MARKET_STATUS_NAMES:
        return cast(MarketStatusName, MARKET_STATUS_NAMES[MarketStatus(status)])
    names = ", ".join(MARKET_STATUSES)
    raise ValueError(f"market status {status!r} is none of {names}")


def user_status_name(status: UserStatus | int | str) -> UserStatusName:
    """As ``market_status_name``, for a user status."""
    if isinstance(status, str):
        if status in USER_STATUSES:
            return cast(UserStatusName, status)
    elif not isinstance(status, bool) and status in USER_STATUS_NAMES:
        return cast(UserStatusName, USER_STATUS_NAMES[UserStatus(status)])
    raise ValueError(f"user status {status!r} is none of {', '.join(USER_STATUSES)}")


class AdminCall(OrderCall, frozen=True):
    """A market operation: a journaled command that only an admin key may send
    (docs/protocol.md, "Market operations"). Each is one command; halting, delisting
    and the kill switch are compositions of them (``ipc.market_ops``); a risk limit
    is changed by one (``MarketSetLimit``, and a user's own ``UserSetLimit``)."""


class MarketSetStatus(AdminCall, frozen=True, tag="market.set_status"):
    """Set a market's status (MARKET_STATUS; ``status`` goes in ``amount``): "open",
    "halted" (cancel-only) or "delisted" (cancel-only; its orders are to be
    cancelled). Already so: OK with seq 0, nothing changes."""

    market: I16
    status: MarketStatusName

    def __post_init__(self) -> None:
        market_status_name(self.status)  # a value built in Python is checked too

    def record(self) -> np.ndarray:
        return build.market_status(self.market, MARKET_STATUSES[self.status])


class UserSetStatus(AdminCall, frozen=True, tag="user.set_status"):
    """Set a user's status (USER_STATUS; ``status`` goes in ``amount``): "active" or
    "blocked" (puts and replaces are refused USER_BLOCKED; cancels go on)."""

    user: UserId
    status: UserStatusName

    def __post_init__(self) -> None:
        user_status_name(self.status)

    def record(self) -> np.ndarray:
        return build.user_status(self.user, USER_STATUSES[self.status])


class MarketCancelOrders(AdminCall, frozen=True, tag="market.cancel_orders"):
    """Cancel resting orders of every user in a market (CANCEL_MARKET): at most
    ``engine.max_matches`` per call, best price first, asks before bids; ``side`` 0
    both, 1 asks, 2 bids. The result's ``value`` counts them: repeat until it is 0."""

    market: I16
    side: Side012 = 0

    def record(self) -> np.ndarray:
        return build.cancel_market(self.market, self.side)


class MarketSetLimit(AdminCall, frozen=True, tag="market.set_limit"):
    """Set one of a market's risk limits (MARKET_LIMIT; ``limit`` goes in ``side`` as
    its ``RiskLimit``, ``value`` in ``amount``): ``limit`` is a name of
    ``ipc.market_limits.LIMIT_NAMES``, ``value`` engine units (ticks, lots, money
    units, orders, millionths of the last price; no limit: 1 for the steps, 0 for the
    others). The engine refuses a value out of range INVALID_ARGUMENT; the value it
    has: OK with seq 0, nothing changes. ``ipc.market_limits.limit_value`` converts
    decimal text."""

    market: I16
    limit: LimitName
    value: LimitValue

    def __post_init__(self) -> None:
        limit_name(self.limit)  # a value built in Python is checked too
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 0:
            raise ValueError(f"value {self.value!r} must be an int >= 0 (engine units)")

    def record(self) -> np.ndarray:
        return build.market_limit(self.market, RISK_LIMITS[self.limit], self.value)


class UserSetLimit(AdminCall, frozen=True, tag="user.set_limit"):
    """Set one of a user's own risk limits in a market (USER_LIMIT; ``limit`` goes in
    ``side`` as its ``RiskLimit``, ``value`` in ``amount``; docs/engine.md, "User risk
    limits"): ``limit`` is "max_order_amount" (lots) or "max_notional" (money units),
    ``value`` engine units, 0 for none. They tighten the market's limits, never
    loosen them. The engine refuses a value out of range INVALID_ARGUMENT, the fee
    account FEE_ACCOUNT_CANNOT_TRADE, a new (user, market) pair when its table is
    full USER_LIMIT_TABLE_FULL; the value it has: OK with seq 0, nothing changes.
    ``ipc.market_limits.limit_value`` converts decimal text."""

    user: UserId
    market: I16
    limit: UserLimitName
    value: LimitValue

    def __post_init__(self) -> None:
        user_limit_name(self.limit)  # a value built in Python is checked too
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 0:
            raise ValueError(f"value {self.value!r} must be an int >= 0 (engine units)")

    def record(self) -> np.ndarray:
        return build.user_limit(self.user, self.market, RISK_LIMITS[self.limit], self.value)


def _check_json(value: Any, depth: int = 0) -> None:
    """``value`` is plain JSON (str keys; no bin, ext or non-finite float), not too deep."""
    if depth > _DETAIL_DEPTH:
        raise ValueError(f"detail is nested deeper than {_DETAIL_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("detail keys must be strings")
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("detail numbers must be finite")
    elif value is not None and not isinstance(value, str | int | bool):
        raise ValueError(f"detail holds a {type(value).__name__}, which is not JSON")


class BalanceUpdate(Call, frozen=True, tag="balance.update"):
    """Deposit (change > 0) or withdraw; ``detail`` is ViaBTC's JSON object."""

    user: I64
    asset: I16
    business: Business
    business_id: I64
    change: I64
    detail: dict[str, Any] = {}

    def __post_init__(self) -> None:
        _check_json(self.detail)


class BalanceQuery(Call, frozen=True, tag="balance.query"):
    user: Annotated[int, msgspec.Meta(ge=1, le=MAX_USER_ID)]
    assets: list[Index] = []


class OrderDetail(Call, frozen=True, tag="order.pending_detail"):
    market: I16
    order_id: OrderId


class OrderPending(Call, frozen=True, tag="order.pending"):
    user: UserId
    market: I16
    offset: Offset = 0
    limit: Limit = MAX_QUERY_LIMIT


class OrderBook(Call, frozen=True, tag="order.book"):
    market: I16
    side: Side12
    offset: Offset = 0
    limit: Limit = MAX_QUERY_LIMIT


class OrderDepth(Call, frozen=True, tag="order.depth"):
    market: I16
    limit: Limit = MAX_QUERY_LIMIT
    interval: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)] = 0


class MarketList(Call, frozen=True, tag="market.list"):
    pass


class UserLimitsCall(Call, frozen=True, tag="user.limits"):
    """A user's own risk limits in a market (``UserLimits``; all 0 when none is set,
    or for a market the engine does not have)."""

    user: UserId
    market: I16


class MarketSummaryCall(Call, frozen=True, tag="market.summary"):
    markets: list[Index] = []


class AssetList(Call, frozen=True, tag="asset.list"):
    pass


class AssetSummaryCall(Call, frozen=True, tag="asset.summary"):
    assets: list[Index] = []


class ServerStatus(Call, frozen=True, tag="server.status"):
    pass


class ServerSnapshot(Call, frozen=True, tag="server.snapshot"):
    pass


class ServerPromote(Call, frozen=True, tag="server.promote"):
    """Make a standby the primary of a new epoch (docs/operations.md)."""


# --------------------------------------------------------------------------- results


class Order(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An order, in integer units (``core.views.OrderView``)."""

    id: int
    market: int
    user: int
    side: int
    otype: int
    price: int
    amount: int
    left: int
    deal_stock: int
    deal_money: int
    deal_fee: int
    taker_rate: int
    maker_rate: int
    ctime_ns: int
    mtime_ns: int
    tif: int
    stp: int
    flags: int
    source: str

    @classmethod
    def from_view(cls, view: OrderView) -> Order:
        """The wire form of an engine query's order."""
        return cls(**{f: getattr(view, f) for f in cls.__struct_fields__})

    @classmethod
    def from_event(cls, ev: np.void) -> Order:
        """The order an ORDER_* event reports."""
        fields = {f: int(ev[f]) for f in cls.__struct_fields__ if f not in ("id", "source")}
        source = bytes(ev["source"][: int(ev["source_len"])]).decode(errors="replace")
        return cls(id=int(ev["order_id"]), source=source, **fields)


class CommandDone(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The outcome of an order call, an admin call, a catalog call or a
    balance.update that the engine accepted.

    ``order`` is the order as JSON-RPC returns it (None for cancel_all,
    balance.update, the admin and the catalog calls); ``value`` is the count of
    cancel_all and market.cancel_orders, and the new index of asset.add and
    market.add; ``seq`` is 0 for a status or limit call that changed nothing (the
    status or value was already so); ``events`` holds the command's EVENT_DTYPE
    records when the CALLS frame had the EVENTS flag.
    """

    seq: int
    order_id: int = 0
    value: int = 0
    order: Order | None = None
    events: bytes | None = None


class Balance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    asset: int
    available: int  #: units of the asset at ``prec`` (ViaBTC shows them cut to prec_show)
    freeze: int


class Page(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    offset: int
    limit: int
    total: int
    orders: list[Order]


class Depth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    asks: list[tuple[int, int]]  #: (price ticks, lots), best first
    bids: list[tuple[int, int]]


class MarketInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index: int
    name: str
    stock: int  #: asset index
    money: int  #: asset index
    stock_prec: int
    money_prec: int
    fee_prec: int
    min_amount: int  #: lots
    max_amount: int  #: lots
    max_price: int  #: ticks
    #: "open", "halted" or "delisted" (``MARKET_STATUS_NAMES``; wire version 3).
    status: str = "open"
    #: The market's risk limits as they are now (docs/engine.md, "Market risk limits";
    #: version 3): the config sets them, ``market.set_limit`` changes them.
    price_step: int = 1  #: ticks (1: any price)
    amount_step: int = 1  #: lots (1: any amount)
    min_notional: int = 0  #: money units (0: none)
    max_notional: int = 0  #: money units (0: none)
    max_open_orders: int = 0  #: resting orders per user (0: none)
    price_band: int = 0  #: millionths of the last deal price (0: none)
    max_order_amount: int = 0  #: lots (0: none; wire version 4)

    @classmethod
    def from_market(cls, m: Market, status: MarketStatus | int = MarketStatus.OPEN) -> MarketInfo:
        """The market ``m`` (a config's, or ``Engine.current_market``'s with the limits
        it has now), in the status given (the engine's)."""
        return cls(
            m.index, m.name, m.stock.index, m.money.index, m.stock_prec, m.money_prec,
            m.fee_prec, m.min_amount, m.max_amount, m.max_price, market_status_name(status),
            m.price_step, m.amount_step, m.min_notional, m.max_notional, m.max_open_orders,
            m.price_band, m.max_order_amount,
        )  # fmt: skip


class UserLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A user's own risk limits in a market as they are now (``user.set_limit`` sets
    them; docs/engine.md, "User risk limits"; wire version 4)."""

    user: int
    market: int
    max_order_amount: int = 0  #: lots (0: none)
    max_notional: int = 0  #: money units (0: none)


class AssetInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index: int
    name: str
    prec: int
    prec_show: int

    @classmethod
    def from_asset(cls, a: Asset) -> AssetInfo:
        return cls(a.index, a.name, a.prec, a.prec_show)


class MarketSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    market: int
    ask_count: int
    ask_amount: int  #: lots
    bid_count: int
    bid_amount: int


class AssetSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    asset: int
    total_balance: int
    available_count: int
    available_balance: int
    freeze_count: int
    freeze_balance: int


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seq: int
    last_order_id: int
    last_deal_id: int
    wire_version: int = WIRE_VERSION
    schema_version: int = SCHEMA_VERSION
    #: Every change up to this sequence is in the log.
    durable_seq: int = 0
    #: The log's consumers (the MySQL drainer "mysql", ...) and the sequence each has
    #: applied: ``durable_seq - position`` is its lag in records.
    consumers: dict[str, int] = msgspec.field(default_factory=dict)
    #: "primary", "standby" or "deposed" (a primary that heard of a newer epoch: it
    #: takes no writes); an engine without ``[replication]`` is a primary.
    role: str = "primary"
    #: The highest replication epoch this engine knows (0: never promoted).
    epoch: int = 0
    #: A primary: each standby's node name and the sequence durable there. A
    #: standby: its primary's name and the primary's durable sequence as last heard.
    replication: dict[str, int] = msgspec.field(default_factory=dict)


class Promoted(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    epoch: int  #: the epoch this engine is the primary of
    seq: int  #: its log's end when promoted: its first write is seq + 1


class SnapshotDone(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seq: int  #: the snapshot holds the state after this sequence
    state_hash: str
