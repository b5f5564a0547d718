"""LogReader: reading from a sequence, following, and seeing only committed records."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from core.errors import ClosedError
from persistence.log import (
    LogCorrupt,
    LogReader,
    LogUnavailable,
    LogWriter,
    Record,
    SeqPruned,
)
from tests.unit.persistence.helpers import (
    RTYPE,
    FaultyIO,
    config,
    flip_byte,
    make_log,
    payload_for,
    record_for,
    record_offsets,
    segment_path,
    write_records,
)


def records(first: int, last: int) -> list[Record]:
    return [record_for(seq) for seq in range(first, last + 1)]


class FakeClock:
    """A clock that only moves when ``sleep`` is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def test_read_from_any_sequence_across_segments(tmp_path: Path) -> None:
    make_log(tmp_path, 300, batch=3, log_config=config(segment_bytes=4096))
    assert len(list(tmp_path.glob("*.log"))) > 3
    with LogReader(tmp_path) as reader:
        assert reader.committed_seq() == 300
        assert reader.first_seq() == 1
        for start in (1, 2, 77, 150, 299, 300):
            assert list(reader.read(start)) == records(start, 300)
        assert list(reader.read(10, limit=3)) == records(10, 12)
        assert list(reader.read(13, limit=2)) == records(13, 14)  # continues from the cursor
        assert list(reader.read(5, limit=0)) == []
        assert list(reader.read(301)) == []


def test_reader_of_a_log_without_writer_sees_nothing(tmp_path: Path) -> None:
    with LogReader(tmp_path) as reader:
        assert reader.committed_seq() == 0
        assert reader.first_seq() is None
        assert list(reader.read(1)) == []


def test_reader_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LogReader(tmp_path / "missing")
    reader = LogReader(tmp_path)
    with pytest.raises(ValueError, match="from_seq must be from 1 to"):
        reader.read(0)
    with pytest.raises(ValueError, match="limit must be a non-negative integer"):
        reader.read(1, limit=-1)
    reader.close()
    with pytest.raises(ClosedError, match="is closed"):
        reader.read(1)


