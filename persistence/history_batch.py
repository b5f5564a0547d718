"""A batch of log records decoded at once, for the drainer and the feed (docs/history.md).

``RecordDecoder`` decodes one record per Python call (about 9 µs each); the drainer
and the feed read thousands a batch. ``BatchDecoder.decode_runs`` takes the runs that
``LogReader.read_runs`` returns (frames lying whole in the buffer they were read into)
and decodes their order records where they lie, one kernel call a run
(``decode_frames``, around ``persistence.frames.decode_order``): the commands, the
results and every event of the batch come out as arrays, the events concatenated in
record order with their record's ``seq`` and ``ts_ns`` filled in; payloads are cut
out of the buffers only when asked for. ``decode`` does the same for ``Record``
objects (copied into one frame-aligned buffer first). The rare balance.update records
go through ``RecordDecoder``. ``DecodedBatch.record(i)`` gives one order record back
as a ``DecodedRecord`` for the code that wants one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.kernels.jit import kernel
from core.schema import COMMAND_DTYPE, EVENT_DTYPE
from persistence.frames import COMMAND_WORDS, EVENT_WORDS, RT_BALANCE, RT_ORDER, decode_order
from persistence.history_rows import DecodedRecord, HistoryRecordError, RecordDecoder
from persistence.log_format import FRAME_HEADER_LENGTH
from persistence.log_reader import Record, RecordRun

_WORD = 8
_HEADER_PAD = bytes(FRAME_HEADER_LENGTH)
_PADS = tuple(bytes(k) for k in range(_WORD))


@kernel
def decode_frames(
    buf: np.ndarray,
    buf64: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    cmds64: np.ndarray,
    events64: np.ndarray,
    results: np.ndarray,
) -> tuple[int, int]:
    """Decode the RT_ORDER frames [starts[i], stops[i]) into ``cmds64[i]`` and
    ``results[i]`` (n_events, code, order_id, value), their events one after the other
    into ``events64`` while it has room; returns (index of the first frame that does
    not add up or -1, events in all). With more events than rows the caller grows
    ``events64`` and calls again."""
    total = 0
    rows = events64.shape[0]
    for i in range(starts.shape[0]):
        room = events64[min(total, rows) :]
        count, code, order_id, value, problem = decode_order(
            buf, buf64, starts[i], stops[i], cmds64[i], room
        )
        if problem:
            return i, total
        results[i, 0] = count
        results[i, 1] = code
        results[i, 2] = order_id
        results[i, 3] = value
        total += count
    return -1, total


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Consecutive log records, decoded: the order records as arrays (index i = the
    i-th order record of the batch), the balance.update records one by one. The
    payloads stay in the runs they were read in until asked for."""

    first_seq: int
    last_seq: int
    seqs: np.ndarray  #: int64, per order record
    ts_ns: np.ndarray  #: int64, per order record (its command's time)
    commands: np.ndarray  #: COMMAND_DTYPE, per order record
    order_ids: np.ndarray  #: int64, the result's order id, per order record
    values: np.ndarray  #: int64, the result's value, per order record
    counts: np.ndarray  #: int64, events per order record
    events: np.ndarray  #: EVENT_DTYPE, every order record's events in order
    balances: list[DecodedRecord]  #: the balance.update records
    _runs: list[RecordRun]
    _run_of: np.ndarray  #: int64, per order record: its run
    _index: np.ndarray  #: int64, per order record: its index in its run

    @property
    def orders(self) -> int:
        """Order records in the batch."""
        return int(self.seqs.shape[0])

    def payload(self, i: int) -> bytes:
        """Order record ``i``'s payload, byte for byte."""
        return self._runs[int(self._run_of[i])].payload(int(self._index[i]))

    @property
    def payloads(self) -> list[bytes]:
        """Every order record's payload, byte for byte."""
        return [
            self._runs[r].payload(k)
            for r, k in zip(self._run_of.tolist(), self._index.tolist(), strict=True)
        ]

    def record(self, i: int) -> DecodedRecord:
        """Order record ``i`` as a ``DecodedRecord``."""
        stop = int(self.counts[: i + 1].sum())
        start = stop - int(self.counts[i])
        return DecodedRecord(
            int(self.seqs[i]), RT_ORDER, int(self.ts_ns[i]), self.events[start:stop],
            self.commands[i], int(self.order_ids[i]), int(self.values[i]), None,
            self.payload(i),
        )  # fmt: skip


