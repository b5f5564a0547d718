"""Sparse arrays: only the 64 KiB blocks holding a non-zero byte are stored, and the
reader puts them into fresh zeros (persistence/snapshot_format.py, "block map")."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from persistence.snapshot import SnapshotCorrupt, read_snapshot, verify_snapshot
from persistence.snapshot_format import (
    BLOCK_BYTES,
    DESCRIPTOR_FIXED_LENGTH,
    FOOTER_LENGTH,
    HEADER_LENGTH,
    TRAILER_LENGTH,
    ArrayHead,
    DescriptorFixed,
    decode_descriptor,
    padded,
)
from persistence.snapshot_writer import nonzero_blocks
from tests.unit.persistence.helpers import flip_byte
from tests.unit.persistence.test_snapshot import (
    ORDER_DTYPE,
    Arrays,
    assert_same_arrays,
    first_descriptor_at,
    reseal_descriptor,
    write,
)

B = BLOCK_BYTES


def sparse_arrays() -> Arrays:
    edges = np.zeros(3 * B + 100, np.uint8)  # 4 blocks, the last one of 100 bytes
    edges[0] = 1
    edges[-1] = 2
    middle = np.zeros(4 * B // 8 + 3, np.int64)  # 5 blocks, the last one of 24 bytes
    middle[B // 8 - 1] = 7  # the last word of block 0
    middle[2 * B // 8 + 5] = -1  # inside block 2
    orders = np.zeros((1000, 3), ORDER_DTYPE)  # 58-byte records, 174,000 bytes: 3 blocks
    orders[999, 2]["id"] = 9  # the last record: in the partial block 2
    return {
        "edges": edges,
        "middle": middle,
        "exact": np.full(2 * B // 4, -5, np.int32),  # two full blocks: one run
        "orders": orders,
        "all_zero": np.zeros(2 * B + B // 2, np.uint8),
        "tiny": np.arange(1, 6, dtype=np.int8),
        "tiny_zero": np.zeros(3, np.int16),
        "scalar_zero": np.array(0, np.int64),
        "empty": np.zeros((0, 5), np.int64),
    }


#: The blocks each of ``sparse_arrays`` stores.
STORED = {
    "edges": [0, 3],
    "middle": [0, 2],
    "exact": [0, 1],
    "orders": [2],
    "all_zero": [],
    "tiny": [0],
    "tiny_zero": [],
    "scalar_zero": [],
    "empty": [],
}


def walk(path: Path) -> list[tuple[int, ArrayHead]]:
    """(offset, descriptor) of each array, read straight from the file's bytes."""
    data = path.read_bytes()
    count = struct.unpack_from("<I", data, 12)[0]
    at = first_descriptor_at(data)
    found = []
    for index in range(count):
        fixed = DescriptorFixed.unpack(data[at : at + DESCRIPTOR_FIXED_LENGTH])
        head = decode_descriptor(index, fixed, data[at : at + fixed.length])
        found.append((at, head))
        at += fixed.length + padded(head.stored_bytes()) + FOOTER_LENGTH
    assert at == len(data) - TRAILER_LENGTH
    return found


def test_only_non_zero_blocks_are_stored_and_come_back_in_place(tmp_path: Path) -> None:
    arrays = sparse_arrays()
    info = write(tmp_path, 9, arrays)
    heads = walk(info.path)
    assert {head.name: np.flatnonzero(head.present).tolist() for _, head in heads} == STORED
    stored = {head.name: head.stored_bytes() for _, head in heads}
    assert stored["edges"] == B + 100  # a full block and the partial last one
    assert stored["middle"] == 2 * B  # the partial last block (zero) is not stored
    assert stored["orders"] == 174_000 - 2 * B
    assert info.bytes < sum(stored.values()) + 2048
    got = read_snapshot(info.path)[1]
    assert_same_arrays(got, arrays)
    assert_same_arrays(read_snapshot(info.path, verify=False)[1], arrays)
    assert verify_snapshot(info.path) == info


def test_an_all_zero_array_costs_its_descriptor_only(tmp_path: Path) -> None:
    info = write(tmp_path, 9, {"z": np.zeros(10 << 20, np.uint8)})
    # header, meta "{}" padded to 8, descriptor 64 (24 fixed + 8 shape + 1 name + 5 descr
    # + 20 map + 4 crc, rounded up to 8), footer, trailer
    assert info.bytes == HEADER_LENGTH + 8 + 64 + FOOTER_LENGTH + TRAILER_LENGTH
    got = read_snapshot(info.path)[1]["z"]
    assert got.shape == (10 << 20,)
    assert not got.any()


