"""Replaying the log into an engine: recovery after a snapshot, and full verification.

Segments are mapped read-only and checked frame by frame in numba (``scan_frames``);
runs of order records are decoded into command batches and executed through
``Engine.execute_view`` (a QUOTE's record gives back its k + 1 records, which always
go to the engine in one call); balance updates and catalog commands (ADD_ASSET,
ADD_MARKET, which must be accepted with their record's sequence) are applied one by
one. Every command must give exactly the outcome its record holds (sequence, code,
order id, value and number of events; with ``check_events`` the events themselves):
the state after a replay is then the state that was acknowledged, and a mismatch is
an error, never skipped.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.catalog import catalog_payload, decode_catalog
from core.config import AssetConfig, MarketConfig
from core.engine import Engine
from core.schema import COMMAND_DTYPE, EVENT_DTYPE, Result
from persistence._segments import SegmentFile, list_segments
from persistence.frames import (
    COMMAND_WORDS,
    EVENT_IMPLIED_WORDS,
    EVENT_WORDS,
    MAX_EXTRA_COMMANDS,
    RT_BALANCE,
    RT_CATALOG,
    RT_ORDER,
    SCAN_OK,
    SCAN_PROBLEMS,
    decode_order,
    decode_orders,
    scan_frames,
)
from persistence.log_errors import LogCorrupt, LogError
from persistence.log_format import (
    FRAME_HEADER_LENGTH,
    SEGMENT_HEADER_LENGTH,
    decode_segment_header,
)

#: Frames checked per numba call, and commands per ``execute_view`` call (a QUOTE's
#: levels come with it: up to ``MAX_EXTRA_COMMANDS`` records more).
CHUNK = 4096

#: RT_BALANCE payload head: user, asset, business_id, change, ts_ns, business length,
#: detail length; then business, detail, zero padding to 8, and the event record.
BALANCE_HEAD = struct.Struct("<qqqqqII")
#: RT_CATALOG payload head: ts_ns; then the command's JSON (``core.catalog.catalog_payload``).
CATALOG_HEAD = struct.Struct("<q")


class ReplayMismatch(LogError):
    """A logged command gave a different outcome on replay: the log, the snapshot or
    the engine is not what wrote it."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """What a replay did."""

    records: int
    first_seq: int
    last_seq: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        """Replay speed (records per second)."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


def encode_balance(
    user: int,
    asset: int,
    business: bytes,
    business_id: int,
    change: int,
    ts_ns: int,
    detail: bytes,
    event: np.ndarray,
) -> bytes:
    """The RT_BALANCE payload of an accepted balance.update and its one event."""
    body = (
        BALANCE_HEAD.pack(user, asset, business_id, change, ts_ns, len(business), len(detail))
        + bytes(business)
        + bytes(detail)
    )
    body += bytes(-len(body) % 8)
    return body + event.tobytes()


def decode_balance(
    payload: bytes | memoryview,
) -> tuple[tuple[int, int, bytes, int, int, int, bytes], np.ndarray]:
    """(user, asset, business, business_id, change, ts_ns, detail), event of an
    RT_BALANCE payload; ``ValueError`` if it does not add up."""
    data = bytes(payload)
    if len(data) < BALANCE_HEAD.size:
        raise ValueError("balance record shorter than its head")
    user, asset, business_id, change, ts_ns, nb, nd = BALANCE_HEAD.unpack_from(data)
    at = BALANCE_HEAD.size
    business = data[at : at + nb]
    detail = data[at + nb : at + nb + nd]
    at += nb + nd
    at += -at % 8
    if len(data) != at + EVENT_DTYPE.itemsize or len(business) != nb or len(detail) != nd:
        raise ValueError("balance record length does not add up")
    event = np.frombuffer(data, dtype=EVENT_DTYPE, count=1, offset=at).copy()
    return (user, asset, business, business_id, change, ts_ns, detail), event


def encode_catalog_record(raw: AssetConfig | MarketConfig, ts_ns: int) -> bytes:
    """The RT_CATALOG payload of an ADD_ASSET (``raw`` an ``AssetConfig``) or ADD_MARKET
    (a ``MarketConfig``) at ``ts_ns``. ``ValueError`` if it cannot be one: not a config
    table, a value JSON does not hold, a time outside int64 (the command is then not
    checked against any catalog: that is ``core.catalog``'s)."""
    if not isinstance(raw, AssetConfig | MarketConfig):
        raise ValueError(f"a catalog command is an AssetConfig or a MarketConfig, not {raw!r}")
    try:
        return CATALOG_HEAD.pack(ts_ns) + catalog_payload(raw)
    except (struct.error, TypeError, ValueError) as exc:
        raise ValueError(f"not a catalog record: {exc}") from None


