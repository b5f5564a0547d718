"""Writing a snapshot file: check the arguments, then write header, arrays (their
non-zero blocks only) and trailer under a temporary name, sync, rename, sync the
directory. The layout is in ``persistence.snapshot_format``.

Work is split so that the background writer can do the cheap part in the engine's
process and the rest in its forked child: ``prepare`` checks and encodes what does
not depend on the data (the engine stalls for it), ``write_plan`` finds the non-zero
blocks, checksums and writes (the child does that, and calls a ``state_hash``
callable first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno as errno_names
import fcntl
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from crc32c import crc32c

from persistence._io import SysIO
from persistence.log_format import MAX_SEQ, TMP_SUFFIX
from persistence.snapshot_dtype import encode_descr
from persistence.snapshot_errors import step
from persistence.snapshot_format import (
    BLOCK_BYTES,
    CHUNK_BYTES,
    FOOTER,
    FOOTER_LENGTH,
    MAX_ARRAYS,
    MAX_CREATED_NS,
    MAX_LOGICAL_BYTES,
    MAX_NAME_BYTES,
    MAX_NDIM,
    TRAILER_LENGTH,
    TWO_U32,
    ZEROS,
    SnapshotInfo,
    block_count,
    block_spans,
    check_max_logical_bytes,
    check_state_hash,
    encode_descriptor,
    encode_head,
    encode_meta,
    encode_trailer,
    padded,
    snapshot_name,
)

logger = logging.getLogger(__name__)

#: A state hash, or a function that computes one when the snapshot is written.
StateHash = str | Callable[[], str]


@dataclass(frozen=True, slots=True)
class ArrayPlan:
    """One array to write: its descriptor's parts and a view of its bytes."""

    name: str
    name_bytes: bytes
    descr: bytes
    shape: tuple[int, ...]
    data: npt.NDArray[np.uint8]  # the array's bytes: a view, never a copy
    nbytes: int


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything to write, checked, except what depends on the data."""

    directory: Path
    seq: int
    state_hash: StateHash
    created_ns: int
    meta: bytes
    logical_bytes: int
    arrays: tuple[ArrayPlan, ...]

    @property
    def path(self) -> Path:
        """The snapshot's final path."""
        return self.directory / snapshot_name(self.seq)


def prepare(
    directory: Path,
    seq: int,
    state_hash: StateHash,
    arrays: Mapping[str, npt.NDArray[Any]],
    meta: Mapping[str, str] | None,
    created_ns: int,
    max_logical_bytes: int = MAX_LOGICAL_BYTES,
) -> Plan:
    """Check the arguments (``ValueError``, ``TypeError``) and encode all but the data.

    A callable ``state_hash`` is kept, to be called by ``with_state_hash``'s caller.
    """
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"snapshot seq must be an integer from 0 to {MAX_SEQ}; got {seq!r}")
    if isinstance(state_hash, str) or not callable(state_hash):
        check_state_hash(state_hash)
    if type(created_ns) is not int or not 0 <= created_ns <= MAX_CREATED_NS:
        raise ValueError(
            f"snapshot created_ns must be from 0 to {MAX_CREATED_NS}; got {created_ns!r}"
        )
    check_max_logical_bytes(max_logical_bytes)
    if len(arrays) > MAX_ARRAYS:
        raise ValueError(f"a snapshot holds at most {MAX_ARRAYS} arrays; got {len(arrays)}")
    meta_bytes = encode_meta(dict(meta or {}))
    planned = tuple(_plan_array(name, arrays[name]) for name in arrays)
    logical_bytes = sum(item.nbytes for item in planned)
    if logical_bytes > max_logical_bytes:
        raise ValueError(
            f"snapshot arrays hold {logical_bytes} bytes, over max_logical_bytes "
            f"{max_logical_bytes}"
        )
    return Plan(directory, seq, state_hash, created_ns, meta_bytes, logical_bytes, planned)


