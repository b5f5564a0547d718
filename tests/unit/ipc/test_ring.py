"""SPSC rings in shared memory (ipc.ring) and the idle strategy (ipc.idle): push and
pop, wrap-around, a full ring, record contents, attach checks, stale rings, and a
producer and a consumer in two processes."""

from __future__ import annotations

import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np
import posix_ipc
import pytest

from core.errors import BrokenError, ClosedError
from ipc.idle import BackoffIdle
from ipc.ring import CORRUPT, SpscRing, pop_batch, push_batch, remove_ring
from ipc.ring_kernels import arm_sleep, claim_wake
from ipc.ring_layout import (
    CAPACITY_OFFSET,
    CONSUMER_POSITION_WORD,
    MAGIC_OFFSET,
    PRODUCER_POSITION_WORD,
    RECORD_LENGTH_OFFSET,
    SLEEPING_WORD,
    VERSION_OFFSET,
    pack_metadata,
    segment_length,
    unpack_metadata,
)
from ipc.shm import SHM_DIR, ShmAllocator, find_stale, list_segments, remove_instance
from ipc.shm_index import ring_alive
from tests.unit.ipc.ring_child import CAPACITY, RECORD_DTYPE, check_records, make_records

ROOT = Path(__file__).resolve().parents[3]
I8 = np.dtype("<i8")


