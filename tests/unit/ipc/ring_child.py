"""A child process for the ring tests: ``python -m tests.unit.ipc.ring_child MODE INSTANCE
NAME [ARGS]``. Prints ``ready`` once its kernels are loaded, then:

- ``consume COUNT SEED [SPINS YIELDS PARK_TIMEOUT_S [gate]]``: attaches to the ring and
  pops ``COUNT`` records with random batch sizes, checking that they are the records
  ``make_records`` makes, in order; waits with ``BackoffIdle`` (default 50, 10, 0.05)
  when the ring is empty. With ``gate``, each time it has found the ring empty and is
  about to announce its sleep it prints ``window`` and waits for a line on stdin (so
  the test can push exactly there). Prints one JSON line (``ok``, ``count``, idle
  statistics) and exits 0, or prints what was wrong and exits 1.
- ``sleep``: attaches and idles (long park timeout, so only a post can wake it fast);
  for each record prints ``got SEQ LATENCY_NS`` (``time.monotonic_ns()`` minus the
  record's ``ts_ns``); exits on a record with ``seq == -1``.
- ``create``: creates the ring and waits to be killed (to leave a stale ring).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from ipc.idle import BackoffIdle
from ipc.ring import SpscRing

#: 44 bytes, packed: fields at odd offsets, a byte string, mixed widths.
RECORD_DTYPE = np.dtype(
    [
        ("seq", "<i8"),
        ("ts_ns", "<i8"),
        ("check", "<i8"),
        ("side", "i1"),
        ("tag", "S7"),
        ("qty", "<i4"),
        ("price", "<i8"),
    ]
)
CAPACITY = 1024


def make_records(start: int, n: int) -> np.ndarray:
    """Records ``start .. start + n - 1``; every field derives from ``seq``."""
    recs = np.zeros(n, RECORD_DTYPE)
    seq = np.arange(start, start + n, dtype=np.int64)
    recs["seq"] = seq
    recs["check"] = (seq * 2_654_435_761) ^ 0x5A5A5A5A
    recs["side"] = seq % 3 - 1
    recs["tag"] = b"abc\x00efg"
    recs["qty"] = seq % 100_003
    recs["price"] = -seq
    return recs


def check_records(recs: np.ndarray, start: int) -> str | None:
    """What is wrong with ``recs`` as records ``start ..`` (None if nothing)."""
    want = make_records(start, recs.shape[0])
    want["ts_ns"] = recs["ts_ns"]
    if np.array_equal(recs, want):
        return None
    bad = int(np.flatnonzero(recs != want)[0])
    return f"record {start + bad}: got {recs[bad]!r}, want {want[bad]!r}"


class GatedParker:
    """The ring's parker, stopping between "the ring is empty" and the announcement."""

    def __init__(self, ring: SpscRing) -> None:
        self.ring = ring

    def park_prepare(self) -> bool:
        print("window", flush=True)
        sys.stdin.readline()
        return self.ring.park_prepare()

    def park(self, timeout_s: float) -> bool:
        return self.ring.park(timeout_s)

    def park_done(self) -> None:
        self.ring.park_done()


def consume(ring: SpscRing, count: int, seed: int, idle: BackoffIdle) -> int:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 512, 4096)
    out = np.zeros(512, RECORD_DTYPE)
    got = 0
    calls = 0
    while got < count:
        n = ring.pop_nowait(out[: sizes[calls % 4096]])
        calls += 1
        if n:
            problem = check_records(out[:n], got)
            if problem:
                print(json.dumps({"ok": False, "problem": problem}), flush=True)
                return 1
            got += n
        idle.idle(n)
    extra = ring.pop_nowait(out)
    stats = idle.stats()
    print(
        json.dumps(
            {"ok": extra == 0, "count": got, "extra": extra, "calls": calls,
             "parks": stats.parks, "woken": stats.woken, "timeouts": stats.timeouts,
             "called_off": stats.called_off}
        ),
        flush=True,
    )  # fmt: skip
    return 0


def sleep(ring: SpscRing) -> int:
    out = np.zeros(16, RECORD_DTYPE)
    idle = BackoffIdle(ring, spins=20, yields=5, park_timeout_s=30.0)
    while True:
        n = ring.pop_nowait(out)
        now = time.monotonic_ns()
        for rec in out[:n]:
            if rec["seq"] < 0:
                return 0
            print(f"got {rec['seq']} {now - rec['ts_ns']}", flush=True)
        idle.idle(n)


def main(mode: str, instance: str, name: str, args: list[str]) -> int:
    if mode == "create":
        SpscRing.create(instance, name, RECORD_DTYPE, CAPACITY)
        print("ready", flush=True)
        time.sleep(600)
        return 0
    ring = SpscRing.attach(instance, name, RECORD_DTYPE)
    ring.warm_up()
    print("ready", flush=True)
    if mode == "consume":
        spins, yields, timeout_s = (args[2:] or ["50", "10", "0.05"])[:3]
        parker = GatedParker(ring) if args[5:] == ["gate"] else ring
        idle = BackoffIdle(
            parker, spins=int(spins), yields=int(yields), park_timeout_s=float(timeout_s)
        )
        return consume(ring, int(args[0]), int(args[1]), idle)
    return sleep(ring)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
