"""The replies of the wire format (docs/protocol.md, "CALLS and REPLIES"): the reply
envelope of every call, the result type each call gets, and how the results of
written commands are read from their RESULT (and EVENT) records."""

from __future__ import annotations

from typing import Any, Final

import msgspec
import numpy as np

from core.schema import (
    MESSAGES,
    UNAVAILABLE,
    VIABTC_CODES,
    CommandKind,
    EventKind,
    Result,
    viabtc_code,
)
from ipc.wire_calls import (
    AssetInfo,
    AssetList,
    AssetSummary,
    AssetSummaryCall,
    Balance,
    BalanceQuery,
    BalanceUpdate,
    Call,
    Cancel,
    CancelAll,
    CommandDone,
    Depth,
    MarketCancelOrders,
    MarketInfo,
    MarketList,
    MarketSetLimit,
    MarketSetStatus,
    MarketSummary,
    MarketSummaryCall,
    Order,
    OrderBook,
    OrderDepth,
    OrderDetail,
    OrderPending,
    Page,
    Promoted,
    PutLimit,
    PutMarket,
    Replace,
    ServerPromote,
    ServerSnapshot,
    ServerStatus,
    SnapshotDone,
    Status,
    UserLimits,
    UserLimitsCall,
    UserSetLimit,
    UserSetStatus,
)
from ipc.wire_catalog import AssetAdd, MarketAdd
from ipc.wire_header import WireError
from ipc.wire_quote import Quote, QuoteDone, quote_done

#: The order calls (a trade key's, for its users) and the admin calls (an admin key's).
ORDER_CALLS: Final = (PutLimit, PutMarket, Cancel, Replace, CancelAll, Quote)
ADMIN_CALLS: Final = (
    MarketSetStatus, UserSetStatus, MarketCancelOrders, MarketSetLimit, UserSetLimit,
)  # fmt: skip
#: The calls that add to the catalog (an admin key's; ``ipc.wire_catalog``).
CATALOG_CALLS: Final = (AssetAdd, MarketAdd)
AnyCall = (
    PutLimit | PutMarket | Cancel | Replace | CancelAll | BalanceUpdate | BalanceQuery
    | OrderDetail | OrderPending | OrderBook | OrderDepth | MarketList | MarketSummaryCall
    | AssetList | AssetSummaryCall | ServerStatus | ServerSnapshot | ServerPromote
    | MarketSetStatus | UserSetStatus | MarketCancelOrders | MarketSetLimit | Quote
    | UserSetLimit | UserLimitsCall | AssetAdd | MarketAdd
)  # fmt: skip

#: The type of a successful reply's ``result`` for each call.
RESULT_TYPES: Final[dict[type[Call], Any]] = {
    **dict.fromkeys(ORDER_CALLS, CommandDone),
    **dict.fromkeys(ADMIN_CALLS, CommandDone),
    **dict.fromkeys(CATALOG_CALLS, CommandDone),
    BalanceUpdate: CommandDone,
    BalanceQuery: list[Balance],
    OrderDetail: Order | None,
    OrderPending: Page,
    OrderBook: Page,
    OrderDepth: Depth,
    MarketList: list[MarketInfo],
    UserLimitsCall: UserLimits,
    MarketSummaryCall: list[MarketSummary],
    AssetList: list[AssetInfo],
    AssetSummaryCall: list[AssetSummary],
    ServerStatus: Status,
    ServerSnapshot: SnapshotDone,
    ServerPromote: Promoted,
    Quote: QuoteDone,
}


