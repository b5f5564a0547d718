"""Snapshot files: truncation, flipped bytes and crafted files are found before anything
is trusted or allocated (persistence/snapshot_reader.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from core.errors import CorruptLogError
from persistence.log_errors import LogError
from persistence.snapshot import (
    SnapshotCorrupt,
    list_snapshots,
    read_snapshot,
    snapshot_name,
    verify_snapshot,
    write_snapshot,
)
from tests.unit.persistence.helpers import flip_byte
from tests.unit.persistence.test_snapshot import (
    HASH,
    assert_same_arrays,
    first_descriptor_at,
    reseal_descriptor,
    reseal_header,
    sample_arrays,
    write,
)


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
        with pytest.raises(SnapshotCorrupt):
            verify_snapshot(info.path)
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
    at = first_descriptor_at(data)
    struct.pack_into("<Q", data, at + 16, nbytes)
    struct.pack_into("<Q", data, at + 24, shape)
    reseal_descriptor(data, at)
    path.write_bytes(bytes(data))


def rewrite_logical_bytes(path: Path, logical_bytes: int) -> None:
    """Make the header declare another logical size, with a valid checksum."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 64, logical_bytes)
    reseal_header(data)
    path.write_bytes(bytes(data))


def test_a_lying_descriptor_never_makes_it_allocate(tmp_path: Path) -> None:
    info = write(tmp_path, 9, {"a": np.arange(4, dtype=np.int64)})
    rewrite_first_descriptor(info.path, 1 << 40, 8 << 40)  # 8 TiB, checksum valid
    with pytest.raises(
        SnapshotCorrupt, match="nbytes 8796093022208, over the 32 logical bytes the header has"
    ):
        read_snapshot(info.path)
    rewrite_first_descriptor(info.path, 5, 32)
    with pytest.raises(SnapshotCorrupt, match=r"shape \(5,\) of int64 is 40 bytes, nbytes says 32"):
        read_snapshot(info.path)


def test_a_lying_header_never_makes_it_allocate(tmp_path: Path) -> None:
    info = write(tmp_path, 9, {"a": np.arange(4, dtype=np.int64)})
    rewrite_logical_bytes(info.path, 1 << 47)  # 128 TiB, checksum valid
    with pytest.raises(SnapshotCorrupt, match="logical_bytes 140737488355328 over the limit"):
        read_snapshot(info.path)
    with pytest.raises(SnapshotCorrupt, match="logical_bytes 140737488355328 over the limit"):
        verify_snapshot(info.path)
    rewrite_logical_bytes(info.path, 1 << 30)  # within the limit, but the arrays disagree
    with pytest.raises(SnapshotCorrupt, match="the arrays hold 1073741792 bytes less than"):
        read_snapshot(info.path)


def test_max_logical_bytes_bounds_writers_and_readers(tmp_path: Path) -> None:
    arrays = {"a": np.zeros(1000, np.int64), "b": np.ones(24, np.uint8)}  # 8,024 bytes
    with pytest.raises(ValueError, match="hold 8024 bytes, over max_logical_bytes 8000"):
        write_snapshot(tmp_path, 9, HASH, arrays, max_logical_bytes=8000)
    info = write_snapshot(tmp_path, 9, HASH, arrays, max_logical_bytes=8024)
    with pytest.raises(
        SnapshotCorrupt, match="logical_bytes 8024 over the limit of 8023"
    ) as caught:
        read_snapshot(info.path, max_logical_bytes=8023)
    assert caught.value.offset == 0
    assert verify_snapshot(info.path, max_logical_bytes=8024) == info
    with pytest.raises(ValueError, match="max_logical_bytes must be"):
        read_snapshot(info.path, max_logical_bytes=-1)
    with pytest.raises(ValueError, match="max_logical_bytes must be"):
        write_snapshot(tmp_path, 9, HASH, arrays, max_logical_bytes=1 << 60)


def test_a_version_1_file_is_refused_as_such(tmp_path: Path) -> None:
    info = write(tmp_path, 9)
    data = bytearray(info.path.read_bytes())
    struct.pack_into("<H", data, 8, 1)
    info.path.write_bytes(bytes(data))
    with pytest.raises(SnapshotCorrupt, match="unsupported snapshot format version 1") as caught:
        read_snapshot(info.path)
    assert caught.value.offset == 0


def test_a_file_renamed_to_another_seq_is_corrupt(tmp_path: Path) -> None:
    info = write(tmp_path, 9)
    moved = info.path.rename(tmp_path / snapshot_name(10))
    with pytest.raises(SnapshotCorrupt, match="file name says seq 10, the header 9"):
        read_snapshot(moved)
