"""Snapshot files of the engine state: written atomically, checked on every read.

A snapshot holds the engine's numpy arrays as they were after log record ``seq``,
the engine's state hash, and a few text settings (``meta``). Recovery loads the
newest valid snapshot and replays the log after its ``seq`` (DESIGN.md rule 4).
This module knows files and arrays, not the engine. docs/log.md, "Snapshots",
explains the choices. Files in the snapshot directory::

    snapshot-00000000000000004711.snap      one per snapshot, named by its seq
    snapshot-00000000000000004711.snap.tmp  being written, or left by a killed writer

Layout, little-endian (``D`` = 24 + 8 * ndim + name + descr + 4, rounded up to 8)::

    file header (HEADER_LENGTH = 80 bytes)
    offset size field
         0    8 magic             b"MATCHDSN"
         8    2 version           u16, FORMAT_VERSION
        10    2 flags             u16, 0
        12    4 array_count       u32, <= MAX_ARRAYS
        16    8 seq               u64, <= MAX_SEQ, == the number in the file name
        24    8 created_ns        u64, wall clock when the state was taken
        32   32 state_hash        32 lowercase hex digits, ASCII
        64    4 meta_length       u32, <= MAX_META_BYTES
        68    4 meta_crc          u32, CRC32C of the meta bytes and their padding
        72    4 reserved          0
        76    4 header_crc        u32, CRC32C of bytes 0..76
        80    m meta              JSON object, str -> str, UTF-8; zero padding to 8

    array block, array_count times, each at a multiple of 8
         0    4 descriptor_length u32, D
         4    2 name_length       u16, 1..MAX_NAME_BYTES
         6    2 ndim              u16, 0..MAX_NDIM
         8    4 descr_length      u32, 2..MAX_DESCR_BYTES
        12    4 index             u32, 0, 1, ... in file order
        16    8 nbytes            u64, == itemsize * product(shape)
        24 8*nd shape             u64 each
         .    . name, descr        UTF-8 name; JSON of the dtype's descr; zero padding
       D-4    4 descriptor_crc    u32, CRC32C of bytes 0..D-4
         D    n data              the array's bytes in C order; zero padding to 8
         .    8 footer            data_crc u32 (CRC32C of data and padding), 4 zero bytes

    trailer (TRAILER_LENGTH = 24 bytes), the last bytes of the file
         0    8 magic             b"MATCHDSE"
         8    8 total_length      u64, the file's length
        16    4 array_count       u32, == the header's
        20    4 crcs_crc          u32, CRC32C of header_crc, meta_crc, then each array's
                                  descriptor_crc and data_crc (u32 each)

Every byte is covered by a checksum or compared with a known value, so a reader
detects a truncated file (trailer missing), a flipped bit anywhere, or a file
cut and glued. Lengths are checked against the file size before anything is
allocated. The dtype is stored as the JSON of its ``descr`` (numpy's ``.npy``
description) and rebuilt with ``numpy.lib.format.descr_to_dtype``: no pickle, no
eval, and object dtypes are refused both ways.
"""

from __future__ import annotations

import contextlib
import errno as errno_names
import fcntl
import gc
import json
import logging
import math
import os
import re
import select
import signal
import struct
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
from crc32c import crc32c
from numpy.lib.format import descr_to_dtype

from core.errors import BrokenError, ConfigError, CorruptLogError
from persistence._io import SysIO
from persistence.log_errors import LogError
from persistence.log_format import MAX_SEQ, TMP_SUFFIX

logger = logging.getLogger(__name__)

HEADER_MAGIC = b"MATCHDSN"
TRAILER_MAGIC = b"MATCHDSE"
FORMAT_VERSION = 1
HEADER_LENGTH = 80
TRAILER_LENGTH = 24
DESCRIPTOR_FIXED_LENGTH = 24
FOOTER_LENGTH = 8
ALIGN = 8

MAX_ARRAYS = 4096
MAX_META_BYTES = 64 << 10
MAX_NAME_BYTES = 255
MAX_DESCR_BYTES = 64 << 10
MAX_NDIM = 32
#: Largest ``created_ns`` (int64, like every timestamp of matchd).
MAX_CREATED_NS = (1 << 63) - 1
#: Arrays are written, read and checksummed in pieces of this size.
CHUNK_BYTES = 4 << 20

SNAPSHOT_PREFIX = "snapshot-"
SNAPSHOT_SUFFIX = ".snap"
SNAPSHOT_NAME_DIGITS = 20

_HEADER_BODY = struct.Struct("<8sHHIQQ32sIII")  # the header up to header_crc
_DESCRIPTOR = struct.Struct("<IHHIIQ")
_FOOTER = struct.Struct("<II")
_TRAILER = struct.Struct("<8sQII")
_U32 = struct.Struct("<I")
_TWO_U32 = struct.Struct("<II")
_ZEROS = bytes(ALIGN)
_NAME_RE = re.compile(r"snapshot-([0-9]{20})\.snap")
_TMP_RE = re.compile(r"snapshot-[0-9]{20}\.snap\.tmp")
_HASH_RE = re.compile(r"[0-9a-f]{32}")
_MAX_DESCR_DEPTH = 16
_MAX_REASON_CHARS = 1000  # keeps the child's result line below PIPE_BUF


