"""The access gateways' settings: the ``[http]`` and ``[ws]`` tables of the config
(docs/gateways.md, "Settings").

``matchd run`` starts the HTTP JSON-RPC gateway when ``[http]`` is in the config and
the WebSocket gateway when ``[ws]`` is, each as ``workers`` processes sharing one port
(SO_REUSEPORT). Every mistake is a ``ConfigError`` naming the table and the key.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Final, NoReturn

import msgspec

from core.errors import ConfigError
from ipc.client_common import CurveKeys
from persistence.history_config import convert_table, optional_table

_BIND_RE: Final = re.compile(r"(?P<host>[A-Za-z0-9.:\[\]-]{1,255}):(?P<port>[0-9]{1,5})")
_ENDPOINT_RE: Final = re.compile(r"(tcp|ipc|inproc)://\S{1,200}")
_URL_RE: Final = re.compile(r"https?://\S{1,2000}")
MAX_WORKERS: Final = 64
DEFAULT_ENGINE: Final = "tcp://127.0.0.1:7316"


def _fail(table: str, message: str) -> NoReturn:
    raise ConfigError(f"[{table}] {message}")


def _check_bind(table: str, bind: str) -> None:
    match = _BIND_RE.fullmatch(bind)
    if match is None or not 0 <= int(match["port"]) <= 65535:
        _fail(table, f'bind = {bind!r} must be HOST:PORT, e.g. "127.0.0.1:8080"')


def _check_range(table: str, key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        _fail(table, f"{key} = {value} is outside {low}..{high}")


def _check_seconds(table: str, key: str, value: float, high: float = 3600.0) -> None:
    if not (math.isfinite(value) and 0 < value <= high):
        _fail(table, f"{key} = {value} must be more than 0 and at most {high:g} s")


def bind_address(bind: str) -> tuple[str, int]:
    """``(host, port)`` of a checked ``bind``; ``[::1]`` loses its brackets."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[http]``: ViaBTC's HTTP JSON-RPC (accesshttp).

    Parameters
    ----------
    bind
        ``HOST:PORT`` every worker listens on (SO_REUSEPORT).
    workers
        Worker processes.
    engine
        The engine's ZeroMQ order entry (``matchd run`` passes its own); several,
        separated by commas (a primary and its standbys): requests go to whichever
        is the primary (``daemon.gateway_primary``).
    timeout_s
        A backend (engine, feed, history) that has not answered this long: HTTP 504,
        code 5 ``service timeout`` (ViaBTC's ``timeout``).
    max_body_bytes
        Largest request body; a larger one is answered 413.
    max_batch
        Most requests in one JSON-RPC batch (a JSON array); more is answered 413.
    max_connections
        Open connections per worker; one more is answered 503 and closed.
    rate_per_ip, burst_per_ip
        Requests a second one client address may make (each request of a batch
        counts), and the burst above that; beyond: 429, code 3. 0 turns it off.
    max_ips
        Client addresses whose rate is tracked at once (bounded memory); beyond, the
        one seen longest ago is forgotten.
    keep_alive_s
        An idle keep-alive connection is closed after this long.
    read_timeout_s
        A request body must arrive within this long; else 408 and the connection is
        closed (a client that trickles its body cannot hold a connection).
    catalog_refresh_s
        A request naming an asset or a market the worker does not know makes it ask
        the engine for its catalog (assets and markets added at run time), at most
        once per this long: more unknown names within it are answered as unknown
        without asking.
    """

    bind: str = "127.0.0.1:8080"
    workers: int = 1
    engine: str = DEFAULT_ENGINE
    timeout_s: float = 1.0
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 1000
    max_connections: int = 10_000
    rate_per_ip: int = 100_000
    burst_per_ip: int = 200_000
    max_ips: int = 65_536
    keep_alive_s: float = 75.0
    read_timeout_s: float = 10.0
    catalog_refresh_s: float = 1.0

    def __post_init__(self) -> None:
        _check_common("http", self)


class WsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[ws]``: ViaBTC's WebSocket protocol (accessws).

    Parameters
    ----------
    bind, workers, engine, timeout_s, max_connections, rate_per_ip, burst_per_ip, max_ips
        As for ``[http]`` (a request is one JSON-RPC message; a refused connection
        gets HTTP 503 before the upgrade).
    catalog_refresh_s
        As for ``[http]`` (a query or a subscription naming an unknown market or
        asset).
    auth_url
        ``server.auth`` asks it (GET, ``Authorization: <token>``) for the user id:
        ``{"code": 0, "data": {"user_id": N}}``. Empty: ``server.auth`` is refused.
    sign_url
        ``server.sign`` asks it likewise (``?access_id=..&tonce=..``). Empty: refused.
    max_frame_bytes
        Largest message a client may send; a larger one closes the connection (1009).
    max_subscriptions
        Markets, assets and depth views one connection may subscribe to, summed over
        every kind.
    send_queue
        Messages waiting to be sent to one connection; a client that lets more pile
        up is disconnected (1008).
    ping_interval_s
        The server pings every connection this often; one that has not answered the
        previous ping is closed and its subscriptions freed.
    depth_limit
        The ``limit`` values ``depth.subscribe`` accepts (ViaBTC's ``depth_limit``).
    depth_merge
        The ``interval`` values ``depth.subscribe`` accepts; each must be published
        by the feed (``[feed] depth_merge``).
    protocol
        If the client offers ``Sec-WebSocket-Protocol``, it must include this one.
    feed_pub
        The feed's publisher the subscriptions come from; empty: ``[feed] pub``.
    allowed_origins
        Web origins (``https://host[:port]``) whose pages may open a connection: a
        handshake whose ``Origin`` is not one of them gets HTTP 403 (a page of another
        site cannot use a visitor's browser to reach the gateway). A client that sends
        no ``Origin`` (not a browser) is not affected. Empty: any origin (ViaBTC).
    """

    bind: str = "127.0.0.1:8090"
    workers: int = 1
    engine: str = DEFAULT_ENGINE
    timeout_s: float = 1.0
    auth_url: str = ""
    sign_url: str = ""
    max_connections: int = 10_000
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 256
    send_queue: int = 1024
    ping_interval_s: float = 30.0
    depth_limit: tuple[int, ...] = (1, 5, 10, 20, 30, 50, 100)
    depth_merge: tuple[str, ...] = ("0",)
    protocol: str = "chat"
    feed_pub: str = ""
    allowed_origins: tuple[str, ...] = ()
    rate_per_ip: int = 100_000
    burst_per_ip: int = 200_000
    max_ips: int = 65_536
    catalog_refresh_s: float = 1.0

    def __post_init__(self) -> None:
        _check_common("ws", self)
        for key in ("auth_url", "sign_url"):
            value = getattr(self, key)
            if value and not _URL_RE.fullmatch(value):
                _fail("ws", f"{key} = {value!r} must be an http:// or https:// URL")
        _check_range("ws", "max_frame_bytes", self.max_frame_bytes, 256, 64 * 1024 * 1024)
        _check_range("ws", "max_subscriptions", self.max_subscriptions, 1, 100_000)
        _check_range("ws", "send_queue", self.send_queue, 1, 1_000_000)
        _check_seconds("ws", "ping_interval_s", self.ping_interval_s)
        if not self.depth_limit or any(not 1 <= n <= 101 for n in self.depth_limit):
            _fail("ws", f"depth_limit = {list(self.depth_limit)} must list limits in 1..101")
        if not self.depth_merge:
            _fail("ws", "depth_merge must list at least one interval")
        if not self.protocol.isprintable() or not 1 <= len(self.protocol) <= 64:
            _fail("ws", f"protocol = {self.protocol!r} must be 1 to 64 printable characters")
        if self.feed_pub and not _ENDPOINT_RE.fullmatch(self.feed_pub):
            _fail("ws", f"feed_pub = {self.feed_pub!r} is not a ZeroMQ endpoint (tcp://HOST:PORT)")
        for origin in self.allowed_origins:
            if not _ORIGIN_RE.fullmatch(origin):
                _fail("ws", f"allowed_origins: {origin!r} is not an origin (https://host[:port])")


#: A web origin as browsers send it: scheme, host and an optional port, no path.
_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


def _check_common(table: str, config: HttpConfig | WsConfig) -> None:
    _check_bind(table, config.bind)
    _check_range(table, "workers", config.workers, 1, MAX_WORKERS)
    if not _ENDPOINT_RE.fullmatch(config.engine):
        _fail(table, f"engine = {config.engine!r} is not a ZeroMQ endpoint (tcp://HOST:PORT)")
    _check_seconds(table, "timeout_s", config.timeout_s, 60.0)
    _check_range(table, "max_connections", config.max_connections, 1, 1_000_000)
    _check_range(table, "rate_per_ip", config.rate_per_ip, 0, 10**9)
    _check_range(table, "burst_per_ip", config.burst_per_ip, 1, 10**9)
    _check_range(table, "max_ips", config.max_ips, 1, 10_000_000)
    _check_seconds(table, "catalog_refresh_s", config.catalog_refresh_s)
    if isinstance(config, HttpConfig):
        _check_range(table, "max_body_bytes", config.max_body_bytes, 1024, 64 * 1024 * 1024)
        _check_range(table, "max_batch", config.max_batch, 1, 100_000)
        _check_seconds(table, "keep_alive_s", config.keep_alive_s, 86400.0)
        _check_seconds(table, "read_timeout_s", config.read_timeout_s, 600.0)


def load_gateway_config(text: str) -> tuple[HttpConfig | None, WsConfig | None]:
    """``([http], [ws])`` of the TOML config ``text``; None for a missing table."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    return optional_table(raw, "http", HttpConfig, _KINDS), optional_table(
        raw, "ws", WsConfig, _KINDS
    )


_KINDS: Final = {
    "bind": 'a string "HOST:PORT"',
    "workers": "an integer",
    "engine": "a string",
    "timeout_s": "a number of seconds",
    "max_body_bytes": "an integer",
    "max_batch": "an integer",
    "max_connections": "an integer",
    "rate_per_ip": "an integer",
    "burst_per_ip": "an integer",
    "max_ips": "an integer",
    "keep_alive_s": "a number of seconds",
    "read_timeout_s": "a number of seconds",
    "catalog_refresh_s": "a number of seconds",
    "auth_url": "a string",
    "sign_url": "a string",
    "max_frame_bytes": "an integer",
    "max_subscriptions": "an integer",
    "send_queue": "an integer",
    "ping_interval_s": "a number of seconds",
    "depth_limit": "a list of integers",
    "depth_merge": "a list of decimal strings",
    "protocol": "a string",
    "feed_pub": "a string",
    "secret_key_file": "a string",
    "server_key_file": "a string",
}


class GatewayKeysConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[gateway]``: the CURVE keys the gateways connect to the engine with, when its
    order entry has a key registry (``--keys``; docs/protocol.md). Paths relative to
    the config file's directory.

    Parameters
    ----------
    secret_key_file
        The gateways' ``NAME.key_secret`` (mode 0600); its public key must be in the
        registry with role ``admin`` (the gateways act for every user and call
        balance.update).
    server_key_file
        The engine's public key file (``server.key``).
    """

    secret_key_file: str
    server_key_file: str


def load_gateway_keys(text: str, base_dir: Path) -> CurveKeys | None:
    """The gateways' CURVE keys from ``[gateway]`` of the TOML ``text``, or None."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    if "gateway" not in raw:
        return None
    table = raw["gateway"]
    if not isinstance(table, dict):
        _fail("gateway", "must be a table")
    keys = convert_table(table, GatewayKeysConfig, "[gateway]", _KINDS)
    secret = base_dir / keys.secret_key_file
    server = base_dir / keys.server_key_file
    try:
        if secret.stat().st_mode & 0o077:
            _fail("gateway", f"secret_key_file {secret} may be read by others: chmod 600 it")
        return CurveKeys.from_files(secret, server)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[gateway] {exc}") from exc
