"""What a resting order costs the numba engine, and the interned source tags."""

from __future__ import annotations

import numpy as np
import pytest

from core import commands as C
from core.engine import Engine
from core.kernels.layout import B_SRC_STATE, SS_BUMP
from core.reference import ReferenceEngine
from core.schema import Result, Side, TimeInForce
from tests.support.scenario import make_config

pytestmark = pytest.mark.kernel

BTC, USDT = 0, 2


def funded(engine: Engine | ReferenceEngine, users: int) -> None:
    for user in range(1, users + 1):
        assert engine.balance_update(user, BTC, b"d", 1, 10**15, 1)[0]["code"] == Result.OK
        assert engine.balance_update(user, USDT, b"d", 1, 10**15, 1)[0]["code"] == Result.OK


def asks(n: int, source: bytes | None = None, first_price: int = 10_000) -> np.ndarray:
    """``n`` one-lot asks by users 1..4 at rising prices, tagged ``source`` or uniquely."""
    return C.batch(
        *(
            C.put_limit(
                1 + i % 4,
                0,
                Side.ASK,
                1000,
                first_price + i,
                source=source if source is not None else b"tag-%d" % i,
            )
            for i in range(n)
        )
    )


def test_a_resting_order_costs_at_most_120_bytes() -> None:
    engine = Engine(make_config(max_orders=1000, max_levels=1000))
    # 64-byte pool record + 40-byte info record + a 4-byte index slot at most a quarter
    # full (the table is the power of two at or above twice the capacity).
    assert 104 < engine.bytes_per_order() <= 120


def test_orders_sharing_a_tag_hold_one_copy() -> None:
    engine = Engine(make_config(max_orders=1000, max_levels=1000))
    funded(engine, 4)
    results, _ = engine.execute(asks(100, b"web"))
    assert (results["code"] == Result.OK).all()
    assert engine.live_tags() == 1
    assert engine.check_invariants() == []


def test_a_tag_is_freed_with_its_last_order_and_its_id_reused() -> None:
    config = make_config(max_orders=300, max_levels=300)
    fast, slow = Engine(config), ReferenceEngine(config)
    for engine in (fast, slow):
        funded(engine, 4)
    for round_ in range(3):
        placed = asks(200, first_price=10_000 + 1000 * round_)
        (r1, e1), (r2, e2) = fast.execute(placed), slow.execute(placed)
        assert (r1["code"] == Result.OK).all()
        assert np.array_equal(r1, r2)
        assert np.array_equal(e1, e2)
        assert fast.live_tags() == 200
        half = C.batch(*(C.cancel(1 + i % 4, 0, int(r1["order_id"][i])) for i in range(0, 200, 2)))
        (r1, e1), (r2, e2) = fast.execute(half), slow.execute(half)
        assert (r1["code"] == Result.OK).all()
        assert np.array_equal(r1, r2)
        assert np.array_equal(e1, e2)
        assert fast.live_tags() == 100
        assert fast.check_invariants() == []
        assert fast.state_hash() == slow.state_hash()
        everything = C.batch(*(C.cancel_all(user, 0) for user in range(1, 5)))
        fast.execute(everything)
        slow.execute(everything)
        assert fast.live_tags() == 0
    # Ids of freed tags were reused: three rounds of 200 never needed more than 200.
    assert fast._book[B_SRC_STATE][SS_BUMP] == 1 + 200
    assert fast.check_invariants() == []


def test_takers_that_do_not_rest_let_go_of_their_tags() -> None:
    engine = Engine(make_config(max_orders=100, max_levels=100))
    funded(engine, 4)
    engine.execute(asks(10, b"maker"))
    takers = C.batch(
        C.put_limit(4, 0, Side.BID, 3000, 10_002, source=b"ioc", tif=TimeInForce.IOC),
        C.put_limit(4, 0, Side.BID, 1000, 10_003, source=b"fills-whole"),
        C.put_market(4, 0, Side.BID, 10**12, source=b"market"),
    )
    results, _ = engine.execute(takers)
    assert (results["code"] == Result.OK).all()
    assert engine.live_tags() == 0  # every maker was taken; no taker rests
    assert engine.check_invariants() == []


def test_a_full_book_of_distinct_tags_is_book_full_not_a_tag_limit() -> None:
    engine = Engine(make_config(max_orders=50, max_levels=100))
    funded(engine, 4)
    results, _ = engine.execute(asks(51))
    assert (results["code"][:50] == Result.OK).all()
    assert results["code"][50] == Result.BOOK_FULL
    assert engine.live_tags() == 50
    assert engine.check_invariants() == []


def test_an_engine_rebuilt_from_its_state_arrays_is_the_same_engine() -> None:
    config = make_config(max_orders=300, max_levels=300)
    engine = Engine(config)
    funded(engine, 4)
    engine.execute(asks(150))
    copy = Engine(config, state={k: v.copy() for k, v in engine.state_arrays().items()})
    assert copy.state_hash() == engine.state_hash()
    assert copy.check_invariants() == []
    more = C.batch(C.put_limit(4, 0, Side.BID, 5000, 10_100), C.cancel(1, 0, 5), C.cancel_all(2, 0))
    (r1, e1), (r2, e2) = engine.execute(more), copy.execute(more)
    assert np.array_equal(r1, r2)
    assert np.array_equal(e1, e2)


def test_state_arrays_of_another_config_are_refused() -> None:
    small = Engine(make_config(max_orders=100, max_levels=100))
    with pytest.raises(ValueError, match="different market parameters"):
        Engine(make_config(max_orders=200, max_levels=100), state=small.state_arrays())
    with pytest.raises(ValueError, match=r"'account_keys' is int64 .* this config needs"):
        Engine(
            make_config(max_orders=100, max_levels=100, max_users=50), state=small.state_arrays()
        )
    partial = dict(small.state_arrays())
    del partial["orders"]
    with pytest.raises(ValueError, match="missing \\['orders'\\]"):
        Engine(make_config(max_orders=100, max_levels=100), state=partial)