def decode_catalog_record(payload: bytes | memoryview) -> tuple[int, AssetConfig | MarketConfig]:
    """(ts_ns, the command) of an RT_CATALOG payload; ``ValueError`` if it does not add
    up (too short, not the JSON of an asset's or a market's table)."""
    data = bytes(payload)
    if len(data) <= CATALOG_HEAD.size:
        raise ValueError("catalog record shorter than its head and a command")
    (ts_ns,) = CATALOG_HEAD.unpack_from(data)
    return ts_ns, decode_catalog(data[CATALOG_HEAD.size :])


def _payload(buf: np.ndarray, start: int) -> bytes:
    """The payload of the frame that starts at ``start`` in ``buf`` (checked already)."""
    length = int(buf[start : start + 4].view(np.uint32)[0])
    return buf[start + FRAME_HEADER_LENGTH : start + FRAME_HEADER_LENGTH + length].tobytes()


def _segments_from(directory: Path, from_seq: int) -> list[SegmentFile]:
    segments = list_segments(directory)
    start = 0
    for i, segment in enumerate(segments):
        if segment.first_seq <= from_seq:
            start = i
    return segments[start:]


class _Replayer:
    def __init__(self, engine: Engine, from_seq: int, check_events: bool) -> None:
        self.engine = engine
        self.from_seq = from_seq
        self.check_events = check_events
        self.last_seq = from_seq - 1
        self.records = 0
        self.starts = np.zeros(CHUNK, dtype=np.int64)
        self.seqs = np.zeros(CHUNK, dtype=np.int64)
        self.types = np.zeros(CHUNK, dtype=np.int64)
        self.cmds = np.zeros(CHUNK + MAX_EXTRA_COMMANDS, dtype=COMMAND_DTYPE)
        self.heads = np.zeros(CHUNK, dtype=np.int64)
        self.expect = np.zeros((CHUNK, 4), dtype=np.int64)
        self.none = np.zeros((0, EVENT_WORDS), dtype=np.int64)

    def segment(self, segment: SegmentFile) -> None:
        # Read whole (a segment is bounded by segment_bytes): a map's numpy views would
        # have to be gone before it closes, even when an error unwinds through here.
        buf = np.fromfile(segment.path, dtype=np.uint8)
        size = buf.shape[0]
        if size <= SEGMENT_HEADER_LENGTH:
            return
        header = decode_segment_header(buf[:SEGMENT_HEADER_LENGTH].tobytes())
        end = size - size % 8
        buf64 = buf[:end].view(np.int64)
        pos = SEGMENT_HEADER_LENGTH
        expected = segment.first_seq
        while pos < end:
            stop, n, problem = scan_frames(
                buf,
                buf64,
                pos,
                end,
                expected,
                header.max_record_bytes,
                self.starts,
                self.seqs,
                self.types,
            )
            if n:
                self._frames(segment.path, buf, buf64, n, stop)
                expected = int(self.seqs[n - 1]) + 1
            if problem != SCAN_OK:
                raise LogCorrupt(
                    segment.path,
                    stop,
                    f"replay: {SCAN_PROBLEMS[problem]} at seq {expected} (last good seq "
                    f"{expected - 1})",
                )
            if n == 0:
                break
            pos = stop

    def _frames(self, path: Path, buf: np.ndarray, buf64: np.ndarray, n: int, stop: int) -> None:
        """Apply the ``n`` frames ``scan_frames`` recorded in ``starts``, ``seqs`` and
        ``types`` (the last one ends at ``stop``); ``path`` names them in errors."""
        starts = self.starts[:n]
        stops = np.empty(n, dtype=np.int64)
        stops[:-1] = starts[1:]
        stops[-1] = stop
        i = 0
        while i < n:
            if self.seqs[i] < self.from_seq:
                i += 1
                continue
            j = i
            while j < n and self.types[j] == RT_ORDER:
                j += 1
            if j > i:
                self._orders(path, buf, buf64, starts[i:j], stops[i:j], self.seqs[i:j])
                i = j
                continue
            self._single(path, buf, int(starts[i]), int(self.seqs[i]), int(self.types[i]))
            i += 1

    def _single(self, path: Path, buf: np.ndarray, start: int, seq: int, rtype: int) -> None:
        """Apply the record at ``start`` that is not an order record (one at a time)."""
        if rtype == RT_BALANCE:
            self._balance(path, buf, start, seq)
        elif rtype == RT_CATALOG:
            self._catalog(path, buf, start, seq)
        else:
            raise LogCorrupt(path, start, f"replay: unknown record type {rtype} at seq {seq}")

    def _orders(
        self,
        path: Path,
        buf: np.ndarray,
        buf64: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
        seqs: np.ndarray,
    ) -> None:
        """Decode and execute the order frames [starts, stops), as many a call as
        ``cmds`` holds (a QUOTE's frame gives its k + 1 records, never split)."""
        n = starts.shape[0]
        cmds64 = self.cmds.view(np.int64).reshape(-1, COMMAND_WORDS)
        done = 0
        while done < n:
            m, rows, bad = decode_orders(
                buf, buf64, starts[done:], stops[done:], cmds64, self.heads, self.expect,
                self.none,
            )  # fmt: skip
            if bad >= 0:
                raise LogCorrupt(
                    path,
                    int(starts[done + bad]),
                    f"replay: order record of seq {seqs[done + bad]} does not add up",
                )
            at = slice(done, done + m)
            self._execute(path, buf, buf64, starts[at], stops[at], seqs[at], rows)
            done += m

    def _execute(
        self,
        path: Path,
        buf: np.ndarray,
        buf64: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
        seqs: np.ndarray,
        rows: int,
    ) -> None:
        """Execute the ``rows`` records ``decode_orders`` put in ``cmds`` for the frames
        [starts, stops) and check each frame's outcome against its command's result."""
        n = starts.shape[0]
        results, events = self.engine.execute_view(self.cmds[:rows])
        heads = self.heads[:n]
        got = results
        if rows != n:  # QUOTE groups: the results of their first records
            got = results[heads]
            self._check_extra_results(path, results, heads, seqs)
        expect = self.expect[:n]
        problems = (
            (got["seq"] != seqs)
            | (got["code"] != expect[:, 1])
            | (got["order_id"] != expect[:, 2])
            | (got["value"] != expect[:, 3])
            | (got["event_count"] != expect[:, 0])
        )
        if problems.any():
            k = int(np.flatnonzero(problems)[0])
            raise ReplayMismatch(
                f"replay: seq {seqs[k]} in {path.name} gave seq {got['seq'][k]} "
                f"code {got['code'][k]} order {got['order_id'][k]} value "
                f"{got['value'][k]} events {got['event_count'][k]}; the log holds "
                f"code {expect[k, 1]} order {expect[k, 2]} value {expect[k, 3]} events "
                f"{expect[k, 0]}"
            )
        if self.check_events:
            self._compare_events(path, buf, buf64, starts, stops, seqs, got, events)
        self.records += n
        self.last_seq = int(seqs[-1])

    @staticmethod
    def _check_extra_results(
        path: Path, results: np.ndarray, heads: np.ndarray, seqs: np.ndarray
    ) -> None:
        """The records a frame holds after its first (a QUOTE's levels) must give no
        seq and no event of their own: they are part of their frame's command."""
        extra = np.ones(results.shape[0], dtype=bool)
        extra[heads] = False
        wrong = extra & ((results["seq"] != 0) | (results["event_count"] != 0))
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            k = int(np.searchsorted(heads, row, side="right")) - 1
            raise ReplayMismatch(
                f"replay: seq {seqs[k]} in {path.name}: its record {row - int(heads[k])} "
                f"gave seq {results['seq'][row]} and {results['event_count'][row]} events "
                "of its own, where the log holds one command"
            )

    def _compare_events(
        self,
        path: Path,
        buf: np.ndarray,
        buf64: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
        seqs: np.ndarray,
        results: np.ndarray,
        events: np.ndarray,
    ) -> None:
        got = events.view(np.int64).reshape(-1, EVENT_WORDS).copy()
        got[:, :EVENT_IMPLIED_WORDS] = 0
        row = np.zeros(COMMAND_WORDS, dtype=np.int64)
        skipped = np.zeros((0, COMMAND_WORDS), dtype=np.int64)
        for k in range(starts.shape[0]):
            count = int(results["event_count"][k])
            first = int(results["event_start"][k])
            logged = np.zeros((count, EVENT_WORDS), dtype=np.int64)
            decode_order(buf, buf64, int(starts[k]), int(stops[k]), row, skipped, logged)
            if not np.array_equal(logged, got[first : first + count]):
                raise ReplayMismatch(
                    f"replay: the events of seq {seqs[k]} in {path.name} differ "
                    "from the ones the log holds"
                )

    def _balance(self, path: Path, buf: np.ndarray, start: int, seq: int) -> None:
        try:
            (user, asset, business, business_id, change, ts_ns, _detail), event = decode_balance(
                _payload(buf, start)
            )
        except ValueError as exc:
            raise LogCorrupt(path, start, f"replay: balance record of seq {seq}: {exc}") from exc
        results, events = self.engine.balance_update(
            user, asset, business, business_id, change, ts_ns
        )
        r = results[0]
        if (
            r["code"] != Result.OK
            or r["seq"] != seq
            or (self.check_events and not np.array_equal(events, event))
        ):
            raise ReplayMismatch(
                f"replay: balance update of seq {seq} in {path.name} gave code "
                f"{r['code']} seq {r['seq']}"
            )
        self.records += 1
        self.last_seq = seq

    def _catalog(self, path: Path, buf: np.ndarray, start: int, seq: int) -> None:
        """Apply an ADD_ASSET or ADD_MARKET: it must be accepted, with the record's
        sequence (its index is then the one it had: the catalog only grows)."""
        try:
            _ts_ns, raw = decode_catalog_record(_payload(buf, start))
        except ValueError as exc:
            raise LogCorrupt(path, start, f"replay: catalog record of seq {seq}: {exc}") from exc
        if isinstance(raw, AssetConfig):
            kind, (results, _events) = "asset", self.engine.add_asset(raw)
        else:
            kind, (results, _events) = "market", self.engine.add_market(raw)
        r = results[0]
        if r["code"] != Result.OK or r["seq"] != seq:
            raise ReplayMismatch(
                f"replay: add {kind} {raw.name!r} of seq {seq} in {path.name} gave code "
                f"{r['code']} ({_code_name(int(r['code']))}) seq {r['seq']}"
            )
        self.records += 1
        self.last_seq = seq


