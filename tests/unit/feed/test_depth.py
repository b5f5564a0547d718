"""``feed.depth``: the depth kept from a real engine's events equals ``Engine.depth``
(every market, several limits and merge intervals) after every read of the log, in
three worlds; diffs rebuild the depth; a snapshot taken mid-stream goes on as the
original; bad events are counted and skipped, alone, even amid good ones."""

from __future__ import annotations

import functools
import io
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from core.engine import Engine
from core.schema import EVENT_DTYPE, INT64_MAX, EventKind, FinishReason, Side
from feed.depth import DepthBook
from feed.depth_arrays import ARRAY_NAMES
from tests.support.steps import Batch, Update, resolve
from tests.support.streams import Mix, random_stream
from tests.support.world import BIG, SMALL, TIGHT, Limits, World, stream_config

SEED = 20261207
T0_NS = 1_764_547_200 * 10**9
ASK, BID = int(Side.ASK), int(Side.BID)
PUT = int(EventKind.ORDER_PUT)
UPDATE = int(EventKind.ORDER_UPDATE)
FINISH = int(EventKind.ORDER_FINISH)
DEAL = int(EventKind.DEAL)
LIMITS = (1, 2, 5, 101, 10**9)
#: No merging, merges of adjacent ticks (SMALL and BIG books span about ten ticks),
#: buckets as wide as the book, and beyond any price.
INTERVALS = (0, 1, 2, 3, 5, 1000, 2**20, 2**40, 2**62, INT64_MAX)
Depth = tuple[list[tuple[int, int]], list[tuple[int, int]]]


# --------------------------------------------------------------------------- a run

#: A depth as a tuple of tuples: equal ones are stored once.
FrozenDepth = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


def frozen(depth: Depth) -> FrozenDepth:
    return tuple(depth[0]), tuple(depth[1])


@dataclass(frozen=True)
class Read:
    """What the feed reads at once (the events of a few engine steps, 3 on average:
    an order may rest, change and go in one read), and ``Engine.depth`` for every market, limit
    and interval, and the number of resting orders, after it."""

    events: np.ndarray
    depths: dict[tuple[int, int, int], FrozenDepth]
    resting: int


@dataclass
class Run:
    """A random stream through an engine, as reads."""

    n_markets: int
    reads: list[Read] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)  #: what the stream exercised


def run_engine(n_commands: int, world: World, limits: Limits, seed: int = SEED) -> Run:
    config = stream_config(limits)
    engine = Engine(config)
    n = len(config.markets)
    run = Run(n)
    rng = np.random.default_rng(seed)
    ts = T0_NS
    prices: dict[int, int] = {}  # resting order -> price, for the tally
    interned: dict[FrozenDepth, FrozenDepth] = {}
    pending: list[np.ndarray] = []
    steps = random_stream(rng, config, n_commands, Mix(world=world))
    for i, step in enumerate(steps):
        ts += 10**9
        if isinstance(step, Update):
            _, events = engine.balance_update(
                step.user, step.asset, step.business, step.business_id, step.change, ts
            )
        else:
            assert isinstance(step, Batch)
            _, events = engine.execute(resolve(step.commands, engine, ts))
        tally(events, prices, run.seen)
        pending.append(events)
        if i + 1 < len(steps) and rng.integers(0, 3):  # reads of 3 steps on average
            continue
        depths = {}
        for key in itertools.product(range(n), LIMITS, INTERVALS):
            depth = frozen(engine.depth(*key))
            depths[key] = interned.setdefault(depth, depth)
        resting = sum(s.ask_count + s.bid_count for s in map(engine.market_summary, range(n)))
        run.reads.append(Read(np.concatenate(pending), depths, resting))
        pending = []
    return run


