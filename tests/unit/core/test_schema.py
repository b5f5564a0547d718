"""Golden layouts: changing a record layout must be deliberate (bump SCHEMA_VERSION)."""

from __future__ import annotations

import numpy as np
import pytest

from core import schema
from core.schema import Result, viabtc_code

pytestmark = pytest.mark.kernel


def offsets(dtype: np.dtype) -> dict[str, int]:
    assert dtype.fields is not None
    return {name: spec[1] for name, spec in dtype.fields.items()}


def test_schema_version() -> None:
    assert schema.SCHEMA_VERSION == 2


@pytest.mark.parametrize(
    ("dtype", "size", "some_offsets"),
    [
        (schema.COMMAND_DTYPE, 88, {"ts_ns": 0, "user": 8, "market": 48, "kind": 50, "source": 56}),
        (schema.RESULT_DTYPE, 40, {"seq": 0, "code": 24, "event_count": 32}),
        (
            schema.WORK_DTYPE,
            128,
            {"ts_ns": 0, "source": 56, "dispatch": 88, "new_id": 96, "acct": 120, "op": 124},
        ),
        (schema.DONE_DTYPE, 32, {"dispatch": 0, "order_id": 8, "code": 24, "event_count": 28}),
        (schema.EVENT_DTYPE, 184, {"seq": 0, "kind": 132, "source": 140, "mtime_ns": 172}),
        (schema.ORDER_DTYPE, 64, {"id": 0, "left": 16, "next": 40, "acct": 52, "tif": 63}),
        (schema.ORDER_INFO_DTYPE, 40, {"amount": 0, "mtime_ns": 16, "source": 36}),
        (schema.LEVEL_DTYPE, 32, {"price": 0, "total": 8, "head": 20, "next_free": 28}),
        (schema.KLINE_DTYPE, 72, {"start": 0, "low": 32, "volume_lo": 48, "deal_lo": 64}),
        (schema.ASSET_ROW_DTYPE, 32, {"name": 0, "prec": 16, "prec_show": 24}),
        (schema.MARKET_ROW_DTYPE, 128, {"name": 0, "fee_prec": 48, "table_limits": 56}),
    ],
)
def test_record_layouts_are_pinned(
    dtype: np.dtype, size: int, some_offsets: dict[str, int]
) -> None:
    assert dtype.itemsize == size
    got = offsets(dtype)
    for name, offset in some_offsets.items():
        assert got[name] == offset, name


def test_no_unsigned_or_float_money_fields() -> None:
    for dtype in (
        schema.COMMAND_DTYPE,
        schema.EVENT_DTYPE,
        schema.ORDER_DTYPE,
        schema.ORDER_INFO_DTYPE,
        schema.KLINE_DTYPE,
    ):
        for name, (field, _) in (dtype.fields or {}).items():
            base = field.base
            assert base.kind != "f", name
            if base.kind == "u":
                assert name in ("source", "_pad"), name


def test_an_order_record_is_one_cache_line() -> None:
    # What the matcher touches per maker: one 64-byte line (docs/engine.md, "Memory").
    assert schema.ORDER_DTYPE.itemsize == 64
    assert schema.ORDER_FLAG_MARKET & schema.OrderFlag.POST_ONLY == 0


def test_every_result_has_a_message() -> None:
    assert set(schema.MESSAGES) == set(Result)


@pytest.mark.parametrize(
    ("method", "result", "code"),
    [
        ("order.put_limit", Result.BALANCE_NOT_ENOUGH, 10),
        ("order.put_limit", Result.AMOUNT_TOO_SMALL, 11),
        ("order.put_market", Result.NO_ENOUGH_TRADER, 12),
        ("order.cancel", Result.ORDER_NOT_FOUND, 10),
        ("order.cancel", Result.USER_NOT_MATCH, 11),
        ("balance.update", Result.REPEAT_UPDATE, 10),
        ("balance.update", Result.BALANCE_NOT_ENOUGH, 11),
        ("order.put_limit", Result.POST_ONLY_WOULD_TAKE, 1),
        ("order.put_limit", Result.UNKNOWN_MARKET, 1),
        ("balance.update", Result.USER_TABLE_FULL, 3),
        ("order.put_limit", Result.INTERNAL_ERROR, 2),
        ("order.put_limit", Result.OK, 0),
    ],
)
def test_viabtc_codes(method: str, result: Result, code: int) -> None:
    assert viabtc_code(method, result) == code