class SnapshotCorrupt(LogError, CorruptLogError):
    """A snapshot file is damaged, incomplete, or not a snapshot; ``reason`` says why.

    Raised by ``read_snapshot`` and ``verify_snapshot``. ``load_newest_valid`` and
    ``prune_snapshots`` catch it, log it and use an older snapshot. Not raised when
    the file cannot be read at all (that is the ``OSError`` of the system call).
    """

    def __init__(self, path: Path, reason: str, *, offset: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.offset = offset
        where = str(path) if offset is None else f"{path} offset {offset}"
        super().__init__(f"snapshot corrupt: {where}: {reason}")


class SnapshotFailed(LogError, BrokenError):
    """Writing a snapshot failed: the disk refused (ENOSPC, EIO, EACCES, ...) or the
    background process died. The ``OSError``, if any, is chained.

    No new snapshot exists then, unless the failure came after the rename
    (``operation`` "close" or "fsync directory"): that file is complete and valid,
    but its name may not survive a power cut. The temporary file is removed,
    unless the writer was killed: ``prune_snapshots`` removes those. Older
    snapshots are never touched.
    """

    def __init__(
        self, path: Path, operation: str, reason: str, *, errno: int | None = None
    ) -> None:
        self.path = path
        self.operation = operation
        self.reason = reason
        self.errno = errno
        super().__init__(f"snapshot failed: {operation} {path}: {reason}")

    @classmethod
    def from_os_error(cls, path: Path, operation: str, exc: OSError) -> SnapshotFailed:
        """The failure of ``operation`` on ``path`` that raised ``exc``."""
        code = errno_names.errorcode.get(exc.errno or 0, str(exc.errno))
        text = exc.strerror or str(exc)
        return cls(path, operation, f"{code} ({text})", errno=exc.errno)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot file: where, which state (``seq``, ``state_hash``), when, how big."""

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


def _padded(length: int) -> int:
    return (length + ALIGN - 1) & ~(ALIGN - 1)


# ---------------------------------------------------------------------- encoding


@dataclass(frozen=True, slots=True)
class _ArrayPlan:
    name: str
    descriptor: bytes  # ends with descriptor_crc
    descriptor_crc: int
    data: npt.NDArray[np.uint8]  # the array's bytes: a view, never a copy
    nbytes: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything to write, encoded and checked, except the array data (viewed)."""

    directory: Path
    seq: int
    state_hash: str
    created_ns: int
    head: bytes  # header and padded meta
    head_crcs: bytes  # header_crc and meta_crc, as covered by crcs_crc
    arrays: tuple[_ArrayPlan, ...]


def _prepare(
    directory: Path,
    seq: int,
    state_hash: str,
    arrays: Mapping[str, npt.NDArray[Any]],
    meta: Mapping[str, str] | None,
    created_ns: int,
) -> _Plan:
    """Check the arguments (``ValueError``, ``TypeError``) and encode all but the data."""
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"snapshot seq must be an integer from 0 to {MAX_SEQ}; got {seq!r}")
    if not isinstance(state_hash, str) or _HASH_RE.fullmatch(state_hash) is None:
        raise ValueError(f"snapshot state_hash must be 32 lowercase hex digits; got {state_hash!r}")
    if len(arrays) > MAX_ARRAYS:
        raise ValueError(f"a snapshot holds at most {MAX_ARRAYS} arrays; got {len(arrays)}")
    meta_bytes = _encode_meta(meta)
    padded_meta = meta_bytes + _ZEROS[: _padded(len(meta_bytes)) - len(meta_bytes)]
    meta_crc = crc32c(padded_meta)
    body = _HEADER_BODY.pack(
        HEADER_MAGIC,
        FORMAT_VERSION,
        0,
        len(arrays),
        seq,
        created_ns,
        state_hash.encode("ascii"),
        len(meta_bytes),
        meta_crc,
        0,
    )
    header_crc = crc32c(body)
    planned = tuple(_plan_array(index, name, arrays[name]) for index, name in enumerate(arrays))
    return _Plan(
        directory=directory,
        seq=seq,
        state_hash=state_hash,
        created_ns=created_ns,
        head=body + _U32.pack(header_crc) + padded_meta,
        head_crcs=_TWO_U32.pack(header_crc, meta_crc),
        arrays=planned,
    )


def _encode_meta(meta: Mapping[str, str] | None) -> bytes:
    items = dict(meta or {})
    for key, value in items.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"snapshot meta maps str to str; got {key!r}: {value!r}")
    try:
        text = json.dumps(items, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"snapshot meta is not valid UTF-8 text: {exc}") from None
    if len(data) > MAX_META_BYTES:
        raise ValueError(f"snapshot meta is {len(data)} bytes of JSON; at most {MAX_META_BYTES}")
    return data


