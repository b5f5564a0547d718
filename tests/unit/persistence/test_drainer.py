"""The MySQL drainer against a real MariaDB: every log record lands once, the rows say
what the log says, the balance history adds up to the engine's balances, and killing
the drainer (SIGKILL, mid-batch) or losing MySQL loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.engine import Engine
from core.fixed import format_units
from core.schema import EventKind
from daemon import cli
from persistence.drainer import Drainer
from persistence.history_rows import decode_record
from persistence.journal import LOG_DIR, Journal, JournalConfig, journal_log_config
from persistence.log_reader import LogReader
from tests.support.mysql import TestDatabase, apply_schema, fresh_database
from tests.support.steps import Batch, Update, resolve
from tests.support.streams import random_stream
from tests.support.world import Limits, stream_config, stream_config_text

pytestmark = pytest.mark.integration

SEED = 20261204
#: Kills of the drainer process per run (TESTING.md scenario 1 asks >= 50 per CI run
#: of the engine; the drainer's own scenario 7 asks for kills under load).
KILLS = 20


@pytest.fixture
def db() -> Iterator[TestDatabase]:
    with fresh_database() as database:
        apply_schema(database)
        yield database


def apply_step(journal: Journal, step: object, ts: int) -> None:
    """Run one step of a random stream through ``journal`` at time ``ts``."""
    if isinstance(step, Update):
        journal.balance_update(
            step.user, step.asset, step.business, step.business_id, step.change, ts,
            b'{"note":"test"}',
        )  # fmt: skip
        return
    assert isinstance(step, Batch)
    journal.submit(resolve(step.commands, journal.engine, ts))


def write_log(data_dir: Path, n_commands: int, seed: int = SEED) -> Engine:
    """A journal of a random stream (orders of every kind, deposits, withdrawals);
    returns its engine (the state the log ends at)."""
    config = stream_config(Limits())
    journal = Journal.open(config, JournalConfig(data_dir=data_dir, log=journal_log_config()))
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000_000_000
    try:
        for step in random_stream(rng, config, n_commands):
            ts += 1_000_000
            apply_step(journal, step, ts)
        return journal.engine
    finally:
        journal.close()


class Trading(threading.Thread):
    """Goes on writing a random stream into the journal of ``data_dir`` (after what
    is there) until stopped: the load the drainer follows."""

    def __init__(self, data_dir: Path, seed: int) -> None:
        super().__init__(daemon=True)
        config = stream_config(Limits())
        self.journal = Journal.open(
            config, JournalConfig(data_dir=data_dir, log=journal_log_config())
        )
        self.steps = random_stream(np.random.default_rng(seed), config, 100_000)
        self.halt = threading.Event()
        self.written = 0

    def run(self) -> None:
        ts = 1_800_000_000_000_000_000
        for step in self.steps[1:]:  # past the funding prefix of another stream
            if self.halt.is_set():
                return
            ts += 1_000_000
            apply_step(self.journal, step, ts)
            self.written += 1
            time.sleep(0.001)

    def finish(self) -> Engine:
        self.halt.set()
        self.join(60)
        self.journal.close()
        return self.journal.engine


def query(db: TestDatabase, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    finally:
        conn.close()


def check_history(db: TestDatabase, data_dir: Path, engine: Engine, min_trades: int = 50) -> None:
    """What MySQL holds is exactly what the log says, once."""
    log_dir = data_dir / LOG_DIR
    last = engine.counters()[0]
    seqs = [r[0] for r in query(db, "SELECT seq FROM operation_log ORDER BY seq")]
    assert seqs == list(range(1, last + 1))  # every record once, no gap
    assert query(db, "SELECT seq FROM drain_position WHERE name = 'mysql'") == [(last,)]
    finishes = deals = 0
    with LogReader(log_dir) as reader:
        for record in reader.read(1):
            events = decode_record(record).events
            finishes += int(np.count_nonzero(events["kind"] == EventKind.ORDER_FINISH))
            deals += int(np.count_nonzero(events["kind"] == EventKind.DEAL))
    assert query(db, "SELECT COUNT(*) FROM order_history") == [(finishes,)]
    assert query(db, "SELECT COUNT(*) FROM deal_history") == [(2 * deals,)]
    assert deals > min_trades  # the stream traded
    assert finishes > min_trades
    # Both sides of every deal, each naming the other.
    pairs = query(
        db,
        "SELECT a.order_id, a.deal_order_id, b.order_id, b.deal_order_id FROM deal_history a "
        "JOIN deal_history b ON a.deal_id = b.deal_id AND a.role = 1 AND b.role = 2",
    )
    assert len(pairs) == deals
    assert all(m == m2 and t == t2 for m, t, t2, m2 in pairs)
    # The balance history of every user and asset adds up to the engine's balance.
    sums = {
        (int(u), a): Decimal(s)
        for u, a, s in query(
            db, "SELECT user_id, asset, SUM(`change`) FROM balance_history GROUP BY 1, 2"
        )
    }
    config = engine.config
    index = {asset.name: i for i, asset in enumerate(config.assets)}
    for (user, name), total in sums.items():
        available, frozen = engine.balance(user, index[name])
        assert total == Decimal(format_units(available + frozen, config.assets[index[name]].prec))
    # ... and no balance is missing from it: per asset, the totals agree too.
    for i, asset in enumerate(config.assets):
        in_history = sum((v for (_, a), v in sums.items() if a == asset.name), Decimal(0))
        assert in_history == Decimal(format_units(engine.asset_summary(i).total, asset.prec))
    assert len(sums) > 5
    # An order in history is not resting any more; no id twice.
    ids = [r[0] for r in query(db, "SELECT id FROM order_history")]
    assert len(ids) == len(set(ids))


def test_a_drained_log_is_all_in_mysql_once(tmp_path: Path, db: TestDatabase) -> None:
    engine = write_log(tmp_path / "data", 1500)
    drainer = Drainer(tmp_path / "data" / LOG_DIR, engine.config, db.connect, batch_records=97)
    try:
        applied = drainer.drain_available()
        assert applied == engine.counters()[0]
        assert drainer.step() == 0  # caught up
        stats = drainer.statistics()
        assert (stats.lag_records, stats.lag_seconds) == (0, 0.0)
        assert stats.batches == -(-applied // 97)
    finally:
        drainer.close()
    check_history(db, tmp_path / "data", engine)
    # A second drainer of the same name starts where the first stopped: nothing twice.
    again = Drainer(tmp_path / "data" / LOG_DIR, engine.config, db.connect)
    try:
        assert again.drain_available() == 0
    finally:
        again.close()


@pytest.mark.parametrize("interval_s", [0.25, 0.0])
def test_run_waits_between_batches_that_are_not_full(
    tmp_path: Path, db: TestDatabase, interval_s: float
) -> None:
    """Full batches follow each other at once; after one that is not full, ``run``
    waits ``batch_interval_s`` before it reads again (none with 0)."""
    engine = write_log(tmp_path / "data", 300)
    committed = engine.counters()[0]
    now = [0.0]
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    drainer = Drainer(
        tmp_path / "data" / LOG_DIR, engine.config, db.connect,
        batch_records=committed // 2 + 1, batch_interval_s=interval_s,
        clock=lambda: now[0], sleep=sleep,
    )  # fmt: skip
    drainer.run(lambda: len(naps) >= 3)
    stats = drainer.statistics()
    assert (stats.position, stats.batches) == (committed, 2)  # one full, one not
    want = [interval_s, 0.005, 0.005] if interval_s else [0.005, 0.005, 0.005]
    assert naps == pytest.approx(want)
    check_history(db, tmp_path / "data", engine, min_trades=10)


@pytest.mark.parametrize(
    ("duty", "max_lag_s", "yields"),
    [(0.25, 30.0, True), (1.0, 30.0, False), (0.25, 1e-6, False)],
)
def test_run_yields_to_a_busy_engine_unless_too_far_behind(
    tmp_path: Path, db: TestDatabase, duty: float, max_lag_s: float, yields: bool
) -> None:
    """The log grew fast (the engine is busy): ``run`` waits ``work * (1/duty - 1)``
    after its batches; not with ``busy_duty`` 1, nor once it is ``busy_max_lag_s``
    behind. The clock moves 0.05 s a reading and by every nap."""
    engine = write_log(tmp_path / "data", 3000)
    committed = engine.counters()[0]
    assert committed > 1200  # read within a second of this clock: a busy engine
    now = [0.0]
    naps: list[float] = []

    def clock() -> float:
        now[0] += 0.05
        return now[0]

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    drainer = Drainer(
        tmp_path / "data" / LOG_DIR, engine.config, db.connect, batch_records=100,
        busy_duty=duty, busy_max_lag_s=max_lag_s, clock=clock, sleep=sleep,
    )  # fmt: skip
    drainer.run(lambda: drainer.statistics().lag_records == 0 and len(naps) > 2)
    yielded = [n for n in naps if n != 0.005]
    assert bool(yielded) is yields, naps
    assert drainer.statistics().position == committed
    check_history(db, tmp_path / "data", engine)


def test_a_batch_failing_while_the_next_is_built_is_written_again_once(
    tmp_path: Path, db: TestDatabase
) -> None:
    """The pipeline: MySQL fails the third batch's LOAD DATA (on the writer thread)
    while the fourth is being built; the built batch is dropped, the connection
    too, and the drainer goes on from MySQL's position: every record once."""
    import MySQLdb

    engine = write_log(tmp_path / "data", 600)
    loads = Counter[str]()

    class FailingCursor:
        def __init__(self, cursor: Any) -> None:
            self._cursor = cursor

        def execute(self, sql: str, args: Any = None) -> Any:
            if sql.startswith("LOAD DATA"):
                loads["all"] += 1
                if loads["all"] == 9:  # the first table of the third batch (4 a batch)
                    raise MySQLdb.OperationalError(2013, "Lost connection (injected)")
            return self._cursor.execute(sql, args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

    class FailingConnection:
        def __init__(self) -> None:
            self._conn = db.connect()

        def cursor(self) -> FailingCursor:
            return FailingCursor(self._conn.cursor())

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

    naps: list[float] = []
    drainer = Drainer(
        tmp_path / "data" / LOG_DIR, engine.config, FailingConnection, batch_records=61,
        retry_min_s=0.01, sleep=naps.append,
    )  # fmt: skip
    drainer.run(lambda: drainer.statistics().lag_records == 0 and len(naps) > 2)
    stats = drainer.statistics()
    assert stats.failures == 1
    assert "injected" in stats.last_error
    assert stats.position == engine.counters()[0]
    check_history(db, tmp_path / "data", engine, min_trades=10)


def test_balance_update_rows_keep_business_and_detail(tmp_path: Path, db: TestDatabase) -> None:
    engine = write_log(tmp_path / "data", 200)
    drainer = Drainer(tmp_path / "data" / LOG_DIR, engine.config, db.connect)
    try:
        drainer.drain_available()
    finally:
        drainer.close()
    rows = query(
        db,
        "SELECT business, detail FROM balance_history WHERE business NOT IN "
        "('trade', 'trade_fee') LIMIT 5",
    )
    assert rows
    assert all(detail == '{"note":"test"}' for _, detail in rows)
    ops = Counter(r[0] for r in query(db, "SELECT method FROM operation_log"))
    assert ops["update_balance"] > 0
    assert ops["limit_order"] > 0
    # A put with a client order id has it as a last param (ViaBTC's 8, then matchd's).
    puts = [
        json.loads(detail)["params"]
        for (detail,) in query(db, "SELECT detail FROM operation_log WHERE method = 'limit_order'")
    ]
    assert {len(p) for p in puts} == {8, 9}
    assert all(isinstance(p[8], int) and p[8] > 0 for p in puts if len(p) == 9)


def child_script(template: str, tmp_path: Path, db: TestDatabase) -> str:
    """``template`` (a drainer child's source) filled in for ``tmp_path``'s log and
    ``db``; the engine config is written to ``tmp_path``."""
    config_path = tmp_path / "engine.toml"
    config_path.write_text(stream_config_text(Limits()), encoding="utf-8")
    return template.format(
        root=str(Path(__file__).resolve().parents[3]),
        db=(db.host, db.port, db.user, db.password, db.database),
        config=str(config_path),
        log=str(tmp_path / "data" / LOG_DIR),
    )


_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from core.config import parse_config
from persistence.drainer import Drainer
from tests.support.mysql import TestDatabase
db = TestDatabase(*{db!r})
config = parse_config(Path({config!r}).read_text())
drainer = Drainer({log!r}, config, db.connect, batch_records=53)
drainer.step()  # warm: the kill lands while it drains, not while it starts
print("draining", flush=True)
drainer.run(lambda: False)
"""


def test_killed_mid_batch_again_and_again_nothing_is_lost_or_doubled(
    tmp_path: Path, db: TestDatabase
) -> None:
    """SIGKILL the drainer process at random moments while trading goes on; restart
    it; in the end MySQL holds every record once."""
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    write_log(tmp_path / "data", 2000)
    script = child_script(_CHILD, tmp_path, db)
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", ".numba_cache")}
    trading = Trading(tmp_path / "data", SEED + 1)
    trading.start()
    positions = []
    try:
        for _ in range(KILLS):
            child = subprocess.Popen(  # noqa: S603 -- our own script
                [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env
            )
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"draining"
            time.sleep(float(rng.uniform(0.0, 0.08)))
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            child.stdout.close()
            position = query(db, "SELECT seq FROM drain_position WHERE name = 'mysql'")
            positions.append(position[0][0] if position else 0)
    finally:
        engine = trading.finish()
    last = engine.counters()[0]
    print(f"killed {len(positions)} times at positions {positions}; the log ends at {last}")
    assert trading.written > 100  # the drainer was killed under load
    assert len(set(positions)) >= KILLS // 2  # killed at many places
    assert positions == sorted(positions)  # never backwards
    drainer = Drainer(tmp_path / "data" / LOG_DIR, engine.config, db.connect)
    try:
        drainer.drain_available()
    finally:
        drainer.close()
    check_history(db, tmp_path / "data", engine)


_BROKEN_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from core.config import parse_config
from persistence import drainer as d
from tests.support.mysql import TestDatabase


def broken_write(self, conn, batch, position):
    # Deliberately broken: the rows commit in a transaction of their own, before the
    # position moves; killed in between, the rows are in MySQL and the position is not.
    cursor = conn.cursor()
    for table, sql in d._INSERTS.items():
        rows = getattr(batch, table)
        if rows:
            cursor.executemany(sql, rows)
    conn.commit()
    print("rows committed", flush=True)
    time.sleep(3600)


d.Drainer._write = broken_write
db = TestDatabase(*{db!r})
config = parse_config(Path({config!r}).read_text())
# bulk=False: the INSERT path, whose _write gets RowBatch rows (broken_write's).
d.Drainer({log!r}, config, db.connect, batch_records=53, bulk=False).step()
"""


def test_negative_control_rows_committed_apart_from_the_position_fail_it(
    tmp_path: Path, db: TestDatabase
) -> None:
    """A deliberately broken drainer (rows and position in two transactions), killed
    between them, leaves rows that the next drainer applies again: caught."""
    import MySQLdb

    engine = write_log(tmp_path / "data", 300)
    script = child_script(_BROKEN_CHILD, tmp_path, db)
    child = subprocess.Popen(  # noqa: S603 -- our own script
        [sys.executable, "-c", script], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"rows committed"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    drainer = Drainer(tmp_path / "data" / LOG_DIR, engine.config, db.connect)
    try:
        with pytest.raises(MySQLdb.IntegrityError, match="Duplicate entry"):
            drainer.drain_available()
    finally:
        drainer.close()


def test_mysql_unreachable_then_back_catches_up(tmp_path: Path, db: TestDatabase) -> None:
    """The drainer retries with backoff while MySQL refuses, then catches up."""
    import socket

    import MySQLdb

    engine = write_log(tmp_path / "data", 300)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    attempts = []

    def connect() -> Any:
        attempts.append(time.monotonic())
        if len(attempts) <= 3:  # a port nothing listens on: refused at once
            return MySQLdb.connect(host="127.0.0.1", port=closed_port, connect_timeout=2)
        return db.connect()

    naps: list[float] = []
    drainer = Drainer(
        tmp_path / "data" / LOG_DIR,
        engine.config,
        connect,
        retry_min_s=0.01,
        retry_max_s=0.04,
        sleep=naps.append,
    )
    steps = iter(range(100))
    drainer.run(lambda: next(steps) > 20 and drainer.statistics().lag_records == 0)
    stats = drainer.statistics()
    assert stats.failures == 3
    assert "OperationalError" in stats.last_error
    assert naps[:3] == [0.01, 0.02, 0.04]  # exponential backoff, capped
    check_history(db, tmp_path / "data", engine, min_trades=10)


def test_the_drained_history_reads_back_through_the_viabtc_methods(
    tmp_path: Path, db: TestDatabase
) -> None:
    """balance.history pages of every user add up to the engine's balances, and
    every deal a user made is in market.user_deals and in order.deals of its order."""
    from persistence.history_queries import HistoryQueries

    engine = write_log(tmp_path / "data", 1500)
    drainer = Drainer(tmp_path / "data" / LOG_DIR, engine.config, db.connect)
    try:
        drainer.drain_available()
    finally:
        drainer.close()
    queries = HistoryQueries(db.connect, engine.config)
    try:
        users = [int(r[0]) for r in query(db, "SELECT DISTINCT user_id FROM balance_history")]
        assert len(users) > 3
        for user in users:
            if user == 0:
                continue  # the fee account: ViaBTC's user ids start at 1
            for index, asset in enumerate(engine.config.assets):
                total = Decimal(0)
                offset = 0
                while True:
                    page = queries.balance_history(user, asset.name, "", 0, 0, offset, 101)
                    total += sum(Decimal(r["change"]) for r in page["records"])
                    if len(page["records"]) < 101:
                        break
                    offset += 101
                available, frozen = engine.balance(user, index)
                assert total == Decimal(format_units(available + frozen, asset.prec))
        market = engine.config.markets[0].name
        checked = 0
        for user in users[1:6]:
            deals = queries.market_user_deals(user, market, 0, 101)["records"]
            for deal in deals[:5]:
                own = queries.order_deals(deal["deal_order_id"], 0, 101)["records"]
                assert deal["id"] in {d["id"] for d in own}  # the other side has it too
                checked += 1
        assert checked > 5
    finally:
        queries.close()


def test_the_log_restored_from_mysql_recovers_the_same_state(
    tmp_path: Path, db: TestDatabase
) -> None:
    """The disk is lost: the log rebuilt from operation_log replays to the same state
    hash; a gap in operation_log and a directory with a log already are refused."""
    from persistence.history_restore import RestoreError, restore_log

    engine = write_log(tmp_path / "data", 1500)
    drainer = Drainer(tmp_path / "data" / LOG_DIR, engine.config, db.connect)
    try:
        drainer.drain_available()
    finally:
        drainer.close()
    restored_dir = tmp_path / "restored"
    seen: list[int] = []
    restored = restore_log(db.connect, restored_dir / LOG_DIR, progress=seen.append)
    assert restored.last_seq == restored.records == engine.counters()[0]
    assert seen[-1] == restored.last_seq
    journal = Journal.open(
        engine.config, JournalConfig(data_dir=restored_dir, log=journal_log_config())
    )
    try:
        assert journal.engine.state_hash() == engine.state_hash()
    finally:
        journal.close()
    with pytest.raises(RestoreError, match="not empty"):
        restore_log(db.connect, restored_dir / LOG_DIR)
    # The same through the command line.
    config = tmp_path / "matchd.toml"
    config.write_text(stream_config_text(Limits()) + db.history_toml(), encoding="utf-8")
    again = ["db", "restore-log", "--config", str(config), "--data-dir"]
    assert cli.main([*again, str(tmp_path / "by-cli")]) == 0
    assert cli.main([*again, str(restored_dir)]) == 1  # not empty: refused
    conn = db.connect()
    try:
        conn.cursor().execute("DELETE FROM operation_log WHERE seq = 700")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(RestoreError, match="no record 700"):
        restore_log(db.connect, tmp_path / "gap" / LOG_DIR)


@pytest.mark.parametrize("snapshot", [False, True], ids=["log-only", "snapshot"])
def test_an_order_cancelled_after_a_restart_keeps_its_source_and_is_recorded(
    tmp_path: Path, db: TestDatabase, snapshot: bool
) -> None:
    """ViaBTC's holes: a restored order lost its source, and an order cancelled with
    nothing filled was never written. Here both are in order_history."""
    from core import commands as C
    from core.schema import Side

    config = stream_config(Limits())
    data = tmp_path / "data"
    jconfig = JournalConfig(data_dir=data, log=journal_log_config())
    journal = Journal.open(config, jconfig)
    try:
        journal.balance_update(1, 2, b"deposit", 1, 10**15, 1, b"{}")  # USDT
        results, _ = journal.submit(
            C.put_limit(1, 0, Side.BID, 10, 100, source=b"web-7", ts_ns=2_000_000_000)
        )
        assert results["code"][0] == 0
        order_id = int(results["order_id"][0])
        if snapshot:
            assert journal.snapshot()
            assert journal.poll_snapshot(timeout_s=60) is not None
    finally:
        journal.close()
    journal = Journal.open(config, jconfig)  # restart: the order comes back from recovery
    try:
        results, _ = journal.submit(C.cancel(1, 0, order_id, ts_ns=3_000_000_000))
        assert results["code"][0] == 0
    finally:
        journal.close()
    drainer = Drainer(data / LOG_DIR, config, db.connect)
    try:
        drainer.drain_available()
    finally:
        drainer.close()
    rows = query(
        db, "SELECT source, status, deal_stock, create_time FROM order_history WHERE id = %s",
        order_id,
    )  # fmt: skip
    assert rows == [("web-7", 2, Decimal(0), 2.0)]  # cancelled, nothing filled, its source