class Reply(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The answer to one call: engine ``code`` (0 = ok), ViaBTC's code and the result.

    ``result`` is the ``RESULT_TYPES`` value of the call on success, else None. A
    decoded reply holds it as ``msgspec.Raw``: ``result_as`` gives it its type.
    ``order_id`` is, for a REPEAT_ORDER refusal of a put, the order that the put's
    client id already names (placed by an earlier put); 0 for any other reply.
    """

    code: int
    message: str = ""
    viabtc: int = 0
    result: Any = None
    order_id: int = 0

    @property
    def ok(self) -> bool:
        return self.code == 0

    def result_as(self, call: Call | type[Call]) -> Any:
        """The result decoded as the type ``RESULT_TYPES`` gives for ``call``; None for
        an error reply."""
        tp = RESULT_TYPES[call if isinstance(call, type) else type(call)]
        if not self.ok:
            return None
        if not isinstance(self.result, msgspec.Raw):
            return msgspec.convert(self.result, tp)
        try:
            return msgspec.msgpack.decode(self.result, type=tp)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise WireError(f"reply result: {exc}") from exc


class RawReply(Reply, frozen=True):
    result: msgspec.Raw = msgspec.Raw()


class ErrorBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: int
    message: str


def op_of(call: Call | type[Call]) -> str:
    """The ``op`` tag (JSON-RPC method name) of a call."""
    cls = call if isinstance(call, type) else type(call)
    return str(cls.__struct_config__.tag)


def make_reply(
    call: Call | None, code: Result, result: Any = None, message: str = "", *, order_id: int = 0
) -> Reply:
    """The reply to ``call`` (None: a call that did not decode) with ViaBTC's code.

    ``order_id`` is the refused command's RESULT ``order_id``; the reply keeps it only
    for REPEAT_ORDER (the order the client id names), so a caller may pass it for any
    refusal.
    """
    op = "" if call is None else op_of(call)
    text = message or MESSAGES[code]
    original = order_id if code == Result.REPEAT_ORDER else 0
    return Reply(
        int(code), "" if code == Result.OK else text, viabtc_code(op, code), result, original
    )


def command_done(result: np.void, events: np.ndarray, *, with_events: bool = False) -> CommandDone:
    """The CommandDone of an accepted command from its RESULT record and the batch events.

    ``order`` is the command's own order as its last ORDER_* event reports it (as
    JSON-RPC's order object).
    """
    start, count = int(result["event_start"]), int(result["event_count"])
    own = events[start : start + count]
    order_id = int(result["order_id"])
    mine = own[(own["kind"] <= EventKind.ORDER_FINISH) & (own["order_id"] == order_id)]
    order = Order.from_event(mine[-1]) if order_id and len(mine) else None
    raw = own.tobytes() if with_events else None
    return CommandDone(int(result["seq"]), order_id, int(result["value"]), order, raw)


def write_done(
    call: Call, results: np.ndarray, events: np.ndarray, *, with_events: bool = False
) -> CommandDone | QuoteDone:
    """The result of a write call (an order, admin, catalog or balance.update call)
    that the engine accepted, from the RESULT records of its command (one; a quote's
    k + 1, by position) and the batch's events: a ``QuoteDone`` for a ``Quote``, else
    the ``CommandDone`` of ``command_done``."""
    if isinstance(call, Quote):
        return quote_done(call.record(), results, events, with_events=with_events)
    return command_done(results[0], events, with_events=with_events)


#: The JSON-RPC method of each order command kind, for ViaBTC's codes.
METHODS: Final = {
    CommandKind.PUT_LIMIT: "order.put_limit",
    CommandKind.PUT_MARKET: "order.put_market",
    CommandKind.CANCEL: "order.cancel",
    CommandKind.REPLACE: "order.replace",
    CommandKind.CANCEL_ALL: "order.cancel_all",
    CommandKind.MARKET_STATUS: "market.set_status",
    CommandKind.USER_STATUS: "user.set_status",
    CommandKind.CANCEL_MARKET: "market.cancel_orders",
    CommandKind.MARKET_LIMIT: "market.set_limit",
    CommandKind.USER_LIMIT: "user.set_limit",
    CommandKind.QUOTE: "order.quote",
    CommandKind.QUOTE_LEVEL: "order.quote",
}
_KIND_OF: Final = {method: kind for kind, method in METHODS.items()}


def viabtc_codes(commands: np.ndarray, results: np.ndarray) -> np.ndarray:
    """ViaBTC's code for each result (as ``core.schema.viabtc_code``), vectorized."""
    codes = results["code"]
    out = np.full(len(codes), 1, dtype=np.int32)
    out[codes == Result.OK] = 0
    out[codes >= 9000] = 2  # the 9xxx system class
    out[np.isin(codes, UNAVAILABLE)] = 3
    for (method, result), code in VIABTC_CODES.items():
        kind = _KIND_OF.get(method)
        if kind is not None:
            out[(commands["kind"] == kind) & (codes == result)] = code
    return out
