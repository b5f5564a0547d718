"""The ZeroMQ wire format (ipc/wire.py, docs/protocol.md): layout, round trips of every
frame kind and call, precise refusals, and a decoder that never crashes."""

from __future__ import annotations

import re
import struct
import time
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import commands
from core.errors import ConfigError
from core.reference import ReferenceEngine
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    RESULT_DTYPE,
    CommandKind,
    EventKind,
    QuoteAction,
    Result,
    viabtc_code,
)
from core.views import OrderView
from ipc import wire
from ipc.wire import FrameFlag, FrameKind, WireError, WireLimits
from tests.support.world import stream_config

U64_MAX = 2**64 - 1
RID = 0x0123_4567_89AB_CDEF


# --------------------------------------------------------------------------- helpers


def sample_commands(n: int = 5) -> np.ndarray:
    """``n`` commands cycling through every kind, with distinct values."""
    makers = [
        lambda i: commands.put_limit(i, 0, 1, 10 + i, 100 + i, 5, 3, tif=1, source=b"web"),
        lambda i: commands.put_market(i, 1, 2, 7 * i, 9, stp=2, source="h\u00e9".encode()),
        lambda i: commands.cancel(i, 0, 1000 + i),
        lambda i: commands.replace(i, 1, 2000 + i, 55, 6),
        lambda i: commands.cancel_all(i, 0, 2),
    ]
    return commands.batch(*(makers[i % len(makers)](i + 1) for i in range(n)))


def sample_results(n: int, events_per: int = 2) -> tuple[np.ndarray, np.ndarray]:
    results = np.zeros(n, dtype=RESULT_DTYPE)
    results["seq"] = np.arange(1, n + 1)
    results["order_id"] = np.arange(n) * 3
    results["code"] = np.where(np.arange(n) % 2, int(Result.BALANCE_NOT_ENOUGH), 0)
    results["event_start"] = np.arange(n) * events_per
    results["event_count"] = events_per
    events = np.zeros(n * events_per, dtype=EVENT_DTYPE)
    events["seq"] = np.repeat(results["seq"], events_per)
    events["kind"] = int(EventKind.BALANCE)
    events["deal_money"] = np.arange(n * events_per) - 7
    return results, events


def header(frame: bytes) -> dict[str, Any]:
    fields = wire.HEADER.unpack_from(frame)
    names = "magic version kind flags count record_length reserved request_id payload_length"
    return dict(zip([*names.split(), "event_count"], fields, strict=True))


def patch(frame: bytes, fmt: str, offset: int, value: Any) -> bytes:
    """``frame`` with ``value`` packed as ``fmt`` at ``offset``."""
    out = bytearray(frame)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def refused(frame: bytes | bytearray, match: str, *, reply: bool = False, **kw: Any) -> WireError:
    decode = wire.decode_reply if reply else wire.decode_request
    with pytest.raises(WireError, match=match) as info:
        decode(frame, **kw)
    assert info.value.code == Result.INVALID_ARGUMENT
    return info.value


ALL_CALLS: list[wire.Call] = [
    wire.PutLimit(7, 0, 1, 10, 100, 20, 10, tif=2, stp=1, flags=1, source="web", client_id=77),
    wire.PutMarket(7, 1, 2, 5000, 20, stp=3, source="\u20ac", client_id=2**63 - 1),
    wire.Cancel(7, 0, 42),
    wire.Replace(7, 1, 43, 99, 3),
    wire.CancelAll(7, 0, 2),
    wire.BalanceUpdate(7, 2, "deposit", 11, -500, {"k": [1, "x", None, True, 2.5, {"n": {}}]}),
    wire.BalanceQuery(7, [0, 2]),
    wire.OrderDetail(0, 42),
    wire.OrderPending(7, 0, 5, 20),
    wire.OrderBook(1, 2, 0, 101),
    wire.OrderDepth(0, 10, 100),
    wire.MarketList(),
    wire.MarketSummaryCall([1]),
    wire.AssetList(),
    wire.AssetSummaryCall(),
    wire.ServerStatus(),
    wire.ServerSnapshot(),
    wire.ServerPromote(),
    wire.MarketSetStatus(1, "halted"),
    wire.UserSetStatus(7, "blocked"),
    wire.MarketCancelOrders(0, 2),
    wire.MarketSetLimit(1, "min_notional", 10**9),
    wire.UserSetLimit(7, 1, "max_order_amount", 10**6),
    wire.UserLimitsCall(7, 1),
    wire.Quote(7, 0, [(99, 5), (98, 6)], [(101, 7)], 20, 10, "mm"),
    wire.AssetAdd("DOGE", 8, 4),
    wire.MarketAdd("DOGE_USDT", "DOGE", "USDT", 2, 6, min_amount="0.01", max_orders=500),
]

