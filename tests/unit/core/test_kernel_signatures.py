"""Each kernel the engine calls from Python compiles exactly once (no silent recompiles
when a dtype or an argument type drifts)."""

from __future__ import annotations

import os

import pytest

from core import commands as C
from core.compose import compose_engine
from core.engine import Engine
from core.kernels import balance, book, compose, inspect, match
from core.schema import Side
from tests.support.scenario import make_config

ENTRY_POINTS = [
    match.execute_batch,
    balance.account_of,
    balance.balance_update,
    balance.add_account,
    book.init_market,
    book.index_find,
    book.user_orders,
    inspect.side_slots,
    inspect.user_slots,
    inspect.depth,
    inspect.reserves,
    inspect.validate_book,
    compose.merge_market,
]


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_every_entry_point_has_one_signature() -> None:
    engine = Engine(make_config())
    engine.balance_update(1, 2, b"d", 1, 10**12, 1)
    engine.balance_update(2, 0, b"d", 1, 10**12, 1)
    engine.execute(
        C.batch(
            C.put_limit(1, 0, Side.BID, 1000, 10_000, 20, 10),
            C.put_limit(2, 0, Side.ASK, 500, 9_000, 20, 10),
            C.replace(1, 0, 1, 10_001, 400),
            C.cancel_all(1, 0),
        )
    )
    engine.order(0, 1)
    engine.pending(1, 0, 0, 10)
    engine.book(0, 1, 0, 10)
    engine.depth(0, 10, 5)
    engine.balance(1, 2)
    engine.state_hash()
    assert engine.check_invariants() == []
    composed = compose_engine(engine.config, engine, [engine], [0] * len(engine.config.markets))
    assert composed.state_hash() == engine.state_hash()
    for kernel in ENTRY_POINTS:
        assert len(kernel.signatures) == 1, (kernel.__name__, kernel.signatures)
