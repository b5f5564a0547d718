"""The feed beside the daemon under the e2e load (``matchd-bench e2e --feed``).

Issue 6 asks for the delay from a command's acknowledgement to its market data on
ZeroMQ and in Redis under the e2e load. ``FeedUnderLoad`` gives the daemon's config
``[feed]`` (ipc:// endpoints in the run's folder) and ``[redis]`` (a database of the
local Redis that it empties), starts ``matchd feed`` once the daemon runs, and a
watcher process (not the load client, whose core is busy) that subscribes to every
``deals.`` topic and records, for each deal, when it arrived and the deal's own time
(the sequencer's clock when it took the command, before the log's fsync and the
acknowledgement: so the ZeroMQ delay is an upper bound of acknowledgement-to-data),
and samples every 10 ms the server's durable sequence and Redis's ``md:feed:seq``
(the Redis delay: how long ago the log was durable up to what Redis holds). At the
end it waits for the feed to catch up and reports p50/p99/max of both.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

SAMPLE_S: Final = 0.01


def watch(pub: str, endpoint: str, redis_db: int, out: str, stop: Any) -> None:
    """The watcher process: deals' (arrival, deal time), and (time, durable seq,
    Redis seq) samples, saved to ``out`` (npz) when ``stop`` is set."""
    import json

    import redis
    import zmq

    from ipc.client import Client

    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"deals.")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(pub)
    rdb = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    arrivals: list[float] = []
    deal_times: list[float] = []
    samples: list[tuple[float, int, int]] = []
    next_sample = 0.0
    with Client(endpoint, timeout_s=5.0) as client:
        while not stop.is_set():
            if sub.poll(2):
                _, body = sub.recv_multipart()
                now = time.time()
                for deal in json.loads(body)["deals"]:
                    arrivals.append(now)
                    deal_times.append(deal["time"])
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + SAMPLE_S
                held = rdb.get("md:feed:seq")
                samples.append((now, client.status().durable_seq, int(held or 0)))
    np.savez(
        out,
        arrivals=np.array(arrivals),
        deal_times=np.array(deal_times),
        samples=np.array(samples, dtype=np.float64).reshape(-1, 3),
    )


class FeedUnderLoad:
    """The feed of one e2e run, and its watcher."""

    def __init__(self, work: Path, redis_db: int = 14, nice: int = 0) -> None:
        """Nothing happens until ``create``; the feed runs at ``nice``."""
        self.work = work
        self.nice = nice
        self.redis_db = redis_db
        self.pub = f"ipc://{work}/pub.sock"
        self._feed: subprocess.Popen[bytes] | None = None
        self._watcher: Any = None
        self._stop: Any = None
        self._out = work / "feed-watch.npz"
        self._endpoint = ""

    def create(self) -> str:
        """Empty the Redis database; the ``[feed]`` and ``[redis]`` tables."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, db=self.redis_db)
        client.flushdb()
        client.close()
        return (
            f'\n[feed]\npub = "{self.pub}"\nrpc = "ipc://{self.work}/rpc.sock"\n'
            f"\n[redis]\ndb = {self.redis_db}\n"
        )

    def start(self, config: Path, data_dir: Path, endpoint: str, log: Path) -> None:
        """Start ``matchd feed`` and the watcher (the daemon runs)."""
        self._endpoint = endpoint
        with log.open("ab") as out:
            self._feed = subprocess.Popen(  # noqa: S603 -- our own command
                [sys.executable, "-m", "daemon.cli", "feed", "--config", str(config),
                 "--data-dir", str(data_dir), "--nice", str(self.nice)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._watcher = ctx.Process(
            target=watch, args=(self.pub, endpoint, self.redis_db, str(self._out), self._stop)
        )
        self._watcher.start()
        time.sleep(1.0)  # the subscription reaches the feed before the load starts

    def finish(self, timeout_s: float = 300.0) -> dict[str, Any]:
        """Wait until Redis holds the durable sequence, stop, report."""
        import redis

        from ipc.client import Client

        rdb = redis.Redis(host="127.0.0.1", port=6379, db=self.redis_db)
        t0 = time.monotonic()
        caught_up = None
        with Client(self._endpoint, timeout_s=5.0) as client:
            while time.monotonic() - t0 < timeout_s:
                if int(rdb.get("md:feed:seq") or 0) >= client.status().durable_seq:
                    caught_up = time.monotonic() - t0
                    break
                time.sleep(0.05)
        self._halt()
        data = np.load(self._out)
        rdb.flushdb()
        rdb.close()
        delays = (data["arrivals"] - data["deal_times"]) * 1e3
        return {
            "deals_seen": int(delays.shape[0]),
            "zmq_delay_ms": _percentiles(delays),
            "redis_delay_ms": _percentiles(_lag_ms(data["samples"])),
            "catch_up_after_load_s": None if caught_up is None else round(caught_up, 2),
            "nice": self.nice,
        }

    def close(self) -> None:
        """Stop everything (after a failure)."""
        self._halt()

    def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._watcher is not None:
            self._watcher.join(60)
        if self._feed is not None and self._feed.poll() is None:
            os.kill(self._feed.pid, signal.SIGTERM)
            self._feed.wait(60)


def _lag_ms(samples: np.ndarray) -> np.ndarray:
    """For each sample: since when (ms) the log has held a durable record that Redis
    does not (0 when Redis holds all of it)."""
    if not samples.shape[0]:
        return np.zeros(0)
    return lag_seconds(samples[:, 0], samples[:, 1], samples[:, 2]) * 1e3


def lag_seconds(t: np.ndarray, durable: np.ndarray, held: np.ndarray) -> np.ndarray:
    """For samples (time, durable seq, consumer's seq): how long the oldest record the
    consumer lacks has been durable, i.e. the time since the first sample whose
    durable seq passed the consumer's (0 when the consumer has everything)."""
    passed = np.searchsorted(durable, held, side="right")  # first sample beyond it
    index = np.arange(t.shape[0])
    behind = passed <= index
    lag: np.ndarray = np.where(behind, t - t[np.minimum(passed, t.shape[0] - 1)], 0.0)
    return lag


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not values.shape[0]:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "max": round(float(values.max()), 2),
    }
