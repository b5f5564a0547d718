"""The catalog's calls on the wire (ipc/wire_catalog.py; docs/protocol.md, "Adding
assets and markets"): ``asset.add`` and ``market.add`` as maps tagged by op, the
config table each carries (a ``[[markets]]`` table's every key, the room's defaults),
``core.catalog``'s messages for a refusal, and why they need no new wire version (a
decoder that does not know an op refuses that call alone)."""

from __future__ import annotations

import functools
import operator
import typing
from dataclasses import fields
from typing import Any

import msgspec
import pytest

from core.config import AssetConfig, MarketConfig
from core.schema import Result
from ipc import wire
from ipc.wire_header import WIRE_VERSION
from tests.support.scenario import make_config

RID = 77


def decoded(*calls: dict[str, Any]) -> list[wire.Call | wire.WireError]:
    body = msgspec.msgpack.encode(list(calls))
    head = wire.HEADER.pack(
        wire.MAGIC, WIRE_VERSION, wire.FrameKind.CALLS, 0, len(calls), 0, 0, RID, len(body), 0
    )
    frame = wire.decode_request(head + body)
    assert isinstance(frame, wire.CallsFrame)
    return frame.calls


def test_the_calls_round_trip_as_maps_of_the_settings_given() -> None:
    calls: list[wire.Call] = [
        wire.AssetAdd("DOGE", 8),
        wire.AssetAdd("SHIB", 10, 2),
        wire.MarketAdd("DOGE_USDT", "DOGE", "USDT", 2, 6, min_amount="0.01", max_orders=500),
    ]
    frame = wire.decode_request(wire.encode_calls(calls, RID))
    assert isinstance(frame, wire.CallsFrame)
    assert frame.calls == calls
    body = msgspec.msgpack.decode(wire.encode_calls(calls, RID)[32:])
    assert body == [
        {"op": "asset.add", "name": "DOGE", "prec": 8},  # left out: not sent
        {"op": "asset.add", "name": "SHIB", "prec": 10, "prec_show": 2},
        {
            "op": "market.add", "name": "DOGE_USDT", "stock": "DOGE", "money": "USDT",
            "stock_prec": 2, "money_prec": 6, "min_amount": "0.01", "max_orders": 500,
        },
    ]  # fmt: skip
    assert [wire.op_of(t) for t in wire.CATALOG_CALLS] == ["asset.add", "market.add"]
    assert all(wire.RESULT_TYPES[t] is wire.CommandDone for t in wire.CATALOG_CALLS)
    assert not any(isinstance(c, wire.OrderCall) for c in calls)  # no engine record


def test_market_add_takes_every_key_of_a_markets_table() -> None:
    keys = [f.name for f in fields(MarketConfig)]
    assert list(wire.MarketAdd.__struct_fields__) == keys
    assert list(wire.REQUIRED_MARKET_SETTINGS) == keys[:5]
    assert wire.optional_market_settings() == tuple(keys[5:])
    assert list(wire.AssetAdd.__struct_fields__) == [f.name for f in fields(AssetConfig)]


