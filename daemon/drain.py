"""``matchd drain``: the MySQL drainer process (docs/history.md, "The drainer").

The composition root of the drainer: read the engine tables and ``[history]`` of the
config, wait for the server to have created the log, check the schema, and run
``persistence.drainer.Drainer`` until SIGTERM. ``matchd run`` starts it beside the
server when the config has ``[history]`` and restarts it if it dies; it can fall
behind, stop and crash without ever slowing trading. Every ``report_s`` it logs its
position and lag while it lags.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.stopping import stop_on_signals, wait_for_directory

if TYPE_CHECKING:
    from persistence.history_config import HistoryConfig

logger = logging.getLogger("matchd.drain")

#: Exit code for a usage or config error (as daemon.cli).
EXIT_USAGE = 2
#: How much lower the drainer's CPU priority is than the server's: on a machine with
#: few cores, the drainer falls behind under load and catches up when trading pauses,
#: rather than taking cores from the server (DESIGN.md rule 8).
DEFAULT_NICE = 10


def add_drain_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``matchd drain --config PATH --data-dir DIR``."""
    drain = commands.add_parser(
        "drain", help="apply the log to the MySQL history ([history] in the config)"
    )
    drain.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    drain.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/matchd"),
        metavar="DIR",
        help="the server's data directory, whose log it reads (default var/matchd)",
    )
    drain.add_argument(
        "--nice",
        type=int,
        default=DEFAULT_NICE,
        metavar="N",
        help=f"lower its CPU priority by N (default {DEFAULT_NICE}; 0: none), so that "
        "trading wins the cores when both want them",
    )


def drain_argv(config: Path, data_dir: Path) -> list[str]:
    """The command line of the drainer child."""
    return [
        sys.executable, "-m", "daemon.cli", "drain", "--config", str(config),
        "--data-dir", str(data_dir),
    ]  # fmt: skip


def run_drain(args: argparse.Namespace, report_s: float = 10.0) -> int:
    """Run the drainer until SIGTERM or SIGINT; the exit code."""
    from core.config import parse_config
    from core.errors import ConfigError
    from persistence.drainer import Drainer
    from persistence.history_config import load_history_config
    from persistence.history_db import connect
    from persistence.journal import LOG_DIR

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        text = args.config.read_text(encoding="utf-8")
        config = parse_config(text)
        history = load_history_config(text)
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        print(f"matchd: config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if history is None:
        print(f"matchd: {args.config}: history is not configured (no [history])", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.nice <= 19:
        print(f"matchd: --nice must be 0..19; got {args.nice}", file=sys.stderr)
        return EXIT_USAGE
    from daemon.alerting import start_alerts

    start_alerts(text, "matchd-drain")
    if args.nice:
        os.nice(args.nice)
    should_stop = stop_on_signals()
    log_dir = args.data_dir / LOG_DIR
    if not wait_for_directory(log_dir, should_stop):  # the server creates it
        return 0
    if not _schema_ready(history, should_stop):
        return 0

    def _connect() -> Any:
        return connect(history)

    drainer = Drainer(
        log_dir, config, _connect,
        batch_records=history.batch_records, batch_interval_s=history.batch_interval_s,
        busy_duty=history.busy_duty, busy_max_lag_s=history.busy_max_lag_s,
    )  # fmt: skip
    next_report = time.monotonic() + report_s

    def reporting_stop() -> bool:
        nonlocal next_report
        now = time.monotonic()
        if now >= next_report:
            next_report = now + report_s
            stats = drainer.statistics()
            if stats.lag_records:
                logger.info(
                    "drained to seq %d of %d: lag %d records, %.1f s; %d failures",
                    stats.position,
                    stats.committed_seq,
                    stats.lag_records,
                    stats.lag_seconds,
                    stats.failures,
                )
        return should_stop()

    print(f"matchd: draining {log_dir} into {history.address()}", flush=True)
    drainer.run(reporting_stop)
    print("matchd: drainer stopped", flush=True)
    return 0


def _schema_ready(history: HistoryConfig, stopping: Callable[[], bool]) -> bool:
    """Wait until the history schema is the one this code writes (``matchd db migrate``
    makes it); False if asked to stop first. Retries every few seconds, logging why."""
    from persistence.history_db import HistoryUnavailable, database_version
    from persistence.history_schema import LATEST_VERSION

    last = ""
    while not stopping():
        try:
            version = database_version(history)
        except HistoryUnavailable as exc:
            reason = str(exc)
        else:
            if version == LATEST_VERSION:
                return True
            reason = (
                f"the history schema is at version {version or 0}, this drainer writes "
                f"version {LATEST_VERSION}: run matchd db migrate"
            )
        if reason != last:
            logger.error("drainer waiting: %s", reason)
            last = reason
        for _ in range(25):
            if stopping():
                return False
            time.sleep(0.2)
    return False