ORDER = wire.Order(
    42, 0, 7, 1, 1, 100, 10, 4, 6, 600, 1, 20, 10, 1_000, 2_000, 0, 0, 0, "web"
)  # fmt: skip
PAGE = wire.Page(0, 101, 1, [ORDER])
RESULT_SAMPLES: dict[type[wire.Call], Any] = {
    **dict.fromkeys(wire.ORDER_CALLS, wire.CommandDone(9, 42, 0, ORDER, b"\x01" * 184)),
    **dict.fromkeys(wire.ADMIN_CALLS, wire.CommandDone(11, 0, 3)),
    **dict.fromkeys(wire.CATALOG_CALLS, wire.CommandDone(12, 0, 4)),
    wire.BalanceUpdate: wire.CommandDone(10),
    wire.BalanceQuery: [wire.Balance(0, 5, 6), wire.Balance(2, 0, 0)],
    wire.OrderDetail: ORDER,
    wire.OrderPending: PAGE,
    wire.OrderBook: PAGE,
    wire.OrderDepth: wire.Depth([(100, 5), (101, 1)], [(99, 2)]),
    wire.MarketList: [
        wire.MarketInfo(0, "BTC_USDT", 0, 2, 6, 2, 4, 10, 2**62, 2**40),
        wire.MarketInfo(1, "ETH_BTC", 1, 0, 4, 6, 4, 10, 2**62, 2**40, "halted"),
    ],
    wire.UserLimitsCall: wire.UserLimits(7, 1, 10**6, 0),
    wire.MarketSummaryCall: [wire.MarketSummary(1, 2, 30, 0, 0)],
    wire.AssetList: [wire.AssetInfo(0, "BTC", 10, 8)],
    wire.AssetSummaryCall: [wire.AssetSummary(0, 100, 1, 60, 1, 40)],
    wire.ServerStatus: wire.Status(5, 4, 3),
    wire.ServerSnapshot: wire.SnapshotDone(5, "ab" * 16),
    wire.ServerPromote: wire.Promoted(2, 41),
    wire.Quote: wire.QuoteDone(
        12, 1, [wire.QuoteLevel(2, 99, 5, 42, QuoteAction.NEW)], b"\x02" * 184
    ),
}


# --------------------------------------------------------------------------- layout


def test_header_layout_is_pinned() -> None:
    assert wire.HEADER.size == wire.HEADER_LENGTH == 32
    assert (wire.COMMAND_LENGTH, wire.RESULT_LENGTH, wire.EVENT_LENGTH) == (88, 40, 184)
    frame = wire.encode_commands(sample_commands(3), RID, events=True)
    assert frame[wire.MAGIC_OFFSET : wire.MAGIC_OFFSET + 4] == b"MDWP"
    assert frame[wire.VERSION_OFFSET] == wire.WIRE_VERSION == 4
    assert frame[wire.KIND_OFFSET] == FrameKind.COMMANDS
    assert struct.unpack_from("<H", frame, wire.FLAGS_OFFSET) == (FrameFlag.EVENTS,)
    assert struct.unpack_from("<I", frame, wire.COUNT_OFFSET) == (3,)
    assert struct.unpack_from("<H", frame, wire.RECORD_LENGTH_OFFSET) == (88,)
    assert struct.unpack_from("<H", frame, wire.RESERVED_OFFSET) == (0,)
    assert struct.unpack_from("<Q", frame, wire.REQUEST_ID_OFFSET) == (RID,)
    assert struct.unpack_from("<I", frame, wire.PAYLOAD_LENGTH_OFFSET) == (3 * 88,)
    assert struct.unpack_from("<I", frame, wire.EVENT_COUNT_OFFSET) == (0,)
    assert len(frame) == 32 + 3 * 88


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_commands"):
        WireLimits(max_commands=0)
    with pytest.raises(ConfigError, match="max_request_bytes"):
        WireLimits(max_request_bytes=64)
    with pytest.raises(ConfigError, match="max_reply_bytes"):
        WireLimits(max_commands=1000, max_reply_bytes=1000)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"max_calls": 5, "max_frames": 1}, WireLimits)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("events", [False, True])
@pytest.mark.parametrize("request_id", [0, 1, RID, U64_MAX])
def test_commands_round_trip(events: bool, request_id: int) -> None:
    cmds = sample_commands(7)
    frame = wire.decode_request(wire.encode_commands(cmds, request_id, events=events))
    assert isinstance(frame, wire.CommandsFrame)
    assert frame.request_id == request_id
    assert frame.want_events is events
    assert frame.commands.dtype == COMMAND_DTYPE
    assert frame.commands.tobytes() == cmds.tobytes()


def test_commands_decode_as_a_view_of_the_frame() -> None:
    buf = bytearray(wire.encode_commands(sample_commands(2), 1))
    frame = wire.decode_request(memoryview(buf))
    assert isinstance(frame, wire.CommandsFrame)
    assert not frame.commands.flags.owndata
    buf[32 + 8] = 99  # the first record's user
    assert frame.commands["user"][0] == 99


def test_non_contiguous_commands_are_encoded_in_order() -> None:
    cmds = sample_commands(10)
    frame = wire.decode_request(wire.encode_commands(cmds[::3], 5))
    assert isinstance(frame, wire.CommandsFrame)
    assert frame.commands.tobytes() == cmds[::3].tobytes()


def test_results_round_trip_without_events() -> None:
    results, _ = sample_results(4)
    frame = wire.decode_reply(wire.encode_results(RID, results))
    assert isinstance(frame, wire.ResultsFrame)
    assert (frame.request_id, frame.flags, len(frame.events)) == (RID, 0, 0)
    assert frame.results.tobytes() == results.tobytes()


