"""The drainer against a private MariaDB server that is stopped, killed and restarted
while trading goes on (TESTING.md scenario 7, issue 5): trading never waits for MySQL,
the drainer retries with backoff and then catches up, every log record lands in MySQL
exactly once, and the drainer's memory does not grow with its lag.

The shared server on 127.0.0.1:3306 is never touched: each test runs its own
(``tests.support.mariadb_instance``)."""

from __future__ import annotations

import gc
import itertools
import logging
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import persistence.drainer
from core.config import EngineConfig
from persistence.drainer import Drainer, DrainStats
from persistence.history_rows import HistoryRows, RecordDecoder, RowBatch
from persistence.journal import LOG_DIR, Journal, JournalConfig, journal_log_config
from persistence.log_reader import LogReader
from tests.support.mariadb_instance import MariaDBInstance
from tests.support.mysql import TestDatabase, apply_schema
from tests.support.steps import Batch, Step, Update, funding, resolve
from tests.support.streams import Mix, RngChooser, draw_step
from tests.support.world import Limits, stream_config
from tests.unit.persistence.test_drainer import check_history

pytestmark = pytest.mark.integration

SEED = 20261205
RETRY_MIN_S = 0.05
RETRY_MAX_S = 0.5
IDLE_S = 0.005
OUTAGE_S = 1.5
QUICK_KILLS = 3


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[MariaDBInstance]:
    """A private MariaDB server (skips when MariaDB is not installed)."""
    with MariaDBInstance(tmp_path / "mariadb") as instance:
        yield instance


@pytest.fixture
def history(mariadb: MariaDBInstance) -> TestDatabase:
    """The history schema in a database of the private server."""
    database = mariadb.database("matchd")
    apply_schema(database)
    return database


# --------------------------------------------------------------------------- helpers


def endless_stream(rng: np.random.Generator, config: EngineConfig) -> Iterator[Step]:
    """The random stream of test_drainer (funding, then orders of every kind, deposits
    and withdrawals), drawn as it is consumed, for as long as the writer runs."""
    chooser = RngChooser(rng)
    yield from funding()
    while True:
        yield draw_step(chooser, config, Mix())


class StreamWriter:
    """Feeds the random stream to a journal, one step per batch, and notes when each
    batch was acknowledged (durable) and the log's sequence then."""

    def __init__(self, journal: Journal, seed: int) -> None:
        """Steps are drawn from ``seed``; nothing is written yet."""
        self.journal = journal
        self._steps = endless_stream(np.random.default_rng(seed), journal.config)
        self._ts_ns = 1_700_000_000_000_000_000
        #: (time.monotonic() at the acknowledgement, journal.durable_seq then)
        self.acks: list[tuple[float, int]] = []

    def write_step(self) -> None:
        """Submit the next step and wait for its acknowledgement."""
        step = next(self._steps)
        self._ts_ns += 1_000_000
        if isinstance(step, Update):
            self.journal.balance_update(
                step.user, step.asset, step.business, step.business_id, step.change,
                self._ts_ns, b'{"note":"test"}',
            )  # fmt: skip
        else:
            assert isinstance(step, Batch)
            self.journal.submit(resolve(step.commands, self.journal.engine, self._ts_ns))
        self.acks.append((time.monotonic(), self.journal.durable_seq))

    def write_records(self, count: int) -> None:
        """Write steps until the log holds ``count`` more records."""
        target = self.journal.durable_seq + count
        while self.journal.durable_seq < target:
            self.write_step()

    def run(self, stop: threading.Event) -> None:
        """Write as fast as the journal acknowledges until ``stop`` is set."""
        while not stop.is_set():
            self.write_step()

    def acked_between(self, start: float, end: float) -> tuple[int, int]:
        """(batches acknowledged, records made durable) between two monotonic times."""
        inside = [seq for t, seq in self.acks if start <= t <= end]
        before = [seq for t, seq in self.acks if t < start]
        if not inside:
            return 0, 0
        return len(inside), inside[-1] - (before[-1] if before else 0)

    def longest_wait_s(self) -> float:
        """The longest time between two acknowledgements."""
        times = [t for t, _ in self.acks]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass
