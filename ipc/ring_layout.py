"""The memory layout of an ``SpscRing`` segment (``ipc.ring``), declared once.

A segment is a 512-byte header followed by ``capacity`` fixed-size records::

    offset  length  field                written by
    ------  ------  -------------------  -----------------------------------------------
         0       8  MAGIC "MATCHDRG"     creator, last (a segment without it is not ready)
         8       8  VERSION              creator
        16       8  RECORD_LENGTH        creator: the record dtype's itemsize in bytes
        24       8  CAPACITY             creator: records, a power of two
        32       8  DESCR_HASH           creator: 64 bits of blake2b of the dtype's descr
        40       8  RECORDS_OFFSET       creator: = HEADER_LENGTH
        48       8  CREATOR_PID          creator  \\
        56       8  CREATOR_START_TICKS  creator   | who created the ring, to tell a
        64      16  CREATOR_BOOT_ID      creator   | live ring from a stale one
        80       8  CREATED_NS           creator  /  (ipc.shm_index.Creator)
        88      40  reserved (0)
    ------  ------  ------------------- line pair 1: the producer's alone -------------
       128       8  PRODUCER_POSITION    producer: records ever pushed (= pushed counter)
       136       8  FULL                 producer: records refused because the ring was full
       144       8  PEAK                 producer: highest occupancy it saw (below)
       152       8  WAKEUPS              producer: semaphore posts (consumer woken)
       160       8  CONSUMER_SEEN        producer: the consumer position it last read
       168      88  reserved (0)
    ------  ------  ------------------- line pair 2: the consumer's alone -------------
       256       8  CONSUMER_POSITION    consumer: records ever popped (= popped counter)
       264       8  SLEEPS               consumer: times it announced it would sleep
       272       8  PRODUCER_SEEN        consumer: the producer position it last read
       280     104  reserved (0)
    ------  ------  ------------------- line pair 3: the doorbell -----------------------
       384       8  SLEEPING             1 while the consumer sleeps or is about to;
                                         set by the consumer, cleared by an atomic
                                         exchange of either side
       392     120  reserved (0)
    ------  ------  -------------------------------------------------------------------
       512     ...  records[CAPACITY]    record i of position p is at p & (CAPACITY - 1)

Integers are little-endian int64. The positions grow for ever (2**63 records is
2,900 years at 100 M/s); ``PRODUCER_POSITION - CONSUMER_POSITION`` is the occupancy,
always in ``0..CAPACITY``. The producer's and the consumer's fields each have a cache
line to themselves, 128 bytes apart because x86's adjacent-line prefetcher moves lines
in pairs: a side writing its own fields never invalidates the line the other side
writes. Each side also keeps the other's position as it last read it (``*_SEEN``, a
lower bound of the real one, so always safe to act on) and reads the other's line
again only when that value is not enough: the producer when the ring may be more than
half full after the push, the consumer when it shows fewer records than it wants. So
``PEAK``, the highest occupancy the producer found on those reads, is exact above half
the capacity (and a lower bound below). The header is a whole number of cache lines,
so the records start aligned.

The kernels address the header as an int64 array (``header_words``), hence the
``*_WORD`` indexes: ``*_OFFSET // WORD_LENGTH``.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"MATCHDRG"
VERSION = 1

WORD_LENGTH = 8
CACHE_LINE_LENGTH = 64

MAGIC_OFFSET = 0
MAGIC_LENGTH = 8
VERSION_OFFSET = 8
RECORD_LENGTH_OFFSET = 16
CAPACITY_OFFSET = 24
DESCR_HASH_OFFSET = 32
RECORDS_OFFSET_OFFSET = 40
CREATOR_PID_OFFSET = 48
CREATOR_START_TICKS_OFFSET = 56
CREATOR_BOOT_ID_OFFSET = 64
CREATOR_BOOT_ID_LENGTH = 16
CREATED_NS_OFFSET = 80
METADATA_LENGTH = 88

PRODUCER_POSITION_OFFSET = 128
FULL_OFFSET = 136
PEAK_OFFSET = 144
WAKEUPS_OFFSET = 152
CONSUMER_SEEN_OFFSET = 160

CONSUMER_POSITION_OFFSET = 256
SLEEPS_OFFSET = 264
PRODUCER_SEEN_OFFSET = 272

SLEEPING_OFFSET = 384

HEADER_LENGTH = 512
RECORDS_OFFSET = HEADER_LENGTH
HEADER_WORDS = HEADER_LENGTH // WORD_LENGTH

PRODUCER_POSITION_WORD = PRODUCER_POSITION_OFFSET // WORD_LENGTH
FULL_WORD = FULL_OFFSET // WORD_LENGTH
PEAK_WORD = PEAK_OFFSET // WORD_LENGTH
WAKEUPS_WORD = WAKEUPS_OFFSET // WORD_LENGTH
CONSUMER_SEEN_WORD = CONSUMER_SEEN_OFFSET // WORD_LENGTH
CONSUMER_POSITION_WORD = CONSUMER_POSITION_OFFSET // WORD_LENGTH
SLEEPS_WORD = SLEEPS_OFFSET // WORD_LENGTH
PRODUCER_SEEN_WORD = PRODUCER_SEEN_OFFSET // WORD_LENGTH
SLEEPING_WORD = SLEEPING_OFFSET // WORD_LENGTH

MAX_CAPACITY = 1 << 30
#: What the kernels return when the positions are impossible (a damaged header or a
#: peer that broke the protocol): nothing is copied.
CORRUPT = -1

_METADATA = struct.Struct("<8sqqqqqqq16sq")  # magic .. created_ns
assert _METADATA.size == METADATA_LENGTH  # noqa: S101 - the diagram and the struct agree


@dataclass(frozen=True, slots=True)
class RingHeader:
    """The creator's part of a ring header (offsets 0..88), as read or to be written."""

    magic: bytes
    version: int
    record_length: int
    capacity: int
    descr_hash: int
    records_offset: int
    creator_pid: int
    creator_start_ticks: int
    creator_boot_id: str
    created_ns: int


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, ..."""
    return n > 0 and n & (n - 1) == 0


def descr_hash(dtype: np.dtype[Any]) -> int:
    """64 bits (signed) of blake2b over the dtype's ``descr``: same fields, names,
    types, offsets and itemsize give the same hash in every process."""
    text = repr(np.lib.format.dtype_to_descr(dtype)) + f"/{dtype.itemsize}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def segment_length(capacity: int, record_length: int) -> int:
    """Bytes of a ring segment: header and records."""
    return HEADER_LENGTH + capacity * record_length


def pack_metadata(header: RingHeader) -> bytes:
    """The 88 bytes at offset 0 (magic included: write it last, separately)."""
    try:
        boot = uuid.UUID(header.creator_boot_id).bytes
    except ValueError:  # no boot id (or not a UUID): liveness then goes by pid alone
        boot = bytes(CREATOR_BOOT_ID_LENGTH)
    return _METADATA.pack(
        header.magic,
        header.version,
        header.record_length,
        header.capacity,
        header.descr_hash,
        header.records_offset,
        header.creator_pid,
        header.creator_start_ticks,
        boot,
        header.created_ns,
    )


def unpack_metadata(buf: bytes | bytearray | memoryview) -> RingHeader:
    """The creator's fields of a header (``buf`` holds at least 88 bytes)."""
    (magic, version, record_length, capacity, dhash, records_offset, pid, ticks, boot, ns) = (
        _METADATA.unpack_from(buf, 0)
    )
    boot_id = str(uuid.UUID(bytes=boot)) if any(boot) else ""
    return RingHeader(
        magic, version, record_length, capacity, dhash, records_offset, pid, ticks, boot_id, ns
    )