class BatchDecoder:
    """Decodes batches of records, reusing its buffers (grown when a batch needs more)."""

    def __init__(self, events: int = 1 << 16) -> None:
        """Room for ``events`` events per batch at first."""
        self._events = np.zeros((events, EVENT_WORDS), dtype=np.int64)
        self._single = RecordDecoder()

    def decode(self, records: Sequence[Record]) -> DecodedBatch:
        """Decode ``records`` (consecutive sequences, in order); ``HistoryRecordError``
        if they are not, or if one does not decode."""
        if not records:
            raise ValueError("decode needs at least one record")
        for prev, record in itertools.pairwise(records):
            if record.seq != prev.seq + 1:
                raise HistoryRecordError(f"seq {record.seq} after {prev.seq}: not in order")
        sizes = np.fromiter(
            (FRAME_HEADER_LENGTH + len(r.payload) for r in records), dtype=np.int64,
            count=len(records),
        )  # fmt: skip
        padded = sizes + (-sizes % _WORD)
        stops = np.cumsum(padded)
        parts: list[bytes] = []
        for r, pad in zip(records, (padded - sizes).tolist(), strict=True):
            parts += (_HEADER_PAD, r.payload, _PADS[pad])
        run = RecordRun(
            records[0].seq, b"".join(parts), stops - padded,
            sizes - FRAME_HEADER_LENGTH,
            np.fromiter((r.rtype for r in records), dtype=np.int64, count=len(records)),
        )  # fmt: skip
        return self.decode_runs([run])

    def decode_runs(self, runs: Sequence[RecordRun]) -> DecodedBatch:
        """Decode the records of ``runs`` (consecutive, in order; ``LogReader.read_runs``)
        straight from their buffers; ``HistoryRecordError`` if they are not
        consecutive, or if one does not decode."""
        if not runs:
            raise ValueError("decode_runs needs at least one run")
        for prev, run in itertools.pairwise(runs):
            if run.first_seq != prev.last_seq + 1:
                raise HistoryRecordError(f"seq {run.first_seq} after {prev.last_seq}: not in order")
        picks = [np.flatnonzero(run.types == RT_ORDER) for run in runs]
        n = sum(int(p.shape[0]) for p in picks)
        balances = []
        for run, pick in zip(runs, picks, strict=True):
            if pick.shape[0] == len(run):
                continue
            for i in np.flatnonzero(run.types != RT_ORDER).tolist():
                rtype = int(run.types[i])
                if rtype != RT_BALANCE:
                    raise HistoryRecordError(
                        f"seq {run.first_seq + i}: unknown record type {rtype}"
                    )
                record = Record(run.first_seq + i, rtype, run.payload(i))
                balances.append(self._single.decode(record))
        cmds64 = np.zeros((n, COMMAND_WORDS), dtype=np.int64)
        results = np.zeros((n, 4), dtype=np.int64)
        total = self._decode_all(runs, picks, cmds64, results)
        commands = cmds64.view(COMMAND_DTYPE).reshape(n)
        counts = results[:, 0].copy()
        seqs = np.concatenate(
            [run.first_seq + pick for run, pick in zip(runs, picks, strict=True)]
        ).astype(np.int64)
        ts_ns = commands["ts_ns"].astype(np.int64)
        events = self._events[:total].copy().view(EVENT_DTYPE).reshape(total)
        events["seq"] = np.repeat(seqs, counts)
        events["ts_ns"] = np.repeat(ts_ns, counts)
        return DecodedBatch(
            first_seq=runs[0].first_seq, last_seq=runs[-1].last_seq, seqs=seqs, ts_ns=ts_ns,
            commands=commands, order_ids=results[:, 2].copy(), values=results[:, 3].copy(),
            counts=counts, events=events, balances=balances, _runs=list(runs),
            _run_of=np.concatenate(
                [np.full(p.shape[0], r, dtype=np.int64) for r, p in enumerate(picks)]
            ),
            _index=np.concatenate(picks).astype(np.int64),
        )  # fmt: skip

    def _decode_all(
        self,
        runs: Sequence[RecordRun],
        picks: list[np.ndarray],
        cmds64: np.ndarray,
        results: np.ndarray,
    ) -> int:
        """Decode every run's order frames into ``cmds64``/``results`` and the events
        buffer (grown and done again when too small); returns the events in all."""
        while True:
            total = k = 0
            fits = True
            for run, pick in zip(runs, picks, strict=True):
                m = int(pick.shape[0])
                if not m:
                    continue
                usable = len(run.data) // _WORD * _WORD
                buf = np.frombuffer(run.data, dtype=np.uint8, count=usable)
                starts = run.starts[pick]
                lengths = run.lengths[pick]
                stops = starts + FRAME_HEADER_LENGTH + lengths
                stops += -stops % _WORD
                room = self._events[min(total, self._events.shape[0]) :]
                bad, got = decode_frames(
                    buf, buf.view(np.int64), starts, stops, cmds64[k : k + m], room,
                    results[k : k + m],
                )  # fmt: skip
                if bad >= 0:
                    seq = run.first_seq + int(pick[bad])
                    raise HistoryRecordError(f"seq {seq}: order record does not add up")
                refused = np.flatnonzero(results[k : k + m, 1])
                if refused.shape[0]:
                    seq = run.first_seq + int(pick[int(refused[0])])
                    raise HistoryRecordError(f"seq {seq}: order record does not add up")
                fits = fits and total + got <= self._events.shape[0]
                total += got
                k += m
            if fits:
                return total
            self._events = np.zeros((2 * total, EVENT_WORDS), dtype=np.int64)