def test_results_round_trip_with_events() -> None:
    results, events = sample_results(4)
    raw = wire.encode_results(RID, results, events)
    assert header(raw)["event_count"] == 8
    frame = wire.decode_reply(raw)
    assert isinstance(frame, wire.ResultsFrame)
    assert frame.flags == FrameFlag.EVENTS
    assert not frame.events_dropped
    assert frame.results.tobytes() == results.tobytes()
    assert frame.events.tobytes() == events.tobytes()


def test_results_with_no_events_at_all() -> None:
    results, events = sample_results(3, events_per=0)
    frame = wire.decode_reply(wire.encode_results(1, results, events))
    assert isinstance(frame, wire.ResultsFrame)
    assert frame.flags == FrameFlag.EVENTS
    assert len(frame.events) == 0


def test_events_over_the_reply_limit_are_dropped_and_flagged() -> None:
    limits = WireLimits(max_commands=8, max_reply_bytes=32 + 8 * 40 + 184)
    results, events = sample_results(2)
    raw = wire.encode_results(3, results, events, limits=limits)
    frame = wire.decode_reply(raw, limits=limits)
    assert isinstance(frame, wire.ResultsFrame)
    assert frame.events_dropped
    assert len(frame.events) == 0
    assert frame.results.tobytes() == results.tobytes()


@pytest.mark.parametrize("events", [False, True])
def test_every_call_round_trips(events: bool) -> None:
    frame = wire.decode_request(wire.encode_calls(ALL_CALLS, RID, events=events))
    assert isinstance(frame, wire.CallsFrame)
    assert frame.request_id == RID
    assert frame.want_events is events
    assert frame.calls == ALL_CALLS
    assert [wire.op_of(c) for c in frame.calls][:2] == ["order.put_limit", "order.put_market"]


def test_every_call_type_is_covered() -> None:
    assert {type(c) for c in ALL_CALLS} == set(wire.RESULT_TYPES) == set(RESULT_SAMPLES)


def test_calls_are_maps_tagged_by_op() -> None:
    body = wire.encode_calls([wire.Cancel(1, 2, 3)], 1)[32:]
    assert msgspec.msgpack.decode(body) == [
        {"op": "order.cancel", "user": 1, "market": 2, "order_id": 3}
    ]
    minimal = msgspec.msgpack.encode([{"op": "order.book", "market": 0, "side": 1}])
    frame = wire.decode_request(_frame(FrameKind.CALLS, 1, minimal))
    assert isinstance(frame, wire.CallsFrame)
    assert frame.calls == [wire.OrderBook(0, 1, 0, 101)]


def test_order_calls_build_the_same_records_as_core_commands() -> None:
    ones = [c for c in ALL_CALLS if isinstance(c, wire.ORDER_CALLS) and type(c) is not wire.Quote]
    built = commands.batch(*(c.record() for c in ones))  # a quote's: test_wire_quote.py
    expected = commands.batch(
        commands.put_limit(
            7, 0, 1, 10, 100, 20, 10, tif=2, stp=1, flags=1, source=b"web", client_id=77
        ),
        commands.put_market(
            7, 1, 2, 5000, 20, stp=3, source="\u20ac".encode(), client_id=2**63 - 1
        ),
        commands.cancel(7, 0, 42),
        commands.replace(7, 1, 43, 99, 3),
        commands.cancel_all(7, 0, 2),
    )
    assert built.tobytes() == expected.tobytes()


def test_a_put_carries_its_client_id_in_the_order_id_field() -> None:
    assert wire.PutLimit(7, 0, 1, 10, 100, client_id=5).record()["order_id"][0] == 5
    assert wire.PutMarket(7, 0, 1, 10, client_id=6).record()["order_id"][0] == 6
    minimal = {"op": "order.put_market", "user": 7, "market": 0, "side": 1, "amount": 10}
    frame = wire.decode_request(_frame(FrameKind.CALLS, 1, msgspec.msgpack.encode([minimal])))
    assert isinstance(frame, wire.CallsFrame)
    (call,) = frame.calls
    assert isinstance(call, wire.PutMarket)
    assert call.client_id == 0  # left out: none
    assert call.record()["order_id"][0] == 0
    body = wire.encode_calls([wire.PutLimit(7, 0, 1, 10, 100, client_id=9)], 1)[32:]
    assert msgspec.msgpack.decode(body)[0]["client_id"] == 9


def test_a_repeat_order_reply_carries_the_original_order_id() -> None:
    put = wire.PutLimit(7, 0, 1, 10, 100, client_id=5)
    replies = [
        wire.make_reply(put, Result.REPEAT_ORDER, order_id=42),
        wire.make_reply(wire.PutMarket(7, 0, 1, 10, client_id=5), Result.REPEAT_ORDER, order_id=43),
        # any other refusal keeps 0, whatever the RESULT record held
        wire.make_reply(wire.Cancel(7, 0, 44), Result.ORDER_NOT_FOUND, order_id=44),
        wire.make_reply(put, Result.OK, RESULT_SAMPLES[wire.PutLimit]),
    ]
    frame = wire.decode_reply(wire.encode_replies(3, replies))
    assert isinstance(frame, wire.RepliesFrame)
    got = [(r.code, r.viabtc, r.order_id) for r in frame.replies]
    assert got == [(2004, 13, 42), (2004, 13, 43), (3003, 10, 0), (0, 0, 0)]
    assert frame.replies[0].message == wire.MESSAGES[Result.REPEAT_ORDER]
    assert frame.replies[0].message.startswith("repeat order: ")
    assert frame.replies[0].result_as(put) is None