def test_uncommitted_records_are_invisible(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer, LogReader(tmp_path) as reader:
        write_records(writer, range(1, 3))
        writer.append(3, RTYPE, payload_for(3))
        assert list(reader.read(1)) == records(1, 2)
        seen_during_sync: list[list[Record]] = []
        # Between the write and the sync the bytes are in the file but not durable.
        io.hooks["fdatasync"] = lambda: seen_during_sync.append(list(reader.read(3)))
        writer.commit()
        assert seen_during_sync == [[]]
        assert list(reader.read(3)) == records(3, 3)


def test_a_failed_sync_is_never_seen_and_the_retry_once(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer, LogReader(tmp_path) as reader:
        write_records(writer, range(1, 3))
        for seq in range(3, 6):
            writer.append(seq, RTYPE, payload_for(seq))
        io.fail("fdatasync", errno.EIO)
        with pytest.raises(LogUnavailable):
            writer.commit()
        assert list(reader.read(1)) == records(1, 2)
        assert writer.commit() == 5
        assert list(reader.read(1)) == records(1, 5)


def test_a_partial_frame_past_the_committed_records_is_waited_for(tmp_path: Path) -> None:
    make_log(tmp_path, 5)
    with open(segment_path(tmp_path), "ab") as file:
        file.write(b"\x40\x00\x00\x00\x12")  # the start of a frame being written
    clock = FakeClock()
    with LogReader(tmp_path, clock=clock, sleep=clock.sleep) as reader:
        assert list(reader.follow(1, timeout_s=0.05)) == records(1, 5)
        assert clock.sleeps > 10


def test_damage_to_a_committed_record_raises(tmp_path: Path) -> None:
    make_log(tmp_path, 5)
    path = segment_path(tmp_path)
    offsets = record_offsets(path)
    flip_byte(path, offsets[3] + 26)
    with LogReader(tmp_path) as reader:
        got: list[Record] = []
        with pytest.raises(LogCorrupt) as caught:
            got.extend(reader.read(1))
        assert got == records(1, 3)
        assert (caught.value.path, caught.value.offset, caught.value.expected_seq) == (
            path,
            offsets[3],
            4,
        )
        assert "checksum mismatch" in str(caught.value)


def test_follow_waits_for_new_records_and_ends_after_the_timeout(tmp_path: Path) -> None:
    writer = LogWriter.open(tmp_path, config())
    clock = FakeClock()

    def commit_on_second_sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.sleeps == 2:
            write_records(writer, range(1, 4))

    with writer, LogReader(tmp_path, clock=clock, sleep=commit_on_second_sleep) as reader:
        assert list(reader.follow(1, timeout_s=0.5)) == records(1, 3)
        # The idle timeout runs from the last record: 2 sleeps, then 0.5 s idle.
        assert clock.now == pytest.approx(0.002 + 0.5, abs=0.0015)


def test_follow_across_rotation_with_a_concurrent_writer(tmp_path: Path) -> None:
    writer = LogWriter.open(tmp_path, config(segment_bytes=4096))
    last = 400

    def produce() -> None:
        for first in range(1, last + 1, 7):
            write_records(writer, range(first, min(first + 7, last + 1)), batch=7)

    thread = threading.Thread(target=produce)
    got: list[Record] = []
    with writer, LogReader(tmp_path) as reader:
        thread.start()
        for record in reader.follow(1, timeout_s=2.0):
            got.append(record)
            if record.seq == last:
                break
        thread.join()
    assert got == records(1, last)
    assert len(list(tmp_path.glob("*.log"))) > 5


def test_a_pruned_sequence_is_refused(tmp_path: Path) -> None:
    make_log(tmp_path, 300, log_config=config(segment_bytes=4096))
    segments = sorted(tmp_path.glob("*.log"))
    with LogReader(tmp_path) as reader:
        assert list(reader.read(1, limit=2)) == records(1, 2)
        segments[0].unlink()  # retention, while the reader is in the segment
        assert list(reader.read(3, limit=1)) == records(3, 3)  # its descriptor still reads
        second = int(segments[1].name[:20])
        with pytest.raises(
            SeqPruned,
            match=f"seq 1 is no longer in the log .*: the oldest segment starts at {second}",
        ):
            list(reader.read(1))
        assert list(reader.read(second, limit=1)) == records(second, second)


def test_a_committed_record_missing_from_the_files_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    offsets = record_offsets(segment_path(tmp_path))
    with LogWriter.open(tmp_path, config()) as writer:
        write_records(writer, [11])
        with open(segment_path(tmp_path), "r+b") as file:
            file.truncate(offsets[-1])  # someone cut the file behind the writer's back
        with (
            LogReader(tmp_path) as reader,
            pytest.raises(
                LogCorrupt, match="committed record 11 is neither in this segment nor in"
            ),
        ):
            list(reader.read(1))
    with pytest.raises(LogCorrupt, match="acknowledged records are missing"):
        LogWriter.open(tmp_path, config())  # the writer refuses too


def test_runs_read_in_one_kernel_call_equal_records_read_one_by_one(tmp_path: Path) -> None:
    """The fast path (``scan_records`` over a chunk) gives what ``_next_record`` gives,
    across segments and chunk ends, for every limit; damage in a run is still
    reported by the slow path, at the damaged record."""
    import persistence.log_reader as log_reader

    make_log(tmp_path, 3000, batch=7, log_config=config(segment_bytes=64 << 10))
    assert len(list(tmp_path.glob("*.log"))) > 3
    with LogReader(tmp_path) as reader:
        assert list(reader.read(1)) == records(1, 3000)
        for start, limit in ((1, 8), (5, 100), (999, 2001), (2990, 50), (17, 9)):
            assert list(reader.read(start, limit=limit)) == records(
                start, min(3000, start + limit - 1)
            )
    old = log_reader.RUN_CHUNK_BYTES
    log_reader.RUN_CHUNK_BYTES = 1 << 10  # many chunk ends inside frames
    try:
        with LogReader(tmp_path) as reader:
            assert list(reader.read(1)) == records(1, 3000)
    finally:
        log_reader.RUN_CHUNK_BYTES = old
    path = segment_path(tmp_path)
    offsets = record_offsets(path)
    flip_byte(path, offsets[40] + 26)
    with LogReader(tmp_path) as reader:
        got: list[Record] = []
        with pytest.raises(LogCorrupt, match="checksum mismatch") as caught:
            got.extend(reader.read(1))
        assert got == records(1, 40)
        assert caught.value.offset == offsets[40]
