"""The sequencer's rules (``daemon.sequencing``) with real pair-worker processes
(``daemon.worker``) over shared-memory rings: every result and every event equal the
in-process engine's over the same commands in the sequencer's order, and the
sequencer's balances and counters equal the engine's (docs/daemon.md, "Sequencer and
pair workers")."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.config import EngineConfig
from core.engine import Engine
from core.schema import DONE_DTYPE, EVENT_DTYPE
from daemon.sequencing import Answer, Sequencing
from daemon.worker import worker_rings
from ipc.ring import SpscRing
from tests.support.world import Limits, stream_config, stream_config_text
from tests.unit.daemon.test_sequencing import SEED, Session, run_stream, take

pytestmark = pytest.mark.integration

_INSTANCES = itertools.count()
WAIT_S = 120.0  # a cold numba cache compiles the book half in the worker first


class ProcessDaemon:
    """``Sequencing`` in this process, one ``daemon.worker`` process per market."""

    def __init__(self, config: EngineConfig, config_path: Path, max_in_flight: int) -> None:
        self.config = config
        self.engine = Engine(config)
        state = self.engine.kernel_state()
        self.instance = f"t{os.getpid()}n{next(_INSTANCES)}"
        self.rings: list[tuple[SpscRing, SpscRing, SpscRing]] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.pending: list[list[np.ndarray]] = [[] for _ in config.markets]
        self.events: list[np.ndarray] = [np.zeros(0, dtype=EVENT_DTYPE) for _ in config.markets]
        self._done = np.zeros(4096, dtype=DONE_DTYPE)
        self._ev = np.zeros(1 << 16, dtype=EVENT_DTYPE)
        self.answers: dict[int, Answer] = {}
        try:
            for m in range(len(config.markets)):
                self.rings.append(worker_rings(self.instance, m))
                self.procs.append(self._start(config_path, m, state.fee_acct))
            for proc in self.procs:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "ready"
        except BaseException:
            self.close()
            raise
        self.sequencing = Sequencing(config, state, self._send, max_in_flight)

    def _start(self, config_path: Path, m: int, fee_acct: int) -> subprocess.Popen[str]:
        argv = [
            sys.executable, "-m", "daemon.worker", "--config", str(config_path),
            "--instance", self.instance, "--index", str(m), "--fee-acct", str(fee_acct),
        ]  # fmt: skip
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: S603 -- our module

    def _send(self, market: int, work: np.ndarray) -> None:
        self.pending[market].append(work)

    def _take(self, answers: list[Answer]) -> None:
        take(self.answers, answers)

    def submit(self, token: int, cmd: np.ndarray) -> None:
        self._take(self.sequencing.submit(token, cmd))
        self.step()

    def step(self) -> int:
        """Push what waits, collect what the workers answered; returns works done."""
        got = 0
        for m, (work_ring, done_ring, event_ring) in enumerate(self.rings):
            while self.pending[m]:
                head = self.pending[m][0]
                n = work_ring.push_nowait(head)
                work_ring.wake_if_sleeping()
                if n < len(head):
                    self.pending[m][0] = head[n:]
                    break
                self.pending[m].pop(0)
            k = event_ring.pop_nowait(self._ev)
            if k:
                self.events[m] = np.concatenate([self.events[m], self._ev[:k]])
            n = done_ring.pop_nowait(self._done)
            if n:
                done = self._done[:n].copy()
                used = int(done["event_count"].sum())
                while len(self.events[m]) < used:  # events are pushed before their DONE
                    k = event_ring.pop_nowait(self._ev)
                    self.events[m] = np.concatenate([self.events[m], self._ev[:k]])
                ev, self.events[m] = self.events[m][:used], self.events[m][used:]
                self._take(self.sequencing.complete(done, ev))
                got += n
        return got

    def drain(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.sequencing.in_flight or any(self.pending):
            if not self.step():
                time.sleep(0.0002)
            assert time.monotonic() < deadline, "the workers stopped answering"
        self._take(self.sequencing.pump())
        assert self.sequencing.in_flight == 0

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()
        for rings in self.rings:
            for ring in rings:
                ring.close()
                ring.unlink()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[type]:
    made: list[ProcessDaemon] = []

    def make(limits: Limits, max_in_flight: int) -> ProcessDaemon:
        path = tmp_path / f"config-{len(made)}.toml"
        path.write_text(stream_config_text(limits), encoding="utf-8")
        d = ProcessDaemon(stream_config(limits), path, max_in_flight)
        made.append(d)
        return d

    yield make  # type: ignore[misc]
    for d in made:
        d.close()


@pytest.mark.parametrize("max_in_flight", [1, 256])
def test_workers_in_processes_agree_with_the_engine(
    daemon_factory: type, max_in_flight: int
) -> None:
    limits = Limits()
    daemon = daemon_factory(limits, max_in_flight)  # type: ignore[call-arg]
    session = Session(stream_config(limits), daemon)  # type: ignore[arg-type]
    run_stream(session, np.random.default_rng(SEED), 3000, books=False)
    stats = daemon.sequencing.stats()
    assert stats.settled > 1000
    if max_in_flight > 1:
        assert stats.peak_in_flight > 1