def test_every_reply_round_trips_typed() -> None:
    calls = list(ALL_CALLS)
    replies = [wire.make_reply(c, Result.OK, RESULT_SAMPLES[type(c)]) for c in calls]
    replies.append(wire.make_reply(wire.OrderDetail(0, 1), Result.OK, None))
    calls.append(wire.OrderDetail(0, 1))
    frame = wire.decode_reply(wire.encode_replies(RID, replies))
    assert isinstance(frame, wire.RepliesFrame)
    assert frame.request_id == RID
    assert len(frame.replies) == len(calls)
    for call, sent, got in zip(calls, replies, frame.replies, strict=True):
        assert (got.code, got.message, got.viabtc, got.ok) == (0, "", 0, True)
        assert got.result_as(call) == sent.result
        assert sent.result_as(call) == sent.result


@pytest.mark.parametrize(
    ("call", "code", "viabtc"),
    [
        (wire.PutLimit(1, 0, 1, 1, 1), Result.BALANCE_NOT_ENOUGH, 10),
        (wire.PutMarket(1, 0, 1, 1), Result.NO_ENOUGH_TRADER, 12),
        (wire.Cancel(1, 0, 1), Result.USER_NOT_MATCH, 11),
        (wire.BalanceUpdate(1, 0, "d", 1, 1), Result.REPEAT_UPDATE, 10),
        (wire.Replace(1, 0, 1, 1, 1), Result.ORDER_NOT_REPLACEABLE, 1),
        (wire.OrderBook(5, 1), Result.UNKNOWN_MARKET, 1),
        (wire.ServerSnapshot(), Result.SERVICE_UNAVAILABLE, 3),
        (None, Result.INVALID_ARGUMENT, 1),
    ],
)
def test_error_replies_carry_the_engine_and_viabtc_codes(
    call: wire.Call | None, code: Result, viabtc: int
) -> None:
    frame = wire.decode_reply(wire.encode_replies(2, [wire.make_reply(call, code)]))
    assert isinstance(frame, wire.RepliesFrame)
    (reply,) = frame.replies
    assert (reply.code, reply.viabtc, reply.ok) == (code, viabtc, False)
    assert reply.message == wire.MESSAGES[code]
    assert viabtc_code("" if call is None else wire.op_of(call), code) == viabtc
    assert reply.result_as(wire.OrderDetail) is None


def test_error_frame_round_trip_echoes_the_request_id() -> None:
    frame = wire.decode_reply(wire.encode_error(RID, Result.SERVICE_UNAVAILABLE))
    assert frame == wire.ErrorFrame(RID, 9002, "service unavailable")
    bad = patch(wire.encode_commands(sample_commands(1), RID), "B", wire.VERSION_OFFSET, 9)
    err = refused(bad, "unsupported wire version 9; this side speaks 4")
    assert err.request_id == RID
    frame = wire.decode_reply(wire.error_reply(err))
    assert isinstance(frame, wire.ErrorFrame)
    assert (frame.request_id, frame.code) == (RID, 1001)
    assert "version 9" in frame.message


