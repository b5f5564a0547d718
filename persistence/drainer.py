"""The MySQL drainer: follows the append log and writes its history, every record once
(docs/history.md, "The drainer").

Each batch is up to ``batch_records`` committed records after the drainer's position,
decoded at once (``persistence.history_batch``), turned into rows for the whole batch
(``persistence.history_bulk``) and loaded with ``LOAD DATA LOCAL INFILE`` (a
temporary file per table), in **one** transaction that also moves the position
(``drain_position``) past them; the position update names the position it expects,
so two drainers of one name cannot both apply a batch. A crash anywhere (drainer,
MySQL, host) leaves either the whole batch with its position or neither: on restart
the drainer reads its position from MySQL and goes on from there, so every record
lands exactly once. When the server or the client refuses ``LOAD DATA LOCAL`` (the
connection needs ``local_infile=1``), the batch is rolled back and written again with
multi-row INSERTs (``executemany`` of ``persistence.history_rows``' rows), and so are
the later batches of that connection; ``bulk=False`` always does (the path before
``LOAD DATA``, kept to measure against).

``run`` and ``drain_available`` pipeline: a writer thread writes batch k to MySQL
while batch k+1 is read and built, and batches still commit one at a time, in order.
While the drainer keeps up, ``run`` starts a batch that is not full at most every
``batch_interval_s``, so that MySQL commits a few times a second rather than for every
few records; while the engine is busy and the drainer less than ``busy_max_lag_s``
behind, it works at most ``busy_duty`` of the time, and catches up when trading
calms down.

The drainer never slows trading by holding it up: it only reads the log, and it
registers as a log consumer (``persistence.consumers``) so that retention keeps what
it has not applied. When MySQL is down or refuses, the batch fails, the connection is
dropped and retried with exponential backoff (``retry_min_s`` .. ``retry_max_s``); the
records wait in the log, so memory stays bounded by two batches whatever the lag. Its
lag (records and seconds since it was last caught up) is in ``statistics()``.

The rows name assets and markets: the config's, and those added at run time, which
the rows learn from their records (``persistence.history_rows``). A drainer that
starts, or connects again, reads the ones added up to its position back from
``catalog_history`` (written with their records' rows, in the same transactions), so
it needs no record before its position.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import MySQLdb  # type: ignore[import-untyped]

from core.config import AssetConfig, EngineConfig, MarketConfig
from persistence.consumers import confirm, register_consumer
from persistence.frames import RT_CATALOG
from persistence.history_batch import BatchDecoder
from persistence.history_bulk import COLUMNS, BulkRows, TableText
from persistence.history_db import HistoryUnavailable
from persistence.history_rows import HistoryRows, RecordDecoder, RowBatch, decode_record
from persistence.log_reader import LogReader, Record, RecordRun, read_committed_seq

logger = logging.getLogger(__name__)

DEFAULT_NAME: Final = "mysql"
#: The log growing this fast means the engine is busy (``Drainer.busy_duty``).
BUSY_RECORDS_PER_S: Final = 1000
#: How often the log's pace is measured.
BUSY_WINDOW_S: Final = 0.5
#: Failures of MySQL that a later step may not meet: retried with backoff.
RETRIED: Final = (MySQLdb.MySQLError, HistoryUnavailable)

_INSERTS: Final = {
    "orders": "INSERT INTO order_history (id, seq, create_time, finish_time, user_id, market, "
    "source, t, side, price, amount, taker_fee, maker_fee, deal_stock, deal_money, deal_fee, "
    "status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "deals": "INSERT INTO deal_history (deal_id, role, seq, time, user_id, market, order_id, "
    "deal_order_id, side, price, amount, deal, fee, deal_fee) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "balances": "INSERT INTO balance_history (seq, idx, time, user_id, asset, business, "
    "`change`, balance, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "operations": "INSERT INTO operation_log (seq, time, rtype, method, user_id, detail, "
    "record) VALUES (%s, %s, %s, %s, %s, %s, %s)",
    "catalog": "INSERT INTO catalog_history (seq, time, kind, name, detail) "
    "VALUES (%s, %s, %s, %s, %s)",
}
#: The records of the catalog commands applied up to a position, in order: what a
#: drainer reads back when it (re)connects (``Drainer._load``).
_CATALOG_SQL: Final = (
    "SELECT o.seq, o.record FROM catalog_history c JOIN operation_log o ON o.seq = c.seq "
    "WHERE c.seq <= %s ORDER BY c.seq"
)


#: MySQL errors that mean "no LOAD DATA LOCAL here": not allowed by the server or the
#: client (ER_NOT_ALLOWED_COMMAND, CR_LOAD_DATA_LOCAL_INFILE_REJECTED, MySQL 8's
#: ER_CLIENT_LOCAL_FILES_DISABLED, MariaDB's ER_LOAD_INFILE_CAPABILITY_DISABLED).
LOAD_DATA_REFUSED: Final = frozenset({1148, 2068, 3948, 4166})


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A batch read from the log: its runs of records and, on the ``LOAD DATA`` path,
    its text."""

    runs: list[RecordRun]
    text: TableText | None

    @property
    def last_seq(self) -> int:
        return self.runs[-1].last_seq

    @property
    def records(self) -> int:
        """How many records."""
        return sum(len(run) for run in self.runs)


