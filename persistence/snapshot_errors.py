"""Exceptions of the snapshot files, and the step that turns a failed system call
into one.

They extend the log's vocabulary: ``SnapshotCorrupt`` is a ``LogError`` and a
``CorruptLogError`` (the file is bad), ``SnapshotFailed`` a ``LogError`` and a
``BrokenError`` (the disk, or the background process, failed us).
"""

from __future__ import annotations

import contextlib
import errno as errno_names
from collections.abc import Iterator
from pathlib import Path

from core.errors import BrokenError, CorruptLogError
from persistence.log_errors import LogError


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
    """Writing a snapshot failed: the disk refused (ENOSPC, EIO, EACCES, ...), the
    background process died, or its ``state_hash`` callable failed (``operation``
    "state hash"). The ``OSError``, if any, is chained.

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


@contextlib.contextmanager
def step(operation: str, path: Path) -> Iterator[None]:
    """Run one step of writing or pruning: an ``OSError`` becomes ``SnapshotFailed``."""
    try:
        yield
    except OSError as exc:
        raise SnapshotFailed.from_os_error(path, operation, exc) from exc
