"""``feed.alerts`` against the real Redis at 127.0.0.1:6379: ERROR and CRITICAL records
arrive in order as one-line alerts, repeats are folded into a summary, the rate limit
and the queue bound hold and are counted, an outage loses nothing that fits the queue,
``emit`` stays fast meanwhile, the list is trimmed, and the handler never feeds its own
warnings back into itself. Every test uses its own key (``alert:test:<uuid>``) and a
fake clock; the only waits are bounded polls for the sender thread."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import ConfigError
from feed.alerts import DEFAULT_KEY, AlertHandler, AlertSettings, fold, install_alerts

pytestmark = pytest.mark.integration

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: Longest a test waits for the sender thread.
WAIT_S = 10.0
#: An emit slower than this blocked on something.
EMIT_BOUND_S = 0.05
LINE_RE = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (?P<host>\S+) (?P<process>\S+)\[(?P<pid>\d+)\] "
    r"(?P<level>[A-Z]+) (?P<name>\S+): (?P<text>.*)"
)
#: Settings of every test handler: quick polls and retries, fixed host and process.
TEST_SETTINGS: dict[str, Any] = {
    "poll_interval_s": 0.01,
    "retry_min_s": 0.01,
    "retry_max_s": 0.05,
    "hostname": "testhost",
    "process_name": "matchd-test",
}


class FakeClock:
    """Seconds that move only when a test moves them."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    log: logging.Logger
    handler: AlertHandler
    clock: FakeClock


@pytest.fixture
def rds() -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def key(rds: redis.Redis) -> Iterator[str]:
    name = f"alert:test:{uuid.uuid4().hex}"
    yield name
    rds.delete(name)


@pytest.fixture
def make(key: str) -> Iterator[Callable[..., Rig]]:
    """``make(**settings)``: a handler on a fresh logger of its own, pushing to ``key``;
    closed and removed after the test."""
    made: list[Rig] = []

    def build(
        *,
        client: redis.Redis | None = None,
        client_factory: Callable[[], redis.Redis] | None = None,
        **settings: Any,
    ) -> Rig:
        clock = FakeClock()
        handler = AlertHandler(
            AlertSettings(**{**TEST_SETTINGS, "key": key, **settings}),
            client=client,
            client_factory=client_factory,
            clock=clock,
        )
        log = logging.getLogger(f"matchd.test.{uuid.uuid4().hex[:8]}")
        log.propagate = False
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)
        made.append(rig := Rig(log, handler, clock))
        return rig

    yield build
    for rig in made:
        rig.log.removeHandler(rig.handler)
        rig.handler.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind((REDIS_HOST, 0))
        return int(s.getsockname()[1])


def client_at(port: int) -> redis.Redis:
    return redis.Redis(
        host=REDIS_HOST, port=port, socket_timeout=0.5, socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it holds; fail after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S} s waiting for {what}")
        time.sleep(0.005)


def lines(rds: redis.Redis, key: str) -> list[str]:
    return [raw if isinstance(raw, str) else raw.decode() for raw in rds.lrange(key, 0, -1)]


def wait_lines(rds: redis.Redis, key: str, n: int) -> list[str]:
    wait_for(lambda: rds.llen(key) >= n, f"{n} lines in {key}")
    return lines(rds, key)


def texts(found: list[str]) -> list[str]:
    """The message part of each line (after ``logger:``)."""
    out = []
    for line in found:
        match = LINE_RE.fullmatch(line)
        assert match is not None, line
        out.append(match["text"])
    return out


def timed_error(log: logging.Logger, message: str, *args: object) -> float:
    """``log.error(message, *args)``; the seconds it took."""
    start = time.perf_counter()
    log.error(message, *args)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- taking


