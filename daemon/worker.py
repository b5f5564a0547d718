"""A pair worker: the book half of the engine in a process of its own (docs/daemon.md,
"Sequencer and pair workers").

It owns the books of its markets and never sees a balance. Its duty loop pops WORK
records from its work ring, runs them (``book_batch``), and pushes the commands'
events to its event ring and then their DONE records to its done ring, so that a
DONE record the sequencer pops has its events ahead of it. The sequencer creates the
three rings (``worker_rings``) before it starts the worker, which attaches to them.
When there is no work it spins, yields, then sleeps on the work ring's semaphore
(``ipc.idle.BackoffIdle``): an idle worker uses no CPU.

A full event or done ring makes the worker wait for the sequencer (which never
waits for a worker), so nothing is dropped and nothing grows: the rings are the
bounds. Run as ``python -m daemon.worker --config PATH --instance NAME --index N``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.config import EngineConfig, parse_config
from core.engine import Engine, KernelState
from core.kernels.book_batch import book_batch
from core.schema import DONE_DTYPE, EVENT_DTYPE, WORK_DTYPE
from ipc.idle import BackoffIdle
from ipc.ring import SpscRing

logger = logging.getLogger(__name__)

#: Works popped per loop.
BATCH = 256


def ring_names(index: int) -> tuple[str, str, str]:
    """The names of worker ``index``'s work, done and event rings."""
    return f"w{index}-work", f"w{index}-done", f"w{index}-events"


def worker_rings(
    instance: str, index: int, work_capacity: int = 4096, event_capacity: int = 1 << 16
) -> tuple[SpscRing, SpscRing, SpscRing]:
    """Create worker ``index``'s rings (the sequencer's side: it pushes work and pops
    the rest). The done ring holds as many records as the work ring."""
    work, done, events = ring_names(index)
    return (
        SpscRing.create(instance, work, WORK_DTYPE, work_capacity, replace_stale=True),
        SpscRing.create(instance, done, DONE_DTYPE, work_capacity, replace_stale=True),
        SpscRing.create(instance, events, EVENT_DTYPE, event_capacity, replace_stale=True),
    )


def run_works(
    state: KernelState,
    config: EngineConfig,
    fee_acct: int,
    work: np.ndarray,
    done: np.ndarray,
    events: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Run every record of ``work`` on ``state``'s book (``book_batch``), writing
    ``done`` and the events into ``events``, which doubles whenever a command might
    not fit; returns (the event buffer, maybe a new one, and the events written)."""
    start = ne = 0
    while start < len(work):
        start, ne = book_batch(
            state.book,
            work,
            start,
            done,
            events,
            ne,
            len(config.markets),
            fee_acct,
            state.scratch,
            config.max_matches,
        )
        if start < len(work):
            grown = np.zeros(2 * len(events), dtype=EVENT_DTYPE)
            grown[:ne] = events[:ne]
            events = grown
    return events, ne


class PairWorker:
    """The duty loop of one worker over its attached rings."""

    def __init__(self, config: EngineConfig, instance: str, index: int, fee_acct: int) -> None:
        self.config = config
        self.engine = Engine(config)
        self._state = self.engine.kernel_state()
        self._fee_acct = fee_acct
        names = ring_names(index)
        self.work_ring = SpscRing.attach(instance, names[0], WORK_DTYPE)
        self.done_ring = SpscRing.attach(instance, names[1], DONE_DTYPE)
        self.event_ring = SpscRing.attach(instance, names[2], EVENT_DTYPE)
        self._work = np.zeros(BATCH, dtype=WORK_DTYPE)
        self._done = np.zeros(BATCH, dtype=DONE_DTYPE)
        self._events = np.zeros(4096, dtype=EVENT_DTYPE)
        self.works = 0

    def do_work(self) -> int:
        """Run what the work ring holds (up to ``BATCH``); returns the works run."""
        n = self.work_ring.pop_nowait(self._work)
        if n == 0:
            return 0
        done = self._done[:n]
        self._events, ne = run_works(
            self._state, self.config, self._fee_acct, self._work[:n], done, self._events
        )
        self._push_all(self.event_ring, self._events[:ne])
        self._push_all(self.done_ring, done)
        self.works += n
        return n

    @staticmethod
    def _push_all(ring: SpscRing, records: np.ndarray) -> None:
        """Push every record, waiting for the consumer while the ring is full."""
        at = 0
        while at < len(records):
            pushed = ring.push_nowait(records[at:])
            at += pushed
            ring.wake_if_sleeping()
            if at < len(records) and pushed == 0:
                os.sched_yield()

    def run(self, should_stop: Callable[[], bool]) -> None:
        """The duty loop, until ``should_stop()``."""
        idle = BackoffIdle(self.work_ring, park_timeout_s=0.05)
        while not should_stop():
            idle.idle(self.do_work())

    def close(self) -> None:
        del self._state
        self.engine = None  # type: ignore[assignment]
        for ring in (self.work_ring, self.done_ring, self.event_ring):
            ring.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daemon.worker``: run one pair worker until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="daemon.worker", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--fee-acct", type=int, default=0, help="the fee user's account")
    parser.add_argument("--cpu", type=int, help="pin to this CPU")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    config = parse_config(args.config.read_text(encoding="utf-8"))
    worker = PairWorker(config, args.instance, args.index, args.fee_acct)
    print("ready", flush=True)  # the parent waits for this line: the rings are attached
    logger.info("pair worker ready instance=%s index=%d", args.instance, args.index)
    try:
        worker.run(lambda: stop)
    finally:
        logger.info("pair worker stopping index=%d works=%d", args.index, worker.works)
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
