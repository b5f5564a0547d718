"""One engine of the halves run apart (``compose_engine``, ``merge_market``) and an
engine over given arrays (``Engine.from_arrays``).

The halves run apart are ``tests/support/split.py``'s double: the sequencer's engine
and the pair workers' books, one worker per market or one for both markets. The
engine composed from them must be the in-process engine: the same state hash, sound,
the same answers to every query, and the same results and events when both run on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pytest

from core.compose import compose_engine
from core.config import EngineConfig
from core.engine import BOOK_ARRAYS, Engine
from core.kernels import compose as kcompose
from core.schema import Result
from tests.support.split import SplitEngine
from tests.support.steps import (
    HOLDING_RESTING,
    Step,
    Update,
    apply,
    cancel,
    funding,
    holding,
    limit,
    resolve,
    run,
)
from tests.support.streams import random_stream
from tests.support.world import (
    ASK,
    BID,
    BTC_USDT,
    ETH_USDT,
    FEE_USER,
    MARKETS,
    TIGHT,
    USERS,
    Limits,
    stream_config,
)

pytestmark = pytest.mark.kernel

SEED = int(os.environ.get("MATCHD_SEED", "20251123"))
#: Market -> worker: one worker per market, the same swapped, one worker for both.
OWNERS = ((0, 1), (1, 0), (0, 0))
ALL = 1 << 20


# --------------------------------------------------------------------------- helpers


def drive(steps: Sequence[Step], engine: Engine, split: SplitEngine, ts: int = 1_000_000) -> int:
    """Run ``steps`` through the in-process engine and the halves; the next free time."""
    for step in steps:
        if isinstance(step, Update):
            args = (step.user, step.asset, step.business, step.business_id, step.change, ts)
            engine.balance_update(*args)
            split.balance_update(*args)
            ts += 1000
        else:
            cmds = resolve(step.commands, engine, ts)
            engine.execute(cmds)
            split.execute(cmds)
            ts += 1000 * (len(cmds) + 1)
    return ts


def run_apart(
    config: EngineConfig, steps: Sequence[Step], owner: Sequence[int], rename_delay: int = 0
) -> tuple[Engine, SplitEngine, int]:
    """The in-process engine and the halves (renames delivered) after ``steps``."""
    engine, split = Engine(config), SplitEngine(config, rename_delay, owner)
    ts = drive(steps, engine, split)
    split.flush()
    return engine, split, ts


def compose(split: SplitEngine) -> Engine:
    return compose_engine(split.config, split.sequencer, split.workers, split.owner)


def resting(engine: Engine, market: int) -> list[int]:
    return [o.id for side in (ASK, BID) for o in engine.book(market, side, 0, ALL)[1]]


def assert_same_queries(got: Engine, want: Engine) -> None:
    """Every query of every market answers the same on both engines."""
    for m in MARKETS:
        for side in (ASK, BID):
            assert got.book(m, side, 0, ALL) == want.book(m, side, 0, ALL), (m, side)
            assert got.book(m, side, 1, 2) == want.book(m, side, 1, 2), (m, side)
        for interval in (0, 3):
            assert got.depth(m, 100, interval) == want.depth(m, 100, interval), m
        for user in (FEE_USER, *USERS):
            assert got.pending(user, m, 0, ALL) == want.pending(user, m, 0, ALL), (m, user)
            assert got.pending(user, m, 1, 1) == want.pending(user, m, 1, 1), (m, user)
        last = want.counters()[1]
        for oid in (*resting(want, m), 1, last, last + 1):
            assert got.order(m, oid) == want.order(m, oid), (m, oid)
        assert got.market_summary(m) == want.market_summary(m), m
    assert got.live_tags() == want.live_tags()


def assert_runs_on_alike(got: Engine, want: Engine, steps: Sequence[Step], ts: int) -> None:
    """``steps`` give both engines the same results and events, step by step."""
    for step in steps:
        if isinstance(step, Update):
            args = (step.user, step.asset, step.business, step.business_id, step.change, ts)
            pairs = [(got.balance_update(*args), want.balance_update(*args))]
            ts += 1000
        else:
            cmds = resolve(step.commands, want, ts)
            pairs = [(got.execute(cmds), want.execute(cmds))]
            ts += 1000 * (len(cmds) + 1)
        for (got_results, got_events), (want_results, want_events) in pairs:
            assert got_results.tobytes() == want_results.tobytes(), step
            assert got_events.tobytes() == want_events.tobytes(), step


def array_bytes(*engines: Engine) -> list[dict[str, bytes]]:
    return [{n: a.tobytes() for n, a in e.state_arrays().items()} for e in engines]


# --------------------------------------------------------------------------- compose_engine


@pytest.mark.parametrize("rename_delay", [0, 5])
@pytest.mark.parametrize("owner", OWNERS, ids=["per-market", "swapped", "grouped"])
@pytest.mark.parametrize("limits", [Limits(), TIGHT], ids=["roomy", "tight"])
def test_the_composed_engine_is_the_in_process_engine(
    limits: Limits, owner: tuple[int, ...], rename_delay: int
) -> None:
    config = stream_config(limits)
    rng = np.random.default_rng(SEED)
    engine, split, ts = run_apart(config, random_stream(rng, config, 400), owner, rename_delay)
    assert all(resting(engine, m) for m in MARKETS)  # both books hold orders
    assert any(o.source for m in MARKETS for o in engine.book(m, ASK, 0, ALL)[1])
    inputs = array_bytes(split.sequencer, *split.workers)

    composed = compose(split)

    assert array_bytes(split.sequencer, *split.workers) == inputs  # nothing given is written
    assert composed.state_hash() == engine.state_hash()
    assert composed.check_invariants() == []
    assert_same_queries(composed, engine)
    # The composed book is a working book: it runs on as the in-process engine does.
    assert_runs_on_alike(composed, engine, random_stream(rng, config, 300), ts)
    assert composed.state_hash() == engine.state_hash()
    assert composed.check_invariants() == []
    assert_same_queries(composed, engine)
    assert array_bytes(split.sequencer, *split.workers) == inputs  # and shares no array


def test_an_engine_composed_from_itself_is_equal() -> None:
    config = stream_config()
    engine = Engine(config)
    apply(engine, [*funding(), run(limit(1, BTC_USDT, ASK, 20, 1005, source=b"web"))])
    composed = compose_engine(config, engine, [engine], [0, 0])
    assert composed.state_hash() == engine.state_hash()
    assert_same_queries(composed, engine)


def test_a_wrong_owner_map_gives_another_state() -> None:
    """Negative control: market m's book taken from a worker that does not run it."""
    config = stream_config()
    steps = random_stream(np.random.default_rng(SEED), config, 300)
    engine, split, _ = run_apart(config, steps, (0, 1))
    wrong = compose_engine(config, split.sequencer, split.workers, [1, 0])
    assert wrong.state_hash() != engine.state_hash()
    assert not any(resting(wrong, m) for m in MARKETS)
    assert wrong.check_invariants() != []  # frozen balances that no order reserves


