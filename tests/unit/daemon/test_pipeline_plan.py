"""How ``plan_workers`` spreads markets over pair workers and pins them."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigError
from daemon.pipeline import PipelineConfig, plan_workers


def test_one_worker_per_market_by_default() -> None:
    plan = plan_workers(3)
    assert plan.groups == ((0,), (1,), (2,))
    assert plan.owner == [0, 1, 2]


def test_markets_are_spread_round_robin() -> None:
    plan = plan_workers(5, 2, cpus=[1, 0])
    assert plan.groups == ((0, 2, 4), (1, 3))
    assert plan.owner == [0, 1, 0, 1, 0]
    assert plan.cpus == (1, 0)


def test_the_slots_of_markets_to_be_added_have_their_workers_from_the_start() -> None:
    plan = plan_workers(2, 2, cpus=[], slots=5)  # engine.max_markets = 5
    assert plan.groups == ((0, 2, 4), (1, 3))
    assert plan.owner == [0, 1, 0, 1, 0]
    assert plan_workers(2, cpus=[], slots=4).groups == ((0, 2), (1, 3))  # one per market
    with pytest.raises(ConfigError, match="1 market slots cannot hold 2 markets"):
        plan_workers(2, slots=1)


def test_workers_are_pinned_only_with_a_cpu_each_besides_the_sequencers() -> None:
    usable = sorted(os.sched_getaffinity(0))
    few = plan_workers(len(usable), len(usable))
    assert few.cpus == (None,) * len(usable)  # no CPU left for the sequencer
    if len(usable) > 1:
        one = plan_workers(1)
        assert one.cpus == (usable[1],)
    assert plan_workers(2, 2, cpus=[]).cpus == (None, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0,), "at least one market"),
        ((2, 0), "workers must be 1..2 for 2 markets; got 0"),
        ((2, 3), "workers must be 1..2 for 2 markets; got 3"),
        ((2, 1, [-1]), "a CPU is a number >= 0; got -1"),
    ],
)
def test_bad_plans_are_refused(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_workers(*args)  # type: ignore[arg-type]


def test_a_config_needs_one_cpu_entry_per_worker() -> None:
    with pytest.raises(ConfigError, match="one CPU entry per worker"):
        PipelineConfig(((0,), (1,)), (None,))
