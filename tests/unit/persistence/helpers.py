"""Helpers of the append-log tests: payloads, writers, files, and a disk that fails."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from persistence._io import SysIO
from persistence.log import FsyncPolicy, LogConfig, LogReader, LogWriter, Record
from persistence.log_format import (
    COMMITTED_FILE,
    COMMITTED_MAGIC,
    COMMITTED_SYNCED,
    SEGMENT_HEADER_LENGTH,
    encode_seq_file,
    segment_name,
)

RTYPE = 7


def payload_for(seq: int) -> bytes:
    """A payload that differs in content and length (0..199 bytes) from seq to seq."""
    length = (seq * 37) % 200
    unit = seq.to_bytes(8, "little")
    return (unit * (length // 8 + 1))[:length]


def record_for(seq: int) -> Record:
    """The record ``write_records`` wrote for ``seq``."""
    return Record(seq, RTYPE, payload_for(seq))


def config(
    fsync: FsyncPolicy = FsyncPolicy.BATCH,
    segment_bytes: int = 1 << 20,
    max_record_bytes: int = 4096,
    max_pending_bytes: int = 1 << 20,
) -> LogConfig:
    """A small configuration for tests."""
    return LogConfig(
        fsync=fsync,
        segment_bytes=segment_bytes,
        max_record_bytes=max_record_bytes,
        max_pending_bytes=max_pending_bytes,
    )


def write_records(writer: LogWriter, seqs: Iterable[int], *, batch: int = 1) -> None:
    """Append ``record_for(seq)`` for each seq, committing every ``batch`` records."""
    for count, seq in enumerate(seqs, 1):
        writer.append(seq, RTYPE, payload_for(seq))
        if count % batch == 0:
            writer.commit()
    writer.commit()


def make_log(
    directory: Path, last_seq: int, *, batch: int = 1, log_config: LogConfig | None = None
) -> None:
    """A closed log holding records 1..last_seq."""
    with LogWriter.open(directory, log_config or config()) as writer:
        write_records(writer, range(1, last_seq + 1), batch=batch)


def read_all(directory: Path, from_seq: int = 1) -> list[Record]:
    """Every committed record from ``from_seq``."""
    with LogReader(directory) as reader:
        return list(reader.read(from_seq))


def set_committed(directory: Path, seq: int, *, synced: bool = True) -> None:
    """Set the ``committed`` marker, e.g. to where a writer killed between its write
    and its sync left it (the last commit not yet published)."""
    flags = COMMITTED_SYNCED if synced else 0
    (directory / COMMITTED_FILE).write_bytes(encode_seq_file(COMMITTED_MAGIC, seq, flags))


def segment_path(directory: Path, first_seq: int = 1) -> Path:
    """Path of the segment starting at ``first_seq``."""
    return directory / segment_name(first_seq)


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of the frames in a valid segment, and the end offset last."""
    data = path.read_bytes()
    offsets = [SEGMENT_HEADER_LENGTH]
    while offsets[-1] < len(data):
        length = int.from_bytes(data[offsets[-1] : offsets[-1] + 4], "little")
        offsets.append(offsets[-1] + ((24 + length + 7) & ~7))
    return offsets


def flip_byte(path: Path, offset: int, mask: int = 0x01) -> None:
    """XOR the byte at ``offset`` of ``path`` with ``mask``."""
    with open(path, "r+b") as file:
        file.seek(offset)
        value = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([value ^ mask]))


class FaultyIO(SysIO):
    """``SysIO`` that fails chosen calls the way a failing disk does.

    ``fail(op, code, times)`` makes the next ``times`` calls of ``op`` (a method
    name: write, fdatasync, fsync, ftruncate, replace, open, pwrite, fsync_dir, ...)
    raise ``OSError(code)``; ``times=-1`` until ``clear``. ``fail_call_number``
    fails the N-th call of any kind (1-based), SQLite style. ``short_writes`` caps
    every write at that many bytes. When a sync fails, the bytes written since the
    last good sync are overwritten with garbage, as a kernel that dropped the dirty
    pages would leave them (fsyncgate): a writer that trusts the page cache after
    a failed sync then loses data, and the tests see it. ``hooks[op]`` runs before
    each call of ``op``. Tests that model process crashes only (never power loss)
    may pass ``real_syncs=False`` to skip the actual syncs, for speed.
    """

    def __init__(self, *, real_syncs: bool = True) -> None:
        self.real_syncs = real_syncs  # False: syncs succeed without syncing (eatmydata)
        self.calls: list[str] = []
        self.failures: dict[str, tuple[int, int]] = {}
        self.fail_call_number: int | None = None
        self.fail_code = errno.EIO
        self.short_writes: int | None = None
        self.hooks: dict[str, Callable[[], None]] = {}
        self._synced_size: dict[int, int] = {}

    def fail(self, op: str, code: int = errno.EIO, times: int = 1) -> None:
        """Fail the next ``times`` calls of ``op`` (-1: every call until ``clear``)."""
        self.failures[op] = (code, times)

    def clear(self) -> None:
        """The disk works again."""
        self.failures.clear()
        self.fail_call_number = None
        self.short_writes = None

    def count(self, op: str) -> int:
        """How many calls of ``op`` were made."""
        return self.calls.count(op)

    def _enter(self, op: str) -> None:
        hook = self.hooks.get(op)
        if hook is not None:
            hook()
        self.calls.append(op)
        if self.fail_call_number is not None and len(self.calls) == self.fail_call_number:
            raise OSError(self.fail_code, os.strerror(self.fail_code))
        if op in self.failures:
            code, times = self.failures[op]
            if times != -1:
                if times <= 1:
                    del self.failures[op]
                else:
                    self.failures[op] = (code, times - 1)
            raise OSError(code, os.strerror(code))

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        self._enter("open")
        fd = super().open(path, flags, mode)
        self._synced_size[fd] = os.fstat(fd).st_size
        return fd

    def close(self, fd: int) -> None:
        self._synced_size.pop(fd, None)
        super().close(fd)  # a real close releases the descriptor even when it fails
        self._enter("close")

    def write(self, fd: int, data: memoryview | bytes) -> int:
        self._enter("write")
        if self.short_writes is not None:
            data = data[: self.short_writes]
        return super().write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._enter("pwrite")
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._sync("fsync", fd, super().fsync)

    def fdatasync(self, fd: int) -> None:
        self._sync("fdatasync", fd, super().fdatasync)

    def _sync(self, op: str, fd: int, sync: Callable[[int], None]) -> None:
        try:
            self._enter(op)
        except OSError:
            self._drop_unsynced(fd)
            raise
        if self.real_syncs:
            sync(fd)
        self._synced_size[fd] = os.fstat(fd).st_size

    def _drop_unsynced(self, fd: int) -> None:
        synced = self._synced_size.get(fd, 0)
        size = os.fstat(fd).st_size
        if size > synced:  # a second descriptor: pwrite ignores offsets under O_APPEND
            other = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
            try:
                os.pwrite(other, b"\xa5" * (size - synced), synced)
            finally:
                os.close(other)

    def ftruncate(self, fd: int, length: int) -> None:
        self._enter("ftruncate")
        super().ftruncate(fd, length)

    def replace(self, src: Path, dst: Path) -> None:
        self._enter("replace")
        super().replace(src, dst)

    def unlink(self, path: Path) -> None:
        self._enter("unlink")
        super().unlink(path)

    def fsync_dir(self, path: Path) -> None:
        self._enter("fsync_dir")
        if self.real_syncs:
            super().fsync_dir(path)
