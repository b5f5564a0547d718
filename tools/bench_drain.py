"""``matchd-bench drain``: the history drainer (``persistence.drainer``) into MariaDB.

What it measures, in one process: a journal is written (untimed) from a seeded,
trade-heavy stream of ``tools.bench_stream`` (a fixed mix of GTC, IOC, cancel and
replace commands, so that many commands trade; the report gives the mix and the
deals), then ``Drainer.drain_available`` applies the whole log to a fresh database
``matchd_bench_<pid>_<n>`` on the local MariaDB (created, migrated, dropped). The report
gives records, rows by table and deals drained per second. ``--compare`` also drains
the same log with the per-record path (``Drainer(bulk=False)``: rows built per event
in Python, written with ``executemany``) into a second database, so that the two
figures come from one session.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from persistence.drainer import Drainer
from persistence.history_config import HistoryConfig
from persistence.history_db import connect, migrate
from persistence.journal import LOG_DIR, Journal, JournalConfig, journal_log_config
from tools.bench_core import machine_info
from tools.bench_stream import bench_config, deposit_all, generate, stream_summary

WARMUP = 20_000
SUBMIT_BATCH = 4096
#: (gtc, ioc, cancel, replace) of the timed commands: takers (IOC and aggressive GTC)
#: are about 53% of the commands, against about 6% in the exchange-core mix.
TRADE_MIX = (0.25, 0.45, 0.15, 0.15)
TABLES = ("order_history", "deal_history", "balance_history", "operation_log")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, port 3306)."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "3306")
    return host or "127.0.0.1", int(port)


def build_journal(directory: Path, commands: int, seed: int) -> dict[str, Any]:
    """Write the log of deposits, the warm-up and ``commands`` trade-heavy commands
    into ``directory``; returns the stream's summary."""
    stream = generate(commands, seed, WARMUP, [], 0, mix=TRADE_MIX)
    journal = Journal.open(
        bench_config(), JournalConfig(data_dir=directory, log=journal_log_config())
    )
    try:
        deposit_all(journal)  # type: ignore[arg-type]  # Journal has EngineAPI's writes
        for part in (stream.warmup, stream.commands):
            for start in range(0, part.shape[0], SUBMIT_BATCH):
                journal.submit(part[start : start + SUBMIT_BATCH].copy())
    finally:
        journal.close()
    return stream_summary(stream)


@contextlib.contextmanager
def bench_database(config: HistoryConfig) -> Iterator[HistoryConfig]:
    """Create and migrate ``config.database`` as ``matchd db migrate`` does; yield it;
    drop it."""
    drop_database(config)
    migrate(config)
    try:
        yield config
    finally:
        drop_database(config)


def drop_database(config: HistoryConfig) -> None:
    """``DROP DATABASE IF EXISTS`` ``config.database``."""
    conn = connect(config, database=False)
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{config.database}`")
    finally:
        conn.close()


def count_rows(config: HistoryConfig) -> dict[str, int]:
    """Rows of each history table of ``config.database``."""
    conn = connect(config)
    try:
        cursor = conn.cursor()
        rows = {}
        for table in TABLES:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - constant names
            rows[table] = int(cursor.fetchone()[0])
        return rows
    finally:
        conn.close()


def drain_once(
    log_dir: Path, config: HistoryConfig, batch_records: int, *, bulk: bool, name: str
) -> dict[str, Any]:
    """Drain the whole log in ``log_dir`` into ``config.database`` with a drainer
    called ``name`` (a log consumer of its own); figures."""
    drainer = Drainer(
        log_dir, bench_config(), lambda: connect(config),
        name=name, batch_records=batch_records, bulk=bulk,
    )  # fmt: skip
    try:
        t0 = time.perf_counter()
        records = drainer.drain_available()
        seconds = time.perf_counter() - t0
        stats = drainer.statistics()
    finally:
        drainer.close()
    rows = count_rows(config)
    deals = rows["deal_history"] // 2
    total = sum(rows.values())
    if total != stats.rows:
        raise RuntimeError(f"the drainer counted {stats.rows} rows, the database holds {total}")
    return {
        "path": "bulk" if bulk else "per-record",
        "records": records,
        "rows": total,
        "rows_by_table": rows,
        "deals": deals,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds, 1),
        "rows_per_s": round(total / seconds, 1),
        "deals_per_s": round(deals / seconds, 1),
    }


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the report (JSON with ``--json``)."""
    host, port = parse_address(args.mysql)
    work = Path(tempfile.mkdtemp(prefix="matchd-bench-drain-"))
    runs = []
    try:
        summary = build_journal(work / "data", args.commands, args.seed)
        log_dir = work / "data" / LOG_DIR
        paths = (False, True) if args.compare else (True,)
        for n, bulk in enumerate(paths):
            name = f"matchd_bench_{os.getpid()}_{n}"
            config = HistoryConfig(host=host, port=port, user=args.user, database=name)
            with bench_database(config) as db:
                runs.append(
                    drain_once(log_dir, db, args.batch_records, bulk=bulk, name=f"bench{n}")
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "drain",
        "what": "persistence.drainer.Drainer.drain_available: the whole log of a "
        "trade-heavy stream into a fresh MariaDB database, one transaction per batch",
        "commands": args.commands,
        "stream": summary,
        "batch_records": args.batch_records,
        "runs": runs,
        "seed": args.seed,
        "mysql": f"{host}:{port}",
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for run in runs:
            print(
                f"{run['path']:<10} {run['records']:,} records, {run['rows']:,} rows, "
                f"{run['deals']:,} deals in {run['seconds']} s: {run['records_per_s']:,.0f} "
                f"records/s, {run['rows_per_s']:,.0f} rows/s, {run['deals_per_s']:,.0f} deals/s"
            )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(argparse.Namespace()))
