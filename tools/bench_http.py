"""``matchd-bench http``: order.put_limit over the HTTP JSON-RPC gateway.

It starts its own ``matchd run`` (a temporary data directory, the core benchmark's
market XBT_USD, no history, no feed, only ``[http]`` with ``--workers`` worker
processes and no per-address rate limit, ``--fsync`` batch by default), or uses a
running one (``--url``; ``--daemon-pid`` then names its supervisor for the CPU figures).
It funds ``--users`` users (balance.update in batches), then measures closed loops for
each number of connections in ``--connections`` (default 1, 4 and 16): each connection
is one asyncio task with one keep-alive connection (one aiohttp ClientSession,
``TCPConnector(limit=connections)``) sending its next request when the previous one
is answered, for ``--duration`` seconds, first with one JSON-RPC request per HTTP
request (``single``), then with JSON-RPC batches (arrays) of ``--batch`` requests.

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
duration, and CPU seconds: of the client processes and, where ``/proc`` shows them, of
the daemon's processes (supervisor, server, http workers, ...), also as the share of
one core each was busy (``busy``). ``bound`` names what ran out first: ``client`` when
a client process was busy more than 85% of the time, else ``http worker`` or
``engine`` when one of those processes was, else ``cpu`` when all the machine's cores
were (other processes too: ``machine_busy``), else ``latency``: a closed loop with too
few connections waits more than it works. Every figure is on this machine with client
and daemon sharing its cores; ``--client-procs 2`` spreads the connections over two
client processes (each on uvloop, as the gateway is).
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
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(_positive_int(part) for part in text.split(","))


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


def _histogram() -> Any:
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

    return HdrHistogram(1, _MAX_US, 3)


class Connection:
    """One connection's order cycle (see the module docstring) and its bookkeeping.

    A request's id is ``4 * n + kind`` (kind 0 the bid at P, 1 the ask at P, 2 the
    resting bid, 3 the cancel), so that a reply says what it answers."""

    def __init__(self, plan: Plan, user: int) -> None:
        self.plan = plan
        self.user = user
        self.step = 0
        self.resting: collections.deque[int] = collections.deque()

    def commands(self, n: int) -> list[dict[str, Any]]:
        p = self.plan
        out: list[dict[str, Any]] = []
        while len(out) < n:
            kind = self.step % 4
            self.step += 1
            rid = 4 * self.step + kind
            if kind == 3:
                if self.resting:  # else: nothing of ours rests yet; skip the cancel
                    params: list[Any] = [self.user, p.market, self.resting.popleft()]
                    out.append({"method": "order.cancel", "params": params, "id": rid})
                continue
            side, price = ((2, p.price), (1, p.price), (2, p.rest_price))[kind]
            params = [self.user, p.market, side, p.amount, price, "0.001", "0.001", "bench"]
            out.append({"method": "order.put_limit", "params": params, "id": rid})
        return out

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


async def _connection_loop(
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
        t1 = clock()
        tally.requests += 1
        tally.commands += len(cmds)
        tally.orders += sum(1 for c in cmds if c["method"] == "order.put_limit")
        tally.hist.record_value(max(1, (t1 - t0) // 1000))
        tally.first_ns = tally.first_ns or t0
        tally.last_ns = t1
        if status != 200:
            tally.http_errors[str(status)] += 1
            continue
        answer = _decode(data)
        conn.note(answer if isinstance(answer, list) else [answer], tally)


async def _run_connections(
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
        await asyncio.gather(
            *(_connection_loop(session, url, c, batch, end_ns, tally) for c in conns)
        )
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


def client_process(
    url: str, plan: Plan, users: list[int], batch: int, start_at: float, duration_s: float
) -> dict[str, Any]:
    """One client process's share of a case (run in a child by multiprocessing)."""
    import uvloop

    tally = uvloop.run(_run_connections(url, plan, users, batch, start_at, duration_s))
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
        tally.add_wire(client_process(url, plan, shares[0], batch, start_at, args.duration))
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(len(shares)) as pool:
            jobs = [
                pool.apply_async(client_process, (url, plan, s, batch, start_at, args.duration))
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
        "what": "order.put_limit over HTTP JSON-RPC keep-alive connections (aiohttp "
        "client, closed loop), single requests and JSON-RPC batches",
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
    print(f"matchd-bench http: {report['url']}, market {report['market']}")
    for case in report["cases"]:
        lat, cpu = case["latency_us"], case["cpu_seconds"]
        print(
            f"conns {case['connections']:>3} batch {case['batch']:>4}: "
            f"{case['orders_per_s'] / 1e3:8.1f} k orders/s  {case['requests_per_s']:9.1f} req/s  "
            f"p50 {lat['p50']} us p99 {lat['p99']} us max {lat['max']} us  "
            f"errors {case['errors'] or '-'} {case['http_errors'] or ''}  "
            f"cpu client {cpu['client']} s daemon {cpu['daemon']} s of "
            f"{case['duration_s']} s  bound: {case['bound']}"
        )


__all__ = ["add_parser", "main", "measure", "own_daemon"]
