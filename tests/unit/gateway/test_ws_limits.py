"""The WebSocket gateway's limits and its subscriptions' bookkeeping, in process, with
the test playing the feed (a ZeroMQ XPUB) and no engine: connections per worker (503
before the upgrade), messages per client address (code 3), heartbeats (a peer that
does not answer pings is closed and its subscriptions freed, one that does stays), a
client that does not read pushes (closed, 1008, its subscriptions freed), topics
subscribed once per worker and released with their last subscriber, and the depth
book rebuilt from the feed's full views and diffs (a sequence gap waits for the next
full view)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zmq
import zmq.asyncio

from core.config import parse_config
from core.errors import ConfigError
from daemon.gateway_config import WsConfig
from daemon.gateway_links import EngineLink
from daemon.http_gateway import listening_socket
from daemon.viabtc_methods import ViabtcMethods
from daemon.ws_auth import AuthService
from daemon.ws_gateway import WsGateway, start_ws
from daemon.ws_hub import Hub
from persistence.history_queries import HistoryNotConfigured
from tests.support.scenario import config_text
from tests.unit.gateway.test_ws_methods import WAIT_S, WsClient, _close_code, _frame

pytestmark = [pytest.mark.integration]


@dataclass
class Feed:
    """The test's publisher, in place of the feed process."""

    pub: zmq.asyncio.Socket
    seqs: dict[bytes, int] = field(default_factory=dict)
    epoch: int = 1

    async def subscription(self) -> bytes:
        """The next (un)subscription the gateway sends: ``\\x01topic`` / ``\\x00topic``."""
        return bytes(await asyncio.wait_for(self.pub.recv(), WAIT_S))

    async def send(self, topic: bytes, body: dict[str, Any], skip: int = 0) -> None:
        """Publish ``body`` on ``topic`` with the next sequence (``skip``: a gap)."""
        seq = self.seqs.get(topic, 0) + 1 + skip
        self.seqs[topic] = seq
        await self.pub.send_multipart(
            [topic, json.dumps({**body, "epoch": self.epoch, "seq": seq}).encode()]
        )


@dataclass
class Served:
    url: str
    gateway: WsGateway
    feed: Feed


@asynccontextmanager
async def gateway(tmp_path: Path, **settings: Any) -> AsyncIterator[Served]:
    """A WebSocket gateway on a free port, over an absent engine and the test's
    publisher."""
    config = WsConfig(bind="127.0.0.1:0", feed_pub=f"ipc://{tmp_path}/pub.sock", **settings)
    ctx = zmq.asyncio.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(config.feed_pub)
    link = EngineLink(f"ipc://{tmp_path}/nobody.sock", timeout_s=config.timeout_s)
    executor = ThreadPoolExecutor(1)
    methods = ViabtcMethods(
        parse_config(config_text()), link, None, HistoryNotConfigured(), executor
    )
    await link.start()
    hub = Hub(methods, config.feed_pub)
    auth = AuthService("", "", config.timeout_s)
    gw = WsGateway(config, methods, hub, auth)
    hub.start()
    sock = listening_socket(config.bind, reuse_port=False)
    server, http = await start_ws(gw, sock)
    port = sock.getsockname()[1]
    try:
        yield Served(f"ws://127.0.0.1:{port}/", gw, Feed(pub))
    finally:
        server.close()
        await gw.close_all()
        await http.shutdown(1)
        await hub.aclose()
        await auth.aclose()
        await link.aclose()
        executor.shutdown()
        pub.close(0)


@asynccontextmanager
async def client(url: str, **kw: Any) -> AsyncIterator[WsClient]:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, **kw)
        try:
            yield WsClient(ws)
        finally:
            await ws.close()


async def until(predicate: Any, what: str) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within {WAIT_S} s")


