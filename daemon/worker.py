"""A pair worker: the book half of the engine in a process of its own (docs/daemon.md,
"Sequencer and pair workers").

It owns the books of its markets and never sees a balance. The books are a full-size
book (``core.engine.BOOK_ARRAYS``) in shared memory, ``w<index>-<array>`` in the
daemon's instance, which the sequencer filled from the recovered state before it
started the worker (``daemon.pipeline``); the worker only touches its markets, and
the sequencer reads them when nothing is in flight. Its duty loop pops WORK
records from its work ring, runs them (``book_batch``), and pushes the commands'
events to its event ring and then their DONE records to its done ring, so that a
DONE record the sequencer pops has its events ahead of it. The sequencer creates the
three rings (``worker_rings``) before it starts the worker, which attaches to them.
When there is no work it spins, yields, then sleeps on the work ring's semaphore
(``ipc.idle.BackoffIdle``): an idle worker uses no CPU. A QUOTE's works (the header
and its k levels) run together: when the works popped end inside one, the worker
pops the rest (the sequencer pushes the whole group) before it runs them.

A full event or done ring makes the worker wait for the sequencer (which never
waits for a worker), so nothing is dropped and nothing grows: the rings are the
bounds. Run as ``python -m daemon.worker --instance NAME --index N --markets M
--max-matches K --fee-acct A``, ``M`` the engine's market slots (a market added at
run time is in a slot the worker had from the start: the sequencer writes its
parameter row into the book before any work for it);
with ``--parent PID`` it dies with that process (Linux ``PR_SET_PDEATHSIG``): a
worker never outlives the sequencer that feeds it.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

import numpy as np

from core.engine import BOOK_ARRAYS, KernelState
from core.kernels.book_batch import book_batch
from core.schema import (
    DONE_DTYPE,
    EVENT_DTYPE,
    MAX_QUOTE_LEVELS,
    WORK_COMMAND,
    WORK_DTYPE,
    CommandKind,
)
from daemon.stopping import stop_on_signals
from ipc.idle import BackoffIdle
from ipc.ring import SpscRing
from ipc.shm import ShmAllocator
from ipc.shm_index import read_index

logger = logging.getLogger(__name__)

#: Works popped per loop (and the rest of a QUOTE group the last ones open).
BATCH = 256
#: Room for the works of a loop: a QUOTE opened by the last of BATCH brings at most
#: its 2 x MAX_QUOTE_LEVELS levels more.
WORK_ROOM = BATCH + 2 * MAX_QUOTE_LEVELS
_QUOTE = int(CommandKind.QUOTE)
_QUOTE_LEVEL = int(CommandKind.QUOTE_LEVEL)
#: Empty polls before the worker yields, then parks: one poll costs about 5-10 µs of
#: Python, a wake from the semaphore about 45 µs, so a worker spins for about as
#: long as a wake costs. More spinning starves the other processes on a small
#: machine (measured: 100 spins made round trips 8x slower with two workers on two
#: cores).
SPINS = 8
YIELDS = 2


def book_array_name(index: int, name: str) -> str:
    """The shared-memory name of worker ``index``'s book array ``name``."""
    return f"w{index}-{name}"


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


def group_shortfall(work: np.ndarray) -> int:
    """How many works ``work`` lacks at its end to hold its last QUOTE group whole (0
    when it ends on a whole command). Groups are pushed whole and in one piece, so
    only the last QUOTE can be short."""
    if not len(work):
        return 0
    last = work[-1]
    if last["op"] != WORK_COMMAND or int(last["kind"]) not in (_QUOTE, _QUOTE_LEVEL):
        return 0
    heads = np.flatnonzero((work["op"] == WORK_COMMAND) & (work["kind"] == _QUOTE))
    if not len(heads):
        return 0
    i = int(heads[-1])
    return max(0, i + 1 + int(work["amount"][i]) - len(work))


