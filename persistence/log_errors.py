"""Exceptions of the append log.

They extend the project's vocabulary in ``core.errors``: ``LogCorrupt`` is a
``CorruptLogError``, ``LogUnavailable`` a ``BrokenError`` (the disk failed us), and
argument errors are also ``ValueError``s.
"""

from __future__ import annotations

import errno as errno_names
import os
from pathlib import Path

from core.errors import BrokenError, CorruptLogError, MatchdError


class LogError(MatchdError):
    """Base class of every error the append log raises on purpose."""


class LogCorrupt(LogError, CorruptLogError):
    """Records that were durable are damaged, or the log's files are inconsistent.

    Raised when a writer opens the log (it refuses to start) and when a reader meets
    damage within the committed part of the log. Never raised for a torn tail (the
    unsynced end of the last commit), which the writer truncates with a warning.
    The message names the file, the byte offset and the sequence numbers.
    """

    def __init__(
        self,
        path: Path,
        offset: int,
        reason: str,
        *,
        expected_seq: int | None = None,
        last_good_seq: int | None = None,
    ) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        self.expected_seq = expected_seq
        self.last_good_seq = last_good_seq
        where = f"segment {path} offset {offset}"
        seqs = []
        if expected_seq is not None:
            seqs.append(f"expected seq {expected_seq}")
        if last_good_seq is not None:
            seqs.append(f"last good seq {last_good_seq}")
        detail = f" ({', '.join(seqs)})" if seqs else ""
        super().__init__(f"log corrupt: {where}: {reason}{detail}")


class LogUnavailable(LogError, BrokenError):
    """The disk refused a write, fsync, truncate or rename (ENOSPC, EIO, EROFS, ...).

    Raised by ``LogWriter.commit`` (and by ``LogWriter.open`` when it cannot set up
    the log). Nothing after ``durable_seq`` is durable: the daemon must stop accepting
    state-changing commands (code 3), keep serving reads, alert, and call ``commit``
    again later; the writer kept the pending records and rewrites them. The OSError
    is chained as ``__cause__``.
    """

    def __init__(self, operation: str, path: Path, exc: OSError, durable_seq: int) -> None:
        self.operation = operation
        self.path = path
        self.errno = exc.errno
        self.durable_seq = durable_seq
        code = errno_names.errorcode.get(exc.errno or 0, str(exc.errno))
        text = exc.strerror or os.strerror(exc.errno or 0)
        super().__init__(
            f"log unavailable: {operation} {path} failed: {code} ({text}); "
            f"durable up to seq {durable_seq}; state-changing commands must be refused "
            "until a commit succeeds"
        )


class LogBusy(LogError):
    """Another writer holds the log directory's lock (one writer per log)."""


class SequenceError(LogError, ValueError):
    """An appended record's sequence number is not the previous one plus 1."""


class RecordTooLarge(LogError, ValueError):
    """An appended payload is larger than the ``max_record_bytes`` setting."""


class LogFull(LogError):
    """The pending (uncommitted) records would exceed ``max_pending_bytes``.

    Commit first. While the disk fails, this bounds what the writer holds in memory.
    """


class SeqPruned(LogError, LookupError):
    """A reader asked for a record that retention already deleted."""


class ConsumerError(LogError, ValueError):
    """A consumer name is invalid or not registered, or a confirmation is not allowed."""
