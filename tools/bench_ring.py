"""``matchd-bench ring``: one producer process to one consumer process over an
``SpscRing`` (``ipc.ring``), and how fast a sleeping consumer wakes.

1. **Throughput**: for records of 64 and 184 bytes (``--record-bytes``) and batches of
   1, 16 and 256 (``--batches``), a producer process pushes records and a consumer
   process pops them, each pinned to its own core when there are two. Two drivers
   (``--drivers``): ``numba`` runs both loops inside kernels calling ``push_batch`` /
   ``pop_batch`` (what a numba duty loop gets; ``--records`` records), ``python`` calls
   ``push_nowait`` / ``pop_nowait`` once per batch (what a Python loop gets, the
   per-call cost included; at most ``--calls`` batches). The consumer busy-polls and
   checks every record's sequence number (numba) or each batch's first and last
   (python). Rate = records / (last record popped - first push), on one clock
   (``CLOCK_MONOTONIC``) in both processes.
2. **Wake-up latency**: the consumer idles with ``ipc.idle.BackoffIdle`` until it
   sleeps on the ring's semaphore; the producer waits until it announced sleep (plus 1
   ms), stamps a record and pushes it; the consumer reports now - stamp after popping
   it. ``--wake-samples`` times; p50/p99/max.

Each run starts fresh processes (``python -m tools.bench_ring ROLE ...``, roles
``produce``, ``consume``, ``sleep``, ``wake``; kernels loaded before the clock
starts). The report is JSON (``--json``), also written to ``OUT/ring.json``.
``main(args)`` takes the ``argparse.Namespace`` that ``tools.bench`` builds: ``json``,
``records``, ``calls``, ``capacity``, ``record_bytes``, ``batches``, ``drivers``,
``wake_samples``, ``out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.kernels.jit import kernel
from ipc.idle import BackoffIdle
from ipc.ring import SpscRing, pop_batch, push_batch
from ipc.ring_layout import SLEEPING_WORD

RECORD_BYTES = (64, 184)
BATCHES = (1, 16, 256)
DRIVERS = ("numba", "python")
DEFAULT_CAPACITY = 4096
DEFAULT_RECORDS = 20_000_000
DEFAULT_CALLS = 200_000
DEFAULT_WAKE_SAMPLES = 200
#: Records of the source block the producer cycles through: a multiple of every batch.
BLOCK = 65536
RING_NAME = "bench"
CHILD_TIMEOUT_S = 600


class BenchError(Exception):
    """A child failed, or the consumer saw records out of order."""


def record_dtype(nbytes: int) -> np.dtype[Any]:
    """``seq``, ``ts_ns`` and padding to ``nbytes`` (a multiple of 8, at least 16)."""
    if nbytes < 16 or nbytes % 8:
        raise ValueError(f"record size must be a multiple of 8, at least 16; got {nbytes}")
    return np.dtype([("seq", "<i8"), ("ts_ns", "<i8"), ("pad", "<i8", ((nbytes - 16) // 8,))])


def source_block(dtype: np.dtype[Any]) -> np.ndarray:
    """``BLOCK`` records with ``seq`` 0 .. BLOCK-1: record ``p`` of the stream is
    ``block[p % BLOCK]``."""
    block = np.zeros(BLOCK, dtype)
    block["seq"] = np.arange(BLOCK)
    return block


# --------------------------------------------------------------------------- kernels


@kernel
def produce_loop(header_words: Any, records: Any, block: Any, batch: int, total: int) -> int:
    """Push ``total`` records of the cyclic ``block`` in batches; pushes that found the
    ring full."""
    m = block.shape[0]
    sent = 0
    full = 0
    while sent < total:
        off = sent % m
        n = min(batch, total - sent, m - off)
        k = push_batch(header_words, records, block[off : off + n], n)
        if k < 0:
            return -1
        if k == 0:
            full += 1
        sent += k
    return full


@kernel
def consume_loop(header_words: Any, records: Any, out: Any, batch: int, total: int) -> int:
    """Pop ``total`` records, at most ``batch`` at a time, checking each one's ``seq``
    (position modulo ``BLOCK``); records out of order (-1 if the ring broke)."""
    got = 0
    bad = 0
    while got < total:
        k = pop_batch(header_words, records, out, batch)
        if k < 0:
            return -1
        for j in range(k):
            if out[j].seq != (got + j) % BLOCK:
                bad += 1
        got += k
    return bad


# --------------------------------------------------------------------------- children


def _pin(index: int) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def _attach(instance: str, nbytes: int) -> SpscRing:
    ring = SpscRing.attach(instance, RING_NAME, record_dtype(nbytes))
    ring.warm_up()
    return ring


def _produce(ring: SpscRing, driver: str, batch: int, total: int) -> dict[str, Any]:
    block = source_block(ring.dtype)
    produce_loop(ring.header_words, ring.records, block, batch, 0)  # load, untimed
    print("ready", flush=True)
    sys.stdin.readline()  # go
    t0 = time.monotonic_ns()
    if driver == "numba":
        full = produce_loop(ring.header_words, ring.records, block, batch, total)
    else:
        full = sent = 0
        while sent < total:
            off = sent % BLOCK
            k = ring.push_nowait(block[off : off + min(batch, total - sent, BLOCK - off)])
            full += k == 0
            sent += k
    return {"t0_ns": t0, "full_pushes": int(full)}


def _consume(ring: SpscRing, driver: str, batch: int, total: int) -> dict[str, Any]:
    out = np.zeros(batch, ring.dtype)
    consume_loop(ring.header_words, ring.records, out, batch, 0)  # load, untimed
    print("ready", flush=True)
    if driver == "numba":
        bad = consume_loop(ring.header_words, ring.records, out, batch, total)
    else:
        bad = got = 0
        seq = out["seq"]
        while got < total:
            k = ring.pop_nowait(out)
            if k:
                bad += seq[0] != got % BLOCK or seq[k - 1] != (got + k - 1) % BLOCK
                got += k
    return {"t_end_ns": time.monotonic_ns(), "bad": int(bad)}


def _sleep(ring: SpscRing, samples: int) -> dict[str, Any]:
    out = np.zeros(16, ring.dtype)
    idle = BackoffIdle(ring, spins=20, yields=5, park_timeout_s=10.0)
    lat = np.zeros(samples, np.int64)
    print("ready", flush=True)
    got = 0
    while got < samples:
        k = ring.pop_nowait(out)
        now = time.monotonic_ns()
        for rec in out[:k]:
            lat[got] = now - int(rec["ts_ns"])
            got += 1
        idle.idle(k)
    return {"latencies_ns": lat.tolist(), "woken": idle.stats().woken}


def _wake(ring: SpscRing, samples: int) -> dict[str, Any]:
    rec = np.zeros(1, ring.dtype)
    header = ring.header_words
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(samples):
        while not header[SLEEPING_WORD]:
            time.sleep(0.0002)
        time.sleep(0.001)  # let it get from the announcement into the wait
        rec["seq"] = i
        rec["ts_ns"] = time.monotonic_ns()
        ring.push_nowait(rec)
    return {}


def child_main(argv: list[str]) -> int:
    """``python -m tools.bench_ring ROLE INSTANCE RECORD_BYTES DRIVER BATCH TOTAL``."""
    role, instance, nbytes, driver, batch, total = argv
    _pin(0 if role in ("produce", "wake") else 1)
    ring = _attach(instance, int(nbytes))
    if role == "produce":
        result = _produce(ring, driver, int(batch), int(total))
    elif role == "consume":
        result = _consume(ring, driver, int(batch), int(total))
    elif role == "sleep":
        result = _sleep(ring, int(total))
    else:
        result = _wake(ring, int(total))
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parent


class _Child:
    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "tools.bench_ring", *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> None:
        assert self.proc.stdout is not None  # noqa: S101 - set by PIPE
        line = self.proc.stdout.readline()
        if line != "ready\n":
            self.proc.kill()
            _, err = self.proc.communicate()
            raise BenchError(f"a benchmark child failed to start: {line!r} {err}")

    def go(self) -> None:
        assert self.proc.stdin is not None  # noqa: S101 - set by PIPE
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise BenchError("a benchmark child timed out") from None
        if self.proc.returncode != 0:
            raise BenchError(f"a benchmark child failed: {err.strip()}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def _pair(ring: SpscRing, instance: str, roles: tuple[str, str], *args: object) -> tuple[Any, Any]:
    """Run a producer role and a consumer role to the end; their results."""
    producer = _Child(roles[0], instance, *args)
    consumer = _Child(roles[1], instance, *args)
    try:
        producer.ready()
        consumer.ready()
        producer.go()
        return producer.result(), consumer.result()
    finally:
        producer.kill()
        consumer.kill()


def measure(instance: str, nbytes: int, driver: str, batch: int, total: int, capacity: int) -> Any:
    """One throughput run; its figures."""
    with SpscRing.create(instance, RING_NAME, record_dtype(nbytes), capacity) as ring:
        prod, cons = _pair(ring, instance, ("produce", "consume"), nbytes, driver, batch, total)
        stats = ring.stats()
    if cons["bad"] or stats.popped != total:
        raise BenchError(f"consumer saw {cons['bad']} bad batches, popped {stats.popped}/{total}")
    seconds = (cons["t_end_ns"] - prod["t0_ns"]) / 1e9
    return {
        "record_bytes": nbytes,
        "batch": batch,
        "driver": driver,
        "records": total,
        "seconds": round(seconds, 4),
        "records_per_s": round(total / seconds),
        "mb_per_s": round(total * nbytes / seconds / 1e6, 1),
        "full_pushes": prod["full_pushes"],
        "peak": stats.peak,
    }


def measure_wakeup(instance: str, samples: int) -> dict[str, Any]:
    """Wake-up latency of a consumer asleep on the semaphore."""
    with SpscRing.create(instance, RING_NAME, record_dtype(64), 1024) as ring:
        _, cons = _pair(ring, instance, ("wake", "sleep"), 64, "python", 1, samples)
        wakeups = ring.stats().wakeups
    lat = np.asarray(cons["latencies_ns"], dtype=np.int64)
    return {
        "samples": samples,
        "woken_by_post": cons["woken"],
        "wakeups_posted": wakeups,
        "p50_us": round(float(np.percentile(lat, 50)) / 1e3, 1),
        "p99_us": round(float(np.percentile(lat, 99)) / 1e3, 1),
        "max_us": round(float(lat.max()) / 1e3, 1),
    }


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the report (JSON with ``--json``)."""
    from tools.bench_core import machine_info

    instance = f"bench-{os.getpid()}"
    runs = []
    for driver in args.drivers:
        if driver not in DRIVERS:
            raise BenchError(f"unknown driver {driver!r}; choose from {DRIVERS}")
        for nbytes in args.record_bytes:
            for batch in args.batches:
                total = args.records if driver == "numba" else min(args.records, batch * args.calls)
                runs.append(measure(instance, nbytes, driver, batch, total, args.capacity))
    wakeup = measure_wakeup(instance, args.wake_samples) if args.wake_samples > 0 else {}
    report = {
        "benchmark": "ring",
        "what": "ipc.ring.SpscRing: one producer process -> one consumer process",
        "capacity": args.capacity,
        "pinned": len(os.sched_getaffinity(0)) >= 2,
        "runs": runs,
        "wakeup": wakeup,
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(report, indent=2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ring.json").write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
        return 0
    for run in runs:
        print(
            f"{run['driver']:<6} {run['record_bytes']:>4} B x {run['batch']:>3}: "
            f"{run['records_per_s'] / 1e6:8.2f} M records/s  {run['mb_per_s']:8.1f} MB/s"
        )
    if wakeup:
        print(
            f"wake-up of a sleeping consumer: p50 {wakeup['p50_us']} us, "
            f"p99 {wakeup['p99_us']} us, max {wakeup['max_us']} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
