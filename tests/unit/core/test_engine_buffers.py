"""The numba engine's event buffer: bounded by what a command can reach, never overrun."""

from __future__ import annotations

import numpy as np
import pytest

from core import commands as C
from core.engine import Engine
from core.reference import ReferenceEngine
from core.schema import Result, Side, StpMode
from tests.support.scenario import make_config

BTC, USDT = 0, 2
STOCK_UNITS_PER_LOT = 10**4  # BTC prec 10, BTC_USDT stock_prec 6


def deep_book(engine: Engine | ReferenceEngine, makers: int) -> np.ndarray:
    """``makers`` one-lot asks at rising prices by users 2..9, the taker (user 1) funded."""
    assert engine.balance_update(1, USDT, b"d", 1, 10**16, 1)[0]["code"] == Result.OK
    for user in range(2, 10):
        engine.balance_update(user, BTC, b"d", 1, 10**15, 1)
    asks = C.batch(
        *(C.put_limit(2 + i % 8, 0, Side.ASK, 1000, 10_000 + i, 10, 5) for i in range(makers))
    )
    results, _ = engine.execute(asks)
    assert (results["code"] == Result.OK).all()
    return asks


@pytest.mark.parametrize("stp", [StpMode.NONE, StpMode.CANCEL_MAKER])
def test_a_sweep_larger_than_the_buffer_gives_the_reference_events(stp: StpMode) -> None:
    config = make_config(max_orders=2000, max_levels=2000)
    fast, slow = Engine(config, event_capacity=8), ReferenceEngine(config)
    for engine in (fast, slow):
        deep_book(engine, 600)
    sweep = C.batch(
        C.put_limit(1, 0, Side.BID, 400 * 1000, 20_000, 20, 10, stp=stp),
        C.put_market(1, 0, Side.BID, 10**13, 20, stp=stp),
    )
    (r1, e1), (r2, e2) = fast.execute(sweep), slow.execute(sweep)
    assert np.array_equal(r1, r2)
    assert np.array_equal(e1, e2)
    assert e1.shape[0] > 600 * 8  # far beyond the initial capacity of 8
    assert fast.state_hash() == slow.state_hash()
    assert fast.check_invariants() == []


def test_a_deep_book_does_not_grow_the_buffer() -> None:
    engine = Engine(make_config(max_orders=5000, max_levels=5000), event_capacity=64)
    deep_book(engine, 3000)
    capacity = engine._events.shape[0]
    # Orders that rest or replace without crossing need a handful of events each,
    # however many orders rest on the other side.
    bids = C.batch(*(C.put_limit(1, 0, Side.BID, 1000, 9_000 - i, 20, 10) for i in range(10)))
    results, _ = engine.execute(bids)
    assert (results["code"] == Result.OK).all()
    moves = C.batch(*(C.replace(1, 0, int(oid), 8_000, 500) for oid in results["order_id"]))
    results, _ = engine.execute(moves)
    assert (results["code"] == Result.OK).all()
    assert engine._events.shape[0] == capacity


def test_execute_copies_and_execute_view_does_not() -> None:
    engine = Engine(make_config())
    engine.balance_update(1, USDT, b"d", 1, 10**12, 1)
    cmd = C.put_limit(1, 0, Side.BID, 1000, 10_000, 20, 10)
    results, events = engine.execute(cmd)
    view_results, view_events = engine.execute_view(cmd)
    assert not np.shares_memory(results, engine._results)
    assert not np.shares_memory(events, engine._events)
    assert np.shares_memory(view_results, engine._results)
    assert np.shares_memory(view_events, engine._events)
    assert int(view_results[0]["order_id"]) == int(results[0]["order_id"]) + 1
