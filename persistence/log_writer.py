"""The single writer of the append log: append, group commit, recovery, retention.

One ``LogWriter`` (one thread of one process) appends records and commits them in
groups; any number of ``LogReader``s, in any process, follow the log behind it.
Each record is ``(seq, rtype, payload)``: the payload is opaque bytes here. The
layout is in ``persistence.log_format`` and docs/log.md.

Durability (DESIGN.md rule 2). ``append`` only buffers. ``commit`` writes every
record appended since the last commit with one ``write`` and makes it durable per
``fsync``: ``always`` syncs after each record, ``batch`` (the default) once per
commit, ``none`` never (the page cache only). ``durable_seq`` advances only after
that; acknowledgements up to ``durable_seq`` may be released, none after it.

Failure. If a write, sync, truncate or rename fails (ENOSPC, EIO, EROFS, ...),
``commit`` raises ``LogUnavailable``, keeps the pending records and reports
``available == False``. The next ``commit`` reopens the segment, truncates it back
to the last durable offset, syncs that, and writes the records again: after a
failed fsync the kernel may have dropped the dirty pages and marked them clean
("fsyncgate"), so the page cache is never trusted and a failed sync is never
retried as if it had succeeded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from core.errors import ClosedError
from persistence._io import SysIO, lock_directory, write_all
from persistence._segments import SegmentScan, check_log, list_segments, missing_committed
from persistence._seqfile import read_seq_file, write_seq_file_atomically
from persistence.log_config import FsyncPolicy, LogConfig, LogStats
from persistence.log_errors import (
    LogCorrupt,
    LogFull,
    LogUnavailable,
    RecordTooLarge,
    SequenceError,
)
from persistence.log_format import (
    COMMITTED_FILE,
    COMMITTED_MAGIC,
    COMMITTED_SYNCED,
    FRAME_ALIGN,
    FRAME_HEADER_LENGTH,
    MAX_RTYPE,
    MAX_SEQ,
    SEGMENT_HEADER_LENGTH,
    SEGMENT_SUFFIX,
    TMP_SUFFIX,
    FormatError,
    SeqFile,
    append_frame,
    encode_segment_header,
    encode_seq_file,
    frame_length,
    segment_name,
)
from persistence.retention import prune_segments

logger = logging.getLogger(__name__)


class LogWriter:
    """The single writer of a log directory. Not thread-safe: use it from one thread.

    Open with ``LogWriter.open``; ``append`` records with consecutive sequence
    numbers, ``commit`` them, release acknowledgements up to ``durable_seq``.
    """

    def __init__(self, directory: Path, config: LogConfig, io: SysIO, lock_fd: int) -> None:
        """Use ``LogWriter.open``."""
        self._directory = directory
        self._config = config
        self._io = io
        self._lock_fd = lock_fd
        self._fd = -1
        self._marker_fd = -1
        self._path = directory
        self._durable_offset = SEGMENT_HEADER_LENGTH
        self._durable_seq = 0
        self._last_seq = 0
        self._pending = bytearray()
        self._pending_ends: list[int] = []
        self._needs_repair = False
        self._rotate_next = False
        self._published_seq = -1
        #: Readers see the log up to this sequence at most (None: up to durable_seq).
        self._reader_limit: int | None = None
        self._hold_readers = False
        #: The frames of the last durable records, one piece per commit unit:
        #: (first seq, last seq, frames), at most ``_recent_max`` bytes (0: none kept).
        self._recent: deque[tuple[int, int, bytes]] = deque()
        self._recent_bytes = 0
        self._recent_max = 0
        self._failure: LogUnavailable | None = None
        self._closed = False
        self._commits = 0
        self._syncs = 0
        self._bytes_written = 0
        self._segments_created = 0
        self._failures = 0
        self._torn_bytes = 0

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        config: LogConfig | None = None,
        *,
        start_seq: int = 1,
        io: SysIO | None = None,
        hold_readers: bool = False,
    ) -> LogWriter:
        """Open (or create) the log in ``directory`` and recover its tail.

        Every segment is checked (header, checksums, sequence continuity). A torn
        tail of the last segment is truncated and logged as a warning; any other
        damage raises ``LogCorrupt`` naming segment, offset and sequence. What the
        log holds after opening is synced, so ``durable_seq == last_seq``.
        ``start_seq`` is the first sequence of a new, empty log (ignored otherwise).
        ``hold_readers``: readers go on seeing only what they saw before (the
        ``committed`` marker as it was), until ``limit_readers`` lets them further.
        Raises ``LogBusy`` if another writer has the directory, ``LogUnavailable``
        if the disk refuses the set-up.
        """
        path = Path(directory)
        config = config if config is not None else LogConfig()
        io = io if io is not None else SysIO()
        if type(start_seq) is not int or not 1 <= start_seq <= MAX_SEQ:
            raise SequenceError(f"start_seq must be from 1 to {MAX_SEQ}; got {start_seq!r}")
        try:
            created = not path.is_dir()
            path.mkdir(parents=True, exist_ok=True)
            if created:
                io.fsync_dir(path.parent)
            lock_fd = lock_directory(path)
        except OSError as exc:
            raise LogUnavailable("create log directory", path, exc, 0) from exc
        writer = cls(path, config, io, lock_fd)
        writer._hold_readers = hold_readers
        try:
            writer._recover(start_seq)
        except BaseException:
            writer._close_fds()
            raise
        return writer

    def _recover(self, start_seq: int) -> None:
        self._remove_temporary_files()
        marker = self._read_marker()
        with self._io_step("read", self._directory):
            segments = list_segments(self._directory)
        if not segments:
            if marker is not None and marker.seq > 0:
                raise LogCorrupt(
                    self._directory / COMMITTED_FILE,
                    0,
                    f"no segment file in {self._directory}, but records up to seq "
                    f"{marker.seq} were committed",
                )
            self._durable_seq = self._last_seq = start_seq - 1
            if self._hold_readers:
                self._reader_limit = self._durable_seq
            self._create_segment(start_seq)
        else:
            with self._io_step("read", self._directory):
                check = check_log(segments)
            last = check.segments[-1]
            if (
                marker is not None
                and marker.flags & COMMITTED_SYNCED
                and marker.seq > last.last_seq
            ):
                raise missing_committed(last, check.torn, marker.seq)
            self._durable_seq = self._last_seq = last.last_seq
            if self._hold_readers:
                self._reader_limit = min(marker.seq if marker is not None else 0, last.last_seq)
            self._adopt_segment(last)
            if check.torn is not None:
                torn = check.torn
                self._torn_bytes = torn.file_bytes - torn.offset
                logger.warning(
                    "log torn tail truncated: segment=%s offset=%d dropped_bytes=%d "
                    "last_seq=%d reason=%s",
                    torn.path,
                    torn.offset,
                    self._torn_bytes,
                    torn.last_seq,
                    torn.reason,
                )
        self._publish_committed(initial=True)

    def _read_marker(self) -> SeqFile | None:
        """The ``committed`` marker a previous writer left (None if absent or damaged:
        it is only a cross-check, and a power cut may tear it)."""
        path = self._directory / COMMITTED_FILE
        try:
            return read_seq_file(path, COMMITTED_MAGIC)
        except FormatError as exc:
            logger.warning("log committed marker ignored: path=%s reason=%s", path, exc)
        except OSError as exc:
            raise LogUnavailable("read", path, exc, 0) from exc
        return None

    def _adopt_segment(self, last: SegmentScan) -> None:
        """Make the last segment current: truncate a torn tail, sync what it holds."""
        self._path = last.path
        self._durable_offset = last.end_offset
        if self._config.max_record_bytes > last.max_record_bytes:
            if last.last_seq < last.first_seq:  # empty: give it the larger limit
                self._create_segment(last.first_seq)
                return
            # Its header promises readers a smaller limit: start a new segment.
            self._rotate_next = True
        with self._io_step("open", self._path):
            self._fd = self._io.open(self._path, os.O_WRONLY | os.O_APPEND)
        with self._io_step("truncate", self._path):
            if last.file_bytes != last.end_offset:
                self._io.ftruncate(self._fd, last.end_offset)
            # A writer killed before its fsync leaves records in the page cache only.
            self._io.fsync(self._fd)
        with self._io_step("fsync directory", self._directory):
            self._io.fsync_dir(self._directory)

    def _remove_temporary_files(self) -> None:
        """Delete what a writer killed mid-rotation left behind (never a segment)."""
        committed_tmp = COMMITTED_FILE + TMP_SUFFIX
        with self._io_step("clean up", self._directory), os.scandir(self._directory) as entries:
            for entry in entries:
                is_segment_tmp = entry.name.endswith(SEGMENT_SUFFIX + TMP_SUFFIX)
                if is_segment_tmp or entry.name == committed_tmp:
                    logger.info("log removed temporary file: path=%s", entry.path)
                    self._io.unlink(Path(entry.path))

    # ------------------------------------------------------------------ state

    @property
    def directory(self) -> Path:
        """The log directory."""
        return self._directory

    @property
    def config(self) -> LogConfig:
        """The settings this writer was opened with."""
        return self._config

    @property
    def last_seq(self) -> int:
        """Sequence of the last appended record (durable or pending)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """Every record up to this sequence is durable at the configured level."""
        return self._durable_seq

    @property
    def available(self) -> bool:
        """False from a failed commit until a commit succeeds."""
        return self._failure is None

    @property
    def failure(self) -> LogUnavailable | None:
        """The error of the last failed commit while the log is unavailable."""
        return self._failure

    @property
    def segment_path(self) -> Path:
        """The segment being written (the newest one)."""
        return self._path

    def stats(self) -> LogStats:
        """A snapshot of the counters."""
        return LogStats(
            last_seq=self._last_seq,
            durable_seq=self._durable_seq,
            pending_records=len(self._pending_ends),
            pending_bytes=len(self._pending),
            commits=self._commits,
            syncs=self._syncs,
            bytes_written=self._bytes_written,
            segments_created=self._segments_created,
            failures=self._failures,
            torn_tail_bytes_truncated=self._torn_bytes,
        )

    # ------------------------------------------------------------------ writing

    def append(self, seq: int, rtype: int, payload: bytes | bytearray | memoryview) -> None:
        """Buffer one record; ``commit`` writes it. ``seq`` must be ``last_seq + 1``.

        Raises ``SequenceError``, ``ValueError`` (record type outside 1..65535),
        ``RecordTooLarge`` or ``LogFull``; the record is not appended then.
        """
        self._check_open()
        if type(seq) is not int or seq != self._last_seq + 1:
            raise SequenceError(f"append seq={seq!r}: expected seq {self._last_seq + 1}")
        if seq > MAX_SEQ:
            raise SequenceError(f"append seq={seq}: beyond the largest sequence {MAX_SEQ}")
        if type(rtype) is not int or not 1 <= rtype <= MAX_RTYPE:
            raise ValueError(f"append seq={seq}: record type must be 1..{MAX_RTYPE}; got {rtype!r}")
        size = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
        if size > self._config.max_record_bytes:
            raise RecordTooLarge(
                f"append seq={seq}: payload of {size} bytes exceeds max_record_bytes "
                f"{self._config.max_record_bytes}"
            )
        if len(self._pending) + frame_length(size) > self._config.max_pending_bytes:
            raise LogFull(
                f"append seq={seq}: {len(self._pending)} bytes pending, the record needs "
                f"{frame_length(size)}, max_pending_bytes is {self._config.max_pending_bytes}; "
                "commit first"
            )
        if isinstance(payload, memoryview):
            payload = payload.cast("B")
        # With fsync=always each record is synced on its own: a batch of one.
        batch_index = 0 if self._config.fsync is FsyncPolicy.ALWAYS else len(self._pending_ends)
        append_frame(self._pending, seq, rtype, batch_index, payload)
        self._pending_ends.append(len(self._pending))
        self._last_seq = seq

    @property
    def next_batch_index(self) -> int:
        """``batch_index`` of the next record appended (its position in the pending
        batch; 0 for every record with ``fsync=always``)."""
        return 0 if self._config.fsync is FsyncPolicy.ALWAYS else len(self._pending_ends)

    def append_framed(
        self,
        frames: bytes | bytearray | memoryview | np.ndarray,
        ends: Sequence[int] | np.ndarray,
        first_seq: int,
    ) -> None:
        """Buffer records framed already (by ``persistence.frames``), as ``append``
        would have framed them: consecutive sequences from ``first_seq``, batch
        indexes from ``next_batch_index``. ``ends`` are the frames' end offsets in
        ``frames``. The frames' contents are trusted; their sizes and the sequence
        are checked as ``append`` checks them, and nothing is buffered on an error.
        """
        self._check_open()
        e = np.asarray(ends, dtype=np.int64)
        count = int(e.shape[0])
        if count == 0:
            return
        if type(first_seq) is not int or first_seq != self._last_seq + 1:
            raise SequenceError(f"append seq={first_seq!r}: expected seq {self._last_seq + 1}")
        if first_seq + count - 1 > MAX_SEQ:
            raise SequenceError(f"append seq={first_seq + count - 1}: beyond {MAX_SEQ}")
        raw = frames.data if isinstance(frames, np.ndarray) else frames
        view = memoryview(raw).cast("B")
        total = int(e[-1])
        if total > view.nbytes:
            raise ValueError(f"append_framed: frames end at {total}, buffer has {view.nbytes}")
        payloads = np.diff(e, prepend=0) - FRAME_HEADER_LENGTH
        if (payloads < 0).any() or (e % FRAME_ALIGN).any():
            raise ValueError("append_framed: frame ends must rise by whole frames")
        if int(payloads.max()) > self._config.max_record_bytes:
            i = int(np.argmax(payloads > self._config.max_record_bytes))
            raise RecordTooLarge(
                f"append seq={first_seq + i}: payload of {int(payloads[i])} bytes exceeds "
                f"max_record_bytes {self._config.max_record_bytes}"
            )
        if len(self._pending) + total > self._config.max_pending_bytes:
            raise LogFull(
                f"append seq={first_seq}: {len(self._pending)} bytes pending, {count} records "
                f"need {total}, max_pending_bytes is {self._config.max_pending_bytes}; "
                "commit first"
            )
        base = len(self._pending)
        self._pending += view[:total]
        self._pending_ends.extend((e + base).tolist())
        self._last_seq = first_seq + count - 1

    def commit(self) -> int:
        """Write and sync the pending records; returns ``durable_seq``.

        Raises ``LogUnavailable`` if the disk fails; ``durable_seq`` then tells what
        is durable (with ``fsync=always`` a prefix of the batch may be). Call again to
        retry: the pending records are kept and rewritten.
        """
        self._check_open()
        try:
            if self._needs_repair:
                self._repair()
            self._write_pending()
            if self._published_seq != self._visible_seq():
                self._publish_committed()
        except LogUnavailable as failure:
            if self._published_seq != self._visible_seq():  # fsync=always: a synced prefix
                with contextlib.suppress(LogUnavailable):
                    self._publish_committed()
            self._failures += 1
            if self._failure is None or str(self._failure) != str(failure):
                logger.error(
                    "log unavailable: operation=%s path=%s errno=%s durable_seq=%d "
                    "pending_records=%d failures=%d",
                    failure.operation,
                    failure.path,
                    failure.errno,
                    self._durable_seq,
                    len(self._pending_ends),
                    self._failures,
                )
            self._failure = failure
            raise
        if self._failure is not None:
            logger.warning(
                "log available again: durable_seq=%d failures=%d", self._durable_seq, self._failures
            )
            self._failure = None
        self._commits += 1
        return self._durable_seq

    def _write_pending(self) -> None:
        """Write the pending records in units (the whole batch, or one record each for
        ``fsync=always``), syncing each unit; drops what became durable."""
        count = len(self._pending_ends)
        done_records = done_bytes = 0
        first_seq = self._durable_seq + 1
        per_record = self._config.fsync is FsyncPolicy.ALWAYS
        sync = self._config.fsync is not FsyncPolicy.NONE
        try:
            while done_records < count:
                end_record = done_records + 1 if per_record else count
                end_byte = self._pending_ends[end_record - 1]
                unit_bytes = end_byte - done_bytes
                if self._rotate_next or (
                    self._durable_offset > SEGMENT_HEADER_LENGTH
                    and self._durable_offset + unit_bytes > self._config.segment_bytes
                ):
                    self._create_segment(self._durable_seq + 1)
                self._needs_repair = True  # from here the file may hold non-durable bytes
                with self._io_step("write", self._path):
                    write_all(self._io, self._fd, self._pending, done_bytes, end_byte)
                self._bytes_written += unit_bytes
                if sync:
                    with self._io_step("fdatasync", self._path):
                        self._io.fdatasync(self._fd)
                    self._syncs += 1
                self._needs_repair = False
                self._durable_offset += unit_bytes
                self._durable_seq += end_record - done_records
                done_records, done_bytes = end_record, end_byte
        finally:
            if done_records:
                if self._recent_max:
                    self._keep(first_seq, first_seq + done_records - 1, done_bytes)
                del self._pending[:done_bytes]
                ends = self._pending_ends
                self._pending_ends = [end - done_bytes for end in ends[done_records:]]

    def keep_recent(self, max_bytes: int) -> None:
        """Keep the frames of the last durable records in memory, up to ``max_bytes``
        (0: none), for ``recent_frames``."""
        self._recent_max = max_bytes
        while self._recent and self._recent_bytes > max_bytes:
            self._recent_bytes -= len(self._recent.popleft()[2])

    def recent_frames(self, from_seq: int) -> list[tuple[int, int, bytes]] | None:
        """The frames of the durable records from ``from_seq`` on, as written (one
        piece per commit: first seq, last seq, frames), when memory still holds them
        all and ``from_seq`` starts a piece; None otherwise (read the log). A primary
        sends what it just made durable to its standbys without reading it back."""
        if from_seq > self._durable_seq:
            return []
        # From the newest back: a standby that keeps up wants the last piece or two.
        found: list[tuple[int, int, bytes]] = []
        for piece in reversed(self._recent):
            found.append(piece)
            if piece[0] <= from_seq:
                found.reverse()
                return found if piece[0] == from_seq else None
        return None

    def _keep(self, first_seq: int, last_seq: int, nbytes: int) -> None:
        self._recent.append((first_seq, last_seq, bytes(self._pending[:nbytes])))
        self._recent_bytes += nbytes
        while self._recent_bytes > self._recent_max and len(self._recent) > 1:
            self._recent_bytes -= len(self._recent.popleft()[2])

    def _repair(self) -> None:
        """After a failure: reopen the segment, cut it back to the durable offset, sync.

        The old descriptor is not reused and nothing in the page cache beyond the
        durable offset is trusted.
        """
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):  # close may report the same error again
                self._io.close(fd)
        with self._io_step("reopen", self._path):
            self._fd = self._io.open(self._path, os.O_WRONLY | os.O_APPEND)
        with self._io_step("truncate", self._path):
            self._io.ftruncate(self._fd, self._durable_offset)
            self._io.fsync(self._fd)
        with self._io_step("fsync directory", self._directory):
            self._io.fsync_dir(self._directory)
        self._needs_repair = False

    def _create_segment(self, first_seq: int) -> None:
        """Start segment ``first_seq``: header into a temporary file, fsync, rename,
        fsync the directory. The current segment must be fully durable."""
        final = self._directory / segment_name(first_seq)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        if self._fd >= 0 and self._config.fsync is FsyncPolicy.NONE:
            # A closed segment must be whole even after a power cut: only the last
            # segment may have a torn tail.
            with self._io_step("fdatasync", self._path):
                self._io.fdatasync(self._fd)
        with self._io_step("create segment", tmp):
            fd = self._io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            try:
                header = encode_segment_header(first_seq, self._config.max_record_bytes)
                write_all(self._io, fd, header)
                self._io.fsync(fd)
                self._io.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    self._io.close(fd)
                with contextlib.suppress(OSError):
                    self._io.unlink(tmp)
                raise
        if self._fd >= 0:
            with contextlib.suppress(OSError):  # every byte in it is durable already
                self._io.close(self._fd)
        self._fd, self._path = fd, final
        self._durable_offset = SEGMENT_HEADER_LENGTH
        self._rotate_next = False
        self._segments_created += 1
        self._needs_repair = True  # until the directory entry is durable
        with self._io_step("fsync directory", self._directory):
            self._io.fsync_dir(self._directory)
        self._needs_repair = False
        logger.info("log segment created: path=%s first_seq=%d", final, first_seq)

    def _visible_seq(self) -> int:
        limit = self._reader_limit
        return self._durable_seq if limit is None else min(limit, self._durable_seq)

    @property
    def reader_limit(self) -> int | None:
        """How far readers may read at most (None: up to ``durable_seq``)."""
        return self._reader_limit

    def limit_readers(self, seq: int | None) -> None:
        """Let readers see the log up to ``seq`` at most (never past ``durable_seq``;
        None: up to ``durable_seq``): a primary in sync replication shows its drainer
        and feed only what its standbys hold, so that history and market data never
        show a record a failover could take back. Publishes at once (one ``pwrite``);
        raises ``LogUnavailable`` if that fails (the next commit publishes again)."""
        self._check_open()
        self._reader_limit = seq
        if self._published_seq != self._visible_seq():
            self._publish_committed()

    def _publish_committed(self, *, initial: bool = False) -> None:
        """Tell readers how far the log is durable: the ``committed`` file, created
        atomically at open, then updated in place (``pwrite``) after each commit.

        Flagged ``COMMITTED_SYNCED`` when the records were synced (at open, and with
        ``fsync`` other than ``none``): the next open then refuses a log that ends
        before it."""
        path = self._directory / COMMITTED_FILE
        synced = initial or self._config.fsync is not FsyncPolicy.NONE
        flags = COMMITTED_SYNCED if synced else 0
        visible = self._visible_seq()
        with self._io_step("update", path):
            if initial:
                write_seq_file_atomically(self._io, path, COMMITTED_MAGIC, visible, flags)
            if self._marker_fd < 0:
                self._marker_fd = self._io.open(path, os.O_WRONLY)
            data = encode_seq_file(COMMITTED_MAGIC, visible, flags)
            try:
                if self._io.pwrite(self._marker_fd, data, 0) != len(data):
                    raise OSError(5, "short write of the committed marker")
            except OSError:
                fd, self._marker_fd = self._marker_fd, -1
                with contextlib.suppress(OSError):
                    self._io.close(fd)
                raise
        self._published_seq = visible

    @contextlib.contextmanager
    def _io_step(self, operation: str, path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise LogUnavailable(operation, path, exc, self._durable_seq) from exc

    # ------------------------------------------------------------------ retention

    def prune(self, snapshot_seq: int) -> list[Path]:
        """Delete the oldest segments that nobody needs; returns the deleted paths.

        A segment goes only if every record in it is below both ``snapshot_seq``
        (the sequence of the newest valid snapshot) and, for every registered
        consumer, its confirmed sequence + 1. The segment being written is never
        deleted, and only a prefix of the log is (no holes).
        """
        self._check_open()
        if type(snapshot_seq) is not int or not 0 <= snapshot_seq <= self._durable_seq:
            raise ValueError(
                f"prune: snapshot_seq must be from 0 to durable_seq {self._durable_seq}; "
                f"got {snapshot_seq!r}"
            )
        with self._io_step("prune", self._directory):
            return prune_segments(self._directory, self._io, snapshot_seq)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Sync and close. Records appended and not committed are dropped (logged)."""
        if self._closed:
            return
        if self._pending_ends:
            logger.warning(
                "log writer closed with uncommitted records: count=%d first_seq=%d",
                len(self._pending_ends),
                self._durable_seq + 1,
            )
        if self._fd >= 0 and self._failure is None and not self._needs_repair:
            try:
                self._io.fsync(self._fd)
            except OSError as exc:
                logger.error("log fsync at close failed: path=%s error=%s", self._path, exc)
        self._close_fds()

    def _close_fds(self) -> None:
        self._closed = True
        for fd in (self._fd, self._marker_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    self._io.close(fd)
        self._fd = self._marker_fd = -1
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"log writer of {self._directory} is closed")

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
