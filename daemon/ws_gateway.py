"""ViaBTC's WebSocket protocol (accessws) on aiohttp: ``matchd ws`` (docs/websocket.md).

A client sends ``{"method", "params": [...], "id"}`` text messages and gets
``{"error", "result", "id"}`` replies and ``{"method": "<x>.update", "params",
"id": null}`` notifications (shared/reference/viabtc-api.md §6). The methods:

* ``server.ping``, ``server.time``, ``server.auth`` and ``server.sign``
  (``daemon.ws_auth``);
* the queries ``kline``, ``depth``, ``price``, ``state``, ``today``, ``deals``
  ``.query`` and, for an authenticated session, ``order.query``, ``order.history``,
  ``asset.query`` and ``asset.history``: ViaBTC's JSON-RPC methods
  (``daemon.viabtc_methods``, ``daemon.ws_params.QUERIES``);
* ``<kind>.subscribe`` and ``<kind>.unsubscribe`` for the eight kinds, each
  subscribe replacing the session's earlier one of its kind; the notifications come
  from the feed's publisher (``daemon.ws_hub`` and its channels).

Beyond ViaBTC (docs/compat.md, "WebSocket"): an unknown method is answered code 4; a
message that is not a request is answered code 1 and the connection closed (1007;
1003 for a binary one); ping/pong heartbeats close a dead peer; a client that lets
``send_queue`` messages pile up is closed (1008), a message over ``max_frame_bytes``
too (1009); a worker holds at most ``max_connections`` (503 before the upgrade), a
connection at most ``max_subscriptions``, a client address at most ``rate_per_ip``
messages a second (code 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from core.arguments import ArgumentError
from daemon.gateway_config import WsConfig
from daemon.gateway_links import BackendDown, BackendError, BackendTimeout
from daemon.http_gateway import IpRateLimiter, envelope, serve_limited
from daemon.viabtc_methods import (
    CODE_INTERNAL_ERROR,
    CODE_INVALID_ARGUMENT,
    CODE_SERVICE_TIMEOUT,
    CODE_SERVICE_UNAVAILABLE,
    NOT_FOUND,
    Answer,
    ViabtcMethods,
    error_answer,
)
from daemon.ws_auth import AuthError, AuthService
from daemon.ws_channels import DealsChannel, KlineChannel, TickerChannel, UserChannel
from daemon.ws_depth import DepthChannel
from daemon.ws_hub import Hub
from daemon.ws_params import (
    KINDS,
    QUERIES,
    USER_KINDS,
    SubscriptionKeys,
    auth_params,
    check_arity,
    sign_params,
)
from daemon.ws_session import CLOSE_GRACE_S, Session

logger = logging.getLogger("matchd.ws")

#: Requests of one connection answered at once; more wait (the client is not read).
MAX_IN_FLIGHT: Final = 64
CODE_REQUIRE_AUTH: Final = 6
_SUCCESS: Final = Answer(None, {"status": "success"})
_REQUIRE_AUTH: Final = error_answer(CODE_REQUIRE_AUTH, "require authentication")
_TIMEOUT: Final = error_answer(CODE_SERVICE_TIMEOUT, "service timeout")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder()


class _Malformed(Exception):
    """A message that is not a request; the connection is closed after the reply."""

    def __init__(self, message: str, rid: Any = None) -> None:
        super().__init__(message)
        self.rid = rid


def reply_text(answer: Answer, rid: Any) -> str:
    """The reply ``{"error", "result", "id"}`` of ``answer`` as JSON text."""
    return _encode(envelope(answer, rid)).decode()


def parse_request(text: str) -> tuple[str, list[Any], Any]:
    """``(method, params, id)`` of a request; ``_Malformed`` if it is not one."""
    try:
        request = _decode.decode(text)
    except (msgspec.DecodeError, RecursionError):
        raise _Malformed("invalid argument: the message is not JSON") from None
    if not isinstance(request, dict):
        raise _Malformed("invalid argument: a request is a JSON object")
    rid = request.get("id")
    method, params = request.get("method"), request.get("params")
    if not isinstance(method, str) or not isinstance(params, list) or "id" not in request:
        raise _Malformed(
            "invalid argument: a request has a string method, a params array and an id", rid
        )
    return method, params, rid


@dataclass
class WsStats:
    """Counters of one worker."""

    connections: int = 0  #: accepted (upgraded) so far
    requests: int = 0
    not_found: int = 0
    malformed: int = 0
    rate_limited: int = 0
    refused_connections: int = 0
    refused_origins: int = 0  #: handshakes from a web origin not allowed (403)
    overflowed: int = 0  #: closed for not reading (1008)
    backend_down: int = 0
    timeouts: int = 0


class WsGateway:
    """The connections of one worker (see the module docstring).

    Parameters
    ----------
    config
        The ``[ws]`` table.
    methods
        ViaBTC's methods over the engine, the feed and MySQL.
    hub
        The worker's subscriptions (its channels are added here).
    auth
        The ``auth_url`` and ``sign_url`` client.
    """

    def __init__(
        self, config: WsConfig, methods: ViabtcMethods, hub: Hub, auth: AuthService
    ) -> None:
        self.config = config
        self.methods = methods
        self.hub = hub
        self.auth = auth
        for channel in (TickerChannel, DealsChannel, KlineChannel, UserChannel, DepthChannel):
            hub.add(channel(hub))
        self.keys = SubscriptionKeys(methods.codec, config)
        self.limiter = IpRateLimiter(config.rate_per_ip, config.burst_per_ip, config.max_ips)
        self.stats = WsStats()
        self.sessions: set[Session] = set()
        self._origins = frozenset(o.lower() for o in config.allowed_origins)

    # ------------------------------------------------------------ connections

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Upgrade ``request`` and serve the connection until it ends."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(
            protocols=(self.config.protocol,), heartbeat=self.config.ping_interval_s,
            max_msg_size=self.config.max_frame_bytes, compress=False, timeout=CLOSE_GRACE_S,
        )  # fmt: skip
        await ws.prepare(request)
        self.stats.connections += 1
        session = Session(
            ws, request.remote or "?", self.config.send_queue, self._overflow, request.transport
        )
        self.sessions.add(session)
        session.start()
        try:
            close = await self._serve(session)
        finally:
            self.hub.drop(session)
            self.sessions.discard(session)
        if session.closer is not None:  # closed for not reading (_overflow)
            await session.closer
        elif close is not None:
            await session.flush(CLOSE_GRACE_S)
            await session.close(close[0], close[1], request.transport)
        else:
            await session.stop()
            if not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await ws.close()
        return ws

    def _refusal(self, request: web.BaseRequest) -> web.Response | None:
        """A 400 for a request that is not a WebSocket upgrade this server takes, a 403
        for one from a web page whose origin is not allowed (``allowed_origins``)."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=400, text="this is a WebSocket server (RFC 6455)\n")
        origin = request.headers.get("Origin")
        if origin is not None and self._origins and origin.lower() not in self._origins:
            self.stats.refused_origins += 1
            return web.Response(status=403, text=f"origin {origin[:200]!r} is not allowed\n")
        offered = request.headers.get("Sec-WebSocket-Protocol")
        if offered is not None:
            names = [name.strip() for name in offered.split(",")]
            if self.config.protocol not in names:
                return web.Response(
                    status=400,
                    text=f"Sec-WebSocket-Protocol must include {self.config.protocol!r}\n",
                )
        return None

    async def _serve(self, session: Session) -> tuple[int, str] | None:
        """Read requests until the connection ends; the close to send, if any."""
        ws = session.ws
        gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not session.overflowed:
                message = await ws.receive()
                if message.type == WSMsgType.TEXT:
                    close = await self._on_text(session, message.data, gate, tasks)
                    if close is not None:
                        return close
                elif message.type == WSMsgType.BINARY:
                    self.stats.malformed += 1
                    session.push(reply_text(error_answer(
                        CODE_INVALID_ARGUMENT, "invalid argument: requests are text messages"
                    ), None))  # fmt: skip
                    return WSCloseCode.UNSUPPORTED_DATA, "binary message"
                else:  # closed, closing, or an error (too large, no pong): aiohttp closed it
                    return None
            return None
        finally:
            for task in tasks:
                task.cancel()

    async def _on_text(
        self,
        session: Session,
        text: str,
        gate: asyncio.Semaphore,
        tasks: set[asyncio.Task[None]],
    ) -> tuple[int, str] | None:
        try:
            method, params, rid = parse_request(text)
        except _Malformed as exc:
            self.stats.malformed += 1
            session.push(reply_text(error_answer(CODE_INVALID_ARGUMENT, str(exc)), exc.rid))
            return WSCloseCode.INVALID_TEXT, "not a request"
        self.stats.requests += 1
        if not self.limiter.allow(session.ip):
            self.stats.rate_limited += 1
            session.push(reply_text(self._rate_limited(session.ip), rid))
            return None
        if method not in QUERIES:
            answer = await self._call(session, method, params, rid)
            if answer is not None:
                session.push(reply_text(answer, rid))
            return None
        await gate.acquire()
        task = asyncio.get_running_loop().create_task(
            self._query(session, method, params, rid, gate)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return None

    def _overflow(self, session: Session) -> None:
        self.stats.overflowed += 1
        logger.warning(
            "ws: %s does not read: %d messages wait; closing it (1008)",
            session.ip, session.queued,
        )  # fmt: skip
        session.closer = asyncio.get_running_loop().create_task(
            session.close(
                WSCloseCode.POLICY_VIOLATION,
                f"send queue full ({self.config.send_queue} messages): read faster",
                session.transport,
            )
        )

    def _rate_limited(self, ip: str) -> Answer:
        return error_answer(
            CODE_SERVICE_UNAVAILABLE,
            f"service unavailable: too many requests from {ip} (limit "
            f"{self.config.rate_per_ip}/s, burst {self.config.burst_per_ip})",
        )

    # ------------------------------------------------------------ methods

    async def _call(
        self, session: Session, method: str, params: list[Any], rid: Any
    ) -> Answer | None:
        """The answer of a method that is not a query (None: already sent). A
        subscription naming a market or an asset the catalog does not know makes it
        refresh (``GatewayCatalog.learnt``) and is checked once more."""
        kind, _, verb = method.rpartition(".")
        try:
            if kind in KINDS and verb in ("subscribe", "unsubscribe"):
                before = self.methods.config
                try:
                    return self._subscription(session, kind, verb, params, rid)
                except ArgumentError as exc:
                    if not await self.methods.catalog.learnt(exc.result, before):
                        raise
                return self._subscription(session, kind, verb, params, rid)
            handler = _SERVER_METHODS.get(method)
            if handler is None:
                self.stats.not_found += 1
                return NOT_FOUND
            return await handler(self, session, params)
        except ArgumentError as exc:
            return error_answer(CODE_INVALID_ARGUMENT, f"invalid argument: {exc}")

    def _subscription(
        self, session: Session, kind: str, verb: str, params: list[Any], rid: Any
    ) -> Answer | None:
        """Replace the subscription of ``kind``; the reply goes before the pushes."""
        if kind in USER_KINDS and not session.user:
            return _REQUIRE_AUTH
        if verb == "unsubscribe":
            self.hub.clear(session, kind)
            return _SUCCESS
        if not self.hub.available:
            return error_answer(
                CODE_SERVICE_UNAVAILABLE,
                "service unavailable: market data is not configured (no [feed] publisher)",
            )
        keys = self.keys.keys(kind, params, session.user)
        total = session.subscriptions() - len(session.subs.get(kind, ())) + len(keys)
        if total > self.config.max_subscriptions:
            return error_answer(
                CODE_INVALID_ARGUMENT,
                f"invalid argument: {total} subscriptions exceed the limit of "
                f"{self.config.max_subscriptions} per connection (max_subscriptions)",
            )
        session.push(reply_text(_SUCCESS, rid))
        self.hub.subscribe(session, kind, keys)
        return None

    async def _ping(self, session: Session, params: list[Any]) -> Answer:
        return Answer(None, "pong")

    async def _time(self, session: Session, params: list[Any]) -> Answer:
        return Answer(None, int(time.time()))

    async def _auth(self, session: Session, params: list[Any]) -> Answer:
        token, source = auth_params(params)
        return await self._authenticate(session, self.auth.auth(token), source)

    async def _sign(self, session: Session, params: list[Any]) -> Answer:
        access_id, authorisation, tonce = sign_params(params)
        return await self._authenticate(
            session, self.auth.sign(access_id, authorisation, tonce), "api"
        )

    async def _authenticate(self, session: Session, ask: Awaitable[int], source: str) -> Answer:
        try:
            user = await ask
        except AuthError as exc:
            return error_answer(exc.code, exc.message)
        if session.user and session.user != user:
            for kind in USER_KINDS:  # another user's orders and balances are not theirs
                self.hub.clear(session, kind)
        session.user, session.source = user, source
        return _SUCCESS

    async def _query(
        self, session: Session, method: str, params: list[Any], rid: Any, gate: asyncio.Semaphore
    ) -> None:
        try:
            answer = await self._ask(session, method, params)
            session.push(reply_text(answer, rid))
        finally:
            gate.release()

    async def _ask(self, session: Session, method: str, params: list[Any]) -> Answer:
        target, count, needs_user = QUERIES[method]
        if needs_user and not session.user:
            return _REQUIRE_AUTH
        try:
            check_arity(method, params, count)
        except ArgumentError as exc:
            return error_answer(CODE_INVALID_ARGUMENT, f"invalid argument: {exc}")
        if needs_user:
            params = [session.user, *params]
        try:
            return await asyncio.wait_for(
                self.methods.call(target, params), self.config.timeout_s + 0.5
            )
        except BackendDown as exc:
            self.stats.backend_down += 1
            return error_answer(CODE_INTERNAL_ERROR, f"internal error: {exc}")
        except (BackendTimeout, TimeoutError):
            self.stats.timeouts += 1
            return _TIMEOUT
        except BackendError as exc:  # a backend answered nonsense
            logger.error("ws: %s failed: %s", target, exc)
            return error_answer(CODE_INTERNAL_ERROR, f"internal error: {exc}")

    # ------------------------------------------------------------ shutdown

    async def close_all(self) -> None:
        """Close every connection (1001, going away)."""
        await asyncio.gather(
            *(s.close(WSCloseCode.GOING_AWAY, "server stopping", s.transport)
              for s in list(self.sessions) if s.closer is None),
            return_exceptions=True,
        )  # fmt: skip


_Handler = Callable[[WsGateway, Session, list[Any]], Awaitable[Answer]]
_SERVER_METHODS: Final[dict[str, _Handler]] = {
    "server.ping": WsGateway._ping,
    "server.time": WsGateway._time,
    "server.auth": WsGateway._auth,
    "server.sign": WsGateway._sign,
}


async def start_ws(gateway: WsGateway, sock: socket.socket) -> tuple[asyncio.Server, web.Server]:
    """Serve ``gateway`` on the listening ``sock``; returns the asyncio server (close
    it to stop) and aiohttp's (``shutdown`` it to end the connections)."""
    http = web.Server(gateway.handle, access_log=None)
    return await serve_limited(http, sock, gateway.config.max_connections, gateway.stats), http


async def serve_ws(
    table: WsConfig,
    methods: ViabtcMethods,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    feed_pub: str | None = None,
) -> None:
    """Serve the WebSocket protocol on the listening ``sock`` until ``stop`` is set.

    ``feed_pub`` is the feed's publisher (``[feed] pub``); ``[ws] feed_pub``, when
    set, wins. Neither: the subscriptions answer code 3.
    """
    hub = Hub(methods, table.feed_pub or feed_pub or None)
    auth = AuthService(table.auth_url, table.sign_url, table.timeout_s)
    gateway = WsGateway(table, methods, hub, auth)
    hub.start()
    server, http = await start_ws(gateway, sock)
    print(f"matchd: WebSocket on ws://{table.bind}/ (feed {hub.pub or 'not configured'})",
          flush=True)  # fmt: skip
    try:
        await stop.wait()
    finally:
        server.close()
        await gateway.close_all()
        await http.shutdown(timeout=table.timeout_s + 1)
        await hub.aclose()
        await auth.aclose()
