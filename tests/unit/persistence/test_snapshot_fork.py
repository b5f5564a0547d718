"""The background snapshot writer: a forked child writes from its copy-on-write view,
reports one result, and can compute the state hash itself
(persistence/snapshot_fork.py)."""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError
from persistence._io import SysIO
from persistence.snapshot import (
    BackgroundSnapshotter,
    SnapshotFailed,
    SnapshotterConfig,
    list_snapshots,
    load_newest_valid,
    prune_snapshots,
    read_snapshot,
    snapshot_name,
)
from tests.unit.persistence.test_snapshot import (
    HASH,
    assert_same_arrays,
    make_snapshots,
    sample_arrays,
    snapshot_files,
)


class KillAfter(SysIO):
    """A disk write that kills the process after ``limit`` bytes: a crash mid-write."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def write(self, fd: int, data: memoryview | bytes) -> int:
        if len(data) >= self.limit:
            super().write(fd, data[: self.limit])
            os.kill(os.getpid(), signal.SIGKILL)
        self.limit -= len(data)
        return super().write(fd, data)


class RaiseInWrite(SysIO):
    def write(self, fd: int, data: memoryview | bytes) -> int:
        raise RuntimeError("bug in the writer")


class BlockInWrite(SysIO):
    """A write that never returns; it first tells ``wait_until_blocked`` through a FIFO
    (the child closes the descriptors it inherits, so a pipe would not do)."""

    def __init__(self, fifo: Path) -> None:
        os.mkfifo(fifo)
        self.fifo = fifo
        self.reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)

    def write(self, fd: int, data: memoryview | bytes) -> int:
        gate = os.open(self.fifo, os.O_WRONLY)
        os.write(gate, b"!")
        signal.pause()  # until killed
        raise AssertionError("unreachable")

    def wait_until_blocked(self) -> None:
        assert select.select([self.reader], [], [], 10)[0], "the child never wrote"
        os.close(self.reader)


def test_a_writer_killed_mid_write_leaves_only_a_tmp_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    older = make_snapshots(tmp_path, [10])[10]
    snapshotter = BackgroundSnapshotter(io=KillAfter(500))
    assert snapshotter.start(tmp_path, 20, HASH, sample_arrays())
    with pytest.raises(SnapshotFailed, match=r"process \d+ killed by SIGKILL, no result"):
        snapshotter.wait(10)
    tmp = tmp_path / (snapshot_name(20) + ".tmp")
    assert snapshot_files(tmp_path) == [older.path.name, tmp.name]
    assert tmp.stat().st_size == 500
    assert list_snapshots(tmp_path) == [older]
    loaded = load_newest_valid(tmp_path)
    assert loaded is not None
    assert loaded[0] == older
    with caplog.at_level(logging.INFO):
        assert prune_snapshots(tmp_path, 1) == [tmp]
    assert f"snapshot removed temporary file: path={tmp}" in caplog.text
    assert snapshot_files(tmp_path) == [older.path.name]


@pytest.fixture
def snapshotter() -> Iterator[BackgroundSnapshotter]:
    snapshotter = BackgroundSnapshotter()
    yield snapshotter
    snapshotter.cancel()


_STALL_SCRIPT = """
import sys, tempfile
import numpy as np
from persistence.snapshot import BackgroundSnapshotter
count = 12_500_000
arrays = {
    "balances": np.arange(count, dtype=np.int64),
    "orders": np.zeros(count // 5, np.dtype([("id", "<i8"), ("source", "u1", (32,))])),
}
arrays["orders"]["id"] = np.arange(count // 5)
snapshotter = BackgroundSnapshotter()
with tempfile.TemporaryDirectory() as where:
    assert snapshotter.start(where, 77, "0" * 32, arrays)
    print(snapshotter.stall_ns)
    assert snapshotter.wait(60) is not None
"""


def _two_arrays_of_100_mb() -> dict[str, np.ndarray]:
    count = 12_500_000
    arrays = {
        "balances": np.arange(count, dtype=np.int64),
        "orders": np.zeros(count // 5, np.dtype([("id", "<i8"), ("source", "u1", (32,))])),
    }
    arrays["orders"]["id"] = np.arange(count // 5)
    return arrays


def test_the_fork_of_a_process_holding_200_mb_stalls_it_briefly() -> None:
    # Measured in a process of its own, which holds the 200 MB and little else, as the
    # daemon holds its state: a fork costs in proportion to all the memory its process
    # maps, and this test runner's grows with every test before it (the same fork from
    # the runner took 56 ms after the whole suite, 4 ms alone).
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(  # noqa: S603 -- this interpreter, a fixed script
        [sys.executable, "-c", _STALL_SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    stall_ms = int(done.stdout.split()[0]) / 1e6
    print(f"fork stall for 200 MB: {stall_ms:.2f} ms")
    assert stall_ms < 50


def test_background_snapshot_of_200_mb_holds_the_state_at_start(
    tmp_path: Path, snapshotter: BackgroundSnapshotter
) -> None:
    arrays = _two_arrays_of_100_mb()
    count = arrays["balances"].shape[0]
    assert snapshotter.start(tmp_path, 77, HASH, arrays, {"k": "v"})
    assert snapshotter.running
    assert not snapshotter.start(tmp_path, 78, HASH, arrays)  # one in flight
    arrays["balances"][:] = -1  # the child must not see these
    arrays["orders"]["id"][::3] = -1
    info = snapshotter.wait(60)
    assert info is not None
    assert (info.seq, info.state_hash, info.bytes) == (77, HASH, info.path.stat().st_size)
    assert not snapshotter.running
    _, got, meta = read_snapshot(info.path)
    assert meta == {"k": "v"}
    assert np.array_equal(got["balances"], np.arange(count, dtype=np.int64))
    assert np.array_equal(got["orders"]["id"], np.arange(count // 5))
    assert snapshot_files(tmp_path) == [info.path.name]


def test_poll_reports_the_result_once(tmp_path: Path, snapshotter: BackgroundSnapshotter) -> None:
    assert snapshotter.poll() is None
    assert snapshotter.start(tmp_path, 3, HASH, sample_arrays())
    pid = snapshotter.pid
    assert pid is not None
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    info = snapshotter.poll()
    assert info is not None
    assert info.seq == 3
    assert_same_arrays(read_snapshot(info.path)[1], sample_arrays())
    assert (snapshotter.poll(), snapshotter.running, snapshotter.pid) == (None, False, None)


def test_a_failing_child_surfaces_as_snapshot_failed(
    tmp_path: Path, snapshotter: BackgroundSnapshotter, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_bytes(b"")
    directory = tmp_path / "file" / "snapshots"  # cannot be created, even by root
    assert snapshotter.start(directory, 3, HASH, sample_arrays())
    with pytest.raises(SnapshotFailed) as caught:
        snapshotter.wait(10)
    assert (caught.value.operation, caught.value.errno) == ("create directory", errno.ENOTDIR)
    assert str(caught.value).startswith(f"snapshot failed: create directory {directory}: ENOTDIR")
    assert "snapshot failed: " in caplog.text
    assert not snapshotter.running
    assert snapshotter.start(tmp_path, 3, HASH, sample_arrays())  # usable again
    assert snapshotter.wait(10) is not None


def test_an_unexpected_error_in_the_child_is_reported(tmp_path: Path) -> None:
    snapshotter = BackgroundSnapshotter(io=RaiseInWrite())
    assert snapshotter.start(tmp_path, 3, HASH, sample_arrays())
    with pytest.raises(
        SnapshotFailed, match=r"snapshot process .*: RuntimeError: bug in the writer"
    ):
        snapshotter.wait(10)
    assert snapshot_files(tmp_path) == []


def test_wait_times_out_and_cancel_kills(tmp_path: Path) -> None:
    io = BlockInWrite(tmp_path / "gate")
    snapshotter = BackgroundSnapshotter(io=io)
    assert snapshotter.start(tmp_path, 3, HASH, sample_arrays())
    io.wait_until_blocked()
    assert snapshotter.wait(0.05) is None
    assert snapshotter.running
    assert snapshotter.cancel()
    assert not snapshotter.running
    assert not snapshotter.cancel()
    assert prune_snapshots(tmp_path, 1) == [tmp_path / (snapshot_name(3) + ".tmp")]


def test_a_child_killed_from_outside_fails(tmp_path: Path) -> None:
    snapshotter = BackgroundSnapshotter(io=BlockInWrite(tmp_path / "gate"))
    assert snapshotter.start(tmp_path, 3, HASH, sample_arrays())
    pid = snapshotter.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # the child does not inherit Python's handlers
    with pytest.raises(SnapshotFailed, match="killed by SIGTERM, no result"):
        snapshotter.wait(10)


def test_arrays_in_shared_memory_are_refused(tmp_path: Path) -> None:
    region = mmap.mmap(-1, 4096)  # MAP_SHARED: fork would not copy it on write
    try:
        array = np.frombuffer(region, np.int64)
        snapshotter = BackgroundSnapshotter()
        with pytest.raises(ValueError, match="'book' is in shared memory"):
            snapshotter.start(tmp_path, 3, HASH, {"private": np.zeros(3), "book": array})
        assert not snapshotter.running
        del array
    finally:
        region.close()


def test_config_is_checked_and_applied(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nice_increment must be"):
        SnapshotterConfig(nice_increment=20)
    with pytest.raises(ConfigError, match="cpus must be"):
        SnapshotterConfig(cpus=())
    snapshotter = BackgroundSnapshotter(SnapshotterConfig(nice_increment=0, cpus=(0,)))
    assert snapshotter.start(tmp_path, 3, HASH, {"a": np.arange(3)})
    assert snapshotter.wait(10) is not None


# ------------------------------------------------------------------ state hash in the child


def test_a_state_hash_function_runs_in_the_child_on_the_state_at_start(
    tmp_path: Path, snapshotter: BackgroundSnapshotter
) -> None:
    arrays = {"a": np.arange(100_000, dtype=np.int64)}
    before = hashlib.blake2b(arrays["a"].tobytes(), digest_size=16).hexdigest()
    parent = os.getpid()

    def state_hash() -> str:
        assert os.getpid() != parent  # an AssertionError would fail the snapshot
        return hashlib.blake2b(arrays["a"].tobytes(), digest_size=16).hexdigest()

    assert snapshotter.start(tmp_path, 5, state_hash, arrays)
    arrays["a"][:] = -1  # after start: the child hashes (and writes) the state at start
    info = snapshotter.wait(10)
    assert info is not None
    assert info.state_hash == before
    got_info, got, _ = read_snapshot(info.path)
    assert got_info == info
    assert np.array_equal(got["a"], np.arange(100_000, dtype=np.int64))


def fail_hash() -> str:
    raise RuntimeError("hash kernel failed")


@pytest.mark.parametrize(
    ("state_hash", "reason"),
    [
        (fail_hash, "RuntimeError: hash kernel failed"),
        (lambda: "NOPE", "ValueError: snapshot state_hash must be 32 lowercase hex digits"),
    ],
)
def test_a_failing_state_hash_function_surfaces_as_snapshot_failed(
    tmp_path: Path, snapshotter: BackgroundSnapshotter, state_hash: Callable[[], str], reason: str
) -> None:
    make_snapshots(tmp_path, [3])
    assert snapshotter.start(tmp_path, 5, state_hash, sample_arrays())
    with pytest.raises(SnapshotFailed) as caught:
        snapshotter.wait(10)
    assert caught.value.operation == "state hash"
    assert caught.value.path == tmp_path / snapshot_name(5)
    assert caught.value.reason.startswith(reason)
    assert snapshot_files(tmp_path) == [snapshot_name(3)]  # no file, not even a temporary one


def test_start_checks_a_state_hash_string_in_the_caller(
    tmp_path: Path, snapshotter: BackgroundSnapshotter
) -> None:
    bad: list[Any] = ["X" * 32, 42, None]
    for state_hash in bad:
        with pytest.raises(ValueError, match="32 lowercase hex digits"):
            snapshotter.start(tmp_path, 5, state_hash, {})
    assert not snapshotter.running