def _plan_array(index: int, name: str, array: npt.NDArray[Any]) -> _ArrayPlan:
    if not isinstance(name, str):
        raise TypeError(f"snapshot array names are str; got {name!r}")
    try:
        name_bytes = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"snapshot array name {name!r} is not valid UTF-8 text") from None
    if not 1 <= len(name_bytes) <= MAX_NAME_BYTES:
        raise ValueError(f"snapshot array name {name!r} must be 1 to {MAX_NAME_BYTES} bytes")
    if not isinstance(array, np.ndarray):
        raise TypeError(f"snapshot array {name!r} is a {type(array).__name__}, not an ndarray")
    if array.dtype.hasobject:
        raise ValueError(f"snapshot array {name!r} has dtype {array.dtype} holding Python objects")
    if array.dtype.itemsize == 0:
        raise ValueError(f"snapshot array {name!r} has dtype {array.dtype} of itemsize 0")
    if not array.flags.c_contiguous:
        raise ValueError(
            f"snapshot array {name!r} is not C-contiguous; pass np.ascontiguousarray(array)"
        )
    if array.ndim > MAX_NDIM:
        raise ValueError(f"snapshot array {name!r} has {array.ndim} dimensions; at most {MAX_NDIM}")
    descr = _encode_descr(name, array.dtype)
    length = _padded(DESCRIPTOR_FIXED_LENGTH + 8 * array.ndim + len(name_bytes) + len(descr) + 4)
    head = _DESCRIPTOR.pack(length, len(name_bytes), array.ndim, len(descr), index, array.nbytes)
    body = b"".join((head, struct.pack(f"<{array.ndim}Q", *array.shape), name_bytes, descr))
    body += bytes(length - 4 - len(body))
    descriptor_crc = crc32c(body)
    data = array.reshape(-1).view(np.uint8) if array.nbytes else np.empty(0, np.uint8)
    return _ArrayPlan(name, body + _U32.pack(descriptor_crc), descriptor_crc, data, array.nbytes)


