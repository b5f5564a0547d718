"""Reading and checking a snapshot file (layout in ``persistence.snapshot_format``).

Every length is checked before it is used: against the file's size for what is
read, and against ``max_logical_bytes`` (declared in the checksummed header) for
the arrays that are allocated. The arrays come back as ``np.zeros`` with the stored
blocks read into place, so blocks that were all zero cost no I/O and, until
written, no memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from crc32c import crc32c

from persistence.snapshot_errors import SnapshotCorrupt
from persistence.snapshot_format import (
    CHUNK_BYTES,
    DESCRIPTOR_FIXED_LENGTH,
    FOOTER,
    FOOTER_LENGTH,
    HEADER_LENGTH,
    MAX_LOGICAL_BYTES,
    MAX_LOGICAL_BYTES_LIMIT,
    TRAILER_LENGTH,
    TWO_U32,
    ArrayHead,
    DescriptorFixed,
    Header,
    SnapshotInfo,
    check_max_logical_bytes,
    decode_descriptor,
    decode_header,
    decode_meta,
    decode_trailer,
    padded,
    parse_snapshot_name,
)

Loaded = tuple[SnapshotInfo, dict[str, npt.NDArray[Any]], dict[str, str]]


class _Reader:
    """Positioned reads of one snapshot file, each bounded by the file's size."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.offset = 0
        self.end = size  # where the current region ends (the trailer, once checked)

    def corrupt(self, reason: str, offset: int | None = None) -> SnapshotCorrupt:
        return SnapshotCorrupt(self.path, reason, offset=self.offset if offset is None else offset)

    def read(self, length: int, what: str) -> bytes:
        if length > self.end - self.offset:
            raise self.corrupt(
                f"{what} needs {length} bytes, only {self.end - self.offset} remain before "
                f"{'the trailer' if self.end < self.size else 'the end of the file'}"
            )
        data = os.pread(self.fd, length, self.offset)
        if len(data) != length:
            raise self.corrupt(f"file shrank while being read ({what})")
        self.offset += length
        return data

    def read_into(self, view: memoryview | None, length: int, verify: bool, crc: int) -> int:
        """Read ``length`` bytes (into ``view`` if given); ``crc`` extended by their
        CRC32C if ``verify``. The caller has checked that they lie before the trailer."""
        if view is None and not verify:
            self.offset += length
            return crc
        scratch = memoryview(bytearray(min(length, CHUNK_BYTES) if view is None else 0))
        done = 0
        while done < length:
            size = min(CHUNK_BYTES, length - done)
            chunk = scratch[:size] if view is None else view[done : done + size]
            got = os.preadv(self.fd, [chunk], self.offset)
            if got <= 0:
                raise self.corrupt("file shrank while being read (array data)")
            if verify:
                crc = crc32c(chunk[:got], crc)
            done += got
            self.offset += got
        return crc


