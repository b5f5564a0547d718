"""``matchd-loadgen`` end to end: generator processes against a running daemon over HTTP
and ZeroMQ, the JSON and PNG it writes, and the soak checks, which pass against matchd
and fail against a deliberately broken server (a proxy that acknowledges an order it
never forwards, a deposit it never forwards, or lies about the depth)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway_daemon import Daemon, free_port, running_daemon
from tools import loadgen

pytestmark = pytest.mark.integration

#: The test config's BTC_USDT (tests.support.scenario): lots of 0.001 BTC.
MODEL = """\
makers = 2
takers = 4
first_user = 10
[[markets]]
name = "BTC_USDT"
stock = "BTC"
money = "USDT"
stock_prec = 6
money_prec = 2
min_amount = "0.001"
start_price = "30000"
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("loadgen")) as d:
        yield d


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("model") / "model.toml"
    path.write_text(MODEL)
    return str(path)


def run(out: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    code = loadgen.main(["--out", str(out), "--quiet", "--settle", "15", *argv])
    return code, json.loads((out / "loadgen.json").read_text())


def test_an_open_loop_run_over_http_passes_the_soak_and_writes_json_and_png(
    daemon: Daemon, model: str, tmp_path: Path
) -> None:
    code, summary = run(
        tmp_path, "--url", daemon.http_url, "--model", model, "--rate", "400",
        "--duration", "2", "--processes", "2", "--soak", "--seed", "5",
    )  # fmt: skip
    assert code == 0, summary["soak"]
    latency = summary["latency"]
    assert summary["mode"] == "open"
    assert summary["sent"] == pytest.approx(800, abs=2)
    assert latency["count"] + latency["error_count"] == summary["sent"]
    assert latency["count"] > 700
    # Only the market's answers, never a generic error (1 invalid argument, 2 internal,
    # 3 unavailable): the two generators share the users and each walks its own mid, so
    # a cancel can find its order filled (10), a put or a withdrawal can find the funds
    # frozen by the other generator (10, 11), and a market buy sized at one generator's
    # far level can be too small at the other's best price (11) or find no asks (12).
    expected = {
        "order.cancel": {"10"},
        "order.put_limit": {"10"},
        "order.put_market": {"10", "11", "12"},
        "balance.update": {"11"},
    }
    for method, stats in latency["per_method"].items():
        assert set(stats["errors"]) <= expected[method], method
    assert {"order.put_limit", "order.cancel", "balance.update"} <= set(latency["per_method"])
    assert latency["p50_us"] <= latency["p99_us"] <= latency["max_us"]
    assert summary["soak"]["ok"]
    assert summary["soak"]["checked"]["orders"] > 200
    assert summary["failed_processes"] == {}
    assert len(summary["commit"]) == 40
    assert isinstance(summary["dirty"], bool)
    names = [p["name"] for p in summary["daemon_cpu"]]
    assert any(n.startswith("matchd serve") for n in names), names
    assert len(summary["generator_cpu_s"]) == 2
    assert (tmp_path / "loadgen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_closed_loop_run_over_zeromq_passes_the_soak(
    daemon: Daemon, model: str, tmp_path: Path
) -> None:
    code, summary = run(
        tmp_path, "--transport", "zmq", "--config", str(daemon.config),
        "--engine", daemon.endpoint, "--model", model, "--closed", "--in-flight", "8",
        "--duration", "1.5", "--soak",
    )  # fmt: skip
    assert code == 0, summary["soak"]
    assert summary["mode"] == "closed"
    assert summary["target_rate_per_s"] is None
    assert summary["latency"]["count"] > 100
    assert summary["soak"]["ok"]


def test_websocket_readers_query_and_count_pushes_beside_the_writes(
    daemon: Daemon, model: str, tmp_path: Path
) -> None:
    code, summary = run(
        tmp_path, "--url", daemon.http_url, "--model", model, "--rate", "200",
        "--duration", "2", "--ws", daemon.ws_url, "--ws-sessions", "3", "--ws-query-interval", "0",
    )  # fmt: skip
    assert code == 0
    methods = summary["latency"]["per_method"]
    for query in ("depth", "price", "deals", "state", "today", "kline"):
        assert methods[f"ws {query}.query"]["count"] > 0, query
        assert methods[f"ws {query}.query"]["errors"] == {}, query
    assert methods["ws deal delay"]["count"] > 0
    pushes = summary["ws_pushes"]
    assert pushes["deals.update"] >= 3  # at least each session's history
    assert pushes["depth.update"] > 3  # and changes after the first
    assert {"price.update", "state.update"} <= set(pushes)


# ------------------------------------------------------------------ the broken server


class BrokenProxy:
    """A JSON-RPC proxy to ``upstream`` with one ``fault``:

    - ``lost-order``: every 10th order.put_limit is acknowledged with a made-up order
      and never forwarded (an acknowledged order the server does not have);
    - ``phantom-deposit``: every 5th deposit is acknowledged and never forwarded;
    - ``wrong-depth``: order.depth answers one more lot at its best ask.
    """

    def __init__(self, upstream: str, fault: str) -> None:
        self.upstream = upstream
        self.fault = fault
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.counts: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> BrokenProxy:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        async with aiohttp.ClientSession() as self._session:
            self._ready.set()
            await self._stop.wait()
        await runner.cleanup()

    def _nth(self, what: str, n: int) -> bool:
        self.counts[what] = self.counts.get(what, 0) + 1
        return self.counts[what] % n == 0

    async def _handle(self, request: web.Request) -> web.Response:
        call = await request.json()
        method, params = call.get("method"), call.get("params")
        if self.fault == "lost-order" and method == "order.put_limit" and self._nth(method, 10):
            made_up = {"id": 10**12 + self.counts[method], "left": params[3], "deal_stock": "0"}
            return web.json_response({"error": None, "result": made_up, "id": call["id"]})
        deposit = method == "balance.update" and params[2] == "deposit"
        if self.fault == "phantom-deposit" and deposit and self._nth("deposit", 5):
            ok = {"status": "success"}
            return web.json_response({"error": None, "result": ok, "id": call["id"]})
        async with self._session.post(self.upstream, json=call) as response:
            answer = await response.json()
        if self.fault == "wrong-depth" and method == "order.depth" and answer["result"]["asks"]:
            price, amount = answer["result"]["asks"][0]
            answer["result"]["asks"][0] = [price, str(Decimal(amount) + Decimal("0.001"))]
        return web.json_response(answer, status=response.status)


@pytest.mark.parametrize(
    ("fault", "check"),
    [("lost-order", "orders"), ("phantom-deposit", "funds"), ("wrong-depth", "depth")],
)
def test_the_soak_fails_against_a_broken_server(
    daemon: Daemon, model: str, tmp_path: Path, fault: str, check: str
) -> None:
    with BrokenProxy(daemon.http_url, fault) as proxy:
        code, summary = run(
            tmp_path, "--url", proxy.url, "--model", model, "--rate", "200",
            "--duration", "1.5", "--soak", "--settle", "1", "--connections", "4",
        )  # fmt: skip
    soak = summary["soak"]
    assert code == 1
    assert not soak["ok"]
    assert set(soak["violations"]) == {check}, soak["violations"]
