"""The WebSocket gateway (daemon/ws_gateway.py) of a running ``matchd run``: every
method's answers and errors, ``server.auth`` and ``server.sign`` against a small real
HTTP service (accepting, refusing, answering garbage, answering late), authentication
for the order and asset methods, the subscription checks and limit, and the transport
rules (malformed JSON, binary and oversized messages, the sub-protocol, plain HTTP,
a client that never reads)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway_daemon import Daemon, free_port, running_daemon

pytestmark = [pytest.mark.integration]

WAIT_S = 5.0


# ------------------------------------------------------------------ the auth service


@dataclass
class AuthService:
    """A small HTTP service for ``auth_url`` and ``sign_url``, in a thread.

    ``/auth`` reads the token from ``Authorization``: ``good-<id>`` is user id,
    ``bad`` is refused (code 7), ``garbage`` answers text that is not JSON, ``zero``
    user id 0, ``slow-<id>`` answers after ``slow_s``. ``/sign`` accepts the
    authorisation ``sig-ok`` for ``access_id`` ``ak-<id>``, else refuses (code 9)."""

    port: int
    slow_s: float = 2.0
    seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/auth"

    @property
    def sign_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sign"

    async def handle(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        self.seen.append({"path": request.path, **request.headers, **request.query})
        if request.path == "/sign":
            access = request.query.get("access_id", "")
            if token == "sig-ok" and access.startswith("ak-"):  # noqa: S105
                return web.json_response({"code": 0, "data": {"user_id": int(access[3:])}})
            return web.json_response({"code": 9, "message": "signature mismatch", "data": None})
        if token.startswith("good-"):
            return web.json_response({"code": 0, "message": None,
                                      "data": {"user_id": int(token[5:])}})  # fmt: skip
        if token.startswith("slow-"):
            await asyncio.sleep(self.slow_s)
            return web.json_response({"code": 0, "data": {"user_id": int(token[5:])}})
        if token == "garbage":  # noqa: S105
            return web.Response(text="<html>oops</html>", status=500)
        if token == "zero":  # noqa: S105
            return web.json_response({"code": 0, "data": {"user_id": 0}})
        return web.json_response({"code": 7, "message": "token expired", "data": None})


@pytest.fixture(scope="module")
def auth_service() -> Iterator[AuthService]:
    service = AuthService(free_port())
    loop = asyncio.new_event_loop()
    runners: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", service.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", service.port).start()
        runners.append(runner)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield service
    finally:
        asyncio.run_coroutine_threadsafe(runners[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# ------------------------------------------------------------------ the client


class WsClient:
    """A WebSocket client that keeps the notifications it gets between replies."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self._ids = iter(range(1, 1 << 30))

    async def call(self, method: str, *params: Any) -> dict[str, Any]:
        """The reply to ``method(*params)``."""
        rid = next(self._ids)
        await self.ws.send_str(json.dumps({"method": method, "params": list(params), "id": rid}))
        while True:
            message = await self.receive()
            if message.get("id") == rid:
                return message
            assert message["id"] is None, message
            self.pushes.append(message)

    async def ok(self, method: str, *params: Any) -> Any:
        """The result of ``method(*params)``; fails on an error."""
        reply = await self.call(method, *params)
        assert reply["error"] is None, reply
        return reply["result"]

    async def error(self, method: str, *params: Any) -> dict[str, Any]:
        reply = await self.call(method, *params)
        assert reply["result"] is None, reply
        error: dict[str, Any] = reply["error"]
        return error

    async def receive(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout_s)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data: dict[str, Any] = json.loads(message.data)
        return data

    async def push(
        self,
        method: str,
        where: Callable[[list[Any]], bool] | None = None,
        timeout_s: float = WAIT_S,
    ) -> list[Any]:
        """The params of the next ``method`` notification (kept ones first) that
        ``where`` accepts; those it refuses are dropped."""
        deadline = time.monotonic() + timeout_s
        while (found := self._take(method, where)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"no {method} within {timeout_s} s; got {self.pushes}"
            with contextlib.suppress(TimeoutError):
                message = await self.receive(left)
                assert message["id"] is None, message
                self.pushes.append(message)
        return found

    def _take(self, method: str, where: Callable[[list[Any]], bool] | None) -> list[Any] | None:
        found: list[Any] | None = None
        kept = []
        for message in self.pushes:
            if found is not None or message["method"] != method:
                kept.append(message)
            elif where is None or where(message["params"]):
                found = message["params"]
        self.pushes = kept
        return found

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """The notifications of the next ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.pushes.append(await self.receive(left))
            except TimeoutError:
                break
        got, self.pushes = self.pushes, []
        return got


@asynccontextmanager
async def connect(url: str, **kw: Any) -> AsyncIterator[WsClient]:
    """A client of the gateway at ``url`` (retried while the worker starts)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                ws = await session.ws_connect(url, **kw)
                break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no WebSocket gateway at {url}")
        try:
            yield WsClient(ws)
        finally:
            await ws.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def ws_settings(tmp: Path, extra: str = "") -> str:
    """The ``[ws]`` settings of a test daemon in ``tmp`` (the feed's publisher comes
    from ``[feed] pub``, as under ``matchd run``)."""
    return extra


# ------------------------------------------------------------------ the daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, auth_service: AuthService) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("ws")
    extra = (
        f'auth_url = "{auth_service.auth_url}"\nsign_url = "{auth_service.sign_url}"\n'
        f"timeout_s = 0.5\nmax_subscriptions = 8\nmax_frame_bytes = 4096\nsend_queue = 16\n"
        f'depth_merge = ["0", "0.1"]\n'
    )
    with running_daemon(tmp, ws=ws_settings(tmp, extra), feed='depth_merge = ["0", "0.1"]\n') as d:
        wait_for_ws(d)
        yield d


def wait_for_ws(daemon: Daemon) -> None:
    """Return once the daemon's WebSocket worker answers."""

    async def ping() -> None:
        async with connect(daemon.ws_url) as c:
            assert await c.ok("server.ping") == "pong"

    run(ping())


def test_ping_time_and_an_unknown_method(daemon: Daemon) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            assert await c.ok("server.ping") == "pong"
            now = await c.ok("server.time")
            assert isinstance(now, int)
            assert abs(now - time.time()) < 5
            for method in ("no.such", "server.nope", "kline.frobnicate", "market.list", ""):
                reply = await c.call(method)
                assert reply["error"] == {"code": 4, "message": "method not found"}, method
                assert reply["result"] is None
            assert await c.ok("server.ping") == "pong"  # still open

    run(main())


def test_public_queries_answer_as_the_http_methods(daemon: Daemon) -> None:
    daemon.ok("balance.update", 90, "USDT", "deposit", 1, "100000", {})
    daemon.ok("balance.update", 91, "BTC", "deposit", 1, "10", {})
    daemon.ok("order.put_limit", 90, "BTC_USDT", 2, "1", "6000", "0.001", "0.001", "t")
    daemon.ok("order.put_limit", 91, "BTC_USDT", 1, "0.25", "6000", "0.001", "0.001", "t")
    now = int(time.time())

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            for method, http, params in (
                ("depth.query", "order.depth", ["BTC_USDT", 10, "0"]),
                ("price.query", "market.last", ["BTC_USDT"]),
                ("today.query", "market.status_today", ["BTC_USDT"]),
                ("deals.query", "market.deals", ["BTC_USDT", 10, 0]),
                ("kline.query", "market.kline", ["BTC_USDT", now - 3600, now + 60, 60]),
                ("state.query", "market.status", ["BTC_USDT", 86400]),
            ):
                for _ in range(50):  # the feed follows the log
                    got, want = await c.ok(method, *params), daemon.ok(http, *params)
                    if got == want and got not in ([], "0"):
                        break
                    await asyncio.sleep(0.05)
                assert got == want, method
            assert (await c.ok("depth.query", "BTC_USDT", 10, "0"))["bids"] == [["6000", "0.75"]]
            assert await c.error("depth.query", "BTC_USDT", 10) == {
                "code": 1, "message": "invalid argument: depth.query takes 3 params, not 2",
            }  # fmt: skip
            bad = await c.error("price.query", "NOPE")
            assert bad["code"] == 1
            assert "NOPE" in bad["message"]
            bad = await c.error("deals.query", "BTC_USDT", 0, 0)
            assert bad == {"code": 1, "message": "invalid argument: limit must be in 1..10000"}

    run(main())


USER_METHODS = [
    ("order.query", ["BTC_USDT", 0, 10]),
    ("order.history", ["BTC_USDT", 0, 0, 0, 10, 0]),
    ("asset.query", []),
    ("asset.history", ["", "", 0, 0, 0, 10]),
    ("order.subscribe", ["BTC_USDT"]),
    ("order.unsubscribe", []),
    ("asset.subscribe", ["BTC"]),
    ("asset.unsubscribe", []),
]


def test_order_and_asset_methods_require_authentication(daemon: Daemon) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            for method, params in USER_METHODS:
                assert await c.error(method, *params) == {
                    "code": 6, "message": "require authentication",
                }, method  # fmt: skip
            bad = await c.error("server.auth", "bad", "web")
            assert bad == {"code": 11, "message": "token expired"}
            assert (await c.error("asset.query"))["code"] == 6  # still not authenticated

    run(main())


def test_auth_makes_the_user_methods_the_users(daemon: Daemon, auth_service: AuthService) -> None:
    daemon.ok("balance.update", 7, "USDT", "deposit", 1, "5000", {})
    daemon.ok("order.put_limit", 7, "BTC_USDT", 2, "0.1", "5000", "0.001", "0.001", "t")

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            assert await c.ok("server.auth", "good-7", "web") == {"status": "success"}
            assert auth_service.seen[-1]["Authorization"] == "good-7"
            assert auth_service.seen[-1]["Accept-Language"] == "en_US"
            assert auth_service.seen[-1]["Content-Type"] == "application/json"
            assert await c.ok("asset.query") == daemon.ok("balance.query", 7)
            assert await c.ok("asset.query", "USDT") == daemon.ok("balance.query", 7, "USDT")
            pending = await c.ok("order.query", "BTC_USDT", 0, 10)
            assert pending == daemon.ok("order.pending", 7, "BTC_USDT", 0, 10)
            assert pending["total"] == 1
            for _ in range(50):  # the drainer writes MySQL
                history = await c.ok("asset.history", "USDT", "", 0, 0, 0, 10)
                if history["records"]:
                    break
                await asyncio.sleep(0.05)
            assert history == daemon.ok("balance.history", 7, "USDT", "", 0, 0, 0, 10)
            assert history["records"][0]["change"] == "5000"
            finished = await c.ok("order.history", "BTC_USDT", 0, 0, 0, 10, 0)
            assert finished == daemon.ok("order.finished", 7, "BTC_USDT", 0, 0, 0, 10, 0)
            bad = await c.error("order.history", "BTC_USDT", 0, 0, 0, 10)
            assert bad["message"] == "invalid argument: order.history takes 6 params, not 5"
            assert (await c.error("asset.query", "XYZ"))["code"] == 1

    run(main())


def test_auth_refusals_and_bad_params(daemon: Daemon) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            assert await c.error("server.auth", "bad", "web") == {
                "code": 11, "message": "token expired",
            }  # fmt: skip
            garbage = await c.error("server.auth", "garbage", "web")
            assert garbage["code"] == 2
            assert "server.auth service's reply is not" in garbage["message"]
            assert (await c.error("server.auth", "zero", "web"))["code"] == 2
            started = time.monotonic()
            assert await c.error("server.auth", "slow-5", "web") == {
                "code": 5, "message": "service timeout",
            }  # fmt: skip
            assert time.monotonic() - started < 1.5  # timeout_s = 0.5
            for params in (["good-1"], [5, "web"], ["good-1", "x" * 32], ["a\nb", "web"]):
                assert (await c.error("server.auth", *params))["code"] == 1, params
            assert (await c.error("asset.query"))["code"] == 6

    run(main())


def test_sign_authenticates_with_source_api(daemon: Daemon, auth_service: AuthService) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            refused = await c.error("server.sign", "ak-9", "sig-wrong", 1_700_000_000_000)
            assert refused == {"code": 11, "message": "signature mismatch"}
            assert await c.ok("server.sign", "ak-9", "sig-ok", 1_700_000_000_000) == {
                "status": "success"
            }
            seen = auth_service.seen[-1]
            assert (seen["path"], seen["access_id"], seen["tonce"]) == (
                "/sign", "ak-9", "1700000000000",
            )  # fmt: skip
            assert seen["Authorization"] == "sig-ok"
            assert await c.ok("asset.query", "BTC") == daemon.ok("balance.query", 9, "BTC")
            for params in (["ak-9", "sig-ok", 0], ["ak-9", "sig-ok", "1"], ["ak-9", "sig-ok"]):
                assert (await c.error("server.sign", *params))["code"] == 1, params

    run(main())


def test_subscription_checks(daemon: Daemon) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            success = {"status": "success"}
            assert await c.ok("depth.subscribe", "BTC_USDT", 10, "0.10") == success  # = "0.1"
            for method, params, why in (
                ("kline.subscribe", ["BTC_USDT", 7], "interval must be one of 60, 300"),
                ("kline.subscribe", ["BTC_USDT"], "kline.subscribe takes 2 params, not 1"),
                ("depth.subscribe", ["BTC_USDT", 7, "0"], "limit must be one of [1, 5, 10"),
                (
                    "depth.subscribe",
                    ["BTC_USDT", 10, "0.5"],
                    "interval must be one of ['0', '0.1']",
                ),
                ("depth.subscribe", ["BTC_USDT", 10, 0], "interval must be a string"),
                ("price.subscribe", ["BTC_USDT", "NOPE"], "unknown market 'NOPE'"),
                ("deals.subscribe", [5], "market must be a string"),
            ):
                error = await c.error(method, *params)
                assert error["code"] == 1, (method, params)
                assert why in error["message"], (error, why)
            await c.ok("server.auth", "good-3", "web")
            error = await c.error("asset.subscribe", "BTC", "DOGE")
            assert error == {"code": 1, "message": "invalid argument: unknown asset 'DOGE'"}
            assert await c.ok("asset.subscribe") == success  # every asset
            assert await c.ok("depth.unsubscribe") == success

    run(main())


def test_subscriptions_per_connection_are_limited(daemon: Daemon) -> None:
    """``max_subscriptions = 8``, summed over the kinds; a subscribe replaces its
    kind's earlier one, so it frees what that held."""

    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            both = ("BTC_USDT", "ETH_BTC")
            for kind in ("price", "today", "state", "deals"):
                await c.ok(f"{kind}.subscribe", *both)
            error = await c.error("kline.subscribe", "BTC_USDT", 60)
            assert error == {
                "code": 1,
                "message": "invalid argument: 9 subscriptions exceed the limit of 8 per "
                "connection (max_subscriptions)",
            }
            await c.ok("price.subscribe", "BTC_USDT")  # 7 now
            await c.ok("kline.subscribe", "BTC_USDT", 60)
            assert (await c.error("depth.subscribe", "BTC_USDT", 10, "0"))["code"] == 1
            await c.ok("deals.unsubscribe")
            await c.ok("depth.subscribe", "BTC_USDT", 10, "0")
        async with connect(daemon.ws_url) as other:  # per connection
            await other.ok("deals.subscribe", *both)

    run(main())


@pytest.mark.parametrize(
    ("text", "rid"),
    [
        ("{not json", None),
        ('{"method": "server.ping", "id": 3}', 3),
        ('{"method": 5, "params": [], "id": 4}', 4),
        ('{"method": "server.ping", "params": []}', None),
        ("[1, 2]", None),
    ],
)
def test_a_message_that_is_not_a_request_is_answered_then_closed(
    daemon: Daemon, text: str, rid: Any
) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            await c.ws.send_str(text)
            reply = await c.receive()
            assert reply["id"] == rid
            assert reply["result"] is None
            assert reply["error"]["code"] == 1
            assert reply["error"]["message"].startswith("invalid argument: ")
            closing = await c.ws.receive(timeout=WAIT_S)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert closing.data == 1007

    run(main())


def test_binary_and_oversized_messages_close_the_connection(daemon: Daemon) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url) as c:
            await c.ws.send_bytes(b'{"method": "server.ping", "params": [], "id": 1}')
            assert (await c.receive())["error"]["code"] == 1
            closing = await c.ws.receive(timeout=WAIT_S)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1003)
        async with connect(daemon.ws_url) as c:
            await c.ws.send_str(json.dumps({"method": "server.ping", "params": ["x" * 5000],
                                            "id": 1}))  # fmt: skip
            closing = await c.ws.receive(timeout=WAIT_S)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1009)
        async with connect(daemon.ws_url) as c:  # just under max_frame_bytes = 4096
            reply = await c.call("server.ping", "x" * 4000)
            assert reply["result"] == "pong"

    run(main())


