"""On-disk layout of the append log, declared once (docs/log.md explains the choices).

Everything is little-endian. A log is a directory of segment files, each named by
the sequence number of its first record (``segment_name``), plus a ``committed``
marker and a ``consumers/`` folder::

    segment header (SEGMENT_HEADER_LENGTH = 32 bytes)
    offset size field
         0    8 magic             b"MATCHDLG"
         8    2 version           u16, FORMAT_VERSION
        10    2 header_length     u16, 32
        12    4 max_record_bytes  u32, payload limit the writer enforced (<= 64 MiB)
        16    8 first_seq         u64, == the number in the file name
        24    4 crc32c            u32, CRC32C of bytes 0..24
        28    4 reserved          0

    record frame (FRAME_HEADER_LENGTH = 24 bytes + payload, padded to FRAME_ALIGN = 8)
    offset size field
         0    4 payload_length    u32, <= max_record_bytes of the segment
         4    4 crc32c            u32, CRC32C of bytes 0..4 then 8..frame_length
         8    8 seq               u64, 1 <= seq <= MAX_SEQ, +1 per record, no gaps
        16    2 rtype             u16, 1..65535 (0 is never written)
        18    2 flags             u16, 0 in version 1
        20    4 batch_index       u32, position of the record in its commit batch
        24    n payload
      24+n  0-7 zero padding to a multiple of 8 (covered by the checksum)

    sequence file (``committed`` and ``consumers/<name>``, SEQ_FILE_LENGTH = 24 bytes)
         0    8 magic             COMMITTED_MAGIC or CONSUMER_MAGIC
         8    8 seq               u64
        16    4 flags             u32; committed: COMMITTED_SYNCED; consumers: 0
        20    4 crc32c            u32, CRC32C of bytes 0..20

The checksum of a frame covers its length field too, so a damaged length cannot
pass for a different, valid frame. ``batch_index`` lets recovery tell the unsynced
tail of the last commit (a torn write) from damage to records that were already
durable when a later commit was written (corruption); see ``persistence._segments``.
The ``committed`` marker, when its ``COMMITTED_SYNCED`` flag is set, proves that
every record up to its sequence was synced: a log that ends before it lost
acknowledged records, whatever the damage looks like.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from crc32c import crc32c

SEGMENT_MAGIC = b"MATCHDLG"
COMMITTED_MAGIC = b"MATCHDCM"
CONSUMER_MAGIC = b"MATCHDCS"
FORMAT_VERSION = 1

SEGMENT_HEADER_LENGTH = 32
FRAME_HEADER_LENGTH = 24
FRAME_ALIGN = 8
SEQ_FILE_LENGTH = 24
#: Flag of the ``committed`` marker: written after the records up to it were synced.
COMMITTED_SYNCED = 1

#: Sequence numbers are positive and fit an int64 (numpy, MySQL BIGINT).
MAX_SEQ = (1 << 63) - 1
#: Largest payload the format allows; a segment header may declare less.
MAX_RECORD_BYTES_LIMIT = 64 << 20
MAX_RTYPE = 0xFFFF

SEGMENT_SUFFIX = ".log"
SEGMENT_NAME_DIGITS = 20
COMMITTED_FILE = "committed"
LOCK_FILE = "writer.lock"
CONSUMERS_DIR = "consumers"
TMP_SUFFIX = ".tmp"

_SEGMENT_HEADER = struct.Struct("<8sHHIQII")
_FRAME_HEADER = struct.Struct("<IIQHHI")
_FRAME_HEAD_TAIL = struct.Struct("<QHHI")  # the frame header after length and crc
_U32 = struct.Struct("<I")
_SEQ_FILE = struct.Struct("<8sQII")  # magic, seq, flags, crc
_SEGMENT_NAME_RE = re.compile(r"[0-9]{20}\.log")
_ZEROS = bytes(FRAME_ALIGN)


class FormatError(ValueError):
    """Bytes that are not a valid header or sequence file; the message says why.

    Internal: callers turn it into ``LogCorrupt`` with the file and offset.
    """


class SegmentHeader(NamedTuple):
    """A decoded, valid segment header."""

    first_seq: int
    max_record_bytes: int


class FrameHeader(NamedTuple):
    """The fixed part of a record frame, as read (not yet verified)."""

    payload_length: int
    crc: int
    seq: int
    rtype: int
    flags: int
    batch_index: int


def segment_name(first_seq: int) -> str:
    """File name of the segment whose first record is ``first_seq``."""
    return f"{first_seq:0{SEGMENT_NAME_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """First sequence number encoded in a segment file name, or None for other names."""
    if _SEGMENT_NAME_RE.fullmatch(name) is None:
        return None
    return int(name[:SEGMENT_NAME_DIGITS])


def frame_length(payload_length: int) -> int:
    """Bytes one record with ``payload_length`` bytes of payload takes on disk."""
    return (FRAME_HEADER_LENGTH + payload_length + FRAME_ALIGN - 1) & ~(FRAME_ALIGN - 1)


def encode_segment_header(first_seq: int, max_record_bytes: int) -> bytes:
    """The 32-byte header of a new segment."""
    head = _SEGMENT_HEADER.pack(
        SEGMENT_MAGIC, FORMAT_VERSION, SEGMENT_HEADER_LENGTH, max_record_bytes, first_seq, 0, 0
    )
    crc = crc32c(head[:24])
    return head[:24] + _U32.pack(crc) + head[28:]


def decode_segment_header(data: bytes | bytearray | memoryview) -> SegmentHeader:
    """Check and decode a segment header; ``FormatError`` says what is wrong."""
    if len(data) < SEGMENT_HEADER_LENGTH:
        raise FormatError(f"segment header truncated: {len(data)} of {SEGMENT_HEADER_LENGTH} bytes")
    magic, version, header_length, max_record, first_seq, crc, reserved = (
        _SEGMENT_HEADER.unpack_from(data, 0)
    )
    if magic != SEGMENT_MAGIC:
        raise FormatError(f"not a matchd log segment: magic {bytes(magic)!r}")
    if crc32c(bytes(data[:24])) != crc:
        raise FormatError("segment header checksum mismatch")
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported segment format version {version}")
    if header_length != SEGMENT_HEADER_LENGTH or reserved != 0:
        raise FormatError(f"bad segment header length {header_length} or reserved {reserved}")
    if not 1 <= max_record <= MAX_RECORD_BYTES_LIMIT:
        raise FormatError(f"segment header max_record_bytes {max_record} out of range")
    if not 1 <= first_seq <= MAX_SEQ:
        raise FormatError(f"segment header first_seq {first_seq} out of range")
    return SegmentHeader(first_seq, max_record)


def append_frame(
    buffer: bytearray,
    seq: int,
    rtype: int,
    batch_index: int,
    payload: bytes | bytearray | memoryview,
) -> int:
    """Append one framed record to ``buffer``; returns the frame's length.

    The caller has checked the arguments (ranges, payload size).
    """
    length = len(payload)
    pad = _ZEROS[: (-(FRAME_HEADER_LENGTH + length)) % FRAME_ALIGN]
    length_bytes = _U32.pack(length)
    tail = _FRAME_HEAD_TAIL.pack(seq, rtype, 0, batch_index)
    crc = crc32c(pad, crc32c(payload, crc32c(tail, crc32c(length_bytes))))
    buffer += length_bytes
    buffer += _U32.pack(crc)
    buffer += tail
    buffer += payload
    buffer += pad
    return FRAME_HEADER_LENGTH + length + len(pad)


def decode_frame_header(data: bytes | bytearray | memoryview, offset: int) -> FrameHeader:
    """The frame header at ``offset`` (``FRAME_HEADER_LENGTH`` bytes must be there)."""
    return FrameHeader(*_FRAME_HEADER.unpack_from(data, offset))


def frame_crc(data: memoryview, offset: int, length: int) -> int:
    """CRC32C of the frame of ``length`` bytes at ``offset``, as stored in its header."""
    return crc32c(data[offset + 8 : offset + length], crc32c(data[offset : offset + 4]))


def frame_problem(
    data: memoryview, offset: int, header: FrameHeader, expected_seq: int, prev_batch_index: int
) -> str | None:
    """Why a frame whose checksum matched is still invalid, or None if it is valid.

    A frame that passes its checksum but fails these checks was written that way (or
    copied from elsewhere): it is never a torn write. ``prev_batch_index`` is the
    previous record's ``batch_index`` in the same segment, -1 before the first record
    (a commit batch never spans segments, so a segment's first record has index 0).
    """
    if header.seq != expected_seq:
        return f"sequence {header.seq} where {expected_seq} was expected"
    if header.rtype == 0:
        return "record type 0"
    if header.flags != 0:
        return f"unknown flags {header.flags:#06x}"
    if header.batch_index not in (0, prev_batch_index + 1):
        return f"batch_index {header.batch_index} follows batch_index {prev_batch_index}"
    end = offset + frame_length(header.payload_length)
    pad_start = offset + FRAME_HEADER_LENGTH + header.payload_length
    if data[pad_start:end] != _ZEROS[: end - pad_start]:
        return "nonzero padding"
    return None


class SeqFile(NamedTuple):
    """A decoded sequence file."""

    seq: int
    flags: int


def encode_seq_file(magic: bytes, seq: int, flags: int = 0) -> bytes:
    """Contents of a ``committed`` or consumer file holding ``seq``."""
    head = _SEQ_FILE.pack(magic, seq, flags, 0)
    return head[:20] + _U32.pack(crc32c(head[:20]))


def decode_seq_file(magic: bytes, data: bytes) -> SeqFile:
    """The sequence (and flags) in a ``committed`` or consumer file; ``FormatError`` if bad."""
    if len(data) != SEQ_FILE_LENGTH:
        raise FormatError(f"sequence file is {len(data)} bytes, expected {SEQ_FILE_LENGTH}")
    got_magic, seq, flags, crc = _SEQ_FILE.unpack(data)
    if got_magic != magic:
        raise FormatError(f"sequence file magic {got_magic!r}, expected {magic!r}")
    if crc32c(data[:20]) != crc:
        raise FormatError("sequence file checksum mismatch")
    if seq > MAX_SEQ:
        raise FormatError(f"sequence file holds {seq}, beyond the largest sequence")
    return SeqFile(int(seq), int(flags))
