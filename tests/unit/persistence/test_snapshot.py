"""Snapshot files: round trip, damage detection, retention, atomicity, and the
forked background writer (persistence/snapshot.py)."""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import select
import signal
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from crc32c import crc32c

from core.errors import ConfigError, CorruptLogError
from persistence._io import SysIO
from persistence.log_errors import LogError
from persistence.log_format import MAX_SEQ
from persistence.snapshot import (
    HEADER_LENGTH,
    TRAILER_LENGTH,
    BackgroundSnapshotter,
    SnapshotCorrupt,
    SnapshotFailed,
    SnapshotInfo,
    SnapshotterConfig,
    list_snapshots,
    load_newest_valid,
    parse_snapshot_name,
    prune_snapshots,
    read_snapshot,
    snapshot_name,
    verify_snapshot,
    write_snapshot,
)
from tests.unit.persistence.helpers import FaultyIO, flip_byte

HASH = "0123456789abcdef0123456789abcdef"
ORDER_DTYPE = np.dtype(
    [
        ("id", "<i8"),
        ("source", "u1", (32,)),
        ("price_ticks", "<i8"),
        ("nested", [("side", "i1"), ("flags", "<u2", (2,))]),
        ("tag", "S5"),
    ]
)
Arrays = dict[str, npt.NDArray[Any]]


def sample_arrays() -> Arrays:
    orders = np.zeros(7, ORDER_DTYPE)
    orders["id"] = np.arange(1, 8)
    orders["source"] = np.arange(7 * 32, dtype=np.uint8).reshape(7, 32)
    orders["price_ticks"] = [-(1 << 62), -1, 0, 1, 2, 3, (1 << 63) - 1]
    orders["nested"]["side"] = [1, -1, 1, -1, 1, -1, 1]
    orders["nested"]["flags"] = np.arange(14, dtype=np.uint16).reshape(7, 2)
    orders["tag"] = [b"a", b"bb", b"ccc", b"", b"eeeee", b"f", b"g"]
    return {
        "orders": orders,
        "balances": np.arange(-12, 12, dtype=np.int64).reshape(6, 4) * 1_000_000_007,
        "empty": np.empty((0, 3), np.int32),
        "scalar": np.array(-42, np.int64),
        "odd_bytes": np.arange(13, dtype=np.uint8),  # data padding to 8
        "aligned": np.ones(3, np.dtype([("a", "u1"), ("b", "<i8")], align=True)),
        "big_endian": np.arange(5, dtype=">i4"),
        "titled": np.zeros(2, np.dtype([(("Price in ticks", "price"), "<i8")])),
        "times": np.array([0, 1], "M8[ns]"),
    }


