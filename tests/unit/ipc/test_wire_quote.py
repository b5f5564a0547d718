"""Mass quotes on the wire (ipc/wire_quote.py; docs/protocol.md, "Mass quotes"): the
``order.quote`` call, its records, its result read from the engine's RESULT records,
and the exact conversion of decimal levels. No engine here: results are made up."""

from __future__ import annotations

import re

import msgspec
import numpy as np
import pytest

from core import commands
from core.errors import ParseError
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    MAX_QUOTE_LEVELS,
    RESULT_DTYPE,
    CommandKind,
    QuoteAction,
    Result,
    Side,
    viabtc_code,
)
from ipc import wire
from ipc.wire import FrameKind

BID, ASK = int(Side.BID), int(Side.ASK)
MARKET = wire.MarketInfo(0, "BTC_USDT", 0, 2, 6, 2, 4, 10, 10**12, 10**9)  # 6 and 2 places


def decoded_calls(*calls: object) -> list[object]:
    body = msgspec.msgpack.encode(list(calls))
    header = wire.HEADER.pack(
        wire.MAGIC, wire.WIRE_VERSION, FrameKind.CALLS, 0, len(calls), 0, 0, 1, len(body), 0
    )
    frame = wire.decode_request(header + body)
    assert isinstance(frame, wire.CallsFrame)
    return list(frame.calls)


# --------------------------------------------------------------------------- the call


def test_the_quote_call_round_trips_as_a_map_tagged_order_quote() -> None:
    call = wire.Quote(7, 1, [(99, 5), (98, 6)], [(101, 7)], 20, 10, "mm")
    frame = wire.decode_request(wire.encode_calls([call], 3))
    assert isinstance(frame, wire.CallsFrame)
    assert frame.calls == [call]
    assert wire.op_of(call) == "order.quote"
    assert msgspec.msgpack.decode(wire.encode_calls([call], 3)[32:]) == [
        {
            "op": "order.quote", "user": 7, "market": 1, "bids": [[99, 5], [98, 6]],
            "asks": [[101, 7]], "taker_rate": 20, "maker_rate": 10, "source": "mm",
        }
    ]  # fmt: skip
    (minimal,) = decoded_calls({"op": "order.quote", "user": 7, "market": 0})
    assert minimal == wire.Quote(7, 0)  # no level: removes the quote


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"bids": [[1, 1]] * (MAX_QUOTE_LEVELS + 1)}, r"length <= 32 - at `\$.bids`"),
        ({"asks": [[1, 1, 1]]}, r"length 2, got 3 - at `\$.asks\[0\]`"),
        ({"asks": [["1", 1]]}, r"Expected `int`, got `str` - at `\$.asks\[0\]\[0\]`"),
        ({"bids": [[2**63, 1]]}, r"Expected `int` <= 9223372036854775807"),
        ({"source": "x" * 31}, "source must be at most 30 bytes"),
        ({"levels": []}, "unknown field `levels`"),
    ],
)
def test_the_decoder_refuses_a_malformed_quote_call_alone(
    fields: dict[str, object], match: str
) -> None:
    good = {"op": "order.cancel", "user": 7, "market": 0, "order_id": 5}
    bad, fine = decoded_calls({"op": "order.quote", "user": 7, "market": 0, **fields}, good)
    assert isinstance(bad, wire.WireError)
    assert bad.code == Result.INVALID_ARGUMENT
    assert bad.message.startswith("call 0: ")
    assert re.search(match, bad.message), bad.message
    assert fine == wire.Cancel(7, 0, 5)  # the other calls of the frame run


def test_a_quote_built_in_python_is_checked_too() -> None:
    with pytest.raises(ValueError, match="more than 32 levels"):
        wire.Quote(7, 0, [(1, 1)] * 33)
    with pytest.raises(ValueError, match=r"bids\[0\] must be a \(price, amount\) pair"):
        wire.quote_call(7, 0, [(1, 2, 3)])
    with pytest.raises(ValueError, match=r"asks\[1\]: price and amount must be int64"):
        wire.quote_call(7, 0, [], [(1, 2), (True, 2)])
    with pytest.raises(ValueError, match="source must be at most 30 bytes"):
        wire.quote_call(7, 0, source="\u20ac" * 11)
    made = wire.quote_call(7, 0, [[np.int64(99), 5]], ((101, np.int32(6)),), 2, 1, "s")
    assert made == wire.Quote(7, 0, [(99, 5)], [(101, 6)], 2, 1, "s")
    assert all(type(v) is int for v in (*made.bids[0], *made.asks[0]))


def test_a_quote_is_its_header_then_a_record_per_bid_then_per_ask() -> None:
    call = wire.Quote(7, 1, [(99, 5), (98, 6)], [(101, 7)], 20, 10, "mm")
    records = call.record()

    assert records.dtype == COMMAND_DTYPE
    assert records["kind"].tolist() == [CommandKind.QUOTE] + [CommandKind.QUOTE_LEVEL] * 3
    assert records["user"].tolist() == [7] * 4
    assert records["market"].tolist() == [1] * 4
    assert int(records["amount"][0]) == 3  # k
    assert (int(records["taker_rate"][0]), int(records["maker_rate"][0])) == (20, 10)
    assert bytes(records["source"][0][: records["source_len"][0]]) == b"mm"
    levels = records[1:]
    assert levels["side"].tolist() == [BID, BID, ASK]
    assert levels["price"].tolist() == [99, 98, 101]
    assert levels["amount"].tolist() == [5, 6, 7]
    assert levels["taker_rate"].tolist() == [0] * 3  # a level uses side, price, amount
    expected = commands.quote(
        7, 1, [(BID, 99, 5), (BID, 98, 6), (ASK, 101, 7)], 20, 10, source=b"mm"
    )
    assert records.tobytes() == expected.tobytes()
    stamped = wire.quote_records(7, 1, [(99, 5)], ts_ns=123)
    assert stamped["ts_ns"].tolist() == [123, 123]
    assert wire.Quote(7, 1).record().tobytes() == commands.quote(7, 1, []).tobytes()


