"""Finding, scanning and checking segment files; telling a torn tail from corruption.

Used by the writer when it opens the log (and by tools that verify a log). Reading
is done through a read-only ``mmap``: the page cache holds the bytes, so checking a
segment allocates no memory in proportion to its size.

Torn tail versus corruption. Scanning the last segment stops at the first frame that
is not valid. If that frame is damaged in a way a torn write explains (header cut
short, length past the end of the file or over the limit, checksum mismatch), the
rest of the file is searched for valid frames. A commit batch is written only after
the previous one was durable (``fsync = always | batch``), and every frame carries
its position in its batch, so a valid frame of a *later* batch proves that the
damaged frame had been durable: that is corruption, and the log refuses to start.
Otherwise the damage lies in the last, unsynced batch: a torn tail, truncated.
Damage anywhere in a segment that is not the last one is always corruption.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persistence.frames import fast_forward
from persistence.log_errors import LogCorrupt
from persistence.log_format import (
    FRAME_ALIGN,
    FRAME_HEADER_LENGTH,
    SEGMENT_HEADER_LENGTH,
    FormatError,
    decode_frame_header,
    decode_segment_header,
    frame_crc,
    frame_length,
    frame_problem,
    parse_segment_name,
)

#: Words (8 bytes) examined per numpy pass when searching a damaged tail.
_SEARCH_CHUNK_WORDS = 1 << 20


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """A file in the log directory whose name is a segment name."""

    path: Path
    first_seq: int


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What a scan found in one segment.

    ``end_offset`` is the end of the last valid record (``SEGMENT_HEADER_LENGTH`` if
    there is none), ``last_seq`` its sequence (``first_seq - 1`` if there is none).
    ``problem`` says why scanning stopped before ``file_bytes`` (None: it did not);
    ``tearable`` is True when a torn write can explain the problem.
    """

    path: Path
    first_seq: int
    max_record_bytes: int
    last_seq: int
    end_offset: int
    file_bytes: int
    problem: str | None
    tearable: bool


@dataclass(frozen=True, slots=True)
class TornTail:
    """The unsynced end of the last segment, to be truncated at ``offset``."""

    path: Path
    offset: int
    file_bytes: int
    reason: str
    last_seq: int


@dataclass(frozen=True, slots=True)
class LogCheck:
    """A consistent log: its segments in order, and the torn tail found, if any."""

    segments: list[SegmentScan]
    torn: TornTail | None

    @property
    def last_seq(self) -> int:
        """Sequence of the last valid record (the first segment's first_seq - 1 if none)."""
        return self.segments[-1].last_seq


