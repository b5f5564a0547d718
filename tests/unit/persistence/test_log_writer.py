"""LogWriter: appending, group commit, rotation, reopening (persistence/log_writer.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.errors import ClosedError, ConfigError
from persistence.log import (
    FsyncPolicy,
    LogBusy,
    LogConfig,
    LogFull,
    LogReader,
    LogWriter,
    RecordTooLarge,
    SequenceError,
    read_committed_seq,
)
from persistence.log_format import frame_length, segment_name
from tests.unit.persistence.helpers import (
    RTYPE,
    FaultyIO,
    config,
    make_log,
    payload_for,
    read_all,
    record_for,
    segment_path,
    write_records,
)


def test_round_trip(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, config()) as writer:
        assert (writer.last_seq, writer.durable_seq) == (0, 0)
        write_records(writer, range(1, 101), batch=10)
        assert (writer.last_seq, writer.durable_seq) == (100, 100)
    assert read_all(tmp_path) == [record_for(seq) for seq in range(1, 101)]


def test_payload_may_be_any_bytes_like(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, config()) as writer:
        writer.append(1, 1, b"bytes")
        writer.append(2, 2, bytearray(b"bytearray"))
        writer.append(3, 3, memoryview(b"xmemoryview")[1:])
        writer.append(4, 65535, b"")
        writer.commit()
    assert [(r.rtype, r.payload) for r in read_all(tmp_path)] == [
        (1, b"bytes"),
        (2, b"bytearray"),
        (3, b"memoryview"),
        (65535, b""),
    ]


def test_append_only_buffers_and_commit_makes_durable(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, config()) as writer:
        writer.append(1, RTYPE, b"a")
        writer.append(2, RTYPE, b"b")
        assert (writer.last_seq, writer.durable_seq) == (2, 0)
        assert read_all(tmp_path) == []
        assert read_committed_seq(tmp_path) == 0
        assert writer.commit() == 2
        assert read_committed_seq(tmp_path) == 2
        assert writer.commit() == 2  # nothing pending: nothing to do


@pytest.mark.parametrize("seq", [0, 2, 5, -1])
def test_sequence_continuity_is_enforced(tmp_path: Path, seq: int) -> None:
    with LogWriter.open(tmp_path, config()) as writer:
        with pytest.raises(SequenceError, match=rf"append seq={seq}: expected seq 1$"):
            writer.append(seq, RTYPE, b"")
        writer.append(1, RTYPE, b"")
        with pytest.raises(SequenceError, match="append seq=1: expected seq 2"):
            writer.append(1, RTYPE, b"")  # a repeat
        with pytest.raises(SequenceError, match="append seq=True: expected seq 2"):
            writer.append(True, RTYPE, b"")  # bool is an int, but not a seq
        assert writer.last_seq == 1


@pytest.mark.parametrize("rtype", [0, 65536, -1])
def test_record_type_range(tmp_path: Path, rtype: int) -> None:
    with LogWriter.open(tmp_path, config()) as writer:
        with pytest.raises(ValueError, match=r"append seq=1: record type must be 1\.\.65535"):
            writer.append(1, rtype, b"")
        assert writer.last_seq == 0


def test_max_record_bytes_is_enforced_on_append(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, config(max_record_bytes=100)) as writer:
        writer.append(1, RTYPE, bytes(100))
        with pytest.raises(
            RecordTooLarge, match="append seq=2: payload of 101 bytes exceeds max_record_bytes 100"
        ):
            writer.append(2, RTYPE, bytes(101))
        assert writer.last_seq == 1


def test_pending_bytes_are_bounded(tmp_path: Path) -> None:
    limit = 3 * frame_length(100)
    with LogWriter.open(tmp_path, config(max_record_bytes=100, max_pending_bytes=limit)) as writer:
        for seq in (1, 2, 3):
            writer.append(seq, RTYPE, bytes(100))
        with pytest.raises(LogFull, match="append seq=4: 384 bytes pending, the record needs 128"):
            writer.append(4, RTYPE, bytes(100))
        writer.commit()
        writer.append(4, RTYPE, bytes(100))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fsync": "sometimes"}, "fsync must be one of always, batch, none; got 'sometimes'"),
        ({"segment_bytes": 100}, "segment_bytes must be an integer from 4096 to"),
        ({"max_record_bytes": 0}, "max_record_bytes must be an integer from 1 to 67108864"),
        ({"max_record_bytes": (64 << 20) + 1}, "max_record_bytes must be an integer from 1"),
        ({"max_pending_bytes": 1000}, "max_pending_bytes must be an integer from 1048600"),
        ({"segment_bytes": 1.5e6}, "segment_bytes must be an integer"),
    ],
)
def test_config_is_checked(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LogConfig(**settings)  # type: ignore[arg-type]


def test_config_accepts_policy_names() -> None:
    assert LogConfig(fsync="always").fsync is FsyncPolicy.ALWAYS  # type: ignore[arg-type]


def test_batch_commit_is_one_write_and_one_sync(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer:
        io.calls.clear()
        for seq in range(1, 51):
            writer.append(seq, RTYPE, payload_for(seq))
        writer.commit()
        assert io.calls == ["write", "fdatasync", "pwrite"]  # records, sync, committed marker
        assert writer.stats().syncs == 1


def test_fsync_always_syncs_each_record(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(fsync=FsyncPolicy.ALWAYS), io=io) as writer:
        io.calls.clear()
        write_records(writer, range(1, 6), batch=5)
        assert io.count("write") == io.count("fdatasync") == 5
    assert read_all(tmp_path) == [record_for(seq) for seq in range(1, 6)]


def test_fsync_none_never_syncs_records(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(fsync=FsyncPolicy.NONE), io=io) as writer:
        io.calls.clear()
        write_records(writer, range(1, 6), batch=5)
        assert writer.durable_seq == 5
        assert io.count("fdatasync") == io.count("fsync") == 0
    assert read_all(tmp_path) == [record_for(seq) for seq in range(1, 6)]


def test_fsync_none_still_closes_segments_whole(tmp_path: Path) -> None:
    io = FaultyIO()
    log_config = config(fsync=FsyncPolicy.NONE, segment_bytes=4096)
    with LogWriter.open(tmp_path, log_config, io=io) as writer:
        io.calls.clear()
        created = writer.stats().segments_created  # the first segment, by open
        write_records(writer, range(1, 101), batch=5)
        rotations = writer.stats().segments_created - created
        assert rotations >= 2
        assert io.count("fdatasync") == rotations  # the closed segment, at each rotation


def test_durable_seq_advances_only_after_the_sync(tmp_path: Path) -> None:
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(), io=io) as writer:
        seen: list[int] = []
        io.hooks["fdatasync"] = lambda: seen.append(writer.durable_seq)
        write_records(writer, range(1, 4), batch=3)
        assert seen == [0]
        assert writer.durable_seq == 3


def test_rotation_by_size(tmp_path: Path) -> None:
    log_config = config(segment_bytes=4096)
    with LogWriter.open(tmp_path, log_config) as writer:
        write_records(writer, range(1, 301), batch=4)
        assert writer.stats().segments_created > 3
    segments = sorted(tmp_path.glob("*.log"))
    assert len(segments) > 3
    for path in segments[:-1]:
        # Closed at a commit boundary: a commit of 4 records fits under the limit.
        assert path.stat().st_size <= 4096
    firsts = [int(path.name[:20]) for path in segments]
    assert firsts[0] == 1
    assert firsts == sorted(firsts)
    assert read_all(tmp_path) == [record_for(seq) for seq in range(1, 301)]


def test_a_commit_larger_than_a_segment_gets_its_own(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, config(segment_bytes=4096)) as writer:
        write_records(writer, range(1, 3))
        write_records(writer, range(3, 103), batch=100)  # ~13 KiB in one commit
        write_records(writer, range(103, 105))
    assert [path.name for path in sorted(tmp_path.glob("*.log"))] == [
        segment_name(1),
        segment_name(3),
        segment_name(103),
    ]
    assert read_all(tmp_path) == [record_for(seq) for seq in range(1, 105)]


def test_reopen_after_clean_close_continues(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    with LogWriter.open(tmp_path, config()) as writer:
        assert (writer.last_seq, writer.durable_seq) == (10, 10)
        with pytest.raises(SequenceError, match="expected seq 11"):
            writer.append(10, RTYPE, b"")
        write_records(writer, range(11, 21))
    assert read_all(tmp_path) == [record_for(seq) for seq in range(1, 21)]


def test_reopen_of_empty_log_and_empty_trailing_segment(tmp_path: Path) -> None:
    LogWriter.open(tmp_path, config()).close()
    assert [path.name for path in tmp_path.glob("*.log")] == [segment_name(1)]
    with LogWriter.open(tmp_path, config()) as writer:
        assert writer.last_seq == 0
        write_records(writer, range(1, 4))


def test_start_seq_of_a_new_log(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, config(), start_seq=1000) as writer:
        assert writer.last_seq == 999
        write_records(writer, range(1000, 1003))
    assert segment_path(tmp_path, 1000).exists()
    assert [r.seq for r in read_all(tmp_path, 1000)] == [1000, 1001, 1002]
    with LogWriter.open(tmp_path, config(), start_seq=5) as writer:  # ignored: log exists
        assert writer.last_seq == 1002


def test_a_changed_record_limit_starts_a_new_segment(tmp_path: Path) -> None:
    make_log(tmp_path, 3, log_config=config(max_record_bytes=200))
    with LogWriter.open(tmp_path, config(max_record_bytes=1000)) as writer:
        writer.append(4, RTYPE, bytes(1000))
        writer.commit()
    assert segment_path(tmp_path, 4).exists()
    assert read_all(tmp_path)[-1].payload == bytes(1000)


def test_one_writer_per_directory(tmp_path: Path) -> None:
    with (
        LogWriter.open(tmp_path, config()),
        pytest.raises(LogBusy, match="is in use by another writer"),
    ):
        LogWriter.open(tmp_path, config())
    LogWriter.open(tmp_path, config()).close()  # the lock goes with the writer


def test_closed_writer_refuses_use(tmp_path: Path) -> None:
    writer = LogWriter.open(tmp_path, config())
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(ClosedError, match="is closed"):
        writer.append(1, RTYPE, b"")
    with pytest.raises(ClosedError):
        writer.commit()


def test_close_drops_uncommitted_records_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with LogWriter.open(tmp_path, config()) as writer:
        write_records(writer, range(1, 3))
        writer.append(3, RTYPE, b"never committed")
    assert "uncommitted records: count=1 first_seq=3" in caplog.text
    assert [r.seq for r in read_all(tmp_path)] == [1, 2]


def test_temporary_files_of_a_killed_writer_are_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_log(tmp_path, 2)
    leftover = tmp_path / (segment_name(3) + ".tmp")
    leftover.write_bytes(b"half a header")
    caplog.set_level(logging.INFO)
    with LogWriter.open(tmp_path, config()) as writer:
        assert writer.last_seq == 2
    assert not leftover.exists()
    assert "log removed temporary file" in caplog.text


def test_limit_readers_holds_the_committed_marker_back(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path) as writer:
        writer.limit_readers(0)
        for seq in range(1, 6):
            writer.append(seq, 1, b"x" * seq)
        writer.commit()
        assert (writer.durable_seq, read_committed_seq(tmp_path)) == (5, 0)
        writer.limit_readers(3)
        assert read_committed_seq(tmp_path) == 3
        assert [r.seq for r in LogReader(tmp_path).read(1)] == [1, 2, 3]
        writer.limit_readers(9)  # never past what is durable
        assert read_committed_seq(tmp_path) == 5
        writer.limit_readers(2)
    # Reopened holding the readers: they see what they saw, not the whole log.
    with LogWriter.open(tmp_path, hold_readers=True) as writer:
        assert (writer.durable_seq, writer.reader_limit, read_committed_seq(tmp_path)) == (5, 2, 2)
        writer.limit_readers(None)
        assert read_committed_seq(tmp_path) == 5
    with LogWriter.open(tmp_path) as writer:  # not holding: everything durable
        assert read_committed_seq(tmp_path) == 5


def test_recent_frames_are_what_was_written(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path) as writer:
        assert writer.recent_frames(1) == []  # nothing durable yet
        writer.keep_recent(300)
        for seq in range(1, 4):
            writer.append(seq, 1, b"x" * 40)
        writer.commit()
        writer.append(4, 1, b"y" * 40)
        writer.commit()
        pieces = writer.recent_frames(1)
        assert pieces is not None
        assert [(a, b) for a, b, _ in pieces] == [(1, 3), (4, 4)]
        on_disk = (tmp_path / segment_name(1)).read_bytes()
        assert on_disk.endswith(pieces[0][2] + pieces[1][2])
        assert writer.recent_frames(2) is None  # not where a piece starts: read the log
        assert writer.recent_frames(5) == []
        writer.append(5, 1, b"z" * 100)
        writer.commit()  # over 300 bytes: the oldest piece goes
        assert writer.recent_frames(1) is None
        assert [(a, b) for a, b, _ in writer.recent_frames(5) or []] == [(5, 5)]
