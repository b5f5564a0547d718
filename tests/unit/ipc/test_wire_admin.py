"""The admin calls of wire versions 3 and 4 (docs/protocol.md, "Market operations"):
market.set_status, user.set_status, market.cancel_orders, market.set_limit and
user.set_limit round trip, build the records ``core.commands`` builds, and refuse bad
statuses, sides, users, limits, values and unknown fields with a message naming the
field; MarketInfo carries the market's status and risk limits; user.limits reads a
user's own."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from core import commands
from core.schema import (
    MAX_USER_ID,
    RESULT_DTYPE,
    CommandKind,
    MarketStatus,
    Result,
    RiskLimit,
    UserStatus,
    viabtc_code,
)
from ipc import wire
from ipc.market_limits import LIMIT_NAMES
from ipc.wire import FrameKind
from tests.support.scenario import make_config

RID = 77


def calls_frame(*calls: dict[str, Any]) -> bytes:
    """A CALLS frame of raw call maps (what any client may send)."""
    body = msgspec.msgpack.encode(list(calls))
    head = wire.HEADER.pack(
        b"MDWP", wire.WIRE_VERSION, FrameKind.CALLS, 0, len(calls), 0, 0, RID, len(body), 0
    )
    return head + body


def decoded(*calls: dict[str, Any]) -> list[wire.Call | wire.WireError]:
    frame = wire.decode_request(calls_frame(*calls))
    assert isinstance(frame, wire.CallsFrame)
    return frame.calls


ADMIN: list[wire.Call] = [
    wire.MarketSetStatus(0, "open"),
    wire.MarketSetStatus(1, "halted"),
    wire.MarketSetStatus(1, "delisted"),
    wire.UserSetStatus(0, "active"),
    wire.UserSetStatus(MAX_USER_ID, "blocked"),
    wire.MarketCancelOrders(0),
    wire.MarketCancelOrders(1, 1),
    wire.MarketCancelOrders(1, 2),
    wire.MarketSetLimit(0, "price_step", 5),
    wire.MarketSetLimit(1, "price_band", 0),
    wire.MarketSetLimit(1, "max_notional", 2**62),
    wire.MarketSetLimit(0, "max_order_amount", 500_000),
    wire.UserSetLimit(7, 0, "max_order_amount", 1000),
    wire.UserSetLimit(MAX_USER_ID, 1, "max_notional", 0),
]


def test_admin_calls_round_trip_as_maps_tagged_by_op() -> None:
    frame = wire.decode_request(wire.encode_calls(ADMIN, RID, events=True))
    assert isinstance(frame, wire.CallsFrame)
    assert frame.calls == ADMIN
    body = msgspec.msgpack.decode(wire.encode_calls(ADMIN[1:2] + ADMIN[4:6], 1)[32:])
    assert body == [
        {"op": "market.set_status", "market": 1, "status": "halted"},
        {"op": "user.set_status", "user": MAX_USER_ID, "status": "blocked"},
        {"op": "market.cancel_orders", "market": 0, "side": 0},
    ]
    (minimal,) = decoded({"op": "market.cancel_orders", "market": 3})
    assert minimal == wire.MarketCancelOrders(3, 0)  # side defaults to both


def test_admin_calls_are_commands_the_server_runs_like_order_calls() -> None:
    assert all(isinstance(c, wire.OrderCall) for c in ADMIN)
    assert all(isinstance(c, wire.AdminCall) for c in ADMIN)
    assert not any(isinstance(c, wire.ORDER_CALLS) for c in ADMIN)
    assert set(wire.ADMIN_CALLS) == {type(c) for c in ADMIN}
    assert all(wire.RESULT_TYPES[t] is wire.CommandDone for t in wire.ADMIN_CALLS)
    ops = [wire.op_of(t) for t in wire.ADMIN_CALLS]
    assert ops == [
        "market.set_status", "user.set_status", "market.cancel_orders", "market.set_limit",
        "user.set_limit",
    ]  # fmt: skip


def test_admin_calls_build_the_records_of_core_commands() -> None:
    built = commands.batch(*(c.record() for c in ADMIN if isinstance(c, wire.AdminCall)))
    expected = commands.batch(
        commands.market_status(0, MarketStatus.OPEN),
        commands.market_status(1, MarketStatus.HALTED),
        commands.market_status(1, MarketStatus.DELISTED),
        commands.user_status(0, UserStatus.ACTIVE),
        commands.user_status(MAX_USER_ID, UserStatus.BLOCKED),
        commands.cancel_market(0, 0),
        commands.cancel_market(1, 1),
        commands.cancel_market(1, 2),
        commands.market_limit(0, RiskLimit.PRICE_STEP, 5),
        commands.market_limit(1, RiskLimit.PRICE_BAND, 0),
        commands.market_limit(1, RiskLimit.MAX_NOTIONAL, 2**62),
        commands.market_limit(0, RiskLimit.MAX_ORDER_AMOUNT, 500_000),
        commands.user_limit(7, 0, RiskLimit.MAX_ORDER_AMOUNT, 1000),
        commands.user_limit(MAX_USER_ID, 1, RiskLimit.MAX_NOTIONAL, 0),
    )
    assert built.tobytes() == expected.tobytes()
    kinds = [CommandKind.MARKET_STATUS] * 3 + [CommandKind.USER_STATUS] * 2
    kinds += [CommandKind.CANCEL_MARKET] * 3 + [CommandKind.MARKET_LIMIT] * 4
    kinds += [CommandKind.USER_LIMIT] * 2
    assert built["kind"].tolist() == kinds
    assert built["amount"][:5].tolist() == [0, 1, 2, 0, 1]  # the status, in amount
    assert (built["ts_ns"] == 0).all()  # the server stamps it
    assert built["user"][:3].tolist() == [0, 0, 0]
    assert built["market"][3:5].tolist() == [0, 0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"op": "market.set_status", "market": 0, "status": "closed"},
         "Invalid enum value 'closed' - at `$.status`"),
        ({"op": "market.set_status", "market": 0, "status": "HALTED"},
         "Invalid enum value 'HALTED' - at `$.status`"),
        ({"op": "market.set_status", "market": 0, "status": 1},
         "Expected `str`, got `int` - at `$.status`"),
        ({"op": "market.set_status", "market": 0}, "Object missing required field `status`"),
        ({"op": "market.set_status", "market": 2**15, "status": "open"},
         "Expected `int` <= 32767 - at `$.market`"),
        ({"op": "market.set_status", "market": "BTC_USDT", "status": "open"},
         "Expected `int`, got `str` - at `$.market`"),
        ({"op": "user.set_status", "user": 7, "status": "halted"},
         "Invalid enum value 'halted' - at `$.status`"),
        ({"op": "user.set_status", "user": -1, "status": "active"},
         "Expected `int` >= 0 - at `$.user`"),
        ({"op": "user.set_status", "user": MAX_USER_ID + 1, "status": "blocked"},
         f"Expected `int` <= {MAX_USER_ID} - at `$.user`"),
        ({"op": "market.cancel_orders", "market": 0, "side": 3},
         "Expected `int` <= 2 - at `$.side`"),
        ({"op": "market.cancel_orders", "market": 0, "side": -1},
         "Expected `int` >= 0 - at `$.side`"),
        ({"op": "market.cancel_orders", "market": 0, "user": 7},
         "Object contains unknown field `user`"),
        ({"op": "market.set_status", "market": 0, "status": "open", "why": "x"},
         "Object contains unknown field `why`"),
        ({"op": "market.halt", "market": 0}, "Invalid value 'market.halt' - at `$.op`"),
        ({"op": "market.set_limit", "market": 0, "limit": "tick", "value": 5},
         "Invalid enum value 'tick' - at `$.limit`"),
        ({"op": "market.set_limit", "market": 0, "limit": 1, "value": 5},
         "Expected `str`, got `int` - at `$.limit`"),
        ({"op": "market.set_limit", "market": 0, "limit": "price_step", "value": -1},
         "Expected `int` >= 0 - at `$.value`"),
        ({"op": "market.set_limit", "market": 0, "limit": "price_step", "value": 2**63},
         "Expected `int` <= 9223372036854775807 - at `$.value`"),
        ({"op": "market.set_limit", "market": 0, "limit": "price_step", "value": "0.05"},
         "Expected `int`, got `str` - at `$.value`"),
        ({"op": "market.set_limit", "market": 0, "limit": "price_band", "value": 0.5},
         "Expected `int`, got `float` - at `$.value`"),
        ({"op": "market.set_limit", "market": 0, "limit": "price_step"},
         "Object missing required field `value`"),
        ({"op": "market.set_limit", "market": -2**15 - 1, "limit": "price_step", "value": 1},
         "Expected `int` >= -32768 - at `$.market`"),
        ({"op": "market.set_limit", "market": 0, "limit": "price_step", "value": 1, "user": 1},
         "Object contains unknown field `user`"),
        ({"op": "user.set_limit", "user": 7, "market": 0, "limit": "price_step", "value": 5},
         "Invalid enum value 'price_step' - at `$.limit`"),
        ({"op": "user.set_limit", "user": 7, "market": 0, "limit": 7, "value": 5},
         "Expected `str`, got `int` - at `$.limit`"),
        ({"op": "user.set_limit", "user": 7, "market": 0, "limit": "max_notional", "value": -1},
         "Expected `int` >= 0 - at `$.value`"),
        ({"op": "user.set_limit", "user": 7, "market": 0, "limit": "max_notional",
          "value": "10"}, "Expected `int`, got `str` - at `$.value`"),
        ({"op": "user.set_limit", "user": -1, "market": 0, "limit": "max_notional", "value": 1},
         "Expected `int` >= 0 - at `$.user`"),
        ({"op": "user.set_limit", "user": MAX_USER_ID + 1, "market": 0,
          "limit": "max_notional", "value": 1}, f"Expected `int` <= {MAX_USER_ID} - at `$.user`"),
        ({"op": "user.set_limit", "user": 7, "limit": "max_notional", "value": 1},
         "Object missing required field `market`"),
        ({"op": "user.set_limit", "user": 7, "market": 0, "limit": "max_notional", "value": 1,
          "side": 1}, "Object contains unknown field `side`"),
        ({"op": "user.limits", "user": 7}, "Object missing required field `market`"),
        ({"op": "user.limits", "user": -7, "market": 0}, "Expected `int` >= 0 - at `$.user`"),
    ],
)  # fmt: skip
def test_bad_admin_calls_fail_alone_with_the_field_named(
    call: dict[str, Any], message: str
) -> None:
    good = {"op": "market.cancel_orders", "market": 0}
    first, second = decoded(call, good)
    assert isinstance(first, wire.WireError)
    assert (first.code, first.index) == (Result.INVALID_ARGUMENT, 0)
    assert first.message == f"call 0: {message}"
    assert second == wire.MarketCancelOrders(0, 0)  # the rest of the frame is unaffected


def test_a_status_built_in_python_is_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="market status 'closed' is none of open, halted"):
        wire.MarketSetStatus(0, "closed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user status 'halted' is none of active, blocked"):
        wire.UserSetStatus(0, "halted")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="risk limit 'tick' is none of price_step, amount"):
        wire.MarketSetLimit(0, "tick", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value -1 must be an int >= 0"):
        wire.MarketSetLimit(0, "price_step", -1)
    with pytest.raises(ValueError, match="value True must be an int >= 0"):
        wire.MarketSetLimit(0, "price_step", True)
    with pytest.raises(ValueError, match="value '5' must be an int >= 0"):
        wire.MarketSetLimit(0, "price_step", "5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user risk limit 'price_step' is none of max_order"):
        wire.UserSetLimit(7, 0, "price_step", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value -1 must be an int >= 0"):
        wire.UserSetLimit(7, 0, "max_notional", -1)
    with pytest.raises(ValueError, match="value False must be an int >= 0"):
        wire.UserSetLimit(7, 0, "max_notional", False)


def test_a_limit_call_is_a_market_limit_record() -> None:
    # the limit travels in ``side`` as its RiskLimit, the value in ``amount``
    for name, limit in zip(LIMIT_NAMES, RiskLimit, strict=True):
        (record,) = wire.MarketSetLimit(3, name, 12_345).record()
        assert int(record["kind"]) == CommandKind.MARKET_LIMIT
        assert (int(record["market"]), int(record["side"])) == (3, limit)
        assert (int(record["amount"]), int(record["user"]), int(record["ts_ns"])) == (12_345, 0, 0)
    raw = msgspec.msgpack.decode(
        wire.encode_calls([wire.MarketSetLimit(0, "price_band", 7)], 1)[32:]
    )
    assert raw == [{"op": "market.set_limit", "market": 0, "limit": "price_band", "value": 7}]


def test_a_user_limit_call_is_a_user_limit_record() -> None:
    # the user and market as given, the limit in ``side``, the value in ``amount``
    for name, limit in (("max_order_amount", 7), ("max_notional", 4)):
        (record,) = wire.UserSetLimit(9, 1, name, 12_345).record()  # type: ignore[arg-type]
        assert int(record["kind"]) == CommandKind.USER_LIMIT
        assert (int(record["user"]), int(record["market"]), int(record["side"])) == (9, 1, limit)
        assert (int(record["amount"]), int(record["ts_ns"])) == (12_345, 0)
    raw = msgspec.msgpack.decode(
        wire.encode_calls([wire.UserSetLimit(9, 0, "max_notional", 7)], 1)[32:]
    )
    assert raw == [
        {"op": "user.set_limit", "user": 9, "market": 0, "limit": "max_notional", "value": 7}
    ]


def test_user_limits_is_a_query_with_its_own_result() -> None:
    call = wire.UserLimitsCall(9, 1)
    assert not isinstance(call, wire.OrderCall)
    assert wire.op_of(call) == "user.limits"
    (got,) = decoded({"op": "user.limits", "user": 9, "market": 1})
    assert got == call
    assert wire.RESULT_TYPES[wire.UserLimitsCall] is wire.UserLimits
    limits = wire.UserLimits(9, 1, 500_000, 10**11)
    frame = wire.decode_reply(wire.encode_replies(RID, [wire.make_reply(call, Result.OK, limits)]))
    assert isinstance(frame, wire.RepliesFrame)
    assert frame.replies[0].result_as(call) == limits
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(limits)) == {
        "user": 9, "market": 1, "max_order_amount": 500_000, "max_notional": 10**11,
    }  # fmt: skip
    assert wire.UserLimits(9, 1) == wire.UserLimits(9, 1, 0, 0)  # none


def test_status_names_from_enums_and_names() -> None:
    assert [wire.market_status_name(s) for s in MarketStatus] == ["open", "halted", "delisted"]
    assert [wire.market_status_name(int(s)) for s in MarketStatus] == [
        "open", "halted", "delisted",
    ]  # fmt: skip
    assert wire.market_status_name("delisted") == "delisted"
    assert [wire.user_status_name(s) for s in UserStatus] == ["active", "blocked"]
    assert wire.user_status_name("blocked") == "blocked"
    for bad in (3, -1, True, "Open", "", None):
        with pytest.raises(ValueError, match="is none of"):
            wire.market_status_name(bad)  # type: ignore[arg-type]
    for bad in (2, False, "halted"):
        with pytest.raises(ValueError, match="is none of"):
            wire.user_status_name(bad)
    assert wire.MARKET_STATUSES == {"open": 0, "halted": 1, "delisted": 2}
    assert wire.USER_STATUSES == {"active": 0, "blocked": 1}


def test_market_info_carries_the_status() -> None:
    info = wire.MarketInfo(0, "BTC_USDT", 0, 2, 6, 2, 4, 10, 2**62, 2**40)
    assert info.status == "open"  # the default
    halted = msgspec.structs.replace(info, status="halted")
    raw = msgspec.msgpack.encode(halted)
    assert msgspec.msgpack.decode(raw)["status"] == "halted"
    assert msgspec.msgpack.decode(raw, type=wire.MarketInfo) == halted
    # A version-2 decoder (MarketInfo without status) refuses the new key: hence v3.
    fields = [
        (f, str if f == "name" else int) for f in wire.MarketInfo.__struct_fields__ if f != "status"
    ]
    v2 = msgspec.defstruct("MarketInfoV2", fields, forbid_unknown_fields=True)
    with pytest.raises(msgspec.ValidationError, match="unknown field `status`"):
        msgspec.msgpack.decode(raw, type=v2)


def test_market_info_from_a_config_market_and_a_status() -> None:
    market = make_config().markets[1]
    assert wire.MarketInfo.from_market(market).status == "open"
    delisted = wire.MarketInfo.from_market(market, MarketStatus.DELISTED)
    assert (delisted.index, delisted.name, delisted.status) == (1, "ETH_BTC", "delisted")
    with pytest.raises(ValueError, match="is none of"):
        wire.MarketInfo.from_market(market, 7)


def test_admin_command_results_round_trip_with_their_counts() -> None:
    replies = [
        wire.make_reply(ADMIN[1], Result.OK, wire.CommandDone(12)),
        wire.make_reply(ADMIN[1], Result.OK, wire.CommandDone(0)),  # already halted
        wire.make_reply(ADMIN[5], Result.OK, wire.CommandDone(13, 0, 7)),
        wire.make_reply(ADMIN[0], Result.UNKNOWN_MARKET),
        wire.make_reply(ADMIN[4], Result.FEE_ACCOUNT_CANNOT_TRADE),
        wire.make_reply(ADMIN[4], Result.USER_TABLE_FULL),
    ]
    frame = wire.decode_reply(wire.encode_replies(RID, replies))
    assert isinstance(frame, wire.RepliesFrame)
    done = [r.result_as(ADMIN[0]) for r in frame.replies[:3]]
    assert [(d.seq, d.value, d.order) for d in done] == [(12, 0, None), (0, 0, None), (13, 7, None)]
    assert [(r.code, r.viabtc) for r in frame.replies[3:]] == [(1002, 1), (1004, 1), (9003, 3)]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (Result.AMOUNT_TOO_LARGE, "invalid argument: amount above max_order_amount"),
        (
            Result.USER_AMOUNT_TOO_LARGE,
            "invalid argument: amount above the user's max_order_amount",
        ),
        (
            Result.USER_NOTIONAL_TOO_LARGE,
            "invalid argument: order value above the user's max_notional",
        ),
        (Result.MARKET_HALTED, "market halted: only cancels are taken"),
        (Result.MARKET_DELISTED, "market delisted: only cancels are taken"),
        (Result.USER_BLOCKED, "user blocked: only cancels are taken"),
    ],
)
def test_the_status_refusals_are_viabtc_code_1_with_their_message(
    code: Result, message: str
) -> None:
    assert int(code) in (2010, 2011, 2012, 2014, 2015, 2016)
    for op in ("order.put_limit", "order.put_market", "order.replace", "market.halt"):
        assert viabtc_code(op, code) == 1
    reply = wire.make_reply(wire.PutLimit(1, 0, 1, 1, 1), code)
    assert (reply.code, reply.viabtc, reply.message) == (code, 1, message)
    # and in a RESULTS batch (ipc.wire.viabtc_codes), for every kind
    cmds = commands.batch(
        commands.put_limit(1, 0, 1, 1, 1), commands.replace(1, 0, 5, 1, 1),
        commands.market_status(0, 1), commands.cancel_market(0),
    )  # fmt: skip
    results = np.zeros(len(cmds), dtype=RESULT_DTYPE)
    results["code"] = code
    assert wire.viabtc_codes(cmds, results).tolist() == [1, 1, 1, 1]


def test_the_admin_kinds_have_their_methods() -> None:
    assert wire.METHODS[CommandKind.MARKET_STATUS] == "market.set_status"
    assert wire.METHODS[CommandKind.USER_STATUS] == "user.set_status"
    assert wire.METHODS[CommandKind.CANCEL_MARKET] == "market.cancel_orders"
    assert wire.METHODS[CommandKind.MARKET_LIMIT] == "market.set_limit"
    assert wire.METHODS[CommandKind.USER_LIMIT] == "user.set_limit"
    # an engine refusal of a limit record is ViaBTC's 1, as a call's; a full user limit
    # table is 3 (service unavailable)
    cmds = commands.batch(
        commands.market_limit(0, RiskLimit.PRICE_STEP, 0),
        commands.user_limit(7, 0, RiskLimit.MAX_NOTIONAL, -1),
        commands.user_limit(8, 0, RiskLimit.MAX_NOTIONAL, 1),
    )
    results = np.zeros(3, dtype=RESULT_DTYPE)
    results["code"] = [Result.INVALID_ARGUMENT] * 2 + [Result.USER_LIMIT_TABLE_FULL]
    assert wire.viabtc_codes(cmds, results).tolist() == [1, 1, 3]
    assert viabtc_code("market.set_limit", Result.UNKNOWN_MARKET) == 1
    assert viabtc_code("user.set_limit", Result.USER_LIMIT_TABLE_FULL) == 3
    assert viabtc_code("user.set_limit", Result.FEE_ACCOUNT_CANNOT_TRADE) == 1


def test_market_info_carries_the_risk_limits() -> None:
    config = make_config(
        btc_usdt='price_step = "0.05"\namount_step = "0.001"\nmin_notional = "10"\n'
        'max_notional = "1000"\nmax_open_orders = 7\nprice_band = "0.1"\n'
        'max_order_amount = "0.5"\n'
    )
    risky, plain = (wire.MarketInfo.from_market(m) for m in config.markets)
    limits = ("price_step", "amount_step", "min_notional", "max_notional")
    assert [getattr(risky, f) for f in limits] == [5, 1000, 10 * 10**8, 1000 * 10**8]
    assert (risky.max_open_orders, risky.price_band) == (7, 100_000)
    assert risky.max_order_amount == 500_000
    assert [getattr(plain, f) for f in LIMIT_NAMES] == [1, 1, 0, 0, 0, 0, 0]
    raw = msgspec.msgpack.encode(risky)
    assert msgspec.msgpack.decode(raw, type=wire.MarketInfo) == risky
    # A version-3 decoder (MarketInfo without max_order_amount) refuses the new key:
    # hence version 4.
    assert wire.WIRE_VERSION == 4
    fields = [
        (f, str if f in ("name", "status") else int)
        for f in wire.MarketInfo.__struct_fields__
        if f != "max_order_amount"
    ]
    v3 = msgspec.defstruct("MarketInfoV3", fields, forbid_unknown_fields=True)
    with pytest.raises(msgspec.ValidationError, match="unknown field `max_order_amount`"):
        msgspec.msgpack.decode(raw, type=v3)
