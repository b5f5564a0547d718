"""``matchd-bench e2e``: clients over ZeroMQ on loopback against a running daemon.

It starts ``matchd serve`` (``fsync = batch`` by default) on a fresh data directory
with the core benchmark's market, funds the users and runs the warm-up over the wire,
then measures, in one run, from one client process:

1. **batched**, closed loop: frames of ``--batch`` commands (default 1,024), with
   ``--window`` frames in flight (default 8);
2. **single**, closed loop: one command per frame, ``--window-single`` in flight
   (default 256);
3. **open loop** at ``--rate`` orders/s (default 50,000), one command per frame, sent
   on a fixed schedule; each latency runs from the command's *intended* send time, so
   a stall of the server or the client counts against it (no coordinated omission).
   Between sends the client sleeps (at most 50 µs) rather than spin, so that it
   does not take the cores the daemon needs.

In the one-order runs the frames are encoded before the clock starts and the
replies decoded after it stops: the client's own Python per frame is a send, a
receive and two clock reads, so that it measures the daemon, not itself.

Latency is send to durable acknowledgement, per command, in an HdrHistogram
(p50/p99/p99.9/max). It also reports the trades seen and the CPU seconds of the
server and of the client. Every figure is on this machine with client and server
sharing its cores. ``--replication async|sync`` runs a hot standby beside the daemon
(``tools.bench_replication``): compare its runs with those of ``--replication none``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from core.schema import EventKind
from ipc import wire, wire_batch
from tools.bench_core import machine_info
from tools.bench_feed_load import FeedUnderLoad
from tools.bench_history_load import DrainUnderLoad
from tools.bench_replication import StandbyUnderLoad
from tools.bench_stream import (
    CONFIG_TOML,
    DEPOSIT_MONEY,
    DEPOSIT_STOCK,
    MONEY,
    STOCK,
    USERS,
    generate,
)

_MAX_US = 60_000_000  # histogram range: 1 µs .. 60 s
#: The open loop's longest sleep when idle; replies waiting that long count in their
#: latencies, so it is short (Linux sleeps at least ~60 µs anyway).
_NAP_NS = 50_000


class _Client:
    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 0)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self.socket.connect(endpoint)
        self.next_id = 0

    def send(self, frame_for: Any) -> int:
        self.next_id += 1
        self.socket.send(frame_for(self.next_id), copy=False)
        return self.next_id

    def receive(self, timeout_ms: int = 60_000) -> Any:
        if not self.socket.poll(timeout_ms):
            raise TimeoutError(f"no reply from the daemon in {timeout_ms} ms")
        return wire.decode_reply(self.socket.recv())

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


def _start_daemon(
    work: Path, endpoint: str, fsync: str, workers: str, extra_config: str = ""
) -> subprocess.Popen[bytes]:
    config = work / "bench.toml"
    config.write_text(CONFIG_TOML + extra_config, encoding="utf-8")
    log = work / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(  # noqa: S603 -- our own command, fixed arguments
            [
                sys.executable,
                "-m",
                "daemon.cli",
                "serve",
                "--config",
                str(config),
                "--data-dir",
                str(work / "data"),
                "--endpoint",
                endpoint,
                "--fsync",
                fsync,
                "--metrics",
                "127.0.0.1:0",
                "--workers",
                workers,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300  # a first start may compile the kernels
    while "serving" not in log.read_text(errors="replace"):
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            raise RuntimeError("the daemon did not start:\n" + log.read_text()[-4000:])
        time.sleep(0.05)
    return daemon


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and of its running children (the pair workers)."""
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for p in [pid, *map(int, children)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _fund_and_warm(client: _Client, warmup: np.ndarray) -> None:
    calls: list[wire.Call] = [
        wire.BalanceUpdate(user=u, asset=a, business="deposit", business_id=u, change=c)
        for u in range(1, USERS + 1)
        for a, c in ((STOCK, DEPOSIT_STOCK), (MONEY, DEPOSIT_MONEY))
    ]
    for start in range(0, len(calls), 500):
        client.send(lambda rid, s=start: wire.encode_calls(calls[s : s + 500], rid))
        client.receive()
    for start in range(0, len(warmup), 1024):
        client.send(lambda rid, s=start: wire.encode_commands(warmup[s : s + 1024], rid))
        client.receive()


def _trades(reply: Any) -> int:
    if not isinstance(reply, wire.ResultsFrame):
        raise RuntimeError(f"the daemon answered {reply!r}")
    events = reply.events
    return int(np.count_nonzero(events["kind"] == int(EventKind.DEAL))) if len(events) else 0


def closed_loop(client: _Client, cmds: np.ndarray, batch: int, window: int) -> dict[str, Any]:
    """Frames of ``batch`` commands, ``window`` in flight."""
    if batch == 1:
        return _single_loop(client, cmds, window, None) | {"batch": 1, "window": window}
    hist = HdrHistogram(1, _MAX_US, 3)
    sent: dict[int, tuple[int, int]] = {}
    n = len(cmds)
    at = 0
    done = 0
    trades = 0
    t0 = time.perf_counter_ns()
    while done < n:
        while at < n and len(sent) < window:
            chunk = cmds[at : at + batch]
            rid = client.send(lambda r, c=chunk: wire.encode_commands(c, r, events=True))
            sent[rid] = (time.perf_counter_ns(), len(chunk))
            at += len(chunk)
        reply = client.receive()
        start, count = sent.pop(reply.request_id)
        hist.record_value(max(1, (time.perf_counter_ns() - start) // 1000), count)
        trades += _trades(reply)
        done += count
    seconds = (time.perf_counter_ns() - t0) / 1e9
    return _figures(n, seconds, trades, hist) | {"batch": batch, "window": window}


def open_loop(client: _Client, cmds: np.ndarray, rate: float) -> dict[str, Any]:
    """One command per frame at ``rate`` per second, latency from the intended time."""
    return _single_loop(client, cmds, 0, rate) | {"target_rate": rate}


def _single_loop(
    client: _Client, cmds: np.ndarray, window: int, rate: float | None
) -> dict[str, Any]:
    """One command per frame: closed loop with ``window`` in flight (``rate`` None), or
    open loop at ``rate`` per second, each latency then running from the command's intended send
    time. The frames are encoded before the clock starts and the replies decoded after
    it stops, so the client's Python per frame is a send, a receive and two clock
    reads; a command's reply is found by its request id (its index + 1)."""
    n = len(cmds)
    base = client.next_id + 1
    client.next_id += n
    rids = np.arange(base, base + n, dtype=np.uint64)
    frames = [row.tobytes() for row in wire_batch.encode_singles(cmds, rids, events=True)]
    sent_ns = np.zeros(n, dtype=np.int64)
    done_ns = np.zeros(n, dtype=np.int64)
    replies: list[bytes] = []
    socket = client.socket
    send, recv, clock = socket.send, socket.recv, time.perf_counter_ns
    at = done = 0
    t0 = clock()
    if rate is None:
        while done < n:
            while at < n and at - done < window:
                send(frames[at])
                sent_ns[at] = clock()
                at += 1
            if not socket.poll(60_000):
                raise TimeoutError("no reply from the daemon in 60 s")
            reply = recv()
            done_ns[int.from_bytes(reply[16:24], "little") - base] = clock()
            replies.append(reply)
            done += 1
    else:
        interval = 1e9 / rate
        sent_ns[:] = t0 + (np.arange(n) * interval).astype(np.int64)  # intended times
        last_reply = t0
        while done < n:
            now = clock()
            due = min(n, int((now - t0) / interval) + 1)
            while at < due:
                send(frames[at])
                at += 1
            got = 0
            while True:
                try:
                    reply = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = clock()
                done_ns[int.from_bytes(reply[16:24], "little") - base] = now
                replies.append(reply)
                got += 1
            done += got
            if got:
                last_reply = now
            elif now - last_reply > 60_000_000_000:
                raise TimeoutError("no reply from the daemon in 60 s")
            else:  # sleep (not spin: the daemon needs the cores) till a send is due
                time.sleep(max(0.0, min(t0 + at * interval - now, _NAP_NS)) / 1e9)
    seconds = (clock() - t0) / 1e9
    hist = HdrHistogram(1, _MAX_US, 3)
    for us in np.maximum(1, (done_ns - sent_ns) // 1000).tolist():
        hist.record_value(us)
    trades = sum(_trades(wire.decode_reply(r)) for r in replies)
    return _figures(n, seconds, trades, hist)


def _figures(n: int, seconds: float, trades: int, hist: HdrHistogram) -> dict[str, Any]:
    return {
        "orders": n,
        "orders_per_s": round(n / seconds, 1),
        "trades": trades,
        "trades_per_s": round(trades / seconds, 1),
        "latency_us": {
            "p50": hist.get_value_at_percentile(50),
            "p99": hist.get_value_at_percentile(99),
            "p99_9": hist.get_value_at_percentile(99.9),
            "max": hist.get_max_value(),
        },
        # The percentile distribution, for the plot: [percentile, µs].
        "latency_curve_us": [[p, hist.get_value_at_percentile(p)] for p in _CURVE],
    }


#: Percentiles of the latency plot (100 = the maximum).
_CURVE = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)


def plot_latency(report: dict[str, Any], path: Path) -> str | None:
    """Write the latency percentile plot (one curve per run, x as 1/(1-p), log);
    returns a note if it could not be made."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: the latency plot was skipped"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, run in report["runs"].items():
        curve = [(p, v) for p, v in run["latency_curve_us"] if p < 100.0]
        xs = [1.0 / (1.0 - p / 100.0) for p, _ in curve]
        ys = [v / 1000.0 for _, v in curve]
        label = f"{name}: {run['orders_per_s'] / 1e3:.1f} k orders/s"
        ax.plot(xs, ys, marker="o", ms=3, label=label)
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("send to durable acknowledgement (ms)")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"matchd e2e, workers {report.get('workers', '0')}, fsync {report['fsync']}, "
        f"replication {report.get('replication', 'none')}, {report['date']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the report (JSON with ``--json``)."""
    if args.busy_duty is not None and not args.history:
        print("matchd-bench e2e: --busy-duty needs --history", file=sys.stderr)
        return 2
    if args.feed_nice and not args.feed:
        print("matchd-bench e2e: --feed-nice needs --feed", file=sys.stderr)
        return 2
    stream = generate(args.commands, args.seed, 20_000, [], 0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matchd-bench-e2e-", dir=out))
    endpoint = f"ipc://{work}/orders.sock"
    companions = _companions(args, work)
    extra = "".join(c.create() for c in companions.values())
    daemon = _start_daemon(work, endpoint, args.fsync, args.workers, extra)
    client = _Client(endpoint)
    runs: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    try:
        # Before any write: a sync primary refuses them until its standby follows.
        for key, companion in companions.items():
            companion.start(work / "bench.toml", work / "data", endpoint, work / f"{key}.log")
        _fund_and_warm(client, stream.warmup)
        runs = _runs(client, daemon, stream.commands, args)
        for key, companion in companions.items():
            measured[key] = companion.finish()
    finally:
        for key, companion in companions.items():
            if key not in measured:
                companion.close()
        client.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "e2e",
        "what": "matchd serve (journal + ZeroMQ order entry, and its pair workers if any) "
        "and one client process over ipc:// on this machine",
        "fsync": args.fsync,
        "workers": args.workers,
        "replication": args.replication,
        "runs": runs,
        **measured,
        "seed": args.seed,
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    note = plot_latency(report, out / "e2e-latency.png")
    report["plot"] = note or "e2e-latency.png"
    text = json.dumps(report, indent=2)
    (out / "e2e.json").write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        for name, r in runs.items():
            lat = r["latency_us"]
            print(
                f"{name:<9} {r['orders_per_s'] / 1e3:9.1f} k orders/s  "
                f"{r['trades_per_s'] / 1e3:7.1f} k trades/s  p50 {lat['p50']} us "
                f"p99 {lat['p99']} us p99.9 {lat['p99_9']} us "
                f"max {lat['max']} us  cpu server {r['cpu_seconds']['server']} s client "
                f"{r['cpu_seconds']['client']} s of {r['cpu_seconds']['wall']} s"
            )
        for key in measured:
            print(f"{key}: {json.dumps(measured[key])}")
    return 0


def _companions(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The processes beside the daemon, each measured under the load: report key -> it."""
    companions: dict[str, Any] = {}
    if args.history:
        companions["history_drain"] = DrainUnderLoad(_cpu_seconds, busy_duty=args.busy_duty)
    if args.feed:
        companions["feed"] = FeedUnderLoad(work, nice=args.feed_nice)
    if args.replication != "none":  # last: it stops after the others have caught up
        companions["standby"] = StandbyUnderLoad(args.replication, work, _cpu_seconds)
    return companions


def _runs(client: Any, daemon: Any, cmds: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The three runs (batched, one per frame, open loop) with their CPU seconds."""
    third = len(cmds) // 3
    rest = cmds[2 * third : 2 * third + args.open_commands]
    runs = {}
    for name in ("batched", "single", "open_loop"):
        server0, client0 = _cpu_seconds(daemon.pid), _client_cpu()
        t0 = time.perf_counter()
        if name == "batched":
            figures = closed_loop(client, cmds[:third], args.batch, args.window)
        elif name == "single":
            figures = closed_loop(client, cmds[third : 2 * third], 1, args.window_single)
        else:
            figures = open_loop(client, rest, args.rate)
        wall = time.perf_counter() - t0
        figures["cpu_seconds"] = {
            "server": round(_cpu_seconds(daemon.pid) - server0, 2),
            "client": round(_client_cpu() - client0, 2),
            "wall": round(wall, 2),
        }
        runs[name] = figures
    return runs