def tally(events: np.ndarray, prices: dict[int, int], seen: Counter[str]) -> None:
    """Count the kinds of resting-order changes in ``events`` (not vacuous tests)."""
    deals = events[events["kind"] == DEAL]
    makers, takers = set(deals["maker_order"].tolist()), set(deals["order_id"].tolist())
    for e in events[(events["kind"] >= PUT) & (events["kind"] <= FINISH)]:
        oid, kind, price = int(e["order_id"]), int(e["kind"]), int(e["price"])
        if kind == PUT:
            seen["rest"] += 1
            seen["rest after fills"] += int(e["left"] < e["amount"])
            prices[oid] = price
        elif kind == UPDATE:
            if price != prices[oid]:
                seen["replace to a new price"] += 1
                seen["replace that traded and rests"] += int(oid in takers)
            elif oid in makers:
                seen["maker partly filled"] += 1
            else:
                seen["replace at the same price"] += 1
            prices[oid] = price
        elif oid in prices:
            seen[f"resting {FinishReason(int(e['reason'])).name}"] += 1
            seen["replace that traded and left"] += int(oid in takers)
            del prices[oid]


WORLDS = {
    "small": (5000, SMALL, Limits()),
    "big": (1500, BIG, Limits()),
    "tight": (1500, SMALL, TIGHT),
}


@functools.cache
def world_run(name: str) -> Run:
    return run_engine(*WORLDS[name])


@pytest.fixture(scope="module", params=sorted(WORLDS))
def run(request: pytest.FixtureRequest) -> Run:
    return world_run(request.param)


@pytest.fixture(scope="module", autouse=True)
def _forget_runs() -> Iterator[None]:
    yield
    world_run.cache_clear()


def assert_equals_engine(book: DepthBook, read: Read, at: int) -> None:
    for key, want in read.depths.items():
        assert frozen(book.depth(*key)) == want, f"read {at}, (market, limit, interval) {key}"
    assert book.statistics().orders == read.resting


# --------------------------------------------------------------------------- oracle


def test_depth_equals_the_engines_after_every_chunk(run: Run) -> None:
    book = DepthBook(run.n_markets)
    for at, read in enumerate(run.reads):
        book.apply(read.events)
        assert_equals_engine(book, read, at)
    stats = book.statistics()
    assert stats.rejected == 0
    assert stats.order_events == sum(
        int(np.count_nonzero((r.events["kind"] >= PUT) & (r.events["kind"] <= FINISH)))
        for r in run.reads
    )


def test_the_stream_exercised_every_kind_of_change() -> None:
    run = world_run("small")
    for what in (
        "rest",
        "rest after fills",
        "maker partly filled",
        "replace to a new price",
        "replace at the same price",
        "replace that traded and rests",
        "replace that traded and left",
        "resting FILLED",
        "resting CANCELED",
        "resting SELF_TRADE",
    ):
        assert run.seen[what] >= 5, (what, run.seen)
    # The books were deep enough for limits and merging to matter.
    sizes = [len(r.depths[(m, 10**9, 0)][s]) for r in run.reads for m in (0, 1) for s in (0, 1)]
    assert max(sizes) >= 6


# --------------------------------------------------------------------------- diffs


@pytest.mark.parametrize("interval", [0, 1, 3, 2**40])
def test_changes_rebuild_the_depth(run: Run, interval: int) -> None:
    book = DepthBook(run.n_markets)
    shown: list[list[dict[int, int]]] = [[{}, {}] for _ in range(run.n_markets)]
    reported = 0
    for read in run.reads:
        book.apply(read.events)
        for m in range(run.n_markets):
            full = book.depth(m, 10**9, interval)
            for side, levels, want, sign in zip(
                shown[m], book.changes(m, interval), full, (1, -1), strict=True
            ):
                prices = [sign * p for p, _ in levels]
                assert prices == sorted(set(prices))  # best first, each once
                for price, lots in levels:
                    assert side.get(price, 0) != lots  # only real changes
                    reported += 1
                    if lots:
                        side[price] = lots
                    else:
                        del side[price]
                assert sorted(side.items(), key=lambda level: sign * level[0]) == want
            assert book.changes(m, interval) == ([], [])  # nothing since
    assert reported > 100


