"""On-disk layout of a snapshot file, declared once (docs/log.md, "Snapshots").

Files in the snapshot directory::

    snapshot-00000000000000004711.snap      one per snapshot, named by its seq
    snapshot-00000000000000004711.snap.tmp  being written, or left by a killed writer

Layout, version 2, little-endian. ``B`` = ``BLOCK_BYTES`` (64 KiB); an array of
``nbytes`` has ``ceil(nbytes / B)`` blocks, the last one possibly partial; ``D`` =
24 + 8 * ndim + name + descr + map + 4, rounded up to 8::

    file header (HEADER_LENGTH = 88 bytes)
    offset size field
         0    8 magic             b"MATCHDSN"
         8    2 version           u16, FORMAT_VERSION
        10    2 flags             u16, 0
        12    4 array_count       u32, <= MAX_ARRAYS
        16    8 seq               u64, <= MAX_SEQ, == the number in the file name
        24    8 created_ns        u64, wall clock when the state was taken
        32   32 state_hash        32 lowercase hex digits, ASCII
        64    8 logical_bytes     u64, sum of the arrays' nbytes, <= max_logical_bytes
        72    4 meta_length       u32, <= MAX_META_BYTES
        76    4 meta_crc          u32, CRC32C of the meta bytes and their padding
        80    4 reserved          0
        84    4 header_crc        u32, CRC32C of bytes 0..84
        88    m meta              JSON object, str -> str, UTF-8; zero padding to 8

    array block, array_count times, each at a multiple of 8
         0    4 descriptor_length u32, D
         4    2 name_length       u16, 1..MAX_NAME_BYTES
         6    2 ndim              u16, 0..MAX_NDIM
         8    4 descr_length      u32, 2..MAX_DESCR_BYTES
        12    4 index             u32, 0, 1, ... in file order
        16    8 nbytes            u64, == itemsize * product(shape), the logical size
        24 8*nd shape             u64 each
         .    . name, descr        UTF-8 name; JSON of the dtype's descr
         .    . block map         ceil(blocks / 8) bytes: bit i (LSB first) of byte i // 8
                                  set = block i is stored; unused bits 0; zero padding
       D-4    4 descriptor_crc    u32, CRC32C of bytes 0..D-4
         D    s data              the stored blocks in order, each B bytes except the
                                  array's last block (nbytes - B * (blocks - 1)); zero
                                  padding to 8
         .    8 footer            data_crc u32 (CRC32C of data and padding), 4 zero bytes

    trailer (TRAILER_LENGTH = 24 bytes), the last bytes of the file
         0    8 magic             b"MATCHDSE"
         8    8 total_length      u64, the file's length
        16    4 array_count       u32, == the header's
        20    4 crcs_crc          u32, CRC32C of header_crc, meta_crc, then each array's
                                  descriptor_crc and data_crc (u32 each)

A block that is all zero bytes is not stored: its bit is 0 and the reader leaves
the zeros of a fresh ``np.zeros`` there (pages the kernel maps lazily, so an
untouched, mostly empty state costs neither disk nor memory). Every byte is
covered by a checksum or compared with a known value, so a reader detects a
truncated file (trailer missing), a flipped bit anywhere, or a file cut and glued.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from crc32c import crc32c

from persistence.log_format import MAX_SEQ
from persistence.snapshot_dtype import MAX_DESCR_BYTES, decode_descr

HEADER_MAGIC = b"MATCHDSN"
TRAILER_MAGIC = b"MATCHDSE"
FORMAT_VERSION = 2
HEADER_LENGTH = 88
TRAILER_LENGTH = 24
DESCRIPTOR_FIXED_LENGTH = 24
FOOTER_LENGTH = 8
ALIGN = 8
#: Arrays are stored as blocks of this size; a block of zeros is left out.
BLOCK_BYTES = 64 << 10

MAX_ARRAYS = 4096
MAX_META_BYTES = 64 << 10
MAX_NAME_BYTES = 255
MAX_NDIM = 32
#: Largest ``created_ns`` (int64, like every timestamp of matchd).
MAX_CREATED_NS = (1 << 63) - 1
#: Default bound on a snapshot's logical size (the sum of its arrays' ``nbytes``):
#: readers refuse a header that declares more, before allocating anything.
MAX_LOGICAL_BYTES = 64 << 30
#: Largest ``max_logical_bytes`` a caller may set (256 TiB; a 512 MiB block map).
MAX_LOGICAL_BYTES_LIMIT = 1 << 48
#: Arrays are written, read and checksummed in pieces of at most this size.
CHUNK_BYTES = 4 << 20

SNAPSHOT_PREFIX = "snapshot-"
SNAPSHOT_SUFFIX = ".snap"
SNAPSHOT_NAME_DIGITS = 20
TMP_NAME_RE = re.compile(r"snapshot-[0-9]{20}\.snap\.tmp")

HEADER_BODY = struct.Struct("<8sHHIQQ32sQIII")  # the header up to header_crc
DESCRIPTOR = struct.Struct("<IHHIIQ")
FOOTER = struct.Struct("<II")
TRAILER = struct.Struct("<8sQII")
U32 = struct.Struct("<I")
TWO_U32 = struct.Struct("<II")
ZEROS = bytes(ALIGN)
_NAME_RE = re.compile(r"snapshot-([0-9]{20})\.snap")
_HASH_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot file: where, which state (``seq``, ``state_hash``), when, how big
    (``bytes``: the file's size, not the arrays')."""

    path: Path
    seq: int
    state_hash: str
    created_ns: int
    bytes: int