@pytest.fixture
def instance() -> Iterator[str]:
    """A fresh instance name; its rings (segments and semaphores) go afterwards."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    for ring in ("r", "q"):
        remove_ring(name, ring)
    remove_instance(name)
    assert list_segments(name) == []


@pytest.fixture
def ring(instance: str) -> Iterator[SpscRing]:
    """A ring of 8 ``RECORD_DTYPE`` records."""
    with SpscRing.create(instance, "r", RECORD_DTYPE, 8) as r:
        yield r


def seqs(recs: np.ndarray) -> list[int]:
    return [int(s) for s in recs["seq"]]


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "tests.unit.ipc.ring_child", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")


def poke(instance: str, offset: int, fmt: str, value: object) -> None:
    """Write into ring ``r`` of ``instance`` behind its back."""
    shm = posix_ipc.SharedMemory(f"/matchd.{instance}.r", 0)
    try:
        with mmap.mmap(shm.fd, os.fstat(shm.fd).st_size) as mm:
            struct.pack_into(fmt, mm, offset, value)
    finally:
        shm.close_fd()


# ------------------------------------------------------------------ one process


@pytest.mark.kernel
def test_push_then_pop_returns_the_records_in_order(ring: SpscRing) -> None:
    out = np.zeros(8, RECORD_DTYPE)

    assert ring.push_nowait(make_records(0, 3)) == 3
    assert ring.push_nowait(make_records(3, 2)) == 2
    assert ring.pop_nowait(out[:4]) == 4
    assert seqs(out[:4]) == [0, 1, 2, 3]
    assert ring.pop_nowait(out) == 1
    assert seqs(out[:1]) == [4]
    assert ring.pop_nowait(out) == 0
    assert ring.stats().used == 0


@pytest.mark.kernel
def test_every_field_of_a_structured_record_survives(ring: SpscRing) -> None:
    recs = make_records(100, 5)
    recs["tag"] = [b"", b"a", b"\x00\xff\x01", b"1234567", b"z\x00z"]
    recs["ts_ns"] = [-1, 0, 2**63 - 1, -(2**63), 17]
    out = np.zeros(5, RECORD_DTYPE)

    ring.push_nowait(recs)
    ring.pop_nowait(out)

    assert out.tobytes() == recs.tobytes()


@pytest.mark.kernel
def test_positions_wrap_around_the_record_area(ring: SpscRing) -> None:
    rng = np.random.default_rng(7)
    out = np.zeros(8, RECORD_DTYPE)
    pushed = popped = 0
    for _ in range(500):
        want = int(rng.integers(0, 9))
        pushed += ring.push_nowait(make_records(pushed, want))
        n = ring.pop_nowait(out[: int(rng.integers(0, 9))])
        assert check_records(out[:n], popped) is None
        popped += n
    stats = ring.stats()

    assert (stats.pushed, stats.popped) == (pushed, popped)
    assert pushed > 100 * 8  # went round many times
    assert stats.used == pushed - popped


@pytest.mark.kernel
def test_a_full_ring_takes_what_fits_and_counts_the_rest(ring: SpscRing) -> None:
    out = np.zeros(8, RECORD_DTYPE)

    assert ring.push_nowait(make_records(0, 10)) == 8
    assert ring.push_nowait(make_records(8, 3)) == 0
    stats = ring.stats()
    assert (stats.used, stats.peak, stats.full, stats.pushed) == (8, 8, 5, 8)

    assert ring.pop_nowait(out[:3]) == 3
    assert ring.push_nowait(make_records(8, 5)) == 3
    assert ring.pop_nowait(out) == 8
    assert seqs(out) == list(range(3, 11))
    assert ring.stats().full == 7


@pytest.mark.kernel
def test_peak_is_the_highest_occupancy(ring: SpscRing) -> None:
    out = np.zeros(8, RECORD_DTYPE)
    ring.push_nowait(make_records(0, 5))
    ring.pop_nowait(out)
    ring.push_nowait(make_records(5, 2))

    assert (ring.stats().peak, ring.stats().used) == (5, 2)


@pytest.mark.kernel
def test_kernels_clamp_counts_and_report_impossible_positions(ring: SpscRing) -> None:
    h, recs = ring.header_words, ring.records
    src = make_records(0, 4)
    dst = np.zeros(2, RECORD_DTYPE)

    assert push_batch(h, recs, src, 99) == 4  # no more than src holds
    assert push_batch(h, recs, src, -1) == 0
    assert pop_batch(h, recs, dst, 99) == 2  # no more than dst holds
    assert pop_batch(h, recs, dst, 0) == 0

    h[CONSUMER_POSITION_WORD] = h[PRODUCER_POSITION_WORD] + 1  # consumer ahead
    assert push_batch(h, recs, src, 1) == CORRUPT
    assert pop_batch(h, recs, dst, 1) == CORRUPT
    with pytest.raises(BrokenError, match="impossible"):
        ring.push_nowait(src)
    with pytest.raises(BrokenError, match="impossible"):
        ring.pop_nowait(dst)
    h[CONSUMER_POSITION_WORD] = h[PRODUCER_POSITION_WORD] - 9  # more than capacity
    assert push_batch(h, recs, src, 1) == CORRUPT
    del h, recs


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_each_kernel_compiles_once_per_record_dtype(ring: SpscRing, instance: str) -> None:
    out = np.zeros(8, RECORD_DTYPE)
    ring.push_nowait(make_records(0, 2))
    ring.push_nowait(make_records(0, 4)[1:3])
    ring.pop_nowait(out[:3])
    with SpscRing.attach(instance, "r", RECORD_DTYPE) as other:
        other.warm_up()
        other.pop_nowait(out)
        assert other.park_prepare()
        other.park_done()
    records_type = numba.typeof(ring.records)

    for kernel in (push_batch, pop_batch):
        assert len([s for s in kernel.signatures if s[1] == records_type]) == 1
    assert len(arm_sleep.signatures) == len(claim_wake.signatures) == 1


def test_push_and_pop_refuse_arrays_of_another_shape_or_dtype(ring: SpscRing) -> None:
    good = make_records(0, 4)
    with pytest.raises(TypeError, match="1-d C-contiguous"):
        ring.push_nowait(np.zeros(4, I8))
    with pytest.raises(TypeError, match="1-d C-contiguous"):
        ring.push_nowait(good[::2])
    with pytest.raises(TypeError, match="1-d C-contiguous"):
        ring.pop_nowait(np.zeros((2, 2), RECORD_DTYPE))
    good.flags.writeable = False
    with pytest.raises(TypeError, match="writeable"):
        ring.pop_nowait(good)


@pytest.mark.parametrize("capacity", [0, 3, 6, -8, 2**31, True, 4.0])
def test_capacity_must_be_a_power_of_two(instance: str, capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        SpscRing.create(instance, "r", RECORD_DTYPE, capacity)
    assert list_segments(instance) == []


@pytest.mark.parametrize("dtype", [np.dtype(object), np.dtype([("a", "O")]), np.dtype("V0")])
def test_records_must_be_plain_fixed_size_data(instance: str, dtype: np.dtype) -> None:
    with pytest.raises(ValueError, match="plain data"):
        SpscRing.create(instance, "r", dtype, 8)


@pytest.mark.parametrize("bad", ["", "a.b", "a/b", "__x", "x" * 65])
def test_names_are_validated(instance: str, bad: str) -> None:
    with pytest.raises(ValueError, match="name"):
        SpscRing.create(instance, bad, RECORD_DTYPE, 8)


def test_a_ring_is_one_segment_of_header_and_records(instance: str) -> None:
    with SpscRing.create(instance, "r", RECORD_DTYPE, 16) as ring:
        path = SHM_DIR / f"matchd.{instance}.r"
        assert path.stat().st_size == segment_length(16, RECORD_DTYPE.itemsize)
        assert (path.stat().st_mode & 0o777) == 0o600
        assert ring.posix_name == f"/matchd.{instance}.r"
        assert ring.owner
    assert not path.exists()


# ------------------------------------------------------------------ attach


def test_attach_sees_what_the_creator_pushed(ring: SpscRing, instance: str) -> None:
    ring.push_nowait(make_records(0, 3))
    with SpscRing.attach(instance, "r", RECORD_DTYPE, 8) as other:
        out = np.zeros(8, RECORD_DTYPE)
        assert other.capacity == 8
        assert not other.owner
        assert other.pop_nowait(out) == 3
        assert ring.stats().popped == 3


def test_attach_to_a_missing_ring(instance: str) -> None:
    with pytest.raises(FileNotFoundError, match="no ring"):
        SpscRing.attach(instance, "r", RECORD_DTYPE)


@pytest.mark.parametrize(
    ("dtype", "capacity", "message"),
    [
        (np.dtype([("seq", "<i8")]), None, "records are 44 bytes"),
        (np.dtype([("x", "S44")]), None, "dtype differs"),
        (RECORD_DTYPE, 16, "capacity 8; expected 16"),
    ],
)
def test_attach_checks_dtype_and_capacity(
    ring: SpscRing, instance: str, dtype: np.dtype, capacity: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SpscRing.attach(instance, "r", dtype, capacity)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (MAGIC_OFFSET, "<8s", b"NOTARING", "bad magic"),
        (VERSION_OFFSET, "<q", 99, "layout version 99"),
        (CAPACITY_OFFSET, "<q", 6, "capacity 6 is not a power of two"),
        (CAPACITY_OFFSET, "<q", 16, "segment is .* bytes; its header says"),
        (RECORD_LENGTH_OFFSET, "<q", 48, "records are 48 bytes"),
    ],
)
def test_attach_refuses_a_damaged_header(
    ring: SpscRing, instance: str, offset: int, fmt: str, value: object, message: str
) -> None:
    poke(instance, offset, fmt, value)
    with pytest.raises(ValueError, match=message):
        SpscRing.attach(instance, "r", RECORD_DTYPE)


def test_attach_needs_the_semaphore(ring: SpscRing, instance: str) -> None:
    posix_ipc.unlink_semaphore(ring.posix_name)
    with pytest.raises(FileNotFoundError, match="no semaphore"):
        SpscRing.attach(instance, "r", RECORD_DTYPE)


# ------------------------------------------------------------------ lifetime


def test_a_second_creator_is_refused_while_the_first_lives(ring: SpscRing, instance: str) -> None:
    with pytest.raises(FileExistsError, match=r"in use \(creator pid"):
        SpscRing.create(instance, "r", RECORD_DTYPE, 8)
    with pytest.raises(FileExistsError, match="in use"):
        SpscRing.create(instance, "r", RECORD_DTYPE, 8, replace_stale=True)


def test_a_half_created_ring_is_stale(instance: str) -> None:
    shm = posix_ipc.SharedMemory(f"/matchd.{instance}.r", posix_ipc.O_CREX, size=4096)
    shm.close_fd()
    with pytest.raises(FileExistsError, match="half-created; remove it"):
        SpscRing.create(instance, "r", RECORD_DTYPE, 8)
    with SpscRing.create(instance, "r", RECORD_DTYPE, 8, replace_stale=True) as ring:
        assert ring.stats().pushed == 0


def test_close_refuses_while_views_live_then_works(instance: str) -> None:
    ring = SpscRing.create(instance, "r", RECORD_DTYPE, 8)
    view = ring.records[:2]
    with pytest.raises(BufferError, match="still referenced"):
        ring.close()
    assert ring.push_nowait(make_records(0, 1)) == 1  # still usable
    del view
    ring.close()
    ring.close()  # twice is fine
    with pytest.raises(ClosedError):
        ring.push_nowait(make_records(0, 1))
    with pytest.raises(ClosedError):
        ring.stats()
    assert ring.unlink() == [f"/matchd.{instance}.r", f"sem:/matchd.{instance}.r"]
    assert ring.unlink() == []


def test_only_the_creator_unlinks(ring: SpscRing, instance: str) -> None:
    with (
        SpscRing.attach(instance, "r", RECORD_DTYPE) as other,
        pytest.raises(PermissionError, match="only the process that created"),
    ):
        other.unlink()
    assert (SHM_DIR / f"matchd.{instance}.r").exists()


def test_remove_instance_removes_rings_too(instance: str) -> None:
    ring = SpscRing.create(instance, "r", RECORD_DTYPE, 8)
    assert remove_instance(instance) == [f"/matchd.{instance}.r"]
    with pytest.raises(posix_ipc.ExistentialError):  # and its semaphore
        posix_ipc.Semaphore(f"/matchd.{instance}.r")
    ring.close()


def test_rings_and_an_allocator_share_an_instance(instance: str) -> None:
    # The daemon makes a worker's rings and its book's arrays in one instance.
    with SpscRing.create(instance, "r", RECORD_DTYPE, 8):
        assert find_stale(instance) == []  # a live ring is not stale, index or not
        with ShmAllocator(instance) as alloc:  # rings are not leftovers
            alloc.array("a", (4,), np.dtype("<i8"))
            assert find_stale(instance) == []


def test_a_ring_of_a_dead_creator_is_stale_beside_a_live_allocator(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        alloc.array("a", (4,), np.dtype("<i8"))
        ring = SpscRing.create(instance, "r", RECORD_DTYPE, 8)
        name = f"/matchd.{instance}.r"
        path = SHM_DIR / name.lstrip("/")
        assert ring_alive(name) is True
        ring.close()
        raw = bytearray(path.read_bytes())
        dead = replace(unpack_metadata(raw), creator_pid=2**22 + 7)  # no such process
        packed = pack_metadata(dead)
        raw[: len(packed)] = packed
        path.write_bytes(bytes(raw))
        assert ring_alive(name) is False
        assert find_stale(instance) == [name]
        remove_ring(instance, "r")


# ------------------------------------------------------------------ sleeping


@pytest.mark.kernel
def test_park_prepare_says_whether_records_are_waiting(ring: SpscRing) -> None:
    assert ring.park_prepare()  # empty: may sleep
    ring.park_done()
    ring.push_nowait(make_records(0, 1))

    assert not ring.park_prepare()  # a record came: do not sleep
    ring.park_done()
    assert ring.stats().sleeps == 2
    assert ring.stats().wakeups == 0  # nobody was asleep at the push


def test_a_push_to_a_sleeping_consumer_posts_once(ring: SpscRing) -> None:
    assert ring.park_prepare()
    assert ring.header_words[SLEEPING_WORD] == 1

    ring.push_nowait(make_records(0, 1))
    ring.push_nowait(make_records(1, 1))  # the flag was taken: no second post

    assert ring.stats().wakeups == 1
    assert ring.header_words[SLEEPING_WORD] == 0
    assert ring.park(1.0)  # returns at once: posted
    assert not ring.park(0.01)  # nothing more
    ring.park_done()
    assert not ring.wake_if_sleeping()


class FakeParker:
    def __init__(self, ready: bool, woken: bool) -> None:
        self.ready, self.woken, self.calls = ready, woken, []

    def park_prepare(self) -> bool:
        self.calls.append("prepare")
        return self.ready

    def park(self, timeout_s: float) -> bool:
        self.calls.append(f"park {timeout_s}")
        return self.woken

    def park_done(self) -> None:
        self.calls.append("done")


def test_backoff_spins_then_yields_then_parks() -> None:
    parker = FakeParker(ready=True, woken=True)
    idle = BackoffIdle(parker, spins=3, yields=2, park_timeout_s=0.5)

    for _ in range(7):
        idle.idle(0)

    assert parker.calls == ["prepare", "park 0.5", "done"] * 2
    stats = idle.stats()
    assert (stats.spins, stats.yields, stats.parks, stats.woken) == (3, 2, 2, 2)
    idle.idle(5)  # work: start over
    idle.idle(0)
    assert idle.stats().spins == 4


def test_backoff_does_not_park_when_work_arrived_meanwhile() -> None:
    parker = FakeParker(ready=False, woken=False)
    idle = BackoffIdle(parker, spins=0, yields=0)

    idle.idle(0)

    assert parker.calls == ["prepare", "done"]
    assert idle.stats().called_off == 1


def test_backoff_counts_timeouts_and_sleeps_without_a_parker() -> None:
    parker = FakeParker(ready=True, woken=False)
    idle = BackoffIdle(parker, spins=0, yields=0)
    idle.idle(0)
    assert idle.stats().timeouts == 1

    alone = BackoffIdle(None, spins=0, yields=0, park_timeout_s=0.001)
    alone.idle(0)
    assert alone.stats().timeouts == 1


@pytest.mark.parametrize("kwargs", [{"spins": -1}, {"yields": -1}, {"park_timeout_s": 0.0}])
def test_backoff_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="spins and yields"):
        BackoffIdle(None, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ two processes


def produce(ring: SpscRing, count: int, seed: int, max_batch: int) -> None:
    recs = make_records(0, count)
    sizes = np.random.default_rng(seed).integers(1, max_batch + 1, 4096)
    sent = k = 0
    while sent < count:
        n = ring.push_nowait(recs[sent : sent + int(sizes[k % 4096])])
        k += 1
        sent += n
        if n == 0:
            os.sched_yield()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("count", "capacity", "max_batch"),
    [(2_000_000, CAPACITY, 300), (20_000, 4, 5)],
    ids=["millions", "tiny-ring"],
)
def test_a_consumer_process_gets_every_record_once_in_order(
    instance: str, count: int, capacity: int, max_batch: int
) -> None:
    with SpscRing.create(instance, "q", RECORD_DTYPE, capacity) as ring:
        ring.warm_up()
        proc = child("consume", instance, "q", str(count), "11")
        wait_ready(proc)

        produce(ring, count, 5, max_batch)
        out, err = proc.communicate(timeout=120)

        assert proc.returncode == 0, (out, err)
        report = json.loads(out)
        assert report == report | {"ok": True, "count": count, "extra": 0}
        stats = ring.stats()
        assert (stats.pushed, stats.popped, stats.used) == (count, count, 0)
        assert stats.peak <= capacity


@pytest.mark.integration
def test_no_wakeup_is_lost_when_a_push_races_the_consumer_falling_asleep(
    instance: str,
) -> None:
    # The consumer (parking for up to 20 s) stops each time it has found the ring empty
    # and is about to announce its sleep. Every other burst is pushed right there, the
    # window of a lost wake-up: the consumer must see it when it looks again after the
    # announcement. The other bursts are pushed once it sleeps: the post must wake it.
    # (Without the second look, the first burst already stalls.)
    bursts = 200
    sizes = np.random.default_rng(3).integers(1, 8, bursts)
    count = int(sizes.sum())
    with SpscRing.create(instance, "q", RECORD_DTYPE, CAPACITY) as ring:
        ring.warm_up()
        proc = child("consume", instance, "q", str(count), "12", "0", "0", "20", "gate")
        wait_ready(proc)
        assert proc.stdin is not None
        assert proc.stdout is not None
        recs = make_records(0, count)
        sent = 0
        try:
            for burst, size in enumerate(sizes):
                assert proc.stdout.readline() == "window\n"
                if burst % 2:
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    wait_word(ring, SLEEPING_WORD, 1, "the consumer to sleep")
                ring.push_nowait(recs[sent : sent + size])
                sent += int(size)
                if burst % 2 == 0:
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                wait_word(ring, CONSUMER_POSITION_WORD, sent, "the burst to be popped")
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.communicate()

        assert proc.returncode == 0, (out, err)
        report = json.loads(out)
        assert report == report | {"ok": True, "count": count, "timeouts": 0}
        assert report["called_off"] == bursts // 2  # saw the records after announcing
        assert report["woken"] == bursts // 2  # was posted
        assert ring.stats().wakeups == bursts // 2


def wait_word(ring: SpscRing, word: int, at_least: int, what: str) -> None:
    """Wait until header word ``word`` of ``ring`` is at least ``at_least``."""
    deadline = time.monotonic() + 5
    while ring.header_words[word] < at_least:
        assert time.monotonic() < deadline, f"waited 5 s for {what}"


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` in clock ticks (/proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.integration
def test_a_sleeping_consumer_uses_no_cpu_and_wakes_on_a_push(instance: str) -> None:
    with SpscRing.create(instance, "q", RECORD_DTYPE, CAPACITY) as ring:
        ring.warm_up()
        proc = child("sleep", instance, "q")
        wait_ready(proc)
        assert proc.stdout is not None
        latencies = []
        try:
            for seq in range(5):
                deadline = time.monotonic() + 10
                while not ring.header_words[SLEEPING_WORD]:  # until it announced sleep
                    assert time.monotonic() < deadline, "the consumer never went to sleep"
                    time.sleep(0.001)
                before = cpu_ticks(proc.pid)
                time.sleep(0.5 if seq == 0 else 0.02)
                if seq == 0:  # 0.5 s asleep: at most 2 ticks (20 ms) of CPU
                    assert cpu_ticks(proc.pid) - before <= 2
                rec = make_records(seq, 1)
                rec["ts_ns"] = time.monotonic_ns()
                assert ring.push_nowait(rec) == 1
                word, got, latency_ns = proc.stdout.readline().split()
                assert (word, int(got)) == ("got", seq)
                latencies.append(int(latency_ns))
            stop = make_records(0, 1)
            stop["seq"] = -1
            ring.push_nowait(stop)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.communicate()
        # The child parks for up to 30 s: only the semaphore post wakes it this fast.
        assert max(latencies) < 2e9
        assert sorted(latencies)[2] < 50e6
        assert ring.stats().wakeups >= 5


@pytest.mark.integration
def test_a_ring_whose_creator_died_is_stale_and_replaced(instance: str) -> None:
    proc = child("create", instance, "r")
    wait_ready(proc)
    with pytest.raises(FileExistsError, match="in use"):
        SpscRing.create(instance, "r", RECORD_DTYPE, 8)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    with pytest.raises(FileExistsError, match=r"left over from pid \d+, which ended"):
        SpscRing.create(instance, "r", RECORD_DTYPE, 8)
    with SpscRing.create(instance, "r", RECORD_DTYPE, 8, replace_stale=True) as ring:
        assert ring.capacity == 8
        assert ring.creator.pid == os.getpid()
        assert not ring.park(0.001)  # a fresh semaphore: no stale posts
