"""The numba engine's price arrays: emptied levels kept dead, revived, popped, compacted.

Each test also runs the reference engine and compares events and state hashes: the
dead entries must never be visible.
"""

from __future__ import annotations

import numpy as np
import pytest

from core import commands as C
from core.engine import Engine
from core.kernels.book import DEAD_RATIO, DEAD_SLACK
from core.kernels.layout import B_MSTATE, MS_NDEAD, MS_NLEVELS
from core.reference import ReferenceEngine
from core.schema import Result, Side
from tests.support.scenario import make_config

pytestmark = pytest.mark.kernel

BTC, USDT = 0, 2
ASK_ENTRIES = MS_NLEVELS  # + side - 1, side ASK = 1
ASK_DEAD = MS_NDEAD


class Pair:
    """The numba engine and the reference, fed the same commands."""

    def __init__(self, max_levels: int) -> None:
        config = make_config(max_orders=4 * max_levels, max_levels=max_levels)
        self.fast, self.slow = Engine(config), ReferenceEngine(config)
        for engine in (self.fast, self.slow):
            assert engine.balance_update(1, BTC, b"d", 1, 10**15, 1)[0]["code"] == Result.OK

    def run(self, commands: np.ndarray, check: bool = True) -> np.ndarray:
        (r1, e1), (r2, e2) = self.fast.execute(commands), self.slow.execute(commands)
        assert np.array_equal(r1, r2)
        assert np.array_equal(e1, e2)
        if check:
            self.check()
        return r1

    def check(self) -> None:
        assert self.fast.check_invariants() == []
        assert self.fast.state_hash() == self.slow.state_hash()

    def asks(self, prices: range | list[int]) -> list[int]:
        results = self.run(C.batch(*(C.put_limit(1, 0, Side.ASK, 1000, p) for p in prices)))
        assert (results["code"] == Result.OK).all()
        return [int(i) for i in results["order_id"]]

    def cancel(self, ids: list[int], check: bool = True) -> None:
        results = self.run(C.batch(*(C.cancel(1, 0, i) for i in ids)), check)
        assert (results["code"] == Result.OK).all()

    def entries(self) -> tuple[int, int]:
        ms = self.fast._book[B_MSTATE][0]
        return int(ms[ASK_ENTRIES]), int(ms[ASK_DEAD])

    def ask_prices(self) -> list[int]:
        return [p for p, _ in self.fast.depth(0, 1000, 0)[0]]


def test_an_emptied_level_below_the_best_stays_dead_and_is_revived_in_place() -> None:
    pair = Pair(max_levels=100)
    ids = pair.asks(range(10_000, 10_010))
    pair.cancel([ids[4]])
    assert pair.entries() == (10, 1)
    assert 10_004 not in pair.ask_prices()
    pair.asks([10_004])
    assert pair.entries() == (10, 0)
    assert pair.ask_prices() == list(range(10_000, 10_010))


def test_emptying_the_best_pops_the_dead_entries_under_it() -> None:
    pair = Pair(max_levels=100)
    ids = pair.asks(range(10_000, 10_005))
    pair.cancel([ids[1], ids[2]])
    assert pair.entries() == (5, 2)
    pair.cancel([ids[0]])
    assert pair.entries() == (2, 0)
    assert pair.ask_prices() == [10_003, 10_004]


def test_dead_entries_outnumbering_the_live_ones_are_compacted() -> None:
    pair = Pair(max_levels=1000)
    ids = pair.asks(range(10_000, 10_300))
    # Cancel from the worst end inwards: every level emptied is below the best.
    compactions = 0
    previous_dead = 0
    for n, oid in enumerate(ids[:0:-1], start=1):
        pair.cancel([oid], check=False)
        entries, dead = pair.entries()
        live = 300 - n
        assert entries - dead == live
        assert dead <= DEAD_RATIO * live + DEAD_SLACK
        if dead < previous_dead:
            assert dead == 0
            compactions += 1
            pair.check()
        previous_dead = dead
    # 5n > 4 * 300 + 64 first holds at n = 253: one compaction, then 46 dead again.
    assert compactions == 1
    assert pair.entries() == (47, 46)
    assert pair.ask_prices() == [10_000]
    pair.check()


def test_a_full_array_drops_its_dead_entries_to_make_room() -> None:
    pair = Pair(max_levels=10)
    ids = pair.asks(range(10_000, 10_010))
    pair.cancel(ids[3:8])
    assert pair.entries() == (10, 5)
    pair.asks(range(20_000, 20_005))  # new prices: the dead entries must go first
    assert pair.entries() == (10, 0)
    results = pair.run(C.put_limit(1, 0, Side.ASK, 1000, 30_000))
    assert results["code"][0] == Result.BOOK_FULL
