"""``matchd-bench http``: order.put_limit over the HTTP JSON-RPC gateway.

It starts its own ``matchd run`` (a temporary data directory, the core benchmark's
market XBT_USD, no history, no feed, only ``[http]`` with ``--workers`` worker
processes and no per-address rate limit, ``--fsync`` batch by default), or uses a
running one (``--url``; ``--daemon-pid`` then names its supervisor for the CPU figures).
It funds ``--users`` users (balance.update in batches), then measures closed loops for
each number of connections in ``--connections`` (default 1, 4 and 16): each connection
is one keep-alive connection sending its next request when the previous one is
answered, for ``--duration`` seconds, first with one JSON-RPC request per HTTP request
(``single``), then with JSON-RPC batches (arrays) of ``--batch`` requests.

The client should cost little next to the gateway it measures, as both share the
machine's cores. ``--client raw`` (the default) is a minimal HTTP/1.1 client on an
asyncio Protocol: each request is a prebuilt head (``POST``, ``Host``, ``Content-Type``,
``Content-Length``) and a body formatted into JSON templates of the connection's
commands (only the request id and a cancel's order id vary); each response is framed
by its status line and Content-Length alone and decoded by msgspec into just the
fields looked at (error code, order id, ``left``); the response's callback sends the
next request (no task or future per request). A response without Content-Length (or
with Transfer-Encoding), with ``Connection: close``, answering no request, or a
connection lost or silent for 60 s counts in ``http_errors`` by kind, and the
connection is reopened. ``--client aiohttp`` is the first client, kept for comparison:
one asyncio task per connection over one aiohttp ClientSession
(``TCPConnector(limit=connections)``), requests built as dicts and replies decoded
whole: several times the CPU per request (``client_cpu_us_per_request``).

The mix keeps the book bounded. Each connection trades as its own user and cycles
through: a bid at P, an ask at P (it takes that bid, or another connection's, or
rests to be taken by the next bid: the resting volume at P stays within a few orders
per connection), a bid at 0.99 P (it rests) and a cancel of the oldest such resting
bid whose id an earlier reply gave. So three commands in four are put_limit, one
crossing in two of those trades, and one in four is a cancel. After each case,
order.cancel_all clears every user's orders (a cycle cut short may leave one at P).

Per case: put_limit accepted per second (``orders_per_s``) and all commands answered
without error per second (``commands_per_s``), errors by JSON-RPC code and by HTTP
status, the latency of each HTTP request in an HdrHistogram (p50, p99, max), the
duration, and CPU seconds: of the client processes (also per HTTP request) and, where
``/proc`` shows them, of the daemon's processes (supervisor, server, http workers,
...), also as the share of one core each was busy (``busy``). ``bound`` names what ran
out first: ``client`` when a client process was busy more than 85% of the time, else
``http worker`` or ``engine`` when one of those processes was, else ``cpu`` when all
the machine's cores were (other processes too: ``machine_busy``), else ``latency``: a
closed loop with too few connections waits more than it works. Every figure is on this
machine with client and daemon sharing its cores; ``--client-procs 2`` spreads the
connections over two client processes (each on uvloop, as the gateway is).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tools.bench_args import int_list as _int_list
from tools.bench_args import positive_int as _positive_int
from tools.raw_http import HttpClientProtocol, HttpFailure, Target

# aiohttp, uvloop, hdrh and the engine's modules are imported where they are used, so
# that ``matchd-bench --help`` (tools.bench builds this parser) stays quick.
if TYPE_CHECKING:
    import aiohttp

_MAX_US = 60_000_000  # histogram range: 1 µs .. 60 s
_DEPOSIT_STOCK = Decimal(1000)  # per user, the asset's units
_DEPOSIT_MONEY = Decimal(10_000_000)
_PRICE = Decimal(100)  #: P, in the market's money (far from any funds limit)
_REST_PRICE = Decimal(99)  #: the resting bids' price
_DEPOSIT_BATCH = 100
_QUICK_DURATION_S = 0.5
_QUICK_CONNECTIONS = (1, 4)
_QUICK_USERS = 8
#: A process busy this share of one core (or the machine of all its cores) is the bound.
_SATURATED = 0.85
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def add_parser(commands: Any) -> None:
    """The ``http`` subcommand of ``matchd-bench`` (``tools.bench``)."""
    http = commands.add_parser(
        "http",
        help="order.put_limit over the HTTP JSON-RPC gateway: connections x batching",
        description="Benchmark the HTTP JSON-RPC gateway: accepted orders/s, errors and "
        "per-request latency for 1, 4 and 16 keep-alive connections, single requests "
        "and JSON-RPC batches.",
    )
    http.add_argument("--json", action="store_true", help="print the results as JSON")
    http.add_argument(
        "--url", default=None,
        help="a running daemon's HTTP gateway (default: start matchd run here)",
    )  # fmt: skip
    http.add_argument(
        "--daemon-pid", type=int, default=None, metavar="PID",
        help="with --url: the daemon's supervisor, for its CPU seconds",
    )  # fmt: skip
    http.add_argument(
        "--workers", type=_positive_int, default=1, metavar="N",
        help="HTTP worker processes of the daemon started here (default 1)",
    )  # fmt: skip
    http.add_argument("--fsync", choices=("always", "batch", "none"), default="batch")
    http.add_argument(
        "--connections", type=_int_list, default=(1, 4, 16), metavar="A,B,C",
        help="keep-alive connections per case (default 1,4,16)",
    )  # fmt: skip
    http.add_argument(
        "--batch", type=_positive_int, default=100, metavar="N",
        help="requests per JSON-RPC batch in the batched cases (default 100; 1: no "
        "batched cases)",
    )  # fmt: skip
    http.add_argument(
        "--duration", type=float, default=5.0, metavar="S",
        help="seconds per case (default 5)",
    )  # fmt: skip
    http.add_argument(
        "--users", type=_positive_int, default=64, metavar="N",
        help="users funded and trading, one per connection in turn (default 64)",
    )  # fmt: skip
    http.add_argument(
        "--client-procs", type=_positive_int, default=1, metavar="N",
        help="client processes the connections are spread over (default 1)",
    )  # fmt: skip
    http.add_argument(
        "--client", choices=tuple(_CLIENTS), default="raw",
        help="raw: a minimal HTTP/1.1 client on an asyncio Protocol (default); aiohttp: "
        "one aiohttp ClientSession (several times the CPU per request)",
    )  # fmt: skip
    http.add_argument("--market", default=None, help="market name (default: the first)")
    http.add_argument(
        "--quick", action="store_true",
        help=f"{_QUICK_DURATION_S} s per case, connections "
        f"{','.join(map(str, _QUICK_CONNECTIONS))}, {_QUICK_USERS} users",
    )  # fmt: skip
    http.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="also write http.json there (default: nowhere)",
    )  # fmt: skip


# --------------------------------------------------------------------------- the market


@dataclass(frozen=True)
class Plan:
    """What every connection trades: on ``market``, ``amount`` at ``price`` and
    ``rest_price``, users ``first_user`` onwards."""

    market: str
    amount: str
    price: str
    rest_price: str
    first_user: int
    users: int


def _plan(market: dict[str, Any], first_user: int, users: int) -> Plan:
    places = Decimal(1).scaleb(-int(market["stock_prec"]))
    amount = max(Decimal(market["min_amount"]), places)
    return Plan(market["name"], str(amount), str(_PRICE), str(_REST_PRICE), first_user, users)


def _blocking_call(url: str, method: str, params: list[Any]) -> Any:
    """``method(*params)``'s result over one plain HTTP request; raises on an error."""
    body = _encode({"method": method, "params": params, "id": 1})
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        answer = _decode(response.read())
    if answer["error"] is not None:
        raise RuntimeError(f"{method}{params}: {answer['error']}")
    return answer["result"]