# --------------------------------------------------------------------------- per-call errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"op": "order.nope"}, r"Invalid value 'order.nope' - at `\$.op`"),
        ({"user": 1}, "Object missing required field `op`"),
        ({"op": "order.cancel", "user": "1", "market": 0, "order_id": 1}, r"`\$.user`"),
        ({"op": "order.cancel", "user": 1, "market": 0}, "missing required field `order_id`"),
        ({"op": "order.cancel", "user": 1, "market": 0, "order_id": 1, "x": 0}, "unknown field"),
        ({"op": "order.cancel", "user": 2**63, "market": 0, "order_id": 1}, f"<= {2**63 - 1}"),
        ({"op": "order.cancel", "user": 1, "market": 40000, "order_id": 1}, "<= 32767"),
        ({"op": "order.book", "market": 0, "side": 3}, r"<= 2 - at `\$.side`"),
        ({"op": "order.book", "market": 0, "side": 1, "limit": 102}, "<= 101"),
        ({"op": "order.pending", "user": 2**32, "market": 0}, "<= 4294967295"),
        ({"op": "balance.query", "user": 0}, ">= 1"),
        ({"op": "order.put_limit", "user": 1, "market": 0, "side": 1, "amount": 1, "price": 1,
          "source": "x" * 31}, "at most 30 bytes"),
        ({"op": "order.put_limit", "user": 1, "market": 0, "side": 1, "amount": 1, "price": 1,
          "client_id": -1}, r"Expected `int` >= 0 - at `\$.client_id`"),
        ({"op": "order.put_market", "user": 1, "market": 0, "side": 1, "amount": 1,
          "client_id": 2**63}, r"<= 9223372036854775807 - at `\$.client_id`"),
        ({"op": "order.put_market", "user": 1, "market": 0, "side": 1, "amount": 1,
          "client_id": "7"}, r"Expected `int`, got `str` - at `\$.client_id`"),
        ({"op": "order.put_limit", "user": 1, "market": 0, "side": 1, "amount": 1, "price": 1,
          "client_id": 1.0}, r"Expected `int`, got `float` - at `\$.client_id`"),
        ({"op": "balance.update", "user": 1, "asset": 0, "business": "b", "business_id": 1,
          "change": 1, "detail": {"a": b"bin"}}, "bytes, which is not JSON"),
        ({"op": "balance.update", "user": 1, "asset": 0, "business": "b", "business_id": 1,
          "change": 1, "detail": {"a": float("nan")}}, "finite"),
        ({"op": "balance.update", "user": 1, "asset": 0, "business": "b" * 256,
          "business_id": 1, "change": 1}, "length <= 255"),
        (7, "Expected `object`, got `int`"),
    ],
)  # fmt: skip
def test_a_bad_call_is_answered_alone(call: Any, match: str) -> None:
    body = msgspec.msgpack.encode([{"op": "market.list"}, call, {"op": "server.status"}])
    frame = wire.decode_request(_frame(FrameKind.CALLS, RID, body, count=3))
    assert isinstance(frame, wire.CallsFrame)
    first, bad, last = frame.calls
    assert (first, last) == (wire.MarketList(), wire.ServerStatus())
    assert isinstance(bad, WireError)
    assert (bad.code, bad.index, bad.request_id) == (Result.INVALID_ARGUMENT, 1, RID)
    assert bad.message.startswith("call 1: ")
    assert re.search(match, bad.message), bad.message


def test_deeply_nested_detail_is_refused() -> None:
    deep: Any = 1
    for _ in range(20):
        deep = {"d": deep}
    call = {"op": "balance.update", "user": 1, "asset": 0, "business": "b", "business_id": 1,
            "change": 1, "detail": deep}  # fmt: skip
    frame = wire.decode_request(_frame(FrameKind.CALLS, 1, msgspec.msgpack.encode([call])))
    assert isinstance(frame, wire.CallsFrame)
    assert isinstance(frame.calls[0], WireError)
    assert "nested deeper than 16" in frame.calls[0].message
    hostile = b"\x91" + b"\x81\xa1d" * 50_000 + b"\x01"
    refused(_frame(FrameKind.CALLS, 1, hostile), "calls: maximum recursion depth exceeded")


# --------------------------------------------------------------------------- frame errors


def _frame(
    kind: int,
    request_id: int,
    payload: bytes,
    *,
    count: int = 1,
    flags: int = 0,
    record_length: int = 0,
    event_count: int = 0,
    reserved: int = 0,
    length: int | None = None,
) -> bytes:
    """A frame of this version: the header (``length`` the payload's unless given),
    then ``payload``."""
    head = wire.HEADER.pack(
        b"MDWP",
        wire.WIRE_VERSION,
        kind,
        flags,
        count,
        record_length,
        reserved,
        request_id,
        len(payload) if length is None else length,
        event_count,
    )
    return head + payload


GOOD = wire.encode_commands(sample_commands(3), RID)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"", "frame of 0 bytes is shorter than the 32-byte header"),
        (GOOD[:31], "frame of 31 bytes is shorter than the 32-byte header"),
        (b"XDWP" + GOOD[4:], r"bad magic b'XDWP', expected b'MDWP'"),
        (patch(GOOD, "B", 4, 0), "unsupported wire version 0"),
        (patch(GOOD, "B", 4, 1), "unsupported wire version 1; this side speaks 4"),
        (patch(GOOD, "B", 4, 2), "unsupported wire version 2; this side speaks 4"),
        (patch(GOOD, "B", 4, 3), "unsupported wire version 3; this side speaks 4"),
        (patch(GOOD, "B", 5, 0), "frame kind 0 is not accepted here"),
        (patch(GOOD, "B", 5, 77), "frame kind 77 is not accepted here"),
        (patch(GOOD, "B", 5, FrameKind.RESULTS), "frame kind 2 is not accepted here"),
        (patch(GOOD, "H", 6, 2), r"flags 0x0002 not allowed on COMMANDS \(allowed 0x0001\)"),
        (patch(GOOD, "H", 6, 0x8000), "flags 0x8000 not allowed"),
        (patch(GOOD, "H", 12, 40), "record_length 40 on COMMANDS, must be 88"),
        (patch(GOOD, "H", 14, 1), "reserved header field is 1, must be 0"),
        (patch(GOOD, "I", 28, 1), "event_count 1 without events on COMMANDS"),
        (GOOD[:-1], "payload_length is 264 but the frame carries 263 bytes after the header"),
        (GOOD + b"\0", "payload_length is 264 but the frame carries 265 bytes"),
        (GOOD[:32], "payload_length is 264 but the frame carries 0 bytes"),
        (patch(GOOD, "I", 8, 0), "count 0 on COMMANDS, must be in 1..16384"),
        (patch(GOOD, "I", 8, 2**32 - 1), "count 4294967295 on COMMANDS, must be in 1..16384"),
        (patch(GOOD, "I", 8, 2), "2 records of 88 bytes need 176 payload bytes, the frame has 264"),
        (patch(GOOD, "I", 8, 4), "4 records of 88 bytes need 352 payload bytes"),
    ],
)
def test_malformed_command_frames_are_refused_precisely(frame: bytes, match: str) -> None:
    err = refused(frame, match)
    assert err.request_id == (RID if len(frame) >= 32 and frame[:4] == b"MDWP" else 0)
    assert err.index is None