def snapshot_name(seq: int) -> str:
    """File name of the snapshot taken after record ``seq``."""
    return f"{SNAPSHOT_PREFIX}{seq:0{SNAPSHOT_NAME_DIGITS}d}{SNAPSHOT_SUFFIX}"


def parse_snapshot_name(name: str) -> int | None:
    """The seq a snapshot file name holds, or None for any other name (``*.tmp`` too)."""
    match = _NAME_RE.fullmatch(name)
    return None if match is None else int(match.group(1))


def padded(length: int) -> int:
    """``length`` rounded up to a multiple of ``ALIGN``."""
    return (length + ALIGN - 1) & ~(ALIGN - 1)


def check_state_hash(value: object) -> str:
    """``value`` if it is 32 lowercase hex digits, else ``ValueError``."""
    if not isinstance(value, str) or _HASH_RE.fullmatch(value) is None:
        raise ValueError(f"snapshot state_hash must be 32 lowercase hex digits; got {value!r}")
    return value


def check_max_logical_bytes(value: object) -> int:
    """``value`` if it is a usable ``max_logical_bytes``, else ``ValueError``."""
    if type(value) is not int or not 0 <= value <= MAX_LOGICAL_BYTES_LIMIT:
        raise ValueError(
            f"max_logical_bytes must be an integer from 0 to {MAX_LOGICAL_BYTES_LIMIT}; "
            f"got {value!r}"
        )
    return value


# ---------------------------------------------------------------------- header, meta


@dataclass(frozen=True, slots=True)
class Header:
    array_count: int
    seq: int
    created_ns: int
    state_hash: str
    logical_bytes: int
    meta_length: int
    meta_crc: int
    header_crc: int


def encode_meta(meta: dict[str, str]) -> bytes:
    """The meta as JSON; ``TypeError``/``ValueError`` if it cannot be stored."""
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"snapshot meta maps str to str; got {key!r}: {value!r}")
    try:
        text = json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"snapshot meta is not valid UTF-8 text: {exc}") from None
    if len(data) > MAX_META_BYTES:
        raise ValueError(f"snapshot meta is {len(data)} bytes of JSON; at most {MAX_META_BYTES}")
    return data


def decode_meta(data: bytes) -> dict[str, str]:
    """The meta of its JSON bytes (padding cut off); ``ValueError`` if it is not one."""
    try:
        meta = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"meta is not JSON: {exc}") from None
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise ValueError("meta is not a JSON object of strings")
    return meta