def test_changes_are_best_first_and_the_first_call_gives_everything() -> None:
    book = DepthBook(1)
    book.apply(events(put(1, ASK, 1005, 3), put(2, ASK, 1001, 4), put(3, BID, 990, 5),
                      put(4, BID, 995, 6)))  # fmt: skip
    assert book.changes(0) == ([(1001, 4), (1005, 3)], [(995, 6), (990, 5)])
    book.apply(events(finish(2, ASK, 1001, 4), update(3, BID, 996, 1), put(5, ASK, 1005, 2)))
    assert book.changes(0) == ([(1001, 0), (1005, 5)], [(996, 1), (990, 0)])
    # A level that changes and comes back is not reported.
    book.apply(events(put(6, ASK, 1005, 7), finish(6, ASK, 1005, 7)))
    book.apply(events(put(7, BID, 995, 1), finish(7, BID, 995, 1)))
    assert book.changes(0) == ([], [])
    # Merged to 10 ticks: 1005 and 1006 are in the bucket of 1010, whose new total shows.
    book.apply(events(put(8, ASK, 1006, 1)))
    assert book.changes(0, 10) == ([(1010, 6)], [])


# --------------------------------------------------------------------------- snapshots


def test_a_snapshot_mid_stream_goes_on_as_the_original(run: Run) -> None:
    book = DepthBook(run.n_markets)
    half = len(run.reads) // 2
    for read in run.reads[:half]:
        book.apply(read.events)
    book.changes(0)  # a baseline for market 0; market 1 has none yet
    arrays = book.to_arrays()
    assert set(arrays) == set(ARRAY_NAMES)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer) as saved:
        restored = DepthBook.from_arrays(dict(saved))
    again = restored.to_arrays()
    for name in ARRAY_NAMES:
        assert np.array_equal(again[name], arrays[name]), name
        assert again[name].dtype == np.int64
    assert restored.statistics() == book.statistics()
    for at, read in enumerate(run.reads[half:], half):
        book.apply(read.events)
        restored.apply(read.events)
        assert_equals_engine(restored, read, at)
        for m in range(run.n_markets):
            assert restored.changes(m, 2) == book.changes(m, 2)


def test_an_emptied_book_keeps_nothing() -> None:
    book = DepthBook(2)
    book.apply(events(*(put(i, ASK if i % 2 else BID, 1000 + i % 7, i) for i in range(1, 600))))
    assert book.statistics().orders == 599
    book.apply(events(*(finish(i, ASK if i % 2 else BID, 1000 + i % 7, 0) for i in range(1, 600))))
    stats = book.statistics()
    assert (stats.orders, stats.levels) == (0, 0)
    assert book.depth(0, 10, 0) == ([], [])
    arrays = book.to_arrays()
    assert all(arrays[name].shape == (0,) for name in ARRAY_NAMES if name.startswith("order"))


# --------------------------------------------------------------------------- rules


def test_the_rules_of_the_events_one_at_a_time() -> None:
    """Book before, events, book after (market 0)."""
    book = DepthBook(2)
    table: list[tuple[np.ndarray, Depth]] = [
        (events(put(1, ASK, 1005, 20)), ([(1005, 20)], [])),
        (events(put(2, ASK, 1005, 5), put(3, BID, 995, 7)), ([(1005, 25)], [(995, 7)])),
        # A taker bought 8 lots of maker 1 and did not rest: the maker's update counts.
        (
            events(deal(9, 1, 1005, 8), update(1, ASK, 1005, 12), finish(9, BID, 1010, 0)),
            ([(1005, 17)], [(995, 7)]),
        ),
        # Order 2 replaced to a new price and amount: it leaves 1005 and rests at 1007.
        (events(update(2, ASK, 1007, 9)), ([(1005, 12), (1007, 9)], [(995, 7)])),
        # A bid filled maker 1 (12 lots) and rests with its remainder (3 lots).
        (
            events(deal(10, 1, 1005, 12), finish(1, ASK, 1005, 0), put(10, BID, 1005, 3)),
            ([(1007, 9)], [(1005, 3), (995, 7)]),
        ),
        (events(finish(3, BID, 995, 7, FinishReason.CANCELED)), ([(1007, 9)], [(1005, 3)])),
        # A market order that expired never rested: its finish changes nothing.
        (events(finish(11, ASK, 0, 4, FinishReason.EXPIRED)), ([(1007, 9)], [(1005, 3)])),
        # Another market's order.
        (events(put(12, ASK, 1007, 1, market=1)), ([(1007, 9)], [(1005, 3)])),
    ]
    for batch, want in table:
        book.apply(batch)
        assert book.depth(0, 10, 0) == want
    assert book.depth(1, 10, 0) == ([(1007, 1)], [])
    assert book.statistics().rejected == 0