def test_a_consistent_but_bad_count_is_refused() -> None:
    # count, payload_length and the bytes agree with each other but not with 88 B records
    frame = _frame(FrameKind.COMMANDS, 1, b"\0" * 100, count=1, record_length=88)
    refused(frame, "1 records of 88 bytes need 88 payload bytes, the frame has 100")


def test_oversized_frames_are_refused_before_decoding() -> None:
    limits = WireLimits(max_commands=4, max_request_bytes=32 + 4 * 88, max_reply_bytes=1000)
    refused(wire.encode_commands(sample_commands(5), 9), "exceeds the limit of 384 bytes",
            limits=limits)  # fmt: skip
    big = wire.encode_commands(sample_commands(5), 9, limits=WireLimits(max_commands=5))
    err = refused(big, "frame of 472 bytes exceeds the limit of 384 bytes", limits=limits)
    assert err.request_id == 9
    calls = wire.encode_calls([wire.MarketList()] * 5, 9)
    refused(calls, "count 5 on CALLS, must be in 1..2", limits=WireLimits(max_calls=2))
    results, events = sample_results(5)
    reply = wire.encode_results(1, results, events)
    refused(reply, "frame of 2072 bytes exceeds the limit of 1000 bytes", reply=True,
            limits=limits)  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (_frame(FrameKind.CALLS, 1, b"\x92\x80"), "calls: Input data was truncated"),
        (
            _frame(FrameKind.CALLS, 1, b"\x91\x80\x80"),
            "calls: MessagePack data is malformed: trailing characters",
        ),
        (_frame(FrameKind.CALLS, 1, b"\x80"), "calls: Expected `array`, got `object`"),
        (_frame(FrameKind.CALLS, 1, b"\x92\x80\x80"), "count is 1 but the payload holds 2 calls"),
        (_frame(FrameKind.CALLS, 1, b"\xdd\xff\xff\xff\xff"), "truncated"),
        (_frame(FrameKind.CALLS, 1, b"\x91" * 200_000), "calls: "),
        (_frame(FrameKind.CALLS, 1, b"\x91\x80", record_length=88), "record_length 88 on CALLS"),
        (_frame(FrameKind.CALLS, 1, b"\x91\x80", flags=2), "flags 0x0002 not allowed on CALLS"),
        (_frame(FrameKind.REPLIES, 1, b"\x91\x80"), "frame kind 4 is not accepted here"),
    ],
)
def test_malformed_call_frames_are_refused_precisely(frame: bytes, match: str) -> None:
    assert refused(frame, match).request_id == 1


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (GOOD, "frame kind 1 is not accepted here"),
        (_frame(FrameKind.RESULTS, 1, b"\0" * 40, record_length=40, flags=3),
         "flags EVENTS and EVENTS_DROPPED are exclusive"),
        (_frame(FrameKind.RESULTS, 1, b"\0" * 40, record_length=40, event_count=1),
         "event_count 1 without events on RESULTS"),
        (_frame(FrameKind.RESULTS, 1, b"\0" * 80, record_length=40, flags=1, event_count=1),
         "1 records of 40 bytes and 184 bytes of events need 224 payload bytes, the frame has 80"),
        (_frame(FrameKind.RESULTS, 1, b"\0" * 80, record_length=40, flags=1, count=2,
                event_count=2**32 - 1), "need 790273982360 payload bytes"),
        (_frame(FrameKind.ERROR, 1, b"\x80", count=1), "count 1 on ERROR, must be in 0..0"),
        (_frame(FrameKind.ERROR, 1, b"\x80", count=0), "error body: Object missing required"),
        (_frame(FrameKind.REPLIES, 1, b"\x91\x81\xa4code\xa1x"), r"replies: .*`\$\[0\].code`"),
        (_frame(FrameKind.REPLIES, 1, b"\x90"), "count is 1 but the payload holds 0 replies"),
    ],
)  # fmt: skip
def test_malformed_reply_frames_are_refused_precisely(frame: bytes, match: str) -> None:
    refused(frame, match, reply=True)


