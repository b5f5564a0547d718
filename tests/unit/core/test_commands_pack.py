"""``commands.pack`` writes the bytes the field-by-field builders write."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import commands
from core.schema import CommandKind

i64 = st.integers(-(2**63), 2**63 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
i8 = st.integers(-128, 127)
i16 = st.integers(-(2**15), 2**15 - 1)
sources = st.binary(max_size=32)


@given(i64, i16, i8, i64, i64, i32, i32, i64, i8, i8, i8, sources)
def test_pack_equals_the_builders(
    user: int, market: int, side: int, amount: int, price: int, taker: int, maker: int,
    ts_ns: int, tif: int, stp: int, flags: int, source: bytes,
) -> None:  # fmt: skip
    built = commands.put_limit(
        user, market, side, amount, price, taker, maker,
        ts_ns=ts_ns, tif=tif, stp=stp, flags=flags, source=source,
    )  # fmt: skip
    packed = commands.pack(
        CommandKind.PUT_LIMIT, user, market, side=side, amount=amount, price=price,
        taker_rate=taker, maker_rate=maker, ts_ns=ts_ns, tif=tif, stp=stp, flags=flags,
        source=source,
    )  # fmt: skip
    assert packed.tobytes() == built.tobytes()
    assert packed.flags.writeable
    market_order = commands.put_market(user, market, side, amount, taker, ts_ns=ts_ns)
    assert market_order.tobytes() == commands.pack(
        CommandKind.PUT_MARKET, user, market, side=side, amount=amount, taker_rate=taker,
        ts_ns=ts_ns, tif=1,
    ).tobytes()  # fmt: skip
    assert (
        commands.cancel(user, market, amount, ts_ns=ts_ns).tobytes()
        == commands.pack(CommandKind.CANCEL, user, market, order_id=amount, ts_ns=ts_ns).tobytes()
    )


def test_a_value_outside_its_field_is_refused() -> None:
    with pytest.raises(struct.error):
        commands.pack(CommandKind.PUT_LIMIT, 1, 0, side=128)
    with pytest.raises(struct.error):
        commands.pack(CommandKind.PUT_LIMIT, 2**63, 0)
