"""The sequencer's half of the multi-process daemon: ``Sequencing`` over real pair
worker processes (docs/daemon.md, "The server with pair workers").

A ``Pipeline`` belongs to the server's loop (``daemon.server``). At start it copies
the recovered books into shared memory, one full-size book per worker
(``/matchd.<instance>.w<i>-<array>``, only the blocks that hold data), creates each
worker's three rings, starts the workers (``python -m daemon.worker``, pinned to
their CPUs; the kernel kills them if this process dies) and waits until every one is
ready. Then, from the server's one thread:

- ``submit`` hands a command to the ordering rules (``submit_many`` a request's
  records, where a QUOTE and its levels are one command); ``step`` pushes the WORK
  records they released to the rings, pops the workers' DONE records and events,
  settles them and collects the answers (``take_answers``), which the server logs
  as one batch and acknowledges once durable.
- ``quiesce`` drives everything out (every work settled, every rename run): only
  then are the workers' books a consistent state, read through ``market_engine``
  (queries) and ``composed`` (snapshots, the state hash).
- ``adopt_catalog``, with nothing in flight, follows an asset or a market that the
  sequencer's engine added (``Journal.add_catalog``): every market slot has its
  worker from the start (``plan_workers`` plans the slots, ``engine.max_markets``),
  so a new market only needs its parameter row in each worker's book.

A worker that dies leaves its book in an unknown state, so the pipeline fails
(``WorkerDied``): the server stops, the supervisor starts it again, and recovery
(snapshot + log) rebuilds every book; commands not yet acknowledged were never
durable (DESIGN.md rules 2 and 4).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.compose import compose_engine
from core.engine import BOOK_ARRAYS, Engine, copy_nonzero
from core.engine_catalog import market_params
from core.errors import BrokenError, ConfigError
from core.memory import join_records
from core.schema import DONE_DTYPE, EVENT_DTYPE, WORK_DTYPE
from daemon.sequencing import Answer, Sequencing
from daemon.worker import book_array_name, worker_rings
from ipc.ring import RingStats, SpscRing
from ipc.shm import ShmAllocator, find_stale, remove_instance

logger = logging.getLogger(__name__)

#: The most workers a daemon runs (each is a process with its own book).
MAX_WORKERS = 64


class WorkerDied(BrokenError):
    """A pair worker exited or stopped answering: its book cannot be trusted."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """How the markets are spread over workers and how the rings are sized."""

    #: The market slots of each worker (every slot in exactly one): the markets of
    #: the catalog and those that may be added (``engine.max_markets``).
    groups: tuple[tuple[int, ...], ...]
    #: The CPU each worker is pinned to (None: not pinned), one per group.
    cpus: tuple[int | None, ...]
    #: WORK records in flight at most (the ordering rules' bound).
    max_in_flight: int = 4096
    work_capacity: int = 4096
    event_capacity: int = 1 << 16
    #: How long a worker may take to start (a cold numba cache compiles first).
    start_timeout_s: float = 300.0
    #: How long ``quiesce`` waits for the workers.
    quiesce_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if len(self.cpus) != len(self.groups):
            raise ConfigError("one CPU entry per worker")
        if not 1 <= len(self.groups) <= MAX_WORKERS:
            raise ConfigError(f"workers must be 1..{MAX_WORKERS}; got {len(self.groups)}")

    @property
    def owner(self) -> list[int]:
        """The worker of every market slot, by market index."""
        owner: dict[int, int] = {}
        for w, group in enumerate(self.groups):
            for m in group:
                owner[m] = w
        return [owner[m] for m in range(len(owner))]


def plan_workers(
    n_markets: int,
    workers: int | None = None,
    cpus: Sequence[int] | None = None,
    *,
    slots: int | None = None,
) -> PipelineConfig:
    """Market slots spread round-robin over ``workers`` (default: one per market of
    the catalog, ``n_markets``), pinned round-robin to ``cpus``. ``slots`` (default
    ``n_markets``) is the engine's ``market_slots``: the markets it may ever hold,
    those that may be added at run time too, each of which has its worker from the
    start (docs/daemon.md, "Adding a market").

    By default (``cpus`` None) a worker is pinned only when the machine has a CPU for
    every worker besides one left to the sequencer (the first CPU this process may
    use; the workers take the others). With fewer, the workers are not pinned: a
    worker pinned to the CPU the sequencer spins on waits for the scheduler to take
    that CPU back (measured on 2 cores with 2 workers: a round trip of 390 µs pinned,
    290 µs not). ``cpus`` given (``[]``: none) always rules."""
    if n_markets < 1:
        raise ConfigError("the pipeline needs at least one market")
    n_slots = n_markets if slots is None else slots
    if n_slots < n_markets:
        raise ConfigError(f"{n_slots} market slots cannot hold {n_markets} markets")
    count = n_markets if workers is None else workers
    if not 1 <= count <= min(n_markets, MAX_WORKERS):
        raise ConfigError(
            f"workers must be 1..{min(n_markets, MAX_WORKERS)} for {n_markets} markets; got {count}"
        )
    groups = tuple(tuple(range(w, n_slots, count)) for w in range(count))
    if cpus is None:
        usable = sorted(os.sched_getaffinity(0))
        available = usable[1:] if len(usable) > count else []
    else:
        available = list(cpus)
    for cpu in available:
        if type(cpu) is not int or cpu < 0:
            raise ConfigError(f"a CPU is a number >= 0; got {cpu!r}")
    pinned = tuple(available[w % len(available)] if available else None for w in range(count))
    return PipelineConfig(groups, pinned)


class _Worker:
    """One worker process, its rings, and what the pipeline has pushed and popped."""

    def __init__(self, index: int, rings: tuple[SpscRing, SpscRing, SpscRing]) -> None:
        self.index = index
        self.work, self.done, self.events = rings
        self.process: subprocess.Popen[bytes] | None = None
        #: WORK batches released by the rules and not yet pushed, oldest first.
        self.backlog: list[np.ndarray] = []
        self.sent = 0  # WORK records pushed (renames included)
        self.answered = 0  # DONE records popped
        #: Events popped ahead of their DONE records: ``staged[:n_staged]``.
        self.staged = np.zeros(2 * self.events.capacity, dtype=EVENT_DTYPE)
        self.n_staged = 0

    @property
    def idle(self) -> bool:
        return not self.backlog and self.sent == self.answered


class Pipeline:
    """The sequencer over pair worker processes; see the module docstring."""

    def __init__(self, engine: Engine, pconfig: PipelineConfig, instance: str) -> None:
        """``engine``: the sequencer's state (a recovered journal's engine). Its
        balances are the sequencer's from now on; its books are copied to the
        workers and not touched again."""
        self.engine = engine
        self.config = engine.config
        self.pconfig = pconfig
        self.instance = instance
        self._owner = pconfig.owner
        if len(self._owner) != self.config.market_slots:
            raise ConfigError(
                f"every market slot must belong to exactly one worker: the plan has "
                f"{len(self._owner)}, the engine {self.config.market_slots} (engine.max_markets)"
            )
        state = engine.kernel_state()
        if find_stale(instance):
            logger.warning("removing the shared memory a previous run left: instance=%s", instance)
            remove_instance(instance)
        self._shm: ShmAllocator | None = ShmAllocator(instance, create=True)
        self._workers: list[_Worker] = []
        self._books: list[dict[str, np.ndarray]] = []
        #: Per worker, an engine over its book and the sequencer's other arrays (made
        #: once: the arrays never move), read only with nothing in flight.
        self._views: list[Engine] = []
        self._answers: list[Answer] = []
        self._done = np.zeros(pconfig.work_capacity, dtype=DONE_DTYPE)
        try:
            arrays = engine.state_arrays()
            for w in range(len(pconfig.groups)):
                self._books.append(self._copy_book(w, arrays))
                rings = worker_rings(instance, w, pconfig.work_capacity, pconfig.event_capacity)
                self._workers.append(_Worker(w, rings))
            self._views = [
                Engine.from_arrays(self.config, {**arrays, **book}) for book in self._books
            ]
            for worker in self._workers:
                worker.process = self._start(worker, state.fee_acct)
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        self.sequencing = Sequencing(self.config, state, self._send, pconfig.max_in_flight)
        self.sequencing.warm_up()
        for worker in self._workers:
            for ring in (worker.work, worker.done, worker.events):
                ring.warm_up()
        logger.info(
            "pipeline ready: instance=%s workers=%d groups=%s cpus=%s",
            instance,
            len(self._workers),
            list(pconfig.groups),
            list(pconfig.cpus),
        )

    def _copy_book(self, w: int, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._shm is not None  # noqa: S101 -- set in __init__
        book = {}
        for name in BOOK_ARRAYS:
            src = arrays[name]
            dst = self._shm.array(book_array_name(w, name), src.shape, src.dtype)
            copy_nonzero(dst, src)
            book[name] = dst
        return book

    def _start(self, worker: _Worker, fee_acct: int) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable, "-m", "daemon.worker", "--instance", self.instance,
            "--index", str(worker.index), "--markets", str(self.config.market_slots),
            "--max-matches", str(self.config.max_matches), "--fee-acct", str(fee_acct),
            "--parent", str(os.getpid()),
        ]  # fmt: skip
        cpu = self.pconfig.cpus[worker.index]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE)  # noqa: S603 -- our module

    def _wait_ready(self) -> None:
        """Wait for every worker's "ready" line."""
        deadline = time.monotonic() + self.pconfig.start_timeout_s
        waiting = {
            w.process.stdout.fileno(): w for w in self._workers if w.process and w.process.stdout
        }
        lines: dict[int, bytes] = dict.fromkeys(waiting, b"")
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                late = sorted(w.index for w in waiting.values())
                raise WorkerDied(f"workers {late} did not start in time")
            readable, _, _ = select.select(list(waiting), [], [], min(left, 0.5))
            for fd in readable:
                chunk = os.read(fd, 64)
                if not chunk:
                    raise WorkerDied(f"worker {waiting[fd].index} exited while starting")
                lines[fd] += chunk
                if lines[fd].endswith(b"\n"):
                    if lines[fd].strip() != b"ready":
                        raise WorkerDied(f"worker {waiting[fd].index} said {lines[fd]!r}")
                    del waiting[fd]
            self.check_workers()

    # ------------------------------------------------------------ the rules' side

    def _send(self, market: int, work: np.ndarray) -> None:
        self._workers[self._owner[market]].backlog.append(work)

    def submit(self, token: int, cmd: np.ndarray) -> None:
        """Hand one command (a 1-element COMMAND_DTYPE array) to the rules."""
        self._answers.extend(self.sequencing.submit(token, cmd))

    def submit_many(self, tokens: range, commands: np.ndarray) -> None:
        """Hand ``commands`` (COMMAND_DTYPE, one request's: a QUOTE takes its levels
        from them and never from another call's) to the rules, ``tokens`` in order,
        and dispatch what they allow once."""
        self.sequencing.enqueue_batch(tokens, commands)
        self._answers.extend(self.sequencing.pump())

    def take_answers(self) -> list[Answer]:
        """The answers since the last call, in the order their results hold."""
        answers, self._answers = self._answers, []
        return answers

    @property
    def busy(self) -> bool:
        """Work is out, or waiting to go out."""
        return self.sequencing.in_flight > 0 or any(not w.idle for w in self._workers)

    # ------------------------------------------------------------ the rings' side

    def step(self) -> int:
        """Push what the rules released, settle what the workers answered; returns
        the DONE records popped."""
        got = 0
        for worker in self._workers:
            self._push(worker)
            got += self._pop(worker)
        return got

    def _push(self, worker: _Worker) -> None:
        if len(worker.backlog) > 1:  # one push for all
            worker.backlog = [join_records(worker.backlog, WORK_DTYPE)]
        pushed = False
        while worker.backlog:
            head = worker.backlog[0]
            n = worker.work.push_nowait(head)
            worker.sent += n
            pushed = pushed or n > 0
            if n < len(head):
                worker.backlog[0] = head[n:]
                break
            worker.backlog.pop(0)
        if pushed:
            worker.work.wake_if_sleeping()

    def _pop(self, worker: _Worker) -> int:
        self._pop_events(worker)
        n = worker.done.pop_nowait(self._done)
        if n == 0:
            return 0
        worker.done.wake_if_sleeping()  # a worker waiting on a full done ring
        done = self._done[:n]
        need = int(done["event_count"].sum())
        while worker.n_staged < need:  # pushed before their DONE: in the ring now
            if self._pop_events(worker) == 0:
                raise WorkerDied(f"worker {worker.index}: DONE records without their events")
        events = worker.staged[:need].copy()
        rest = worker.n_staged - need
        worker.staged[:rest] = worker.staged[need : worker.n_staged]
        worker.n_staged = rest
        worker.answered += n
        self._answers.extend(self.sequencing.complete(done.copy(), events))
        return n

    def _pop_events(self, worker: _Worker) -> int:
        room = worker.staged.shape[0] - worker.n_staged
        if room < worker.events.capacity:
            grown = np.zeros(2 * worker.staged.shape[0], dtype=EVENT_DTYPE)
            grown[: worker.n_staged] = worker.staged[: worker.n_staged]
            worker.staged = grown
        k = worker.events.pop_nowait(worker.staged[worker.n_staged :])
        if k:
            worker.events.wake_if_sleeping()
        worker.n_staged += k
        return k

    def check_workers(self) -> None:
        """Raise ``WorkerDied`` if a worker has exited."""
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is not None:
                raise WorkerDied(
                    f"pair worker {worker.index} (pid {worker.process.pid}) exited with "
                    f"{worker.process.returncode}"
                )

    def quiesce(self) -> None:
        """Drive everything out: every work settled, every rename run by its worker.
        Raises ``WorkerDied`` if a worker dies or stops answering meanwhile."""
        deadline = time.monotonic() + self.pconfig.quiesce_timeout_s
        spins = 0
        while True:
            if not self.sequencing.in_flight:
                for m in range(len(self.config.markets)):
                    renames = self.sequencing.pending_renames(m)
                    if len(renames):
                        self._send(m, renames)
            if not self.busy:
                return
            if self.step():
                spins = 0
                continue
            spins += 1
            if spins > 8:  # let a woken worker have this core (see worker.SPINS)
                os.sched_yield()
            if spins > 100:
                self.check_workers()
                if time.monotonic() > deadline:
                    raise WorkerDied("the workers did not finish their work in time")
                time.sleep(0.0001)

    # ------------------------------------------------------------ the state

    def market_engine(self, market: int) -> Engine:
        """An engine over ``market``'s worker book and the sequencer's balances, for
        queries; valid until the next command (call ``quiesce`` first)."""
        return self._views[self._owner[market]]

    def composed(self) -> Engine:
        """A private copy of the whole state, every market's book from its worker
        (call ``quiesce`` first): what a snapshot holds and the state hash covers."""
        owner = self._owner[: len(self.config.markets)]
        return compose_engine(self.config, self.engine, self._views, owner)

    # ------------------------------------------------------------ the catalog

    def adopt_catalog(self) -> None:
        """Follow the sequencer's engine after it added assets or markets
        (``Journal.add_catalog``), with nothing in flight (docs/daemon.md, "Adding a
        market"): each new market's parameter row goes into every worker's book (the
        slot's pool room and empty book are there from the start, and no worker has
        touched the row), the engines over the workers' books take the catalog, and
        the ordering rules judge the new markets from now on. Nothing is sent to a
        worker: the first work for a new market follows this, in the rings' order.
        An asset needs nothing of the workers."""
        if self.busy or self.sequencing.in_flight:
            raise RuntimeError("adopt_catalog() with work in flight")
        config = self.engine.config
        for market in config.markets[len(self.config.markets) :]:
            for book in self._books:
                market_params(book["mparams"][market.index], market)
        for view in self._views:
            view.adopt_catalog()
        self.config = config
        self.sequencing.adopt_catalog(config)
        logger.info(
            "pipeline catalog: %d assets, %d markets", len(config.assets), len(config.markets)
        )

    def ring_stats(self) -> list[tuple[int, str, RingStats]]:
        """(worker, ring, stats) of every ring."""
        out = []
        for w in self._workers:
            for name, ring in (("work", w.work), ("done", w.done), ("events", w.events)):
                out.append((w.index, name, ring.stats()))
        return out

    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [w.process.pid for w in self._workers if w.process is not None]

    # ------------------------------------------------------------ closing

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers (SIGTERM, then SIGKILL), remove the rings and the books."""
        for w in self._workers:
            if w.process is not None and w.process.poll() is None:
                w.process.terminate()
        deadline = time.monotonic() + timeout_s
        for w in self._workers:
            if w.process is None:
                continue
            try:
                w.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            if w.process.stdout is not None:
                w.process.stdout.close()
        for w in self._workers:
            for ring in (w.work, w.done, w.events):
                with contextlib.suppress(Exception):
                    ring.close()
                    ring.unlink()
        self._workers = []
        self._books = []
        self._views = []
        if self._shm is not None:
            shm, self._shm = self._shm, None
            shm.unlink()
            try:
                shm.close()
            except BufferError as exc:  # an engine view is still referenced somewhere
                logger.warning("shared memory stays mapped until exit: %s", exc)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
