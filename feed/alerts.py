"""Alerts: ERROR and CRITICAL log records of every process, pushed to a Redis list.

ViaBTC's alertcenter pushes FATAL log lines with ``RPUSH`` to the list ``alert:message``
and an operator's script pops them and emails them. ``AlertHandler`` does the same job
inside each matchd process: it is a ``logging.Handler`` added beside the process's
normal stderr handler (which is what reaches the journal), by ``install_alerts``.

Line format: one line of plain text per alert, like ViaBTC's::

    2026-12-05T00:50:17Z host matchd-drain[1234] ERROR persistence.drainer: message

that is the record's time (UTC, whole seconds), the host name, the process name and
pid, the level name (``CRITICAL`` is Python's ``FATAL``), the logger name and the
message. Line breaks are folded: every line of the message, the exception traceback
(``logger.exception``) and the stack (``stack_info``) is stripped and joined with
``" | "``; other control characters become spaces. A line longer than
``max_line_length`` characters is cut and ends with ``... (N characters cut)``. The
lines are UTF-8 (characters that cannot be encoded are written as backslash escapes).

Deduplication: the same (logger, level, message text) within ``window_s`` of its first
line is not sent again; when that window ends (or at ``close``) one summary line says
``<message> (repeated N times in the last 60 s)``, N counting the repeats after the
first line. Rate limit: at most ``rate_per_minute`` alerts in any 60 s; the alerts
beyond are counted, and once the limit allows again (or at ``close``) one summary line
says ``N alerts suppressed by the rate limit (at most R a minute) in the last S s``.
Summary lines are not rate limited themselves; there is at most one per window of a
message sent and one per stretch of limiting. Both windows use ``clock`` (seconds,
``time.monotonic`` by default; tests inject a fake one).

``emit`` never blocks on Redis and never raises: it formats the record, applies the
two rules and appends the line to a queue of at most ``queue_size`` lines; when that is
full the line is dropped and counted. A daemon thread sends the queue: ``RPUSH`` of up
to ``batch_size`` lines, then ``LTRIM`` so that the list keeps its newest
``max_entries`` lines, in one ``MULTI``/``EXEC``; Redis memory stays bounded even if
nobody pops. A line leaves the queue only once Redis has taken it, so memory stays
bounded by the queue whatever the outage. Delivery is at least once: a batch whose
reply was lost is sent again.

Redis down or refusing: the batch stays queued and is retried with exponential backoff
(``retry_min_s`` .. ``retry_max_s``); a warning goes to this module's logger once per
outage (and again when the error changes), and another when Redis answers again. No
``AlertHandler`` takes a record of this module's logger or any record logged on a
sender thread (redis-py's own), so the handler's warnings never feed back into it.

``close`` queues the pending summaries, lets the thread deliver what it can within
``close_timeout_s`` and stops it; ``statistics`` returns an ``AlertStats`` snapshot. A
forked child gets a fresh, empty handler (its own thread, started at its first alert)
and never sends the parent's queue again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Final, NoReturn

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import ConfigError

logger = logging.getLogger(__name__)

#: ViaBTC's list, which its operators' scripts pop.
DEFAULT_KEY: Final = "alert:message"
#: The rate limit counts alerts in this many seconds ("per minute").
RATE_WINDOW_S: Final = 60.0

#: Most messages whose dedup window is open; beyond, new messages are sent without
#: one (with a rate limit there are at most ``rate_per_minute * window_s / 60``).
MAX_WINDOWS: Final = 10_000
#: Upper bound of every time setting, so that a typo cannot mean "forever".
MAX_SECONDS: Final = 86400.0

_WHERE: Final = "[alerts]"
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Room kept for the " ... (N characters cut)" of a cut line.
_CUT_ROOM: Final = 40
_LEVELS: Final = logging.getLevelNamesMapping()
_formatter: Final = logging.Formatter()
#: Marks the sender threads of every ``AlertHandler`` (and a handler's own ``emit``):
#: records logged there are not taken, so that no handler feeds itself.
_guard = threading.local()


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSettings:
    """How alerts are taken and sent; checked on construction (``ConfigError``).

    Parameters
    ----------
    key
        The Redis list (ViaBTC's ``alert:message``).
    level
        The least level taken (a number or a name such as ``"ERROR"``).
    queue_size
        Most lines waiting for Redis; beyond, lines are dropped and counted.
    max_entries
        Most lines the list keeps (``LTRIM`` after every push; the oldest go).
    window_s
        Repeats of a line within this many seconds are counted, not sent (0: off).
    rate_per_minute
        Most alerts sent in any 60 s, summaries aside (0: no limit).
    max_line_length
        Longest line, in characters; longer ones are cut.
    batch_size
        Most lines per ``RPUSH``.
    host, port, db, password, socket_timeout_s, connect_timeout_s
        The Redis server, when no client or client factory is given. Its client does
        not retry by itself: the handler's backoff does.
    retry_min_s, retry_max_s
        Backoff after a failed push: doubled every failure, between these bounds.
    poll_interval_s
        How often the sender looks for summaries that are due.
    close_timeout_s
        Longest ``close`` waits for the queue to be delivered.
    process_name, hostname
        Shown on every line (default: the program's name, ``socket.gethostname()``).
    """

    key: str = DEFAULT_KEY
    level: int | str = logging.ERROR
    queue_size: int = 256
    max_entries: int = 10_000
    window_s: float = 60.0
    rate_per_minute: int = 60
    max_line_length: int = 8192
    batch_size: int = 100
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str | None = field(default=None, repr=False)
    socket_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    retry_min_s: float = 0.1
    retry_max_s: float = 30.0
    poll_interval_s: float = 0.5
    close_timeout_s: float = 2.0
    process_name: str | None = None
    hostname: str | None = None

    def __post_init__(self) -> None:
        _check_text("key", self.key)
        if isinstance(self.level, str) and self.level.upper() in _LEVELS:
            object.__setattr__(self, "level", _LEVELS[self.level.upper()])
        _check_int("level", self.level, 1, 1000)
        _check_int("queue_size", self.queue_size, 1, 1_000_000)
        _check_int("max_entries", self.max_entries, 1, 100_000_000)
        _check_seconds("window_s", self.window_s, zero=True)
        _check_int("rate_per_minute", self.rate_per_minute, 0, 1_000_000)
        _check_int("max_line_length", self.max_line_length, 200, 1_000_000)
        _check_int("batch_size", self.batch_size, 1, 100_000)
        _check_text("host", self.host)
        _check_int("port", self.port, 1, 65535)
        _check_int("db", self.db, 0, 65535)
        if self.password is not None and not isinstance(self.password, str):
            _fail("password must be a string")
        for key in ("socket_timeout_s", "connect_timeout_s", "retry_min_s", "retry_max_s"):
            _check_seconds(key, getattr(self, key))
        if self.retry_min_s > self.retry_max_s:
            _fail(f"retry_min_s = {self.retry_min_s} is more than retry_max_s")
        _check_seconds("poll_interval_s", self.poll_interval_s)
        _check_seconds("close_timeout_s", self.close_timeout_s)
        for key in ("process_name", "hostname"):
            if getattr(self, key) is not None:
                _check_text(key, getattr(self, key))

    def connect(self) -> redis.Redis:
        """A client of ``host:port/db`` that does not retry by itself."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            password=self.password,
            socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"{_WHERE} {message}")


def _check_text(key: str, value: object) -> None:
    if not isinstance(value, str) or not value or not value.isprintable() or " " in value:
        _fail(f"{key} = {value!r} must be printable characters without spaces")


def _check_int(key: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        _fail(f"{key} = {value!r} must be an integer in {low}..{high}")


def _check_seconds(key: str, value: object, *, zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"{key} must be a number of seconds, not {value!r}")
    low_ok = value >= 0 if zero else value > 0
    if not (math.isfinite(value) and low_ok and value <= MAX_SECONDS):
        _fail(f"{key} = {value} must be {'0' if zero else 'more than 0'} to 86400 seconds")


@dataclass(frozen=True, slots=True)
class AlertStats:
    """A snapshot of an ``AlertHandler``'s counters (``AlertHandler.statistics``)."""

    sent: int  #: lines Redis took (alerts and summaries)
    dropped: int  #: lines dropped because the queue was full
    suppressed: int  #: alerts over the rate limit
    deduplicated: int  #: repeats counted in a summary instead of sent
    failures: int  #: failed pushes (Redis down or refusing)
    last_error: str  #: the last push's error ("" before any)
    queued: int  #: lines waiting for Redis now


#: What makes two records the same alert: logger name, level, message text.
_Key = tuple[str, int, str]


@dataclass(slots=True)
class _Repeats:
    """A line sent and the repeats of it counted since (one dedup window)."""

    first_s: float
    count: int
    created_s: float
    pid: int | None
    level: str


def fold(text: str) -> str:
    """``text`` on one line: stripped lines joined with ``" | "``, control characters
    as spaces."""
    return _CONTROL_RE.sub(" ", " | ".join(s for s in map(str.strip, text.splitlines()) if s))


class AlertHandler(logging.Handler):
    """Pushes records at ``settings.level`` and above to the Redis list
    ``settings.key`` (see the module docstring).

    Parameters
    ----------
    settings
        The settings (defaults: ``AlertSettings()``).
    client
        A ready client (not closed by the handler; its own retry policy applies, so
        ``retry=Retry(NoBackoff(), 0)`` leaves retrying to the handler); or
    client_factory
        Called for a client at the first push and again after each failed one (the
        failed client is closed); default: ``settings.connect``.
    clock
        Seconds, for the dedup and rate windows.
    """

    def __init__(
        self,
        settings: AlertSettings | None = None,
        *,
        client: redis.Redis | None = None,
        client_factory: Callable[[], redis.Redis] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings = settings or AlertSettings()
        super().__init__(settings.level)
        if client is not None and client_factory is not None:
            raise ValueError("give a client or a client factory, not both")
        #: the handler's own clients are closed after a failure and made again
        self._owned = client is None
        self._client = client
        self._factory = client_factory or settings.connect
        self._clock = clock
        self._host = settings.hostname or fold(socket.gethostname()).replace(" ", "_")
        self._process = settings.process_name or Path(sys.argv[0]).stem or "python"
        self._counts = {"sent": 0, "dropped": 0, "suppressed": 0, "deduplicated": 0}
        self._failures = 0
        self._last_error = ""
        self._closed = False
        self._fresh_state()
        self.addFilter(_taken)  # before ``handle`` takes the handler's lock
        ref = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: _call(ref))

    def _fresh_state(self) -> None:
        """Locks, queue and windows as new (at start, and in a forked child)."""
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._deadline = math.inf
        self._lines: deque[bytes] = deque()
        self._repeats: dict[_Key, _Repeats] = {}
        self._admitted: deque[float] = deque()
        self._held = 0  # alerts suppressed since the last summary of them
        self._held_since = 0.0
        self._held_created = 0.0
        self._held_level = logging.ERROR

    def _after_fork(self) -> None:
        self._fresh_state()  # the parent's thread is gone and its lines are its own
        if self._owned:
            self._client = None  # redis-py drops the parent's connections itself

    # ------------------------------------------------------------------ taking

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's line, or count it; never blocks on Redis, never raises."""
        if not _taken(record):
            return
        _guard.active = True
        try:
            text = fold(_message(record))
            line = self._line(record.created, record.process, record.levelname, record.name,
                              _join(text, _exception_text(record)))  # fmt: skip
            with self._wake:
                if self._closed:
                    return
                now = self._clock()
                self._queue_due(now)
                key = (record.name, record.levelno, text)
                if self._repeated(key, record) or not self._admit(key, now, record):
                    return
                self._queue(line)
                if self._sender is None:
                    self._start_sender()
        except Exception:
            self.handleError(record)
        finally:
            _guard.active = False

    def _repeated(self, key: _Key, record: logging.LogRecord) -> bool:
        """True if ``key`` was sent in its window, which has not ended (the summaries
        due were queued first); the repeat is counted."""
        seen = self._repeats.get(key)
        if seen is not None:
            seen.count += 1
            seen.created_s, seen.pid = record.created, record.process
            self._counts["deduplicated"] += 1
            return True
        return False

    def _admit(self, key: _Key, now: float, record: logging.LogRecord) -> bool:
        """Within the rate limit: note the alert (and open its dedup window); else
        count it."""
        if self._has_room(now):
            if self.settings.rate_per_minute:
                self._admitted.append(now)
            if self.settings.window_s and len(self._repeats) < MAX_WINDOWS:
                self._repeats[key] = _Repeats(
                    now, 0, record.created, record.process, record.levelname
                )
            return True
        self._counts["suppressed"] += 1
        if not self._held:
            self._held_since, self._held_level = now, record.levelno
        self._held += 1
        self._held_created = record.created
        self._held_level = max(self._held_level, record.levelno)
        return False

    def _has_room(self, now: float) -> bool:
        rate = self.settings.rate_per_minute
        while self._admitted and now - self._admitted[0] >= RATE_WINDOW_S:
            self._admitted.popleft()
        return not rate or len(self._admitted) < rate

    def _queue_due(self, now: float, *, everything: bool = False) -> None:
        """Queue the summaries that are due (all of them if ``everything``)."""
        window = self.settings.window_s
        while self._repeats:  # oldest first: insertion order is window order
            key, seen = next(iter(self._repeats.items()))
            if not everything and now - seen.first_s < window:
                break
            del self._repeats[key]
            if seen.count:
                name, _, text = key
                times = "time" if seen.count == 1 else "times"
                note = f"(repeated {seen.count} {times} in the last {window:g} s)"
                self._queue(self._line(seen.created_s, seen.pid, seen.level, name,
                                       f"{text} {note}"))  # fmt: skip
        if self._held and (everything or self._has_room(now)):
            span = max(1, math.ceil(now - self._held_since))
            text = (
                f"{self._held} alerts suppressed by the rate limit "
                f"(at most {self.settings.rate_per_minute} a minute) in the last {span} s"
            )
            level = logging.getLevelName(self._held_level)
            self._queue(self._line(self._held_created, os.getpid(), level, logger.name, text))
            self._held = 0

    def _line(self, created_s: float, pid: int | None, level: str, name: str, text: str) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_s))
        pid = os.getpid() if pid is None else pid
        line = f"{stamp} {self._host} {self._process}[{pid}] {level} {name}: {text}"
        if len(line) > self.settings.max_line_length:
            keep = self.settings.max_line_length - _CUT_ROOM
            line = f"{line[:keep]} ... ({len(line) - keep} characters cut)"
        return line.encode("utf-8", "backslashreplace")

    def _queue(self, line: bytes) -> None:
        if len(self._lines) >= self.settings.queue_size:
            self._counts["dropped"] += 1
            return
        self._lines.append(line)
        self._wake.notify()

    # ------------------------------------------------------------------ sending

    def _start_sender(self) -> None:
        self._sender = threading.Thread(target=self._run, name="alerts-sender", daemon=True)
        self._sender.start()

    def _run(self) -> None:
        _guard.active = True
        backoff = 0.0
        failing = False
        while (batch := self._next_batch()) is not None:
            error = self._push(batch)
            if error is None:
                if failing:
                    logger.warning("alerts: Redis answers again; %d alerts delivered", len(batch))
                backoff, failing = 0.0, False
                continue
            s = self.settings
            backoff = min(s.retry_max_s, max(s.retry_min_s, 2 * backoff))
            if not failing or error != self._last_error:
                logger.warning(
                    "alerts: pushing to Redis list %s failed (%s); %d alerts wait, retrying",
                    s.key, error, len(self._lines),
                )  # fmt: skip
            failing = True
            with self._wake:
                self._failures += 1
                self._last_error = error
            self._pause(backoff)

    def _next_batch(self) -> list[bytes] | None:
        """The next lines to push, waiting for some; None when it is time to stop."""
        with self._wake:
            while True:
                self._queue_due(self._clock())
                if self._closed and (not self._lines or time.monotonic() >= self._deadline):
                    return None
                if self._lines:
                    return list(islice(self._lines, self.settings.batch_size))
                self._wake.wait(self.settings.poll_interval_s)

    def _push(self, batch: list[bytes]) -> str | None:
        """RPUSH and LTRIM ``batch``; None if Redis took it, else the error."""
        key, keep = self.settings.key, self.settings.max_entries
        try:
            if self._client is None:
                self._client = self._factory()
            with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *batch)
                pipe.ltrim(key, -keep, -1)
                pipe.execute()
        except Exception as exc:  # anything: the thread must go on
            if self._owned:
                self._close_client()
            return fold(f"{type(exc).__name__}: {exc}")
        with self._wake:
            for _ in batch:  # only this thread removes lines: these are the batch
                self._lines.popleft()
            self._counts["sent"] += len(batch)
        return None

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` before retrying; at close, not past the deadline."""
        if self._stop.wait(seconds):
            time.sleep(max(0.0, min(seconds, self._deadline - time.monotonic())))

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a broken client's close may fail too
                client.close()

    # ------------------------------------------------------------------ state

    def statistics(self) -> AlertStats:
        """The counters now."""
        with self._wake:
            return AlertStats(
                **self._counts,
                failures=self._failures,
                last_error=self._last_error,
                queued=len(self._lines),
            )

    def close(self) -> None:
        """Queue the pending summaries, deliver what can be within ``close_timeout_s``,
        stop the thread; later records are ignored. Idempotent."""
        timeout = self.settings.close_timeout_s
        with self._wake:
            first = not self._closed
            if first:
                self._closed = True
                self._deadline = time.monotonic() + timeout
                self._queue_due(self._clock(), everything=True)
                if self._lines and self._sender is None:
                    self._start_sender()
                self._wake.notify_all()
            sender = self._sender
        self._stop.set()
        if first and sender is not None and sender is not threading.current_thread():
            sender.join(timeout + 0.5)
        if self._owned and (sender is None or not sender.is_alive()):
            self._close_client()
        if first and self._lines:
            logger.warning("alerts: closed with %d alerts not delivered", len(self._lines))
        super().close()


def _call(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()


def _taken(record: logging.LogRecord) -> bool:
    """False for the records no ``AlertHandler`` takes: those of this module's logger,
    of a sender thread, or logged while an ``emit`` runs on this thread."""
    return record.name != logger.name and not getattr(_guard, "active", False)


def _message(record: logging.LogRecord) -> str:
    """The record's message; if its arguments do not fit, what it was and why."""
    try:
        return record.getMessage()
    except Exception as exc:
        return f"{record.msg!r} % {record.args!r} (message not formatted: {exc})"


def _exception_text(record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info:
        parts.append(record.exc_text or _formatter.formatException(record.exc_info))
    if record.stack_info:
        parts.append(record.stack_info)
    return fold("\n".join(parts))


def _join(text: str, extra: str) -> str:
    return f"{text} | {extra}" if extra else text


def install_alerts(
    target: logging.Logger | None,
    client_factory: Callable[[], redis.Redis] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    **settings: object,
) -> AlertHandler:
    """Add an ``AlertHandler`` to ``target`` (None: the root logger) and return it.

    The handler goes beside the logger's other handlers: the stderr handler that
    reaches the journal stays. When no handler would print the records yet (logging's
    last resort does so only while there is none), a stderr handler is added too, so
    that adding alerts never silences the journal. ``settings`` are those of
    ``AlertSettings``; ``client_factory`` defaults to ``AlertSettings.connect``.
    """
    target = target if target is not None else logging.getLogger()
    handler = AlertHandler(
        AlertSettings(**settings),  # type: ignore[arg-type]
        client_factory=client_factory,
        clock=clock,
    )
    if not target.hasHandlers():
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        target.addHandler(stderr)
    target.addHandler(handler)
    return handler