def test_merging_rounds_asks_up_and_bids_down_and_limits_after_merging() -> None:
    book = DepthBook(1)
    book.apply(events(put(1, ASK, 1001, 1), put(2, ASK, 1005, 2), put(3, ASK, 1006, 4),
                      put(4, BID, 999, 1), put(5, BID, 996, 2), put(6, BID, 994, 4),
                      put(7, BID, 990, 8)))  # fmt: skip
    assert book.depth(0, 10, 5) == ([(1005, 3), (1010, 4)], [(995, 3), (990, 12)])
    assert book.depth(0, 1, 5) == ([(1005, 3)], [(995, 3)])
    assert book.depth(0, 2, 0) == ([(1001, 1), (1005, 2)], [(999, 1), (996, 2)])
    assert book.depth(0, 5, -3) == book.depth(0, 5, 0)
    assert book.depth(0, 0, 5) == book.depth(0, -1, 5) == ([], [])
    assert book.depth(1, 5, 5) == book.depth(-1, 5, 5) == ([], [])
    assert book.changes(1) == ([], [])


# --------------------------------------------------------------------------- bad input


def test_bad_events_are_counted_and_skipped() -> None:
    book = DepthBook(2)
    good = events(put(1, ASK, 1005, 20), put(2, BID, 995, 7))
    book.apply(good)
    before = book.to_arrays()
    bad = events(
        update(99, ASK, 1005, 3),  # not resting
        put(1, ASK, 1006, 1),  # rests already
        update(1, BID, 1005, 3),  # another side
        finish(2, BID, 995, 7, market=1),  # another market
        put(3, ASK, 1005, 1, market=2),  # no market 2
        put(4, ASK, 1005, 1, market=-1),
        put(5, 0, 1005, 1),  # side
        put(6, ASK, 0, 1),  # price
        put(7, ASK, 1005, 0),  # left
        put(8, ASK, 2**62 + 1, 1),
        put(0, ASK, 1005, 1),  # id
    )
    bad = np.concatenate((bad, np.zeros(1, dtype=EVENT_DTYPE)))  # kind 0
    assert book.apply(bad) == 0
    after = book.to_arrays()
    for name in ARRAY_NAMES:
        if name != "counters":
            assert np.array_equal(after[name], before[name]), name
    stats = book.statistics()
    assert (stats.unknown_order, stats.duplicate_order, stats.mismatched) == (1, 1, 2)
    assert (stats.unknown_market, stats.malformed, stats.rejected) == (2, 6, 12)
    assert stats.order_events == 2
    # The good events amid bad ones are applied, in order.
    mixed = events(update(99, ASK, 1, 1), update(1, ASK, 1004, 5), put(1, ASK, 1, 1),
                   finish(1, ASK, 1004, 5), put(9, BID, 990, 2), update(9, ASK, 990, 1),
                   update(9, BID, 991, 2))  # fmt: skip
    assert book.apply(mixed) == 4
    assert book.depth(0, 10, 0) == ([], [(995, 7), (991, 2)])
    assert book.statistics().rejected == 12 + 3


def test_bad_events_in_every_chunk_leave_the_rest_exact(run: Run) -> None:
    """Bad events spliced into each chunk: each one is counted and nothing else
    changes (the per-event path, against the engine)."""
    book = DepthBook(run.n_markets)
    rng = np.random.default_rng(SEED + 3)
    spliced: Counter[str] = Counter()
    for at, read in enumerate(run.reads):
        chunk = read.events
        parts = [chunk]
        updates = np.flatnonzero(chunk["kind"] == UPDATE)
        puts = np.flatnonzero(chunk["kind"] == PUT)
        if updates.shape[0]:  # an update of the other side, just before a real one
            k = int(rng.choice(updates))
            wrong = chunk[k : k + 1].copy()
            wrong["side"] = 3 - wrong["side"]
            parts = [chunk[:k], wrong, chunk[k:]]
            spliced["mismatched"] += 1
        elif puts.shape[0]:  # a put again, just after the real one
            k = int(rng.choice(puts)) + 1
            parts = [chunk[:k], chunk[k - 1 : k], chunk[k:]]
            spliced["duplicate_order"] += 1
        stray = events(
            update(10**15 + at, ASK, 1000, 1),
            put(10**16 + at, ASK, 1000, 1, market=run.n_markets),
        )
        spliced["unknown_order"] += 1
        spliced["unknown_market"] += 1
        where = int(rng.integers(0, len(parts) + 1))
        book.apply(np.concatenate([*parts[:where], stray, *parts[where:]]))
        assert_equals_engine(book, read, at)
    stats = book.statistics()
    assert spliced["mismatched"] > 30  # not vacuous (46 reads in the tight world)
    for name, count in spliced.items():
        assert getattr(stats, name) == count, name
    assert stats.rejected == sum(spliced.values())


