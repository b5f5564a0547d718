"""``matchd-bench``: benchmarks.

``matchd-bench core [--json] [--commands N] [--seed N] [--out DIR]`` measures the
in-process engine (``tools.bench_core``) on a seeded command stream;
``matchd-bench log [--json] [--commands N] [--batch N] [--dir DIR] ...`` the durable
engine on the same stream (``tools.bench_log``); ``matchd-bench ring [--json] ...`` the
shared-memory SPSC ring between two processes (``tools.bench_ring``);
``matchd-bench drain [--json] [--commands N] [--batch-records N] [--mysql HOST:PORT]``
the history drainer into MariaDB (``tools.bench_drain``); ``matchd-bench feed [--json]
[--commands N]`` the market-data feed (``tools.bench_feed``); ``matchd-bench http
[--json] [--quick] [--url URL] ...`` order entry over the HTTP JSON-RPC gateway
(``tools.bench_http``); ``matchd-bench all [--json | --markdown] [--quick] [--out DIR]
[--only A,B] [--skip A,B] [--timeout-s S]`` every one of them, each in its own process,
into one results folder with a summary (``tools.bench_all``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.bench_all import add_parser as add_all_parser
from tools.bench_args import int_list as _int_list
from tools.bench_args import non_negative_int as _non_negative_int
from tools.bench_args import positive_int as _positive_int
from tools.bench_http import add_parser as add_http_parser

DEFAULT_COMMANDS = 3_000_000  # exchange-core publishes its mix at 3M commands
DEFAULT_SEED = 1
DEFAULT_OUT = Path("results")


def _drivers(text: str) -> tuple[str, ...]:
    drivers = tuple(text.split(","))
    for driver in drivers:
        if driver not in ("numba", "python"):
            raise argparse.ArgumentTypeError(f"unknown driver {driver!r}: numba or python")
    return drivers


def _add_ring(commands: Any) -> None:
    ring = commands.add_parser(
        "ring",
        help="the shared-memory SPSC ring: one producer process to one consumer process",
        description="Benchmark ipc.ring.SpscRing: records/s between two processes per "
        "record size, batch size and driver (numba loop, Python calls), and the wake-up "
        "latency of a sleeping consumer.",
    )
    ring.add_argument("--json", action="store_true", help="print the results as JSON")
    ring.add_argument(
        "--records",
        type=_positive_int,
        default=20_000_000,
        metavar="N",
        help="records per run (default 20000000)",
    )
    ring.add_argument(
        "--calls",
        type=_positive_int,
        default=200_000,
        metavar="N",
        help="at most N pushes per run of the python driver (default 200000)",
    )
    ring.add_argument(
        "--capacity",
        type=_positive_int,
        default=4096,
        metavar="N",
        help="ring capacity in records, a power of two (default 4096)",
    )
    ring.add_argument(
        "--record-bytes",
        type=_int_list,
        default=(64, 184),
        metavar="A,B",
        help="record sizes in bytes, multiples of 8 (default 64,184)",
    )
    ring.add_argument(
        "--batches",
        type=_int_list,
        default=(1, 16, 256),
        metavar="A,B,C",
        help="records per push and at most per pop (default 1,16,256)",
    )
    ring.add_argument(
        "--drivers",
        type=_drivers,
        default=("numba", "python"),
        metavar="LIST",
        help="numba (kernel loops) and/or python (a call per batch) (default numba,python)",
    )
    ring.add_argument(
        "--wake-samples",
        type=_non_negative_int,
        default=200,
        metavar="N",
        help="wake-ups of a sleeping consumer measured (default 200; 0: none)",
    )
    ring.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"directory for ring.json (default {DEFAULT_OUT}/)",
    )


def _add_drain(commands: Any) -> None:
    drain = commands.add_parser(
        "drain",
        help="the history drainer: a trade-heavy log into MariaDB",
        description="Benchmark persistence.drainer: records, rows and deals per second "
        "drained into a fresh database on the local MariaDB.",
    )
    drain.add_argument("--json", action="store_true", help="print the results as JSON")
    drain.add_argument(
        "--commands",
        type=_positive_int,
        default=200_000,
        metavar="N",
        help="timed commands of the stream (default 200000)",
    )
    drain.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULT_SEED,
        metavar="N",
        help=f"seed of the command stream (default {DEFAULT_SEED})",
    )
    drain.add_argument(
        "--batch-records",
        type=_positive_int,
        default=4096,
        metavar="N",
        help="records per drainer transaction (default 4096)",
    )
    drain.add_argument(
        "--mysql",
        default="127.0.0.1:3306",
        metavar="HOST:PORT",
        help="the MariaDB server (default 127.0.0.1:3306)",
    )
    drain.add_argument("--user", default="root", help="MySQL user, no password (default root)")
    drain.add_argument(
        "--compare",
        action="store_true",
        help="also drain with the per-record path (Drainer(bulk=False)) first",
    )


def _add_feed(commands: Any) -> None:
    feed = commands.add_parser(
        "feed",
        help="the market-data feed: a trade-heavy log through daemon.feed.Feed",
        description="Benchmark the feed: records and deals per second through MarketData, "
        "the feed with its ZeroMQ publisher, and the feed writing Redis.",
    )
    feed.add_argument("--json", action="store_true", help="print the results as JSON")
    feed.add_argument(
        "--commands", type=_positive_int, default=200_000, metavar="N",
        help="timed commands of the stream (default 200000)",
    )  # fmt: skip
    feed.add_argument(
        "--seed", type=_non_negative_int, default=DEFAULT_SEED, metavar="N",
        help=f"seed of the command stream (default {DEFAULT_SEED})",
    )  # fmt: skip
    feed.add_argument(
        "--redis-db", type=_non_negative_int, default=14, metavar="N",
        help="the local Redis database it may empty (default 14)",
    )  # fmt: skip
    feed.add_argument("--no-redis", action="store_true", help="skip the run with Redis")


def build_parser() -> argparse.ArgumentParser:
    """The ``matchd-bench`` argument parser."""
    parser = argparse.ArgumentParser(prog="matchd-bench", description="matchd benchmarks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="BENCHMARK")
    core = commands.add_parser(
        "core",
        help="the in-process engine on a seeded command stream",
        description="Benchmark the in-process engine on a seeded command stream.",
    )
    core.add_argument("--json", action="store_true", help="print the results as JSON")
    core.add_argument(
        "--commands",
        type=_positive_int,
        default=DEFAULT_COMMANDS,
        metavar="N",
        help=f"number of commands (default {DEFAULT_COMMANDS})",
    )
    core.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULT_SEED,
        metavar="N",
        help=f"seed of the command stream (default {DEFAULT_SEED})",
    )
    core.add_argument(
        "--client-ids",
        action="store_true",
        help="give every new order a client order id (the cost of the id table)",
    )
    core.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"directory for result files (default {DEFAULT_OUT}/)",
    )
    log = commands.add_parser(
        "log",
        help="the durable engine (append log, fsync batch/always/none) and its recovery",
        description="Benchmark the journal: throughput and acknowledgement latency per "
        "fsync setting, and recovery speed.",
    )
    log.add_argument("--json", action="store_true", help="print the results as JSON")
    log.add_argument(
        "--commands",
        type=_positive_int,
        default=1_000_000,
        metavar="N",
        help="commands per fsync setting (default 1000000)",
    )
    log.add_argument(
        "--always-commands",
        type=_positive_int,
        default=20_000,
        metavar="N",
        help="commands of the fsync=always run (default 20000)",
    )
    log.add_argument(
        "--snapshot-orders",
        type=_positive_int,
        default=2_000_000,
        metavar="N",
        help="resting orders in the snapshot measurement (default 2000000)",
    )
    log.add_argument(
        "--batch",
        type=_positive_int,
        default=256,
        metavar="N",
        help="commands per submit (default 256)",
    )
    log.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULT_SEED,
        metavar="N",
        help=f"seed of the command stream (default {DEFAULT_SEED})",
    )
    log.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the logs are written (default: a temporary directory on the working disk)",
    )
    log.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"directory for result files (default {DEFAULT_OUT}/)",
    )
    e2e = commands.add_parser(
        "e2e",
        help="matchd serve and a ZeroMQ client on loopback: throughput and latency",
        description="Benchmark the durable server end to end over ZeroMQ.",
    )
    e2e.add_argument("--json", action="store_true", help="print the results as JSON")
    e2e.add_argument(
        "--commands",
        type=_positive_int,
        default=600_000,
        metavar="N",
        help="stream length; a third each for batched and single (default 600000)",
    )
    e2e.add_argument("--batch", type=_positive_int, default=1024, metavar="N")
    e2e.add_argument("--window", type=_positive_int, default=8, metavar="N")
    e2e.add_argument("--window-single", type=_positive_int, default=256, metavar="N")
    e2e.add_argument(
        "--rate",
        type=float,
        default=50_000.0,
        help="open-loop orders/s (default 50000, issue #4's latency goal)",
    )
    e2e.add_argument(
        "--open-commands",
        type=_positive_int,
        default=200_000,
        metavar="N",
        help="orders of the open-loop run (default 200000: 4 s at 50k/s; at most a "
        "third of --commands)",
    )
    e2e.add_argument("--fsync", choices=("always", "batch", "none"), default="batch")
    e2e.add_argument(
        "--history",
        action="store_true",
        help="run the MySQL drainer beside the daemon (a fresh database on the local "
        "MariaDB, root@127.0.0.1:3306) and report its lag under the load",
    )
    e2e.add_argument(
        "--feed",
        action="store_true",
        help="run the market-data feed beside the daemon (ZeroMQ and the local Redis, "
        "db 14, emptied) and report the delay from a deal to its market data",
    )
    e2e.add_argument(
        "--feed-nice", type=int, default=0, choices=range(20), metavar="N",
        help="with --feed: the feed's --nice (default 0)",
    )  # fmt: skip
    e2e.add_argument(
        "--busy-duty",
        type=float,
        default=None,
        metavar="X",
        help="with --history: the drainer's [history] busy_duty (default: the config's, 0.25)",
    )
    e2e.add_argument(
        "--replication",
        choices=("none", "async", "sync"),
        default="none",
        help="run a hot standby beside the daemon in this [replication] mode and report "
        "its catch-up (default none: no standby)",
    )
    e2e.add_argument(
        "--workers",
        default="0",
        metavar="N",
        help="pair workers of the daemon: 0 (one process, default), a number, or per-market",
    )
    e2e.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULT_SEED,
        metavar="N",
        help=f"seed of the command stream (default {DEFAULT_SEED})",
    )
    e2e.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"directory for result files (default {DEFAULT_OUT}/)",
    )
    _add_ring(commands)
    _add_drain(commands)
    _add_feed(commands)
    add_http_parser(commands)
    add_all_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``matchd-bench`` with ``argv`` (default: process arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "core":
        # Imported here so that `--help` and argument errors do not compile kernels.
        from tools.bench_core import main as bench_core_main

        return bench_core_main(args)
    if args.command == "e2e":
        from tools.bench_e2e import main as bench_e2e_main

        return bench_e2e_main(args)
    if args.command == "log":
        from tools.bench_log import main as bench_log_main

        return bench_log_main(args)
    if args.command == "drain":
        from tools.bench_drain import main as bench_drain_main

        return bench_drain_main(args)
    if args.command == "feed":
        from tools.bench_feed import main as bench_feed_main

        return bench_feed_main(args)
    if args.command == "ring":
        from tools.bench_ring import main as bench_ring_main

        return bench_ring_main(args)
    if args.command == "http":
        from tools.bench_http import main as bench_http_main

        return bench_http_main(args)
    if args.command == "all":
        from tools.bench_all import main as bench_all_main

        return bench_all_main(args)
    raise AssertionError(f"unhandled benchmark {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
