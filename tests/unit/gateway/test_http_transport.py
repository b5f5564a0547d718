"""The HTTP gateway's transport rules and limits, in process: an engine that is not
there (500, empty body), an engine that does not answer (504, code 5), a client over
its rate (429), a worker at its connection limit (503), market data and history not
configured (code 3), and the per-address rate limiter on a fake clock."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zmq
import zmq.asyncio

from core.arguments import ArgumentError
from core.config import parse_config
from daemon.gateway_config import HttpConfig
from daemon.gateway_links import EngineLink
from daemon.http_gateway import HttpGateway, IpRateLimiter, listening_socket, start_http
from daemon.viabtc_methods import ViabtcMethods
from persistence.history_queries import HistoryNotConfigured
from tests.support.scenario import config_text


@asynccontextmanager
async def gateway(endpoint: str, **settings: Any) -> AsyncIterator[tuple[str, HttpGateway]]:
    """An HTTP gateway on a free port over the engine at ``endpoint``: its URL."""
    config = HttpConfig(bind="127.0.0.1:0", **settings)
    link = EngineLink(endpoint, timeout_s=config.timeout_s)
    executor = ThreadPoolExecutor(1)
    methods = ViabtcMethods(
        parse_config(config_text()), link, None, HistoryNotConfigured(), executor
    )
    await link.start()
    gw = HttpGateway(config, methods)
    sock = listening_socket(config.bind, reuse_port=False)
    server, http = await start_http(gw, sock)
    port = sock.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/", gw
    finally:
        server.close()
        await http.shutdown(1)
        await link.aclose()
        executor.shutdown()


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, bytes]:
    async with session.post(url, data=json.dumps(body)) as response:
        return response.status, await response.read()


def call(method: str, *params: Any, rid: int = 1) -> dict[str, Any]:
    return {"method": method, "params": list(params), "id": rid}


def test_an_absent_engine_is_500_with_an_empty_body(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            gateway(f"ipc://{tmp_path}/nobody.sock") as (url, gw),
            aiohttp.ClientSession() as s,
        ):
            assert await post(s, url, call("order.pending", 1, "BTC_USDT", 0, 10)) == (500, b"")
            # what needs no engine still works
            status, body = await post(s, url, call("market.list"))
            assert status == 200
            assert json.loads(body)["result"][0]["name"] == "BTC_USDT"
            # in a batch, the engine's absence is that element's code 3
            status, body = await post(s, url, [call("balance.query", 1), call("asset.list")])
            answers = json.loads(body)
            assert status == 200
            assert answers[0]["error"] == {
                "code": 3,
                "message": "service unavailable: the engine is not connected",
            }
            assert answers[1]["error"] is None
            assert gw.stats.backend_down == 1
            # a batch of order commands only (one engine request): each element code 3
            put = call("order.put_limit", 1, "BTC_USDT", 2, "1", "1", "0", "0", "", rid=7)
            status, body = await post(s, url, [put, put])
            assert status == 200
            assert [a["error"]["code"] for a in json.loads(body)] == [3, 3]
            assert [a["id"] for a in json.loads(body)] == [7, 7]

    asyncio.run(main())


def test_a_silent_engine_is_504_with_code_5(tmp_path: Path) -> None:
    async def main() -> None:
        endpoint = f"ipc://{tmp_path}/silent.sock"
        router = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        router.bind(endpoint)
        try:
            async with gateway(endpoint, timeout_s=0.2) as (url, gw), aiohttp.ClientSession() as s:
                link = gw.methods.engine
                assert await link.watch.wait_connected(5)
                status, body = await post(s, url, call("balance.query", 1, rid=9))
                assert status == 504
                assert json.loads(body) == {
                    "error": {"code": 5, "message": "service timeout"},
                    "result": None,
                    "id": 9,
                }
        finally:
            router.close(0)

    asyncio.run(main())


def test_feed_and_history_not_configured_are_code_3(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            gateway(f"ipc://{tmp_path}/nobody.sock") as (url, _),
            aiohttp.ClientSession() as s,
        ):
            status, body = await post(s, url, call("market.last", "BTC_USDT"))
            assert status == 200
            assert json.loads(body)["error"]["code"] == 3
            assert "no [feed] in the config" in json.loads(body)["error"]["message"]
            status, body = await post(s, url, call("order.deals", 1, 0, 10))
            assert json.loads(body)["error"]["code"] == 3

    asyncio.run(main())


def test_a_client_over_its_rate_gets_429(tmp_path: Path) -> None:
    async def main() -> None:
        settings = {"rate_per_ip": 1, "burst_per_ip": 3}
        async with gateway(f"ipc://{tmp_path}/n.sock", **settings) as (url, gw), \
                aiohttp.ClientSession() as s:  # fmt: skip
            statuses = [(await post(s, url, call("asset.list")))[0] for _ in range(3)]
            assert statuses == [200, 200, 200]
            status, body = await post(s, url, call("asset.list"))
            assert status == 429
            error = json.loads(body)["error"]
            assert error["code"] == 3
            assert error["message"] == (
                "service unavailable: too many requests from 127.0.0.1 (limit 1/s, burst 3)"
            )
            # a batch costs one token per request: 4 can never pass with a burst of 3
            status, _ = await post(s, url, [call("asset.list")] * 4)
            assert status == 429
            assert gw.stats.rate_limited == 2

    asyncio.run(main())


def test_a_worker_at_its_connection_limit_answers_503(tmp_path: Path) -> None:
    async def main() -> None:
        async with gateway(f"ipc://{tmp_path}/n.sock", max_connections=1) as (url, gw):
            first = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            second = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            try:
                assert (await post(first, url, call("asset.list")))[0] == 200  # kept alive
                status, body = await post(second, url, call("asset.list"))
                assert status == 503
                assert "its limit of 1 connections" in json.loads(body)["error"]["message"]
                assert gw.stats.refused_connections == 1
            finally:
                await first.close()
                await second.close()

    asyncio.run(main())


def test_the_rate_limiter_refills_and_forgets_the_oldest_address() -> None:
    now = [0]
    limiter = IpRateLimiter(rate=10, burst=2, max_ips=2, clock=lambda: now[0])
    assert limiter.allow("a", 2)
    assert not limiter.allow("a")
    now[0] += 100_000_000  # 0.1 s: one token back
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")
    assert limiter.allow("c")  # "a" is forgotten: at most 2 addresses are tracked
    assert len(limiter) == 2
    assert limiter.allow("a", 2)  # a fresh, full bucket
    assert limiter.refused == 2
    assert IpRateLimiter(rate=0, burst=1, max_ips=1).allow("x", 10**6)  # 0: no limit


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bind": "8080"}, "bind = '8080' must be HOST:PORT"),
        ({"workers": 0}, "workers = 0 is outside 1..64"),
        ({"engine": "nowhere"}, "engine = 'nowhere' is not a ZeroMQ endpoint"),
        ({"timeout_s": 0}, "timeout_s = 0.0 must be more than 0 and at most 60 s"),
        ({"max_batch": 0}, "max_batch = 0 is outside 1..100000"),
        ({"max_body_bytes": 10}, "max_body_bytes = 10 is outside 1024..67108864"),
    ],
)
def test_bad_settings_are_refused_with_the_key(settings: dict[str, Any], message: str) -> None:
    from core.errors import ConfigError
    from daemon.gateway_config import load_gateway_config

    text = "[http]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    with pytest.raises(ConfigError, match=rf"^\[http\] {re.escape(message)}"):
        load_gateway_config(text)


def test_unknown_settings_and_wrong_types_are_refused() -> None:
    from core.errors import ConfigError
    from daemon.gateway_config import load_gateway_config

    with pytest.raises(ConfigError, match=r"\[http\] unknown setting 'port'"):
        load_gateway_config("[http]\nport = 80\n")
    with pytest.raises(ConfigError, match=r"\[http\] workers must be an integer, not '2'"):
        load_gateway_config('[http]\nworkers = "2"\n')
    assert load_gateway_config("") == (None, None)


def test_the_gateway_connects_with_curve_keys_when_the_engine_has_a_registry(
    tmp_path: Path,
) -> None:
    """``matchd run --keys``: the gateway's ``[gateway]`` keys (role admin) get it in;
    the registry refuses any other key at the handshake, so without them nothing
    would be answered."""
    from tests.support.gateway_daemon import running_daemon
    from tests.support.keys import Entry, Keys

    keys = Keys(tmp_path / "keys")
    keys.directory.mkdir(exist_ok=True)
    keys.add("gateway", Entry("admin"))
    registry = keys.write_registry()
    extra = (
        f'\n[gateway]\nsecret_key_file = "{keys.directory}/gateway.key_secret"\n'
        f'server_key_file = "{keys.directory}/server.key"\n'
    )
    with running_daemon(
        tmp_path, history=False, ws=None, extra=extra, run_args=("--keys", str(registry))
    ) as d:
        assert d.ok("balance.update", 5, "BTC", "deposit", 1, "2", {}) == {"status": "success"}
        assert d.ok("balance.query", 5, "BTC") == {"BTC": {"available": "2", "freeze": "0"}}


def test_a_body_that_never_arrives_is_408_and_the_connection_closed(tmp_path: Path) -> None:
    """A client that sends headers and trickles (or never sends) its body cannot hold
    a connection (slowloris): 408 after ``read_timeout_s``."""

    async def main() -> None:
        async with gateway(f"ipc://{tmp_path}/n.sock", read_timeout_s=0.3) as (url, gw):
            port = int(url.rsplit(":", 1)[1].strip("/"))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            await writer.drain()
            head = await asyncio.wait_for(reader.read(), 5)  # to EOF: the server closes
            writer.close()
            assert head.startswith(b"HTTP/1.1 408 ")
            assert b"did not arrive within 0.3 s" in head
            assert gw.stats.malformed == 1

    asyncio.run(main())


def test_a_market_request_over_the_feeds_limit_is_code_1(tmp_path: Path) -> None:
    """The feed's ROUTER drops a connection that sends more than its message limit
    (taking every request in flight with it): the gateway refuses such a request."""
    import daemon.feed
    from daemon.gateway_links import FEED_MAX_REQUEST_BYTES, FeedLink

    assert FEED_MAX_REQUEST_BYTES == daemon.feed.MAX_REQUEST_BYTES

    async def main() -> None:
        router = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        router.bind(f"ipc://{tmp_path}/feed.sock")
        link = FeedLink(f"ipc://{tmp_path}/feed.sock")
        await link.start()
        try:
            assert await link.watch.wait_connected(5)
            with pytest.raises(ArgumentError, match="the feed takes at most 65536"):
                await link.call("market.last", ["x" * 70_000])
        finally:
            await link.aclose()
            router.close(0)

    asyncio.run(main())


def test_requests_made_while_a_flush_is_in_flight_go_together_in_order(tmp_path: Path) -> None:
    """Smart batching: with a flush unanswered, the commands that come meanwhile wait
    and go as one COMMANDS frame, in the order they were made, when it is answered."""
    import numpy as np

    from core import commands
    from core.schema import RESULT_DTYPE, CommandKind
    from ipc import wire

    async def main() -> None:
        endpoint = f"ipc://{tmp_path}/engine.sock"
        router = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        router.bind(endpoint)
        link = EngineLink(endpoint, timeout_s=5, max_flushes=1)
        await link.start()

        async def answer(parts: list[bytes] | None = None) -> list[int]:
            """Answer the next COMMANDS frame (or ``parts``, received before), every
            command OK; its users."""
            envelope, frame = parts or await router.recv_multipart()
            request = wire.decode_request(frame)
            assert isinstance(request, wire.CommandsFrame)
            results = np.zeros(len(request.commands), dtype=RESULT_DTYPE)
            results["seq"] = np.arange(1, len(results) + 1)
            reply = wire.encode_results(request.request_id, results)
            await router.send_multipart([envelope, reply])
            return [int(u) for u in request.commands["user"]]

        try:
            assert await link.watch.wait_connected(5)

            def order(user: int) -> asyncio.Task[Any]:
                record = commands.pack(CommandKind.CANCEL, user, 0, order_id=1)
                return asyncio.get_running_loop().create_task(link.command(record))

            first = order(1)
            in_flight = await router.recv_multipart()  # sent at once, left unanswered
            later = [order(u) for u in (2, 3, 4, 5)]
            await asyncio.sleep(0.1)
            assert not await router.poll(100)  # held while the first is in flight
            assert await answer(in_flight) == [1]
            assert (await first).code == 0
            assert await answer() == [2, 3, 4, 5]  # one frame, in order
            assert [(await t).code for t in later] == [0, 0, 0, 0]
        finally:
            await link.aclose()
            router.close(0)

    asyncio.run(main())


def test_a_bug_in_a_method_is_code_2_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with gateway(f"ipc://{tmp_path}/n.sock") as (url, gw), aiohttp.ClientSession() as s:

            def broken() -> None:
                raise RuntimeError("planted")

            monkeypatch.setattr(gw.methods.codec, "asset_list", broken)
            status, body = await post(s, url, call("asset.list", rid=3))
            assert status == 200
            assert json.loads(body)["error"] == {"code": 2, "message": "internal error"}

    asyncio.run(main())
    assert "asset.list failed" in caplog.text