def test_encoders_refuse_what_decoders_would() -> None:
    cmds = sample_commands(3)
    with pytest.raises(WireError, match="1-D array of COMMAND_DTYPE"):
        wire.encode_commands(np.zeros(3, dtype=RESULT_DTYPE), 1)
    with pytest.raises(WireError, match="1-D array of COMMAND_DTYPE"):
        wire.encode_commands(cmds.reshape(3, 1), 1)
    with pytest.raises(WireError, match=r"0 commands, must be 1\.\.16384"):
        wire.encode_commands(cmds[:0], 1)
    with pytest.raises(WireError, match=r"3 commands, must be 1\.\.2"):
        wire.encode_commands(cmds, 1, limits=WireLimits(max_commands=2))
    with pytest.raises(WireError, match="request id -1 is not a u64"):
        wire.encode_commands(cmds, -1)
    with pytest.raises(WireError, match="is not a u64"):
        wire.encode_calls([wire.MarketList()], 2**64)
    with pytest.raises(WireError, match="0 calls"):
        wire.encode_calls([], 1)
    with pytest.raises(WireError, match="exceeds the limit"):
        wire.encode_calls([wire.MarketList()] * 20, 1, limits=WireLimits(max_request_bytes=120))
    with pytest.raises(WireError, match="0 replies"):
        wire.encode_replies(1, [])
    with pytest.raises(WireError, match="1-D array of EVENT_DTYPE"):
        wire.encode_results(1, sample_results(1)[0], np.zeros(1, dtype=RESULT_DTYPE))


# --------------------------------------------------------------------------- never crash

DECODERS = (wire.decode_request, wire.decode_reply)
_SMALL = WireLimits(max_commands=64, max_calls=64, max_request_bytes=8192, max_reply_bytes=16384)


def _never_crash(data: bytes) -> None:
    for decode in DECODERS:
        error: WireError | None = None
        try:
            frame = decode(data, _SMALL)
        except WireError as exc:
            error = exc
        if error is not None:
            assert error.code == Result.INVALID_ARGUMENT
            assert error.message
        elif isinstance(frame, wire.CallsFrame):
            assert all(isinstance(c, wire.Call | WireError) for c in frame.calls)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash_the_decoders(data: bytes) -> None:
    _never_crash(data)


@settings(max_examples=500, deadline=None)
@given(
    kind=st.integers(0, 6),
    flags=st.sampled_from([0, 1, 2, 3, 4, 0xFFFF]),
    count=st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1)),
    record_length=st.sampled_from([0, 40, 88, 184, 65535]),
    reserved=st.sampled_from([0, 0, 0, 1]),
    request_id=st.integers(0, U64_MAX),
    event_count=st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)),
    payload=st.binary(max_size=600),
    length_delta=st.sampled_from([0, 0, 0, -1, 1, 2**20]),
)
def test_headers_with_random_fields_never_crash_the_decoders(
    kind: int,
    flags: int,
    count: int,
    record_length: int,
    reserved: int,
    request_id: int,
    event_count: int,
    payload: bytes,
    length_delta: int,
) -> None:
    length = max(0, min(len(payload) + length_delta, 2**32 - 1))
    _never_crash(
        _frame(
            kind,
            request_id,
            payload,
            count=count,
            flags=flags,
            record_length=record_length,
            event_count=event_count,
            reserved=reserved,
            length=length,
        )
    )


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
_OPS = st.sampled_from([wire.op_of(type(c)) for c in ALL_CALLS] + ["x", ""])
_FIELDS = st.sampled_from(
    ["user", "market", "side", "amount", "price", "order_id", "asset", "business", "detail",
     "business_id", "change", "offset", "limit", "source", "assets", "markets", "tif", "left"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_JSONISH, st.dictionaries(_FIELDS, _JSONISH)), min_size=1, max_size=5),
    st.lists(_OPS, min_size=5, max_size=5),
)
def test_random_calls_decode_to_calls_or_per_call_errors(items: list[Any], ops: list[str]) -> None:
    calls = [
        ({**x, "op": op} if isinstance(x, dict) else x) for x, op in zip(items, ops, strict=False)
    ]
    body = msgspec.msgpack.encode(calls)
    frame = wire.decode_request(_frame(FrameKind.CALLS, 3, body, count=len(calls)), _SMALL)
    assert isinstance(frame, wire.CallsFrame)
    assert len(frame.calls) == len(calls)
    for i, c in enumerate(frame.calls):
        if isinstance(c, WireError):
            assert c.index == i
        else:
            # a decoded call encodes back to a frame that decodes to the same call
            again = wire.decode_request(wire.encode_calls([c], 1))
            assert isinstance(again, wire.CallsFrame)
            assert again.calls == [c]


# --------------------------------------------------------------------------- engine


def test_command_done_and_codes_from_a_real_engine() -> None:
    engine = ReferenceEngine(stream_config())
    results, _ = engine.balance_update(1, 2, b"deposit", 1, 10**12, 1)
    assert results[0]["code"] == Result.OK
    calls = [
        wire.PutLimit(1, 0, 2, 20, 100, source="sdk"),
        wire.PutLimit(1, 0, 2, 10**11, 100),
        wire.Cancel(2, 0, 1),
        wire.CancelAll(1, 0),
    ]
    request = wire.decode_request(wire.encode_calls(calls, 77, events=True))
    assert isinstance(request, wire.CallsFrame)
    batch = commands.batch(*(c.record() for c in request.calls if isinstance(c, wire.OrderCall)))
    results, events = engine.execute(batch)
    replies = [
        wire.make_reply(c, Result(int(r["code"])), wire.command_done(r, events, with_events=True))
        if r["code"] == Result.OK
        else wire.make_reply(c, Result(int(r["code"])))
        for c, r in zip(calls, results, strict=True)
    ]
    frame = wire.decode_reply(wire.encode_replies(77, replies))
    assert isinstance(frame, wire.RepliesFrame)
    first, poor, foreign, everything = frame.replies
    done = first.result_as(calls[0])
    assert done.seq == int(results[0]["seq"])
    assert done.order is not None
    assert (done.order.id, done.order.source, done.order.left) == (done.order_id, "sdk", 20)
    assert np.frombuffer(done.events, dtype=EVENT_DTYPE)["seq"].tolist() == [done.seq] * 2
    assert (poor.code, poor.viabtc) == (Result.BALANCE_NOT_ENOUGH, 10)
    assert (foreign.code, foreign.viabtc) == (Result.USER_NOT_MATCH, 11)
    all_done = everything.result_as(calls[3])
    assert (all_done.value, all_done.order) == (1, None)
    codes = wire.viabtc_codes(batch, results)
    kinds = {int(k): m for k, m in wire.METHODS.items()}
    expected = [
        viabtc_code(kinds[int(k)], Result(int(r)))
        for k, r in zip(batch["kind"], results["code"], strict=True)
    ]
    assert codes.tolist() == expected == [0, 10, 11, 0]


