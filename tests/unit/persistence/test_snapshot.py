"""Snapshot files: round trip, argument checks, and the helpers the other snapshot
test modules share (test_snapshot_damage, _sparse, _directory, _fork)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from crc32c import crc32c

from persistence.log_format import MAX_SEQ
from persistence.snapshot import (
    SnapshotInfo,
    parse_snapshot_name,
    read_snapshot,
    snapshot_name,
    verify_snapshot,
    write_snapshot,
)
from persistence.snapshot_format import HEADER_LENGTH, TRAILER_LENGTH
from tests.unit.persistence.helpers import flip_byte

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


def _aligned() -> np.ndarray:
    """An aligned struct array with padding bytes, all of them zero: ``np.ones`` would
    leave the padding as the allocator found it, and two calls would differ there."""
    aligned = np.zeros(3, np.dtype([("a", "u1"), ("b", "<i8")], align=True))
    aligned["a"] = 1
    aligned["b"] = 1
    return aligned


def sample_arrays() -> Arrays:
    """Small arrays of every kind, each within one block ("titled" is all zero)."""
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
        "aligned": _aligned(),
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


def make_snapshots(directory: Path, seqs: list[int]) -> dict[int, SnapshotInfo]:
    return {
        seq: write(directory, seq, {"v": np.full(100, seq, np.int64)}, created_ns=seq)
        for seq in seqs
    }


def damage(info: SnapshotInfo) -> None:
    """Flip a byte inside the data of the last array of a ``make_snapshots`` file."""
    flip_byte(info.path, info.bytes - TRAILER_LENGTH - 20)


def first_descriptor_at(data: bytes | bytearray) -> int:
    """Offset of the first array's descriptor (after the header and the meta)."""
    meta_length = struct.unpack_from("<I", data, 72)[0]
    return HEADER_LENGTH + ((meta_length + 7) & ~7)


def reseal_header(data: bytearray) -> None:
    """Recompute the header checksum, as a writer bug or a crafted file would."""
    struct.pack_into("<I", data, HEADER_LENGTH - 4, crc32c(bytes(data[: HEADER_LENGTH - 4])))


def reseal_descriptor(data: bytearray, at: int) -> None:
    """Recompute the checksum of the descriptor at ``at``."""
    length = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at + length - 4, crc32c(bytes(data[at : at + length - 4])))


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
        (1, 12345, "32 lowercase hex"),
    ],
)
def test_bad_seq_or_hash_is_refused(tmp_path: Path, seq: Any, state_hash: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_snapshot(tmp_path, seq, state_hash, {})


# ------------------------------------------------------------------ state hash callable


def test_a_state_hash_function_is_called_once_after_the_checks(tmp_path: Path) -> None:
    calls: list[int] = []

    def state_hash() -> str:
        calls.append(1)
        return HASH

    with pytest.raises(ValueError, match="seq must be"):
        write_snapshot(tmp_path, -1, state_hash, {})
    assert calls == []  # the arguments are checked before the (costly) hash
    info = write_snapshot(tmp_path, 5, state_hash, sample_arrays())
    assert calls == [1]
    assert info.state_hash == HASH
    assert read_snapshot(info.path)[0] == info


def test_a_state_hash_function_that_fails_or_lies_writes_nothing(tmp_path: Path) -> None:
    def broken() -> str:
        raise RuntimeError("hash kernel failed")

    with pytest.raises(RuntimeError, match="hash kernel failed"):
        write_snapshot(tmp_path, 5, broken, sample_arrays())
    with pytest.raises(ValueError, match="32 lowercase hex digits; got 'nope'"):
        write_snapshot(tmp_path, 5, lambda: "nope", sample_arrays())
    assert snapshot_files(tmp_path) == []