def assert_same_arrays(got: Arrays, expected: Arrays) -> None:
    assert list(got) == list(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype, name
        assert got[name].dtype.descr == array.dtype.descr, name
        assert got[name].shape == array.shape, name
        assert got[name].tobytes() == array.tobytes(), name


def write(directory: Path, seq: int, arrays: Arrays | None = None, **kwargs: Any) -> SnapshotInfo:
    return write_snapshot(directory, seq, HASH, arrays or sample_arrays(), **kwargs)


def snapshot_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# ------------------------------------------------------------------ round trip


def test_round_trip_keeps_bytes_dtypes_shapes_and_meta(tmp_path: Path) -> None:
    arrays = sample_arrays()
    meta = {"pairs": "BTC_USDT,ETH_USDT", "schema": "3", "ünïcode": "✓"}
    info = write_snapshot(tmp_path, 4711, HASH, arrays, meta, created_ns=123)
    assert info == SnapshotInfo(
        tmp_path / "snapshot-00000000000000004711.snap", 4711, HASH, 123, info.path.stat().st_size
    )
    assert snapshot_files(tmp_path) == [info.path.name]
    got_info, got, got_meta = read_snapshot(info.path)
    assert got_info == info
    assert got_meta == meta
    assert_same_arrays(got, arrays)
    assert all(array.flags.writeable and array.flags.c_contiguous for array in got.values())
    assert verify_snapshot(info.path) == info
    assert read_snapshot(info.path, verify=False)[0] == info


def test_name_helpers_and_defaults(tmp_path: Path) -> None:
    assert snapshot_name(7) == "snapshot-00000000000000000007.snap"
    assert parse_snapshot_name(snapshot_name(MAX_SEQ)) == MAX_SEQ
    assert parse_snapshot_name(snapshot_name(7) + ".tmp") is None
    assert parse_snapshot_name("snapshot-7.snap") is None
    info = write_snapshot(tmp_path / "new" / "dir", 0, HASH, {})  # creates the directory
    assert read_snapshot(info.path)[1:] == ({}, {})
    assert info.created_ns > 0


@pytest.mark.parametrize(
    ("arrays", "meta", "error", "match"),
    [
        ({"o": np.array([object()])}, None, ValueError, "Python objects"),
        ({"s": np.arange(12).reshape(3, 4)[:, ::2]}, None, ValueError, "not C-contiguous"),
        ({"f": np.asfortranarray(np.ones((2, 3)))}, None, ValueError, "not C-contiguous"),
        (
            {"u": np.zeros(2, np.dtype(("<i4", [("a", "<u2"), ("b", "<u2")])))},
            None,
            ValueError,
            "would be read back as",
        ),
        ({"z": np.zeros(2, np.dtype([]))}, None, ValueError, "itemsize 0"),
        ({"": np.zeros(1)}, None, ValueError, "must be 1 to 255 bytes"),
        ({"n" * 256: np.zeros(1)}, None, ValueError, "must be 1 to 255 bytes"),
        ({"l": [1, 2]}, None, TypeError, "not an ndarray"),
        ({}, {"k": 1}, TypeError, "meta maps str to str"),
        ({}, {"k": "v" * 70_000}, ValueError, "at most 65536"),
        ({}, {"k": "\udc80"}, ValueError, "not valid UTF-8"),
    ],
)
def test_unusable_arrays_and_meta_are_refused_before_any_io(
    tmp_path: Path, arrays: Arrays, meta: dict[str, Any] | None, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        write_snapshot(tmp_path, 1, HASH, arrays, meta)
    assert snapshot_files(tmp_path) == []


@pytest.mark.parametrize(
    ("seq", "state_hash", "match"),
    [
        (-1, HASH, "seq must be"),
        (MAX_SEQ + 1, HASH, "seq must be"),
        (True, HASH, "seq must be"),
        (1, HASH.upper(), "32 lowercase hex"),
        (1, HASH[:-1], "32 lowercase hex"),
    ],
)
def test_bad_seq_or_hash_is_refused(tmp_path: Path, seq: Any, state_hash: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_snapshot(tmp_path, seq, state_hash, {})


# ------------------------------------------------------------------ damage


def test_truncated_at_every_offset_is_corrupt(tmp_path: Path) -> None:
    info = write(tmp_path, 9)
    data = info.path.read_bytes()
    for length in range(len(data)):
        info.path.write_bytes(data[:length])
        with pytest.raises(SnapshotCorrupt) as caught:
            read_snapshot(info.path)
        assert caught.value.path == info.path
        assert "truncated" in caught.value.reason or "no trailer" in caught.value.reason
    assert list_snapshots(tmp_path) == []


def test_every_flipped_byte_is_detected(tmp_path: Path) -> None:
    info = write(tmp_path, 9)
    for offset in range(info.bytes):
        flip_byte(info.path, offset, 0x10)
        with pytest.raises(SnapshotCorrupt):
            read_snapshot(info.path)
        flip_byte(info.path, offset, 0x10)
    assert_same_arrays(read_snapshot(info.path)[1], sample_arrays())


def test_corruption_messages_name_file_offset_and_reason(tmp_path: Path) -> None:
    arrays = sample_arrays()
    info = write(tmp_path, 9, arrays)
    data_at = info.path.read_bytes().index(arrays["balances"].tobytes())
    cases = [
        (3, 0, "not a matchd snapshot: magic"),
        (20, 0, "header checksum mismatch"),
        (data_at + 5, data_at, "array 'balances': data checksum mismatch"),
        (info.bytes - 24, info.bytes - 24, "no trailer at the end"),
        (info.bytes - 12, info.bytes - 24, "trailer says"),
        (info.bytes - 2, info.bytes - 4, "trailer checksum of the checksums mismatch"),
    ]
    for flip_at, offset, reason in cases:
        flip_byte(info.path, flip_at)
        with pytest.raises(SnapshotCorrupt) as caught:
            read_snapshot(info.path)
        flip_byte(info.path, flip_at)
        assert (caught.value.offset, caught.value.reason[: len(reason)]) == (offset, reason)
        assert str(caught.value).startswith(f"snapshot corrupt: {info.path} offset {offset}: ")
        assert isinstance(caught.value, LogError)
        assert isinstance(caught.value, CorruptLogError)


def test_verify_false_skips_only_the_data_checksums(tmp_path: Path) -> None:
    arrays = sample_arrays()
    info = write(tmp_path, 9, arrays)
    data_at = info.path.read_bytes().index(arrays["balances"].tobytes())
    flip_byte(info.path, data_at)
    got = read_snapshot(info.path, verify=False)[1]
    assert got["balances"].tobytes() != arrays["balances"].tobytes()
    flip_byte(info.path, 20)  # the header is always checked
    with pytest.raises(SnapshotCorrupt, match="header checksum"):
        read_snapshot(info.path, verify=False)


def rewrite_first_descriptor(path: Path, shape: int, nbytes: int) -> None:
    """Give the first array (1-d) another shape and nbytes, with a valid checksum:
    what a writer bug or a crafted file looks like."""
    data = bytearray(path.read_bytes())
    meta_length = struct.unpack_from("<I", data, 64)[0]
    at = HEADER_LENGTH + ((meta_length + 7) & ~7)
    length = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<Q", data, at + 16, nbytes)
    struct.pack_into("<Q", data, at + 24, shape)
    struct.pack_into("<I", data, at + length - 4, crc32c(bytes(data[at : at + length - 4])))
    path.write_bytes(bytes(data))


def test_a_lying_descriptor_never_makes_it_allocate(tmp_path: Path) -> None:
    info = write(tmp_path, 9, {"a": np.arange(4, dtype=np.int64)})
    rewrite_first_descriptor(info.path, 1 << 40, 8 << 40)  # 8 TiB, checksum valid
    with pytest.raises(SnapshotCorrupt, match="8796093022208 bytes of data, only 40 bytes remain"):
        read_snapshot(info.path)
    rewrite_first_descriptor(info.path, 5, 32)
    with pytest.raises(SnapshotCorrupt, match=r"shape \(5,\) of int64 is 40 bytes, nbytes says 32"):
        read_snapshot(info.path)


def test_a_file_renamed_to_another_seq_is_corrupt(tmp_path: Path) -> None:
    info = write(tmp_path, 9)
    moved = info.path.rename(tmp_path / snapshot_name(10))
    with pytest.raises(SnapshotCorrupt, match="file name says seq 10, the header 9"):
        read_snapshot(moved)


# ------------------------------------------------------------------ directory


def make_snapshots(directory: Path, seqs: list[int]) -> dict[int, SnapshotInfo]:
    return {
        seq: write(directory, seq, {"v": np.full(100, seq, np.int64)}, created_ns=seq)
        for seq in seqs
    }


def damage(info: SnapshotInfo) -> None:
    flip_byte(info.path, info.bytes - TRAILER_LENGTH - 20)  # inside the last array's data


def test_list_is_newest_first_and_ignores_other_files(tmp_path: Path) -> None:
    infos = make_snapshots(tmp_path, [30, 10, 20])
    (tmp_path / (snapshot_name(40) + ".tmp")).write_bytes(b"partial")
    (tmp_path / "notes.txt").write_bytes(b"x")
    assert list_snapshots(tmp_path) == [infos[30], infos[20], infos[10]]
    assert list_snapshots(tmp_path / "missing") == []


def test_load_newest_valid_skips_damaged_ones_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_newest_valid(tmp_path) is None
    infos = make_snapshots(tmp_path, [10, 20, 30])
    damage(infos[30])
    with caplog.at_level(logging.WARNING):
        loaded = load_newest_valid(tmp_path)
    assert loaded is not None
    assert loaded[0] == infos[20]
    assert (loaded[1]["v"] == 20).all()
    assert f"snapshot damaged, skipped: path={infos[30].path} offset=" in caplog.text
    assert "reason=array 'v': data checksum mismatch" in caplog.text
    infos[20].path.write_bytes(infos[20].path.read_bytes()[:-1])
    loaded = load_newest_valid(tmp_path)
    assert loaded is not None
    assert loaded[0] == infos[10]
    damage(infos[10])
    assert load_newest_valid(tmp_path) is None


def test_prune_keeps_the_newest_valid_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    infos = make_snapshots(tmp_path, [10, 20, 30, 40, 50])
    damage(infos[50])
    with pytest.raises(ValueError, match="keep must be"):
        prune_snapshots(tmp_path, 0)
    assert prune_snapshots(tmp_path, 5) == []  # only 4 valid: nothing goes
    deleted = prune_snapshots(tmp_path, 2)
    assert deleted == [infos[20].path, infos[10].path]
    assert [info.seq for info in list_snapshots(tmp_path)] == [50, 40, 30]  # damaged 50 kept
    assert "snapshot damaged or unreadable, kept: path=" in caplog.text
    assert prune_snapshots(tmp_path, 2) == []
    assert prune_snapshots(tmp_path, 1) == [infos[30].path]
    loaded = load_newest_valid(tmp_path)
    assert loaded is not None
    assert loaded[0] == infos[40]


def test_prune_without_verify_checks_header_and_trailer_only(tmp_path: Path) -> None:
    infos = make_snapshots(tmp_path, [10, 20, 30])
    damage(infos[30])
    assert prune_snapshots(tmp_path, 1, verify=False) == [infos[20].path, infos[10].path]


# ------------------------------------------------------------------ atomicity


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


def test_a_tmp_file_that_a_live_writer_holds_is_left_alone(tmp_path: Path) -> None:
    tmp = tmp_path / (snapshot_name(20) + ".tmp")
    with open(tmp, "wb") as file:
        file.write(b"in progress")
        file.flush()
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        assert prune_snapshots(tmp_path, 1) == []
        with pytest.raises(SnapshotFailed) as caught:  # a second writer of the same seq
            write(tmp_path, 20)
        assert (caught.value.operation, caught.value.errno) == ("lock", errno.EAGAIN)
        assert tmp.read_bytes() == b"in progress"
    assert prune_snapshots(tmp_path, 1) == [tmp]


#: The system calls of ``write_snapshot`` with two arrays and an existing directory:
#: open, ftruncate, 8 writes, fsync, rename, close, fsync_dir.
WRITE_CALLS = [
    "open", "ftruncate", *["write"] * 8, "fsync", "replace", "close", "fsync_dir",
]  # fmt: skip


@pytest.mark.parametrize("number", range(1, len(WRITE_CALLS) + 1))
def test_failing_any_system_call_leaves_the_old_snapshot_and_no_partial_one(
    tmp_path: Path, number: int
) -> None:
    """SQLite's loop: fail the N-th call, for every N, of a write of 2 arrays."""
    arrays = {"a": np.arange(10), "b": np.zeros(3, ORDER_DTYPE)}
    older = make_snapshots(tmp_path, [10])[10]
    io = FaultyIO(real_syncs=False)
    io.fail_call_number = number
    with pytest.raises(SnapshotFailed) as caught:
        write_snapshot(tmp_path, 20, HASH, arrays, io=io)
    assert io.calls[number - 1] == WRITE_CALLS[number - 1]
    assert caught.value.errno == errno.EIO
    if caught.value.operation in ("close", "fsync directory"):  # after the rename
        assert verify_snapshot(tmp_path / snapshot_name(20)).seq == 20
    else:
        assert snapshot_files(tmp_path) == [older.path.name]
    assert verify_snapshot(older.path) == older
    io.fail_call_number = None
    info = write_snapshot(tmp_path, 20, HASH, arrays, io=io)  # the disk works again
    assert_same_arrays(read_snapshot(info.path)[1], arrays)
    assert io.calls[-len(WRITE_CALLS) :] == WRITE_CALLS


def test_disk_full_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    io = FaultyIO(real_syncs=False)
    io.fail("write", errno.ENOSPC)
    path = tmp_path / (snapshot_name(5) + ".tmp")
    with pytest.raises(SnapshotFailed) as caught:
        write(tmp_path, 5, io=io)
    assert str(caught.value) == f"snapshot failed: write {path}: ENOSPC (No space left on device)"
    assert (caught.value.errno, caught.value.operation) == (errno.ENOSPC, "write")
    assert isinstance(caught.value.__cause__, OSError)
    assert snapshot_files(tmp_path) == []


# ------------------------------------------------------------------ background


@pytest.fixture
def snapshotter() -> Iterator[BackgroundSnapshotter]:
    snapshotter = BackgroundSnapshotter()
    yield snapshotter
    snapshotter.cancel()


def test_background_snapshot_of_200_mb_stalls_briefly_and_holds_the_state_at_start(
    tmp_path: Path, snapshotter: BackgroundSnapshotter
) -> None:
    count = 12_500_000  # two arrays of 100 MB
    arrays = {
        "balances": np.arange(count, dtype=np.int64),
        "orders": np.zeros(count // 5, np.dtype([("id", "<i8"), ("source", "u1", (32,))])),
    }
    arrays["orders"]["id"] = np.arange(count // 5)
    assert snapshotter.start(tmp_path, 77, HASH, arrays, {"k": "v"})
    stall_ms = snapshotter.stall_ns / 1e6
    print(
        f"fork stall for {sum(a.nbytes for a in arrays.values()) / 1e6:.0f} MB: {stall_ms:.2f} ms"
    )
    assert stall_ms < 50
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
