"""``matchd``: the daemon's command line.

``matchd run --config etc/matchd.toml [--data-dir DIR] [--endpoint E] [--fsync F]``
runs the daemon: the supervisor (``daemon.supervisor``) and its child, the server.
``matchd demo --config PATH`` walks through a first trade on the in-process engine
(``daemon.demo``).

``matchd serve --config PATH --data-dir DIR [--endpoint E] [--fsync batch]`` runs the
durable server (``daemon.server``): ZeroMQ order entry in front of the journal in DIR,
recovering it first; SIGTERM or SIGINT stop it cleanly. With ``--workers per-market``
(or a number) it is the sequencer of pair-worker processes that hold the books in
shared memory (``daemon.pipeline``, ``daemon.server_pipeline``); ``--cpus`` pins them.

``run`` and ``serve`` take ``--keys PATH`` (default: the ``MATCHD_KEYS`` environment
variable), the CURVE key registry (``daemon.auth``, ``etc/keys.example.toml``);
without it the order entry binds local endpoints only. ``matchd keygen --out DIR
NAME`` writes a new key pair, ``DIR/NAME.key`` and ``DIR/NAME.key_secret`` (0600).

``matchd db migrate --config PATH`` creates or updates the schema of the MySQL history
that the config's ``[history]`` table names (``persistence.history_db``); ``matchd db
status --config PATH`` shows its address and schema version (docs/history.md). Exit
codes: 0, ``EXIT_USAGE`` for a config without ``[history]`` or with a bad value, 1
when MySQL cannot be reached or refuses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import EngineConfig
    from daemon.auth import KeyRegistry
    from daemon.metrics import ServerMetrics
    from daemon.pipeline import Pipeline, PipelineConfig
    from daemon.replication import Replication
    from daemon.replication_config import ReplicationConfig
    from daemon.server import Server, ServerConfig
    from persistence.history_config import HistoryConfig
    from persistence.journal import Journal

#: Exit code for a usage or config error (argparse uses 2 too).
EXIT_USAGE = 2
#: The environment variable ``--keys`` defaults to.
KEYS_ENV = "MATCHD_KEYS"
_KEYS_HELP = f"CURVE key registry (TOML; default ${KEYS_ENV}; none: local endpoints only)"


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
    run.add_argument("--keys", type=Path, metavar="PATH", help=_KEYS_HELP)
    _add_worker_arguments(run)
    _add_replication_arguments(run)
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
    serve.add_argument("--keys", type=Path, metavar="PATH", help=_KEYS_HELP)
    _add_worker_arguments(serve)
    _add_replication_arguments(serve)
    keygen = commands.add_parser("keygen", help="write a new CURVE key pair")
    keygen.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory of the key files"
    )
    keygen.add_argument("name", help="key name: NAME.key (public), NAME.key_secret (0600)")
    _add_db_commands(commands)
    from daemon.drain import add_drain_command
    from daemon.feed import add_feed_command
    from daemon.gateway_process import add_gateway_commands

    add_drain_command(commands)
    add_feed_command(commands)
    add_gateway_commands(commands)
    return parser


def _add_db_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="the MySQL history database ([history] in the config)")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = actions.add_parser("migrate", help="create or update the history schema")
    migrate.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    migrate.add_argument(
        "--if-configured",
        action="store_true",
        help="without a [history] table, say so and succeed (for make run)",
    )
    status = actions.add_parser("status", help="show the history's address and schema version")
    status.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    restore = actions.add_parser(
        "restore-log",
        help="rebuild a lost log from the history's operation_log (into an empty data dir)",
    )
    restore.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    restore.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="the new data directory"
    )


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        default="0",
        metavar="N",
        help="pair worker processes: 0 (default: one process, the fastest today, see "
        "docs/benchmarks.md), 'per-market' (one per market of the config), or a number "
        "(markets spread round-robin, with the slots of those that may be added)",
    )
    parser.add_argument(
        "--cpus",
        default="",
        metavar="LIST",
        help="CPUs the workers are pinned to, round-robin (e.g. '1,0'); default: the "
        "CPUs after the first when there is one for each worker, else none",
    )
    parser.add_argument(
        "--snapshot-on-stop",
        action="store_true",
        help="on SIGTERM, after the last command is durable, write a snapshot (a faster "
        "next start)",
    )


def _add_replication_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role",
        choices=("primary", "standby"),
        default="primary",
        help="primary (takes writes, serves its log to standbys) or standby (follows "
        "--primary); see docs/operations.md",
    )
    parser.add_argument(
        "--primary", metavar="ENDPOINT", help="a standby's primary: its [replication] listen"
    )
    parser.add_argument(
        "--replication",
        metavar="ENDPOINT",
        help="where this engine serves its log to standbys (overrides [replication] listen)",
    )


def _replication_args(args: argparse.Namespace) -> list[str]:
    argv = ["--role", args.role]
    if args.primary:
        argv += ["--primary", args.primary]
    if args.replication:
        argv += ["--replication", args.replication]
    return argv


def _replication_config(args: argparse.Namespace, text: str) -> ReplicationConfig | None:
    """``[replication]`` with the command line's overrides; None when neither the
    config nor the command line asks for replication. ``ConfigError`` for a standby
    without ``--primary``."""
    from core.errors import ConfigError
    from daemon.replication import with_listen
    from daemon.replication_config import ReplicationConfig, load_replication_config

    config = load_replication_config(text)
    if args.role == "standby" and not args.primary:
        raise ConfigError("--role standby needs --primary ENDPOINT (the primary's replication)")
    if config is None and (args.role == "standby" or args.replication):
        config = ReplicationConfig()
    return None if config is None else with_listen(config, args.replication)


def _plan(args: argparse.Namespace, config: EngineConfig) -> PipelineConfig | None:
    """The workers ``--workers`` and ``--cpus`` ask for, over every market slot of
    ``config`` (``per-market``: one per market of its catalog); None for one process.
    ``ConfigError`` says what is wrong."""
    from core.errors import ConfigError
    from daemon.pipeline import plan_workers

    spec = str(args.workers).strip()
    if spec == "per-market":
        count = None
    elif spec.isdigit():
        count = int(spec)
        if count == 0:
            return None
    else:
        raise ConfigError(f"--workers must be 'per-market' or a number; got {spec!r}")
    cpus = None
    if args.cpus.strip():
        try:
            cpus = [int(c) for c in args.cpus.split(",")]
        except ValueError:
            raise ConfigError(
                f"--cpus must be numbers separated by commas; got {args.cpus!r}"
            ) from None
        usable = os.sched_getaffinity(0)
        if not set(cpus) <= usable:
            raise ConfigError(f"--cpus {args.cpus}: this machine lets us use {sorted(usable)}")
    return plan_workers(len(config.markets), count, cpus, slots=config.market_slots)


def instance_name(data_dir: Path) -> str:
    """The shared-memory instance of the daemon whose data is in ``data_dir``: the
    same across restarts (so a crashed run's segments are found and removed), distinct
    per data directory."""
    import hashlib

    digest = hashlib.blake2b(str(data_dir.resolve()).encode(), digest_size=8).hexdigest()
    return f"matchd-{digest}"


def _worker_args(args: argparse.Namespace) -> list[str]:
    extra = ["--snapshot-on-stop"] if args.snapshot_on_stop else []
    return ["--workers", args.workers, "--cpus", args.cpus, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``matchd`` with ``argv`` (default: the process arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _supervise(args)
    if args.command == "demo":
        return _run(args.config)
    if args.command == "serve":
        return _serve(args)
    if args.command == "keygen":
        return _keygen(args.out, args.name)
    if args.command == "db":
        return _db(args)
    if args.command == "feed":
        from daemon.feed import run_feed

        return run_feed(args)
    if args.command == "drain":
        from daemon.drain import run_drain

        return run_drain(args)
    if args.command in ("http", "ws"):
        from daemon.gateway_process import run_gateway

        return run_gateway(args)
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


def _keygen(out: Path, name: str) -> int:
    from daemon.auth import write_keypair
    from ipc.client_common import read_key_file

    try:
        public_path, secret_path = write_keypair(out, name)
    except (OSError, ValueError) as exc:
        print(f"matchd: keygen: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError | FileExistsError) else 1
    public = read_key_file(public_path)[0].decode()
    print(f"public key: {public_path} (for the server)")
    print(f"secret key: {secret_path} (mode 0600; stays with the client)")
    print("entry for the server's key registry:")
    print(f'[[client]]\nname = "{name}"\npublic_key = "{public}"')
    print('role = "read"  # admin, trade or read\nusers = []  # user ids it may act for, or "*"')
    return 0


def _db(args: argparse.Namespace) -> int:
    """``matchd db migrate``, ``status`` and ``restore-log``."""
    from core.errors import ConfigError
    from persistence.history_config import load_history_config
    from persistence.history_db import HistoryUnavailable

    try:
        text = args.config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"matchd: cannot read config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_history_config(text)
    except ConfigError as exc:
        print(f"matchd: config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if config is None:
        if getattr(args, "if_configured", False):
            print(f"matchd: history is not configured in {args.config}: nothing to migrate")
            return 0
        print(
            f"matchd: config {args.config}: history is not configured (no [history] table)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        if args.db_command == "migrate":
            return _db_migrate(config)
        if args.db_command == "restore-log":
            return _db_restore_log(config, args.data_dir)
        return _db_status(config)
    except HistoryUnavailable as exc:
        print(f"matchd: history: {exc}", file=sys.stderr)
        return 1


def _db_migrate(config: HistoryConfig) -> int:
    from persistence.history_db import migrate
    from persistence.history_schema import LATEST_VERSION, MIGRATIONS

    applied = migrate(config)
    descriptions = {m.version: m.description for m in MIGRATIONS}
    for version in applied:
        print(
            f"matchd: history {config.address()}: applied migration {version} "
            f"({descriptions[version]})"
        )
    if not applied:
        print(f"matchd: history {config.address()}: up to date (schema version {LATEST_VERSION})")
    return 0


def _db_restore_log(config: HistoryConfig, data_dir: Path) -> int:
    from persistence.history_db import connect
    from persistence.history_restore import RestoreError, restore_log
    from persistence.journal import LOG_DIR

    try:
        done = restore_log(lambda: connect(config), data_dir / LOG_DIR)
    except RestoreError as exc:
        print(f"matchd: {exc}", file=sys.stderr)
        return 1
    print(
        f"matchd: restored {done.records} records (to seq {done.last_seq}) from "
        f"{config.address()} into {data_dir / LOG_DIR}"
    )
    return 0


def _db_status(config: HistoryConfig) -> int:
    from persistence.history_db import database_version
    from persistence.history_schema import LATEST_VERSION

    version = database_version(config)
    if version is None:
        state = f"database {config.database} does not exist: run matchd db migrate"
    elif version < LATEST_VERSION:
        state = "migrations pending: run matchd db migrate"
    elif version > LATEST_VERSION:
        state = "newer than this matchd: upgrade matchd"
    else:
        state = "up to date"
    print(f"history: {config.address()}")
    print(f"schema version: {version or 0}")
    print(f"latest version: {LATEST_VERSION}")
    print(f"state: {state}")
    return 0


def _keys_path(args: argparse.Namespace) -> Path | None:
    """``--keys``, else ``$MATCHD_KEYS``, else None."""
    if args.keys is not None:
        return Path(args.keys)
    env = os.environ.get(KEYS_ENV, "")
    return Path(env) if env else None


def _registry(path: Path | None) -> KeyRegistry | None:
    """The key registry at ``path`` (None: none); ``ConfigError`` if it is wrong."""
    if path is None:
        return None
    from daemon.auth import load_registry

    return load_registry(path)


def _gateway_children(args: argparse.Namespace, gateways: tuple[Any, Any]) -> list[Any]:
    """The HTTP and WebSocket workers of ``[http]`` and ``[ws]`` (``workers`` each, on
    one port), connected to this daemon's order entry."""
    from daemon.gateway_process import gateway_argv
    from daemon.supervisor import Child

    children = []
    for kind, table in zip(("http", "ws"), gateways, strict=True):
        if table is not None:
            argv = gateway_argv(kind, args.config, args.endpoint)
            children += [Child(f"{kind}-{i}", argv) for i in range(table.workers)]
    return children


def _supervise(args: argparse.Namespace) -> int:
    import logging

    from core.config import parse_config
    from core.errors import ConfigError
    from daemon.auth import check_exposure
    from daemon.stopping import stop_on_signals
    from daemon.supervisor import Child, Supervisor, serve_argv, status_probe

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from daemon.feed_config import load_feed_config
    from daemon.gateway_config import load_gateway_config
    from persistence.history_config import load_history_config

    try:
        text = args.config.read_text(encoding="utf-8")
        config = parse_config(text)
        history_configured = load_history_config(text) is not None
        feed_configured, redis_configured = (t is not None for t in load_feed_config(text))
        gateways = load_gateway_config(text)
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        print(f"matchd: config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    keys = _keys_path(args)
    try:  # refused here rather than by every restart of the child
        registry = _registry(keys)
        check_exposure(args.endpoint, curve=registry is not None)
        _plan(args, config)  # the workers asked for are possible
        rconfig = _replication_config(args, text)
        if rconfig is not None:
            from daemon.replication import check_replication_exposure

            check_replication_exposure(rconfig, args.primary, curve=registry is not None)
    except ConfigError as exc:
        print(f"matchd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if redis_configured:
        from daemon.alerting import start_alerts

        start_alerts(text, "matchd-run")
    should_stop = stop_on_signals()
    argv = serve_argv(args.config, args.data_dir, args.endpoint, args.fsync, args.metrics, keys)
    argv += _worker_args(args) + _replication_args(args)
    children = [Child("server", argv)]
    if history_configured:  # the drainer beside the server, restarted like it
        from daemon.drain import drain_argv

        children.append(Child("drainer", drain_argv(args.config, args.data_dir)))
    if feed_configured:  # market data beside the server, restarted like it
        from daemon.feed import feed_argv

        children.append(Child("feed", feed_argv(args.config, args.data_dir)))
    children += _gateway_children(args, gateways)
    # A standby runs only its server; the log's readers and the gateways run beside the
    # primary, and start here when this standby is promoted.
    dormant = children[1:] if args.role == "standby" else []
    children = children[: len(children) - len(dormant)]
    curve = registry.server_keys() if registry is not None else None
    probe = status_probe(args.endpoint, curve=curve)
    supervisor = Supervisor(children, probe, pid_dir=args.data_dir / "run", dormant=dormant)
    print(f"matchd: supervising, order entry on {args.endpoint}", flush=True)
    return supervisor.run(should_stop)


def _make_server(
    journal: Journal,
    sconfig: ServerConfig,
    plan: PipelineConfig | None,
    metrics: ServerMetrics,
    data_dir: Path,
    replication: Replication | None = None,
) -> tuple[Server, Pipeline | None]:
    """The one-process server, or (with ``plan``) the pipelined one and its workers."""
    from daemon.server import Server

    if plan is None:
        return Server(journal, sconfig, metrics=metrics, replication=replication), None
    from daemon.pipeline import Pipeline
    from daemon.server_pipeline import PipelinedServer

    pipeline = Pipeline(journal.engine, plan, instance_name(data_dir))
    try:
        server = PipelinedServer(
            journal, pipeline, sconfig, metrics=metrics, replication=replication
        )
        return server, pipeline
    except BaseException:
        pipeline.close()
        raise


def _snapshot_on_stop(server: Server, journal: Journal) -> None:
    """Write a snapshot of the state the log ends at, and wait for it."""
    import logging

    log = logging.getLogger("matchd")
    try:
        if not server.start_snapshot():
            log.warning("no snapshot on stop: the log is failing or one is being written")
            return
        info = journal.poll_snapshot(timeout_s=600.0)
    except Exception as exc:  # the log is whole: the next start replays it instead
        log.error("the snapshot on stop failed: %s", exc)
        return
    if info is not None:
        log.info("snapshot on stop: seq=%d path=%s", info.seq, info.path)


def _serve(args: argparse.Namespace) -> int:
    import logging

    import zmq

    from core.config import parse_config
    from core.errors import BrokenError, ConfigError
    from daemon.auth import check_exposure
    from daemon.stopping import stop_on_signals
    from persistence.journal import Journal, JournalConfig, journal_log_config
    from persistence.log import FsyncPolicy
    from persistence.log_errors import LogError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        text = args.config.read_text(encoding="utf-8")
        config = parse_config(text)
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        print(f"matchd: config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from daemon.alerting import start_alerts

    start_alerts(text, "matchd-serve")
    try:
        registry = _registry(_keys_path(args))
        check_exposure(args.endpoint, curve=registry is not None)
    except ConfigError as exc:
        print(f"matchd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if registry is not None:
        logging.getLogger("matchd").info("CURVE authentication: %s", registry.describe())
    try:
        plan = _plan(args, config)
        rconfig = _replication_config(args, text)
    except ConfigError as exc:
        print(f"matchd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.role == "standby" and plan is not None:
        print("matchd: a standby runs in one process; --workers applies once promoted")
        plan = None
    jconfig = JournalConfig(
        data_dir=args.data_dir,
        log=journal_log_config(fsync=FsyncPolicy(args.fsync)),
        # Sync replication: the drainer and the feed see only what the standbys hold.
        hold_readers=rconfig is not None and rconfig.mode == "sync" and args.role == "primary",
    )
    try:
        journal = Journal.open(config, jconfig)
    except LogError as exc:
        print(f"matchd: cannot recover {args.data_dir}: {exc}", file=sys.stderr)
        return 1
    should_stop = stop_on_signals()
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
    try:
        server, pipeline, replication = _start_server(
            args, journal, plan, rconfig, registry, metrics
        )
    except (ConfigError, BrokenError, LogError, zmq.ZMQError) as exc:
        # libzmq too old or without CURVE; workers; the epoch history; an endpoint
        metrics.close()
        journal.close()
        print(f"matchd: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else 1
    auth = "CURVE" if registry is not None else "no authentication"
    workers = "one process" if plan is None else f"{len(plan.groups)} pair workers"
    role = "" if replication is None else f", {replication.role} of epoch {replication.epoch}"
    print(
        f"matchd: serving {server.endpoint} ({auth}, {workers}{role}), data in {args.data_dir}",
        flush=True,
    )
    try:
        code = _serve_until_stopped(server, journal, should_stop, args.snapshot_on_stop)
    finally:
        server.close()
        if replication is not None:
            replication.close()
        if pipeline is not None:
            pipeline.close()
        metrics.close()
        journal.close()
    print("matchd: stopped", flush=True)
    return code


def _start_server(
    args: argparse.Namespace,
    journal: Journal,
    plan: PipelineConfig | None,
    rconfig: ReplicationConfig | None,
    registry: KeyRegistry | None,
    metrics: ServerMetrics,
) -> tuple[Server, Pipeline | None, Replication | None]:
    """The server (and its workers) in the replication role asked for."""
    from daemon.server import ServerConfig

    replication = None
    if rconfig is not None:
        from daemon.replication import Replication

        replication = Replication(
            journal, rconfig, role=args.role, primary=args.primary, auth=registry
        )
    try:
        sconfig = ServerConfig(endpoint=args.endpoint, auth=registry)
        server, pipeline = _make_server(journal, sconfig, plan, metrics, args.data_dir, replication)
    except BaseException:
        if replication is not None:
            replication.close()
        raise
    return server, pipeline, replication


def _serve_until_stopped(
    server: Server, journal: Journal, should_stop: Callable[[], bool], snapshot: bool
) -> int:
    """Serve; on the way out stop intake, finish what is in flight, and (``snapshot``)
    write a snapshot. 1 if a pair worker died (the supervisor restarts us)."""
    import logging

    from core.errors import BrokenError

    try:
        server.serve(should_stop)
    except BrokenError as exc:  # a pair worker died: restart and recover
        logging.getLogger("matchd").critical("stopping: %s", exc)
        return 1
    server.close()  # intake stops; what was in flight is finished and answered
    if snapshot:
        _snapshot_on_stop(server, journal)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