def _catalog_command(seq: int, payload: bytes) -> AssetConfig | MarketConfig:
    """The command of the catalog record ``seq`` stored in ``operation_log``
    (``HistoryRecordError`` if it does not decode)."""
    command = decode_record(Record(seq, RT_CATALOG, payload)).catalog
    assert command is not None  # noqa: S101 -- a catalog record's decoding sets it
    return command


class DrainConflict(RuntimeError):
    """The position in MySQL is not where this drainer left it: another drainer of the
    same name is running, or the history was changed behind its back."""


@dataclass(frozen=True, slots=True)
class DrainStats:
    """A drainer's counters (``Drainer.statistics``)."""

    position: int  #: every record up to this sequence is in MySQL
    committed_seq: int  #: the log's committed sequence when last looked at
    lag_records: int
    lag_seconds: float  #: since the drainer was last caught up (0 when it is)
    batches: int
    records: int
    rows: int
    failures: int  #: failed steps (MySQL down or refusing)
    last_error: str


class Drainer:
    """Drains the log in ``log_dir`` into the database that ``connect()`` opens (a
    MySQLdb connection, autocommit off, on a migrated schema). One thread."""

    def __init__(
        self,
        log_dir: str | Path,
        config: EngineConfig,
        connect: Callable[[], Any],
        *,
        name: str = DEFAULT_NAME,
        batch_records: int = 4096,
        batch_interval_s: float = 0.0,
        busy_duty: float = 1.0,
        busy_max_lag_s: float = 30.0,
        bulk: bool = True,
        retry_min_s: float = 0.1,
        retry_max_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Nothing is opened until the first step."""
        if batch_records < 1:
            raise ValueError(f"batch_records must be at least 1; got {batch_records}")
        self.log_dir = Path(log_dir)
        self.name = name
        self.batch_records = batch_records
        self.batch_interval_s = batch_interval_s
        self.busy_duty = busy_duty
        self.busy_max_lag_s = busy_max_lag_s
        self.bulk = bulk
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._connect = connect
        self._bulk = BulkRows(config)
        #: One catalog for both paths (a batch may go either way): the bulk path's.
        self._rows: HistoryRows = self._bulk.rows
        self._load_data = bulk  #: False once this connection refused LOAD DATA LOCAL
        self._decoder = RecordDecoder()
        self._batch_decoder = BatchDecoder()
        self._clock = clock
        self._sleep = sleep
        self._conn: Any = None
        self._reader: LogReader | None = None
        self._spool_dir: Path | None = None
        self._position: int | None = None
        self._committed = 0
        self._caught_up_at = clock()
        self._batches = self._records = self._row_count = self._failures = 0
        self._last_error = ""
        self._failing = False  #: failed steps since the last one that worked
        self._backoff = 0.0
        self._paced_until = 0.0  #: ``run`` starts no batch before this
        self._rate_at = (clock(), 0)  #: (when, committed seq) the log's pace was measured
        self._engine_busy = False

    # ------------------------------------------------------------------ driving

    def run(self, should_stop: Callable[[], bool], idle_s: float = 0.005) -> None:
        """Drain until ``should_stop()``, pipelined (``drain_available``); MySQL
        failures are retried with backoff."""
        try:
            while not should_stop():
                try:
                    self._drain(should_stop, idle_s)
                except RETRIED as exc:
                    self._failed(exc)
                    self._sleep(self._backoff)
        finally:
            self.close()

    def drain_available(self) -> int:
        """Apply every record committed now; returns how many. MySQL errors raise.

        Pipelined: while one batch is written to MySQL (on a writer thread, which
        MySQL's client library lets run without the GIL), the next is read and built
        here, so the two costs overlap instead of adding up. Batches still commit one
        at a time and in order, each with its position."""
        return self._drain(lambda: False, None)

    def step(self) -> int:
        """Apply the next batch of committed records (at most ``batch_records``) in one
        transaction, without pipelining; returns how many (0: caught up). MySQL errors
        (``RETRIED``) raise, and the connection is then dropped: the next step
        reconnects."""
        try:
            conn = self._connection()
            position = self._position if self._position is not None else self._load(conn)
            prepared = self._prepare(position)
            if prepared is None:
                self._caught_up()
                return 0
            batch = self._apply(conn, prepared, position)
        except RETRIED:
            self._drop_connection()
            raise
        self._applied(batch)
        return batch.records

    def _drain(self, should_stop: Callable[[], bool], idle_s: float | None) -> int:
        """Apply batches, the next one built while the last one is written, until
        ``should_stop()`` or, with ``idle_s`` None, until caught up; returns how many
        records were applied. On any error the batch in flight is waited for, and on a
        MySQL error the connection is dropped (the position is then read again)."""
        total = 0
        flight: Future[tuple[RowBatch | TableText, float]] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix=f"drainer-{self.name}") as writer:
            try:
                conn, ahead = None, 0
                while not should_stop():
                    if flight is None:
                        conn = self._connection()
                        ahead = self._position if self._position is not None else self._load(conn)
                    self._pace(paced=idle_s is not None)
                    started = self._clock()
                    prepared = self._prepare(ahead)
                    prepare_s = self._clock() - started
                    if flight is not None:
                        result, flight = flight.result(), None
                        total += self._landed(*result, prepare_s, paced=idle_s is not None)
                    if prepared is None:
                        self._caught_up()
                        if idle_s is None:
                            break
                        self._sleep(idle_s)
                        continue
                    flight = writer.submit(self._timed_apply, conn, prepared, ahead)
                    ahead = prepared.last_seq
                    if prepared.records < self.batch_records:
                        paced_until = self._clock() + self.batch_interval_s
                        self._paced_until = max(self._paced_until, paced_until)
                if flight is not None:
                    result, flight = flight.result(), None
                    total += self._landed(*result, 0.0, paced=False)
            except BaseException as exc:
                if flight is not None:
                    wait([flight])  # the connection is the writer's until it is done
                if isinstance(exc, RETRIED):
                    self._drop_connection()
                raise
        return total

    def _landed(
        self, batch: RowBatch | TableText, write_s: float, prepare_s: float, *, paced: bool
    ) -> int:
        """The writer committed ``batch``; returns its records."""
        self._applied(batch)
        if paced:
            self._yield_to_engine(write_s + prepare_s)
        return batch.records

    def _yield_to_engine(self, work_s: float) -> None:
        """While the engine is busy (its log grows by ``BUSY_RECORDS_PER_S`` or more)
        and the drainer is less than ``busy_max_lag_s`` behind, let the drainer and
        MySQL work at most ``busy_duty`` of the time: after a batch that took
        ``work_s``, wait ``work_s * (1 / busy_duty - 1)``. MySQL's work for the drainer
        runs in MySQL's processes, beyond the reach of the drainer's CPU priority;
        this spaces it. Once the engine is quiet, or the lag reaches the bound, the
        drainer goes at full speed."""
        if self.busy_duty >= 1.0:
            return
        now = self._clock()
        since, seq = self._rate_at
        if now - since >= BUSY_WINDOW_S:
            self._engine_busy = (self._committed - seq) >= BUSY_RECORDS_PER_S * (now - since)
            self._rate_at = (now, self._committed)
        if self._engine_busy and now - self._caught_up_at < self.busy_max_lag_s:
            rest = work_s * (1.0 / self.busy_duty - 1.0)
            self._paced_until = max(self._paced_until, now + rest)

    def _pace(self, *, paced: bool) -> None:
        """After a batch that was not full, wait until ``batch_interval_s`` after it
        before reading the next: while the drainer keeps up, MySQL commits (and
        syncs its redo log) a few times a second instead of once for every few
        records, on the disk and the cores the engine uses too. Behind by a full
        batch or more, batches follow each other at once."""
        wait = self._paced_until - self._clock()
        if paced and wait > 0:
            self._sleep(wait)

    def _prepare(self, position: int) -> _Prepared | None:
        """Read the committed records after ``position`` (up to ``batch_records``) and,
        on the ``LOAD DATA`` path, build their text; None when there are none."""
        self._committed = read_committed_seq(self.log_dir)
        runs = self._log_reader().read_runs(position + 1, limit=self.batch_records)
        if not runs:
            return None
        text = self._bulk.build(self._batch_decoder.decode_runs(runs)) if self._load_data else None
        return _Prepared(runs, text)

    def _applied(self, batch: RowBatch | TableText) -> None:
        """``batch`` is committed with its position: count it, let retention go on."""
        self._position = batch.last_seq
        confirm(self.log_dir, self.name, batch.last_seq)  # retention may now prune it
        self._batches += 1
        self._records += batch.records
        self._row_count += batch.rows
        self._answered()
        if batch.last_seq >= self._committed:
            self._caught_up_at = self._clock()

    def _caught_up(self) -> None:
        self._caught_up_at = self._clock()
        self._answered()

    # ------------------------------------------------------------------ MySQL

    def _timed_apply(
        self, conn: Any, prepared: _Prepared, position: int
    ) -> tuple[RowBatch | TableText, float]:
        started = self._clock()
        batch = self._apply(conn, prepared, position)
        return batch, self._clock() - started

    def _apply(self, conn: Any, prepared: _Prepared, position: int) -> RowBatch | TableText:
        """Write the rows of ``prepared`` and the new position in one transaction."""
        if prepared.text is not None and self._load_data:
            try:
                self._write(conn, prepared.text, position)
                return prepared.text
            except MySQLdb.MySQLError as exc:
                if not exc.args or exc.args[0] not in LOAD_DATA_REFUSED:
                    raise
                logger.warning(
                    "drainer %s: LOAD DATA LOCAL refused (%s); using INSERT", self.name, exc
                )
                self._load_data = False
        batch = RowBatch()
        for run in prepared.runs:
            for record in run.records():
                self._rows.add(batch, self._decoder.decode(record))
        self._write(conn, batch, position)
        return batch

    def _insert_rows(self, cursor: Any, batch: RowBatch) -> None:
        for table, sql in _INSERTS.items():
            rows = getattr(batch, table)
            if rows:
                cursor.executemany(sql, rows)

    def _load_text(self, cursor: Any, text: TableText) -> None:
        for key, (table, columns, assign) in COLUMNS.items():
            lines = text.lines[key]
            if not lines:
                continue
            fd, name = tempfile.mkstemp(prefix=f"{table}-", suffix=".tsv", dir=self._spool())
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(b"\n".join(lines) + b"\n")
                cursor.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} CHARACTER SET utf8mb4 "
                    f"({columns}){assign}",
                    (name,),
                )
            finally:
                os.unlink(name)
            if cursor.rowcount != len(lines):
                # LOAD DATA LOCAL skips rows whose key exists (it implies IGNORE): the
                # rows were applied before, as an INSERT's duplicate key would say.
                raise MySQLdb.IntegrityError(
                    1062,
                    f"Duplicate entry: LOAD DATA into {table} took {cursor.rowcount} of "
                    f"{len(lines)} rows",
                )

    def _write(self, conn: Any, batch: RowBatch | TableText, position: int) -> None:
        """Rows (LOAD DATA for ``TableText``, INSERT for ``RowBatch``) and position, in
        one transaction."""
        cursor = conn.cursor()
        try:
            if isinstance(batch, TableText):
                self._load_text(cursor, batch)
            else:
                self._insert_rows(cursor, batch)
            cursor.execute(
                "UPDATE drain_position SET seq = %s, time = %s WHERE name = %s AND seq = %s",
                (batch.last_seq, time.time(), self.name, position),
            )
            if cursor.rowcount != 1:
                raise DrainConflict(
                    f"drain position {self.name!r} is no longer {position}: another drainer "
                    "of that name is running, or the history was changed"
                )
            conn.commit()
        except BaseException:
            with contextlib.suppress(MySQLdb.MySQLError):  # gone: MySQL rolls back itself
                conn.rollback()
            raise
        finally:
            cursor.close()

    def _load(self, conn: Any) -> int:
        """Read (or create) this drainer's position and the catalog up to it (the
        assets and markets added at run time: the records before the position are
        not read again, and the later ones may name them); register as a log consumer
        there."""
        cursor = conn.cursor()
        try:
            cursor.execute(
                "INSERT IGNORE INTO drain_position (name, seq, time) VALUES (%s, 0, %s)",
                (self.name, time.time()),
            )
            cursor.execute("SELECT seq FROM drain_position WHERE name = %s", (self.name,))
            (position,) = cursor.fetchone()
            cursor.execute(_CATALOG_SQL, (int(position),))
            for seq, payload in cursor.fetchall():
                self._rows.learn(_catalog_command(int(seq), bytes(payload)))
            conn.commit()
        finally:
            cursor.close()
        self._position = int(position)
        register_consumer(self.log_dir, self.name, confirmed_seq=self._position)
        logger.info("drainer %s: applying the log after seq %d", self.name, self._position)
        return self._position

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
            self._load_data = self.bulk  # a new connection may allow it again
            self._position = None  # MySQL's word is the position: read it again
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(MySQLdb.MySQLError):
                conn.close()

    def _spool(self) -> Path:
        """The drainer's own folder for the files LOAD DATA reads, next to the log; the
        files a killed drainer left there are removed when it is first used."""
        if self._spool_dir is None:
            spool = self.log_dir.parent / f"drain-{self.name}"
            spool.mkdir(exist_ok=True)
            for stale in spool.glob("*.tsv"):
                stale.unlink(missing_ok=True)
            self._spool_dir = spool
        return self._spool_dir

    def _log_reader(self) -> LogReader:
        if self._reader is None:
            self._reader = LogReader(self.log_dir)
        return self._reader

    def _answered(self) -> None:
        """A step worked: the outage, if any, is over."""
        self._backoff = 0.0
        if self._failing:
            self._failing = False
            logger.warning(
                "drainer %s: MySQL answers again (%d failed steps in all)",
                self.name,
                self._failures,
            )

    def _failed(self, exc: BaseException) -> None:
        """Count a failed step; log it once per outage (and again if the error changes)."""
        self._failures += 1
        message = f"{type(exc).__name__}: {exc}"
        if not self._failing or message != self._last_error:
            logger.error("drainer %s: MySQL failed (%s); retrying", self.name, message)
        self._failing = True
        self._last_error = message
        self._backoff = min(self.retry_max_s, max(self.retry_min_s, 2 * self._backoff))

    # ------------------------------------------------------------------ state

    @property
    def position(self) -> int | None:
        """The last sequence applied, as last read or written (None before)."""
        return self._position

    def statistics(self) -> DrainStats:
        """The counters and the lag. Read from another thread while the drainer runs,
        the counters may be a batch apart from the position (nothing is locked);
        other processes read the position from the log consumers instead
        (``server.status``, the metrics)."""
        committed = max(self._committed, read_committed_seq(self.log_dir))
        position = self._position or 0
        lag = max(0, committed - position)
        return DrainStats(
            position=position,
            committed_seq=committed,
            lag_records=lag,
            lag_seconds=self._clock() - self._caught_up_at if lag else 0.0,
            batches=self._batches,
            records=self._records,
            rows=self._row_count,
            failures=self._failures,
            last_error=self._last_error,
        )

    def close(self) -> None:
        """Close the connection and the log reader."""
        self._drop_connection()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