def test_the_entry_takes_the_config_defaults_and_the_reserved_room() -> None:
    config = make_config(max_markets=4, added_market_orders=300, added_market_levels=40)
    plain = wire.MarketAdd("DOGE_USDT", "DOGE", "USDT", 2, 6).entry(config)
    assert plain == MarketConfig(
        "DOGE_USDT", "DOGE", "USDT", 2, 6, max_orders=300, max_levels=40
    )  # fee_prec, min_amount, ...: MarketConfig's own defaults
    given = wire.MarketAdd(
        "X_Y", "X", "Y", 1, 2, fee_prec=6, max_orders=10, max_levels=5, price_band="0.1"
    ).entry(config)
    assert (given.fee_prec, given.max_orders, given.max_levels) == (6, 10, 5)
    assert given.price_band == "0.1"
    assert wire.AssetAdd("DOGE", 8).entry(config) == AssetConfig("DOGE", 8, None)


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (wire.AssetAdd("BTC", 8), Result.ASSET_EXISTS, "asset 'BTC' exists"),
        (wire.AssetAdd("DOGE", 19), Result.INVALID_ARGUMENT, "prec"),
        (wire.AssetAdd("_DOGE", 8), Result.INVALID_ARGUMENT, "asset name '_DOGE' must be"),
        (wire.MarketAdd("BTC_USDT", "BTC", "USDT", 6, 2), Result.MARKET_EXISTS,
         "market 'BTC_USDT' exists"),
        (wire.MarketAdd("DOGE_USDT", "DOGE", "USDT", 2, 6), Result.UNKNOWN_ASSET,
         "market DOGE_USDT: asset 'DOGE' is not in the catalog"),
        (wire.MarketAdd("ETH_USDT", "ETH", "USDT", 4, 2, max_orders=301), Result.INVALID_ARGUMENT,
         "max_orders 301 is above engine.added_market_orders = 300"),
        (wire.MarketAdd("ETH_USDT", "ETH", "USDT", 4, 2, min_amount="0.00001"),
         Result.INVALID_ARGUMENT, "min_amount"),
    ],
)  # fmt: skip
def test_a_refusal_reads_as_the_catalog_says_it(
    call: wire.CatalogCall, code: Result, message: str
) -> None:
    config = make_config(max_markets=4, added_market_orders=300)
    got = call.refusal(config, code)
    assert message in got
    assert call.refusal(config, Result.SERVICE_UNAVAILABLE) == ""  # not the catalog's code


def test_a_full_catalog_is_the_table_full_refusal() -> None:
    config = make_config()  # no room: max_assets and max_markets are the configured ones
    asset = wire.AssetAdd("DOGE", 8)
    assert asset.refusal(config, Result.ASSET_TABLE_FULL) == (
        "the catalog holds engine.max_assets = 3 assets"
    )
    market = wire.MarketAdd("ETH_USDT", "ETH", "USDT", 4, 2)
    assert market.refusal(config, Result.MARKET_TABLE_FULL) == (
        "the catalog holds engine.max_markets = 2 markets"
    )
    roomy = make_config(max_assets=4, max_markets=3)
    assert asset.refusal(roomy, Result.ASSET_TABLE_FULL) == ""  # accepted: no message


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"op": "asset.add", "name": "DOGE"}, "missing required field `prec`"),
        ({"op": "asset.add", "name": "DOGE", "prec": 8, "supply": 5}, "unknown field `supply`"),
        ({"op": "market.add", "name": "X_Y", "stock": "X", "money": "Y", "stock_prec": 2,
          "money_prec": 2, "min_amount": 0.01}, "`$.min_amount`"),
        ({"op": "market.add", "name": "X" * 101, "stock": "X", "money": "Y", "stock_prec": 2,
          "money_prec": 2}, "length <= 100"),
    ],
)  # fmt: skip
def test_a_malformed_catalog_call_fails_alone_naming_its_field(
    call: dict[str, Any], field: str
) -> None:
    bad, good = decoded(call, {"op": "asset.list"})
    assert isinstance(bad, wire.WireError)
    assert bad.code == Result.INVALID_ARGUMENT
    assert field in bad.message
    assert good == wire.AssetList()


def test_a_decoder_without_the_calls_refuses_them_alone() -> None:
    """Why the calls needed no new wire version: a version-4 server from before
    decodes calls as this decoder does (the same union without them), so it answers
    each catalog call 1001 naming its op, and the rest of the frame runs; a client
    from before never sends them, and their result is ``CommandDone``, which every
    version-4 client reads."""
    old = [t for t in typing.get_args(wire.AnyCall) if t not in wire.CATALOG_CALLS]
    decoder = msgspec.msgpack.Decoder(functools.reduce(operator.or_, old))
    add = msgspec.msgpack.encode(wire.AssetAdd("DOGE", 8))
    with pytest.raises(msgspec.ValidationError, match=r"Invalid value 'asset.add' - at `\$.op`"):
        decoder.decode(add)
    assert decoder.decode(msgspec.msgpack.encode(wire.AssetList())) == wire.AssetList()