def test_connections_per_worker_are_limited(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            gateway(tmp_path, max_connections=2) as g,
            client(g.url) as a,
            client(g.url) as b,
            aiohttp.ClientSession() as session,
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(g.url)
            assert refused.value.status == 503
            assert g.gateway.stats.refused_connections == 1
            assert await a.ok("server.ping") == await b.ok("server.ping") == "pong"
            await b.ws.close()
            await until(lambda: len(g.gateway.sessions) == 1, "the closed one is gone")
            async with client(g.url) as c:
                assert await c.ok("server.ping") == "pong"

    asyncio.run(main())


def test_only_the_allowed_web_origins_may_connect(tmp_path: Path) -> None:
    async def main() -> None:
        allowed = ("https://exchange.example", "http://localhost:3000")
        async with gateway(tmp_path, allowed_origins=allowed) as g:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(g.url, origin="https://evil.example")
                assert refused.value.status == 403
                async with session.get(
                    g.url.replace("ws://", "http://"),
                    headers={"Upgrade": "websocket", "Connection": "Upgrade",
                             "Origin": "https://evil.example", "Sec-WebSocket-Version": "13",
                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
                ) as response:  # fmt: skip
                    assert response.status == 403
                    assert "origin 'https://evil.example' is not allowed" in await response.text()
            assert g.gateway.stats.refused_origins == 2
            for origin in ("https://exchange.example", "HTTP://LOCALHOST:3000", None):
                async with client(g.url, origin=origin) as c:  # no Origin: not a browser
                    assert await c.ok("server.ping") == "pong"
        async with gateway(tmp_path) as g, client(g.url, origin="https://any.example") as c:
            assert await c.ok("server.ping") == "pong"  # none listed: any origin

    asyncio.run(main())


@pytest.mark.parametrize("origin", ["exchange.example", "https://exchange.example/", "ftp://x"])
def test_an_allowed_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(ConfigError, match="is not an origin"):
        WsConfig(allowed_origins=(origin,))


def test_messages_per_client_address_are_limited(tmp_path: Path) -> None:
    async def main() -> None:
        async with gateway(tmp_path, rate_per_ip=1, burst_per_ip=3) as g, client(g.url) as c:
            for _ in range(3):
                assert await c.ok("server.ping") == "pong"
            error = await c.error("server.ping")
            assert error["code"] == 3
            assert "too many requests from 127.0.0.1 (limit 1/s, burst 3)" in error["message"]
            assert g.gateway.stats.rate_limited == 1
            await asyncio.sleep(1.05)
            assert await c.ok("server.ping") == "pong"  # refilled

    asyncio.run(main())


def test_a_peer_that_does_not_answer_pings_is_closed_and_its_subscriptions_freed(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with (
            gateway(tmp_path, ping_interval_s=0.2) as g,
            client(g.url) as alive,
            client(g.url, autoping=False) as dead,
        ):
            await dead.ok("deals.subscribe", "BTC_USDT")
            await alive.ok("price.subscribe", "ETH_BTC")
            assert {await g.feed.subscription(), await g.feed.subscription()} == {
                b"\x01deals.BTC_USDT", b"\x01ticker.ETH_BTC",
            }  # fmt: skip
            # aiohttp's client answers pings while it waits in receive()
            listening = asyncio.get_running_loop().create_task(alive.ws.receive())
            ping = await dead.ws.receive(timeout=1.0)
            assert ping.type == aiohttp.WSMsgType.PING
            closed = await dead.ws.receive(timeout=1.0)  # no pong within 0.1 s
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert await g.feed.subscription() == b"\x00deals.BTC_USDT"
            assert g.gateway.hub.topics == {b"ticker.ETH_BTC": 1}
            await asyncio.sleep(0.8)  # four intervals: the one that answers stays
            assert not listening.done()
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            assert await alive.ok("server.ping") == "pong"
            assert len(g.gateway.sessions) == 1

    asyncio.run(main())


def test_a_client_that_does_not_read_its_pushes_is_closed(tmp_path: Path) -> None:
    """``send_queue = 4``: deals published faster than the client reads (it never
    does) fill the socket and then the queue; the client is closed (1008) and its
    subscription freed, while another client of the same topic keeps everything."""

    async def main() -> None:
        async with gateway(tmp_path, send_queue=4) as g, client(g.url) as reader:
            host, port = g.url.removeprefix("ws://").rstrip("/").split(":")
            sock = socket.socket()
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (host, int(port)))
            await loop.sock_sendall(sock, (
                f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode())  # fmt: skip
            request = {"method": "deals.subscribe", "params": ["BTC_USDT"], "id": 1}
            await loop.sock_sendall(sock, _frame(json.dumps(request)))
            await reader.ok("deals.subscribe", "BTC_USDT")
            assert await g.feed.subscription() == b"\x01deals.BTC_USDT"
            await until(lambda: len(g.gateway.hub.members("deals", "BTC_USDT")) == 2, "both in")
            deals = [
                {"id": i, "time": 1.5, "price": "7000", "amount": "0.1", "type": "buy"}
                for i in range(100)
            ]
            sent = 0
            while g.gateway.stats.overflowed == 0 and sent < 10_000:
                for d in deals:
                    d["id"] += 100
                await g.feed.send(b"deals.BTC_USDT", {"market": "BTC_USDT", "deals": deals})
                sent += 1
                got = await reader.push("deals.update")
                assert [d["id"] for d in got[1]] == [d["id"] for d in reversed(deals)]
            assert g.gateway.stats.overflowed == 1
            assert sent > 10
            stream = b""  # what the server had buffered, then its close frame
            try:
                while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), WAIT_S):
                    stream += chunk
            except ConnectionError:
                pass
            finally:
                sock.close()
            assert _close_code(stream.partition(b"\r\n\r\n")[2]) == 1008
            await until(lambda: len(g.gateway.sessions) == 1, "the closed one is gone")
            assert g.gateway.hub.members("deals", "BTC_USDT") == set(g.gateway.sessions)
            old = {**deals[-1]}  # a deal sent before: not again
            new = {**deals[-1], "id": deals[-1]["id"] + 1}
            await g.feed.send(b"deals.BTC_USDT", {"market": "BTC_USDT", "deals": [old, new]})
            assert await reader.push("deals.update") == ["BTC_USDT", [new]]

    asyncio.run(main())


def test_topics_are_subscribed_once_per_worker_and_released_with_the_last(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with gateway(tmp_path) as g, client(g.url) as a, client(g.url) as b:
            await a.ok("depth.subscribe", "BTC_USDT", 10, "0")
            await b.ok("depth.subscribe", "BTC_USDT", 5, "0")
            await a.ok("today.subscribe", "BTC_USDT")
            await b.ok("price.subscribe", "BTC_USDT")
            assert g.gateway.hub.topics == {b"depth.BTC_USDT": 2, b"ticker.BTC_USDT": 2}
            assert sorted([await g.feed.subscription(), await g.feed.subscription()]) == [
                b"\x01depth.BTC_USDT", b"\x01ticker.BTC_USDT",
            ]  # fmt: skip
            await a.ok("depth.subscribe", "ETH_BTC", 10, "0")  # replaces a's BTC_USDT view
            assert g.gateway.hub.topics[b"depth.BTC_USDT"] == 1
            await b.ok("depth.unsubscribe")
            assert await g.feed.subscription() == b"\x01depth.ETH_BTC"
            assert await g.feed.subscription() == b"\x00depth.BTC_USDT"
            await a.ws.close()
            await until(lambda: len(g.gateway.sessions) == 1, "a is gone")
            assert g.gateway.hub.topics == {b"ticker.BTC_USDT": 1}

    asyncio.run(main())


def test_the_depth_book_follows_full_views_and_diffs(tmp_path: Path) -> None:
    """No engine: the book waits for the feed's full view; after a sequence gap its
    diffs are ignored until the next full view (clients get the difference from what
    they were sent)."""

    def full(asks: list[list[str]], bids: list[list[str]]) -> dict[str, Any]:
        return {"market": "BTC_USDT", "interval": "0", "full": True, "asks": asks, "bids": bids}

    def diff(asks: list[list[str]], bids: list[list[str]]) -> dict[str, Any]:
        return {**full(asks, bids), "full": False}

    async def main() -> None:
        async with gateway(tmp_path) as g, client(g.url) as c, client(g.url) as top:
            topic = b"depth.BTC_USDT"
            await c.ok("depth.subscribe", "BTC_USDT", 5, "0")
            await top.ok("depth.subscribe", "BTC_USDT", 1, "0")
            assert await g.feed.subscription() == b"\x01" + topic
            asks = [[str(7000 + i), "1"] for i in range(8)]
            await g.feed.send(topic, full(asks, [["6999", "2"]]))
            assert await c.push("depth.update") == [
                True, {"asks": asks[:5], "bids": [["6999", "2"]]}, "BTC_USDT",
            ]  # fmt: skip
            assert await top.push("depth.update") == [
                True, {"asks": asks[:1], "bids": [["6999", "2"]]}, "BTC_USDT",
            ]  # fmt: skip
            await g.feed.send(topic, diff([["7000", "0"], ["7006", "3"]], []))
            assert await c.push("depth.update") == [
                False, {"asks": [["7000", "0"], ["7005", "1"]]}, "BTC_USDT",
            ]  # fmt: skip
            assert await top.push("depth.update") == [
                False, {"asks": [["7000", "0"], ["7001", "1"]]}, "BTC_USDT",
            ]  # fmt: skip
            await g.feed.send(topic, diff([], [["6999", "5"]]), skip=1)  # a lost message
            await g.feed.send(topic, diff([], [["6998", "1"]]))
            assert [m for m in await c.quiet(0.2) if m["method"] == "depth.update"] == []
            await g.feed.send(topic, full(asks[3:], [["6999", "5"]]))
            assert await c.push("depth.update") == [  # against what c was sent
                False,
                {"asks": [["7001", "0"], ["7002", "0"], ["7006", "1"], ["7007", "1"]],
                 "bids": [["6999", "5"]]},
                "BTC_USDT",
            ]  # fmt: skip
            async with client(g.url) as late:  # the book is there: at once
                await late.ok("depth.subscribe", "BTC_USDT", 5, "0")
                assert await late.push("depth.update") == [
                    True, {"asks": asks[3:8], "bids": [["6999", "5"]]}, "BTC_USDT",
                ]  # fmt: skip
            assert g.gateway.hub.stats.gaps == 1

    asyncio.run(main())
