"""The system calls the log writer makes, behind one small object.

``SysIO`` calls ``os`` directly. Tests subclass it to fail a chosen call (EIO from
``fdatasync``, ENOSPC from ``write``, a short write) the way a real disk does.
Every method raises ``OSError`` on failure, as ``os`` does.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from persistence.log_errors import LogBusy
from persistence.log_format import LOCK_FILE


class SysIO:
    """Plain POSIX I/O. Each method is one system call (``fsync_dir``: three)."""

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        """``open(2)``; ``O_CLOEXEC`` is always added."""
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def close(self, fd: int) -> None:
        """``close(2)``."""
        os.close(fd)

    def write(self, fd: int, data: memoryview | bytes) -> int:
        """``write(2)``: may write less than asked; returns the count."""
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        """``pwrite(2)``: may write less than asked; returns the count."""
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        """``fsync(2)``: data and all metadata."""
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        """``fdatasync(2)``: data and the metadata needed to read it (the size)."""
        os.fdatasync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        """``ftruncate(2)``."""
        os.ftruncate(fd, length)

    def replace(self, src: Path, dst: Path) -> None:
        """``rename(2)``, replacing ``dst`` atomically."""
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        """``unlink(2)``."""
        os.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        """Make the directory's entries (created, renamed, removed files) durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_all(io: SysIO, fd: int, data: bytes | bytearray, start: int = 0, end: int = -1) -> None:
    """Write ``data[start:end]`` (``end=-1``: to the end), continuing after short writes.

    Every view of ``data`` is released before returning or raising, so a
    ``bytearray`` can be resized afterwards even while a traceback is alive.
    """
    stop = len(data) if end < 0 else end
    with memoryview(data) as view:
        while start < stop:
            with view[start:stop] as chunk:
                written = io.write(fd, chunk)
            if written <= 0:  # write(2) returns 0 only for a zero-length request
                raise OSError(5, "write made no progress")  # EIO
            start += written


def lock_directory(directory: Path) -> int:
    """Take the writer lock of ``directory`` (``flock``; released when the fd closes)."""
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LogBusy(f"log directory {directory} is in use by another writer ({path})") from None
    except OSError:
        os.close(fd)
        raise
    return fd
