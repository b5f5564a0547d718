"""Reading the append log from any process: from a sequence, and following it.

A reader returns only committed records: those up to the sequence the writer
published in the ``committed`` file after making them durable. It never looks at
bytes past them, so a commit in progress (a partial frame, or a batch whose sync
failed and that the writer will truncate and rewrite) is invisible: the reader
waits for it instead of failing. Damage to a committed record raises
``LogCorrupt``; a record already deleted by retention raises ``SeqPruned``.

Reading uses ``pread`` into a bounded buffer (never ``mmap``, which turns a file
truncated under the reader into SIGBUS). Segment files that retention deletes stay
readable through the open descriptor until the reader moves on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import numpy as np

from core.errors import ClosedError
from persistence._segments import list_segments
from persistence._seqfile import read_seq_file
from persistence.frames import scan_records
from persistence.log_errors import LogCorrupt, SeqPruned
from persistence.log_format import (
    COMMITTED_FILE,
    COMMITTED_MAGIC,
    FRAME_HEADER_LENGTH,
    MAX_SEQ,
    SEGMENT_HEADER_LENGTH,
    FormatError,
    decode_frame_header,
    decode_segment_header,
    frame_crc,
    frame_length,
    frame_problem,
    segment_name,
)

#: Bytes read ahead per ``pread``; a larger record is read whole, once.
READ_CHUNK_BYTES = 256 << 10
#: Bytes read ahead when many records are asked for, checked in one kernel call.
RUN_CHUNK_BYTES = 1 << 20
#: Fewer records than this asked for are read one at a time (the kernel call costs).
RUN_MIN_RECORDS = 8
DEFAULT_POLL_INTERVAL_S = 0.001


class Record(NamedTuple):
    """One log record."""

    seq: int
    rtype: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class RecordRun:
    """Consecutive committed records whose frames lie whole in ``data``: record i has
    sequence ``first_seq + i``, its frame starts at ``starts[i]`` (8-aligned) and its
    payload, ``lengths[i]`` bytes of type ``types[i]``, follows the frame header."""

    first_seq: int
    data: bytes
    starts: np.ndarray  #: int64
    lengths: np.ndarray  #: int64
    types: np.ndarray  #: int64

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    @property
    def last_seq(self) -> int:
        """The sequence of the last record."""
        return self.first_seq + len(self) - 1

    def payload(self, i: int) -> bytes:
        """Record i's payload (a copy)."""
        at = int(self.starts[i]) + FRAME_HEADER_LENGTH
        return self.data[at : at + int(self.lengths[i])]

    def records(self) -> list[Record]:
        """The records, each with a copy of its payload."""
        data = self.data
        return [
            Record(
                self.first_seq + i,
                rtype,
                data[s + FRAME_HEADER_LENGTH : s + FRAME_HEADER_LENGTH + n],
            )
            for i, (s, n, rtype) in enumerate(
                zip(self.starts.tolist(), self.lengths.tolist(), self.types.tolist(), strict=True)
            )
        ]

    @classmethod
    def of(cls, record: Record) -> RecordRun:
        """A run of one record, its frame rebuilt (the header's bytes are zero)."""
        size = FRAME_HEADER_LENGTH + len(record.payload)
        data = bytes(FRAME_HEADER_LENGTH) + record.payload + bytes(-size % 8)
        one = np.zeros(1, dtype=np.int64)
        return cls(
            record.seq, data, one, np.array([len(record.payload)], dtype=np.int64),
            np.array([record.rtype], dtype=np.int64),
        )  # fmt: skip


def read_committed_seq(directory: str | os.PathLike[str]) -> int:
    """The sequence up to which the writer of ``directory`` has made the log durable.

    0 if no writer has opened the log yet.
    """
    path = Path(directory) / COMMITTED_FILE
    try:
        committed = read_seq_file(path, COMMITTED_MAGIC)
    except FormatError as exc:
        raise LogCorrupt(path, 0, str(exc)) from None
    return 0 if committed is None else committed.seq