def encode_head(
    array_count: int, seq: int, created_ns: int, state_hash: str, logical_bytes: int, meta: bytes
) -> tuple[bytes, int, int]:
    """The header and the padded meta, with header_crc and meta_crc."""
    padded_meta = meta + ZEROS[: padded(len(meta)) - len(meta)]
    meta_crc = crc32c(padded_meta)
    body = HEADER_BODY.pack(
        HEADER_MAGIC,
        FORMAT_VERSION,
        0,
        array_count,
        seq,
        created_ns,
        state_hash.encode("ascii"),
        logical_bytes,
        len(meta),
        meta_crc,
        0,
    )
    header_crc = crc32c(body)
    return body + U32.pack(header_crc) + padded_meta, header_crc, meta_crc


def decode_header(data: bytes, max_logical_bytes: int) -> Header:
    """The header of its ``HEADER_LENGTH`` bytes; ``ValueError`` says what is wrong."""
    magic, version, flags, count, seq, created, digest, logical, meta_len, meta_crc, zero = (
        HEADER_BODY.unpack_from(data)
    )
    (header_crc,) = U32.unpack_from(data, HEADER_BODY.size)
    if magic != HEADER_MAGIC:
        raise ValueError(f"not a matchd snapshot: magic {magic!r}")
    if version != FORMAT_VERSION:  # before the checksum: version 1 had a shorter header
        raise ValueError(f"unsupported snapshot format version {version}")
    if crc32c(data[: HEADER_BODY.size]) != header_crc:
        raise ValueError("header checksum mismatch")
    if flags or zero:
        raise ValueError(f"unknown flags {flags:#x} or reserved {zero:#x}")
    if count > MAX_ARRAYS:
        raise ValueError(f"array_count {count} over {MAX_ARRAYS}")
    if seq > MAX_SEQ or created > MAX_CREATED_NS:
        raise ValueError(f"seq {seq} or created_ns {created} out of range")
    if _HASH_RE.fullmatch(digest.decode("latin-1")) is None:
        raise ValueError(f"state_hash {digest!r} is not 32 lowercase hex digits")
    if meta_len > MAX_META_BYTES:
        raise ValueError(f"meta_length {meta_len} over {MAX_META_BYTES}")
    if logical > max_logical_bytes:
        raise ValueError(
            f"logical_bytes {logical} over the limit of {max_logical_bytes} (max_logical_bytes)"
        )
    return Header(
        count, seq, created, digest.decode("ascii"), logical, meta_len, meta_crc, header_crc
    )


# ---------------------------------------------------------------------- arrays