class Background:
    """A function run in a thread; its exception, if any, is raised by ``join``."""

    target: Callable[[threading.Event], None]
    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Run ``target(stop)`` in a new thread."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.target(self.stop)
        except BaseException as exc:  # handed to the test by join()
            self.error = exc

    @property
    def thread(self) -> threading.Thread:
        """The thread (once started)."""
        assert self._thread is not None
        return self._thread

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    def halt(self, timeout_s: float = 60.0) -> None:
        """Stop the thread and wait for it (what it raised stays in ``error``)."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def join(self, timeout_s: float = 60.0) -> None:
        """Stop the thread, wait for it, raise what it raised."""
        self.halt(timeout_s)
        assert not self.alive, f"{self.name} did not stop"
        if self.error is not None:
            raise self.error


class Naps:
    """The drainer's ``sleep``: sleeps, and notes every nap that is not the idle one
    (the backoff after a failure)."""

    def __init__(self) -> None:
        """No nap yet."""
        self.backoffs: list[float] = []

    def __call__(self, seconds: float) -> None:
        """Sleep ``seconds``."""
        if seconds != IDLE_S:
            self.backoffs.append(seconds)
        time.sleep(seconds)


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float = 30.0,
    watch: Sequence[Background] = (),
) -> None:
    """Poll ``condition`` until it holds; AssertionError after ``timeout_s``, or as soon
    as a thread in ``watch`` has failed (with its exception as the cause)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for background in watch:
            if background.error is not None:
                raise AssertionError(f"{background.name} failed") from background.error
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def open_journal(data_dir: Path) -> Journal:
    """An empty journal of the stream's world."""
    config = stream_config(Limits())
    return Journal.open(config, JournalConfig(data_dir=data_dir, log=journal_log_config()))


def drainer_thread(drainer: Drainer) -> Background:
    """``drainer.run`` in a thread, stopped by the thread's event."""
    return Background(lambda stop: drainer.run(stop.is_set, idle_s=IDLE_S), "drainer")


def caught_up(drainer: Drainer, journal: Journal) -> bool:
    """Whether the drainer has applied everything the journal made durable."""
    return drainer.position == journal.durable_seq


@dataclass(frozen=True)
class Outage:
    """What happened while MySQL was down."""

    how: str
    lag_records: int  #: the drainer's lag when MySQL went down
    seconds: float
    batches_acked: int
    records_acked: int
    failures: int  #: failed drainer steps during the outage
    baseline_records_per_s: float  #: the journal's rate in the second before it

    @property
    def records_per_s(self) -> float:
        """The journal's rate while MySQL was down."""
        return self.records_acked / self.seconds


def take_down(how: str, mariadb: MariaDBInstance, writer: StreamWriter, drainer: Drainer) -> Outage:
    """Stop (SIGTERM) or kill (SIGKILL) MySQL for ``OUTAGE_S`` under load, then start it
    again; returns what the journal and the drainer did meanwhile."""
    before = time.monotonic()
    time.sleep(1.0)
    at_signal = drainer.statistics()
    signalled = time.monotonic()
    if how == "stop":
        mariadb.stop()
    else:
        mariadb.kill()
    down = time.monotonic()
    time.sleep(OUTAGE_S)
    up = time.monotonic()
    stats = drainer.statistics()
    mariadb.start()
    batches, records = writer.acked_between(down, up)
    _, baseline = writer.acked_between(before, signalled)
    return Outage(
        how,
        at_signal.lag_records,
        up - down,
        batches,
        records,
        stats.failures - at_signal.failures,
        baseline / (signalled - before),
    )


def show(stats: DrainStats) -> str:
    """The drainer's statistics on one line."""
    return (
        f"position={stats.position} committed={stats.committed_seq} lag={stats.lag_records} "
        f"batches={stats.batches} records={stats.records} rows={stats.rows} "
        f"failures={stats.failures} last_error={stats.last_error!r}"
    )


# --------------------------------------------------------------------------- tests