@contextlib.contextmanager
def _open_reader(path: Path) -> Iterator[_Reader]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield _Reader(path, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _read_header(reader: _Reader, max_logical_bytes: int) -> Header:
    if reader.size < HEADER_LENGTH + TRAILER_LENGTH:
        raise reader.corrupt(
            f"truncated: {reader.size} bytes, a snapshot has at least "
            f"{HEADER_LENGTH + TRAILER_LENGTH}",
            0,
        )
    try:
        return decode_header(reader.read(HEADER_LENGTH, "header"), max_logical_bytes)
    except ValueError as exc:
        raise reader.corrupt(str(exc), 0) from None


def _check_trailer(reader: _Reader, header: Header) -> int:
    """Check the trailer (the file is complete); returns its crcs_crc."""
    at = reader.size - TRAILER_LENGTH
    try:
        total, count, crcs = decode_trailer(os.pread(reader.fd, TRAILER_LENGTH, at))
    except ValueError as exc:
        raise reader.corrupt(str(exc), at) from None
    if total != reader.size:
        raise reader.corrupt(f"trailer says {total} bytes, the file has {reader.size}", at)
    if count != header.array_count:
        raise reader.corrupt(
            f"trailer says {count} arrays, the header {header.array_count}", at + 16
        )
    reader.end = at
    return crcs


def _info(path: Path, header: Header, size: int) -> SnapshotInfo:
    named = parse_snapshot_name(path.name)
    if named is not None and named != header.seq:
        raise SnapshotCorrupt(path, f"file name says seq {named}, the header {header.seq}")
    return SnapshotInfo(path, header.seq, header.state_hash, header.created_ns, size)


def read_head(path: Path) -> SnapshotInfo:
    """Header and trailer only: cheap, and catches truncation, not damaged data.

    The logical size is checked against the format's limit only, not a caller's
    ``max_logical_bytes`` (nothing is allocated here)."""
    with _open_reader(path) as reader:
        header = _read_header(reader, MAX_LOGICAL_BYTES_LIMIT)
        _check_trailer(reader, header)
        return _info(path, header, reader.size)


def _read_meta(reader: _Reader, header: Header) -> dict[str, str]:
    at = reader.offset
    data = reader.read(padded(header.meta_length), "meta")
    if crc32c(data) != header.meta_crc:
        raise reader.corrupt("meta checksum mismatch", at)
    try:
        return decode_meta(data[: header.meta_length])
    except ValueError as exc:
        raise reader.corrupt(str(exc), at) from None


def _read_descriptor(reader: _Reader, index: int, logical_left: int) -> ArrayHead:
    """The next descriptor, checked, with its stored data known to fit before the
    trailer and its ``nbytes`` within what the header's logical_bytes leaves."""
    at = reader.offset
    try:
        data = reader.read(DESCRIPTOR_FIXED_LENGTH, f"descriptor of array {index}")
        fixed = DescriptorFixed.unpack(data)
        if fixed.nbytes > logical_left:  # before the block map's length is trusted
            raise ValueError(
                f"array {index}: nbytes {fixed.nbytes}, over the {logical_left} logical "
                "bytes the header has left"
            )
        fixed.check()
        data += reader.read(fixed.length - DESCRIPTOR_FIXED_LENGTH, f"descriptor of array {index}")
        head = decode_descriptor(index, fixed, data)
    except ValueError as exc:
        raise reader.corrupt(str(exc), at) from None
    left = reader.end - reader.offset
    stored = head.stored_bytes()
    if padded(stored) + FOOTER_LENGTH > left:  # checked before anything is allocated
        raise reader.corrupt(
            f"array {head.name!r}: {stored} bytes of data, only {left} bytes remain "
            "before the trailer",
            at,
        )
    return head


def _read_array(
    reader: _Reader, head: ArrayHead, *, load: bool, verify: bool
) -> tuple[npt.NDArray[Any] | None, int]:
    """The array (``load``) and its data_crc, checked if ``verify``."""
    at = reader.offset
    array: npt.NDArray[Any] | None = None
    view: memoryview | None = None
    if load:
        try:
            array = np.zeros(head.shape, head.dtype)  # nbytes <= max_logical_bytes, lazy
        except (ValueError, OverflowError) as exc:  # e.g. (0, 2**62) is too big
            raise reader.corrupt(f"array {head.name!r}: {exc}", at) from None
        if head.nbytes:
            view = array.reshape(-1).view(np.uint8).data
    crc = 0
    stored = 0
    for start, stop in head.spans():
        chunk = None if view is None else view[start:stop]
        crc = reader.read_into(chunk, stop - start, verify, crc)
        stored += stop - start
    pad = padded(stored) - stored
    pad_and_footer = reader.read(pad + FOOTER_LENGTH, "array footer")
    data_crc, zero = FOOTER.unpack_from(pad_and_footer, pad)
    if verify and crc32c(pad_and_footer[:pad], crc) != data_crc:
        raise reader.corrupt(f"array {head.name!r}: data checksum mismatch", at)
    if zero:
        raise reader.corrupt(f"array {head.name!r}: nonzero footer", reader.offset - 4)
    return array, int(data_crc)


def _scan(path: Path, *, load: bool, verify: bool, max_logical_bytes: int) -> Loaded:
    """Check the whole file; with ``load``, read the arrays too."""
    check_max_logical_bytes(max_logical_bytes)
    with _open_reader(path) as reader:
        header = _read_header(reader, max_logical_bytes)
        crcs_crc = _check_trailer(reader, header)
        info = _info(path, header, reader.size)
        meta = _read_meta(reader, header)
        crcs = crc32c(TWO_U32.pack(header.header_crc, header.meta_crc))
        arrays: dict[str, npt.NDArray[Any]] = {}
        names: set[str] = set()
        logical_left = header.logical_bytes
        for index in range(header.array_count):
            head = _read_descriptor(reader, index, logical_left)
            if head.name in names:
                raise reader.corrupt(f"array name {head.name!r} appears twice")
            names.add(head.name)
            logical_left -= head.nbytes
            array, data_crc = _read_array(reader, head, load=load, verify=verify)
            if array is not None:
                arrays[head.name] = array
            crcs = crc32c(TWO_U32.pack(head.crc, data_crc), crcs)
        if reader.offset != reader.end:
            raise reader.corrupt(f"{reader.end - reader.offset} unexpected bytes before trailer")
        if logical_left:
            raise reader.corrupt(f"the arrays hold {logical_left} bytes less than logical_bytes", 0)
        if crcs != crcs_crc:
            raise reader.corrupt("trailer checksum of the checksums mismatch", reader.end + 20)
        return info, arrays, meta


def read_snapshot(
    path: Path, *, verify: bool = True, max_logical_bytes: int = MAX_LOGICAL_BYTES
) -> Loaded:
    """Read a snapshot: its info, its arrays (in file order) and its meta.

    Every structural check always runs; ``verify=False`` skips only the checksums
    of the array data (about 5 GB/s of CPU). Raises ``SnapshotCorrupt`` naming
    the file, the offset and what is wrong; ``OSError`` if it cannot be read.
    Allocates nothing a corrupt file could inflate: the arrays' total size is the
    checksummed header's logical_bytes, refused over ``max_logical_bytes``, and
    their zero blocks are untouched ``np.zeros`` pages; everything else read is
    bounded by the file's size.
    """
    return _scan(Path(path), load=True, verify=verify, max_logical_bytes=max_logical_bytes)


def verify_snapshot(path: Path, *, max_logical_bytes: int = MAX_LOGICAL_BYTES) -> SnapshotInfo:
    """Every check of ``read_snapshot``, without keeping the arrays in memory."""
    return _scan(Path(path), load=False, verify=True, max_logical_bytes=max_logical_bytes)[0]
