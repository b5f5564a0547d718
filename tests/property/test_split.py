"""The engine's halves run apart (``tests/support/split.py``: the account half and the
ledger on the sequencer's balances, the book half in one pair worker per market, or one
for both, with provisional order ids and renames) give the in-process engine's results,
events and state hash, command for command (docs/daemon.md, "Sequencer and pair
workers"), and the engine composed of them is sound."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.compose import compose_engine
from core.engine import Engine
from core.schema import PROVISIONAL_ID_BASE, CommandKind, Result
from tests.support.split import SplitEngine
from tests.support.steps import Step, Update, cancel, funding, limit, resolve, run
from tests.support.streams import Mix, random_stream, streams
from tests.support.world import BIG, BTC_USDT, RISKY, TIGHT, Limits, stream_config

pytestmark = pytest.mark.kernel

ASK, BID = 1, 2
SEED = int(os.environ.get("MATCHD_SEED", "20251123"))


def _same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise AssertionError(f"{what}: {a.shape} records, the engine's {b.shape}")
    for i in range(len(a)):
        if a[i].tobytes() != b[i].tobytes():
            fields = [n for n in a.dtype.names or () if not np.array_equal(a[i][n], b[i][n])]
            raise AssertionError(f"{what} {i} differs in {fields}: split {a[i]!r}, engine {b[i]!r}")


def run_both(
    config_limits: Limits,
    steps: list[Step],
    rename_delay: int = 0,
    owner: tuple[int, ...] | None = None,
) -> SplitEngine:
    """Run ``steps`` through both (``owner``: market -> worker, as ``SplitEngine``);
    results and events equal after every step, state hashes at the end."""
    config = stream_config(config_limits)
    engine, split = Engine(config), SplitEngine(config, rename_delay, owner)
    ts = 1_000_000
    for step in steps:
        if isinstance(step, Update):
            args = (step.user, step.asset, step.business, step.business_id, step.change, ts)
            want, got = engine.balance_update(*args), split.balance_update(*args)
            ts += 1000
        else:
            cmds = resolve(step.commands, engine, ts)
            want, got = engine.execute(cmds), split.execute(cmds)
            ts += 1000 * (len(cmds) + 1)
        _same(got[0], want[0], "result")
        _same(got[1], want[1], "event")
    assert split.state_hash() == engine.state_hash()
    composed = compose_engine(config, split.sequencer, split.workers, split.owner)
    assert composed.check_invariants() == []
    return split


@given(
    steps=streams(stream_config(), 40),
    rename_delay=st.sampled_from((0, 3, 1000)),
    owner=st.sampled_from(((0, 1), (0, 0))),  # a worker per market, or one for both
)
def test_the_halves_agree_with_the_engine(
    steps: list[Step], rename_delay: int, owner: tuple[int, ...]
) -> None:
    run_both(Limits(), steps, rename_delay, owner)


@given(steps=streams(stream_config(), 40, Mix(admin=8)), owner=st.sampled_from(((0, 1), (0, 0))))
def test_the_halves_agree_on_market_operations(steps: list[Step], owner: tuple[int, ...]) -> None:
    run_both(Limits(), steps, 3, owner)


@given(
    steps=streams(stream_config(), 40, Mix(quote=15)),
    rename_delay=st.sampled_from((0, 3, 1000)),
    owner=st.sampled_from(((0, 1), (0, 0))),
)
def test_the_halves_agree_on_mass_quotes(
    steps: list[Step], rename_delay: int, owner: tuple[int, ...]
) -> None:
    run_both(Limits(), steps, rename_delay, owner)


@given(steps=streams(stream_config(RISKY), 40))
def test_the_halves_agree_under_risk_limits(steps: list[Step]) -> None:
    # max_open_orders and the price band are the book half's: the worker judges them.
    run_both(RISKY, steps, 3)


@given(steps=streams(stream_config(TIGHT), 40, Mix(world=BIG)))
def test_the_halves_agree_with_tight_limits_and_big_numbers(steps: list[Step]) -> None:
    run_both(TIGHT, steps)


@pytest.mark.parametrize("rename_delay", [0, 5, 10**6])
@pytest.mark.parametrize("limits", [Limits(), TIGHT], ids=["roomy", "tight"])
def test_a_long_fixed_seed_stream(limits: Limits, rename_delay: int) -> None:
    config = stream_config(limits)
    steps = random_stream(np.random.default_rng(SEED), config, 3000)
    split = run_both(limits, steps, rename_delay)
    assert split.renamed > 100  # resting orders really went through provisional ids
    if rename_delay:  # and later commands met some of them before their rename
        assert split.provisional_seen > 10
    else:
        assert split.provisional_seen == 0


def test_an_order_rests_under_a_provisional_id_until_renamed() -> None:
    split = SplitEngine(stream_config())
    engine = Engine(stream_config())
    ts = 1_000_000
    for step in funding():
        if isinstance(step, Update):
            args = (step.user, step.asset, step.business, step.business_id, step.change, ts)
            engine.balance_update(*args)
            split.balance_update(*args)
        else:
            cmds = resolve(step.commands, engine, ts)
            engine.execute(cmds)
            split.execute(cmds)
        ts += 10_000
    cmds = resolve(run(limit(1, BTC_USDT, ASK, 20, 1500)).commands, engine, ts)
    (want, _), (got, _) = engine.execute(cmds), split.execute(cmds)
    oid = int(got["order_id"][0])
    assert oid == int(want["order_id"][0])
    worker = split.workers[BTC_USDT]
    assert worker.order(BTC_USDT, oid) is None  # the worker has not been told yet
    assert split.renames[BTC_USDT]  # the rename waits for the worker's next command
    # A client naming the provisional id finds nothing; the real id works once renamed.
    provisional = cmds.copy()
    provisional["kind"] = CommandKind.CANCEL
    provisional["order_id"] = PROVISIONAL_ID_BASE + split.dispatched
    assert split.execute(provisional)[0]["code"][0] == Result.ORDER_NOT_FOUND
    assert worker.order(BTC_USDT, oid) is not None
    done = resolve(run(cancel(1, BTC_USDT, oid)).commands, engine, ts + 10_000)
    assert split.execute(done)[0]["code"][0] == engine.execute(done)[0]["code"][0] == Result.OK
    assert split.state_hash() == engine.state_hash()
