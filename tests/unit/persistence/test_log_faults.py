"""Disk failures: nothing is acknowledged that is not durable, and the log resumes.

The failing disk is ``FaultyIO`` (a failed sync also garbles the unsynced bytes, as
a kernel that dropped dirty pages would), plus a real ENOSPC from a tiny tmpfs.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from persistence.log import FsyncPolicy, LogConfig, LogCorrupt, LogUnavailable, LogWriter
from persistence.log_writer import LogWriter as WriterClass
from tests.unit.persistence.helpers import (
    RTYPE,
    FaultyIO,
    config,
    make_log,
    payload_for,
    read_all,
    record_for,
    write_records,
)


def append_range(writer: LogWriter, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        writer.append(seq, RTYPE, payload_for(seq))


def assert_log_holds(directory: Path, last: int) -> None:
    """Reopened without faults, the log holds exactly records 1..last."""
    with LogWriter.open(directory, config()) as writer:
        assert writer.last_seq == last
    assert read_all(directory) == [record_for(seq) for seq in range(1, last + 1)]


def test_fsync_error_blocks_acknowledgement_and_a_later_commit_rewrites(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer:
        write_records(writer, range(1, 4))
        append_range(writer, 4, 9)
        io.fail("fdatasync", errno.EIO)
        with pytest.raises(LogUnavailable) as caught:
            writer.commit()
        error = caught.value
        assert (error.errno, error.operation, error.durable_seq) == (errno.EIO, "fdatasync", 3)
        assert str(error).startswith(f"log unavailable: fdatasync {writer.segment_path} failed: ")
        assert "EIO (Input/output error); durable up to seq 3" in str(error)
        assert isinstance(error.__cause__, OSError)
        assert (writer.durable_seq, writer.available, writer.failure) == (3, False, error)
        assert "log unavailable: operation=fdatasync" in caplog.text
        assert writer.commit() == 9
        assert writer.available
        assert writer.failure is None
        assert "log available again: durable_seq=9 failures=1" in caplog.text
    assert_log_holds(tmp_path, 9)


def test_negative_control_retrying_the_sync_alone_loses_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that trusts the page cache after a failed fsync (here: no repair)
    leaves the garbled pages in the log; the test above would catch it."""
    monkeypatch.setattr(WriterClass, "_repair", lambda self: None)
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer:
        write_records(writer, range(1, 4))
        append_range(writer, 4, 9)
        io.fail("fdatasync", errno.EIO)
        with pytest.raises(LogUnavailable):
            writer.commit()
        assert writer.commit() == 9  # acknowledged
    try:
        with LogWriter.open(tmp_path, config()) as reopened:
            assert reopened.last_seq < 9  # acknowledged records lost
    except LogCorrupt:
        pass  # or the log refuses to start: either way assert_log_holds fails


def test_repeated_failures_are_logged_once_and_pending_stays_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer:
        io.fail("fdatasync", errno.EIO, times=-1)
        for first in range(1, 30, 3):
            append_range(writer, first, first + 2)
            with pytest.raises(LogUnavailable):
                writer.commit()
            assert writer.durable_seq == 0
        assert writer.stats().failures == 10
        assert caplog.text.count("log unavailable: operation=fdatasync") == 1
        io.clear()
        assert writer.commit() == 30
    assert_log_holds(tmp_path, 30)


def test_partial_write_then_disk_full(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer:
        write_records(writer, range(1, 3))
        size = writer.segment_path.stat().st_size
        append_range(writer, 3, 20)
        io.short_writes = 64
        writes = io.count("write")
        io.hooks["write"] = lambda: (
            io.fail("write", errno.ENOSPC) if io.count("write") == writes + 2 else None
        )
        with pytest.raises(LogUnavailable, match=r"write .* failed: ENOSPC \(No space left"):
            writer.commit()
        assert writer.segment_path.stat().st_size == size + 128  # the partial write
        assert writer.durable_seq == 2
        del io.hooks["write"]
        io.clear()
        assert writer.commit() == 20
    assert_log_holds(tmp_path, 20)


def test_fsync_always_acknowledges_the_synced_prefix(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(fsync=FsyncPolicy.ALWAYS), io=io) as writer:
        append_range(writer, 1, 5)
        syncs = io.count("fdatasync")
        io.hooks["fdatasync"] = lambda: (
            io.fail("fdatasync") if io.count("fdatasync") == syncs + 2 else None
        )
        with pytest.raises(LogUnavailable) as caught:
            writer.commit()
        assert caught.value.durable_seq == writer.durable_seq == 2
        del io.hooks["fdatasync"]
        assert writer.commit() == 5
    assert_log_holds(tmp_path, 5)


@pytest.mark.parametrize("op", ["open", "write", "fsync", "replace", "fsync_dir"])
def test_failure_while_rotating(tmp_path: Path, op: str) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(segment_bytes=4096), io=io) as writer:
        write_records(writer, range(1, 20), batch=19)  # ~2.6 KiB
        append_range(writer, 20, 40)  # does not fit: the commit starts a new segment
        io.fail(op, errno.EIO)
        with pytest.raises(LogUnavailable):
            writer.commit()
        assert writer.durable_seq == 19
        assert not list(tmp_path.glob("*.tmp"))
        assert writer.commit() == 40
    assert len(list(tmp_path.glob("*.log"))) == 2
    assert_log_holds(tmp_path, 40)


