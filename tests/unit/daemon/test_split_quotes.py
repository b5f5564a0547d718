"""Mass quotes through the engine's halves run apart (``tests/support/split.py``, as the
daemon runs them: the group's account half on the sequencer's balances, its k + 1 works
in one batch for the market's worker with the next real order id, the pending renames
first): results, events and the state hash equal the in-process engine's, on streams
where quotes meet puts, cancels, replaces, provisional ids and market operations."""

from __future__ import annotations

import numpy as np
import pytest

from core import commands
from core.schema import CommandKind, Result
from tests.property.test_split import SEED, run_both
from tests.support.split import SplitEngine
from tests.support.steps import Batch, Step
from tests.support.streams import Mix, random_stream
from tests.support.world import ASK, BID, BTC, BTC_USDT, RISKY, TIGHT, USDT, Limits, stream_config

pytestmark = pytest.mark.kernel

#: 10% quotes: on the roomy limits about 100 of 3000 commands are accepted quotes.
QUOTES = Mix(quote=10)


def _quotes(steps: list[Step]) -> int:
    return sum(
        1
        for step in steps
        if isinstance(step, Batch)
        for cmd in step.commands
        if cmd.kind == CommandKind.QUOTE
    )


@pytest.mark.parametrize("owner", [(0, 1), (0, 0)], ids=["worker-per-market", "one-worker"])
@pytest.mark.parametrize("rename_delay", [0, 5, 10**6])
@pytest.mark.parametrize("limits", [Limits(), TIGHT, RISKY], ids=["roomy", "tight", "risky"])
def test_a_long_fixed_seed_stream_with_quotes(
    limits: Limits, rename_delay: int, owner: tuple[int, ...]
) -> None:
    config = stream_config(limits)
    steps = random_stream(np.random.default_rng(SEED), config, 3000, QUOTES)
    assert _quotes(steps) > 100
    split = run_both(limits, steps, rename_delay, owner)
    assert isinstance(split, SplitEngine)
    assert split.renamed > 10  # quotes went out among provisional ids and renames


@pytest.mark.parametrize("owner", [(0, 1), (0, 0)], ids=["worker-per-market", "one-worker"])
def test_quotes_among_market_operations(owner: tuple[int, ...]) -> None:
    config = stream_config()
    steps = random_stream(np.random.default_rng(SEED + 1), config, 2000, Mix(quote=10, admin=1))
    run_both(Limits(), steps, 3, owner)


def test_a_quote_s_new_orders_take_the_next_real_ids() -> None:
    # The split double gives the QUOTE's header the next real id: its new orders
    # never rest under provisional ids, and the counter passes them.
    config = stream_config()
    split = SplitEngine(config)
    for asset, key in ((USDT, 1), (BTC, 2)):
        split.balance_update(1, asset, b"deposit", key, 10**6, 1)
    quote = commands.quote(1, BTC_USDT, [(BID, 980, 20), (ASK, 1020, 20)], ts_ns=2)
    results, events = split.execute(quote)
    assert results["code"].tolist() == [Result.OK] * 3
    assert results["order_id"].tolist() == [0, 1, 2]
    assert int(split.sequencer.counters()[1]) == 2
    assert split.workers[BTC_USDT].order(BTC_USDT, 1) is not None  # no rename needed
    assert not split.renames[BTC_USDT]
    assert len(events) == results["event_count"][0] == 4