def _fund(url: str, market: dict[str, Any], plan: Plan) -> int:
    """Deposit both assets for every user (JSON-RPC batches); returns the deposits."""
    business_id = time.time_ns() // 1000  # a new key on every run against one daemon
    calls: list[dict[str, Any]] = []
    for user in range(plan.first_user, plan.first_user + plan.users):
        for asset, amount in ((market["stock"], _DEPOSIT_STOCK), (market["money"], _DEPOSIT_MONEY)):
            business_id += 1
            params = [user, asset, "deposit", business_id, str(amount), {}]
            calls.append({"method": "balance.update", "params": params, "id": len(calls)})
    for start in range(0, len(calls), _DEPOSIT_BATCH):
        chunk = calls[start : start + _DEPOSIT_BATCH]
        request = urllib.request.Request(url, data=_encode(chunk), method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            answers = _decode(response.read())
        bad = [a["error"] for a in answers if a["error"] is not None]
        if bad:
            raise RuntimeError(f"deposits refused: {bad[:3]}")
    return len(calls)


# --------------------------------------------------------------------------- the client


@dataclass
class Tally:
    """What one client process counted in one case."""

    requests: int = 0
    commands: int = 0
    ok: int = 0
    orders: int = 0  #: put_limit sent
    accepted: int = 0  #: put_limit answered without error
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    http_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    first_ns: int = 0
    last_ns: int = 0
    cpu_s: float = 0.0
    hist: Any = field(default_factory=lambda: _histogram())

    def to_wire(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "hist"}
        out["hist"] = base64.b64encode(self.hist.encode()).decode()
        return out

    def add_wire(self, other: dict[str, Any]) -> None:
        for key in ("requests", "commands", "ok", "orders", "accepted"):
            setattr(self, key, getattr(self, key) + other[key])
        self.errors.update(other["errors"])
        self.http_errors.update(other["http_errors"])
        self.first_ns = min(self.first_ns or other["first_ns"], other["first_ns"])
        self.last_ns = max(self.last_ns, other["last_ns"])
        self.cpu_s += other["cpu_s"]
        self.hist.decode_and_add(base64.b64decode(other["hist"]))

    def exchanged(self, t0: int, t1: int, commands: int, orders: int) -> None:
        """One HTTP request answered (whatever its status): sent at ``t0``, answered at
        ``t1`` (perf_counter ns), carrying ``commands`` commands, ``orders`` of them
        put_limit."""
        self.requests += 1
        self.commands += commands
        self.orders += orders
        self.hist.record_value(max(1, (t1 - t0) // 1000))
        self.first_ns = self.first_ns or t0
        self.last_ns = t1


def _histogram() -> Any:
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

    return HdrHistogram(1, _MAX_US, 3)


class _Error(msgspec.Struct):
    code: Any = None


class _Result(msgspec.Struct):
    """The two fields of an order (put_limit's and cancel's result) the client needs."""

    id: int = 0
    left: str = "0"


class _Answer(msgspec.Struct):
    """A JSON-RPC reply, decoded into only what the client looks at (the order's other
    fields are skipped, not built)."""

    error: _Error | None = None
    result: _Result | None = None
    id: int | None = None


_decode_answers = msgspec.json.Decoder(_Answer | list[_Answer]).decode


class Connection:
    """One connection's order cycle (see the module docstring) and its bookkeeping.

    A request's id is ``4 * n + kind`` (kind 0 the bid at P, 1 the ask at P, 2 the
    resting bid, 3 the cancel), so that a reply says what it answers. ``commands`` and
    ``note`` speak dicts (the aiohttp client); ``body`` and ``note_body`` bytes (the raw
    client: each request formatted into JSON templates, each reply decoded into
    ``_Answer``)."""

    def __init__(self, plan: Plan, user: int) -> None:
        self.plan = plan
        self.user = user
        self.step = 0
        self.resting: collections.deque[int] = collections.deque()
        p = plan
        self._put_params = [
            [user, p.market, side, p.amount, price, "0.001", "0.001", "bench"]
            for side, price in ((2, p.price), (1, p.price), (2, p.rest_price))
        ]
        # JSON text up to the request id (put_limit) or the order id (cancel).
        puts = [
            _encode({"method": "order.put_limit", "params": q, "id": 0}) for q in self._put_params
        ]
        self._put_json = [text.removesuffix(b"0}") for text in puts]
        cancel = _encode({"method": "order.cancel", "params": [user, p.market, 0], "id": 0})
        self._cancel_json = cancel.removesuffix(b'0],"id":0}')

    def _take(self, n: int) -> list[tuple[int, int]]:
        """The next ``n`` commands: (request id, the order id a cancel cancels, else 0)."""
        out: list[tuple[int, int]] = []
        while len(out) < n:
            kind = self.step % 4
            self.step += 1
            rid = 4 * self.step + kind
            if kind != 3:
                out.append((rid, 0))
            elif self.resting:  # else: nothing of ours rests yet; skip the cancel
                out.append((rid, self.resting.popleft()))
        return out

    def commands(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for rid, oid in self._take(n):
            if oid:
                params: list[Any] = [self.user, self.plan.market, oid]
                out.append({"method": "order.cancel", "params": params, "id": rid})
            else:
                params = self._put_params[rid % 4]
                out.append({"method": "order.put_limit", "params": params, "id": rid})
        return out

    def body(self, n: int) -> tuple[bytes, int]:
        """The next request's JSON body (an array when ``n`` > 1) and its put_limits."""
        items = []
        orders = 0
        for rid, oid in self._take(n):
            if oid:
                items.append(b'%b%d],"id":%d}' % (self._cancel_json, oid, rid))
            else:
                items.append(b"%b%d}" % (self._put_json[rid % 4], rid))
                orders += 1
        if n == 1:
            return items[0], orders
        return b"[" + b",".join(items) + b"]", orders

    def note(self, answers: list[Any], tally: Tally) -> None:
        for answer in answers:
            error = answer["error"]
            if error is not None:
                tally.errors[str(error["code"])] += 1
                continue
            tally.ok += 1
            kind = answer["id"] % 4
            if kind != 3:
                tally.accepted += 1
            if kind == 2 and answer["result"]["left"] != "0":
                self.resting.append(int(answer["result"]["id"]))

    def note_body(self, data: bytes, tally: Tally) -> None:
        """``note`` for a reply's JSON text."""
        try:
            decoded = _decode_answers(data)
        except msgspec.ValidationError:  # not the shape expected: look at it as it is
            answer = _decode(data)
            self.note(answer if isinstance(answer, list) else [answer], tally)
            return
        except msgspec.DecodeError:
            tally.http_errors["not JSON"] += 1
            return
        for a in decoded if isinstance(decoded, list) else (decoded,):
            if a.error is not None:
                tally.errors[str(a.error.code)] += 1
                continue
            tally.ok += 1
            kind = (a.id or 0) % 4
            if kind != 3:
                tally.accepted += 1
            if kind == 2 and a.result is not None and a.result.left != "0":
                self.resting.append(a.result.id)


# ------------------------------------------------------------------ the raw HTTP client

#: A response head longer than this is refused (the gateway's are about 150 bytes).
_REQUEST_TIMEOUT_NS = 60 * 10**9  # aiohttp's total timeout was 60 s too
_RETRY_S = 0.01  # after a failed exchange, before the next


class RawLink:
    """One keep-alive connection of the raw client (reopened when it ended) and the
    closed loop of a Connection over it: ``run`` sends each request from the callback
    that gets the previous one's response (no task, no future per request). ``call``
    makes one JSON-RPC request outside the loop."""

    def __init__(self, target: Target, conn: Connection, tally: Tally) -> None:
        self.target = target
        self.conn = conn
        self.tally = tally
        self.protocol: HttpClientProtocol | None = None
        self._loop = asyncio.get_running_loop()
        self._call: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self._done: asyncio.Future[None] | None = None
        self._batch = 1
        self._end_ns = 0
        self._t0 = 0
        self._orders = 0
        self._reopening: asyncio.Task[None] | None = None

    async def call(self, method: str, params: list[Any]) -> tuple[int, bytes]:
        """One JSON-RPC request's HTTP status and reply (not while ``run`` runs); raises
        HttpFailure."""
        if self.protocol is None or self.protocol.closed is not None:
            self.protocol = await self._open()
        self._call = self._loop.create_future()
        body = _encode({"method": method, "params": params, "id": 0})
        self.protocol.send(self.target.request(body))
        try:
            status, data, _ = await self._call
        finally:
            self._call = None
        return status, data

    async def run(self, batch: int, end_ns: int) -> None:
        """The closed loop until ``end_ns`` (perf_counter): it ends with the first
        response after that."""
        self._batch, self._end_ns = batch, end_ns
        self._done = self._loop.create_future()
        try:
            self._next()
            await self._done
        finally:
            self._done = None

    def _next(self) -> None:
        """Send the next request, or end the loop (with what it raised, if anything:
        a loop that stops sending would wait forever)."""
        try:
            self._send_next()
        except Exception as exc:  # raised from where run awaits
            self._finish(exc)

    def _finish(self, exc: Exception | None = None) -> None:
        done = self._done
        if done is not None and not done.done():
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

    def _send_next(self) -> None:
        if time.perf_counter_ns() >= self._end_ns:
            self._finish()
            return
        protocol = self.protocol
        if protocol is None or protocol.closed is not None:
            self._reopening = self._loop.create_task(self._reopen())
            return
        body, self._orders = self.conn.body(self._batch)
        payload = self.target.request(body)
        self._t0 = time.perf_counter_ns()
        protocol.send(payload)

    async def _reopen(self) -> None:
        try:
            self.protocol = await self._open()
        except HttpFailure as exc:
            self.failed(exc.kind)
            return
        self._next()

    async def _open(self) -> HttpClientProtocol:
        try:
            _, protocol = await self._loop.create_connection(
                lambda: HttpClientProtocol(self), self.target.host, self.target.port
            )
        except OSError as exc:
            raise HttpFailure(type(exc).__name__) from None
        return protocol

    # The Listener of the connection.

    def response(self, status: int, body: bytes, close: bool) -> None:
        if self._call is not None:
            if not self._call.done():
                self._call.set_result((status, body, close))
            return
        tally = self.tally
        tally.exchanged(self._t0, time.perf_counter_ns(), self._batch, self._orders)
        if close:
            tally.http_errors["Connection: close"] += 1
        if status != 200:
            tally.http_errors[str(status)] += 1
        else:
            try:
                self.conn.note_body(body, tally)
            except Exception as exc:  # raised from where run awaits
                self._finish(exc)
                return
        self._next()

    def failed(self, kind: str) -> None:
        if self._call is not None:
            if not self._call.done():
                self._call.set_exception(HttpFailure(kind))
            return
        self.tally.http_errors[kind] += 1
        self._loop.call_later(_RETRY_S, self._next)

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.closed = self.protocol.closed or "closed"
            self.protocol.transport.close()


async def _watchdog(links: list[RawLink]) -> None:
    """Fail the requests of a connection that has not answered for a minute."""
    while True:
        await asyncio.sleep(1.0)
        now = time.perf_counter_ns()
        for link in links:
            p = link.protocol
            if p is not None and p.unanswered and now - p.sent_ns > _REQUEST_TIMEOUT_NS:
                p.fail("timeout")


async def _run_raw(
    url: str, plan: Plan, users: list[int], batch: int, start_at: float, duration_s: float
) -> Tally:
    tally = Tally()
    target = Target.of(url)
    links = [RawLink(target, Connection(plan, user), tally) for user in users]
    watchdog = asyncio.create_task(_watchdog(links))
    try:
        # Open every connection (and warm it) before the clock starts.
        await asyncio.gather(*(link.call("market.list", []) for link in links))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0 = _own_cpu()
        end_ns = time.perf_counter_ns() + int(duration_s * 1e9)
        await asyncio.gather(*(link.run(batch, end_ns) for link in links))
        tally.cpu_s = _own_cpu() - cpu0
        # Leave no resting orders behind (a cycle cut short may have left one at P too).
        for link in links:
            link.conn.resting.clear()
        await asyncio.gather(
            *(link.call("order.cancel_all", [link.conn.user, plan.market]) for link in links)
        )
    finally:
        watchdog.cancel()
        for link in links:
            link.close()
    return tally


# ------------------------------------------------------------------ the aiohttp client


async def _aiohttp_loop(
    session: aiohttp.ClientSession,
    url: str,
    conn: Connection,
    batch: int,
    end_ns: int,
    tally: Tally,
) -> None:
    import aiohttp

    clock = time.perf_counter_ns
    while clock() < end_ns:
        cmds = conn.commands(batch)
        body = _encode(cmds if batch > 1 else cmds[0])
        t0 = clock()
        try:
            async with session.post(url, data=body) as response:
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.http_errors[type(exc).__name__] += 1
            await asyncio.sleep(0.01)
            continue
        orders = sum(1 for c in cmds if c["method"] == "order.put_limit")
        tally.exchanged(t0, clock(), len(cmds), orders)
        if status != 200:
            tally.http_errors[str(status)] += 1
            continue
        answer = _decode(data)
        conn.note(answer if isinstance(answer, list) else [answer], tally)


async def _run_aiohttp(
    url: str, plan: Plan, users: list[int], batch: int, start_at: float, duration_s: float
) -> Tally:
    import aiohttp

    tally = Tally()
    connector = aiohttp.TCPConnector(limit=len(users), force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        conns = [Connection(plan, user) for user in users]
        # Open every connection (and warm it) before the clock starts.
        await asyncio.gather(*(_warm(session, url) for _ in conns))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0 = _own_cpu()
        end_ns = time.perf_counter_ns() + int(duration_s * 1e9)
        await asyncio.gather(*(_aiohttp_loop(session, url, c, batch, end_ns, tally) for c in conns))
        tally.cpu_s = _own_cpu() - cpu0
        # Leave no resting orders behind.
        await asyncio.gather(*(_cancel_all(session, url, c) for c in conns))
    return tally


async def _warm(session: aiohttp.ClientSession, url: str) -> None:
    body = _encode({"method": "market.list", "params": [], "id": 0})
    async with session.post(url, data=body) as response:
        await response.read()


async def _cancel_all(session: aiohttp.ClientSession, url: str, conn: Connection) -> None:
    """matchd's order.cancel_all for the connection's user (a cycle cut short by the
    clock may have left an order at P too)."""
    conn.resting.clear()
    call = {"method": "order.cancel_all", "params": [conn.user, conn.plan.market], "id": 0}
    async with session.post(url, data=_encode(call)) as response:
        await response.read()


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


_CLIENTS = {"raw": _run_raw, "aiohttp": _run_aiohttp}


def client_process(
    client: str,
    url: str,
    plan: Plan,
    users: list[int],
    batch: int,
    start_at: float,
    duration_s: float,
) -> dict[str, Any]:
    """One client process's share of a case (run in a child by multiprocessing)."""
    import uvloop

    run = _CLIENTS[client]
    tally = uvloop.run(run(url, plan, users, batch, start_at, duration_s))
    return tally.to_wire()


# --------------------------------------------------------------------------- the daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_daemon(workers: int, fsync: str) -> Iterator[tuple[str, int]]:
    """``matchd run`` on a temporary data directory: yields (url, supervisor pid)."""
    from tools.bench_stream import CONFIG_TOML

    work = Path(tempfile.mkdtemp(prefix="matchd-bench-http-"))
    port = _free_port()
    config = work / "bench.toml"
    config.write_text(
        CONFIG_TOML + f'\n[http]\nbind = "127.0.0.1:{port}"\nworkers = {workers}\n'
        "rate_per_ip = 0\n",
        encoding="utf-8",
    )
    log = work / "daemon.log"
    url = f"http://127.0.0.1:{port}/"
    with log.open("wb") as out:
        daemon = subprocess.Popen(  # noqa: S603 -- our own command, fixed arguments
            [
                sys.executable, "-m", "daemon.cli", "run", "--config", str(config),
                "--data-dir", str(work / "data"), "--endpoint", f"ipc://{work}/orders.sock",
                "--fsync", fsync, "--metrics", "",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # a first start may compile the kernels
        while True:
            try:
                _blocking_call(url, "asset.summary", [])  # answers once the engine is up
                break
            except (OSError, RuntimeError):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the daemon did not start:\n" + log.read_text(errors="replace")[-4000:]
                    ) from None
                time.sleep(0.1)
        yield url, daemon.pid
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (what /proc shows now)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with suppress(OSError):
            todo += map(int, Path(f"/proc/{p}/task/{p}/children").read_text().split())
    return out


def _role(pid: int) -> str:
    """A process's role from its command line (``daemon.cli ROLE``), plus its pid."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"gone-{pid}"
    words = [a.decode(errors="replace") for a in argv]
    role = words[words.index("daemon.cli") + 1] if "daemon.cli" in words[:-1] else "other"
    return f"{role}-{pid}"


def daemon_cpu(pid: int | None) -> dict[str, float] | None:
    """CPU seconds so far of the daemon's processes by role, or None if unreadable."""
    if pid is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[_role(p)] = (int(fields[11]) + int(fields[12])) / tick
    return out or None


# --------------------------------------------------------------------------- cases


def _spread(users: list[int], procs: int) -> list[list[int]]:
    return [part for part in (users[i::procs] for i in range(procs)) if part]


def run_case(
    url: str, plan: Plan, connections: int, batch: int, args: argparse.Namespace, pid: int | None
) -> dict[str, Any]:
    """One (connections, batch) case: the report's entry."""
    users = [plan.first_user + i % plan.users for i in range(connections)]
    shares = _spread(users, args.client_procs)
    start_at = time.time() + 0.3 + 0.5 * (len(shares) > 1)  # children need to start
    cpu0 = daemon_cpu(pid)
    busy0 = _machine_busy()
    tally = Tally()
    if len(shares) == 1:
        tally.add_wire(
            client_process(args.client, url, plan, shares[0], batch, start_at, args.duration)
        )
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(len(shares)) as pool:
            jobs = [
                pool.apply_async(
                    client_process, (args.client, url, plan, s, batch, start_at, args.duration)
                )
                for s in shares
            ]
            for job in jobs:
                tally.add_wire(job.get(timeout=args.duration + 120))
    cpu1 = daemon_cpu(pid)
    busy1 = _machine_busy()
    machine = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    seconds = max(1e-9, (tally.last_ns - tally.first_ns) / 1e9)
    return _figures(connections, batch, len(shares), tally, seconds, (cpu0, cpu1), machine)


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _bound(busy: dict[str, float], machine_busy: float) -> str:
    """Which resource ran out first (see the module docstring)."""
    if busy["client"] > _SATURATED:
        return "client"
    for role, what in (("http-", "http worker"), ("serve-", "engine")):
        if any(v > _SATURATED for k, v in busy.items() if k.startswith(role)):
            return what
    if machine_busy > _SATURATED:
        return "cpu (every core busy)"
    return "latency (the closed loop waits)"


def _figures(
    connections: int,
    batch: int,
    procs: int,
    tally: Tally,
    seconds: float,
    cpu: tuple[dict[str, float] | None, dict[str, float] | None],
    machine: float,
) -> dict[str, Any]:
    cpu0, cpu1 = cpu
    daemon = None
    if cpu0 is not None and cpu1 is not None:
        daemon = {k: round(v - cpu0.get(k, 0.0), 2) for k, v in cpu1.items()}
    daemon_total = sum(daemon.values()) if daemon else None
    # Share of one core each process was busy (the client: per client process).
    busy = {"client": tally.cpu_s / (seconds * procs)}
    busy |= {k: v / seconds for k, v in (daemon or {}).items() if v > 0}
    hist = tally.hist
    return {
        "connections": connections,
        "batch": batch,
        "client_processes": procs,
        "duration_s": round(seconds, 3),
        "requests": tally.requests,
        "commands": tally.commands,
        "orders": tally.orders,
        "accepted": tally.accepted,
        "orders_per_s": round(tally.accepted / seconds, 1),
        "commands_per_s": round(tally.ok / seconds, 1),
        "requests_per_s": round(tally.requests / seconds, 1),
        "client_cpu_us_per_request": round(1e6 * tally.cpu_s / max(1, tally.requests), 1),
        "errors": dict(tally.errors),
        "http_errors": dict(tally.http_errors),
        "latency_us": {
            "p50": hist.get_value_at_percentile(50),
            "p99": hist.get_value_at_percentile(99),
            "max": hist.get_max_value(),
        },
        "cpu_seconds": {
            "client": round(tally.cpu_s, 2),
            "daemon": round(daemon_total, 2) if daemon_total is not None else None,
            "daemon_by_process": daemon,
        },
        "busy": {k: round(v, 2) for k, v in busy.items()},
        "machine_busy": round(machine, 2),
        "bound": _bound(busy, machine),
    }


def _cases(args: argparse.Namespace) -> list[tuple[int, int]]:
    batches = (1, args.batch) if args.batch > 1 else (1,)
    return [(c, b) for b in batches for c in args.connections]


def measure(url: str, pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    """Fund the users and run every case against the gateway at ``url``."""
    markets = _blocking_call(url, "market.list", [])
    market = next((m for m in markets if m["name"] == args.market), None)
    if market is None and args.market is None:
        market = markets[0]
    if market is None:
        raise RuntimeError(f"no market {args.market!r} at {url}")
    plan = _plan(market, 1, args.users)
    deposits = _fund(url, market, plan)
    cases = [run_case(url, plan, c, b, args, pid) for c, b in _cases(args)]
    return {"market": market["name"], "deposits": deposits, "cases": cases}


def _apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.duration = min(args.duration, _QUICK_DURATION_S)
        args.connections = _QUICK_CONNECTIONS
        args.users = min(args.users, _QUICK_USERS)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the report (JSON with ``--json``)."""
    from tools.bench_core import machine_info
    from tools.bench_stream import USERS

    _apply_quick(args)
    if not args.duration > 0:
        print("matchd-bench http: --duration must be above 0", file=sys.stderr)
        return 2
    if args.url is None and args.users > USERS:
        print(f"matchd-bench http: at most {USERS} users here", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.url is not None:
        url, pid = args.url, args.daemon_pid
        measured = measure(url, pid, args)
    else:
        with own_daemon(args.workers, args.fsync) as (url, pid):
            measured = measure(url, pid, args)
    report = {
        "benchmark": "http",
        "what": "order.put_limit over HTTP JSON-RPC keep-alive connections (closed "
        "loop), single requests and JSON-RPC batches",
        "client": args.client,
        "url": url if args.url is not None else "own matchd run",
        "workers": args.workers if args.url is None else None,
        "fsync": args.fsync if args.url is None else None,
        "users": args.users,
        "batch": args.batch,
        "duration_per_case_s": args.duration,
        "client_processes": args.client_procs,
        **measured,
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "http.json").write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        _print_table(report)
    return 0


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"matchd-bench http: {report['url']}, market {report['market']}, {report['client']} client"
    )
    for case in report["cases"]:
        lat, cpu = case["latency_us"], case["cpu_seconds"]
        print(
            f"conns {case['connections']:>3} batch {case['batch']:>4}: "
            f"{case['orders_per_s'] / 1e3:8.1f} k orders/s  {case['requests_per_s']:9.1f} req/s  "
            f"p50 {lat['p50']} us p99 {lat['p99']} us max {lat['max']} us  "
            f"errors {case['errors'] or '-'} {case['http_errors'] or ''}  "
            f"cpu client {cpu['client']} s ({case['client_cpu_us_per_request']} us/req) "
            f"daemon {cpu['daemon']} s of "
            f"{case['duration_s']} s  bound: {case['bound']}"
        )


__all__ = ["add_parser", "main", "measure", "own_daemon"]
