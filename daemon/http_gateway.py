"""ViaBTC's HTTP JSON-RPC (accesshttp) on aiohttp: ``matchd http`` (docs/gateways.md).

A request is ``POST`` to any path with ``{"method", "params", "id"}``; the answer is
``{"error", "result", "id"}`` with ViaBTC's transport rules
(shared/reference/viabtc-api.md §4.1):

* not POST, an empty body, a body that is not JSON (or not UTF-8, or in an encoding it
  does not have), or a request without a string ``method``, a ``params`` array and an
  ``id``: **400** with an empty body;
* an unknown method: **404**, code 4 ``method not found``;
* the engine (or the feed, for market.*) not connected: **500**, empty body;
* no answer within ``timeout_s``: **504**, code 5 ``service timeout``;
* otherwise **200** with the method's ``error`` and ``result``.

matchd adds (docs/compat.md): a JSON array of requests is a **batch**, answered by
an array in the same order (each element as above, transport failures as codes 1,
3, 4 and 5), and its commands reach the engine in order, in one ZeroMQ frame; a body
over ``max_body_bytes`` or a batch over ``max_batch`` is **413**, a body that has not
arrived within ``read_timeout_s`` **408** (and the connection is closed), a client address
over its rate **429** and a worker at ``max_connections`` **503**, each with a JSON
error (code 1 or 3) saying which limit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
from aiohttp import web
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from aiohttp.web_protocol import RequestPayloadError

from daemon.auth_gate import TokenBucket
from daemon.gateway_config import HttpConfig, bind_address
from daemon.gateway_links import BackendDown, BackendError, BackendTimeout
from daemon.viabtc_methods import (
    CODE_INTERNAL_ERROR,
    CODE_INVALID_ARGUMENT,
    CODE_METHOD_NOT_FOUND,
    CODE_SERVICE_TIMEOUT,
    CODE_SERVICE_UNAVAILABLE,
    NOT_FOUND,
    ORDER_METHODS,
    Answer,
    ViabtcMethods,
    error_answer,
)

logger = logging.getLogger("matchd.http")

_HEADERS: Final = {"Content-Type": "application/json"}
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder()
_TIMEOUT: Final = error_answer(CODE_SERVICE_TIMEOUT, "service timeout")


class IpRateLimiter:
    """A token bucket per client address (``rate`` a second, ``burst`` saved up), for
    at most ``max_ips`` addresses: the one used longest ago is forgotten first."""

    def __init__(
        self, rate: int, burst: int, max_ips: int, clock: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_ips = max_ips
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.refused = 0

    def allow(self, ip: str, cost: int = 1) -> bool:
        """True if ``ip`` may spend ``cost`` requests now (they are taken)."""
        if self.rate == 0:
            return True
        now = self._clock()
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = self._buckets[ip] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.max_ips:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(ip)
        if bucket.take(cost, now):
            return True
        self.refused += 1
        return False

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class HttpStats:
    """Counters of one worker."""

    requests: int = 0  #: JSON-RPC requests answered (each element of a batch)
    batches: int = 0
    malformed: int = 0  #: 400s
    not_found: int = 0
    too_large: int = 0
    rate_limited: int = 0
    refused_connections: int = 0
    backend_down: int = 0
    timeouts: int = 0


def envelope(answer: Answer, rid: Any) -> dict[str, Any]:
    """ViaBTC's reply ``{"error", "result", "id"}`` to the request ``rid`` (a result
    passed through as JSON text stays text: ``msgspec.Raw``)."""
    result = msgspec.Raw(answer.raw) if answer.raw is not None else answer.result
    return {"error": answer.error, "result": result, "id": rid}


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=_encode(body), headers=_HEADERS)


def _limit_error(status: int, code: int, message: str) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}, "result": None, "id": None})


def _empty(status: int) -> web.Response:
    return web.Response(status=status)


def _request_parts(item: object) -> tuple[str, list[Any], Any] | None:
    """``(method, params, id)`` of a well-formed request object, else None."""
    if not isinstance(item, dict) or "id" not in item:
        return None
    method, params = item.get("method"), item.get("params")
    if not isinstance(method, str) or not isinstance(params, list):
        return None
    return method, params, item["id"]


class HttpGateway:
    """The request handler of one worker (see the module docstring)."""

    def __init__(self, config: HttpConfig, methods: ViabtcMethods) -> None:
        self.config = config
        self.methods = methods
        self.limiter = IpRateLimiter(config.rate_per_ip, config.burst_per_ip, config.max_ips)
        self.stats = HttpStats()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one HTTP request."""
        if request.method != "POST":
            self.stats.malformed += 1
            return _empty(400)
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            decoded = _decode.decode(body) if body else None
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            decoded = None
        ip = request.remote or "?"
        if isinstance(decoded, list) and decoded:
            return await self._batch(decoded, ip)
        parts = _request_parts(decoded)
        if parts is None:
            self.stats.malformed += 1
            return _empty(400)
        if not self.limiter.allow(ip):
            return self._rate_limited(ip)
        method, params, rid = parts
        self.stats.requests += 1
        try:
            answer = await self._answer(method, params)
        except BackendDown:
            self.stats.backend_down += 1
            return _empty(500)
        except BackendTimeout:
            self.stats.timeouts += 1
            return _json(504, envelope(_TIMEOUT, rid))
        except BackendError as exc:  # a backend answered nonsense
            logger.error("%s failed: %s", method, exc)
            return _empty(500)
        if answer is NOT_FOUND:
            self.stats.not_found += 1
            return _json(404, envelope(answer, rid))
        return _json(200, envelope(answer, rid))

    async def _read_body(self, request: web.BaseRequest) -> bytes | web.Response:
        """The whole body, or the response that refuses it (413, 408, 400)."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._too_large(f"request body of {request.content_length} bytes")
        try:
            if request.content.is_eof():  # the usual case: all here already, no timer
                return await request.read()
            async with asyncio.timeout(self.config.read_timeout_s):
                return await request.read()
        except HTTPRequestEntityTooLarge:
            return self._too_large("request body")
        except TimeoutError:  # a body that trickles in, or never comes: slowloris
            self.stats.malformed += 1
            response = _limit_error(
                408,
                CODE_INVALID_ARGUMENT,
                f"invalid argument: the request body did not arrive within "
                f"{self.config.read_timeout_s:g} s",
            )
            response.force_close()
            return response
        except (RequestPayloadError, ConnectionError):  # a bad encoding; a peer gone
            self.stats.malformed += 1
            return _empty(400)

    async def _answer(self, method: str, params: list[Any]) -> Answer:
        # Every backend times out on its own (``timeout_s``): no timer per request here.
        return await self.methods.call(method, params)

    async def _batch(self, items: list[Any], ip: str) -> web.StreamResponse:
        if len(items) > self.config.max_batch:
            self.stats.too_large += 1
            return _limit_error(
                413,
                CODE_INVALID_ARGUMENT,
                f"invalid argument: a batch of {len(items)} requests exceeds the limit of "
                f"{self.config.max_batch}",
            )
        if not self.limiter.allow(ip, len(items)):
            return self._rate_limited(ip)
        self.stats.batches += 1
        self.stats.requests += len(items)
        parts = [_request_parts(item) for item in items]
        if all(p is not None and p[0] in ORDER_METHODS for p in parts):
            return _json(200, await self._order_batch(cast(list[tuple[str, Any, Any]], parts)))
        answers = await asyncio.gather(*(self._batch_item(item) for item in items))
        return _json(200, answers)

    async def _order_batch(self, parts: list[tuple[str, Any, Any]]) -> list[dict[str, Any]]:
        """A batch of order commands only (the busy client's case): one request to the
        engine, no task per element."""
        try:
            answers = await self.methods.order_batch([(m, p) for m, p, _ in parts])
        except BackendDown as exc:
            answers = [error_answer(CODE_SERVICE_UNAVAILABLE, f"service unavailable: {exc}")]
        except BackendTimeout:
            answers = [_TIMEOUT]
        except BackendError as exc:
            answers = [error_answer(CODE_INTERNAL_ERROR, f"internal error: {exc}")]
        if len(answers) == 1 < len(parts):  # one failure for every element
            answers *= len(parts)
        return [envelope(a, rid) for a, (_, _, rid) in zip(answers, parts, strict=True)]

    async def _batch_item(self, item: Any) -> dict[str, Any]:
        parts = _request_parts(item)
        if parts is None:
            rid = item.get("id") if isinstance(item, dict) else None
            bad = error_answer(
                CODE_INVALID_ARGUMENT,
                "invalid argument: a request is an object with a string method, "
                "a params array and an id",
            )
            return envelope(bad, rid)
        method, params, rid = parts
        try:
            answer = await self._answer(method, params)
        except BackendDown as exc:
            answer = error_answer(CODE_SERVICE_UNAVAILABLE, f"service unavailable: {exc}")
        except BackendTimeout:
            answer = _TIMEOUT
        except BackendError as exc:
            answer = error_answer(CODE_INTERNAL_ERROR, f"internal error: {exc}")
        if answer.error is not None and answer.error.get("code") == CODE_METHOD_NOT_FOUND:
            self.stats.not_found += 1
        return envelope(answer, rid)

    def _too_large(self, what: str) -> web.Response:
        self.stats.too_large += 1
        return _limit_error(
            413,
            CODE_INVALID_ARGUMENT,
            f"invalid argument: {what} exceeds the limit of {self.config.max_body_bytes} bytes",
        )

    def _rate_limited(self, ip: str) -> web.Response:
        self.stats.rate_limited += 1
        return _limit_error(
            429,
            CODE_SERVICE_UNAVAILABLE,
            f"service unavailable: too many requests from {ip} (limit "
            f"{self.config.rate_per_ip}/s, burst {self.config.burst_per_ip})",
        )


class RefuseConnection(asyncio.Protocol):
    """Answers a connection over ``max_connections`` with 503 and closes it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = _encode(
            {
                "error": {
                    "code": CODE_SERVICE_UNAVAILABLE,
                    "message": f"service unavailable: this worker holds its limit of "
                    f"{self.limit} connections",
                },
                "result": None,
                "id": None,
            }
        )
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(head + body)
        transport.close()


def listening_socket(bind: str, *, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound to ``bind`` (``HOST:PORT``) with SO_REUSEPORT, so that
    several workers share the port; the kernel spreads connections over them."""
    host, port = bind_address(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def start_http(
    gateway: HttpGateway, sock: socket.socket
) -> tuple[asyncio.Server, web.Server]:
    """Serve ``gateway`` on the listening ``sock``; returns the asyncio server (close
    it to stop) and aiohttp's (``shutdown`` it to end the connections)."""
    limit = gateway.config.max_body_bytes

    def make_request(*args: Any) -> web.BaseRequest:
        message, payload, protocol, writer, task = args
        return web.BaseRequest(
            message, payload, protocol, writer, task, asyncio.get_running_loop(),
            client_max_size=limit,
        )  # fmt: skip

    http = web.Server(
        gateway.handle,
        request_factory=make_request,
        keepalive_timeout=gateway.config.keep_alive_s,
        # after an answer to an unread body (408, 413), wait this long at most for the
        # rest of it before closing (aiohttp's default is 10 s)
        lingering_time=1.0,
        access_log=None,
    )
    return await serve_limited(http, sock, gateway.config.max_connections, gateway.stats), http


async def serve_limited(
    http: web.Server, sock: socket.socket, max_connections: int, stats: Any
) -> asyncio.Server:
    """Serve aiohttp's ``http`` on the listening ``sock``; a connection beyond
    ``max_connections`` gets 503 and is closed (counted in
    ``stats.refused_connections``)."""

    def protocol() -> asyncio.Protocol:
        if len(http.connections) >= max_connections:
            stats.refused_connections += 1
            return RefuseConnection(max_connections)
        return http()

    return await asyncio.get_running_loop().create_server(protocol, sock=sock)