def test_undelivered_renames_give_another_state() -> None:
    """Negative control: orders still under provisional ids are not the engine's."""
    config = stream_config()
    engine, split = Engine(config), SplitEngine(config, rename_delay=10**6)
    drive(holding(), engine, split)
    assert split.renames[ETH_USDT]  # nothing named ETH_USDT's orders: no rename was sent
    assert compose(split).state_hash() != engine.state_hash()


def test_owner_must_name_a_book_for_every_market() -> None:
    engine = Engine(stream_config())
    for owner in ([0], [0, 1], [0, -1], [0, 0, 0]):
        with pytest.raises(ValueError, match="must name one of the 1 books"):
            compose_engine(stream_config(), engine, [engine], owner)


def test_books_and_ledger_must_be_of_the_config() -> None:
    config, other = stream_config(), stream_config(Limits(max_orders=32))
    with pytest.raises(ValueError, match=r"market BTC_USDT: .* differ"):
        compose_engine(config, Engine(config), [Engine(other)], [0, 0])
    with pytest.raises(ValueError, match="'orders'"):
        compose_engine(config, Engine(other), [Engine(config)], [0, 0])


# --------------------------------------------------------------------------- merge_market


def one_order(market: int) -> Engine:
    """An engine whose only resting order, id 1, is a bid of user 1 in ``market``."""
    engine = Engine(stream_config())
    apply(engine, [*funding(), run(limit(1, market, BID, 20, 995, source=b"api"))])
    assert resting(engine, market) == [1]
    return engine


