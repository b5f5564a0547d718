"""The ordering rules and a catalog that grows (``Sequencing.adopt_catalog``; docs/daemon.md,
"Adding a market"): a command naming a market not yet added is refused as the
in-process engine refuses it, and once the sequencer's engine added it and the rules
adopted the catalog (with nothing out), its commands go to the market's worker."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core import commands
from core.config import MarketConfig
from core.engine import Engine
from core.schema import Result, Side
from daemon.sequencing import Sequencing
from tests.support.scenario import ALICE, USDT, make_config

BTC_USDT, ADDED = 0, 2
ETH_USDT = MarketConfig("ETH_USDT", "ETH", "USDT", 4, 2, max_orders=50, max_levels=10)


def sequencer() -> tuple[Engine, Sequencing, list[int]]:
    """The sequencer's engine (room for one market more), its rules, and the markets
    it sent work for."""
    engine = Engine(make_config(max_markets=3, added_market_orders=50, added_market_levels=10))
    engine.balance_update(ALICE, USDT, b"deposit", 1, 10**12, 1)
    sent: list[int] = []

    def send(market: int, work: np.ndarray) -> None:
        sent.append(market)

    return engine, Sequencing(engine.config, engine.kernel_state(), send), sent


def test_a_market_added_with_nothing_out_is_judged_from_the_next_command() -> None:
    engine, rules, sent = sequencer()
    put = commands.put_limit(ALICE, ADDED, Side.BID, 100, 10)
    (refused,) = rules.submit(1, put)
    assert refused.code == Result.UNKNOWN_MARKET
    results, _ = engine.add_market(ETH_USDT)
    assert results["code"].tolist() == [Result.OK]
    (refused,) = rules.submit(2, put)  # the rules still judge by the catalog they have
    assert refused.code == Result.UNKNOWN_MARKET
    rules.adopt_catalog(engine.config)
    assert rules.config is engine.config
    assert rules.submit(3, put) == []
    assert sent == [ADDED]  # dispatched to the new market's worker
    assert rules.pending_renames(ADDED).shape == (0,)


def test_the_catalog_is_adopted_only_with_nothing_out() -> None:
    engine, rules, sent = sequencer()
    assert rules.submit(1, commands.put_limit(ALICE, BTC_USDT, Side.BID, 1000, 10)) == []
    assert sent == [BTC_USDT]
    engine.add_market(ETH_USDT)
    with pytest.raises(RuntimeError, match="with work in flight"):
        rules.adopt_catalog(engine.config)
    assert rules.config is not engine.config


def test_only_the_catalog_grown_is_adopted() -> None:
    engine, rules, _ = sequencer()
    first, *others = engine.config.markets
    renamed = replace(engine.config, markets=(replace(first, name="X_Y"), *others))
    with pytest.raises(ValueError, match="never another one"):
        rules.adopt_catalog(renamed)