def list_segments(directory: Path) -> list[SegmentFile]:
    """The segment files of ``directory``, oldest first."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            first_seq = parse_segment_name(entry.name)
            if first_seq is not None and entry.is_file(follow_symlinks=False):
                found.append(SegmentFile(Path(entry.path), first_seq))
    found.sort(key=lambda segment: segment.first_seq)
    return found


def scan_segment(segment: SegmentFile) -> SegmentScan:
    """Read and check every record of one segment (header problems raise LogCorrupt)."""
    with open(segment.path, "rb") as file:
        file_bytes = os.fstat(file.fileno()).st_size
        if file_bytes < SEGMENT_HEADER_LENGTH:
            raise LogCorrupt(
                segment.path,
                0,
                f"segment header cut short: {file_bytes} of {SEGMENT_HEADER_LENGTH} bytes",
            )
        with mmap.mmap(file.fileno(), file_bytes, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return _scan_mapped(segment, view, file_bytes)
            finally:
                view.release()


def check_log(segments: list[SegmentFile]) -> LogCheck:
    """Scan every segment and check that they form one log; raise LogCorrupt if not.

    ``segments`` must not be empty. Returns the scans and the torn tail of the last
    segment, if it has one (the caller truncates it).
    """
    scans: list[SegmentScan] = []
    for number, segment in enumerate(segments):
        scan = scan_segment(segment)
        is_last = number == len(segments) - 1
        if scans and scan.first_seq != scans[-1].last_seq + 1:
            raise LogCorrupt(
                scan.path,
                0,
                f"segment starts at seq {scan.first_seq} but the previous segment "
                f"{scans[-1].path.name} ends at seq {scans[-1].last_seq}",
                expected_seq=scans[-1].last_seq + 1,
                last_good_seq=scans[-1].last_seq,
            )
        if not is_last and scan.problem is None and scan.last_seq < scan.first_seq:
            raise LogCorrupt(scan.path, SEGMENT_HEADER_LENGTH, "empty segment before the last")
        if scan.problem is not None and not is_last:
            raise _corrupt(scan, scan.problem)
        scans.append(scan)
    last = scans[-1]
    if last.problem is None:
        return LogCheck(scans, None)
    if not last.tearable:
        raise _corrupt(last, last.problem)
    later = _later_batch_frame(last)
    if later is not None:
        offset, seq = later
        raise _corrupt(
            last,
            f"{last.problem}; a valid record of a later commit (seq {seq} at offset "
            f"{offset}) follows, so records that were durable are damaged: this is not "
            "a torn tail",
        )
    torn = TornTail(last.path, last.end_offset, last.file_bytes, last.problem, last.last_seq)
    return LogCheck(scans, torn)


def _corrupt(scan: SegmentScan, reason: str) -> LogCorrupt:
    return LogCorrupt(
        scan.path,
        scan.end_offset,
        reason,
        expected_seq=scan.last_seq + 1,
        last_good_seq=scan.last_seq,
    )


def _scan_mapped(segment: SegmentFile, view: memoryview, file_bytes: int) -> SegmentScan:
    try:
        # A copy: a view of the map kept alive by the exception would block closing it.
        header = decode_segment_header(bytes(view[:SEGMENT_HEADER_LENGTH]))
    except FormatError as exc:
        raise LogCorrupt(segment.path, 0, str(exc)) from None
    if header.first_seq != segment.first_seq:
        raise LogCorrupt(
            segment.path,
            0,
            f"header says first seq {header.first_seq} but the file name says {segment.first_seq}",
        )
    limit = header.max_record_bytes
    # numba checks the valid frames at memory speed; the loop below says why the
    # first frame that is not valid is not (or finds the end of the file).
    offset, seq, prev_batch_index = _fast_forward(
        view, file_bytes, SEGMENT_HEADER_LENGTH, header.first_seq, limit
    )
    problem: str | None = None
    tearable = False
    while offset < file_bytes:
        left = file_bytes - offset
        if left < FRAME_HEADER_LENGTH:
            problem, tearable = f"record header cut short: {left} bytes", True
            break
        frame = decode_frame_header(view, offset)
        if frame.payload_length > limit:
            problem = f"record length {frame.payload_length} exceeds max_record_bytes {limit}"
            tearable = True
            break
        length = frame_length(frame.payload_length)
        if length > left:
            problem = f"record of {length} bytes runs past the end of the file ({left} left)"
            tearable = True
            break
        if frame_crc(view, offset, length) != frame.crc:
            problem, tearable = "checksum mismatch", True
            break
        problem = frame_problem(view, offset, frame, seq, prev_batch_index)
        if problem is not None:
            break
        prev_batch_index = frame.batch_index
        offset += length
        seq += 1
    return SegmentScan(
        segment.path, header.first_seq, limit, seq - 1, offset, file_bytes, problem, tearable
    )


def _fast_forward(
    view: memoryview, file_bytes: int, offset: int, seq: int, limit: int
) -> tuple[int, int, int]:
    """(offset, next seq, last batch index) after the run of valid frames at ``offset``."""
    buf = np.frombuffer(view, dtype=np.uint8, count=file_bytes)
    words = buf[: file_bytes - file_bytes % 8].view(np.int64)
    try:
        end = words.shape[0] * 8
        return fast_forward(buf, words, offset, end, seq, limit, -1)
    finally:
        del buf, words  # the map's views must be gone before it closes


def _later_batch_frame(scan: SegmentScan) -> tuple[int, int] | None:
    """(offset, seq) of a valid frame after the damage that belongs to a later batch.

    The damaged frame at ``scan.end_offset`` should hold ``expected = last_seq + 1``.
    A valid frame found after it, with sequence ``s`` and batch index ``i``, began its
    batch at ``s - i``; if that is after ``expected``, its batch was written after the
    damaged one had been made durable.
    """
    expected = scan.last_seq + 1
    with (
        open(scan.path, "rb") as file,
        mmap.mmap(file.fileno(), scan.file_bytes, access=mmap.ACCESS_READ) as mapped,
    ):
        view = memoryview(mapped)
        try:
            for offset, seq, batch_first in _valid_frames_after(view, scan, expected):
                if batch_first > expected:
                    return offset, seq
        finally:
            view.release()
    return None


def _valid_frames_after(
    view: memoryview, scan: SegmentScan, expected: int
) -> list[tuple[int, int, int]]:
    """Valid frames at aligned offsets after ``scan.end_offset``: (offset, seq, batch_first).

    Frames are 8-byte aligned, so the search looks at every aligned offset, filtering
    candidates with numpy (sequence in range, sane type, flags and length) before
    checking the few that remain with their checksum.
    """
    import numpy as np  # only a damaged tail needs it: keeps start-up light

    start = scan.end_offset
    total_words = (scan.file_bytes - start) // FRAME_ALIGN
    # A frame takes at least 3 words, so no valid sequence lies beyond this.
    highest = expected + total_words // 3 + 1
    found: list[tuple[int, int, int]] = []
    first = 1  # word index of the first candidate; 0 is the damaged frame itself
    while first + 3 <= total_words:
        count = min(total_words - first, _SEARCH_CHUNK_WORDS + 2)
        words = np.frombuffer(view, dtype="<u8", count=count, offset=start + FRAME_ALIGN * first)
        n = count - 2
        head, seqs, tail = words[:n], words[1 : n + 1], words[2 : n + 2]
        mask = (seqs >= expected) & (seqs <= highest)
        mask &= (tail & 0xFFFF) != 0  # rtype
        mask &= ((tail >> 16) & 0xFFFF) == 0  # flags
        mask &= (head & 0xFFFFFFFF) <= scan.max_record_bytes
        candidates = np.flatnonzero(mask).tolist()
        del words, head, seqs, tail, mask
        for index in candidates:
            offset = start + FRAME_ALIGN * (first + index)
            frame = decode_frame_header(view, offset)
            length = frame_length(frame.payload_length)
            if offset + length <= scan.file_bytes and frame_crc(view, offset, length) == frame.crc:
                found.append((offset, frame.seq, frame.seq - frame.batch_index))
        first += n
    return found


def missing_committed(last: SegmentScan, torn: TornTail | None, committed_seq: int) -> LogCorrupt:
    """The log ends before records the marker says were synced: they were lost."""
    reason = (
        f"the log ends at seq {last.last_seq} but records up to seq {committed_seq} were "
        "committed and synced: acknowledged records are missing"
    )
    if torn is not None:
        reason = f"{torn.reason}; {reason}, so this is not a torn tail"
    return LogCorrupt(
        last.path,
        last.end_offset,
        reason,
        expected_seq=last.last_seq + 1,
        last_good_seq=last.last_seq,
    )