def test_apply_takes_only_event_arrays() -> None:
    book = DepthBook(1)
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        book.apply(np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        book.apply(np.zeros((2, 2), dtype=EVENT_DTYPE))
    assert book.apply(np.zeros(0, dtype=EVENT_DTYPE)) == 0
    with pytest.raises(ValueError, match="n_markets"):
        DepthBook(-1)


def _spoil(name: str, value: object) -> dict[str, np.ndarray]:
    book = DepthBook(2)
    book.apply(events(put(1, ASK, 1005, 2), put(2, BID, 995, 3), put(3, ASK, 1006, 1)))
    book.changes(0)
    arrays = book.to_arrays()
    if value is None:
        del arrays[name]
    else:
        arrays[name] = np.asarray(value)
    return arrays


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("order_id", None, "missing ['order_id']"),
        ("extra", [1], "unknown ['extra']"),
        ("n_markets", [2], "n_markets must be one integer"),
        ("n_markets", 40000, "n_markets must be one integer"),
        ("order_id", [1, 1, 3], "ascending and unique"),
        ("order_id", [0, 2, 3], "at least 1"),
        ("order_id", [1, 2], "differ in shape"),
        ("order_price", [1.5, 2.0, 3.0], "must hold integers"),
        ("order_market", [0, 2, 0], "order_market out of range"),
        ("order_side", [1, 0, 1], "order_side not 1 or 2"),
        ("order_left", [1, 0, 1], "order_left outside"),
        ("base_price", [1006, 1005, 995], "sorted by market, side and price"),
        ("base_lots", [2, -1, 3], "base_lots outside"),
        ("counters", [0, 0, 0], "counters has the wrong shape"),
        ("counters", [0, 0, 0, 0, 0, -1], "must not be negative"),
    ],
)
def test_from_arrays_refuses_what_to_arrays_cannot_write(
    name: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match="depth arrays") as info:
        DepthBook.from_arrays(_spoil(name, value))
    assert message in str(info.value)


# --------------------------------------------------------------------------- helpers


def order_event(
    kind: int,
    order_id: int,
    side: int,
    price: int,
    left: int,
    *,
    market: int = 0,
    reason: int = 0,
) -> np.ndarray:
    e = np.zeros(1, dtype=EVENT_DTYPE)
    e["kind"], e["order_id"], e["side"], e["price"] = kind, order_id, side, price
    e["left"], e["amount"], e["market"], e["reason"] = left, left, market, reason
    return e


def put(order_id: int, side: int, price: int, left: int, *, market: int = 0) -> np.ndarray:
    return order_event(PUT, order_id, side, price, left, market=market)


def update(order_id: int, side: int, price: int, left: int, *, market: int = 0) -> np.ndarray:
    return order_event(UPDATE, order_id, side, price, left, market=market)


def finish(
    order_id: int,
    side: int,
    price: int,
    left: int,
    reason: int = FinishReason.FILLED,
    *,
    market: int = 0,
) -> np.ndarray:
    return order_event(FINISH, order_id, side, price, left, market=market, reason=reason)


def deal(taker: int, maker: int, price: int, lots: int) -> np.ndarray:
    e = np.zeros(1, dtype=EVENT_DTYPE)
    e["kind"], e["order_id"], e["maker_order"], e["price"], e["amount"] = (
        DEAL, taker, maker, price, lots,
    )  # fmt: skip
    return e


def events(*rows: np.ndarray) -> np.ndarray:
    return np.concatenate(rows)
