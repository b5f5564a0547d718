"""``matchd``: the daemon's command line.

``matchd run --config etc/matchd.toml [--data-dir DIR] [--endpoint E] [--fsync F]``
runs the daemon: the supervisor (``daemon.supervisor``) and its children, today the
server. ``matchd demo --config PATH`` walks through a first trade on the in-process
engine (``daemon.demo``).

``matchd serve --config PATH --data-dir DIR [--endpoint E] [--fsync batch]`` runs the
single-process durable server (``daemon.server``): ZeroMQ order entry in front of the
journal in DIR, recovering it first; SIGTERM or SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

#: Exit code for a usage or config error (argparse uses 2 too).
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``matchd`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="matchd", description="matchd: matching engine for a cryptocurrency exchange"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the daemon (supervisor and its processes)")
    run.add_argument("--config", type=Path, required=True, metavar="PATH", help="TOML config file")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/matchd"),
        metavar="DIR",
        help="log and snapshots (default var/matchd)",
    )
    run.add_argument("--endpoint", default="tcp://127.0.0.1:7316", help="ZeroMQ order entry")
    run.add_argument("--fsync", choices=("always", "batch", "none"), default="batch")
    run.add_argument(
        "--metrics",
        default="127.0.0.1:9316",
        metavar="HOST:PORT",
        help="Prometheus /metrics address ('' for none; default 127.0.0.1:9316)",
    )
    demo = commands.add_parser("demo", help="walk through a first trade in one process")
    demo.add_argument("--config", type=Path, required=True, metavar="PATH", help="TOML config file")
    serve = commands.add_parser(
        "serve", help="serve ZeroMQ order entry over a durable journal (single process)"
    )
    serve.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    serve.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="log and snapshots"
    )
    serve.add_argument("--endpoint", default="tcp://127.0.0.1:7316", help="ZeroMQ endpoint to bind")
    serve.add_argument(
        "--fsync", choices=("always", "batch", "none"), default="batch", help="durability"
    )
    serve.add_argument(
        "--metrics",
        default="127.0.0.1:9316",
        metavar="HOST:PORT",
        help="Prometheus /metrics address ('' for none; default 127.0.0.1:9316)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``matchd`` with ``argv`` (default: the process arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _supervise(args)
    if args.command == "demo":
        return _run(args.config)
    if args.command == "serve":
        return _serve(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


def _run(config_path: Path) -> int:
    try:
        config_text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"matchd: cannot read config {config_path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Imported here so that `matchd --help` stays fast and does not compile kernels.
    from daemon.demo import run

    return run(config_text)


def _supervise(args: argparse.Namespace) -> int:
    import logging
    import signal

    from core.config import parse_config
    from core.errors import ConfigError
    from daemon.supervisor import Child, Supervisor, serve_argv, status_probe

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        parse_config(args.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        print(f"matchd: config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    argv = serve_argv(args.config, args.data_dir, args.endpoint, args.fsync, args.metrics)
    server = Child("server", argv)
    supervisor = Supervisor([server], status_probe(args.endpoint), pid_dir=args.data_dir / "run")
    print(f"matchd: supervising, order entry on {args.endpoint}", flush=True)
    return supervisor.run(lambda: stop)


def _serve(args: argparse.Namespace) -> int:
    import logging
    import signal

    from core.config import parse_config
    from core.errors import ConfigError
    from daemon.server import Server, ServerConfig
    from persistence.journal import Journal, JournalConfig, journal_log_config
    from persistence.log import FsyncPolicy
    from persistence.log_errors import LogError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = parse_config(args.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        print(f"matchd: config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    jconfig = JournalConfig(
        data_dir=args.data_dir, log=journal_log_config(fsync=FsyncPolicy(args.fsync))
    )
    try:
        journal = Journal.open(config, jconfig)
    except LogError as exc:
        print(f"matchd: cannot recover {args.data_dir}: {exc}", file=sys.stderr)
        return 1
    stop = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from daemon.metrics import ServerMetrics

    metrics = ServerMetrics(journal)
    if args.metrics:
        try:
            port = metrics.serve(args.metrics)
        except OSError as exc:
            journal.close()
            print(f"matchd: cannot serve metrics on {args.metrics}: {exc}", file=sys.stderr)
            return 1
        print(f"matchd: metrics on http://{args.metrics.rpartition(':')[0]}:{port}/metrics")
    server = Server(journal, ServerConfig(endpoint=args.endpoint), metrics=metrics)
    print(f"matchd: serving {server.endpoint}, data in {args.data_dir}", flush=True)
    try:
        server.serve(lambda: stop)
    finally:
        server.close()
        metrics.close()
        journal.close()
    print("matchd: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