def block_count(nbytes: int) -> int:
    """How many blocks an array of ``nbytes`` has (the last one possibly partial)."""
    return -(-nbytes // BLOCK_BYTES)


def descriptor_length(ndim: int, name_length: int, descr_length: int, nbytes: int) -> int:
    """``D``: the length of an array's descriptor, block map included."""
    map_length = -(-block_count(nbytes) // 8)
    return padded(DESCRIPTOR_FIXED_LENGTH + 8 * ndim + name_length + descr_length + map_length + 4)


def block_spans(present: npt.NDArray[np.bool_], nbytes: int) -> list[tuple[int, int]]:
    """Byte ranges ``(start, stop)`` of the runs of stored blocks, in order."""
    edges = np.flatnonzero(np.diff(present.view(np.int8), prepend=0, append=0))
    return [
        (int(start) * BLOCK_BYTES, min(int(stop) * BLOCK_BYTES, nbytes))
        for start, stop in zip(edges[0::2], edges[1::2], strict=True)
    ]


@dataclass(frozen=True, slots=True)
class ArrayHead:
    """What an array's descriptor says."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    nbytes: int
    present: npt.NDArray[np.bool_]  # one flag per block: stored (non-zero) or not
    crc: int

    def spans(self) -> list[tuple[int, int]]:
        """Byte ranges of the array that the file stores, in file order."""
        return block_spans(self.present, self.nbytes)

    def stored_bytes(self) -> int:
        """How many bytes of data the file stores for the array (padding excluded)."""
        count = int(np.count_nonzero(self.present))
        if count and self.present[-1]:  # the last block may be shorter
            return (count - 1) * BLOCK_BYTES + self.nbytes - (self.present.size - 1) * BLOCK_BYTES
        return count * BLOCK_BYTES


def encode_descriptor(
    index: int,
    name: bytes,
    descr: bytes,
    shape: tuple[int, ...],
    nbytes: int,
    present: npt.NDArray[np.bool_],
) -> tuple[bytes, int]:
    """An array's descriptor, ending with descriptor_crc, and that crc."""
    block_map = np.packbits(present, bitorder="little").tobytes()
    length = descriptor_length(len(shape), len(name), len(descr), nbytes)
    fixed = DESCRIPTOR.pack(length, len(name), len(shape), len(descr), index, nbytes)
    body = b"".join((fixed, struct.pack(f"<{len(shape)}Q", *shape), name, descr, block_map))
    body += bytes(length - 4 - len(body))
    crc = crc32c(body)
    return body + U32.pack(crc), crc


class DescriptorFixed(NamedTuple):
    """The first ``DESCRIPTOR_FIXED_LENGTH`` bytes of a descriptor."""

    length: int
    name_length: int
    ndim: int
    descr_length: int
    array_index: int
    nbytes: int

    @classmethod
    def unpack(cls, data: bytes) -> DescriptorFixed:
        """Unpack them (``check`` checks them)."""
        return cls._make(DESCRIPTOR.unpack(data))

    def check(self) -> None:
        """``ValueError`` if a length is out of range or they do not add up to ``length``."""
        if (
            not 1 <= self.name_length <= MAX_NAME_BYTES
            or self.ndim > MAX_NDIM
            or not 2 <= self.descr_length <= MAX_DESCR_BYTES
            or self.length
            != descriptor_length(self.ndim, self.name_length, self.descr_length, self.nbytes)
        ):
            raise ValueError(
                f"array {self.array_index}: bad descriptor lengths (length {self.length}, name "
                f"{self.name_length}, ndim {self.ndim}, descr {self.descr_length}, "
                f"nbytes {self.nbytes})"
            )


def decode_descriptor(index: int, fixed: DescriptorFixed, data: bytes) -> ArrayHead:
    """The descriptor of its ``fixed.length`` bytes; ``ValueError`` says what is wrong."""
    (crc,) = U32.unpack_from(data, fixed.length - 4)
    if crc32c(data[: fixed.length - 4]) != crc:
        raise ValueError(f"array {index}: descriptor checksum mismatch")
    if fixed.array_index != index:
        raise ValueError(f"array {index}: descriptor says index {fixed.array_index}")
    at = DESCRIPTOR_FIXED_LENGTH
    shape = tuple(int(n) for n in struct.unpack_from(f"<{fixed.ndim}Q", data, at))
    at += 8 * fixed.ndim
    try:
        name = data[at : at + fixed.name_length].decode("utf-8")
        at += fixed.name_length
        dtype = decode_descr(data[at : at + fixed.descr_length])
    except ValueError as exc:  # UnicodeDecodeError too
        raise ValueError(f"array {index}: {exc}") from None
    at += fixed.descr_length
    size = 1
    for extent in shape:
        size *= extent
    if size * dtype.itemsize != fixed.nbytes or any(extent > MAX_SEQ for extent in shape):
        raise ValueError(
            f"array {name!r}: shape {shape} of {dtype} is {size * dtype.itemsize} bytes, "
            f"nbytes says {fixed.nbytes}"
        )
    blocks = block_count(fixed.nbytes)
    block_map = np.frombuffer(data, np.uint8, -(-blocks // 8), at)
    present = np.unpackbits(block_map, count=blocks, bitorder="little").view(np.bool_)
    if np.packbits(present, bitorder="little").tobytes() != block_map.tobytes():
        raise ValueError(f"array {name!r}: block map has bits set past block {blocks}")
    return ArrayHead(name, dtype, shape, fixed.nbytes, present, crc)


# ---------------------------------------------------------------------- trailer


def encode_trailer(total_length: int, array_count: int, crcs_crc: int) -> bytes:
    """The trailer."""
    return TRAILER.pack(TRAILER_MAGIC, total_length, array_count, crcs_crc)


def decode_trailer(data: bytes) -> tuple[int, int, int]:
    """``(total_length, array_count, crcs_crc)``; ``ValueError`` if it is no trailer."""
    magic, total, count, crcs = TRAILER.unpack(data)
    if magic != TRAILER_MAGIC:
        raise ValueError("no trailer at the end: truncated, or the write never finished")
    return int(total), int(count), int(crcs)