# --------------------------------------------------------------------------- the result


def engine_results(records: np.ndarray, code: Result = Result.OK) -> np.ndarray:
    """Results as the engine gives them for ``records``: the header's seq 9, 2 stale
    orders cancelled, 3 events from event 1; the levels' order ids and actions."""
    results = np.zeros(len(records), dtype=RESULT_DTYPE)
    results["code"] = code
    if code == Result.OK:
        results[0]["seq"] = 9
        results[0]["value"] = 2
        results[0]["event_start"] = 1
        results[0]["event_count"] = 3
        actions = [QuoteAction.KEPT, QuoteAction.NEW, QuoteAction.SHRUNK, QuoteAction.GROWN]
        results["order_id"][1:] = [40 + i for i in range(len(records) - 1)]
        results["value"][1:] = actions[: len(records) - 1]
    return results


def test_quote_done_reads_the_header_and_each_level() -> None:
    call = wire.Quote(7, 0, [(99, 5), (98, 6)], [(101, 7), (102, 1)])
    records = call.record()
    events = np.zeros(5, dtype=EVENT_DTYPE)
    events["seq"] = np.arange(5)

    done = wire.quote_done(records, engine_results(records), events, with_events=True)

    assert (done.seq, done.cancelled) == (9, 2)
    assert done.levels == [
        wire.QuoteLevel(BID, 99, 5, 40, QuoteAction.KEPT),
        wire.QuoteLevel(BID, 98, 6, 41, QuoteAction.NEW),
        wire.QuoteLevel(ASK, 101, 7, 42, QuoteAction.SHRUNK),
        wire.QuoteLevel(ASK, 102, 1, 43, QuoteAction.GROWN),
    ]
    assert done.events is not None
    assert np.frombuffer(done.events, dtype=EVENT_DTYPE)["seq"].tolist() == [1, 2, 3]
    assert wire.write_done(call, engine_results(records), events) == wire.QuoteDone(
        9, 2, done.levels
    )
    empty = wire.Quote(7, 0).record()
    assert wire.quote_done(empty, engine_results(empty), events).levels == []
    with pytest.raises(ValueError, match="2 records but 3 results"):
        wire.quote_done(records[:2], engine_results(records[:3]), events)


def test_a_quote_reply_round_trips_with_its_typed_result() -> None:
    call = wire.Quote(7, 0, [(99, 5)], [(101, 7)])
    records = call.record()
    done = wire.write_done(call, engine_results(records), np.zeros(0, dtype=EVENT_DTYPE))
    refused = wire.make_reply(call, Result.BALANCE_NOT_ENOUGH)

    frame = wire.decode_reply(
        wire.encode_replies(5, [wire.make_reply(call, Result.OK, done), refused])
    )

    assert isinstance(frame, wire.RepliesFrame)
    ok, no = frame.replies
    typed = ok.result_as(call)
    assert typed == done
    assert isinstance(typed.levels[0].action, QuoteAction)
    assert (no.code, no.viabtc, no.message) == (2001, 1, "balance not enough")
    assert no.result_as(call) is None


def test_viabtc_codes_of_quote_records_are_the_generic_ones() -> None:
    records = wire.Quote(7, 0, [(99, 5)], [(101, 7)]).record()
    for code in (Result.OK, Result.BALANCE_NOT_ENOUGH, Result.POST_ONLY_WOULD_TAKE,
                 Result.NOT_PRIMARY, Result.INTERNAL_ERROR):  # fmt: skip
        results = engine_results(records, code)
        expected = [viabtc_code("order.quote", code)] * 3
        assert wire.viabtc_codes(records, results).tolist() == expected
    assert wire.METHODS[CommandKind.QUOTE] == wire.METHODS[CommandKind.QUOTE_LEVEL]


# --------------------------------------------------------------------------- decimal text


@pytest.mark.parametrize(
    ("level", "expected"),
    [(["8000.5", "0.25"], (800_050, 250_000)), (["1e3", "0.000001"], (100_000, 1)),
     (["0.01", "1000000"], (1, 10**12))],
)  # fmt: skip
def test_a_decimal_level_converts_exactly(level: list[str], expected: tuple[int, int]) -> None:
    assert wire.parse_level(MARKET, level) == expected


@pytest.mark.parametrize(
    ("level", "match"),
    [
        (
            ["8000.001", "1"],
            "bids[2] price '8000.001' has more decimal places than the 2 of "
            "market BTC_USDT's prices (money_prec), so it cannot be represented exactly",
        ),
        (["8000", "0.0000001"], "bids[2] amount '0.0000001' has more decimal places than the 6"),
        (["0", "1"], "bids[2] price '0' is out of range: 0.01..10000000"),
        (["8000", "-1"], "bids[2] amount '-1' is out of range: 0.000001..1000000"),
        (["10000000.01", "1"], "bids[2] price '10000000.01' is out of range"),
        ([8000, "1"], "bids[2] price must be a string"),
        (["8000", "abc"], "bids[2] amount: not a decimal number: 'abc'"),
        (["8000"], r"bids[2] must be a [price, amount] pair of strings"),
        ("8000", r"bids[2] must be a [price, amount] pair of strings"),
    ],
)
def test_a_decimal_level_that_is_not_exact_or_in_range_is_refused(
    level: object, match: str
) -> None:
    with pytest.raises(ParseError) as info:
        wire.parse_level(MARKET, level, "bids[2]")
    assert str(info.value).startswith(match)
