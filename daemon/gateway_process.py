"""``matchd http`` and ``matchd ws``: one worker process of an access gateway.

The composition root of a gateway worker: read the config (the engine's markets and
assets, ``[http]`` or ``[ws]``, ``[history]``, ``[feed]``), connect to the engine, the
feed and MySQL, check that the engine's markets and assets begin with the config's
(and take those added at run time: ``daemon.gateway_catalog``), listen
(SO_REUSEPORT: ``workers`` processes share the port) and serve on uvloop until
SIGTERM or SIGINT, then close the listener and let the requests in flight finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from core.config import EngineConfig
from ipc.client_common import CurveKeys

logger = logging.getLogger("matchd.gateway")

EXIT_USAGE: Final = 2
#: How long a starting worker waits for the engine before serving anyway (its
#: requests then get ViaBTC's "engine down" answer until the engine is there).
CONNECT_WAIT_S: Final = 5.0


def add_gateway_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``matchd http`` and ``matchd ws``."""
    for name, what in (("http", "HTTP JSON-RPC ([http])"), ("ws", "WebSocket ([ws])")):
        parser = commands.add_parser(name, help=f"serve ViaBTC's {what} as one worker")
        parser.add_argument("--config", type=Path, required=True, metavar="PATH")
        parser.add_argument(
            "--engine", default=None, metavar="ENDPOINT",
            help="the engine's order entry (default: the table's engine setting); several, "
            "separated by commas: a primary and its standbys, requests go to the primary",
        )  # fmt: skip


def gateway_argv(kind: str, config: Path, engine: str) -> list[str]:
    """The command line of a gateway worker child (``kind`` "http" or "ws")."""
    return [
        sys.executable, "-m", "daemon.cli", kind, "--config", str(config), "--engine", engine,
    ]  # fmt: skip


@dataclass
class Backends:
    """What a worker's methods run over, and how to close it."""

    methods: Any  # ViabtcMethods
    closers: list[Any] = field(default_factory=list)
    executor: ThreadPoolExecutor | None = None

    async def aclose(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                await closer()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def build_backends(
    text: str,
    engine_config: EngineConfig,
    endpoint: str,
    timeout_s: float,
    curve: CurveKeys | None = None,
    catalog_refresh_s: float = 1.0,
) -> Backends:
    """The links and the methods of a worker (call inside the event loop); ``curve``:
    the keys to connect to the engine with (``[gateway]``); ``catalog_refresh_s``: how
    often at most the worker asks the engine for its catalog (``[http]``/``[ws]``)."""
    from daemon.feed_config import load_feed_config
    from daemon.gateway_links import EngineLink, FeedLink
    from daemon.gateway_primary import PrimaryLink
    from daemon.viabtc_methods import ViabtcMethods
    from persistence.history_config import load_history_config
    from persistence.history_queries import HistoryNotConfigured, HistoryQueries, HistoryReader

    history_config = load_history_config(text)
    feed_config, _ = load_feed_config(text)
    history: HistoryReader
    pool = 1
    if history_config is None:
        history = HistoryNotConfigured()
    else:
        from persistence import history_db

        def connect() -> Any:
            return history_db.connect(history_config)

        pool = history_config.query_pool
        history = HistoryQueries(
            connect, engine_config, pool_size=pool, queue=history_config.query_queue,
            timeout_s=history_config.query_timeout_s,
        )  # fmt: skip
    executor = ThreadPoolExecutor(max_workers=pool, thread_name_prefix="history")
    engine: EngineLink | PrimaryLink
    if "," in endpoint:  # a primary and its standbys: follow whichever is primary
        engine = PrimaryLink(endpoint.split(","), timeout_s=timeout_s, curve=curve)
    else:
        engine = EngineLink(endpoint, timeout_s=timeout_s, curve=curve)
    feed = FeedLink(feed_config.rpc, timeout_s=timeout_s) if feed_config is not None else None
    methods = ViabtcMethods(
        engine_config, engine, feed, history, executor, catalog_refresh_s=catalog_refresh_s
    )
    backends = Backends(methods, executor=executor)
    backends.closers.append(engine.aclose)
    if feed is not None:
        backends.closers.append(feed.aclose)

    async def close_history() -> None:
        history.close()

    backends.closers.append(close_history)
    return backends


@dataclass(frozen=True)
class GatewaySettings:
    """What a gateway reads from its config file: the text (for ``build_backends``), the
    engine's markets and assets, ``[http]`` and ``[ws]`` (None when absent) and the
    ``[gateway]`` CURVE keys to reach the engine with."""

    text: str
    engine: EngineConfig
    http: Any
    ws: Any
    curve: CurveKeys | None


def read_gateway_settings(path: Path) -> GatewaySettings:
    """The settings in the config at ``path``; ``ConfigError`` says what is wrong."""
    from core.config import parse_config
    from core.errors import ConfigError
    from daemon.gateway_config import load_gateway_config, load_gateway_keys

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(exc)) from None
    engine_config = parse_config(text)
    http, ws = load_gateway_config(text)
    return GatewaySettings(text, engine_config, http, ws, load_gateway_keys(text, path.parent))


def run_gateway(args: argparse.Namespace) -> int:
    """Run one worker of ``args.command`` ("http" or "ws") until SIGTERM or SIGINT."""
    from core.errors import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = read_gateway_settings(args.config)
    except ConfigError as exc:
        print(f"matchd: config {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text, engine_config, curve = settings.text, settings.engine, settings.curve
    table = settings.http if args.command == "http" else settings.ws
    if table is None:
        print(f"matchd: {args.config} has no [{args.command}] table", file=sys.stderr)
        return EXIT_USAGE
    from daemon.alerting import start_alerts

    start_alerts(text, f"matchd-{args.command}")
    import uvloop

    return uvloop.run(_serve(args, text, engine_config, table, curve))


async def _serve(
    args: argparse.Namespace,
    text: str,
    engine_config: EngineConfig,
    table: Any,
    curve: CurveKeys | None,
) -> int:
    from daemon.http_gateway import HttpGateway, listening_socket, start_http

    endpoint = args.engine or table.engine
    backends = build_backends(
        text, engine_config, endpoint, table.timeout_s, curve, table.catalog_refresh_s
    )
    methods = backends.methods
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await methods.engine.start()
        if methods.feed is not None:
            await methods.feed.start()
        if await methods.engine.watch.wait_connected(CONNECT_WAIT_S):
            why = await methods.check_engine()
            if why is not None:
                print(f"matchd: {args.command}: {why}: is it run with {args.config}?",
                      file=sys.stderr)  # fmt: skip
                return EXIT_USAGE
        else:
            logger.warning("the engine at %s is not there yet; serving anyway", endpoint)
        try:
            sock = listening_socket(table.bind)
        except OSError as exc:
            print(f"matchd: {args.command}: cannot listen on {table.bind}: {exc}", file=sys.stderr)
            return 1
        if args.command == "http":
            server, http = await start_http(HttpGateway(table, methods), sock)
            print(f"matchd: HTTP JSON-RPC on http://{table.bind}/ (engine {endpoint})", flush=True)
            await stop.wait()
            server.close()
            await http.shutdown(timeout=table.timeout_s + 1)
        else:
            from daemon.feed_config import load_feed_config
            from daemon.ws_gateway import serve_ws

            feed_config, _ = load_feed_config(text)
            feed_pub = feed_config.pub if feed_config is not None else None
            await serve_ws(table, methods, sock, stop, feed_pub=feed_pub)
        print(f"matchd: {args.command} worker stopped", flush=True)
        return 0
    finally:
        await backends.aclose()