def test_the_sub_protocol_and_plain_http(daemon: Daemon) -> None:
    async def main() -> None:
        async with connect(daemon.ws_url, protocols=("x-other", "chat")) as c:
            assert c.ws.protocol == "chat"
            assert await c.ok("server.ping") == "pong"
        async with connect(daemon.ws_url) as c:
            assert c.ws.protocol is None
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(daemon.ws_url, protocols=("x-other",))
            assert refused.value.status == 400
            async with session.get(daemon.ws_url) as response:
                assert response.status == 400
                assert "WebSocket" in await response.text()

    run(main())


# ------------------------------------------------------------------ a client that never reads


def _worker_rss_kib(daemon: Daemon) -> int:
    """The resident memory of the daemon's WebSocket worker."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if b"daemon.cli" in argv and b"ws" in argv and str(daemon.config).encode() in argv:
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    raise AssertionError("no ws worker")


def _frame(text: str) -> bytes:
    """A masked text frame (mask 0: the payload is sent as it is)."""
    data = text.encode()
    n = len(data)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2)
    return head + b"\0\0\0\0" + data


def _close_code(stream: bytes) -> int | None:
    """The code of the close frame in a stream of server frames, if there is one."""
    i = 0
    while i + 2 <= len(stream):
        opcode, n = stream[i] & 0x0F, stream[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(stream[i : i + 2]), i + 2
        elif n == 127:
            n, i = int.from_bytes(stream[i : i + 8]), i + 8
        if opcode == 0x8 and n >= 2 and i + 2 <= len(stream):
            return int.from_bytes(stream[i : i + 2])
        i += n
    return None


def test_a_client_that_never_reads_is_disconnected(daemon: Daemon) -> None:
    """``send_queue = 16``: a client that sends requests with large answers and never
    reads is closed (1008) once the socket and 16 messages are full; the worker's
    memory does not grow by what it would have had to hold (~100 MB)."""
    orders = [
        {"method": "order.put_limit", "id": i,
         "params": [95, "BTC_USDT", side, "0.01", str(price), "0.001", "0.001", "deep"]}
        for i, (side, price) in enumerate(
            [(1, 9000 + p) for p in range(100)] + [(2, 1000 + p) for p in range(100)]
        )
    ]  # fmt: skip
    daemon.ok("balance.update", 95, "USDT", "deposit", 1, "1000000", {})
    daemon.ok("balance.update", 95, "BTC", "deposit", 1, "100", {})
    status, body = daemon.post(orders)
    assert status == 200
    assert all(r["error"] is None for r in json.loads(body))
    host, port = daemon.ws_url.removeprefix("ws://").rstrip("/").split(":")
    before = _worker_rss_kib(daemon)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    request = _frame(json.dumps({"method": "depth.query", "params": ["BTC_USDT", 101, "0"],
                                 "id": 1}))  # fmt: skip
    sock.settimeout(0.5)
    sent = 0
    try:
        for _ in range(25_000):  # ~100 MB of answers, if they were all held
            sock.sendall(request * 1)
            sent += 1
    except (TimeoutError, ConnectionError):
        pass  # the worker stopped reading us: it closed the connection
    stream = b""
    sock.settimeout(WAIT_S)
    try:
        while chunk := sock.recv(1 << 20):
            stream += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        sock.close()
    after = _worker_rss_kib(daemon)
    assert sent > 1000
    assert _close_code(stream) == 1008
    assert after - before < 40_000, (before, after)

    async def still_serving() -> None:
        async with connect(daemon.ws_url) as c:
            assert await c.ok("server.ping") == "pong"

    run(still_serving())