@pytest.mark.parametrize("unaligned", [False, True])
def test_nonzero_blocks_finds_a_single_byte_anywhere(unaligned: bool) -> None:
    size = 2 * B + 9  # two full blocks and a partial one
    base = np.zeros(size + 1, np.uint8)
    data = base[1:] if unaligned else base[:size]
    assert nonzero_blocks(data).tolist() == [False, False, False]
    for at in (0, 7, 8, B - 1, B, 2 * B - 1, 2 * B, size - 1):
        for value in (1, 0x80):
            data[at] = value
            expected = [block == at // B for block in range(3)]
            assert nonzero_blocks(data).tolist() == expected, (at, value)
            data[at] = 0
    assert nonzero_blocks(np.zeros(0, np.uint8)).size == 0
    assert nonzero_blocks(np.ones(5, np.uint8)).tolist() == [True]


def test_flips_in_the_structure_and_at_every_block_edge_are_found(tmp_path: Path) -> None:
    """Every byte that is not stored data, and the first and last byte of each stored
    block: flipped, or the file cut there (data bytes are all alike to the CRC)."""
    info = write(tmp_path, 9, sparse_arrays())
    data_spans = []
    for at, head in walk(info.path):
        start = at + DescriptorFixed.unpack(info.path.read_bytes()[at : at + 24]).length
        for begin, end in head.spans():
            data_spans.append((start, start + end - begin))
            start += end - begin
    in_data = np.zeros(info.bytes, bool)
    for begin, end in data_spans:
        in_data[begin:end] = True
    offsets = np.flatnonzero(~in_data).tolist()
    for begin, end in data_spans:
        for block in range(begin, end, B):
            offsets += [block, min(block + B, end) - 1]
    original = info.path.read_bytes()
    for offset in offsets:
        flip_byte(info.path, offset, 0x04)
        with pytest.raises(SnapshotCorrupt):
            verify_snapshot(info.path)
        flip_byte(info.path, offset, 0x04)
    for offset in offsets[::7]:
        info.path.write_bytes(original[:offset])
        with pytest.raises(SnapshotCorrupt, match=r"truncated|no trailer"):
            read_snapshot(info.path)


def single_array_file(tmp_path: Path) -> tuple[Path, int, int]:
    """A file of one 3-block array with only block 0 stored: (path, descriptor offset,
    block map offset)."""
    array = np.zeros(3 * B, np.uint8)
    array[5] = 1
    info = write(tmp_path, 9, {"a": array})
    at = first_descriptor_at(info.path.read_bytes())
    map_at = at + DESCRIPTOR_FIXED_LENGTH + 8 + 1 + len(b'"|u1"')  # shape, name, descr
    return info.path, at, map_at


def test_a_flipped_byte_in_a_stored_block_or_the_block_map(tmp_path: Path) -> None:
    path, at, map_at = single_array_file(tmp_path)
    data_at = at + 48  # descriptor: 24 + 8 + 1 + 5 + 1 (map) + 4, rounded up to 8
    assert path.read_bytes()[map_at] == 0b001
    assert path.read_bytes()[data_at + 5] == 1
    for flip_at, offset, reason in [
        (data_at + 5, data_at, "array 'a': data checksum mismatch"),
        (data_at + B - 1, data_at, "array 'a': data checksum mismatch"),
        (map_at, at, "array 0: descriptor checksum mismatch"),
    ]:
        flip_byte(path, flip_at, 0x02)
        with pytest.raises(SnapshotCorrupt) as caught:
            read_snapshot(path)
        flip_byte(path, flip_at, 0x02)
        assert (caught.value.offset, caught.value.reason) == (offset, reason)


@pytest.mark.parametrize(
    ("block_map", "reason"),
    [
        (0b101, "array 'a': 131072 bytes of data, only 65544 bytes remain before the trailer"),
        (0b1001, "array 'a': block map has bits set past block 3"),
        (0b011, "array 'a': 131072 bytes of data, only 65544 bytes remain before the trailer"),
        (0b000, "array 'a': nonzero footer"),  # the data's first bytes taken for the footer
    ],
)
def test_a_lying_block_map_is_refused(tmp_path: Path, block_map: int, reason: str) -> None:
    """A block map with a valid checksum that does not match the data (a writer bug or
    a crafted file) never makes the reader read past the array or trust its data."""
    path, at, map_at = single_array_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[map_at] = block_map
    reseal_descriptor(data, at)
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotCorrupt) as caught:
        read_snapshot(path)
    assert caught.value.reason == reason


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_mostly_zero_100_mb_array_makes_a_small_file(tmp_path: Path) -> None:
    array = np.zeros(100_000_000 // 8, np.int64)
    scattered = np.arange(0, array.size, array.size // 10)  # 10 values, 10 MB apart
    array[scattered] = scattered + 1
    began = time.perf_counter()
    info = write(tmp_path, 9, {"balances": array})
    wrote = time.perf_counter() - began
    before = resident_bytes()
    began = time.perf_counter()
    got = read_snapshot(info.path)[1]["balances"]
    read = time.perf_counter() - began
    grown = resident_bytes() - before
    print(
        f"100 MB, 10 non-zero values: file {info.bytes} bytes, write {wrote * 1e3:.1f} ms "
        f"(fsync included), read {read * 1e3:.1f} ms, resident +{grown >> 20} MiB"
    )
    assert info.bytes < 11 * B
    assert np.array_equal(np.flatnonzero(got), scattered)
    assert np.array_equal(got[scattered], scattered + 1)
    assert grown < 50_000_000  # the zero blocks were never touched (2 MiB THP pages at most)