def with_state_hash(plan: Plan, state_hash: object) -> Plan:
    """``plan`` with this (checked) state hash, e.g. what its callable returned."""
    return dataclasses.replace(plan, state_hash=check_state_hash(state_hash))


def _plan_array(name: str, array: npt.NDArray[Any]) -> ArrayPlan:
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
    descr = encode_descr(name, array.dtype)
    data = array.reshape(-1).view(np.uint8) if array.nbytes else np.empty(0, np.uint8)
    shape = tuple(int(n) for n in array.shape)
    return ArrayPlan(name, name_bytes, descr, shape, data, array.nbytes)


# ---------------------------------------------------------------------- writing


def _write_fully(io: SysIO, fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        written = io.write(fd, view)
        if written <= 0:
            raise OSError(errno_names.EIO, "write made no progress")
        view = view[written:]


def write_plan(plan: Plan, io: SysIO) -> SnapshotInfo:
    """Write the file under a temporary name, sync it, rename it, sync the directory.

    The temporary file is locked (``flock``) from before its first byte until after
    its rename, so ``prune_snapshots`` deletes only those of dead writers, and a
    second writer of the same ``seq`` fails without touching the first one's file.
    Does no logging (it runs in the background child too). ``SnapshotFailed`` on
    failure, after removing the temporary file if it is this writer's.
    """
    if not isinstance(plan.state_hash, str):
        raise TypeError("write_plan needs the state hash itself: call with_state_hash first")
    final = plan.path
    tmp = final.with_name(final.name + TMP_SUFFIX)
    fd = open_temporary(io, plan.directory, tmp)
    ours = True
    try:
        with step("write", tmp):
            total = _write_body(io, fd, plan, plan.state_hash)
        with step("fsync", tmp):
            io.fsync(fd)
        with step("rename", final):
            io.replace(tmp, final)
        ours = False  # the name is the snapshot's now
        closing, fd = fd, -1
        with step("close", final):
            io.close(closing)
    except BaseException:
        if fd >= 0:
            with contextlib.suppress(OSError):
                io.close(fd)
        if ours:
            with contextlib.suppress(OSError):
                io.unlink(tmp)
        raise
    with step("fsync directory", plan.directory):
        io.fsync_dir(plan.directory)
    return SnapshotInfo(final, plan.seq, plan.state_hash, plan.created_ns, total)


def open_temporary(io: SysIO, directory: Path, tmp: Path) -> int:
    """Create ``directory`` if needed, then open ``tmp``, take its ``flock`` and empty
    it (a dead writer's bytes); returns the descriptor. The lock keeps
    ``prune_snapshots`` off the file; a name that a prune removed between the open
    and the lock is refused (EAGAIN) rather than written to in vain. ``SnapshotFailed``
    on failure, after closing the file (and removing it once locked)."""
    with step("create directory", directory):
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            io.fsync_dir(directory.parent)
    fd = -1
    ours = False
    try:
        with step("open", tmp):
            fd = io.open(tmp, os.O_WRONLY | os.O_CREAT)
        with step("lock", tmp):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held, named = os.fstat(fd), os.stat(tmp)
            if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):  # pruned
                raise OSError(errno_names.EAGAIN, "removed while being opened; try again")
        ours = True
        with step("write", tmp):
            io.ftruncate(fd, 0)
    except BaseException:
        if ours:
            with contextlib.suppress(OSError):
                io.unlink(tmp)
        if fd >= 0:
            with contextlib.suppress(OSError):
                io.close(fd)
        raise
    return fd


