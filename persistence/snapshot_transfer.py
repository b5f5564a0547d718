"""Sending one snapshot file to another snapshot directory, in chunks.

Why: a hot-standby replica (issue 9) that has fallen behind the primary's log
catches up the way recovery does (DESIGN.md rule 4): from a snapshot, then the log
after its ``seq``. The primary sends its newest valid snapshot file as it is, in
chunks of at most ``MAX_CHUNK_BYTES`` over ZeroMQ (elsewhere: this module is the
file part of both ends); the replica stores it in its own snapshot directory, where
``load_newest_valid`` finds it.

Guarantees:

- A name ``snapshot-*.snap`` only ever holds a complete, verified, synced file. The
  receiver writes ``<name>.tmp``, syncs it, runs every check of the reader on it
  (``verify_snapshot``, data checksums included), checks that its header holds the
  announced ``seq`` and ``state_hash``, renames it (atomically replacing a snapshot
  of the same ``seq``) and syncs the directory.
- The receiver holds the temporary file's ``flock`` from before its first byte to
  its rename, as ``write_snapshot`` does: ``prune_snapshots`` leaves it alone, and a
  writer of the same ``seq`` fails instead of mixing its bytes in.
- A refused call (``ValueError``) changes nothing. A transfer that fails before the
  rename (``SnapshotCorrupt``, ``SnapshotFailed``, ``abort``) leaves no file behind.
- The sender holds its file open: a prune that deletes it meanwhile does not disturb
  the transfer (snapshot files are never changed in place, only replaced).

Errors follow the package: the sender reads as the reader does (an ``OSError``
propagates), the receiver writes as the writer does (``SnapshotFailed`` names the
operation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno as errno_names
import logging
import os
from pathlib import Path

from core.errors import ClosedError
from persistence._io import SysIO
from persistence.log_format import MAX_SEQ, TMP_SUFFIX
from persistence.snapshot_directory import newest_valid
from persistence.snapshot_errors import SnapshotCorrupt, step
from persistence.snapshot_format import (
    HEADER_LENGTH,
    MAX_LOGICAL_BYTES,
    TRAILER_LENGTH,
    SnapshotInfo,
    check_max_logical_bytes,
    check_state_hash,
    snapshot_name,
)
from persistence.snapshot_reader import verify_snapshot
from persistence.snapshot_writer import open_temporary

logger = logging.getLogger(__name__)

#: The most one ``read`` returns and one ``write`` takes (one message's payload).
MAX_CHUNK_BYTES = 4 << 20
#: The smallest snapshot file: a header and a trailer.
MIN_SNAPSHOT_BYTES = HEADER_LENGTH + TRAILER_LENGTH
#: How often ``SnapshotSource.open`` verifies a name again that was replaced meanwhile.
_OPEN_ATTEMPTS = 3


class SnapshotSource:
    """The sending end: one verified snapshot file, held open, read in chunks.

    Made by ``open``. ``seq``, ``state_hash`` and ``size_bytes`` (the file's) are
    what the receiver is told; ``info`` is the whole ``SnapshotInfo``.
    """

    def __init__(self, fd: int, info: SnapshotInfo) -> None:
        self._fd = fd
        self.info = info
        self.path = info.path
        self.seq = info.seq
        self.state_hash = info.state_hash
        self.size_bytes = info.bytes

    @classmethod
    def open(
        cls, directory: Path, *, max_logical_bytes: int = MAX_LOGICAL_BYTES
    ) -> SnapshotSource | None:
        """The newest snapshot in ``directory`` that passes every check (as for
        ``load_newest_valid``), held open; None if there is none.

        A damaged snapshot is logged and skipped for an older one; a vanished one
        is skipped. Another ``OSError`` propagates.
        """
        check_max_logical_bytes(max_logical_bytes)
        source = newest_valid(directory, lambda path: cls._open_verified(path, max_logical_bytes))
        if source is not None:
            logger.info("snapshot source: path=%s bytes=%d", source.path, source.size_bytes)
        return source

    @classmethod
    def _open_verified(cls, path: Path, max_logical_bytes: int) -> SnapshotSource | None:
        """Open ``path`` and verify the very file held. Tried again when the name was
        given to a new file meanwhile (the same ``seq`` written again); None if that
        keeps happening."""
        for _attempt in range(_OPEN_ATTEMPTS):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                held = os.fstat(fd)
                info = verify_snapshot(path, max_logical_bytes=max_logical_bytes)
                named = os.stat(path)  # the held file before and after: the one verified
            except BaseException:
                os.close(fd)
                raise
            if (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
                return cls(fd, info)
            os.close(fd)
        return None

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes (1 to ``MAX_CHUNK_BYTES``) from ``offset``, all within the file."""
        if self._fd < 0:
            raise ClosedError(f"snapshot source {self.path} is closed")
        if not 1 <= length <= MAX_CHUNK_BYTES:
            raise ValueError(f"read length {length}: chunks are 1 to {MAX_CHUNK_BYTES} bytes")
        if offset < 0 or offset + length > self.size_bytes:
            raise ValueError(
                f"read of {length} bytes at offset {offset} is outside snapshot {self.path} "
                f"of {self.size_bytes} bytes"
            )
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise SnapshotCorrupt(self.path, "file shrank while being sent", offset=offset)
        return data

    def close(self) -> None:
        """Release the file (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> SnapshotSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SnapshotSink:
    """The receiving end: writes the announced snapshot under its temporary name,
    in order, and installs it once it is complete and verified.

    The announcement (``seq``, ``state_hash``, ``size_bytes``) is checked before the
    disk is touched: ``ValueError`` for a bad one, or for ``size_bytes`` over
    ``max_bytes``. Then the temporary file is created and locked (``SnapshotFailed``
    "lock" if a writer of the same ``seq`` holds it). ``received_bytes`` counts what
    was written; ``path`` is the final name, ``tmp_path`` the temporary one. Leaving
    a ``with`` block without ``finish`` aborts.
    """

    def __init__(
        self,
        directory: Path,
        seq: int,
        state_hash: str,
        size_bytes: int,
        *,
        max_bytes: int,
        max_logical_bytes: int = MAX_LOGICAL_BYTES,
        io: SysIO | None = None,
    ) -> None:
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"snapshot seq must be an integer from 0 to {MAX_SEQ}; got {seq!r}")
        self.seq = seq
        self.state_hash = check_state_hash(state_hash)
        if type(max_bytes) is not int or max_bytes < 0:
            raise ValueError(f"max_bytes must be an integer >= 0; got {max_bytes!r}")
        if type(size_bytes) is not int or size_bytes < MIN_SNAPSHOT_BYTES:
            raise ValueError(
                f"snapshot {seq}: size_bytes must be an integer >= {MIN_SNAPSHOT_BYTES} "
                f"(a header and a trailer); got {size_bytes!r}"
            )
        if size_bytes > max_bytes:
            raise ValueError(f"snapshot {seq}: {size_bytes} bytes, over max_bytes {max_bytes}")
        self.size_bytes = size_bytes
        self._max_logical_bytes = check_max_logical_bytes(max_logical_bytes)
        self.directory = Path(directory)
        self.path = self.directory / snapshot_name(seq)
        self.tmp_path = self.path.with_name(self.path.name + TMP_SUFFIX)
        self.received_bytes = 0
        self._io = io if io is not None else SysIO()
        self._state = "receiving"  # then "finished" or "aborted"
        self._fd = self._create()

    def _create(self) -> int:
        """Create the directory if needed, then open, lock and empty the temporary file."""
        return open_temporary(self._io, self.directory, self.tmp_path)

    def _check_receiving(self, call: str) -> None:
        if self._state != "receiving":
            raise ClosedError(f"snapshot {self.seq} transfer is {self._state}; cannot {call}")

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Append the chunk that starts at ``offset`` (the bytes received so far).

        ``ValueError``, with nothing written, for a chunk out of order, empty, over
        ``MAX_CHUNK_BYTES`` or past ``size_bytes``.
        """
        self._check_receiving("write")
        with memoryview(data) as raw, raw.cast("B") as view:
            length = len(view)
            if type(offset) is not int or offset != self.received_bytes:
                raise ValueError(
                    f"snapshot {self.seq}: chunk at offset {offset!r}, expected offset "
                    f"{self.received_bytes} (the bytes received so far; chunks arrive in order)"
                )
            if not 1 <= length <= MAX_CHUNK_BYTES:
                raise ValueError(
                    f"snapshot {self.seq}: chunk of {length} bytes; chunks are 1 to "
                    f"{MAX_CHUNK_BYTES} bytes"
                )
            if offset + length > self.size_bytes:
                raise ValueError(
                    f"snapshot {self.seq}: chunk of {length} bytes at offset {offset} ends at "
                    f"{offset + length}, past the announced size_bytes {self.size_bytes}"
                )
            try:
                with step("write", self.tmp_path):
                    self._write_fully(view)
            except BaseException:
                self.abort()
                raise
        self.received_bytes += length

    def _write_fully(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            with view[done:] as rest:
                written = self._io.write(self._fd, rest)
            if written <= 0:
                raise OSError(errno_names.EIO, "write made no progress")
            done += written

    def finish(self) -> SnapshotInfo:
        """Sync, verify and install the file; returns its ``SnapshotInfo``.

        ``ValueError`` (nothing changed) until all ``size_bytes`` have arrived.
        ``SnapshotCorrupt`` if a check fails or the header's ``seq`` or
        ``state_hash`` is not the announced one, ``SnapshotFailed`` if the disk
        refuses; the temporary file is removed then. As for ``write_snapshot``, a
        failed "close" or "fsync directory" comes after the rename: the snapshot is
        installed, but its name may not survive a power cut.
        """
        self._check_receiving("finish")
        if self.received_bytes != self.size_bytes:
            raise ValueError(
                f"snapshot {self.seq}: received {self.received_bytes} of {self.size_bytes} "
                "bytes; cannot finish"
            )
        io, tmp = self._io, self.tmp_path
        try:
            with step("fsync", tmp):
                io.fsync(self._fd)
            with step("verify", tmp):
                info = verify_snapshot(tmp, max_logical_bytes=self._max_logical_bytes)
            self._check_announced(info)
            with step("rename", self.path):
                io.replace(tmp, self.path)
        except SnapshotCorrupt as exc:
            logger.warning("snapshot transfer refused: seq=%d error=%s", self.seq, exc)
            self.abort()
            raise
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        closing, self._fd = self._fd, -1
        with step("close", self.path):
            io.close(closing)
        with step("fsync directory", self.directory):
            io.fsync_dir(self.directory)
        logger.info("snapshot received: path=%s seq=%d bytes=%d", self.path, info.seq, info.bytes)
        return dataclasses.replace(info, path=self.path)

    def _check_announced(self, info: SnapshotInfo) -> None:
        if info.seq != self.seq:
            reason = f"header says seq {info.seq}, the sender announced {self.seq}"
            raise SnapshotCorrupt(self.tmp_path, reason, offset=16)
        if info.state_hash != self.state_hash:
            reason = (
                f"header says state_hash {info.state_hash}, the sender announced {self.state_hash}"
            )
            raise SnapshotCorrupt(self.tmp_path, reason, offset=32)

    def abort(self) -> None:
        """Close and remove the temporary file (idempotent; nothing after ``finish``).

        A file that cannot be removed is left unlocked, for the next prune."""
        if self._state != "receiving":
            return
        self._state = "aborted"
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            self._io.unlink(self.tmp_path)  # while locked: no prune races us
        if fd >= 0:
            with contextlib.suppress(OSError):
                self._io.close(fd)
        logger.info("snapshot transfer aborted: seq=%d bytes=%d", self.seq, self.received_bytes)

    def __enter__(self) -> SnapshotSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()