def _encode_descr(name: str, dtype: np.dtype[Any]) -> bytes:
    """JSON of ``numpy.lib.format.dtype_to_descr(dtype)``; ``ValueError`` if the dtype
    would not come back exactly (metadata, a base type under fields, new-style dtypes)."""
    descr = dtype.descr if dtype.names is not None else dtype.str  # what dtype_to_descr does
    data = json.dumps(descr, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_DESCR_BYTES:
        raise ValueError(f"snapshot array {name!r}: dtype description over {MAX_DESCR_BYTES} bytes")
    try:
        rebuilt = _decode_descr(data)
    except ValueError as exc:
        raise ValueError(
            f"snapshot array {name!r}: dtype {dtype} cannot be stored: {exc}"
        ) from None
    if rebuilt != dtype or rebuilt.itemsize != dtype.itemsize or rebuilt.descr != dtype.descr:
        raise ValueError(
            f"snapshot array {name!r}: dtype {dtype} would be read back as {rebuilt}; "
            "use a plain or structured dtype"
        )
    return data


def _decode_descr(data: bytes) -> np.dtype[Any]:
    """The dtype a descr JSON describes; ``ValueError`` if it is not a valid, safe one."""
    try:
        descr = _descr_from_json(json.loads(data.decode("utf-8")), 0)
        dtype = descr_to_dtype(descr)
    except (TypeError, ValueError, OverflowError, RecursionError, Warning) as exc:
        raise ValueError(f"bad dtype description {data[:200]!r}: {exc}") from None
    if dtype.hasobject or dtype.itemsize == 0:
        raise ValueError(f"dtype {dtype} holds Python objects or has itemsize 0")
    return dtype


def _descr_from_json(value: object, depth: int) -> Any:
    """Turn JSON lists back into the tuples numpy's descr uses, checking the shape."""
    if isinstance(value, str):
        return value
    if depth >= _MAX_DESCR_DEPTH or not isinstance(value, list):
        raise ValueError("not a dtype description (or nested too deeply)")
    fields: list[tuple[Any, ...]] = []
    for field in value:
        if not isinstance(field, list) or len(field) not in (2, 3):
            raise ValueError(f"bad field {field!r}")
        name = field[0]
        if isinstance(name, list) and len(name) == 2 and all(isinstance(n, str) for n in name):
            name = (name[0], name[1])  # (title, name)
        elif not isinstance(name, str):
            raise ValueError(f"bad field name {name!r}")
        sub = _descr_from_json(field[1], depth + 1)
        if len(field) == 2:
            fields.append((name, sub))
            continue
        shape = field[2]
        if not isinstance(shape, list) or not all(
            type(n) is int and 0 <= n < (1 << 31) for n in shape
        ):
            raise ValueError(f"bad field shape {shape!r}")
        fields.append((name, sub, tuple(shape)))
    return fields


# ---------------------------------------------------------------------- writing


@contextlib.contextmanager
def _step(operation: str, path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise SnapshotFailed.from_os_error(path, operation, exc) from exc


def _write_fully(io: SysIO, fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        written = io.write(fd, view)
        if written <= 0:
            raise OSError(errno_names.EIO, "write made no progress")
        view = view[written:]


def _write_plan(plan: _Plan, io: SysIO) -> SnapshotInfo:
    """Write the file under a temporary name, sync it, rename it, sync the directory.

    The temporary file is locked (``flock``) from before its first byte until after
    its rename, so ``prune_snapshots`` deletes only those of dead writers, and a
    second writer of the same ``seq`` fails without touching the first one's file.
    Does no logging (it runs in the background child too). ``SnapshotFailed`` on
    failure, after removing the temporary file if it is this writer's.
    """
    final = plan.directory / snapshot_name(plan.seq)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    with _step("create directory", plan.directory):
        if not plan.directory.is_dir():
            plan.directory.mkdir(parents=True, exist_ok=True)
            io.fsync_dir(plan.directory.parent)
    fd = -1
    ours = False
    try:
        with _step("open", tmp):
            fd = io.open(tmp, os.O_WRONLY | os.O_CREAT)
        with _step("lock", tmp):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        ours = True
        with _step("write", tmp):
            io.ftruncate(fd, 0)
            total = _write_body(io, fd, plan)
        with _step("fsync", tmp):
            io.fsync(fd)
        with _step("rename", final):
            io.replace(tmp, final)
        ours = False  # the name is the snapshot's now
        closing, fd = fd, -1
        with _step("close", final):
            io.close(closing)
    except BaseException:
        if fd >= 0:
            with contextlib.suppress(OSError):
                io.close(fd)
        if ours:
            with contextlib.suppress(OSError):
                io.unlink(tmp)
        raise
    with _step("fsync directory", plan.directory):
        io.fsync_dir(plan.directory)
    return SnapshotInfo(final, plan.seq, plan.state_hash, plan.created_ns, total)


def _write_body(io: SysIO, fd: int, plan: _Plan) -> int:
    """Write header, arrays and trailer; returns the file length."""
    _write_fully(io, fd, plan.head)
    total = len(plan.head)
    crcs = crc32c(plan.head_crcs)
    for item in plan.arrays:
        _write_fully(io, fd, item.descriptor)
        data_crc = 0
        with item.data.data as view:
            for start in range(0, item.nbytes, CHUNK_BYTES):
                with view[start : start + CHUNK_BYTES] as chunk:
                    data_crc = crc32c(chunk, data_crc)
                    _write_fully(io, fd, chunk)
        pad = _ZEROS[: _padded(item.nbytes) - item.nbytes]
        data_crc = crc32c(pad, data_crc)
        _write_fully(io, fd, pad + _FOOTER.pack(data_crc, 0))
        crcs = crc32c(_TWO_U32.pack(item.descriptor_crc, data_crc), crcs)
        total += len(item.descriptor) + len(pad) + item.nbytes + FOOTER_LENGTH
    total += TRAILER_LENGTH
    _write_fully(io, fd, _TRAILER.pack(TRAILER_MAGIC, total, len(plan.arrays), crcs))
    return total


def write_snapshot(
    directory: Path,
    seq: int,
    state_hash: str,
    arrays: Mapping[str, npt.NDArray[Any]],
    meta: Mapping[str, str] | None = None,
    *,
    created_ns: int | None = None,
    io: SysIO | None = None,
) -> SnapshotInfo:
    """Write the snapshot of the state after record ``seq``, atomically.

    ``arrays`` (C-contiguous, no object dtypes, any shape including 0-d and empty)
    are streamed from their memory in ``CHUNK_BYTES`` pieces, never copied whole.
    ``created_ns`` defaults to the wall clock now. The file appears under its
    final name only complete and synced, and the directory is synced after the
    rename. Raises ``ValueError``/``TypeError`` for unusable arguments (before
    touching the disk) and ``SnapshotFailed`` if the disk refuses. A snapshot
    with the same ``seq`` is replaced.
    """
    began = time.monotonic_ns()
    stamp = time.time_ns() if created_ns is None else created_ns
    if type(stamp) is not int or not 0 <= stamp <= MAX_CREATED_NS:
        raise ValueError(f"snapshot created_ns must be from 0 to {MAX_CREATED_NS}; got {stamp!r}")
    plan = _prepare(Path(directory), seq, state_hash, arrays, meta, stamp)
    info = _write_plan(plan, io if io is not None else SysIO())
    logger.info(
        "snapshot written: path=%s seq=%d bytes=%d arrays=%d duration_ms=%.1f",
        info.path,
        info.seq,
        info.bytes,
        len(plan.arrays),
        (time.monotonic_ns() - began) / 1e6,
    )
    return info


# ---------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class _Header:
    array_count: int
    seq: int
    created_ns: int
    state_hash: str
    meta_length: int
    meta_crc: int
    header_crc: int


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

    def read_into(self, view: memoryview | None, length: int, verify: bool) -> int:
        """Read ``length`` bytes (into ``view`` if given); their CRC32C if ``verify``.

        The caller has checked that they lie before the trailer."""
        crc = 0
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


def _decode_header(reader: _Reader) -> _Header:
    if reader.size < HEADER_LENGTH + TRAILER_LENGTH:
        raise reader.corrupt(
            f"truncated: {reader.size} bytes, a snapshot has at least "
            f"{HEADER_LENGTH + TRAILER_LENGTH}",
            0,
        )
    data = reader.read(HEADER_LENGTH, "header")
    magic, version, flags, count, seq, created_ns, state_hash, meta_length, meta_crc, reserved = (
        _HEADER_BODY.unpack_from(data)
    )
    (header_crc,) = _U32.unpack_from(data, _HEADER_BODY.size)
    if magic != HEADER_MAGIC:
        raise reader.corrupt(f"not a matchd snapshot: magic {magic!r}", 0)
    if crc32c(data[: _HEADER_BODY.size]) != header_crc:
        raise reader.corrupt("header checksum mismatch", 0)
    if version != FORMAT_VERSION:
        raise reader.corrupt(f"unsupported snapshot format version {version}", 0)
    problem = None
    if flags or reserved:
        problem = f"unknown flags {flags:#x} or reserved {reserved:#x}"
    elif count > MAX_ARRAYS:
        problem = f"array_count {count} over {MAX_ARRAYS}"
    elif seq > MAX_SEQ or created_ns > MAX_CREATED_NS:
        problem = f"seq {seq} or created_ns {created_ns} out of range"
    elif _HASH_RE.fullmatch(state_hash.decode("latin-1")) is None:
        problem = f"state_hash {state_hash!r} is not 32 lowercase hex digits"
    elif meta_length > MAX_META_BYTES:
        problem = f"meta_length {meta_length} over {MAX_META_BYTES}"
    if problem is not None:
        raise reader.corrupt(problem, 0)
    return _Header(
        count, seq, created_ns, state_hash.decode("ascii"), meta_length, meta_crc, header_crc
    )


def _check_trailer(reader: _Reader, header: _Header) -> int:
    """Check the trailer (the file is complete); returns its crcs_crc."""
    at = reader.size - TRAILER_LENGTH
    data = os.pread(reader.fd, TRAILER_LENGTH, at)
    magic, total, count, crcs = _TRAILER.unpack(data)
    if magic != TRAILER_MAGIC:
        raise reader.corrupt("no trailer at the end: truncated, or the write never finished", at)
    if total != reader.size:
        raise reader.corrupt(f"trailer says {total} bytes, the file has {reader.size}", at)
    if count != header.array_count:
        raise reader.corrupt(
            f"trailer says {count} arrays, the header {header.array_count}", at + 16
        )
    reader.end = at
    return int(crcs)


def _read_head(path: Path) -> SnapshotInfo:
    """Header and trailer only: cheap, and catches truncation, not damaged data."""
    with _open_reader(path) as reader:
        header = _decode_header(reader)
        _check_trailer(reader, header)
        return _info(path, header, reader.size)


@contextlib.contextmanager
def _open_reader(path: Path) -> Iterator[_Reader]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield _Reader(path, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _info(path: Path, header: _Header, size: int) -> SnapshotInfo:
    named = parse_snapshot_name(path.name)
    if named is not None and named != header.seq:
        raise SnapshotCorrupt(path, f"file name says seq {named}, the header {header.seq}")
    return SnapshotInfo(path, header.seq, header.state_hash, header.created_ns, size)


def _read_meta(reader: _Reader, header: _Header) -> dict[str, str]:
    at = reader.offset
    data = reader.read(_padded(header.meta_length), "meta")
    if crc32c(data) != header.meta_crc:
        raise reader.corrupt("meta checksum mismatch", at)
    try:
        meta = json.loads(data[: header.meta_length].decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise reader.corrupt(f"meta is not JSON: {exc}", at) from None
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise reader.corrupt("meta is not a JSON object of strings", at)
    return meta


@dataclass(frozen=True, slots=True)
class _Descriptor:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    nbytes: int
    crc: int


def _read_descriptor(reader: _Reader, index: int) -> _Descriptor:
    at = reader.offset
    fixed = reader.read(DESCRIPTOR_FIXED_LENGTH, f"descriptor of array {index}")
    length, name_length, ndim, descr_length, got_index, nbytes = _DESCRIPTOR.unpack(fixed)
    expected = _padded(DESCRIPTOR_FIXED_LENGTH + 8 * ndim + name_length + descr_length + 4)
    if (
        not 1 <= name_length <= MAX_NAME_BYTES
        or ndim > MAX_NDIM
        or not 2 <= descr_length <= MAX_DESCR_BYTES
        or length != expected
    ):
        raise reader.corrupt(
            f"array {index}: bad descriptor lengths (length {length}, name {name_length}, "
            f"ndim {ndim}, descr {descr_length})",
            at,
        )
    rest = reader.read(length - DESCRIPTOR_FIXED_LENGTH, f"descriptor of array {index}")
    body = fixed + rest[:-4]
    (crc,) = _U32.unpack_from(rest, len(rest) - 4)
    if crc32c(body) != crc:
        raise reader.corrupt(f"array {index}: descriptor checksum mismatch", at)
    if got_index != index:
        raise reader.corrupt(f"array {index}: descriptor says index {got_index}", at)
    shape = struct.unpack_from(f"<{ndim}Q", rest)
    start = 8 * ndim
    try:
        name = rest[start : start + name_length].decode("utf-8")
        dtype = _decode_descr(rest[start + name_length : start + name_length + descr_length])
    except ValueError as exc:  # UnicodeDecodeError too
        raise reader.corrupt(f"array {index}: {exc}", at) from None
    size = 1
    for extent in shape:
        size *= extent
    if size * dtype.itemsize != nbytes or any(extent > MAX_SEQ for extent in shape):
        raise reader.corrupt(
            f"array {name!r}: shape {shape} of {dtype} is {size * dtype.itemsize} bytes, "
            f"nbytes says {nbytes}",
            at,
        )
    left = reader.end - reader.offset
    if _padded(nbytes) + FOOTER_LENGTH > left:  # checked before anything is allocated
        raise reader.corrupt(
            f"array {name!r}: {nbytes} bytes of data, only {left} bytes remain before the trailer",
            at,
        )
    return _Descriptor(name, dtype, tuple(int(n) for n in shape), nbytes, crc)


def _scan(
    path: Path, *, load: bool, verify: bool
) -> tuple[SnapshotInfo, dict[str, npt.NDArray[Any]], dict[str, str]]:
    """Check the whole file; with ``load``, read the arrays too."""
    with _open_reader(path) as reader:
        header = _decode_header(reader)
        crcs_crc = _check_trailer(reader, header)
        info = _info(path, header, reader.size)
        meta = _read_meta(reader, header)
        crcs = crc32c(_TWO_U32.pack(header.header_crc, header.meta_crc))
        arrays: dict[str, npt.NDArray[Any]] = {}
        for index in range(header.array_count):
            item = _read_descriptor(reader, index)
            if item.name in arrays:
                raise reader.corrupt(f"array name {item.name!r} appears twice")
            at = reader.offset
            view: memoryview | None = None
            if load:
                try:
                    array = np.empty(item.shape, item.dtype)  # nbytes <= the file's size
                except (ValueError, OverflowError) as exc:  # e.g. (0, 2**62) is too big
                    raise reader.corrupt(f"array {item.name!r}: {exc}", at) from None
                arrays[item.name] = array
                if item.nbytes:
                    view = array.reshape(-1).view(np.uint8).data
            padded = _padded(item.nbytes)
            crc = reader.read_into(view, item.nbytes, verify)
            pad_and_footer = reader.read(padded - item.nbytes + FOOTER_LENGTH, "array footer")
            data_crc, zero = _FOOTER.unpack_from(pad_and_footer, padded - item.nbytes)
            if verify and crc32c(pad_and_footer[: padded - item.nbytes], crc) != data_crc:
                raise reader.corrupt(f"array {item.name!r}: data checksum mismatch", at)
            if zero:
                raise reader.corrupt(f"array {item.name!r}: nonzero footer", reader.offset - 4)
            crcs = crc32c(_TWO_U32.pack(item.crc, data_crc), crcs)
        if reader.offset != reader.end:
            raise reader.corrupt(f"{reader.end - reader.offset} unexpected bytes before trailer")
        if crcs != crcs_crc:
            raise reader.corrupt("trailer checksum of the checksums mismatch", reader.end + 20)
        return info, arrays, meta


def read_snapshot(
    path: Path, *, verify: bool = True
) -> tuple[SnapshotInfo, dict[str, npt.NDArray[Any]], dict[str, str]]:
    """Read a snapshot: its info, its arrays (in file order) and its meta.

    Every structural check always runs; ``verify=False`` skips only the checksums
    of the array data (about 5 GB/s of CPU). Raises ``SnapshotCorrupt`` naming
    the file, the offset and what is wrong; ``OSError`` if it cannot be read.
    Never allocates more than the file's size.
    """
    return _scan(Path(path), load=True, verify=verify)


def verify_snapshot(path: Path) -> SnapshotInfo:
    """Check every checksum of a snapshot without keeping its arrays in memory."""
    return _scan(Path(path), load=False, verify=True)[0]


# ---------------------------------------------------------------------- directory


def _snapshot_files(directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of the snapshot files by name, newest first; [] if no directory."""
    try:
        with os.scandir(directory) as entries:
            found = [(parse_snapshot_name(e.name), Path(e.path)) for e in entries]
    except FileNotFoundError:
        return []
    return sorted(((seq, path) for seq, path in found if seq is not None), reverse=True)


def list_snapshots(directory: Path) -> list[SnapshotInfo]:
    """The snapshots in ``directory``, newest (highest seq) first, from their names,
    headers and trailers only (cheap: damaged data is found by reading, not here).
    Temporary files are ignored; a file with a bad header or trailer is logged
    and left out."""
    infos = []
    for _, path in _snapshot_files(Path(directory)):
        try:
            infos.append(_read_head(path))
        except FileNotFoundError:
            continue  # pruned meanwhile
        except SnapshotCorrupt as exc:
            logger.warning(
                "snapshot damaged, not listed: path=%s offset=%s reason=%s",
                path,
                exc.offset,
                exc.reason,
            )
    return infos


def load_newest_valid(
    directory: Path,
) -> tuple[SnapshotInfo, dict[str, npt.NDArray[Any]], dict[str, str]] | None:
    """Read the newest snapshot that passes every check; None if there is none.

    A damaged snapshot is logged as a warning (path, offset, reason) and skipped
    for an older one. An ``OSError`` other than a vanished file propagates: a
    disk that fails to read is not proof that the newest snapshot is bad.
    """
    for _, path in _snapshot_files(Path(directory)):
        try:
            loaded = read_snapshot(path)
        except FileNotFoundError:
            continue
        except SnapshotCorrupt as exc:
            logger.warning(
                "snapshot damaged, skipped: path=%s offset=%s reason=%s",
                path,
                exc.offset,
                exc.reason,
            )
            continue
        info = loaded[0]
        logger.info("snapshot loaded: path=%s seq=%d bytes=%d", path, info.seq, info.bytes)
        return loaded
    return None


def prune_snapshots(
    directory: Path, keep: int, *, verify: bool = True, io: SysIO | None = None
) -> list[Path]:
    """Delete the snapshots older than the ``keep`` newest valid ones, and stale
    temporary files; returns the deleted paths.

    Valid means every checksum passes (``verify=False``: header and trailer only).
    A damaged or unreadable snapshot newer than those is kept, as evidence, and
    logged; it goes once ``keep`` valid snapshots are newer. Nothing is deleted
    while fewer than ``keep`` valid ones exist, so the newest valid snapshot is
    never deleted. A temporary file is stale when no writer holds its lock.
    """
    if type(keep) is not int or keep < 1:
        raise ValueError(f"prune_snapshots keep must be an integer >= 1; got {keep!r}")
    directory = Path(directory)
    io = io if io is not None else SysIO()
    deleted = [path for path in _temporary_files(directory) if _remove_if_stale(io, path)]
    valid = 0
    for _, path in _snapshot_files(directory):
        if valid >= keep:
            with _step("prune", path):
                io.unlink(path)
            deleted.append(path)
            logger.info("snapshot pruned: path=%s keep=%d", path, keep)
            continue
        try:
            if verify:
                verify_snapshot(path)
            else:
                _read_head(path)
        except (SnapshotCorrupt, OSError) as exc:
            logger.warning("snapshot damaged or unreadable, kept: path=%s reason=%s", path, exc)
            continue
        valid += 1
    if deleted:
        with _step("fsync directory", directory):
            io.fsync_dir(directory)
    return deleted


def _temporary_files(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return [Path(e.path) for e in entries if _TMP_RE.fullmatch(e.name)]
    except FileNotFoundError:
        return []


def _remove_if_stale(io: SysIO, path: Path) -> bool:
    """Delete a temporary file that no live writer holds (a killed one's)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a writer is at work on it
        with _step("prune", path):
            io.unlink(path)
    finally:
        os.close(fd)
    logger.info("snapshot removed temporary file: path=%s", path)
    return True


# ---------------------------------------------------------------------- background


@dataclass(frozen=True, slots=True)
class SnapshotterConfig:
    """Settings of the background snapshot process; checked on construction.

    ``nice_increment``: the child lowers its CPU priority by this much (0..19) so
    the engine keeps its core. ``cpus``: CPUs the child may run on; None keeps the
    parent's affinity (with a pinned engine that is the engine's own core).
    """

    nice_increment: int = 10
    cpus: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if type(self.nice_increment) is not int or not 0 <= self.nice_increment <= 19:
            raise ConfigError(
                f"snapshot nice_increment must be an integer from 0 to 19; "
                f"got {self.nice_increment!r}"
            )
        if self.cpus is not None and (
            not isinstance(self.cpus, tuple)
            or not self.cpus
            or not all(type(cpu) is int and cpu >= 0 for cpu in self.cpus)
        ):
            raise ConfigError(
                f"snapshot cpus must be None or a non-empty tuple of CPU numbers; got {self.cpus!r}"
            )


class BackgroundSnapshotter:
    """Writes snapshots in a forked child so the engine stalls only for the fork.

    Why fork. The child gets the parent's memory copy-on-write: it sees every array
    exactly as it was at ``start``, however the parent changes them afterwards, and
    nothing is copied up front. The parent pays for the fork (page tables, about
    1 ms for 200 MB here) and then a page fault plus a 4 KiB copy the first time it
    writes each page while the child lives (2 MiB with transparent huge pages).
    Memory: up to twice the arrays' size while a snapshot is written, if the parent
    rewrites everything.

    Caveats.

    - Call it from the single engine thread, with no other thread holding a lock
      (logging, allocators, I/O): the child gets a copy of the locks, not of the
      threads. In the child only ``os``-level I/O runs: no logging, no imports,
      the garbage collector off, inherited descriptors closed, SIGINT and SIGTERM
      back to their defaults, and it leaves through ``os._exit`` (no atexit, no
      finalizers, no flushing of the parent's buffers), whatever happens.
    - Arrays in shared memory (``MAP_SHARED``, e.g. posix-ipc regions) are not
      copied on write: another process, or the parent, changes them under the
      child. ``start`` refuses them (``ValueError``); snapshot a private copy.
    - One snapshot at a time. Collect each result with ``poll`` or ``wait`` (that
      also reaps the child), or ``cancel`` it, before the next ``start``.
    - The child inherits the parent's CPU affinity unless ``cpus`` is set.
    """

    def __init__(self, config: SnapshotterConfig | None = None, *, io: SysIO | None = None) -> None:
        self._config = config if config is not None else SnapshotterConfig()
        self._io = io if io is not None else SysIO()
        self._pid = 0
        self._pipe = -1
        self._path = Path()
        self._seq = 0
        self._started_ns = 0
        self._stall_ns = 0

    @property
    def running(self) -> bool:
        """A snapshot was started and its result not yet collected."""
        return self._pid != 0

    @property
    def pid(self) -> int | None:
        """Process id of the snapshot in flight (until its result is collected)."""
        return self._pid or None

    @property
    def stall_ns(self) -> int:
        """Time the last ``start`` kept the caller (checks, encoding, fork), in ns."""
        return self._stall_ns

    def start(
        self,
        directory: Path,
        seq: int,
        state_hash: str,
        arrays: Mapping[str, npt.NDArray[Any]],
        meta: Mapping[str, str] | None = None,
    ) -> bool:
        """Fork a child that writes this snapshot; False if one is still in flight.

        The arguments are checked here, in the parent (``ValueError``/``TypeError``
        as for ``write_snapshot``); disk errors come later from ``poll``/``wait``.
        ``created_ns`` is the time of this call. The caller may change its arrays as
        soon as this returns.
        """
        began = time.perf_counter_ns()
        if self._pid:
            return False
        plan = _prepare(Path(directory), seq, state_hash, arrays, meta, time.time_ns())
        _refuse_shared_memory(plan)
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            raise SnapshotFailed.from_os_error(plan.directory, "fork", exc) from exc
        if pid == 0:
            _run_child(plan, self._io, self._config, read_fd, write_fd)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._pid, self._pipe = pid, read_fd
        self._path = plan.directory / snapshot_name(plan.seq)
        self._seq = plan.seq
        self._started_ns = time.monotonic_ns()
        self._stall_ns = time.perf_counter_ns() - began
        logger.info(
            "snapshot started: path=%s seq=%d pid=%d stall_us=%d",
            self._path,
            plan.seq,
            pid,
            self._stall_ns // 1000,
        )
        return True

    def poll(self) -> SnapshotInfo | None:
        """The finished snapshot's info, once; None while it runs or if none was started.

        Raises ``SnapshotFailed`` (once) if the child failed or died.
        """
        if not self._pid:
            return None
        try:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the result line decides
            return self._finish(None)
        if pid == 0:
            return None
        return self._finish(status)

    def wait(self, timeout_s: float | None = None) -> SnapshotInfo | None:
        """Like ``poll``, but waits up to ``timeout_s`` (None: as long as it takes)."""
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
        poller = select.poll()
        while self._pid:
            result = self.poll()
            if result is not None or not self._pid:
                return result
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return None
            poller.register(self._pipe, select.POLLIN)
            ready = poller.poll(math.ceil(left * 1000))
            poller.unregister(self._pipe)
            if ready:  # the result line or EOF: the child is exiting
                try:
                    _, status = os.waitpid(self._pid, 0)
                except ChildProcessError:
                    return self._finish(None)
                return self._finish(status)
        return None

    def cancel(self) -> bool:
        """Kill the snapshot in flight (its temporary file stays for ``prune_snapshots``).

        Returns False if none was in flight.
        """
        if not self._pid:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        logger.warning("snapshot cancelled: path=%s pid=%d", self._path, self._pid)
        self._reset()
        return True

    def _reset(self) -> None:
        if self._pipe >= 0:
            os.close(self._pipe)
        self._pid, self._pipe = 0, -1

    def _finish(self, status: int | None) -> SnapshotInfo:
        pid = self._pid
        line = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._pipe, 65536):
                line += chunk
        self._reset()
        duration_ms = (time.monotonic_ns() - self._started_ns) / 1e6
        try:
            info = self._result(pid, line, status)
        except SnapshotFailed as exc:
            logger.error("snapshot failed: %s pid=%d duration_ms=%.1f", exc, pid, duration_ms)
            raise
        logger.info(
            "snapshot written: path=%s seq=%d bytes=%d pid=%d duration_ms=%.1f",
            info.path,
            info.seq,
            info.bytes,
            pid,
            duration_ms,
        )
        return info

    def _result(self, pid: int, line: bytes, status: int | None) -> SnapshotInfo:
        try:
            report = json.loads(line.decode("utf-8")) if line else None
        except ValueError:
            report = None
        if isinstance(report, dict) and report.get("ok") is True:
            return SnapshotInfo(
                Path(str(report["path"])),
                int(report["seq"]),
                str(report["state_hash"]),
                int(report["created_ns"]),
                int(report["bytes"]),
            )
        if isinstance(report, dict) and report.get("ok") is False:
            code = report.get("errno")
            raise SnapshotFailed(
                Path(str(report.get("path", self._path))),
                str(report.get("operation", "snapshot process")),
                str(report.get("reason", "unknown")),
                errno=code if isinstance(code, int) else None,
            )
        if status is not None and os.WIFSIGNALED(status):
            how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        elif status is not None:
            how = f"exited with code {os.waitstatus_to_exitcode(status)}"
        else:
            how = "was reaped elsewhere"
        raise SnapshotFailed(self._path, "snapshot process", f"process {pid} {how}, no result")


def _refuse_shared_memory(plan: _Plan) -> None:
    """``ValueError`` if an array lies in a ``MAP_SHARED`` mapping (not copy-on-write)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return  # not Linux: nothing to check with
    shared = []
    for line in lines:
        span, perms = line.split(maxsplit=2)[:2]
        if perms[3:4] == "s":
            start, end = span.split("-")
            shared.append((int(start, 16), int(end, 16)))
    for item in plan.arrays:
        if not item.nbytes or not shared:
            continue
        low = item.data.ctypes.data
        high = low + item.nbytes
        if any(begin < high and low < end for begin, end in shared):
            raise ValueError(
                f"snapshot array {item.name!r} is in shared memory (MAP_SHARED), which "
                "fork does not copy on write; snapshot a private copy (np.array(a))"
            )


def _run_child(
    plan: _Plan, io: SysIO, config: SnapshotterConfig, read_fd: int, write_fd: int
) -> NoReturn:
    """The forked child: write the snapshot, report one JSON line, ``os._exit``."""
    status = 1
    try:
        try:
            gc.disable()  # no finalizer may close a descriptor number we reuse
            os.close(read_fd)
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
            with contextlib.suppress(ValueError):  # only if this is not the main thread
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if config.nice_increment:
                os.nice(config.nice_increment)
            if config.cpus is not None:
                with _step("set CPU affinity", plan.directory):
                    os.sched_setaffinity(0, config.cpus)
            info = _write_plan(plan, io)
            report: dict[str, object] = {
                "ok": True,
                "path": str(info.path),
                "seq": info.seq,
                "state_hash": info.state_hash,
                "created_ns": info.created_ns,
                "bytes": info.bytes,
            }
            status = 0
        except SnapshotFailed as exc:
            report = {
                "ok": False,
                "path": str(exc.path),
                "operation": exc.operation,
                "reason": exc.reason[:_MAX_REASON_CHARS],
                "errno": exc.errno,
            }
        except BaseException as exc:  # anything else: report it, never unwind into the caller
            report = {
                "ok": False,
                "path": str(plan.directory),
                "operation": "snapshot process",
                "reason": f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS],
            }
        os.write(write_fd, json.dumps(report).encode("utf-8") + b"\n")
    finally:
        os._exit(status)
