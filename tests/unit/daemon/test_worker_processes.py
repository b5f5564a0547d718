"""The sequencer's rules over real pair-worker processes (``daemon.pipeline``): every
result, every event and the state hash, the workers' books included, equal the
in-process engine's over the same commands in the sequencer's order (docs/daemon.md,
"Sequencer and pair workers")."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator

import numba
import numpy as np
import pytest

from core.config import EngineConfig
from core.engine import Engine
from core.kernels.account_side import account_batch
from core.kernels.client_ids import record_put
from core.kernels.ledger import name_orders, settle
from daemon.pipeline import Pipeline, WorkerDied, plan_workers
from daemon.sequencing import Answer
from ipc.shm import list_segments
from tests.support.world import Limits, stream_config
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

    def submit(self, token: int, cmd: np.ndarray) -> None:
        self.pipeline.submit(token, cmd)
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
