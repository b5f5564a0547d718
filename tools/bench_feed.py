"""``matchd-bench feed``: the market-data feed (``daemon.feed.Feed``) over a log.

What it measures, in one process: a journal is written (untimed) from the seeded,
trade-heavy stream of ``matchd-bench drain`` (``tools.bench_drain.build_journal``),
then three runs over the same log, each timed alone:

* ``market_data``: ``MarketData.add_events`` over the decoded batches (the klines,
  deal rings and last prices: the feed's own work);
* ``feed``: ``Feed.step`` until caught up, with its ZeroMQ publisher (ipc://, one
  subscriber reading everything) and a publish every 4,096 records, no Redis;
* ``feed_redis``: the same with Redis (the local server, a database of its own,
  emptied before and after).

The report gives records/s and deals/s of each; issue 6 asks 200,000 deals/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import zmq

from daemon.feed import Feed
from daemon.feed_config import FeedConfig, RedisConfig
from feed.market_data import MarketData
from persistence.history_batch import BatchDecoder
from persistence.journal import LOG_DIR
from persistence.log_reader import LogReader
from tools.bench_core import machine_info
from tools.bench_drain import build_journal
from tools.bench_stream import bench_config

BATCH = 4096


def count_deals(log_dir: Path) -> tuple[int, int, list[Any]]:
    """(records, deals, decoded batches) of the whole log."""
    decoder = BatchDecoder(events=1 << 18)
    with LogReader(log_dir) as reader:
        records = list(reader.read(1))
    batches = [decoder.decode(records[k : k + BATCH]) for k in range(0, len(records), BATCH)]
    deals = sum(int((b.events["kind"] == 4).sum()) for b in batches)
    return len(records), deals, batches


def run_market_data(batches: list[Any]) -> float:
    """Seconds for MarketData.add_events over ``batches``."""
    md = MarketData(bench_config())
    t0 = time.perf_counter()
    for b in batches:
        md.add_events(b.events)
    return time.perf_counter() - t0


def run_feed(work: Path, data_dir: Path, redis_db: int | None) -> tuple[float, int, int]:
    """Seconds for a Feed to follow the whole log; (seconds, messages received,
    messages dropped)."""
    config = FeedConfig(pub=f"ipc://{work}/pub.sock", rpc=f"ipc://{work}/rpc.sock")
    rc = RedisConfig(db=redis_db) if redis_db is not None else None
    state = data_dir / "feed"
    shutil.rmtree(state, ignore_errors=True)
    feed = Feed(bench_config(), config, rc, data_dir, log_dir=data_dir / LOG_DIR,
                clock=lambda: 0.0)  # fmt: skip
    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(config.pub)
    received = 0
    done = threading.Event()

    def read() -> None:
        nonlocal received
        while not done.is_set() or sub.poll(100):
            if sub.poll(100):
                sub.recv_multipart()
                received += 1

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not feed.pub.poll(10):
        pass
    try:
        t0 = time.perf_counter()
        while feed.step():
            feed.publish(int(time.time()))
        feed.publish(int(time.time()))
        seconds = time.perf_counter() - t0
    finally:
        done.set()
        reader.join(30)
        sub.close(0)
        feed.close()
    return seconds, received, feed.dropped


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the report (JSON with ``--json``)."""
    work = Path(tempfile.mkdtemp(prefix="matchd-bench-feed-"))
    client = redis.Redis(host="127.0.0.1", port=6379, db=args.redis_db)
    try:
        summary = build_journal(work / "data", args.commands, args.seed)
        records, deals, batches = count_deals(work / "data" / LOG_DIR)
        runs = {}
        seconds = run_market_data(batches)
        runs["market_data"] = _figures(records, deals, seconds)
        seconds, received, dropped = run_feed(work, work / "data", None)
        runs["feed"] = {**_figures(records, deals, seconds), "messages": received,
                        "dropped": dropped}  # fmt: skip
        if not args.no_redis:
            client.flushdb()
            seconds, received, dropped = run_feed(work, work / "data", args.redis_db)
            runs["feed_redis"] = {**_figures(records, deals, seconds), "messages": received,
                                  "dropped": dropped}  # fmt: skip
            client.flushdb()
    finally:
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "feed",
        "what": "daemon.feed.Feed over the whole log of a trade-heavy stream, in process",
        "commands": args.commands,
        "records": records,
        "deals": deals,
        "stream": summary,
        "runs": runs,
        "seed": args.seed,
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, run in runs.items():
            print(
                f"{name:<12} {records:,} records, {deals:,} deals in {run['seconds']} s: "
                f"{run['records_per_s']:,.0f} records/s, {run['deals_per_s']:,.0f} deals/s"
            )
    return 0


def _figures(records: int, deals: int, seconds: float) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds, 1),
        "deals_per_s": round(deals / seconds, 1),
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(argparse.Namespace()))
