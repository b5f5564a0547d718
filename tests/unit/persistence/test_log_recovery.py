"""Opening a log: torn tails are truncated and logged, any other damage refuses to start."""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path

import pytest

from persistence.log import FsyncPolicy, LogCorrupt, LogWriter
from persistence.log_format import segment_name
from tests.unit.persistence.helpers import (
    FaultyIO,
    config,
    flip_byte,
    make_log,
    read_all,
    record_for,
    record_offsets,
    segment_path,
    set_committed,
    write_records,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records 1..10, one commit each, in one segment; committed up to 10."""
    directory = tmp_path_factory.mktemp("template")
    make_log(directory, 10)
    return directory


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As ``template``, but as a writer killed between writing record 10 and
    syncing it leaves it: committed up to 9."""
    directory = tmp_path_factory.mktemp("crashed")
    make_log(directory, 10)
    set_committed(directory, 9)
    return directory


def copy_log(template: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "log"
    shutil.copytree(template, directory)
    return directory


def open_log(directory: Path) -> LogWriter:
    return LogWriter.open(directory, config())


def check_truncated(directory: Path, last_seq: int, end_offset: int) -> None:
    with open_log(directory) as writer:  # reopens cleanly: the truncation was durable
        assert writer.last_seq == last_seq
        assert writer.stats().torn_tail_bytes_truncated == 0
        write_records(writer, [last_seq + 1])
    assert segment_path(directory).stat().st_size > end_offset
    assert read_all(directory) == [record_for(seq) for seq in range(1, last_seq + 2)]


def test_torn_last_record_at_every_byte_is_truncated_and_logged(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    offsets = record_offsets(segment_path(crashed))
    start, end = offsets[-2], offsets[-1]  # the last record, seq 10
    assert end - start > 100
    for cut in range(start, end):
        caplog.clear()
        directory = copy_log(crashed, tmp_path / str(cut))
        os.truncate(segment_path(directory), cut)
        with open_log(directory) as writer:
            assert writer.last_seq == writer.durable_seq == 9
            dropped = cut - start
            assert writer.stats().torn_tail_bytes_truncated == dropped
        assert segment_path(directory).stat().st_size == start
        if cut > start:
            warning = (
                f"log torn tail truncated: segment={segment_path(directory)} offset={start} "
                f"dropped_bytes={dropped} last_seq=9"
            )
            assert [r.levelno for r in caplog.records if "torn" in r.message] == [logging.WARNING]
            assert warning in caplog.text
        else:
            assert "torn" not in caplog.text
    check_truncated(directory, 9, start)


def test_torn_batch_keeps_its_complete_records(tmp_path: Path) -> None:
    """A commit of 6 records cut at every 8th byte: the complete frames stay."""
    template = tmp_path / "template"
    with LogWriter.open(template, config()) as writer:
        write_records(writer, range(1, 5))
        write_records(writer, range(5, 11), batch=6)
    set_committed(template, 4)  # killed before the sync of 5..10
    offsets = record_offsets(segment_path(template))
    for cut in range(offsets[4], offsets[-1], 8):
        directory = copy_log(template, tmp_path / str(cut))
        os.truncate(segment_path(directory), cut)
        complete = sum(1 for end in offsets[1:] if end <= cut)
        with open_log(directory) as writer:
            assert writer.last_seq == complete
        assert segment_path(directory).stat().st_size == offsets[complete]


def test_bad_checksum_in_an_unsynced_last_record_is_a_torn_write(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = copy_log(crashed, tmp_path)
    offsets = record_offsets(segment_path(directory))
    flip_byte(segment_path(directory), offsets[-2] + 30)  # payload of seq 10
    with open_log(directory) as writer:
        assert writer.last_seq == 9
    assert "reason=checksum mismatch" in caplog.text


def test_bad_checksum_in_a_committed_last_record_is_corruption(
    template: Path, tmp_path: Path
) -> None:
    directory = copy_log(template, tmp_path)
    offsets = record_offsets(segment_path(directory))
    flip_byte(segment_path(directory), offsets[-2] + 30)  # payload of seq 10, committed
    message = (
        f"offset {offsets[-2]}: checksum mismatch; the log ends at seq 9 but records up to "
        "seq 10 were committed and synced: acknowledged records are missing, so this is "
        r"not a torn tail \(expected seq 10, last good seq 9\)"
    )
    with pytest.raises(LogCorrupt, match=message):
        open_log(directory)
    assert segment_path(directory).stat().st_size == offsets[-1]  # evidence kept


def test_a_committed_record_cut_off_is_corruption(template: Path, tmp_path: Path) -> None:
    directory = copy_log(template, tmp_path)
    offsets = record_offsets(segment_path(directory))
    os.truncate(segment_path(directory), offsets[-2] + 5)
    with pytest.raises(LogCorrupt, match="acknowledged records are missing"):
        open_log(directory)


def test_without_sync_the_marker_proves_nothing(tmp_path: Path) -> None:
    make_log(tmp_path, 10, log_config=config(fsync=FsyncPolicy.NONE))
    offsets = record_offsets(segment_path(tmp_path))
    flip_byte(segment_path(tmp_path), offsets[-2] + 30)
    with open_log(tmp_path) as writer:  # fsync=none promised nothing: a torn tail
        assert writer.last_seq == 9


def test_segments_deleted_behind_the_log_are_noticed(template: Path, tmp_path: Path) -> None:
    directory = copy_log(template, tmp_path)
    segment_path(directory).unlink()
    with pytest.raises(LogCorrupt, match=r"no segment file in .*, but records up to seq 10"):
        open_log(directory)


@pytest.mark.parametrize(
    "garbage",
    [
        bytes(8192),  # zero-filled blocks: a size update without the data
        b"\xff" * 24,  # a header whose length is 4 GiB
        (0xFFFFFFF0).to_bytes(4, "little") + bytes(20),
        bytes(random.Random(7).getrandbits(8) for _ in range(3000)),  # noqa: S311 -- test data
        b"\x01",
    ],
    ids=["zeros", "ones", "huge-length", "random", "one-byte"],
)
def test_garbage_after_the_last_record_is_a_torn_tail(
    template: Path, tmp_path: Path, garbage: bytes
) -> None:
    directory = copy_log(template, tmp_path)
    end = segment_path(directory).stat().st_size
    with open(segment_path(directory), "ab") as file:
        file.write(garbage)
    with open_log(directory) as writer:
        assert writer.last_seq == 10
    check_truncated(directory, 10, end)


def test_flipped_byte_anywhere_in_a_middle_record_is_corruption(
    template: Path, tmp_path: Path
) -> None:
    offsets = record_offsets(segment_path(template))
    start, end = offsets[4], offsets[5]  # seq 5, followed by later commits
    for offset in range(start, end):
        directory = copy_log(template, tmp_path / str(offset))
        path = segment_path(directory)
        flip_byte(path, offset, 0x40)
        with pytest.raises(LogCorrupt) as caught:
            open_log(directory)
        error = caught.value
        assert (error.path, error.offset, error.expected_seq, error.last_good_seq) == (
            path,
            start,
            5,
            4,
        )
        assert str(error).startswith(f"log corrupt: segment {path} offset {start}: ")
        assert str(error).endswith("(expected seq 5, last good seq 4)")
        assert "not a torn tail" in str(error)
        assert path.read_bytes()[start:end] != segment_path(template).read_bytes()[start:end]


def test_huge_length_in_a_middle_record_is_corruption_not_a_tail(
    template: Path, tmp_path: Path
) -> None:
    """The length decides where the next frame is; damage must not eat the rest."""
    directory = copy_log(template, tmp_path)
    offsets = record_offsets(segment_path(directory))
    with open(segment_path(directory), "r+b") as file:
        file.seek(offsets[2] + 3)
        file.write(b"\x7f")  # seq 3 now claims ~2 GiB
    message = (
        f"log corrupt: segment {segment_path(directory)} offset {offsets[2]}: record length "
        r"\d+ exceeds max_record_bytes 4096; a valid record of a later commit \(seq 4 at "
        rf"offset {offsets[3]}\) follows, so records that were durable are damaged: this is "
        r"not a torn tail \(expected seq 3, last good seq 2\)"
    )
    with pytest.raises(LogCorrupt, match=message):
        open_log(directory)
    assert segment_path(directory).stat().st_size == offsets[-1]  # nothing truncated


def test_damage_inside_an_unsynced_last_batch_is_a_torn_tail(tmp_path: Path) -> None:
    """Damage in the last commit with valid records of the same commit after it: the
    batch was written together and never synced, so it is a torn write. (The limit,
    documented: if a power cut also lost the marker's last update, damage to the last
    synced commit looks exactly like this and is truncated too.)"""
    with LogWriter.open(tmp_path, config()) as writer:
        write_records(writer, range(1, 4))
        write_records(writer, range(4, 9), batch=5)
    set_committed(tmp_path, 3)
    offsets = record_offsets(segment_path(tmp_path))
    flip_byte(segment_path(tmp_path), offsets[5] + 12)  # seq 6 of the batch 4..8
    with open_log(tmp_path) as writer:
        assert writer.last_seq == 5
    assert segment_path(tmp_path).stat().st_size == offsets[5]


def test_damage_before_the_last_batch_is_corruption(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, config()) as writer:
        write_records(writer, range(1, 6), batch=5)
        write_records(writer, range(6, 11), batch=5)
    offsets = record_offsets(segment_path(tmp_path))
    flip_byte(segment_path(tmp_path), offsets[4] + 8)  # seq 5, last of the first batch
    with pytest.raises(LogCorrupt, match=r"later commit \(seq 6 at offset \d+\)"):
        open_log(tmp_path)


def test_a_valid_record_out_of_sequence_is_corruption(template: Path, tmp_path: Path) -> None:
    directory = copy_log(template, tmp_path)
    path = segment_path(directory)
    offsets = record_offsets(path)
    copied = path.read_bytes()[offsets[2] : offsets[3]]  # a valid frame of seq 3
    with open(path, "ab") as file:
        file.write(copied)
    with pytest.raises(
        LogCorrupt, match=rf"offset {offsets[-1]}: sequence 3 where 11 was expected"
    ):
        open_log(directory)


def test_damage_in_a_closed_segment_is_corruption_even_at_its_end(tmp_path: Path) -> None:
    make_log(tmp_path, 200, log_config=config(segment_bytes=4096))
    first = sorted(tmp_path.glob("*.log"))[0]
    offsets = record_offsets(first)
    os.truncate(first, offsets[-1] - 3)  # its last record, torn
    with pytest.raises(LogCorrupt, match=rf"segment {re.escape(str(first))} offset {offsets[-2]}"):
        open_log(tmp_path)


def test_a_missing_segment_is_a_gap(tmp_path: Path) -> None:
    make_log(tmp_path, 200, log_config=config(segment_bytes=4096))
    segments = sorted(tmp_path.glob("*.log"))
    segments[1].unlink()
    with pytest.raises(LogCorrupt, match=r"segment starts at seq \d+ but the previous segment"):
        open_log(tmp_path)


def test_a_damaged_segment_header_is_corruption(template: Path, tmp_path: Path) -> None:
    directory = copy_log(template, tmp_path)
    flip_byte(segment_path(directory), 17)
    with pytest.raises(LogCorrupt, match="offset 0: segment header checksum mismatch"):
        open_log(directory)
    os.truncate(segment_path(directory), 10)
    with pytest.raises(LogCorrupt, match="offset 0: segment header cut short: 10 of 32 bytes"):
        open_log(directory)


def test_a_renamed_segment_is_corruption(template: Path, tmp_path: Path) -> None:
    directory = copy_log(template, tmp_path)
    segment_path(directory).rename(directory / segment_name(2))
    with pytest.raises(LogCorrupt, match="header says first seq 1 but the file name says 2"):
        open_log(directory)


def test_an_empty_segment_before_the_last_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    with LogWriter.open(tmp_path / "other", config(), start_seq=4) as writer:
        write_records(writer, [4])
    shutil.copy(segment_path(tmp_path / "other", 4), segment_path(tmp_path, 4))
    LogWriter.open(tmp_path / "empty", config(), start_seq=4).close()
    shutil.copy(segment_path(tmp_path / "empty", 4), segment_path(tmp_path, 4))
    shutil.copy(segment_path(tmp_path / "other", 4), segment_path(tmp_path, 5))
    with pytest.raises(LogCorrupt, match="empty segment before the last"):
        open_log(tmp_path)


def test_open_syncs_what_a_killed_writer_left_in_the_page_cache(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    io = FaultyIO()
    with LogWriter.open(tmp_path, config(fsync=FsyncPolicy.NONE), io=io) as writer:
        assert writer.durable_seq == 3
    opened = io.calls.index("open")  # the last segment
    published = io.calls.index("replace")  # the committed marker
    assert "fsync" in io.calls[opened:published]