def test_a_repeated_client_id_is_answered_with_the_first_order_from_a_real_engine() -> None:
    engine = ReferenceEngine(stream_config())
    for user in (1, 2):
        results, _ = engine.balance_update(user, 2, b"deposit", 1, 10**12, 1)
        assert results[0]["code"] == Result.OK
    calls = [
        wire.PutLimit(1, 0, 2, 20, 100, client_id=7),
        wire.PutLimit(1, 0, 2, 30, 101, client_id=7),  # a retry: refused, names the first
        wire.PutMarket(1, 0, 2, 10**6, client_id=7),  # the id is the user's, any kind
        wire.PutLimit(2, 0, 2, 20, 100, client_id=7),  # another user's id 7 is its own
    ]
    batch = commands.batch(*(c.record() for c in calls))
    results, _ = engine.execute(batch)
    replies = [
        wire.make_reply(c, Result(int(r["code"])), order_id=int(r["order_id"]))
        for c, r in zip(calls, results, strict=True)
    ]
    first = int(results[0]["order_id"])
    assert [(r.code, r.order_id) for r in replies] == [
        (0, 0), (Result.REPEAT_ORDER, first), (Result.REPEAT_ORDER, first), (0, 0),
    ]  # fmt: skip
    assert results["seq"][1:3].tolist() == [0, 0]
    assert results["event_count"][1:3].tolist() == [0, 0]
    assert wire.viabtc_codes(batch, results).tolist() == [0, 13, 13, 0]
    assert engine.pending(1, 0, 0, 10)[0] == 1


def test_viabtc_codes_agree_with_core_for_every_kind_and_result() -> None:
    pairs = [(k, r) for k in CommandKind if k in wire.METHODS for r in Result]
    cmds = np.zeros(len(pairs), dtype=COMMAND_DTYPE)
    results = np.zeros(len(pairs), dtype=RESULT_DTYPE)
    cmds["kind"] = [k for k, _ in pairs]
    results["code"] = [r for _, r in pairs]
    expected = [viabtc_code(wire.METHODS[k], r) for k, r in pairs]
    assert wire.viabtc_codes(cmds, results).tolist() == expected


def test_order_from_view_keeps_every_field() -> None:
    view = OrderView(
        id=42, market=0, user=7, side=1, otype=1, price=100, amount=10, left=4, deal_stock=6,
        deal_money=600, deal_fee=1, taker_rate=20, maker_rate=10, ctime_ns=1_000,
        mtime_ns=2_000, tif=0, stp=0, flags=0, source="web",
    )  # fmt: skip
    assert wire.Order.from_view(view) == ORDER


def test_config_infos() -> None:
    config = stream_config()
    market = wire.MarketInfo.from_market(config.markets[1])
    assert (market.index, market.name, market.stock, market.money) == (1, "ETH_USDT", 1, 2)
    assert wire.AssetInfo.from_asset(config.assets[2]) == wire.AssetInfo(2, "USDT", 8, 8)


# --------------------------------------------------------------------------- speed


def test_a_batch_of_10000_commands_is_one_view() -> None:
    cmds = np.repeat(sample_commands(5), 2000)
    assert len(cmds) == 10_000
    start = time.perf_counter()
    raw = wire.encode_commands(cmds, RID)
    middle = time.perf_counter()
    frame = wire.decode_request(raw)
    end = time.perf_counter()
    assert isinstance(frame, wire.CommandsFrame)
    assert len(raw) == 32 + 10_000 * 88
    assert not frame.commands.flags.owndata
    assert frame.commands.tobytes() == cmds.tobytes()
    results, events = sample_results(10_000)
    reply_start = time.perf_counter()
    reply = wire.decode_reply(wire.encode_results(RID, results, events))
    reply_end = time.perf_counter()
    assert isinstance(reply, wire.ResultsFrame)
    assert len(reply.events) == 20_000
    print(
        f"\n10,000 commands: encode {(middle - start) * 1e6:.0f} us, "
        f"decode {(end - middle) * 1e6:.0f} us; 10,000 results + 20,000 events "
        f"round trip {(reply_end - reply_start) * 1e6:.0f} us"
    )