def test_mysql_stopped_and_killed_under_load_loses_and_doubles_nothing(
    tmp_path: Path,
    mariadb: MariaDBInstance,
    history: TestDatabase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A journal writes as fast as it can while MySQL is stopped (SIGTERM), then killed
    (SIGKILL), for 1.5 s each, then killed and restarted at once a few times, under
    the drainer; trading goes on at full speed, the drainer retries with backoff,
    catches up, and MySQL holds every record once."""
    print(f"seed {SEED}")
    caplog.set_level(logging.INFO, logger="persistence.drainer")
    data_dir = tmp_path / "data"
    journal = open_journal(data_dir)
    writer = StreamWriter(journal, SEED)
    naps = Naps()
    drainer = Drainer(
        data_dir / LOG_DIR,
        journal.config,
        history.connect,
        batch_records=256,
        retry_min_s=RETRY_MIN_S,
        retry_max_s=RETRY_MAX_S,
        sleep=naps,
    )
    writing = Background(writer.run, "journal writer")
    draining = drainer_thread(drainer)
    both = (writing, draining)
    outages: list[Outage] = []
    backoffs: list[list[float]] = []
    try:
        writing.start()
        draining.start()
        wait_for(lambda: (drainer.position or 0) > 200, "the drainer to start", watch=both)
        for how in ("stop", "kill"):
            naps_before = len(naps.backoffs)
            outages.append(take_down(how, mariadb, writer, drainer))
            wait_for(
                lambda: (drainer.position or 0) > journal.durable_seq - 100, "recovery", watch=both
            )
            backoffs.append(naps.backoffs[naps_before:])
            print(f"{outages[-1]}: backoffs {backoffs[-1]}")
            assert writing.alive
            assert draining.alive
        # A few more crashes at random moments, restarted at once: more chances to
        # kill MySQL in the middle of a batch, or of its COMMIT.
        rng = np.random.default_rng(SEED)
        for _ in range(QUICK_KILLS):
            time.sleep(float(rng.uniform(0.1, 0.4)))
            mariadb.kill()
            mariadb.start()
        time.sleep(1.0)
        writing.join()
        wait_for(lambda: caught_up(drainer, journal), "the drainer to catch up", watch=both)
        draining.join()
    finally:
        writing.halt()
        draining.halt()
        journal.close()
    stats = drainer.statistics()  # the drainer's thread is done: its counters are final
    print(show(stats))
    # A batch whose COMMIT reached MySQL but whose answer was lost (killed mid-commit)
    # counts as failed, and the drainer then finds its position ahead: exactly once.
    print(f"records committed with their answer lost: {stats.position - stats.records}")
    print(f"journal: {journal.durable_seq} records in {len(writer.acks)} batches; longest "
          f"wait for an acknowledgement {writer.longest_wait_s():.3f} s")  # fmt: skip
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    print("drainer errors logged:", *errors, sep="\n  ")
    # Trading went on while MySQL was down (its rate is printed; it is not compared,
    # being a matter of what else the 2 cores of a CI machine run).
    for outage in outages:
        assert outage.batches_acked > 50, outage
        assert outage.failures > 0, outage  # the drainer saw MySQL down
    assert writer.longest_wait_s() < 5.0  # never stalled
    # The drainer retried with exponential backoff, capped, started over after each
    # success, and logged each new error once (not once per retry).
    for naps_taken in backoffs:
        assert naps_taken == [min(RETRY_MAX_S, RETRY_MIN_S * 2**i) for i in range(len(naps_taken))]
        assert naps_taken[-1] == RETRY_MAX_S
    # Each outage is logged (once, not once per retry), and so is its end.
    assert len(outages) <= len(errors) < stats.failures
    answers = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(answers) >= len(outages)
    assert stats.failures > 0
    assert (stats.lag_records, stats.lag_seconds) == (0, 0.0)
    assert stats.position == journal.durable_seq == journal.engine.counters()[0]
    check_history(history, data_dir, journal.engine)


_NOT_STATE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)


def retained_bytes(drainer: Drainer, thread: threading.Thread) -> int:
    """Bytes of the objects the drainer keeps: everything reachable from it and from
    the locals of its thread's frames in persistence/drainer.py (classes, modules,
    functions and code are not its state and are not followed)."""
    roots: list[object] = [drainer]
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_filename == persistence.drainer.__file__:
            roots.extend(frame.f_locals.values())
        frame = frame.f_back
    seen: set[int] = set()
    total = 0
    while roots:
        obj = roots.pop()
        if id(obj) in seen or isinstance(obj, _NOT_STATE):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        roots.extend(gc.get_referents(obj))
    return total


def rows_bytes(log_dir: Path, config: EngineConfig, first_seq: int, count: int) -> int:
    """Bytes that the rows of ``count`` records from ``first_seq`` take when held at
    once, as a drainer that kept its lag would hold them."""
    decoder, rows, batch = RecordDecoder(), HistoryRows(config), RowBatch()
    tracemalloc.start()
    try:
        with LogReader(log_dir) as reader:
            for record in reader.read(first_seq, limit=count):
                rows.add(batch, decoder.decode(record))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch.records == count
    return held


def test_drainer_memory_does_not_grow_with_the_lag(
    tmp_path: Path, mariadb: MariaDBInstance, history: TestDatabase
) -> None:
    """While MySQL is down the records wait in the log, not in the drainer; catching
    up, it holds one batch at a time, however far behind it is."""
    print(f"seed {SEED + 1}")
    data_dir = tmp_path / "data"
    journal = open_journal(data_dir)
    writer = StreamWriter(journal, SEED + 1)
    batch_records, lag, traced_batches, sample = 50, 8000, 10, 500
    drainer = Drainer(
        data_dir / LOG_DIR,
        journal.config,
        history.connect,
        batch_records=batch_records,
        retry_min_s=RETRY_MIN_S,
        retry_max_s=RETRY_MAX_S,
    )
    draining = drainer_thread(drainer)
    # Two measures, both independent of timing:
    # (1) At the end of the outage, with 8000 records (160 batches) waiting, what the
    #     drainer keeps (everything reachable from it and from its frames' locals) is
    #     what it kept when caught up: a drainer that read ahead or queued records
    #     while MySQL was down would keep at least their payloads (hundreds of bytes
    #     each).
    # (2) When MySQL is back, tracemalloc's peak over its first 10 batches (the writer
    #     is idle then: all that is allocated is the drainer's) is a small part of what
    #     the rows of its lag would take at once (measured on 500 of the records, then
    #     scaled): a drainer that read its whole lag first, even to write it in batches,
    #     would exceed it. Only those batches are traced: tracemalloc makes the drainer
    #     ~4x slower.
    try:
        draining.start()
        writer.write_records(300)  # warm up: connection, decoder buffers, caches
        wait_for(lambda: caught_up(drainer, journal), "the drainer", watch=(draining,))
        position = drainer.position
        assert position is not None
        before = drainer.statistics()
        kept_caught_up = retained_bytes(drainer, draining.thread)
        mariadb.stop()
        writer.write_records(lag)
        wait_for(
            lambda: drainer.statistics().failures > before.failures + 3,
            "retries",
            watch=(draining,),
        )
        down = drainer.statistics()
        kept_down = retained_bytes(drainer, draining.thread)
        tracemalloc.start()
        try:
            mariadb.start()
            wait_for(
                lambda: (drainer.position or 0) >= position + traced_batches * batch_records,
                "the drainer to apply 10 batches",
                watch=(draining,),
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        wait_for(lambda: caught_up(drainer, journal), "the drainer", 60.0, watch=(draining,))
        draining.join()
    finally:
        draining.halt()
        journal.close()
    after = drainer.statistics()
    lag_rows = rows_bytes(data_dir / LOG_DIR, journal.config, position + 1, sample)
    lag_rows = lag_rows * lag // sample
    print(f"outage: lag {down.lag_records} records, {down.lag_seconds:.2f} s; the drainer "
          f"keeps {kept_down} bytes (caught up: {kept_caught_up})")  # fmt: skip
    print(f"catching up: peak {peak} bytes; the lag's rows at once ~{lag_rows} bytes")
    print(show(after))
    # MySQL down: the drainer applied nothing, lost nothing, knew how far behind it was.
    assert down.position == position
    assert down.lag_records >= lag
    assert down.lag_seconds > 0
    assert kept_down < kept_caught_up + 64 * 1024
    # Caught up in transactions of at most batch_records records, holding no more
    # than a small part of its lag.
    assert after.batches - before.batches >= -(-(after.position - position) // batch_records)
    assert peak < lag_rows / 4
    assert after.failures > before.failures
    assert (after.lag_records, after.lag_seconds) == (0, 0.0)
    check_history(history, data_dir, journal.engine)


def test_a_hung_server_times_out_and_the_drainer_catches_up_after(
    tmp_path: Path, mariadb: MariaDBInstance, history: TestDatabase
) -> None:
    """A MySQL server that stops answering (SIGSTOP) fails the drainer's call after
    ``io_timeout_s`` instead of holding it for ever; once it answers again the
    drainer catches up."""
    from persistence.history_config import HistoryConfig
    from persistence.history_db import connect

    config = HistoryConfig(
        host=history.host,
        port=history.port,
        user=history.user,
        password=history.password,
        database=history.database,
        connect_timeout_s=1.0,
        io_timeout_s=1.0,
    )
    journal = open_journal(tmp_path / "data")
    writer = StreamWriter(journal, SEED)
    drainer = Drainer(
        tmp_path / "data" / LOG_DIR,
        journal.config,
        lambda: connect(config),
        retry_min_s=RETRY_MIN_S,
        retry_max_s=RETRY_MAX_S,
    )
    draining = drainer_thread(drainer)
    try:
        writer.write_records(50)
        draining.start()
        wait_for(lambda: caught_up(drainer, journal), "the drainer to catch up", watch=[draining])
        mariadb.pause()
        try:
            writer.write_records(100)  # trading goes on; the drainer's INSERT hangs
            wait_for(
                lambda: drainer.statistics().failures > 0,
                "the drainer to give up on the hung server",
                timeout_s=15.0,
                watch=[draining],
            )
        finally:
            mariadb.resume()
        wait_for(lambda: caught_up(drainer, journal), "the drainer to catch up", watch=[draining])
    finally:
        draining.halt()
        journal.close()
    check_history(history, tmp_path / "data", journal.engine, min_trades=5)