def run_works(
    state: KernelState,
    n_markets: int,
    max_matches: int,
    fee_acct: int,
    work: np.ndarray,
    done: np.ndarray,
    events: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Run every record of ``work`` on ``state``'s book (``book_batch``), writing
    ``done`` and the events into ``events``, which doubles whenever a command might
    not fit; returns (the event buffer, maybe a new one, and the events written).
    ``work`` holds every QUOTE group whole (``group_shortfall``: 0)."""
    if group_shortfall(work):
        raise ValueError("run_works() got a QUOTE group without all its levels")
    start = ne = 0
    while start < len(work):
        start, ne = book_batch(
            state.book,
            work,
            start,
            done,
            events,
            ne,
            n_markets,
            fee_acct,
            state.scratch,
            max_matches,
        )
        if start < len(work):
            grown = np.zeros(2 * len(events), dtype=EVENT_DTYPE)
            grown[:ne] = events[:ne]
            events = grown
    return events, ne


def attach_book(shm: ShmAllocator, index: int, fee_acct: int) -> KernelState:
    """Worker ``index``'s book in ``shm``, as the book half's kernels take it."""
    listed = {info.name: info for info in read_index(shm.instance).arrays}
    book = []
    for name in BOOK_ARRAYS:
        info = listed.get(book_array_name(index, name))
        if info is None:
            raise FileNotFoundError(
                f"shared memory {shm.instance!r} has no {book_array_name(index, name)!r}"
            )
        book.append(shm.array(info.name, info.shape, info.dtype))
    scratch = book[BOOK_ARRAYS.index("orders")].shape[0] - 1  # the last slot: the taker
    mparams = book[BOOK_ARRAYS.index("mparams")]
    return KernelState(tuple(book), (), np.zeros(0, dtype=np.int64), mparams, fee_acct, scratch)


class PairWorker:
    """The duty loop of one worker over its attached book and rings."""

    def __init__(
        self, instance: str, index: int, n_markets: int, max_matches: int, fee_acct: int
    ) -> None:
        self._shm = ShmAllocator(instance, create=False)
        self._state = attach_book(self._shm, index, fee_acct)
        self._n_markets = n_markets
        self._max_matches = max_matches
        self._fee_acct = fee_acct
        names = ring_names(index)
        self.work_ring = SpscRing.attach(instance, names[0], WORK_DTYPE)
        self.done_ring = SpscRing.attach(instance, names[1], DONE_DTYPE)
        self.event_ring = SpscRing.attach(instance, names[2], EVENT_DTYPE)
        self._work = np.zeros(WORK_ROOM, dtype=WORK_DTYPE)
        self._done = np.zeros(WORK_ROOM, dtype=DONE_DTYPE)
        self._events = np.zeros(4096, dtype=EVENT_DTYPE)
        self.works = 0
        self._warm_up()

    def _warm_up(self) -> None:
        """Load (or compile) the kernels before saying "ready": the book half over no
        work, and the rings' push and pop."""
        book_batch(
            self._state.book,
            self._work[:0],
            0,
            self._done[:0],
            self._events,
            0,
            self._n_markets,
            self._fee_acct,
            self._state.scratch,
            self._max_matches,
        )
        for ring in (self.work_ring, self.done_ring, self.event_ring):
            ring.warm_up()

    def do_work(self) -> int:
        """Run what the work ring holds (up to ``BATCH``, and the rest of a QUOTE group
        the last ones open); returns the works run."""
        n = self.work_ring.pop_nowait(self._work[:BATCH])
        if n == 0:
            return 0
        n += self._pop_exactly(self._work[n : n + group_shortfall(self._work[:n])])
        done = self._done[:n]
        self._events, ne = run_works(
            self._state,
            self._n_markets,
            self._max_matches,
            self._fee_acct,
            self._work[:n],
            done,
            self._events,
        )
        self._push_all(self.event_ring, self._events[:ne])
        self._push_all(self.done_ring, done)
        self.works += n
        return n

    def _pop_exactly(self, out: np.ndarray) -> int:
        """Pop exactly ``len(out)`` works into ``out`` (the rest of a group that the
        sequencer is pushing), waiting for them; returns how many."""
        at = 0
        while at < len(out):
            got = self.work_ring.pop_nowait(out[at:])
            at += got
            if at < len(out) and got == 0:
                os.sched_yield()
        return at

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
        idle = BackoffIdle(self.work_ring, spins=SPINS, yields=YIELDS, park_timeout_s=0.05)
        while not should_stop():
            idle.idle(self.do_work())

    def close(self) -> None:
        del self._state
        for ring in (self.work_ring, self.done_ring, self.event_ring):
            ring.close()
        self._shm.close()


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if it already has."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the prctl
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daemon.worker``: run one pair worker until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="daemon.worker", description=__doc__)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument(
        "--markets",
        type=int,
        required=True,
        help="market slots (engine.max_markets: those of the catalog and those that may be added)",
    )
    parser.add_argument("--max-matches", type=int, required=True, help="the config's max_matches")
    parser.add_argument("--fee-acct", type=int, default=0, help="the fee user's account")
    parser.add_argument("--cpu", type=int, help="pin to this CPU")
    parser.add_argument("--parent", type=int, help="die with this process (the sequencer)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    if args.parent is not None:
        _die_with_parent(args.parent)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    should_stop = stop_on_signals()
    worker = PairWorker(args.instance, args.index, args.markets, args.max_matches, args.fee_acct)
    print("ready", flush=True)  # the parent waits for this line: the rings are attached
    logger.info("pair worker ready instance=%s index=%d", args.instance, args.index)
    try:
        worker.run(should_stop)
    finally:
        logger.info("pair worker stopping index=%d works=%d", args.index, worker.works)
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
