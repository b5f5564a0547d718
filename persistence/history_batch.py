"""A batch of log records decoded at once, for the drainer and the feed (docs/history.md).

``RecordDecoder`` decodes one record per Python call (about 9 µs each); the drainer
and the feed read thousands a batch. ``BatchDecoder.decode_runs`` takes the runs that
``LogReader.read_runs`` returns (frames lying whole in the buffer they were read into)
and decodes their order records where they lie, one kernel call a run
(``decode_frames``, around ``persistence.frames.decode_order``): the commands, the
results and every event of the batch come out as arrays, the events concatenated in
record order with their record's ``seq`` and ``ts_ns`` filled in; payloads are cut
out of the buffers only when asked for. ``decode`` does the same for ``Record``
objects (copied into one frame-aligned buffer first). The rare balance.update and
catalog (ADD_ASSET, ADD_MARKET) records go through ``RecordDecoder``.
``DecodedBatch.record(i)`` gives one order record back as a ``DecodedRecord`` for the
code that wants one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.kernels.jit import kernel
from core.schema import COMMAND_DTYPE, EVENT_DTYPE
from persistence.frames import (
    COMMAND_WORDS,
    EVENT_WORDS,
    RT_BALANCE,
    RT_CATALOG,
    RT_ORDER,
    decode_order,
)
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
    extra64: np.ndarray,
    events64: np.ndarray,
    results: np.ndarray,
) -> tuple[int, int, int]:
    """Decode the RT_ORDER frames [starts[i], stops[i]) into ``cmds64[i]`` and
    ``results[i]`` (n_events, code, order_id, value, n_extra), their extra command
    records (a QUOTE's levels) one after the other into ``extra64`` and their events
    into ``events64``, each while it has room; returns (index of the first frame that
    does not add up or -1, events in all, extra records in all). With more than fit,
    the caller grows the arrays and calls again."""
    total = 0
    extras = 0
    rows = events64.shape[0]
    extra_rows = extra64.shape[0]
    for i in range(starts.shape[0]):
        room = events64[min(total, rows) :]
        extra_room = extra64[min(extras, extra_rows) :]
        count, code, order_id, value, extra, problem = decode_order(
            buf, buf64, starts[i], stops[i], cmds64[i], extra_room, room
        )
        if problem:
            return i, total, extras
        results[i, 0] = count
        results[i, 1] = code
        results[i, 2] = order_id
        results[i, 3] = value
        results[i, 4] = extra
        total += count
        extras += extra
    return -1, total, extras


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Consecutive log records, decoded: the order records as arrays (index i = the
    i-th order record of the batch), the balance.update and catalog records one by
    one. The payloads stay in the runs they were read in until asked for."""

    first_seq: int
    last_seq: int
    seqs: np.ndarray  #: int64, per order record
    ts_ns: np.ndarray  #: int64, per order record (its command's time)
    commands: np.ndarray  #: COMMAND_DTYPE, per order record
    order_ids: np.ndarray  #: int64, the result's order id, per order record
    values: np.ndarray  #: int64, the result's value, per order record
    counts: np.ndarray  #: int64, events per order record
    events: np.ndarray  #: EVENT_DTYPE, every order record's events in order
    #: int64, per order record: the command records it holds after its command (a
    #: QUOTE's k levels; 0 for every other kind)
    extra_counts: np.ndarray
    extras: np.ndarray  #: COMMAND_DTYPE, every order record's extra records in order
    balances: list[DecodedRecord]  #: the balance.update records
    _runs: list[RecordRun]
    _run_of: np.ndarray  #: int64, per order record: its run
    _index: np.ndarray  #: int64, per order record: its index in its run
    #: the catalog records (ADD_ASSET, ADD_MARKET: ``DecodedRecord.catalog``), in order
    catalog: list[DecodedRecord] = field(default_factory=list)

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
        extra_stop = int(self.extra_counts[: i + 1].sum())
        extra_start = extra_stop - int(self.extra_counts[i])
        return DecodedRecord(
            int(self.seqs[i]), RT_ORDER, int(self.ts_ns[i]), self.events[start:stop],
            self.commands[i], int(self.order_ids[i]), int(self.values[i]), None,
            self.payload(i), self.extras[extra_start:extra_stop],
        )  # fmt: skip


class BatchDecoder:
    """Decodes batches of records, reusing its buffers (grown when a batch needs more)."""

    def __init__(self, events: int = 1 << 16) -> None:
        """Room for ``events`` events per batch at first (and a quarter as many extra
        command records: QUOTE levels)."""
        self._events = np.zeros((events, EVENT_WORDS), dtype=np.int64)
        self._extras = np.zeros((max(events // 4, 1), COMMAND_WORDS), dtype=np.int64)
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
        balances, catalog = self._others(runs, picks)
        cmds64 = np.zeros((n, COMMAND_WORDS), dtype=np.int64)
        results = np.zeros((n, 5), dtype=np.int64)
        total, extra_total = self._decode_all(runs, picks, cmds64, results)
        commands = cmds64.view(COMMAND_DTYPE).reshape(n)
        counts = results[:, 0].copy()
        seqs = np.concatenate(
            [run.first_seq + pick for run, pick in zip(runs, picks, strict=True)]
        ).astype(np.int64)
        ts_ns = commands["ts_ns"].astype(np.int64)
        events = self._events[:total].copy().view(EVENT_DTYPE).reshape(total)
        events["seq"] = np.repeat(seqs, counts)
        events["ts_ns"] = np.repeat(ts_ns, counts)
        extras = self._extras[:extra_total].copy().view(COMMAND_DTYPE).reshape(extra_total)
        return DecodedBatch(
            first_seq=runs[0].first_seq, last_seq=runs[-1].last_seq, seqs=seqs, ts_ns=ts_ns,
            commands=commands, order_ids=results[:, 2].copy(), values=results[:, 3].copy(),
            counts=counts, events=events, extra_counts=results[:, 4].copy(), extras=extras,
            balances=balances, catalog=catalog, _runs=list(runs),
            _run_of=np.concatenate(
                [np.full(p.shape[0], r, dtype=np.int64) for r, p in enumerate(picks)]
            ),
            _index=np.concatenate(picks).astype(np.int64),
        )  # fmt: skip

    def _others(
        self, runs: Sequence[RecordRun], picks: list[np.ndarray]
    ) -> tuple[list[DecodedRecord], list[DecodedRecord]]:
        """The records of ``runs`` that are not order records (``picks``), decoded one
        by one: (the balance.update ones, the catalog ones), each in order.
        ``HistoryRecordError`` for a record of another type."""
        balances: list[DecodedRecord] = []
        catalog: list[DecodedRecord] = []
        for run, pick in zip(runs, picks, strict=True):
            if pick.shape[0] == len(run):
                continue
            for i in np.flatnonzero(run.types != RT_ORDER).tolist():
                rtype = int(run.types[i])
                if rtype not in (RT_BALANCE, RT_CATALOG):
                    raise HistoryRecordError(
                        f"seq {run.first_seq + i}: unknown record type {rtype}"
                    )
                record = self._single.decode(Record(run.first_seq + i, rtype, run.payload(i)))
                (balances if rtype == RT_BALANCE else catalog).append(record)
        return balances, catalog

    def _decode_all(
        self,
        runs: Sequence[RecordRun],
        picks: list[np.ndarray],
        cmds64: np.ndarray,
        results: np.ndarray,
    ) -> tuple[int, int]:
        """Decode every run's order frames into ``cmds64``/``results`` and the events
        and extra records buffers (grown and done again when too small); returns the
        events and the extra records in all."""
        while True:
            total = extras = k = 0
            for run, pick in zip(runs, picks, strict=True):
                m = int(pick.shape[0])
                if not m:
                    continue
                got, got_extra = self._decode_run(
                    run, pick, cmds64[k : k + m], results[k : k + m], total, extras
                )
                total += got
                extras += got_extra
                k += m
            if total <= self._events.shape[0] and extras <= self._extras.shape[0]:
                return total, extras
            if total > self._events.shape[0]:
                self._events = np.zeros((2 * total, EVENT_WORDS), dtype=np.int64)
            if extras > self._extras.shape[0]:
                self._extras = np.zeros((2 * extras, COMMAND_WORDS), dtype=np.int64)

    def _decode_run(
        self,
        run: RecordRun,
        pick: np.ndarray,
        cmds64: np.ndarray,
        results: np.ndarray,
        total: int,
        extras: int,
    ) -> tuple[int, int]:
        """Decode the order frames ``pick`` of ``run`` into ``cmds64``/``results``,
        their events from row ``total`` and their extra records from row ``extras`` of
        the buffers (as far as they have rows); returns (events, extra records)."""
        usable = len(run.data) // _WORD * _WORD
        buf = np.frombuffer(run.data, dtype=np.uint8, count=usable)
        starts = run.starts[pick]
        stops = starts + FRAME_HEADER_LENGTH + run.lengths[pick]
        stops += -stops % _WORD
        room = self._events[min(total, self._events.shape[0]) :]
        extra_room = self._extras[min(extras, self._extras.shape[0]) :]
        bad, got, got_extra = decode_frames(
            buf, buf.view(np.int64), starts, stops, cmds64, extra_room, room, results
        )
        refused = np.flatnonzero(results[:, 1])
        if bad < 0 and refused.shape[0]:
            bad = int(refused[0])
        if bad >= 0:
            seq = run.first_seq + int(pick[bad])
            raise HistoryRecordError(f"seq {seq}: order record does not add up")
        return got, got_extra