def test_merge_refuses_a_market_that_is_not_empty() -> None:
    src = one_order(BTC_USDT)
    dst = compose_engine(src.config, src, [src], [0, 0])
    before = array_bytes(dst)
    code = kcompose.merge_market(dst.kernel_state().book, src.kernel_state().book, BTC_USDT)
    assert code == kcompose.MERGE_NOT_EMPTY
    assert array_bytes(dst) == before


def test_merge_refuses_an_id_that_rests_in_another_market() -> None:
    first, second = one_order(BTC_USDT), one_order(ETH_USDT)
    with pytest.raises(ValueError, match=r"market ETH_USDT: .* already rests"):
        compose_engine(first.config, first, [first, second], [0, 1])
    dst = compose_engine(first.config, first, [first, Engine(first.config)], [0, 1])
    before = array_bytes(dst)
    src = second.kernel_state().book
    code = kcompose.merge_market(dst.kernel_state().book, src, ETH_USDT)
    assert code == kcompose.MERGE_DUPLICATE_ID
    assert array_bytes(dst) == before


def test_merge_refuses_books_of_another_layout() -> None:
    dst = Engine(stream_config()).kernel_state().book
    src = Engine(stream_config(Limits(max_levels=8))).kernel_state().book
    assert kcompose.merge_market(dst, src, BTC_USDT) == kcompose.MERGE_BAD_LAYOUT


# --------------------------------------------------------------------------- from_arrays


def test_book_arrays_name_the_book_tuple_in_order() -> None:
    engine = Engine(stream_config())
    arrays = engine.state_arrays()
    book = engine.kernel_state().book
    assert len(BOOK_ARRAYS) == len(book)
    assert all(arrays[name] is arr for name, arr in zip(BOOK_ARRAYS, book, strict=True))


def test_from_arrays_takes_the_arrays_as_they_are() -> None:
    config = stream_config()
    engine = Engine(config)
    apply(engine, holding())
    arrays = engine.state_arrays()
    before = array_bytes(engine)

    view = Engine.from_arrays(config, arrays)

    assert array_bytes(engine) == before  # nothing written
    assert all(view.state_arrays()[n] is a for n, a in arrays.items())  # nothing copied
    assert view.state_hash() == engine.state_hash()
    assert view.check_invariants() == []
    assert_same_queries(view, engine)
    # Its commands change the arrays it was given.
    user, market, *_ = HOLDING_RESTING[3]
    results, _ = view.execute(resolve(run(cancel(user, market, 3)).commands, engine, 10**12))
    assert results["code"][0] == Result.OK
    assert engine.order(market, 3) is None
    assert engine.state_hash() == view.state_hash()


def _with(arrays: dict[str, np.ndarray], name: str, value: np.ndarray) -> dict[str, np.ndarray]:
    return {**arrays, name: value}


def test_from_arrays_checks_every_array() -> None:
    config = stream_config()
    arrays = Engine(config).state_arrays()
    levels, balances = arrays["levels"], arrays["balances"]
    bad = {
        "'levels'": _with(arrays, "levels", levels[:-1].copy()),
        "'balances'": _with(arrays, "balances", balances.astype(np.int32)),
        "no 'supply'": {n: a for n, a in arrays.items() if n != "supply"},
        "unexpected arrays \\['junk'\\]": _with(arrays, "junk", np.zeros(1)),
        "'side_keys' is not a writeable C-contiguous": _with(
            arrays, "side_keys", np.zeros(2 * len(arrays["side_keys"]), np.int64)[::2]
        ),
    }
    readonly = arrays["counters"].copy()
    readonly.flags.writeable = False
    bad["'counters' is not a writeable"] = _with(arrays, "counters", readonly)
    mparams = arrays["mparams"].copy()
    mparams[0, 0] += 1
    bad["different market parameters"] = _with(arrays, "mparams", mparams)
    bad["no account for the fee user"] = _with(
        arrays, "account_keys", np.zeros_like(arrays["account_keys"])
    )
    for match, given_arrays in bad.items():
        with pytest.raises(ValueError, match=match):
            Engine.from_arrays(config, given_arrays)