def test_read_only_file_system(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer:
        append_range(writer, 1, 2)
        io.fail("write", errno.EROFS, times=-1)
        with pytest.raises(LogUnavailable, match=r"EROFS \(Read-only file system\)"):
            writer.commit()
        io.clear()
        writer.commit()
    assert_log_holds(tmp_path, 2)


def workload(writer: LogWriter, last: int) -> None:
    """Commits of 1..6 records up to ``last``, retrying each failed commit once."""
    seq = writer.last_seq
    size = 1
    while seq < last:
        top = min(seq + size, last)
        append_range(writer, seq + 1, top)
        seq = top
        size = size % 6 + 1
        try:
            writer.commit()
        except LogUnavailable:
            writer.commit()  # the fault was a single one: the retry must succeed


def count_calls(tmp_path: Path, log_config: LogConfig, last: int) -> int:
    io = FaultyIO(real_syncs=False)
    with LogWriter.open(tmp_path / "count", log_config, io=io) as writer:
        first = len(io.calls)
        workload(writer, last)
        return len(io.calls) - first


@pytest.mark.parametrize("fsync", [FsyncPolicy.BATCH, FsyncPolicy.ALWAYS])
def test_fail_the_nth_call_for_every_n(tmp_path: Path, fsync: FsyncPolicy) -> None:
    """SQLite's I/O-error loop: fail call N (any kind) for N = 1, 2, ... through a
    workload that rotates segments; a crash copy taken right after the failure must
    open to a valid log holding at least every acknowledged record, and the finished
    log must hold every record exactly once."""
    log_config = config(fsync=fsync, segment_bytes=4096)
    last = 60
    total = count_calls(tmp_path, log_config, last)
    assert total > 50
    for n in range(1, total + 1):
        directory = tmp_path / f"n{n}"
        io = FaultyIO(real_syncs=False)  # crash copies model process crashes only
        crash_copies: list[tuple[Path, int]] = []
        with LogWriter.open(directory, log_config, io=io) as writer:
            io.fail_call_number = len(io.calls) + n
            seq = 0
            size = 1
            while seq < last:
                top = min(seq + size, last)
                append_range(writer, seq + 1, top)
                seq, size = top, size % 6 + 1
                try:
                    writer.commit()
                except LogUnavailable:
                    copy = tmp_path / f"crash{n}"
                    shutil.copytree(directory, copy)
                    crash_copies.append((copy, writer.durable_seq))
                    writer.commit()
        for copy, durable in crash_copies:
            with LogWriter.open(copy, log_config) as reopened:
                assert reopened.last_seq >= durable
            shutil.rmtree(copy)
        assert_log_holds(directory, last)
        shutil.rmtree(directory)


# --------------------------------------------------------------------------- real ENOSPC


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mount = shutil.which("mount")
    umount = shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    point = tmp_path / "tiny"
    point.mkdir()
    done = subprocess.run(  # noqa: S603 -- fixed arguments
        [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield point
    finally:
        subprocess.run([umount, str(point)], check=True)  # noqa: S603 -- fixed arguments


def test_real_disk_full_stops_and_resumes(
    tiny_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tiny_tmpfs / "log"
    filler = tiny_tmpfs / "filler"
    log_config = config(max_record_bytes=4096, segment_bytes=16384)
    with LogWriter.open(directory, log_config) as writer:
        filler.write_bytes(bytes(32 << 10))
        seq = 0
        with pytest.raises(LogUnavailable) as caught:  # noqa: PT012 -- fill until it fails
            while seq < 100:
                seq += 1
                writer.append(seq, RTYPE, payload_for(seq) * 10)
                writer.commit()
        assert caught.value.errno == errno.ENOSPC
        durable = writer.durable_seq
        assert durable == seq - 1
        with pytest.raises(LogUnavailable):
            writer.commit()  # still full
        assert writer.durable_seq == durable
        filler.unlink()
        assert writer.commit() == seq
        writer.append(seq + 1, RTYPE, b"after")
        writer.commit()
    with LogWriter.open(directory, log_config) as writer:
        assert writer.last_seq == seq + 1
    got = read_all(directory)
    assert [r.seq for r in got] == list(range(1, seq + 2))
    assert all(r.payload == payload_for(r.seq) * 10 for r in got[:-1])
    assert [r.levelname for r in caplog.records if "unavailable" in r.message] == ["ERROR"]
    assert any(
        r.levelno == logging.WARNING and "available again" in r.message for r in caplog.records
    )


def test_make_log_helper_is_sane(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    assert_log_holds(tmp_path, 3)
