"""Snapshot directory and atomic writes: list, load the newest valid, prune, temporary
files of live and dead writers, and every failing system call
(persistence/snapshot_directory.py, persistence/snapshot_writer.py)."""

from __future__ import annotations

import errno
import fcntl
import logging
from pathlib import Path

import numpy as np
import pytest

from persistence.snapshot import (
    SnapshotFailed,
    list_snapshots,
    load_newest_valid,
    prune_snapshots,
    read_snapshot,
    snapshot_name,
    verify_snapshot,
    write_snapshot,
)
from tests.unit.persistence.helpers import FaultyIO
from tests.unit.persistence.test_snapshot import (
    HASH,
    ORDER_DTYPE,
    assert_same_arrays,
    damage,
    make_snapshots,
    snapshot_files,
    write,
)


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


#: The system calls of ``write_snapshot`` with two arrays (one stored, one all zero) and
#: an existing directory: open, ftruncate, 7 writes (head; descriptor, data, footer;
#: descriptor, footer; trailer), fsync, rename, close, fsync_dir.
WRITE_CALLS = [
    "open", "ftruncate", *["write"] * 7, "fsync", "replace", "close", "fsync_dir",
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
