"""How ``matchd-loadgen`` reaches a server: one ``Driver`` per transport, each turning a
ViaBTC call (``method``, ``params``) into an ``Outcome``.

- ``HttpDriver``: ViaBTC's HTTP JSON-RPC (matchd's ``[http]`` gateway or a ViaBTC
  accesshttp) over a pool of keep-alive connections, one request at a time on each
  (``tools.raw_http``: no task or future per request beyond the caller's).
- ``ZmqDriver``: matchd's ZeroMQ order entry, with the gateway's own code in this
  process (``daemon.viabtc_methods.ViabtcMethods`` over an ``EngineLink``): orders go
  as binary command records, coalesced per event-loop turn, and the readhistory
  methods query MariaDB directly, as a gateway worker does. It reads the server's
  config for its markets (``--config``).

An ``Outcome``'s ``error`` is None on success, else a short key counted in the report:
the ViaBTC error code (``"10"``), ``"http 500"``, ``"timeout"``, ``"engine down"``, or
how the connection failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import msgspec

from tools.raw_http import HttpClientProtocol, HttpFailure, Target


class Outcome(NamedTuple):
    """A call's ``result`` (None unless ``error`` is None) and its ``error`` key."""

    result: Any
    error: str | None


class Driver(Protocol):
    """What a generator process sends its calls through."""

    async def start(self) -> None:
        """Connect (raises ``DriverError`` when the server cannot be used)."""

    async def call(self, method: str, params: list[Any]) -> Outcome:
        """ViaBTC's answer to ``method(*params)``; never raises for a failed call."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""


class DriverError(Exception):
    """The server cannot be driven (not there, wrong markets, bad address)."""


class _Reply(msgspec.Struct):
    error: Any = None
    result: Any = None


_decode_reply = msgspec.json.Decoder(_Reply).decode
_encode = msgspec.json.Encoder().encode


def error_key(error: Any) -> str:
    """The report key of a JSON-RPC ``error`` member: its code, or ``"bad error"``."""
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return str(error["code"])
    return "bad error"


def outcome_of(status: int, body: bytes) -> Outcome:
    """The outcome of one HTTP response to a JSON-RPC request."""
    try:
        reply = _decode_reply(body) if body else None
    except msgspec.DecodeError:
        reply = None
    if reply is not None and reply.error is not None:
        return Outcome(None, error_key(reply.error))
    if status != 200:
        return Outcome(None, f"http {status}")
    if reply is None:
        return Outcome(None, "bad reply")
    return Outcome(reply.result, None)


class _HttpConnection:
    """One keep-alive connection and the request it waits for (the Listener)."""

    def __init__(self) -> None:
        self.protocol: HttpClientProtocol | None = None
        self.waiting: asyncio.Future[tuple[int, bytes]] | None = None

    def response(self, status: int, body: bytes, close: bool) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result((status, body))

    def failed(self, kind: str) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(HttpFailure(kind))


class HttpDriver:
    """ViaBTC's JSON-RPC at ``url`` over ``connections`` keep-alive connections; a
    call waits for an idle one. A request unanswered after ``timeout_s`` fails as
    ``"timeout"`` and its connection is dropped (a new one opens for the next)."""

    def __init__(self, url: str, *, connections: int = 16, timeout_s: float = 10.0) -> None:
        if connections < 1:
            raise ValueError(f"connections must be >= 1, got {connections}")
        try:
            self.target = Target.of(url)
        except ValueError as exc:
            raise DriverError(str(exc)) from None
        self.url = url
        self.timeout_s = timeout_s
        self._idle: asyncio.Queue[_HttpConnection] = asyncio.Queue()
        self._all = [_HttpConnection() for _ in range(connections)]
        for conn in self._all:
            self._idle.put_nowait(conn)
        self._ids = itertools.count(1)

    async def start(self) -> None:
        """Open every connection (so that no call of the run pays for one) and ask
        market.list once."""
        try:
            await asyncio.gather(*(self._open(conn) for conn in self._all))
        except HttpFailure as exc:
            raise DriverError(f"{self.url}: {exc.kind}") from None
        outcome = await self.call("market.list", [])
        if outcome.error is not None and not outcome.error.isdigit():
            raise DriverError(f"{self.url} does not answer JSON-RPC: {outcome.error}")

    async def call(self, method: str, params: list[Any]) -> Outcome:
        body = _encode({"method": method, "params": params, "id": next(self._ids)})
        conn = await self._idle.get()
        try:
            status, data = await self._exchange(conn, self.target.request(body))
        except HttpFailure as exc:
            return Outcome(None, exc.kind)
        finally:
            self._idle.put_nowait(conn)
        return outcome_of(status, data)

    async def _exchange(self, conn: _HttpConnection, payload: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        protocol = conn.protocol
        if protocol is None or protocol.closed is not None:
            protocol = await self._open(conn)
        conn.waiting = loop.create_future()
        protocol.send(payload)
        timer = loop.call_later(self.timeout_s, protocol.fail, "timeout")
        try:
            return await conn.waiting
        finally:
            timer.cancel()
            conn.waiting = None

    async def _open(self, conn: _HttpConnection) -> HttpClientProtocol:
        try:
            _, protocol = await asyncio.get_running_loop().create_connection(
                lambda: HttpClientProtocol(conn), self.target.host, self.target.port
            )
        except OSError as exc:
            raise HttpFailure(f"connect: {type(exc).__name__}") from None
        conn.protocol = protocol
        return protocol

    async def aclose(self) -> None:
        for conn in self._all:
            protocol = conn.protocol
            if protocol is not None and protocol.closed is None:
                protocol.fail("closed")


class ZmqDriver:
    """matchd's ZeroMQ order entry at ``endpoint`` (default: the ``[http]`` table's
    engine in ``config``), through the gateway's methods run in this process."""

    def __init__(self, config: Path, endpoint: str | None = None, *, timeout_s: float = 10.0):
        self.config_path = config
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._backends: Any = None

    async def start(self) -> None:
        from core.errors import ConfigError
        from daemon.gateway_process import build_backends, read_gateway_settings

        try:
            settings = read_gateway_settings(self.config_path)
        except ConfigError as exc:
            raise DriverError(f"config {self.config_path}: {exc}") from None
        endpoint = self.endpoint or (settings.http.engine if settings.http is not None else None)
        if endpoint is None:
            raise DriverError(f"{self.config_path} has no [http] table: give the endpoint")
        self.endpoint = endpoint
        self._backends = build_backends(
            settings.text, settings.engine, endpoint, self.timeout_s, settings.curve
        )
        methods = self._backends.methods
        await methods.engine.start()
        if not await methods.engine.watch.wait_connected(self.timeout_s):
            await self.aclose()
            raise DriverError(f"no engine at {endpoint} within {self.timeout_s} s")
        why = await methods.check_engine()
        if why is not None:
            await self.aclose()
            raise DriverError(f"{why}: is the server run with {self.config_path}?")

    async def call(self, method: str, params: list[Any]) -> Outcome:
        from daemon.gateway_links import BackendDown, BackendError, BackendTimeout

        try:
            answer = await self._backends.methods.call(method, params)
        except BackendTimeout:
            return Outcome(None, "timeout")
        except BackendDown:
            return Outcome(None, "engine down")
        except BackendError as exc:
            return Outcome(None, type(exc).__name__)
        if answer.error is not None:
            return Outcome(None, error_key(answer.error))
        return Outcome(answer.result_value(), None)

    async def aclose(self) -> None:
        if self._backends is not None:
            backends, self._backends = self._backends, None
            with contextlib.suppress(Exception):
                await backends.aclose()


def make_driver(transport: str, *, url: str, config: Path, engine: str | None,
                connections: int, timeout_s: float) -> Driver:  # fmt: skip
    """The driver of ``transport`` ("http" or "zmq")."""
    if transport == "http":
        return HttpDriver(url, connections=connections, timeout_s=timeout_s)
    if transport == "zmq":
        return ZmqDriver(config, engine, timeout_s=timeout_s)
    raise ValueError(f"unknown transport {transport!r}: http or zmq")
