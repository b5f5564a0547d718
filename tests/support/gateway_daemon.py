"""A whole ``matchd run`` for gateway tests: the server, the drainer into a fresh
MariaDB database, the feed writing Redis (db ``REDIS_DB``), and the HTTP and WebSocket
gateways on free loopback ports.

``running_daemon(tmp_path)`` starts it, waits until the HTTP gateway answers with the
engine and the feed connected, yields a ``Daemon`` and stops it (SIGTERM,
then SIGKILL) and drops the database. The engine config is
``tests.support.scenario.config_text()``: markets BTC_USDT (0) and ETH_BTC (1),
assets BTC, ETH (prec 10, shown 10) and USDT (prec 8).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from daemon import cli
from tests.support.mysql import TestDatabase, fresh_database
from tests.support.scenario import config_text

ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = 13


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    """Where the running daemon answers."""

    tmp: Path
    config: Path
    data: Path
    endpoint: str
    http_url: str
    ws_url: str
    feed_rpc: str
    feed_pub: str
    db: TestDatabase | None
    process: subprocess.Popen[bytes]

    def post(
        self, body: Any, *, raw: bytes | None = None, timeout_s: float = 10.0
    ) -> tuple[int, bytes]:
        """POST ``body`` as JSON (or the ``raw`` bytes): ``(status, body)``."""
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(self.http_url, data=data, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def rpc(self, method: str, *params: Any, rid: Any = 1) -> dict[str, Any]:
        """The decoded envelope of ``method(*params)``; fails unless HTTP 200."""
        status, body = self.post({"method": method, "params": list(params), "id": rid})
        assert status == 200, (status, body)
        answer: dict[str, Any] = json.loads(body)
        return answer

    def ok(self, method: str, *params: Any) -> Any:
        """The result of ``method(*params)``; fails on an error."""
        answer = self.rpc(method, *params)
        assert answer["error"] is None, answer
        return answer["result"]


def daemon_toml(
    tmp: Path,
    http_port: int,
    ws_port: int,
    db: TestDatabase | None,
    *,
    http: str = "",
    ws: str | None = "",
    feed: str = "",
    room: str = "",
) -> str:
    """The config text of a gateway test daemon (``ws`` None: no ``[ws]``; ``room``:
    more ``[engine]`` settings, the catalog's room: ``max_assets = 5`` ...)."""
    text = config_text(max_orders=20_000, max_levels=1000, max_users=10_000)
    text = text.replace("[engine]\n", "[engine]\n" + room, 1)
    text += (
        f'\n[feed]\npub = "ipc://{tmp}/pub.sock"\nrpc = "ipc://{tmp}/rpc.sock"\n'
        f"state_interval_s = 0.5\ndepth_interval_s = 0.05\nkline_interval_s = 0.05\n{feed}"
        f"\n[redis]\ndb = {REDIS_DB}\n"
        f'\n[http]\nbind = "127.0.0.1:{http_port}"\n{http}'
    )
    if ws is not None:
        text += f'\n[ws]\nbind = "127.0.0.1:{ws_port}"\n{ws}'

    if db is not None:
        text += db.history_toml(batch_interval_s=0.05)
    return text


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: S110 -- not up yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


@contextmanager
def running_daemon(
    tmp: Path,
    *,
    history: bool = True,
    http: str = "",
    ws: str | None = "",
    feed: str = "",
    extra: str = "",
    run_args: tuple[str, ...] = (),
    room: str = "",
) -> Iterator[Daemon]:
    """Start ``matchd run`` with everything (see the module docstring); ``http``,
    ``ws`` and ``feed`` are more settings of those tables (``ws`` None: no WebSocket
    gateway), ``extra`` more TOML, ``run_args`` more arguments of ``matchd run``,
    ``room`` more ``[engine]`` settings (``daemon_toml``)."""
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    with fresh_database() if history else _no_database() as db:
        http_port, ws_port = free_port(), free_port()
        config = tmp / "matchd.toml"
        text = daemon_toml(tmp, http_port, ws_port, db, http=http, ws=ws, feed=feed, room=room)
        config.write_text(text + extra)
        if db is not None:
            assert cli.main(["db", "migrate", "--config", str(config)]) == 0
        data = tmp / "data"
        endpoint = f"ipc://{tmp}/orders.sock"
        process = subprocess.Popen(  # noqa: S603 -- our own command
            [
                sys.executable, "-m", "daemon.cli", "run", "--config", str(config),
                "--data-dir", str(data), "--endpoint", endpoint, "--metrics", "", *run_args,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        daemon = Daemon(
            tmp, config, data, endpoint, f"http://127.0.0.1:{http_port}/",
            f"ws://127.0.0.1:{ws_port}/", f"ipc://{tmp}/rpc.sock", f"ipc://{tmp}/pub.sock",
            db, process,
        )  # fmt: skip
        try:
            summary = {"method": "asset.summary", "params": [], "id": 0}
            wait_until(lambda: daemon.post(summary)[0] == 200, 300, "the HTTP gateway")
            wait_until(lambda: _feed_answers(daemon), 120, "the feed")
            yield daemon
        finally:
            stop(process)


def _feed_answers(daemon: Daemon) -> bool:
    """The gateway reaches the feed (market.last answers without an error)."""
    status, body = daemon.post({"method": "market.last", "params": ["BTC_USDT"], "id": 0})
    return status == 200 and json.loads(body)["error"] is None


@contextmanager
def _no_database() -> Iterator[None]:
    yield None


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