def test_error_and_critical_arrive_in_order_info_and_warning_do_not(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make()
    before = int(time.time())
    rig.log.debug("debug")
    rig.log.info("info")
    rig.log.warning("warning")
    rig.log.error("first error id=%d", 1)
    rig.log.critical("then fatal")
    rig.log.warning("another warning")
    rig.log.error("last error")

    found = wait_lines(rds, key, 3)

    assert texts(found) == ["first error id=1", "then fatal", "last error"]
    matches = [LINE_RE.fullmatch(line) for line in found]
    assert [m["level"] for m in matches if m] == ["ERROR", "CRITICAL", "ERROR"]
    for m in matches:
        assert m is not None
        assert (m["host"], m["process"], m["name"]) == ("testhost", "matchd-test", rig.log.name)
        assert int(m["pid"]) == os.getpid()
        stamp = time.mktime(time.strptime(m["stamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert before <= stamp <= time.time()
    rig.handler.close()
    assert len(lines(rds, key)) == 3
    stats = rig.handler.statistics()
    assert (stats.sent, stats.dropped, stats.suppressed, stats.deduplicated) == (3, 0, 0, 0)
    assert (stats.failures, stats.last_error, stats.queued) == (0, "", 0)


def test_the_least_level_is_a_setting(make: Callable[..., Rig], rds: redis.Redis, key: str) -> None:
    rig = make(level="WARNING")
    rig.log.info("info")
    rig.log.warning("warning")
    rig.handler.close()
    assert texts(lines(rds, key)) == ["warning"]


def test_an_exception_folds_into_one_line(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make()
    try:
        raise ValueError("boom\n  second line")
    except ValueError:
        rig.log.exception("order %d failed", 7)
    rig.log.error("where am I", stack_info=True)

    found = wait_lines(rds, key, 2)

    assert all("\n" not in line and "\r" not in line for line in found)
    first, second = texts(found)
    assert first.startswith("order 7 failed | Traceback (most recent call last): | File ")
    assert "| raise ValueError(" in first
    assert first.endswith("| ValueError: boom | second line")
    assert second.startswith("where am I | Stack (most recent call last): | File ")


def test_control_characters_long_lines_and_bad_text_are_made_safe(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make(max_line_length=300)
    rig.log.error("tab\there nul\x00 bell\x07 é € \u2028after")
    rig.log.error("lone surrogate \ud800 end")  # not UTF-8: must not poison the batch
    rig.log.error("x" * 1000)
    rig.log.error("%d items", "not a number")  # bad arguments: still an alert

    found = wait_lines(rds, key, 4)

    plain, surrogate, long, bad = texts(found)
    assert plain == "tab here nul  bell  é € | after"
    assert surrogate == "lone surrogate \\ud800 end"
    assert len(found[2]) <= 300
    assert long.endswith(" characters cut)")
    assert bad.startswith("'%d items' % ('not a number',) (message not formatted: ")
    assert fold(" a \n\n  b\r\n c\t") == "a | b | c"


# --------------------------------------------------------------------------- dedup


def test_fifty_identical_errors_give_one_line_and_one_summary(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make()
    for _ in range(50):
        rig.log.error("disk %s full", "/data")

    assert texts(wait_lines(rds, key, 1)) == ["disk /data full"]
    assert rig.handler.statistics().deduplicated == 49

    rig.clock.now += 59.9  # the window is still open: nothing new
    rig.log.error("disk %s full", "/data")
    rig.clock.now += 0.1  # it ends: the summary is sent
    found = wait_lines(rds, key, 2)
    assert texts(found) == [
        "disk /data full",
        "disk /data full (repeated 50 times in the last 60 s)",
    ]
    assert LINE_RE.fullmatch(found[1])["level"] == "ERROR"  # type: ignore[index]

    rig.log.error("disk %s full", "/data")  # a new window: the line again
    rig.handler.close()
    assert texts(lines(rds, key)) == [
        "disk /data full",
        "disk /data full (repeated 50 times in the last 60 s)",
        "disk /data full",
    ]
    stats = rig.handler.statistics()
    assert (stats.sent, stats.deduplicated, stats.suppressed, stats.dropped) == (3, 50, 0, 0)


def test_different_messages_levels_and_loggers_are_not_merged(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make()
    child = logging.getLogger(f"{rig.log.name}.child")
    rig.log.error("a")
    rig.log.error("b")
    rig.log.error("a")
    rig.log.error("c")
    rig.log.critical("c")
    child.error("c")
    rig.log.error("a")

    rig.handler.close()  # the summaries of open windows are sent at close

    assert texts(lines(rds, key)) == [
        "a",
        "b",
        "c",
        "c",
        "c",
        "a (repeated 2 times in the last 60 s)",
    ]
    assert [LINE_RE.fullmatch(x)["name"] for x in lines(rds, key)[2:5]] == [  # type: ignore[index]
        rig.log.name, rig.log.name, child.name,
    ]  # fmt: skip
    assert rig.handler.statistics().deduplicated == 2


def test_window_zero_turns_dedup_off(make: Callable[..., Rig], rds: redis.Redis, key: str) -> None:
    rig = make(window_s=0)
    for _ in range(3):
        rig.log.error("same")
    rig.handler.close()
    assert texts(lines(rds, key)) == ["same"] * 3


# --------------------------------------------------------------------------- rate limit


def test_the_rate_limit_counts_what_it_suppresses_and_says_so(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make(rate_per_minute=5)
    for i in range(12):
        rig.log.error("error %d", i)
    assert texts(wait_lines(rds, key, 5)) == [f"error {i}" for i in range(5)]
    assert rig.handler.statistics().suppressed == 7

    rig.clock.now += 30
    rig.log.critical("still limited")
    rig.clock.now += 29.9
    rig.log.error("error 0")  # a repeat of a line sent: deduplicated, not suppressed
    stats = rig.handler.statistics()
    assert (stats.suppressed, stats.deduplicated) == (8, 1)

    rig.clock.now += 0.1  # 60 s after the first five: room again, the summaries go
    found = wait_lines(rds, key, 7)
    assert texts(found)[5] == "error 0 (repeated 1 time in the last 60 s)"
    summary = LINE_RE.fullmatch(found[6])
    assert summary is not None
    assert summary["text"] == (
        "8 alerts suppressed by the rate limit (at most 5 a minute) in the last 60 s"
    )
    assert (summary["level"], summary["name"]) == ("CRITICAL", "feed.alerts")

    rig.log.error("after")
    rig.handler.close()
    assert texts(lines(rds, key))[7:] == ["after"]
    assert rig.handler.statistics().sent == 8


def test_close_sends_the_pending_summary_of_suppressed_alerts(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make(rate_per_minute=1)
    rig.log.error("one")
    rig.log.error("two")
    rig.log.error("three")
    rig.handler.close()
    assert texts(lines(rds, key)) == [
        "one",
        "2 alerts suppressed by the rate limit (at most 1 a minute) in the last 1 s",
    ]


# --------------------------------------------------------------------------- bounds


def test_a_full_queue_drops_counts_and_never_blocks(
    make: Callable[..., Rig], closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make(client_factory=lambda: client_at(closed_port), queue_size=10, rate_per_minute=0,
               close_timeout_s=0.3)  # fmt: skip

    durations = [timed_error(rig.log, "error %d", i) for i in range(200)]

    assert max(durations) < EMIT_BOUND_S, max(durations)
    stats = rig.handler.statistics()
    assert (stats.queued, stats.dropped) == (10, 190)
    start = time.monotonic()
    rig.handler.close()  # Redis never answers: close gives up after close_timeout_s
    assert time.monotonic() - start < 2.0
    rig.handler.close()  # again (logging.shutdown does): no second wait, no second warning
    assert rig.handler.statistics().queued == 10
    closing = [r.getMessage() for r in caplog.records if "closed with" in r.getMessage()]
    assert closing == ["alerts: closed with 10 alerts not delivered"]


def test_the_list_keeps_only_the_newest_entries(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rds.rpush(key, "old 1", "old 2", "old 3")
    rig = make(max_entries=5, batch_size=3)
    for i in range(12):
        rig.log.error("error %d", i)
    rig.handler.close()
    assert texts(lines(rds, key)) == [f"error {i}" for i in range(7, 12)]
    assert rig.handler.statistics().sent == 12


# --------------------------------------------------------------------------- outages


def test_alerts_wait_out_an_outage_and_emit_stays_fast(
    make: Callable[..., Rig], rds: redis.Redis, key: str, closed_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    up = False
    made: list[int] = []

    def factory() -> redis.Redis:
        made.append(REDIS_PORT if up else closed_port)
        return client_at(made[-1])

    caplog.set_level(logging.WARNING, logger="feed.alerts")
    rig = make(client_factory=factory)
    durations = [timed_error(rig.log, "before %d", i) for i in range(3)]
    wait_for(lambda: rig.handler.statistics().failures >= 3, "three failed pushes")
    durations += [timed_error(rig.log, "during %d", i) for i in range(2)]

    assert max(durations) < EMIT_BOUND_S, max(durations)
    assert rds.llen(key) == 0
    stats = rig.handler.statistics()
    assert stats.queued == 5
    assert "ConnectionError" in stats.last_error
    assert "Connection refused" in stats.last_error

    up = True
    found = wait_lines(rds, key, 5)

    assert texts(found) == [*(f"before {i}" for i in range(3)), "during 0", "during 1"]
    assert made[-1] == REDIS_PORT
    assert REDIS_PORT not in made[:-1]  # a failed client is closed and made again
    wait_for(lambda: any("answers again" in w.getMessage() for w in caplog.records), "warning")
    warnings = [r.getMessage() for r in caplog.records if r.name == "feed.alerts"]
    assert len(warnings) == 2, warnings  # once per outage, not once per retry
    assert warnings[0].startswith(f"alerts: pushing to Redis list {key} failed (ConnectionError")
    assert warnings[1].startswith("alerts: Redis answers again")


def test_the_handlers_own_warnings_never_feed_back(
    rds: redis.Redis, key: str, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Taking WARNING from the root logger, the handler's own outage warnings (logged
    under ``feed.alerts``, on its sender thread) would loop back without the guard."""
    caplog.set_level(logging.WARNING)
    up = False

    def factory() -> redis.Redis:
        return client_at(REDIS_PORT if up else closed_port)

    root = logging.getLogger()
    handler = install_alerts(None, factory, key=key, level="WARNING", **TEST_SETTINGS)
    try:
        logging.getLogger("matchd.test.guard").warning("user warning")
        wait_for(lambda: handler.statistics().failures >= 3, "three failed pushes")
        up = True
        wait_for(lambda: handler.statistics().sent >= 1, "the user warning delivered")
        wait_for(lambda: any("answers again" in r.getMessage() for r in caplog.records), "log")
        handler.close()
    finally:
        root.removeHandler(handler)
        handler.close()
    assert any(r.name == "feed.alerts" and r.thread != 0 for r in caplog.records)
    assert texts(lines(rds, key)) == ["user warning"]
    stats = handler.statistics()
    assert (stats.sent, stats.dropped, stats.queued) == (1, 0, 0)


def test_a_ready_client_is_used_and_not_closed(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make(client=rds)
    rig.log.error("through the caller's client")
    rig.handler.close()
    assert texts(lines(rds, key)) == ["through the caller's client"]
    assert rds.ping()


def test_close_delivers_then_ignores_later_records(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    rig = make()
    for i in range(30):
        rig.log.error("error %d", i)
    rig.handler.close()
    assert len(lines(rds, key)) == 30  # close waited for the queue
    rig.log.error("after close")
    rig.handler.close()
    assert len(lines(rds, key)) == 30
    assert rig.handler.statistics().queued == 0


def test_a_forked_child_has_its_own_handler(
    make: Callable[..., Rig], rds: redis.Redis, key: str
) -> None:
    """A child forked while another thread held the handler's lock (the sender does,
    briefly, all the time) must not deadlock at its first alert, and sends it with a
    thread of its own."""
    rig = make()
    rig.log.error("parent")
    wait_lines(rds, key, 1)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with rig.handler._mutex:
            held.set()
            release.wait(WAIT_S)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(WAIT_S)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            rig.log.error("child")
            rig.handler.close()
            status = 0 if rig.handler.statistics().sent == 2 else 2  # the parent's 1 + 1
        finally:
            os._exit(status)
    release.set()
    holder.join()
    deadline = time.monotonic() + WAIT_S
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert texts(lines(rds, key)) == ["parent", "child"]


# --------------------------------------------------------------------------- setup


def test_the_default_key_is_viabtcs(rds: redis.Redis) -> None:
    assert DEFAULT_KEY == AlertSettings().key == "alert:message"
    marker = f"matchd alert test {uuid.uuid4().hex}"
    handler = AlertHandler(AlertSettings(**TEST_SETTINGS))
    log = logging.getLogger(f"matchd.test.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.error(marker)
        handler.close()
    finally:
        log.removeHandler(handler)
        ours = [x for x in lines(rds, DEFAULT_KEY)[-100:] if marker in x]
        for line in ours:
            rds.lrem(DEFAULT_KEY, 0, line)
    assert len(ours) == 1


def test_install_alerts_goes_beside_the_journal_handler(
    rds: redis.Redis, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = io.StringIO()
    log = logging.getLogger(f"matchd.test.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.addHandler(logging.StreamHandler(journal))
    bare = logging.getLogger(f"matchd.test.{uuid.uuid4().hex[:8]}")
    bare.propagate = False
    handler = install_alerts(log, key=key, **TEST_SETTINGS)
    handler_bare = install_alerts(bare, key=key, **TEST_SETTINGS)
    try:
        log.error("to both")
        bare.error("to stderr too")
        handler.close()
        handler_bare.close()
    finally:
        log.removeHandler(handler)
        for h in bare.handlers[:]:
            bare.removeHandler(h)
    assert journal.getvalue() == "to both\n"
    assert "ERROR" in capsys.readouterr().err  # the bare logger got a stderr handler
    assert sorted(texts(lines(rds, key))) == ["to both", "to stderr too"]
    assert isinstance(handler, AlertHandler)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("key", ""),
        ("key", "has space"),
        ("level", "LOUD"),
        ("level", 0),
        ("queue_size", 0),
        ("max_entries", 0),
        ("window_s", -1),
        ("window_s", float("nan")),
        ("rate_per_minute", -1),
        ("max_line_length", 10),
        ("port", 70000),
        ("socket_timeout_s", 0),
        ("retry_min_s", 100.0),
        ("close_timeout_s", True),
        ("hostname", "two words"),
    ],
)
def test_bad_settings_are_refused(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^\[alerts\] {setting}"):
        AlertSettings(**{setting: value})  # type: ignore[arg-type]


def test_settings_hide_the_password_and_take_level_names() -> None:
    secret = uuid.uuid4().hex
    settings = AlertSettings(password=secret, level="critical")
    assert secret not in repr(settings)
    assert settings.level == logging.CRITICAL
    with pytest.raises(ValueError, match="not both"):
        AlertHandler(client=redis.Redis(), client_factory=redis.Redis)