class LogReader:
    """Reads committed records of the log in ``directory``, in sequence order.

    One reader serves one consumer: do not interleave two ``read``/``follow``
    iterations on the same reader. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        committed: Callable[[], int] | None = None,
    ) -> None:
        """``committed``: how far the log may be read, instead of the ``committed``
        file (the writer's own process, which knows its durable sequence: a primary
        shipping records its readers may not see yet)."""
        self._directory = Path(directory)
        self._committed = committed
        if not self._directory.is_dir():
            raise FileNotFoundError(f"log directory {self._directory} does not exist")
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._sleep = sleep
        self._fd = -1
        self._path = self._directory
        self._max_record_bytes = 0
        self._offset = 0
        self._next_seq = 0  # 0: not positioned
        self._prev_batch_index = -1
        self._buf = b""
        self._buf_start = 0
        self._closed = False

    @property
    def directory(self) -> Path:
        """The log directory."""
        return self._directory

    def committed_seq(self) -> int:
        """The last committed sequence (0 if none)."""
        if self._committed is not None:
            return self._committed()
        return read_committed_seq(self._directory)

    def first_seq(self) -> int | None:
        """The oldest sequence still in the log (None if there is no segment)."""
        segments = list_segments(self._directory)
        return segments[0].first_seq if segments else None

    def read(self, from_seq: int, *, limit: int | None = None) -> Iterator[Record]:
        """Committed records from ``from_seq`` on, without waiting; at most ``limit``.

        Yields nothing if ``from_seq`` is past the committed sequence.
        """
        self._check_open()
        if type(from_seq) is not int or not 1 <= from_seq <= MAX_SEQ:
            raise ValueError(f"from_seq must be from 1 to {MAX_SEQ}; got {from_seq!r}")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"limit must be a non-negative integer; got {limit!r}")
        return self._read(from_seq, limit)

    def read_runs(self, from_seq: int, *, limit: int) -> list[RecordRun]:
        """Committed records from ``from_seq`` on, at most ``limit``, as runs of
        frames that lie whole in one buffer (``RecordRun``): a consumer that decodes
        frames in bulk reads them there without a ``Record`` per record. [] when
        ``from_seq`` is past the committed sequence."""
        self._check_open()
        if type(from_seq) is not int or not 1 <= from_seq <= MAX_SEQ:
            raise ValueError(f"from_seq must be from 1 to {MAX_SEQ}; got {from_seq!r}")
        if type(limit) is not int or limit < 0:
            raise ValueError(f"limit must be a non-negative integer; got {limit!r}")
        return list(self._runs(from_seq, limit))

    def _read(self, from_seq: int, limit: int | None) -> Iterator[Record]:
        for run in self._runs(from_seq, limit):
            yield from run.records()

    def _runs(self, from_seq: int, limit: int | None) -> Iterator[RecordRun]:
        committed = self.committed_seq()
        # Bytes read before ``committed`` was may belong to a commit then in progress.
        self._buf = b""
        count = 0
        while from_seq <= committed and (limit is None or count < limit):
            if self._next_seq != from_seq:
                self._position(from_seq)
            wanted = committed - from_seq + 1 if limit is None else limit - count
            run = self._next_run(min(wanted, committed - from_seq + 1))
            if run is None:  # at a segment's end, or a frame to be explained: one alone
                run = RecordRun.of(self._next_record())
            count += len(run)
            from_seq += len(run)
            yield run

    def _next_run(self, most: int) -> RecordRun | None:
        """Up to ``most`` records from ``_next_seq`` that lie whole in the bytes read
        ahead (read more if fewer than a chunk are there), checked at once in numba
        (``scan_records``: what ``_next_record`` checks); None when the next one is not
        whole there or not valid, for ``_next_record`` to handle."""
        if most < RUN_MIN_RECORDS:
            return None
        start = self._offset - self._buf_start
        if start < 0 or len(self._buf) - start < RUN_CHUNK_BYTES // 2:
            self._buf = os.pread(self._fd, RUN_CHUNK_BYTES, self._offset)
            self._buf_start = self._offset
            start = 0
        usable = (len(self._buf) - start) // 8 * 8
        if usable < FRAME_HEADER_LENGTH:
            return None
        buf = np.frombuffer(self._buf, dtype=np.uint8, count=usable, offset=start)
        cap = min(most, usable // FRAME_HEADER_LENGTH)
        starts = np.empty(cap, dtype=np.int64)
        lengths = np.empty(cap, dtype=np.int64)
        types = np.empty(cap, dtype=np.int64)
        pos, n, last_index = scan_records(
            buf, buf.view(np.int64), 0, usable, self._next_seq, self._max_record_bytes,
            self._prev_batch_index, starts, lengths, types,
        )  # fmt: skip
        if not n:
            return None
        run = RecordRun(self._next_seq, self._buf, starts[:n] + start, lengths[:n], types[:n])
        self._offset += int(pos)
        self._next_seq += n
        self._prev_batch_index = int(last_index)
        return run

    def follow(self, from_seq: int, *, timeout_s: float | None) -> Iterator[Record]:
        """Committed records from ``from_seq`` on, waiting for new ones as they commit.

        Ends when no new record has come for ``timeout_s`` seconds (None: never), so
        that a duty loop can do other work and call again with the next sequence.
        Handles segment rotation; polls every ``poll_interval_s``.
        """
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0 or None; got {timeout_s!r}")
        seq = from_seq
        deadline = None if timeout_s is None else self._clock() + timeout_s
        while True:
            progressed = False
            for record in self.read(seq):
                progressed = True
                seq = record.seq + 1
                yield record
            now = self._clock()
            if progressed and timeout_s is not None:
                deadline = now + timeout_s
            elif deadline is not None and now >= deadline:
                return
            self._sleep(self._poll_interval_s)

    # ------------------------------------------------------------------ cursor

    def _position(self, seq: int) -> None:
        """Open the segment holding ``seq`` and skip to it (``seq`` is committed)."""
        segments = list_segments(self._directory)
        holding = [segment for segment in segments if segment.first_seq <= seq]
        if not holding:
            raise self._pruned(seq, segments[0].first_seq if segments else None)
        if not self._open_segment(holding[-1].path):
            raise self._pruned(seq, self.first_seq())
        while self._next_seq < seq:
            self._next_record()

    def _open_segment(self, path: Path) -> bool:
        """Make ``path`` the current segment; False if it no longer exists."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            header = decode_segment_header(os.pread(fd, SEGMENT_HEADER_LENGTH, 0))
        except FormatError as exc:
            os.close(fd)
            raise LogCorrupt(path, 0, str(exc)) from None
        except BaseException:
            os.close(fd)
            raise
        self._close_segment()
        self._fd, self._path = fd, path
        self._max_record_bytes = header.max_record_bytes
        self._offset = SEGMENT_HEADER_LENGTH
        self._next_seq = header.first_seq
        self._prev_batch_index = -1
        self._buf = b""
        return True

    def _next_record(self) -> Record:
        """The record ``_next_seq`` (committed, so it must be complete and valid)."""
        head = self._bytes(self._offset, FRAME_HEADER_LENGTH)
        if len(head) == 0:  # end of segment: the record starts the next one
            path = self._directory / segment_name(self._next_seq)
            seq, offset, old_path = self._next_seq, self._offset, self._path
            if not self._open_segment(path):
                first = self.first_seq()
                if first is not None and first > seq:
                    raise self._pruned(seq, first)
                raise LogCorrupt(
                    old_path,
                    offset,
                    f"committed record {seq} is neither in this segment nor in {path.name}",
                    expected_seq=seq,
                    last_good_seq=seq - 1,
                )
            head = self._bytes(self._offset, FRAME_HEADER_LENGTH)
        if len(head) < FRAME_HEADER_LENGTH:
            raise self._corrupt(f"committed record header cut short: {len(head)} bytes")
        header = decode_frame_header(head, 0)
        if header.payload_length > self._max_record_bytes:
            raise self._corrupt(
                f"record length {header.payload_length} exceeds max_record_bytes "
                f"{self._max_record_bytes}"
            )
        length = frame_length(header.payload_length)
        frame = self._bytes(self._offset, length)
        if len(frame) < length:
            raise self._corrupt(f"committed record cut short: {len(frame)} of {length} bytes")
        if frame_crc(frame, 0, length) != header.crc:
            raise self._corrupt("checksum mismatch")
        problem = frame_problem(frame, 0, header, self._next_seq, self._prev_batch_index)
        if problem is not None:
            raise self._corrupt(problem)
        record = Record(
            header.seq,
            header.rtype,
            bytes(frame[FRAME_HEADER_LENGTH : FRAME_HEADER_LENGTH + header.payload_length]),
        )
        self._offset += length
        self._next_seq += 1
        self._prev_batch_index = header.batch_index
        return record

    def _bytes(self, offset: int, count: int) -> memoryview:
        """Up to ``count`` bytes of the segment at ``offset`` (fewer at end of file)."""
        start = offset - self._buf_start
        if start < 0 or start + count > len(self._buf):
            self._buf = os.pread(self._fd, max(count, READ_CHUNK_BYTES), offset)
            self._buf_start = offset
            start = 0
        return memoryview(self._buf)[start : start + count]

    def _corrupt(self, reason: str) -> LogCorrupt:
        return LogCorrupt(
            self._path,
            self._offset,
            reason,
            expected_seq=self._next_seq,
            last_good_seq=self._next_seq - 1,
        )

    def _pruned(self, seq: int, first: int | None) -> SeqPruned:
        self._next_seq = 0
        oldest = "no segment" if first is None else f"the oldest segment starts at {first}"
        return SeqPruned(f"seq {seq} is no longer in the log {self._directory}: {oldest}")

    # ------------------------------------------------------------------ closing

    def _close_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._next_seq = 0

    def close(self) -> None:
        """Close the open segment; the reader cannot be used afterwards."""
        self._close_segment()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"log reader of {self._directory} is closed")

    def __enter__(self) -> LogReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