def _write_body(io: SysIO, fd: int, plan: Plan, state_hash: str) -> int:
    """Write header, arrays and trailer; returns the file length."""
    head, header_crc, meta_crc = encode_head(
        len(plan.arrays), plan.seq, plan.created_ns, state_hash, plan.logical_bytes, plan.meta
    )
    _write_fully(io, fd, head)
    total = len(head)
    crcs = crc32c(TWO_U32.pack(header_crc, meta_crc))
    for index, item in enumerate(plan.arrays):
        present = nonzero_blocks(item.data)
        descriptor, descriptor_crc = encode_descriptor(
            index, item.name_bytes, item.descr, item.shape, item.nbytes, present
        )
        _write_fully(io, fd, descriptor)
        stored, data_crc = _write_blocks(io, fd, item.data, block_spans(present, item.nbytes))
        pad = ZEROS[: padded(stored) - stored]
        data_crc = crc32c(pad, data_crc)
        _write_fully(io, fd, pad + FOOTER.pack(data_crc, 0))
        crcs = crc32c(TWO_U32.pack(descriptor_crc, data_crc), crcs)
        total += len(descriptor) + padded(stored) + FOOTER_LENGTH
    total += TRAILER_LENGTH
    _write_fully(io, fd, encode_trailer(total, len(plan.arrays), crcs))
    return total


def nonzero_blocks(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which blocks of an array's bytes hold a non-zero byte: one vectorized pass,
    reading the full blocks as u64 words (tens of GB/s; never-touched pages of
    ``np.zeros`` read as the shared zero page)."""
    nbytes = data.size
    present = np.zeros(block_count(nbytes), np.bool_)
    full = nbytes // BLOCK_BYTES
    if full:
        words = data[: full * BLOCK_BYTES].view(np.uint64).reshape(full, BLOCK_BYTES // 8)
        np.not_equal(np.bitwise_or.reduce(words, axis=1), 0, out=present[:full])
    if full < present.size:
        present[full] = bool(data[full * BLOCK_BYTES :].any())
    return present


def _write_blocks(
    io: SysIO, fd: int, data: npt.NDArray[np.uint8], spans: list[tuple[int, int]]
) -> tuple[int, int]:
    """Write these byte ranges of ``data`` in pieces; returns (bytes, their CRC32C)."""
    crc = 0
    stored = 0
    with data.data as view:
        for start, stop in spans:
            for at in range(start, stop, CHUNK_BYTES):
                with view[at : min(stop, at + CHUNK_BYTES)] as chunk:
                    crc = crc32c(chunk, crc)
                    _write_fully(io, fd, chunk)
            stored += stop - start
    return stored, crc


def write_snapshot(
    directory: Path,
    seq: int,
    state_hash: StateHash,
    arrays: Mapping[str, npt.NDArray[Any]],
    meta: Mapping[str, str] | None = None,
    *,
    created_ns: int | None = None,
    io: SysIO | None = None,
    max_logical_bytes: int = MAX_LOGICAL_BYTES,
) -> SnapshotInfo:
    """Write the snapshot of the state after record ``seq``, atomically.

    ``arrays`` (C-contiguous, no object dtypes, any shape including 0-d and empty)
    are stored as 64 KiB blocks, of which only those holding a non-zero byte are
    written, streamed from the arrays' memory in ``CHUNK_BYTES`` pieces, never
    copied. ``state_hash`` is 32 lowercase hex digits, or a function returning them
    (called here, once the other arguments are checked). ``created_ns`` defaults to
    the wall clock now. The arrays may hold at most ``max_logical_bytes`` together,
    the limit readers apply by default. The file appears under its final name only
    complete and synced, and the directory is synced after the rename. Raises
    ``ValueError``/``TypeError`` for unusable arguments (before touching the disk)
    and ``SnapshotFailed`` if the disk refuses. A snapshot with the same ``seq`` is
    replaced.
    """
    began = time.monotonic_ns()
    stamp = time.time_ns() if created_ns is None else created_ns
    plan = prepare(Path(directory), seq, state_hash, arrays, meta, stamp, max_logical_bytes)
    if not isinstance(plan.state_hash, str):
        plan = with_state_hash(plan, plan.state_hash())
    info = write_plan(plan, io if io is not None else SysIO())
    logger.info(
        "snapshot written: path=%s seq=%d bytes=%d logical_bytes=%d arrays=%d duration_ms=%.1f",
        info.path,
        info.seq,
        info.bytes,
        plan.logical_bytes,
        len(plan.arrays),
        (time.monotonic_ns() - began) / 1e6,
    )
    return info
