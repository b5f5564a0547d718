"""The sequencer's rules over real pair-worker processes (``daemon.pipeline``): every
result, every event and the state hash, the workers' books included, equal the
in-process engine's over the same commands in the sequencer's order (docs/daemon.md,
"Sequencer and pair workers"), mass quotes included."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numba
import numpy as np
import pytest

import daemon.worker
from core import commands
from core.config import EngineConfig
from core.engine import Engine
from core.kernels.account_side import account_batch
from core.kernels.client_ids import record_put
from core.kernels.ledger import name_orders, settle
from core.schema import QuoteAction, Result
from daemon.pipeline import Pipeline, WorkerDied, plan_workers
from daemon.sequencing import Answer
from daemon.worker import PairWorker
from ipc.shm import list_segments
from tests.support.streams import Mix
from tests.support.world import ASK, BID, BTC, BTC_USDT, USDT, Limits, stream_config
from tests.unit.daemon.test_sequencing import SEED, Session, run_stream, take

pytestmark = pytest.mark.integration

_INSTANCES = itertools.count()


class PipelineDaemon:
    """A ``Pipeline`` with the interface ``Session`` drives."""

    def __init__(self, config: EngineConfig, max_in_flight: int, workers: int | None) -> None:
        self.config = config
        self.engine = Engine(config)
        plan = plan_workers(len(config.markets), workers)
        plan = dataclasses.replace(plan, max_in_flight=max_in_flight)
        self.instance = f"t{os.getpid()}n{next(_INSTANCES)}"
        self.pipeline = Pipeline(self.engine, plan, self.instance)
        self.sequencing = self.pipeline.sequencing
        self.answers: dict[int, Answer] = {}

    def submit(self, tokens: Sequence[int], cmds: np.ndarray) -> None:
        self.pipeline.submit_many(range(tokens[0], tokens[0] + len(cmds)), cmds)
        self.pipeline.step()
        take(self.answers, self.pipeline.take_answers())

    def drain(self) -> None:
        self.pipeline.quiesce()
        take(self.answers, self.pipeline.take_answers())
        assert not self.pipeline.busy

    def state_hash(self) -> str:
        self.drain()
        return self.pipeline.composed().state_hash()

    def close(self) -> None:
        self.pipeline.close()


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., PipelineDaemon]]:
    made: list[PipelineDaemon] = []

    def make(limits: Limits, max_in_flight: int, workers: int | None = None) -> PipelineDaemon:
        d = PipelineDaemon(stream_config(limits), max_in_flight, workers)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.mark.parametrize(("max_in_flight", "workers"), [(1, None), (256, None), (256, 1)])
def test_workers_in_processes_agree_with_the_engine(
    daemon_factory: Callable[..., PipelineDaemon], max_in_flight: int, workers: int | None
) -> None:
    limits = Limits()
    daemon = daemon_factory(limits, max_in_flight, workers)
    session = Session(stream_config(limits), daemon)
    run_stream(session, np.random.default_rng(SEED), 3000, books=True)
    stats = daemon.sequencing.stats()
    assert stats.settled > 1000
    if max_in_flight > 1:
        assert stats.peak_in_flight > 1
    # The warm-up compiled what the rules then called: one signature each.
    if not numba.config.DISABLE_JIT:
        for fn in (account_batch, name_orders, settle, record_put):
            assert len(fn.signatures) == 1, (fn, fn.signatures)


def test_queries_read_the_workers_books(daemon_factory: Callable[..., PipelineDaemon]) -> None:
    limits = Limits()
    daemon = daemon_factory(limits, 64)
    session = Session(stream_config(limits), daemon)
    run_stream(session, np.random.default_rng(SEED + 1), 1500, books=True)
    composed = daemon.pipeline.composed()
    for m in range(len(daemon.config.markets)):
        view = daemon.pipeline.market_engine(m)
        for side in (1, 2):
            assert view.book(m, side, 0, 1000) == composed.book(m, side, 0, 1000)
        assert view.depth(m, 50, 0) == composed.depth(m, 50, 0)
        assert view.market_summary(m) == composed.market_summary(m)


def test_a_dead_worker_is_reported_and_close_cleans_up(
    daemon_factory: Callable[..., PipelineDaemon],
) -> None:
    daemon = daemon_factory(Limits(), 16)
    instance = daemon.instance
    assert list_segments(instance)
    pid = daemon.pipeline.pids()[0]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    with pytest.raises(WorkerDied, match=f"pid {pid}"):  # noqa: PT012 -- polls until it is
        while time.monotonic() < deadline:
            daemon.pipeline.check_workers()
            time.sleep(0.001)
    daemon.close()
    assert list_segments(instance) == []


def test_mass_quotes_through_worker_processes(
    daemon_factory: Callable[..., PipelineDaemon],
) -> None:
    # Quotes (5% of the commands) through real workers, one per market and one for
    # both: each goes out alone, whole, and settles with the engine's results.
    for workers in (None, 1):
        limits = Limits()
        daemon = daemon_factory(limits, 256, workers)
        session = Session(stream_config(limits), daemon)
        run_stream(session, np.random.default_rng(SEED + 2), 1500, books=True, mix=Mix(quote=5))
        stats = daemon.sequencing.stats()
        assert stats.quotes > 10
        assert stats.peak_in_flight > 1
    # A group's records are a slice of the request: no second compiled signature.
    if not numba.config.DISABLE_JIT:
        for fn in (account_batch, settle):
            assert len(fn.signatures) == 1, (fn, fn.signatures)


class _Unstarted(Pipeline):
    """A ``Pipeline`` whose workers are not started: the test runs one in-process."""

    def _start(self, worker: Any, fee_acct: int) -> None:  # type: ignore[override]
        return None


def test_a_worker_pops_the_rest_of_a_group_before_running_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With two works a pop, the quote's five works come apart in the ring: the worker
    # pops the three others before it runs them, in one book_batch.
    monkeypatch.setattr(daemon.worker, "BATCH", 2)
    config = stream_config()
    engine, twin = Engine(config), Engine(config)
    for e in (engine, twin):
        e.balance_update(1, USDT, b"deposit", 1, 10**6, 1)
        e.balance_update(1, BTC, b"deposit", 2, 10**6, 1)
    plan = plan_workers(len(config.markets), 1)
    pipeline = _Unstarted(engine, plan, f"t{os.getpid()}g")
    fee_acct = engine.kernel_state().fee_acct
    worker = PairWorker(pipeline.instance, 0, len(config.markets), config.max_matches, fee_acct)
    try:
        ladder = [(BID, 980, 10), (BID, 970, 10), (ASK, 1020, 10), (ASK, 1030, 10)]
        quote = commands.quote(1, BTC_USDT, ladder, ts_ns=5)
        pipeline.submit_many(range(5), quote.copy())
        pipeline.step()  # pushed
        assert worker.do_work() == 5
        pipeline.step()  # settled
        answers = pipeline.take_answers()
    finally:
        worker.close()
        pipeline.close()
    results, events = twin.execute(quote)
    assert [(a.code, a.order_id, a.value, a.seq) for a in answers] == [
        (int(r["code"]), int(r["order_id"]), int(r["value"]), int(r["seq"])) for r in results
    ]
    assert answers[0].events.tobytes() == events.tobytes()
    assert answers[0].code == Result.OK
    assert [a.value for a in answers[1:]] == [QuoteAction.NEW] * 4