def _code_name(code: int) -> str:
    """A result code's name (or ``?`` for a code this build does not know)."""
    try:
        return Result(code).name
    except ValueError:
        return "?"


def replay(
    engine: Engine, directory: Path, from_seq: int, *, check_events: bool = False
) -> ReplayStats:
    """Apply every record of the log in ``directory`` from ``from_seq`` on (which must
    be the engine's next sequence) to its end; returns what was done."""
    t0 = time.perf_counter()
    replayer = _Replayer(engine, from_seq, check_events)
    for segment in _segments_from(directory, from_seq):
        replayer.segment(segment)
    return ReplayStats(
        records=replayer.records,
        first_seq=from_seq,
        last_seq=replayer.last_seq,
        seconds=time.perf_counter() - t0,
    )


class FrameApplier:
    """Applies records that arrive as buffers of whole frames rather than in segment
    files (a replica applying what its primary shipped), with every check ``replay``
    makes. A buffer is checked whole before any of it is applied."""

    def __init__(self, engine: Engine, *, check_events: bool = False) -> None:
        self._replayer = _Replayer(engine, engine.counters()[0] + 1, check_events)

    @property
    def last_seq(self) -> int:
        """The sequence of the last record applied (the engine's)."""
        return self._replayer.engine.counters()[0]

    def check(self, buf: np.ndarray, first_seq: int, max_payload: int, where: Path) -> np.ndarray:
        """The end offsets of the frames that fill ``buf`` (uint8, a whole number of
        8-byte words) exactly: checksums, lengths up to ``max_payload``, types, and
        consecutive sequences from ``first_seq``. ``LogCorrupt`` names the first bad
        one (``where`` names the buffer)."""
        end = buf.shape[0]
        if end % 8:
            raise LogCorrupt(where, end, "received frames are not a whole number of words")
        buf64 = buf.view(np.int64)
        r = self._replayer
        ends: list[np.ndarray] = []
        pos, expected = 0, first_seq
        while pos < end:
            stop, n, problem = scan_frames(
                buf, buf64, pos, end, expected, max_payload, r.starts, r.seqs, r.types
            )
            if problem != SCAN_OK or n == 0:
                raise LogCorrupt(
                    where, stop, f"received frames: {SCAN_PROBLEMS[problem]} at seq {expected + n}"
                )
            ends.append(np.append(r.starts[1:n], stop))
            pos, expected = stop, expected + n
        return np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)

    def apply(self, buf: np.ndarray, ends: np.ndarray, first_seq: int, where: Path) -> None:
        """Apply the frames of ``buf`` that ``check`` passed (``ends`` its answer);
        ``first_seq`` must follow the engine's sequence. ``ReplayMismatch`` if a
        command gives another outcome than its record holds (the records before it
        in the buffer are applied)."""
        r = self._replayer
        if first_seq != self.last_seq + 1:
            raise ReplayMismatch(
                f"received seq {first_seq} does not follow the engine's seq {self.last_seq}"
            )
        buf64 = buf.view(np.int64)
        for at in range(0, ends.shape[0], CHUNK):
            chunk = ends[at : at + CHUNK]
            n = chunk.shape[0]
            r.starts[0] = ends[at - 1] if at else 0
            r.starts[1:n] = chunk[:-1]
            r.seqs[:n] = np.arange(first_seq + at, first_seq + at + n)
            r.types[:n] = buf64[r.starts[:n] // 8 + 2] & 0xFFFF
            r._frames(where, buf, buf64, n, int(chunk[-1]))
