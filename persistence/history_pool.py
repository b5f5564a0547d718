"""A bounded, thread-safe pool of MySQL connections for the history queries.

``HistoryPool`` holds at most ``pool_size`` connections, made lazily by a ``connect``
callable, autocommit and read-only (each SELECT sees the latest committed rows and
nothing can write through them). Any thread may call ``run``; a call holds one
connection for one query and gives it back. A call that finds every connection busy
waits, but at most ``queue`` callers wait: one more is refused at once, and a waiter
that gets no connection within ``timeout_s`` gives up (DESIGN.md rule 7: a full
queue answers "service unavailable", never an unbounded wait). A connection that
fails a query is closed and its slot freed, so the next call connects again; a pooled
connection that the server dropped (idle timeout, restart) is replaced and its query
run once more, transparently.

Every failure is a ``HistoryError``: ``code`` is ViaBTC's number, ``result_code`` the
precise ``core.schema.Result``:

* 2 (``INTERNAL_ERROR``): the database failed the query; the message names the MySQL
  error number, the log has the whole error;
* 3 (``SERVICE_UNAVAILABLE``): too many callers waiting (ViaBTC's readhistory answers
  3 when 10 x worker_num queries are queued), no connection free within
  ``timeout_s``, the database unreachable, or the pool closed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from core.errors import MatchdError
from core.schema import Result, viabtc_code

logger = logging.getLogger(__name__)

#: MySQL client errors that mean the connection is gone: CR_SERVER_GONE_ERROR,
#: CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED.
CONNECTION_LOST_ERRORS: Final = frozenset({2006, 2013, 2055})

Row = tuple[Any, ...]


class HistoryError(MatchdError):
    """A history method failed.

    Attributes
    ----------
    code : int
        ViaBTC's error code: 1 invalid argument, 2 internal error, 3 service
        unavailable.
    result_code : Result
        The precise result (``INVALID_ARGUMENT``, ``UNKNOWN_MARKET``,
        ``UNKNOWN_ASSET``, ``INTERNAL_ERROR`` or ``SERVICE_UNAVAILABLE``).
    message : str
        The text for the client.
    """

    def __init__(self, result_code: Result, message: str) -> None:
        super().__init__(message)
        self.result_code = result_code
        # The readhistory methods have no codes of their own: 1, 2 or 3.
        self.code = viabtc_code("", result_code)
        self.message = message

    def error(self) -> dict[str, Any]:
        """ViaBTC's ``error`` member: ``{"code", "message"}``."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """A snapshot of a pool's state and of its counters since it was made."""

    pool_size: int
    connections: int  #: open or being opened
    idle: int
    waiting: int  #: callers waiting for a connection
    queries: int  #: queries answered
    refused: int  #: calls refused with code 3 (queue full, timeout, closed)
    errors: int  #: calls failed with code 2
    connect_failures: int
    reconnects: int  #: dropped connections replaced and their query run again


def _errno(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _close_quietly(conn: Any) -> None:
    # A connection that cannot even close is gone anyway.
    with contextlib.suppress(Exception):
        conn.close()


def _unavailable(detail: str) -> HistoryError:
    return HistoryError(Result.SERVICE_UNAVAILABLE, f"service unavailable: {detail}")


class HistoryPool:
    """At most ``pool_size`` connections; at most ``queue`` callers waiting for one.

    Parameters
    ----------
    connect : Callable[[], Any]
        Makes a new MySQLdb connection to the history database.
    pool_size : int
        Most connections open at once (>= 1).
    queue : int
        Most callers waiting for a connection (>= 0); one more is refused with code 3.
    timeout_s : float
        Longest a caller waits for a connection before code 3 (> 0).
    """

    def __init__(
        self, connect: Callable[[], Any], *, pool_size: int, queue: int, timeout_s: float
    ) -> None:
        if pool_size < 1 or queue < 0 or not timeout_s > 0:
            raise ValueError(
                f"history pool: pool_size {pool_size} must be >= 1, queue {queue} >= 0,"
                f" timeout_s {timeout_s} > 0"
            )
        self.pool_size = pool_size
        self.queue = queue
        self.timeout_s = timeout_s
        self._connect = connect
        self._cond = threading.Condition()
        self._idle: list[Any] = []  # LIFO: the most recently used last
        self._connections = 0  # idle + in use + being opened
        self._waiting = 0
        self._closed = False
        self._queries = self._refused = self._errors = 0
        self._connect_failures = self._reconnects = 0

    def run(self, method: str, sql: str, params: tuple[object, ...]) -> list[Row]:
        """Run one SELECT with bound ``params`` and return its rows.

        Parameters
        ----------
        method : str
            The ViaBTC method asking, for the log.
        sql : str
            The statement, with ``%s`` placeholders.
        params : tuple
            The values of the placeholders.

        Returns
        -------
        list of tuple
            The rows, as MySQLdb gives them.

        Raises
        ------
        HistoryError
            Code 2 if the query fails, code 3 if no connection can be had.
        """
        conn = self._acquire()
        try:
            if conn is not None:
                try:
                    return self._execute(conn, sql, params)
                except Exception as exc:
                    _close_quietly(conn)
                    conn = None
                    if _errno(exc) not in CONNECTION_LOST_ERRORS:
                        raise self._failed(method, exc) from exc
                    with self._cond:
                        self._reconnects += 1
                    logger.info("history: connection lost, reconnecting error=%r", exc)
            conn = self._open()
            try:
                return self._execute(conn, sql, params)
            except Exception as exc:
                _close_quietly(conn)
                conn = None
                raise self._failed(method, exc) from exc
        finally:
            self._release(conn)

    def count_error(self) -> None:
        """Count a call failed with code 2 after its query (a row that cannot be read)."""
        with self._cond:
            self._errors += 1

    def stats(self) -> HistoryStats:
        """A snapshot of the pool and its counters."""
        with self._cond:
            return HistoryStats(
                pool_size=self.pool_size,
                connections=self._connections,
                idle=len(self._idle),
                waiting=self._waiting,
                queries=self._queries,
                refused=self._refused,
                errors=self._errors,
                connect_failures=self._connect_failures,
                reconnects=self._reconnects,
            )

    def close(self) -> None:
        """Close the idle connections now, and the others as they come back.

        Waiting and later calls are refused with code 3. Closing twice is harmless.
        """
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._connections -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            _close_quietly(conn)

    def _execute(self, conn: Any, sql: str, params: tuple[object, ...]) -> list[Row]:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
            rows = list(cursor.fetchall())
        finally:
            cursor.close()
        with self._cond:
            self._queries += 1
        return rows

    def _failed(self, method: str, exc: Exception) -> HistoryError:
        self.count_error()
        logger.error("history: query failed method=%s error=%r", method, exc)
        errno = _errno(exc)
        what = f"MySQL error {errno}" if errno else type(exc).__name__
        return HistoryError(Result.INTERNAL_ERROR, f"internal error: history query failed ({what})")

    def _open(self) -> Any:
        """A new read-only autocommit connection; code 3 if the database is unreachable."""
        conn = None
        try:
            conn = self._connect()
            conn.autocommit(True)
            cursor = conn.cursor()
            try:
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
            finally:
                cursor.close()
        except Exception as exc:
            if conn is not None:
                _close_quietly(conn)
            with self._cond:
                self._connect_failures += 1
            logger.warning("history: cannot connect to the database error=%r", exc)
            raise _unavailable("cannot connect to the history database") from exc
        return conn

    def _acquire(self) -> Any | None:
        """An idle connection, or None with a slot reserved for a new one."""
        with self._cond:
            if not self._closed and not self._idle and self._connections >= self.pool_size:
                if self._waiting >= self.queue:
                    self._refused += 1
                    raise _unavailable(f"too many history queries waiting ({self.queue})")
                self._wait()
            if self._closed:
                self._refused += 1
                raise _unavailable("history queries are closed")
            if self._idle:
                return self._idle.pop()
            self._connections += 1
            return None

    def _wait(self) -> None:
        """Wait (lock held) until a connection or a slot is free, or refuse with code 3."""
        deadline = time.monotonic() + self.timeout_s
        self._waiting += 1
        try:
            while not self._closed and not self._idle and self._connections >= self.pool_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._refused += 1
                    raise _unavailable(f"no history connection free within {self.timeout_s:g} s")
                self._cond.wait(remaining)
        finally:
            self._waiting -= 1

    def _release(self, conn: Any | None) -> None:
        """Give back ``conn``, or the slot of a connection that failed or was not made."""
        with self._cond:
            if conn is not None and not self._closed:
                self._idle.append(conn)
                conn = None
            else:
                self._connections -= 1
            self._cond.notify()
        if conn is not None:
            _close_quietly(conn)
